#include "sandbox_agent/status.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>

#include "status_json.hpp"

namespace sandbox_agent {


std::string_view to_string(SandboxState s) {
  switch (s) {
    case SandboxState::accepted: return "accepted";
    case SandboxState::creating: return "creating";
    case SandboxState::starting: return "starting";
    case SandboxState::probing: return "probing";
    case SandboxState::ready: return "ready";
    case SandboxState::stopping: return "stopping";
    case SandboxState::stopped: return "stopped";
    case SandboxState::failed: return "failed";
  }
  return "failed";
}

std::string_view to_string(PoolStart p) {
  switch (p) {
    case PoolStart::none: return "none";
    case PoolStart::waiting: return "waiting";
    case PoolStart::warm: return "warm";
    case PoolStart::cold: return "cold";
  }
  return "none";
}

std::optional<PoolStart> parse_pool_start(std::string_view s) {
  for (auto p : {PoolStart::none, PoolStart::waiting, PoolStart::warm, PoolStart::cold})
    if (to_string(p) == s) return p;
  return std::nullopt;
}

std::optional<SandboxState> parse_state(std::string_view s) {
  for (auto st : {SandboxState::accepted, SandboxState::creating, SandboxState::starting,
                  SandboxState::probing, SandboxState::ready, SandboxState::stopping,
                  SandboxState::stopped, SandboxState::failed})
    if (to_string(st) == s) return st;
  return std::nullopt;
}

std::int64_t now_unix_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string format_time(std::int64_t us) {
  std::int64_t frac = ((us % 1000000) + 1000000) % 1000000;  // floor, also before 1970
  std::time_t secs = static_cast<std::time_t>((us - frac) / 1000000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return buf;
}


std::string to_json(const SandboxStatus& status) { return json::to_json(json::StatusOut{status}); }
std::string to_json(const StateEvent& event) { return json::to_json(json::EventOut{event}); }

}  // namespace sandbox_agent
