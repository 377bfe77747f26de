#include "protocol.hpp"

#include "json_in.hpp"
#include "paths.hpp"
#include "request_parse.hpp"
#include "status_json.hpp"

namespace sandbox_agent::protocol {

using json::make_nvp;
using json::Ptr;

LineFramer::Next LineFramer::next(std::string_view& line) {
  auto nl = buf_.find('\n', std::max(start_, scanned_));
  if (nl == std::string::npos) {
    buf_.erase(0, start_);  // keep only the incomplete line
    start_ = 0;
    scanned_ = buf_.size();
    return buf_.size() > max_ ? Next::too_long : Next::need_more;
  }
  line = std::string_view(buf_.data() + start_, nl - start_);
  consumed_ += nl + 1 - start_;
  start_ = nl + 1;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line.size() > max_ ? Next::too_long : Next::line;
}

namespace {

Status read_tag(json::value v, const Ptr& at, Tag& tag) {
  simdjson::ondemand::json_type type;
  if (auto e = v.type().get(type)) return json::simdjson_error(e, at, "must be a string or an integer");
  if (type == simdjson::ondemand::json_type::string) {
    std::string s;
    auto st = json::read_string(v, at, s, 256);
    if (st) tag = std::move(s);
    return st;
  }
  std::int64_t n = 0;
  auto st = json::read_int(v, at, n, INT64_MIN, INT64_MAX);
  if (!st) return json::invalid(at, "must be a string or an integer");
  tag = n;
  return st;
}

Status read_op(json::value v, const Ptr& at, Op& op) {
  std::string s;
  if (auto st = json::read_string(v, at, s, 64); !st) return st;
  static constexpr std::pair<std::string_view, Op> ops[] = {
      {"launch", Op::launch}, {"status", Op::status}, {"list", Op::list}, {"stop", Op::stop},
      {"watch", Op::watch},   {"stats", Op::stats},   {"version", Op::version}, {"extend", Op::extend}, {"logs", Op::logs},
      {"exec", Op::exec},     {"cp", Op::cp},         {"pools", Op::pools},   {"metrics", Op::metrics}};
  for (auto [name, o] : ops)
    if (s == name) {
      op = o;
      return Ok{};
    }
  return make_error(ErrorCode::unknown_op,
                    "unknown op \"" + s + "\" (one of launch, status, list, stop, watch, stats, version, extend, logs, exec, cp, pools, metrics)",
                    at.path());
}

// Finds the tag of a line that failed to parse, so the error can still carry it.
Tag salvage_tag(std::string_view line) {
  simdjson::dom::parser dom;
  simdjson::padded_string padded(line);
  simdjson::dom::element root;
  if (dom.parse(padded).get(root)) return {};
  simdjson::dom::element tag;
  if (root.at_key("tag").get(tag)) return {};
  std::string_view s;
  if (!tag.get_string().get(s)) return std::string(s);
  std::int64_t n = 0;
  if (!tag.get_int64().get(n)) return n;
  return {};
}

constexpr std::size_t kMaxExecArgs = 4096;

// exec's and cp's checks that need more than one field, or the op.
Status check_exec(const ExecArgs& e, bool has_args) {
  if (!has_args || e.args.empty()) return json::invalid(Ptr{"/args"}, "is required (the command and its arguments)");
  if (e.args[0].empty()) return json::invalid(Ptr{"/args/0"}, "must not be empty");
  for (std::size_t i = 0; i < e.env.size(); ++i) {
    auto eq = e.env[i].find('=');
    if (eq == std::string::npos || eq == 0) return json::invalid(Ptr{"/env"}.child(i), "must be NAME=VALUE");
  }
  if (!e.cwd.empty() && !paths::is_normalized_absolute(e.cwd))
    return json::invalid(Ptr{"/cwd"}, "must be an absolute path without . or .. components");
  return Ok{};
}

Status check_copy(const CopyArgs& c, bool has_direction, bool has_path, bool has_mode) {
  if (!has_direction) return json::invalid(Ptr{"/direction"}, "is required (in or out)");
  if (!has_path) return json::invalid(Ptr{"/path"}, "is required");
  if (!paths::is_normalized_absolute(c.path) || c.path == "/")
    return json::invalid(Ptr{"/path"}, "must be an absolute path other than / without . or .. components");
  if (is_reserved_destination(c.path))
    return json::invalid(Ptr{"/path"}, "must not be /proc, /sys, /dev, /.sandbox-agent or under them");
  if (has_mode && c.direction != CopyDirection::in) return json::invalid(Ptr{"/mode"}, "only applies to direction in");
  return Ok{};
}

}  // namespace

std::size_t passed_fds(Op op) {
  if (op == Op::exec) return 3;
  if (op == Op::cp) return 1;
  return 0;
}

std::variant<Message, ParseError> parse_line(std::string_view line, const RequestPolicy& policy) {
  Message m;
  bool has_op = false, has_request = false, has_id = false, has_wait = false, has_timeout = false, has_ttl = false;
  bool has_args = false, has_direction = false, has_path = false, has_mode = false;
  std::uint64_t timeout_ms = 0;
  std::vector<std::string> seen;
  auto s = json::parse_object_document(json::thread_parser(), line, [&](json::value root) {
    return json::for_each_member(root, Ptr{}, [&](std::string_view k, json::value v, const Ptr& p) -> Status {
      seen.emplace_back(k);
      if (k == "op") { has_op = true; return read_op(v, p, m.op); }
      if (k == "tag") return read_tag(v, p, m.tag);
      if (k == "request") {
        // The request is parsed on its own, like a spool file: the same size limit, the same
        // error pointers (relative to the request).
        has_request = true;
        simdjson::ondemand::object obj;
        std::string_view raw;
        if (auto e = v.get_object().get(obj)) return json::simdjson_error(e, p, "must be an object");
        if (auto e = obj.raw_json().get(raw)) return json::simdjson_error(e, p, "must be an object");
        thread_local simdjson::ondemand::parser nested;
        auto r = parse_launch_request_with(nested, raw, policy);
        if (!r) return r.error();
        m.request = std::move(r.value());
        return Ok{};
      }
      if (k == "wait") {
        has_wait = true;
        std::string w;
        if (auto st = json::read_string(v, p, w, 32); !st) return st;
        if (w != "ready") return json::invalid(p, "must be \"ready\"");
        m.wait_ready = true;
        return Ok{};
      }
      if (k == "id") { has_id = true; return json::read_string(v, p, m.id, 256); }
      if (k == "timeout_ms") { has_timeout = true; return json::read_uint(v, p, timeout_ms, 0, kMaxTtlMs); }
      if (k == "args") { has_args = true; return json::read_string_array(v, p, m.exec.args, kMaxExecArgs, 65536); }
      if (k == "env") return json::read_string_array(v, p, m.exec.env, kMaxExecArgs, 65536);
      if (k == "cwd") return json::read_string(v, p, m.exec.cwd);
      if (k == "user") {
        Owner o;
        auto st = parse_owner(v, p, o);
        if (st) m.exec.user = o;
        return st;
      }
      if (k == "tty") return json::read_bool(v, p, m.exec.tty);
      if (k == "direction") {
        has_direction = true;
        std::string d;
        if (auto st = json::read_string(v, p, d, 16); !st) return st;
        if (d != "in" && d != "out") return json::invalid(p, "must be in (into the sandbox) or out");
        m.copy.direction = d == "in" ? CopyDirection::in : CopyDirection::out;
        return Ok{};
      }
      if (k == "path") { has_path = true; return json::read_string(v, p, m.copy.path); }
      if (k == "mode") { has_mode = true; return json::read_u32(v, p, m.copy.mode, 0, 07777); }
      if (k == "source") {
        if (auto st = json::read_string(v, p, m.source, 16); !st) return st;
        if (m.source != "main" && m.source != "dockerd" && m.source != "runsc")
          return json::invalid(p, "must be one of main, dockerd, runsc");
        return Ok{};
      }
      if (k == "ttl_ms") { has_ttl = true; return json::read_uint(v, p, m.ttl_ms, 1, kMaxTtlMs); }
      return json::invalid(p, "unknown field");
    });
  });
  auto err = [&](Error e) { return ParseError{std::move(e), m.tag.index() ? m.tag : salvage_tag(line)}; };
  if (!s) return err(s.error());
  if (!has_op) return err(json::invalid(Ptr{"/op"}, "is required"));
  // Each op takes only its own arguments: a misplaced one is a mistake worth reporting.
  auto only = [&](std::initializer_list<std::string_view> allowed) -> Status {
    for (const auto& k : seen) {
      if (k == "op" || k == "tag") continue;
      bool ok = false;
      for (auto a : allowed) ok = ok || k == a;
      if (!ok) return json::invalid(Ptr{}.child(k), "is not an argument of this op");
    }
    return Ok{};
  };
  // The ops about one sandbox: their own arguments, and an id that can name one.
  auto about_one_sandbox = [&](Status own) -> Status {
    if (!own) return own;
    if (!has_id) return json::invalid(Ptr{"/id"}, "is required");
    if (!is_valid_sandbox_id(m.id)) return json::invalid(Ptr{"/id"}, "is not a valid sandbox id");
    return Ok{};
  };
  Status args = Ok{};
  switch (m.op) {
    case Op::launch:
      args = only({"request", "wait"});
      if (args && !has_request) args = json::invalid(Ptr{"/request"}, "is required");
      break;
    case Op::status:
      args = about_one_sandbox(only({"id"}));
      break;
    case Op::stop:
      args = about_one_sandbox(only({"id", "timeout_ms"}));
      if (args && timeout_ms > 3600000) args = json::invalid(Ptr{"/timeout_ms"}, "must be at most 3600000");
      m.timeout_ms = has_timeout ? static_cast<unsigned>(timeout_ms) : m.timeout_ms;
      break;
    case Op::exec:
      args = about_one_sandbox(only({"id", "args", "env", "cwd", "user", "tty", "timeout_ms"}));
      if (args) args = check_exec(m.exec, has_args);
      if (args && has_timeout && timeout_ms == 0) args = json::invalid(Ptr{"/timeout_ms"}, "must be at least 1 (omit it for none)");
      m.exec.timeout_ms = timeout_ms;
      break;
    case Op::cp:
      args = about_one_sandbox(only({"id", "direction", "path", "mode", "timeout_ms"}));
      if (args) args = check_copy(m.copy, has_direction, has_path, has_mode);
      if (args && has_timeout && timeout_ms == 0) args = json::invalid(Ptr{"/timeout_ms"}, "must be at least 1");
      if (has_timeout) m.copy.timeout_ms = timeout_ms;
      break;
    case Op::logs:
      args = about_one_sandbox(only({"id", "source"}));
      break;
    case Op::extend:
      args = about_one_sandbox(only({"id", "ttl_ms"}));
      if (args && !has_ttl) args = json::invalid(Ptr{"/ttl_ms"}, "is required");
      break;
    default:
      args = only({});
  }
  (void)has_wait;
  (void)has_timeout;
  if (!args) return err(args.error());
  return m;
}

namespace {

struct TagOut {
  const Tag& tag;
  template <class A> void save_into(A& ar) const {
    if (auto* s = std::get_if<std::string>(&tag)) ar(make_nvp("tag", *s));
    else if (auto* n = std::get_if<std::int64_t>(&tag)) ar(make_nvp("tag", *n));
  }
};

struct ErrorOut {
  const Error& e;
  template <class A> void save(A& ar) const {
    ar(make_nvp("code", std::string(to_string(e.code))), make_nvp("message", json::utf8_sanitize(e.message)));
    if (!e.field.empty()) ar(make_nvp("field", e.field));
  }
};

// {"ok":…, <body>, "tag":…} — body writes the op's own fields.
template <class Body>
struct Reply {
  bool ok;
  const Tag& tag;
  Body body;
  template <class A> void save(A& ar) const {
    ar(make_nvp("ok", ok));
    body(ar);
    TagOut{tag}.save_into(ar);
  }
};

template <class Body>
std::string reply(bool ok, const Tag& tag, Body body) {
  auto s = json::to_json(Reply<Body>{ok, tag, std::move(body)});
  s += '\n';
  return s;
}

struct StatusList {
  const std::vector<SandboxStatus>& all;
  template <class A> void save(A& ar) const {
    ar(cereal::make_size_tag(static_cast<cereal::size_type>(all.size())));
    for (const auto& s : all) ar(json::StatusOut{s});
  }
};

struct TimeToReady {
  const Stats& s;
  template <class A> void save(A& ar) const {
    ar(make_nvp("samples", s.samples), make_nvp("p50", s.p50), make_nvp("p90", s.p90),
       make_nvp("p99", s.p99), make_nvp("max", s.max));
  }
};

struct StatsOut {
  const Stats& s;
  template <class A> void save(A& ar) const {
    ar(make_nvp("accepted", s.accepted), make_nvp("ready", s.ready), make_nvp("failed", s.failed),
       make_nvp("stopped", s.stopped), make_nvp("in_flight", s.in_flight),
       make_nvp("runsc_queued", s.runsc_queued), make_nvp("records_unwritten", s.records_unwritten),
       make_nvp("time_to_ready_ms", TimeToReady{s}));
  }
};

}  // namespace

std::string reply_error(const Error& e, const Tag& tag) {
  return reply(false, tag, [&](auto& ar) { ar(make_nvp("error", ErrorOut{e})); });
}

std::string reply_launched(const std::string& id, SandboxState state, const Tag& tag) {
  return reply(true, tag, [&](auto& ar) {
    ar(make_nvp("id", id), make_nvp("state", std::string(to_string(state))));
  });
}

std::string reply_launch_final(const SandboxStatus& s, const Tag& tag) {
  return reply(true, tag, [&](auto& ar) {
    ar(make_nvp("id", s.id), make_nvp("state", std::string(to_string(s.state))),
       make_nvp("sandbox", json::StatusOut{s}));
  });
}

std::string reply_status(const SandboxStatus& s, const Tag& tag) {
  return reply(true, tag, [&](auto& ar) { ar(make_nvp("sandbox", json::StatusOut{s})); });
}

std::string reply_list(const std::vector<SandboxStatus>& all, const Tag& tag) {
  return reply(true, tag, [&](auto& ar) { ar(make_nvp("sandboxes", StatusList{all})); });
}

std::string reply_stop(const std::string& id, SandboxState state, const Tag& tag) {
  return reply_launched(id, state, tag);
}

std::string reply_extend(const std::string& id, std::int64_t deadline_us, const Tag& tag) {
  return reply(true, tag, [&](auto& ar) { ar(make_nvp("id", id), make_nvp("ttl_deadline", format_time(deadline_us))); });
}

std::string reply_logs(const std::string& id, const std::string& source, const std::string& path, const Tag& tag) {
  return reply(true, tag, [&](auto& ar) {
    ar(make_nvp("id", id), make_nvp("source", source), make_nvp("path", path));
  });
}

std::string reply_exec_started(const std::string& exec_id, const Tag& tag) {
  return reply(true, tag, [&](auto& ar) { ar(make_nvp("exec_id", exec_id)); });
}

std::string reply_exec_ended(const std::string& exec_id, const ExecOutcome& o, const Tag& tag) {
  return reply(true, tag, [&](auto& ar) {
    ar(make_nvp("exec_id", exec_id), make_nvp("exit_code", o.exit_code));
    if (o.signal) ar(make_nvp("signal", o.signal));
    if (!o.reason.empty()) ar(make_nvp("reason", o.reason));
  });
}

std::string reply_copied(const std::string& id, std::uint64_t bytes, const Tag& tag) {
  return reply(true, tag, [&](auto& ar) { ar(make_nvp("id", id), make_nvp("bytes", bytes)); });
}

namespace {

struct PoolOut {
  const PoolInfo& p;
  template <class A> void save(A& ar) const {
    ar(make_nvp("name", p.name), make_nvp("size", p.size), make_nvp("ready", p.ready), make_nvp("warming", p.warming),
       make_nvp("failed_in_a_row", p.failed_in_a_row));
    if (p.retry_at_us) ar(make_nvp("retry_at", format_time(*p.retry_at_us)));
    if (!p.last_error.empty()) ar(make_nvp("last_error", json::utf8_sanitize(p.last_error)));
  }
};

struct PoolList {
  const std::vector<PoolInfo>& all;
  template <class A> void save(A& ar) const {
    ar(cereal::make_size_tag(static_cast<cereal::size_type>(all.size())));
    for (const auto& p : all) ar(PoolOut{p});
  }
};

}  // namespace

std::string reply_pools(const std::vector<PoolInfo>& pools, const Tag& tag) {
  return reply(true, tag, [&](auto& ar) { ar(make_nvp("pools", PoolList{pools})); });
}

std::string reply_ok(const Tag& tag) {
  return reply(true, tag, [](auto&) {});
}

std::string reply_stats(const Stats& s, const Tag& tag) {
  return reply(true, tag, [&](auto& ar) { ar(make_nvp("stats", StatsOut{s})); });
}

std::string reply_metrics(const std::string& text, const Tag& tag) {
  return reply(true, tag, [&](auto& ar) { ar(make_nvp("text", text)); });
}

std::string reply_version(std::string_view version, const Tag& tag) {
  return reply(true, tag, [&](auto& ar) { ar(make_nvp("version", std::string(version))); });
}

std::string event_line(const StateEvent& e) { return to_json(e) + "\n"; }

}  // namespace sandbox_agent::protocol
