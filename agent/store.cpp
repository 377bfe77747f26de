#include "store.hpp"

#include <cstdlib>

#include "json_in.hpp"
#include "status_json.hpp"
#include "request_parse.hpp"

namespace sandbox_agent {

using json::make_nvp;
using json::save_optional;

namespace {

struct OwnerOut {
  const Owner& o;
  template <class A> void save(A& ar) const { ar(make_nvp("uid", o.uid), make_nvp("gid", o.gid)); }
};

struct MountOut {
  const Mount& m;
  template <class A> void save(A& ar) const {
    ar(make_nvp("source", m.source), make_nvp("destination", m.destination),
       make_nvp("readonly", m.readonly));
  }
};

struct MountsOut {
  const std::vector<Mount>& mounts;
  template <class A> void save(A& ar) const {
    ar(cereal::make_size_tag(static_cast<cereal::size_type>(mounts.size())));
    for (const auto& m : mounts) ar(MountOut{m});
  }
};

struct ResourcesOut {
  const Resources& r;
  template <class A> void save(A& ar) const {
    save_optional(ar, "cpus", r.cpus);
    save_optional(ar, "memory_mb", r.memory_mb);
    save_optional(ar, "pids", r.pids);
  }
};

struct DockerOut {
  const DockerOptions& d;
  template <class A> void save(A& ar) const {
    ar(make_nvp("enabled", d.enabled), make_nvp("cgroup", std::string(to_string(d.cgroup))),
       make_nvp("dockerd_args", d.dockerd_args));
    save_optional(ar, "ready_timeout_ms", d.ready_timeout_ms);
  }
};

std::vector<std::string> cidr_texts(const std::vector<Cidr>& list) {
  std::vector<std::string> out;
  for (const auto& c : list) out.push_back(c.to_string());
  return out;
}

struct EgressOut {
  const EgressRules& e;
  template <class A> void save(A& ar) const {
    ar(make_nvp("allow", cidr_texts(e.allow)), make_nvp("deny", cidr_texts(e.deny)));
  }
};

struct RequestOut {
  const LaunchRequest& r;
  template <class A> void save(A& ar) const {
    ar(make_nvp("id", r.id), make_nvp("rootfs", r.rootfs), make_nvp("args", r.args),
       make_nvp("env", r.env), make_nvp("cwd", r.cwd), make_nvp("user", OwnerOut{r.user}));
    if (!r.hostname.empty()) ar(make_nvp("hostname", r.hostname));
    ar(make_nvp("mounts", MountsOut{r.mounts}), make_nvp("resources", ResourcesOut{r.resources}),
       make_nvp("network", std::string(to_string(r.network))), make_nvp("docker", DockerOut{r.docker}),
       make_nvp("labels", json::StringMap{r.labels}));
    if (r.socket_owner) ar(make_nvp("socket_owner", OwnerOut{*r.socket_owner}));
    if (!r.ports.empty()) ar(make_nvp("ports", json::PortsStatusOut{r.ports}));
    if (r.egress) ar(make_nvp("egress", EgressOut{*r.egress}));
    save_optional(ar, "ttl_ms", r.ttl_ms);
  }
};


// Intent first: `attached` is true from before the namespace exists until DEL succeeded.
struct NetworkRecordOut {
  bool attached;
  const NetworkAttachment& a;
  template <class A> void save(A& ar) const {
    ar(make_nvp("attached", attached), make_nvp("ip", a.ip), make_nvp("cidr", a.cidr),
       make_nvp("gateway", a.gateway), make_nvp("cni_result", a.cni_result));
  }
};

struct RecordOut {
  const Sandbox& s;
  template <class A> void save(A& ar) const {
    ar(make_nvp("version", 1), make_nvp("id", s.id), make_nvp("runsc_id", s.runsc_id),
       make_nvp("origin", s.origin), make_nvp("state", std::string(to_string(s.state))),
       make_nvp("reason", s.reason));
    save_optional(ar, "exit_code", s.exit_code);
    ar(make_nvp("created_at_us", s.created_at_us));
    save_optional(ar, "ready_at_us", s.ready_at_us);
    ar(make_nvp("timings", json::TimingsOut{s.timings}), make_nvp("pid", static_cast<std::int64_t>(s.pid)),
       make_nvp("docker_socket", s.docker_socket), make_nvp("log_tail", json::utf8_sanitize(s.log_tail)),
       make_nvp("stop_requested", s.stop_requested), make_nvp("runsc_created", s.runsc_created || s.runsc_promised),
       // Finished on disk only once runsc let go: a restart deletes what runsc still holds.
       make_nvp("finished", s.finished && !s.runsc_created), make_nvp("request", RequestOut{s.request}));
    if (s.capabilities) ar(make_nvp("capabilities", json::CapabilitiesOut{*s.capabilities}));
    save_optional(ar, "ttl_deadline_us", s.ttl_deadline_us);
    if (s.dir != s.id) ar(make_nvp("dir", s.dir));
    if (!s.pool.empty())
      ar(make_nvp("pool", s.pool), make_nvp("pool_start", std::string(to_string(s.pool_start))),
         make_nvp("pool_template", std::to_string(s.pool_template)));
    if (s.network_intent || s.network)
      ar(make_nvp("network", NetworkRecordOut{s.network_intent, s.network ? *s.network : NetworkAttachment{}}));
  }
};

}  // namespace

std::string request_to_json(const LaunchRequest& r) { return json::to_json(RequestOut{r}); }
std::string record_to_json(const Sandbox& s) { return json::to_json(RecordOut{s}); }

namespace {

Status parse_timings(json::value v, const json::Ptr& at, Timings& t) {
  return json::for_each_member(v, at, [&](std::string_view k, json::value m, const json::Ptr& p) -> Status {
    bool null = false;
    if (!m.is_null().get(null) && null) return Ok{};  // not measured
    std::int64_t x = 0;
    auto s = json::read_int(m, p, x, 0, INT64_MAX);
    if (!s) return s;
    if (k == "network_ms") t.network_ms = x;
    else if (k == "create_ms") t.create_ms = x;
    else if (k == "start_ms") t.start_ms = x;
    else if (k == "ready_ms") t.ready_ms = x;
    return Ok{};
  });
}

Status parse_capabilities(json::value v, const json::Ptr& at, Capabilities& c) {
  return json::for_each_member(v, at, [&](std::string_view k, json::value m, const json::Ptr& p) -> Status {
    if (k == "runtime_version") return json::read_string(m, p, c.runtime_version, 256);
    if (k == "platform") return json::read_string(m, p, c.platform, 64);
    if (k == "nested_containers") return json::read_bool(m, p, c.nested_containers);
    return Ok{};
  });
}

}  // namespace

Result<Record> parse_record(std::string_view text) {
  Record r;
  bool has_request = false;
  auto s = json::parse_object_document(json::thread_parser(), text, [&](json::value root) {
    return json::for_each_member(root, json::Ptr{}, [&](std::string_view k, json::value m, const json::Ptr& p) -> Status {
      std::int64_t x = 0;
      if (k == "version") return json::read_int(m, p, x, 1, 1);
      if (k == "id") return json::read_string(m, p, r.id);
      if (k == "runsc_id") return json::read_string(m, p, r.runsc_id);
      if (k == "origin") return json::read_string(m, p, r.origin);
      if (k == "state") {
        std::string st;
        if (auto e = json::read_string(m, p, st); !e) return e;
        auto parsed = parse_state(st);
        if (!parsed) return json::invalid(p, "unknown state");
        r.state = *parsed;
        return Ok{};
      }
      if (k == "reason") return json::read_string(m, p, r.reason);
      if (k == "exit_code") {
        auto e = json::read_int(m, p, x, -1, 65535);
        if (e) r.exit_code = static_cast<int>(x);
        return e;
      }
      if (k == "created_at_us") return json::read_int(m, p, r.created_at_us, 0, INT64_MAX);
      if (k == "ready_at_us") {
        auto e = json::read_int(m, p, x, 0, INT64_MAX);
        if (e) r.ready_at_us = x;
        return e;
      }
      if (k == "timings") return parse_timings(m, p, r.timings);
      if (k == "pid") {
        auto e = json::read_int(m, p, x, -1, INT32_MAX);
        if (e) r.pid = static_cast<pid_t>(x);
        return e;
      }
      if (k == "docker_socket") return json::read_string(m, p, r.docker_socket);
      if (k == "log_tail") return json::read_string(m, p, r.log_tail, 1 << 20);
      if (k == "stop_requested") return json::read_bool(m, p, r.stop_requested);
      if (k == "runsc_created") return json::read_bool(m, p, r.runsc_created);
      if (k == "finished") return json::read_bool(m, p, r.finished);
      if (k == "capabilities") {
        Capabilities c;
        auto e = parse_capabilities(m, p, c);
        if (e) r.capabilities = std::move(c);
        return e;
      }
      if (k == "ttl_deadline_us") {
        auto e = json::read_int(m, p, x, 0, INT64_MAX);
        if (e) r.ttl_deadline_us = x;
        return e;
      }
      if (k == "dir") return json::read_string(m, p, r.dir, 256);
      if (k == "pool") return json::read_string(m, p, r.pool, 64);
      if (k == "pool_start") {
        std::string ps;
        if (auto e = json::read_string(m, p, ps, 16); !e) return e;
        auto parsed = parse_pool_start(ps);
        if (!parsed) return json::invalid(p, "unknown pool_start");
        r.pool_start = *parsed;
        return Ok{};
      }
      if (k == "pool_template") {
        std::string h;
        if (auto e = json::read_string(m, p, h, 32); !e) return e;
        r.pool_template = std::strtoull(h.c_str(), nullptr, 10);
        return Ok{};
      }
      if (k == "network") {
        NetworkAttachment a;
        auto e = json::for_each_member(m, p, [&](std::string_view nk, json::value nv, const json::Ptr& np) -> Status {
          if (nk == "attached") return json::read_bool(nv, np, r.network_intent);
          if (nk == "ip") return json::read_string(nv, np, a.ip, 64);
          if (nk == "cidr") return json::read_string(nv, np, a.cidr, 64);
          if (nk == "gateway") return json::read_string(nv, np, a.gateway, 64);
          if (nk == "cni_result") return json::read_string(nv, np, a.cni_result, 1 << 20);
          return Ok{};
        });
        if (e && !a.ip.empty()) r.network = std::move(a);
        return e;
      }
      if (k == "request") {
        has_request = true;
        return parse_request_value(m, r.request);
      }
      return Ok{};  // newer versions may add fields
    });
  });
  if (!s) return s.error();
  if (!has_request || r.id.empty() || r.runsc_id.empty())
    return make_error(ErrorCode::invalid_json, "incomplete record");
  if (r.dir.empty()) r.dir = r.id;
  if (!is_valid_sandbox_id(r.dir)) return make_error(ErrorCode::invalid_json, "bad dir in the record");
  return r;
}

}  // namespace sandbox_agent
