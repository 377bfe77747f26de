#include "network.hpp"


#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "log.hpp"
#include "netns.hpp"
#include "paths.hpp"
#include "process.hpp"
#include "unique_fd.hpp"
#include "sandbox_agent/status.hpp"

namespace sandbox_agent {

namespace {

// The host's resolv.conf without loopback nameservers (a resolver on the host's 127.0.0.53
// is not reachable from a sandbox's own network), as Docker does.
std::string resolv_conf_text(const std::vector<std::string>& dns) {
  std::string out = "# written by sandbox-agent (network.dns / network.resolv_conf)\n";
  if (!dns.empty()) {
    for (const auto& s : dns) out += "nameserver " + s + "\n";
    return out;
  }
  std::string host;
  if (!paths::read_regular_file("/etc/resolv.conf", host, 1 << 16)) return out;
  std::size_t pos = 0;
  while (pos < host.size()) {
    auto eol = host.find('\n', pos);
    auto line = host.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
    pos = eol == std::string::npos ? host.size() : eol + 1;
    if (line.starts_with("nameserver")) {
      auto addr = line.substr(10);
      addr.erase(0, addr.find_first_not_of(" \t"));
      addr.erase(addr.find_last_not_of(" \t\r") + 1);
      if (addr.starts_with("127.") || addr == "::1") continue;
    }
    out += line + "\n";
  }
  return out;
}

// Whether something on the host already has this port (a listener, or any bound socket).
std::string host_port_problem(const PortMapping& p) {
  bool v6 = p.host_ip.find(':') != std::string::npos;
  UniqueFd s{::socket(v6 ? AF_INET6 : AF_INET, (p.protocol == "udp" ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0)};
  if (s.get() < 0) return "cannot check it: " + paths::errno_text();
  int rc;
  if (v6) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(p.host_port);
    ::inet_pton(AF_INET6, p.host_ip.c_str(), &a.sin6_addr);
    rc = ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(p.host_port);
    if (!p.host_ip.empty()) ::inet_pton(AF_INET, p.host_ip.c_str(), &a.sin_addr);
    rc = ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc == 0) return {};
  if (errno == EADDRINUSE) return "is in use on the host";
  if (errno == EADDRNOTAVAIL) return "cannot be published: " + p.host_ip + " is not an address of this host";
  return "cannot be checked: " + paths::errno_text();
}

}  // namespace

Networks::Networks(asio::any_io_executor ex, const NetworkConfig& config, const RequestPolicy& policy,
                   std::string root)
    : ex_(ex), config_(config), policy_(policy), root_(std::move(root)),
      firewall_("/usr/sbin/nft", Millis(config.plugin_timeout_ms)), slots_(ex, config.max_concurrent) {}

std::string Networks::netns_path(const std::string& key) const { return paths::join(root_, "netns/" + key); }

void Networks::init(const RuntimeInfo& runtime) {
  available_ = false;
  auto unavailable = [&](std::string why) {
    why_unavailable_ = std::move(why);
    spdlog::info("bridge networking unavailable: {}", why_unavailable_);
  };
  if (!runtime.isolated_network) return unavailable(runtime.network_reason);
  for (const auto& d : {root_, paths::join(root_, "netns"), paths::join(root_, "ipam")})
    if (!paths::make_dirs(d, 0700)) return unavailable("cannot create " + d + ": " + paths::errno_text());

  std::string text;
  if (config_.cni_conf.empty()) {
    text = cni::default_conflist(config_.subnet, paths::join(root_, "ipam"));
    masquerade_ = true;
  } else if (!paths::read_regular_file(config_.cni_conf, text, 1 << 20)) {
    return unavailable("network.cni_conf " + config_.cni_conf + ": " + paths::errno_text());
  }
  auto list = cni::parse_conflist(text);
  if (!list)
    return unavailable("network.cni_conf " + (config_.cni_conf.empty() ? "(built in)" : config_.cni_conf) + ": " +
                       list.error().field + " " + list.error().message);
  list_ = std::move(list.value());
  std::vector<std::string> needed;
  for (const auto& p : list_.plugins) needed.push_back(p.type);
  if (masquerade_) needed.push_back("host-local");
  for (const auto& type : needed) {
    auto bin = paths::join(config_.cni_path, type);
    if (::access(bin.c_str(), X_OK) != 0)
      return unavailable("no CNI plugin " + bin + " (install containernetworking-plugins, or set network.cni_path)");
  }
  if (::access(kBridgeNetfilterKnob, F_OK) != 0)
    return unavailable(std::string("br_netfilter is not available (no ") + kBridgeNetfilterKnob +
                       "): traffic between sandboxes on the bridge could not be filtered");
  if (::access(firewall_.program().c_str(), X_OK) != 0)
    return unavailable("no " + firewall_.program() + " (install nftables): egress could not be enforced");

  if (!config_.resolv_conf.empty()) {
    std::string probe;
    if (!paths::read_regular_file(config_.resolv_conf, probe, 1 << 16))
      return unavailable("network.resolv_conf " + config_.resolv_conf + ": " + paths::errno_text());
    resolv_conf_ = config_.resolv_conf;
  } else {
    resolv_conf_ = paths::join(root_, "resolv.conf");
    auto content = resolv_conf_text(config_.dns);
    auto tmp = resolv_conf_ + ".tmp";
    UniqueFd f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (f.get() < 0 || ::write(f.get(), content.data(), content.size()) != static_cast<ssize_t>(content.size()) ||
        ::rename(tmp.c_str(), resolv_conf_.c_str()) != 0)
      return unavailable("cannot write " + resolv_conf_ + ": " + paths::errno_text());
    ::chmod(resolv_conf_.c_str(), 0644);
  }
  available_ = true;
  why_unavailable_.clear();
  spdlog::info("bridge networking: CNI network {} ({} plugin{}: {}{}), egress in nftables table inet {}",
               list_.name, list_.plugins.size(), list_.plugins.size() == 1 ? "" : "s",
               [&] {
                 std::string s;
                 for (const auto& p : list_.plugins) s += (s.empty() ? "" : ", ") + p.type;
                 return s;
               }(),
               masquerade_ ? ", subnet " + config_.subnet : "", kFirewallTable);
}

SandboxEgress Networks::egress_for(const std::string& key, const std::string& ip, const LaunchRequest& request) const {
  auto allowed = allowed_by(policy_.egress_ceiling, /*deny_wins=*/false);
  if (request.egress) allowed = intersect(allowed, allowed_by(*request.egress, /*deny_wins=*/true));
  return {key, ip, std::move(allowed)};
}

Status Networks::reserve_ports(const std::string& key, const std::vector<PortMapping>& ports, bool check_host) {
  std::vector<PortKey> taken;
  for (std::size_t i = 0; i < ports.size(); ++i) {
    const auto& p = ports[i];
    auto field = "/ports/" + std::to_string(i) + "/host_port";
    auto what = std::to_string(p.host_port) + "/" + p.protocol;
    for (const auto& [k, owner] : ports_in_use_) {
      const auto& [proto, port, ip] = k;
      if (owner != key && proto == p.protocol && port == p.host_port && (ip.empty() || p.host_ip.empty() || ip == p.host_ip))
        return make_error(ErrorCode::invalid_request, what + " is already published by another sandbox", field);
    }
    if (check_host) {
      if (auto problem = host_port_problem(p); !problem.empty())
        return make_error(ErrorCode::invalid_request, what + " " + problem, field);
    }
    taken.emplace_back(p.protocol, p.host_port, p.host_ip);
  }
  for (const auto& k : taken) ports_in_use_[k] = key;
  auto& mine = ports_by_key_[key];
  mine.insert(mine.end(), taken.begin(), taken.end());
  return Ok{};
}

void Networks::release_ports(const std::string& key) {
  auto it = ports_by_key_.find(key);
  if (it == ports_by_key_.end()) return;
  for (const auto& k : it->second)
    if (auto p = ports_in_use_.find(k); p != ports_in_use_.end() && p->second == key) ports_in_use_.erase(p);
  ports_by_key_.erase(it);
}

awaitable<Result<std::string>> Networks::run_plugin(const cni::Plugin& plugin, std::string_view command,
                                                    const std::string& key, std::string prev,
                                                    const std::vector<PortMapping>& ports, int log_fd) {
  auto ns = netns_path(key);
  bool have_ns = ::access(ns.c_str(), F_OK) == 0;
  CaptureSpec spec;
  spec.argv = {paths::join(config_.cni_path, plugin.type)};
  spec.env = cni::plugin_env(command, key, have_ns ? ns : "", config_.cni_path);
  spec.input = cni::plugin_input(list_, plugin, prev, ports);
  spec.timeout = Millis(config_.plugin_timeout_ms);
  spec.stderr_fd = log_fd;
  if (log_fd >= 0) {
    auto header = format_time(now_unix_us()) + " cni " + std::string(command) + " " + plugin.type + " " + key + "\n";
    if (::write(log_fd, header.data(), header.size()) < 0) { /* best effort */ }
  }
  auto run = co_await run_captured(std::move(spec));
  if (!run.ok()) {
    std::string why = run.timed_out || !run.spawn_error.empty() || run.output.empty()
                          ? run.describe(plugin.type, Millis(config_.plugin_timeout_ms))
                          : cni::describe_error(run.output);
    if (log_fd >= 0) {
      auto line = "  failed: " + why + "\n";
      if (::write(log_fd, line.data(), line.size()) < 0) { /* best effort */ }
    }
    co_return make_error(ErrorCode::internal, "CNI plugin " + plugin.type + " (" + std::string(command) + "): " + why);
  }
  co_return run.output.empty() ? prev : run.output;
}

awaitable<Result<NetworkAttachment>> Networks::attach(std::string key, LaunchRequest request, std::string log_path) {
  if (!available_) co_return make_error(ErrorCode::internal, "bridge networking is unavailable: " + why_unavailable_);
  co_await slots_.acquire();
  struct Release {
    AsyncSemaphore& s;
    ~Release() { s.release(); }
  } release{slots_};

  // The host setting is changed only once bridge is used, not at every start.
  if (std::string why; !ensure_bridge_netfilter(why)) co_return make_error(ErrorCode::internal, why);
  auto ns = netns_path(key);
  (void)netns::remove(ns);  // a leftover of an attempt a crash cut short
  if (auto s = netns::create(ns); !s) co_return make_error(ErrorCode::internal, "network namespace: " + s.error().message);
  UniqueFd log{::open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640)};

