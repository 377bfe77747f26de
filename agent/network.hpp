// Bridge networking for sandboxes: a network namespace each, wired by the CNI plugin chain,
// with egress enforced in nftables. The supervisor calls attach before `runsc create` and
// detach on every end (also for records a previous agent left); everything here runs on the
// reactor: plugins are child processes with a deadline, at most N chains at once.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "cni.hpp"
#include "firewall.hpp"
#include "network_attachment.hpp"
#include "reactor.hpp"
#include "sandbox_agent/config.hpp"
#include "sandbox_agent/request.hpp"
#include "sandbox_agent/runtime.hpp"
#include "semaphore.hpp"

namespace sandbox_agent {

class Networks {
 public:
  Networks(asio::any_io_executor ex, const NetworkConfig& config, const RequestPolicy& policy, std::string root);

  // Start-up: reads the CNI config, checks the plugins, br_netfilter and nftables. When any is
  // missing, bridge is unavailable (requests for it are refused with the reason) and this
  // says why in one log line; nothing else depends on it.
  void init(const RuntimeInfo& runtime);
  bool available() const { return available_; }
  const std::string& unavailable_reason() const { return why_unavailable_; }

  std::string netns_path(const std::string& key) const;
  std::string resolv_conf() const { return resolv_conf_; }  // host path given to sandboxes

  // Namespace, plugins (ADD), firewall, in that order; on any error, what was made is undone
  // and the error names the step and carries the plugin's own message.
  awaitable<Result<NetworkAttachment>> attach(std::string key, LaunchRequest request, std::string log_path);
  // Firewall, plugins (DEL, last first), namespace. Idempotent; an error leaves the namespace
  // (and so the intent in the record) for the next try.
  awaitable<Status> detach(std::string key, std::optional<NetworkAttachment> attachment,
                           std::vector<PortMapping> ports, std::string log_path);

  // After recovery: the firewall holds exactly `live`'s rules, and namespaces no record
  // claims (`known` keys) are detached.
  awaitable<void> reconcile(std::vector<SandboxEgress> live, std::set<std::string> known);

  // Host ports are claimed when a request is accepted (a clash is that request's error, at
  // once) and released once the sandbox's DEL succeeded. `check_host`: also refuse a port
  // something on the host has bound (not for sandboxes adopted after a restart: theirs).
  Status reserve_ports(const std::string& key, const std::vector<PortMapping>& ports, bool check_host);
  void release_ports(const std::string& key);

  SandboxEgress egress_for(const std::string& key, const std::string& ip, const LaunchRequest& request) const;

 private:
  awaitable<Result<std::string>> run_plugin(const cni::Plugin& plugin, std::string_view command,
                                            const std::string& key, std::string prev,
                                            const std::vector<PortMapping>& ports, int log_fd);
  asio::any_io_executor ex_;
  const NetworkConfig& config_;
  const RequestPolicy& policy_;
  std::string root_;  // ROOT/network
  std::string resolv_conf_;
  cni::NetworkList list_;
  bool available_ = false;
  bool masquerade_ = false;  // the built-in list: the agent masquerades its subnet
  std::string why_unavailable_ = "not initialised";
  Firewall firewall_;
  AsyncSemaphore slots_;
  using PortKey = std::tuple<std::string, std::uint16_t, std::string>;  // protocol, port, host ip
  std::map<PortKey, std::string> ports_in_use_;
  std::map<std::string, std::vector<PortKey>> ports_by_key_;
};

}  // namespace sandbox_agent
