#include "firewall.hpp"

#include <nftables/libnftables.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "paths.hpp"

namespace sandbox_agent {

Firewall::Firewall() : ctx_(nft_ctx_new(NFT_CTX_DEFAULT)) {
  if (ctx_) {
    nft_ctx_buffer_output(ctx_);
    nft_ctx_buffer_error(ctx_);
  }
}

Firewall::~Firewall() {
  if (ctx_) nft_ctx_free(ctx_);
}

Status Firewall::run(const std::string& commands) {
  if (!ctx_) return make_error(ErrorCode::internal, "nftables: cannot create a context");
  // One buffer is one netlink batch: all of it applies, or none of it.
  if (nft_run_cmd_from_buffer(ctx_, commands.c_str()) == 0) return Ok{};
  std::string err = nft_ctx_get_error_buffer(ctx_);
  while (!err.empty() && err.back() == '\n') err.pop_back();
  return make_error(ErrorCode::internal, "nftables: " + err.substr(0, 1024));
}

Status Firewall::reset(const std::string& subnet, const std::vector<SandboxEgress>& live) {
  std::string all = firewall_base_rules(subnet);
  for (const auto& sb : live) all += sandbox_rules(sb);
  return run(all);
}

Status Firewall::reset_probe() { return run("add table inet " + std::string(kFirewallTable)); }

Status Firewall::add(const SandboxEgress& sb) { return run(sandbox_rules(sb)); }

void Firewall::remove(const std::string& key, const std::string& ip) {
  auto cmds = sandbox_removal(key, ip);
  std::string all;
  for (const auto& c : cmds) all += c + "\n";
  if (run(all)) return;
  // Something was missing (a crash between two steps): remove what is there, piece by piece.
  for (const auto& c : cmds) (void)run(c);
}

void Firewall::remove_all() {
  (void)run("add table inet " + std::string(kFirewallTable) + "\ndelete table inet " + std::string(kFirewallTable) +
            "\nadd table ip " + std::string(kNatTable) + "\ndelete table ip " + std::string(kNatTable));
}

bool ensure_bridge_netfilter(std::string& why) {
  const char* knob = "/proc/sys/net/bridge/bridge-nf-call-iptables";
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
