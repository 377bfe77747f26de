// The life of a started fake sandbox: what sandbox-init and dockerd would do, driven by
// timers on the daemon's one heap. Timers name their container by serial, so a timer of
// a container that was stopped or deleted meanwhile finds nothing to do.
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include "files.hpp"
#include "layout.hpp"
#include "output.hpp"
#include "runtime.hpp"

namespace fake_runsc {
namespace {

constexpr int64_t kTermDelayMs = 5;  // from SIGTERM/SIGINT to init.exit

std::string exit_json(int code) { return "{\"exit_code\":" + std::to_string(code) + "}\n"; }

// A dockerd (logrus) text line.
std::string logrus(std::string_view level, std::string_view msg) {
  return "time=\"" + rfc3339_nano(unix_now_ns()) + "\" level=" + std::string(level) + " msg=\"" +
         std::string(msg) + "\"";
}

}  // namespace

Container* Runtime::by_serial(uint64_t serial) {
  const auto it = by_serial_.find(serial);
  return it == by_serial_.end() ? nullptr : it->second;
}

// A line as sandbox-init logs it: "sandbox-init: 2026-11-29T09:11:20.123Z message".
void Runtime::init_log(const Container& c, std::string_view message) {
  if (c.plan.log_dir.empty()) return;
  const int64_t ms = unix_now_ns() / 1'000'000;
  std::string stamp = rfc3339_nano(ms / 1000 * 1'000'000'000);
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms % 1000));
  stamp.replace(stamp.size() - 1, 1, frac);
  append_line(join_path(c.plan.log_dir, "init.log"),
              "sandbox-init: " + stamp + " " + std::string(message));
}

void Runtime::dockerd_log(const Container& c, std::string_view message) {
  if (!c.plan.log_dir.empty()) append_line(join_path(c.plan.log_dir, "dockerd.log"), message);
}

void Runtime::begin_running(Container& c) {
  c.status = Status::running;
  append_line(join_path(root_, kStartsLog), c.id + " " + std::to_string(unix_now_us()));
  const Directives& d = c.plan.d;
  const uint64_t serial = c.serial;
  if (c.plan.docker) {
    init_log(c, "starting dockerd " + c.plan.dockerd_socket);
    dockerd_log(c, logrus("info", "Starting up"));
    if (!d.dockerd_never) {
      loop_->after_ms(d.dockerd_delay_ms, [this, serial] { on_dockerd_listen(serial); });
      if (d.answer_delay_ms > d.dockerd_delay_ms + d.listen_gap_ms)
        loop_->after_ms(d.answer_delay_ms, [this, serial] { on_dockerd_answer(serial); });
    }
    if (d.dockerd_exit_after_ms >= 0)
      loop_->after_ms(d.dockerd_exit_after_ms, [this, serial] { on_dockerd_exit(serial); });
  }
  if (d.exit_after_ms >= 0) {
    const int code = d.exit_code;
    loop_->after_ms(d.exit_after_ms, [this, serial, code] { on_main_exit(serial, code); });
  }
}

void Runtime::send_signal(Container& c, int sig) {
  if (sig == 0) return;
  if (c.status == Status::created || sig == SIGKILL) return stop(c);  // no marker
  const bool terminates = sig == SIGINT || (sig == SIGTERM && !c.plan.d.ignore_term);
  if (!terminates) return;
  init_log(c, std::string("shutdown requested by ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
  const uint64_t serial = c.serial;
  const int code = 128 + sig;
  loop_->after_ms(kTermDelayMs, [this, serial, code] { on_main_exit(serial, code); });
}

void Runtime::stop(Container& c) {
  c.status = Status::stopped;
  c.dockerd.reset();  // the sandbox is gone: its socket stops answering (the file stays)
}

void Runtime::forget(Container& c) {
  if (c.socket_created) ::unlink(c.plan.relay_socket.c_str());
  by_serial_.erase(c.serial);
  const auto it = table_.find(c.id);
  table_.erase(it);  // destroys `c`
}

// sandbox-init ends: its relay socket goes before init.exit appears, as in the real one.
void Runtime::on_main_exit(uint64_t serial, int code) {
  Container* c = by_serial(serial);
  if (!c || c->status != Status::running) return;
  stop(*c);
  if (c->socket_created) {
    ::unlink(c->plan.relay_socket.c_str());
    c->socket_created = false;
    init_log(*c, "relay: removed " + c->plan.relay_socket);
  }
  init_log(*c, "exiting with status " + std::to_string(code));
  write_marker(c->plan.status_dir, "init.exit", exit_json(code));
}

void Runtime::on_dockerd_listen(uint64_t serial) {
  Container* c = by_serial(serial);
  if (!c || c->status != Status::running || c->dockerd_dead) return;
  if (c->plan.relay_socket.empty()) {
    init_log(*c, "relay: the relay socket is not in a directory mounted from the host");
    return;
  }
  auto dockerd = std::make_unique<FakeDockerd>(*loop_, c->plan.d.ping, c->plan.relay_socket);
  std::string err;
  const int64_t gap = c->plan.d.listen_gap_ms;
  if (!(gap > 0 ? dockerd->bind_only(err) : dockerd->listen(err))) {
    init_log(*c, "relay: " + err);
    return;
  }
  c->dockerd = std::move(dockerd);
  c->socket_created = true;
  if (gap > 0) {
    loop_->after_ms(gap, [this, serial] { on_relay_listen(serial); });
    return;
  }
  if (c->plan.d.answer_delay_ms <= c->plan.d.dockerd_delay_ms) on_dockerd_answer(serial);
}

// listen_gap_ms: the bound socket starts listening (and answering, unless answer_delay_ms
// holds it back longer).
void Runtime::on_relay_listen(uint64_t serial) {
  Container* c = by_serial(serial);
  if (!c || !c->dockerd) return;
  std::string err;
  if (!c->dockerd->listen(err)) {
    init_log(*c, "relay: " + err);
    return;
  }
  if (c->plan.d.answer_delay_ms <= c->plan.d.dockerd_delay_ms + c->plan.d.listen_gap_ms) on_dockerd_answer(serial);
}

void Runtime::on_dockerd_answer(uint64_t serial) {
  Container* c = by_serial(serial);
  if (!c || !c->dockerd) return;
  c->dockerd->start_answering();
  dockerd_log(*c, logrus("info", "API listen on " + c->plan.dockerd_socket));
  append_line(join_path(root_, kReadyLog), c->id + " " + std::to_string(unix_now_us()));
}

void Runtime::on_dockerd_exit(uint64_t serial) {
  Container* c = by_serial(serial);
  if (!c || c->status != Status::running || c->dockerd_dead) return;
  c->dockerd_dead = true;
  if (c->dockerd) {
    c->dockerd.reset();
    ::unlink(c->plan.relay_socket.c_str());
    c->socket_created = false;
  }
  dockerd_log(*c, "failed to start daemon: Devices cgroup isn't mounted");
  write_marker(c->plan.status_dir, "dockerd.exit", exit_json(1));
  init_log(*c, "dockerd exited on its own (exit_code 1); the main child keeps running");
}

}  // namespace fake_runsc
