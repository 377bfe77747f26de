#include "firewall.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "paths.hpp"
#include "process.hpp"

namespace sandbox_agent {

awaitable<Status> Firewall::run(std::string commands) {
  CaptureSpec spec;
  spec.argv = {nft_, "-f", "-"};
  spec.input = std::move(commands);
  spec.timeout = timeout_;
  auto r = co_await run_captured(std::move(spec));
  if (r.ok()) co_return Ok{};
  std::string why = r.spawn_error.empty() && !r.timed_out ? r.output : r.describe("nft", timeout_);
  while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
  co_return make_error(ErrorCode::internal, "nftables: " + (why.empty() ? r.describe("nft", timeout_) : why.substr(0, 1024)));
}

awaitable<Status> Firewall::reset(std::string subnet, std::vector<SandboxEgress> live) {
  std::string all = firewall_base_rules(subnet);
  for (const auto& sb : live) all += sandbox_rules(sb);
  co_return co_await run(std::move(all));
}

awaitable<Status> Firewall::add(SandboxEgress sb) { co_return co_await run(sandbox_rules(sb)); }

awaitable<void> Firewall::remove(std::string key, std::string ip) {
  auto cmds = sandbox_removal(key, ip);
  std::string all;
  for (const auto& c : cmds) all += c + "\n";
  if (co_await run(std::move(all))) co_return;
  // Something was missing (a crash between two steps): remove what is there, piece by piece.
  for (const auto& c : cmds) (void)co_await run(c);
}

bool ensure_bridge_netfilter(std::string& why) {
  const char* knob = kBridgeNetfilterKnob;
  std::string value;
  if (!paths::read_file(knob, value, 16)) {
    why = "br_netfilter is not available (no " + std::string(knob) +
          "): traffic between sandboxes on the bridge could not be filtered";
    return false;
  }
  if (value.starts_with("1")) return true;
  int fd = ::open(knob, O_WRONLY | O_CLOEXEC);
  bool ok = fd >= 0 && ::write(fd, "1\n", 2) == 2;
  if (fd >= 0) ::close(fd);
  if (!ok) why = "cannot turn on " + std::string(knob) + ": " + paths::errno_text();
  return ok;
}

}  // namespace sandbox_agent
