// The subset of the OCI runtime spec (v1.0.2, what Debian's runsc speaks) the agent writes,
// as plain types serialised with cereal under the spec's exact field names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "json_out.hpp"

namespace sandbox_agent::oci {

using json::make_nvp;
using json::save_optional;

struct User {
  std::uint32_t uid = 0, gid = 0;
  template <class A> void save(A& ar) const { ar(make_nvp("uid", uid), make_nvp("gid", gid)); }
};

struct Capabilities {
  std::vector<std::string> caps;  // bounding, effective, permitted
  bool inheritable = true;        // also inheritable (else that set is empty)
  template <class A> void save(A& ar) const {
    static const std::vector<std::string> none;
    ar(make_nvp("bounding", caps), make_nvp("effective", caps),
       make_nvp("inheritable", inheritable ? caps : none), make_nvp("permitted", caps));
  }
};

struct Rlimit {
  std::string type;
  std::uint64_t hard = 0, soft = 0;
  template <class A> void save(A& ar) const {
    ar(make_nvp("type", type), make_nvp("hard", hard), make_nvp("soft", soft));
  }
};

struct Process {
  bool terminal = false;
  User user;
  std::vector<std::string> args, env;
  std::string cwd = "/";
  Capabilities capabilities;
  std::vector<Rlimit> rlimits;
  bool no_new_privileges = false;
  template <class A> void save(A& ar) const {
    ar(make_nvp("terminal", terminal), make_nvp("user", user), make_nvp("args", args),
       make_nvp("env", env), make_nvp("cwd", cwd), make_nvp("capabilities", capabilities),
       make_nvp("rlimits", rlimits), make_nvp("noNewPrivileges", no_new_privileges));
  }
};

struct Root {
  std::string path;
  bool readonly = true;
  template <class A> void save(A& ar) const {
    ar(make_nvp("path", path), make_nvp("readonly", readonly));
  }
};

struct Mount {
  std::string destination, type, source;
  std::vector<std::string> options;
  template <class A> void save(A& ar) const {
    ar(make_nvp("destination", destination), make_nvp("type", type), make_nvp("source", source));
    if (!options.empty()) ar(make_nvp("options", options));
  }
};

struct Namespace {
  std::string type;
  std::string path;  // empty: a new one
  template <class A> void save(A& ar) const {
    ar(make_nvp("type", type));
    if (!path.empty()) ar(make_nvp("path", path));
  }
};

struct CpuResources {
  std::int64_t quota = 0;
  std::uint64_t period = 0;
  template <class A> void save(A& ar) const {
    ar(make_nvp("quota", quota), make_nvp("period", period));
  }
};

struct LimitResource {  // memory.limit and pids.limit share the shape
  std::int64_t limit = 0;
  template <class A> void save(A& ar) const { ar(make_nvp("limit", limit)); }
};

struct Resources {
  std::optional<CpuResources> cpu;
  std::optional<LimitResource> memory, pids;
  bool empty() const { return !cpu && !memory && !pids; }
  template <class A> void save(A& ar) const {
    save_optional(ar, "cpu", cpu);
    save_optional(ar, "memory", memory);
    save_optional(ar, "pids", pids);
  }
};

struct Linux {
  std::vector<Namespace> namespaces;
  Resources resources;
  template <class A> void save(A& ar) const {
    ar(make_nvp("namespaces", namespaces));
    if (!resources.empty()) ar(make_nvp("resources", resources));
  }
};

struct Spec {
  std::string oci_version = "1.0.2";
  Process process;
  Root root;
  std::string hostname;
  std::vector<Mount> mounts;
  std::vector<std::pair<std::string, std::string>> annotations;
  Linux linux_;
  template <class A> void save(A& ar) const {
    ar(make_nvp("ociVersion", oci_version), make_nvp("process", process), make_nvp("root", root),
       make_nvp("hostname", hostname), make_nvp("mounts", mounts),
       make_nvp("annotations", json::StringMap{annotations}), make_nvp("linux", linux_));
  }
};

}  // namespace sandbox_agent::oci