  std::string result;
  std::size_t ran = 0;
  std::optional<Error> error;
  for (const auto& plugin : list_.plugins) {
    auto out = co_await run_plugin(plugin, "ADD", key, result, request.ports, log.get());
    ++ran;
    if (!out) {
      error = out.error();
      break;
    }
    result = std::move(out.value());
  }
  NetworkAttachment att;
  if (!error) {
    if (auto parsed = cni::parse_result(result)) {
      att = {parsed->ip, parsed->cidr, parsed->gateway, parsed->result};
      auto rules = egress_for(key, att.ip, request);
      auto added = co_await firewall_.add(std::move(rules));
      if (!added) error = added.error();
    } else {
      error = make_error(ErrorCode::internal, "CNI result: " + parsed.error().message);
    }
  }
  if (!error) co_return att;

  // Undo what was done, last first: the plugins that ran get DEL, then the namespace goes.
  spdlog::debug("{} network setup failed ({}); undoing it", key, error->message);
  co_await firewall_.remove(key, att.ip);
  for (std::size_t i = ran; i-- > 0;)
    (void)co_await run_plugin(list_.plugins[i], "DEL", key, att.cni_result, request.ports, log.get());
  (void)netns::remove(ns);
  co_return *error;
}

awaitable<Status> Networks::detach(std::string key, std::optional<NetworkAttachment> attachment,
                                   std::vector<PortMapping> ports, std::string log_path) {
  co_await slots_.acquire();
  struct Release {
    AsyncSemaphore& s;
    ~Release() { s.release(); }
  } release{slots_};
  if (!attachment || attachment->cni_result.empty()) {
    // ADD was cut short (a crash) before its result was recorded: plugins that clean up by
    // address (firewall) need one, and the namespace's interface still has it.
    auto cidr = netns::ipv4_of(netns_path(key), std::string(cni::kInterface));
    if (!cidr.empty()) {
      NetworkAttachment a;
      a.cidr = cidr;
      a.ip = cidr.substr(0, cidr.find('/'));
      a.cni_result = "{\"cniVersion\":\"" + list_.cni_version + "\",\"ips\":[{\"address\":\"" + cidr + "\"}]}";
      attachment = std::move(a);
    }
  }
  std::string ip = attachment ? attachment->ip : "";  // named: no temporary in a co_await (g++ 12)
  co_await firewall_.remove(key, ip);
  UniqueFd log{log_path.empty() ? -1 : ::open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640)};
  std::optional<Error> first_error;
  if (!list_.plugins.empty()) {
    std::string prev = attachment ? attachment->cni_result : "";
    for (std::size_t i = list_.plugins.size(); i-- > 0;) {
      auto out = co_await run_plugin(list_.plugins[i], "DEL", key, prev, ports, log.get());
      if (!out && !first_error) first_error = out.error();
    }
  } else if (!available_) {
    first_error = make_error(ErrorCode::internal, "cannot run CNI DEL: " + why_unavailable_);
  }
  if (first_error) co_return *first_error;
  if (auto s = netns::remove(netns_path(key)); !s) co_return s;
  release_ports(key);
  co_return Ok{};
}

awaitable<void> Networks::reconcile(std::vector<SandboxEgress> live, std::set<std::string> known) {
  if (!available_) co_return;
  std::string subnet = masquerade_ ? config_.subnet : "";
  if (auto s = co_await firewall_.reset(std::move(subnet), std::move(live)); !s) {
    // Without its tables no egress could be enforced: bridge is off until a restart says otherwise.
    spdlog::error("bridge networking unavailable: {}", s.error().message);
    why_unavailable_ = s.error().message;
    available_ = false;
    co_return;
  }
  std::vector<std::string> strays;
  if (DIR* d = ::opendir(paths::join(root_, "netns").c_str())) {
    while (auto* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == ".." || known.count(name)) continue;
      strays.push_back(name);
    }
    ::closedir(d);
  }
  for (const auto& key : strays) {
    spdlog::warn("network namespace {} has no record: removing it (CNI DEL)", key);
    if (auto s = co_await detach(key, std::nullopt, {}, ""); !s) {
      spdlog::warn("{}: {}; removing the namespace anyway", key, s.error().message);
      (void)netns::remove(netns_path(key));
    }
  }
}

}  // namespace sandbox_agent
