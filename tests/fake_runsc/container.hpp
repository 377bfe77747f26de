// One fake sandbox as the daemon keeps it in memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "fake_dockerd.hpp"
#include "spec.hpp"

namespace fake_runsc {

enum class Status : uint8_t { created, running, stopped };

inline const char* status_name(Status s) {
  switch (s) {
    case Status::created:
      return "created";
    case Status::running:
      return "running";
    default:
      return "stopped";
  }
}

struct Container {
  std::string id;
  std::string bundle;
  uint64_t serial = 0;  // unique for the daemon's life; timers refer to it
  int64_t created_unix_ns = 0;
  Status status = Status::created;
  Plan plan;
  std::unique_ptr<FakeDockerd> dockerd;  // from the socket's bind to dockerd's end
  bool dockerd_dead = false;             // dockerd_exit_after_ms fired
  bool socket_created = false;           // the relay socket file is ours to remove
};

}  // namespace fake_runsc
