// cereal writers for statuses and events, for the modules that embed them in replies.
#pragma once

#include "json_out.hpp"
#include "sandbox_agent/status.hpp"

namespace sandbox_agent::json {

// Every timing is present; null until measured.
struct TimingsOut {
  const Timings& t;
  template <class A> void save(A& ar) const {
    if (t.network_ms) ar(make_nvp("network_ms", *t.network_ms));
    for (auto [name, v] : {std::pair{"create_ms", &t.create_ms}, std::pair{"start_ms", &t.start_ms},
                           std::pair{"ready_ms", &t.ready_ms}}) {
      if (*v) ar(make_nvp(name, **v));
      else ar(make_nvp(name, nullptr));
    }
  }
};

struct CapabilitiesOut {
  const Capabilities& c;
  template <class A> void save(A& ar) const {
    ar(make_nvp("runtime_version", c.runtime_version), make_nvp("platform", c.platform),
       make_nvp("nested_containers", c.nested_containers));
  }
};

struct PortStatusOut {
  const PortMapping& p;
  template <class A> void save(A& ar) const {
    ar(make_nvp("host_port", static_cast<unsigned>(p.host_port)),
       make_nvp("sandbox_port", static_cast<unsigned>(p.sandbox_port)), make_nvp("protocol", p.protocol));
    if (!p.host_ip.empty()) ar(make_nvp("host_ip", p.host_ip));
  }
};

struct PortsStatusOut {
  const std::vector<PortMapping>& ports;
  template <class A> void save(A& ar) const {
    ar(cereal::make_size_tag(static_cast<cereal::size_type>(ports.size())));
    for (const auto& p : ports) ar(PortStatusOut{p});
  }
};

struct NetworkStatusOut {
  const NetworkStatus& n;
  template <class A> void save(A& ar) const {
    ar(make_nvp("ip", n.ip), make_nvp("ports", PortsStatusOut{n.ports}));
  }
};

struct StatusOut {
  const SandboxStatus& s;
  template <class A> void save(A& ar) const {
    ar(make_nvp("id", s.id), make_nvp("state", std::string(to_string(s.state))));
    if (!s.reason.empty()) ar(make_nvp("reason", s.reason));
    save_optional(ar, "exit_code", s.exit_code);
    ar(make_nvp("labels", json::StringMap{s.labels}),
       make_nvp("created_at", format_time(s.created_at_us)));
    if (s.ready_at_us) ar(make_nvp("ready_at", format_time(*s.ready_at_us)));
    if (!s.docker_socket.empty()) ar(make_nvp("docker_socket", s.docker_socket));
    ar(make_nvp("timings", TimingsOut{s.timings}));
    if (s.capabilities) ar(make_nvp("capabilities", CapabilitiesOut{*s.capabilities}));
    if (s.network) ar(make_nvp("network", NetworkStatusOut{*s.network}));
    if (s.ttl_deadline_us) ar(make_nvp("ttl_deadline", format_time(*s.ttl_deadline_us)));
    if (!s.pool.empty())
      ar(make_nvp("pool", s.pool), make_nvp("pool_start", std::string(to_string(s.pool_start))));
    if (!s.log_tail.empty()) ar(make_nvp("log_tail", json::utf8_sanitize(s.log_tail)));
  }
};

struct EventOut {
  const StateEvent& e;
  template <class A> void save(A& ar) const {
    ar(make_nvp("event", std::string("state")), make_nvp("id", e.id),
       make_nvp("state", std::string(to_string(e.state))), make_nvp("reason", e.reason),
       make_nvp("ts", format_time(e.ts_us)));
    save_optional(ar, "exit_code", e.exit_code);
  }
};


}  // namespace sandbox_agent::json
