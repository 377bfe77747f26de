#include "cgroup.hpp"

#include <cerrno>
#include <fcntl.h>
#include <sstream>
#include <vector>

#include "fd.hpp"

namespace sinit {

namespace {

bool read_file(const std::string& path, std::string* out, int* err) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    *err = errno;
    return false;
  }
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *err = errno;
      return false;
    }
    if (n == 0) return true;
    out->append(buf, static_cast<size_t>(n));
  }
}

bool has_option(const std::string& comma_list, const std::string& want) {
  std::istringstream in(comma_list);
  std::string item;
  while (std::getline(in, item, ','))
    if (item == want) return true;
  return false;
}

}  // namespace

std::optional<std::string> find_devices_cgroup(const std::string& mountinfo) {
  // Line: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
  std::istringstream lines(mountinfo);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    std::string w;
    while (fields >> w) f.push_back(w);
    size_t sep = 0;
    while (sep < f.size() && f[sep] != "-") ++sep;
    if (sep < 5 || sep + 3 >= f.size()) continue;  // malformed line
    if (f[sep + 1] == "cgroup" && has_option(f[sep + 3], "devices")) return f[4];
  }
  return std::nullopt;
}

CgroupDecision decide_cgroup_strategy(CgroupMode mode, const std::string& mountinfo_path) {
  CgroupDecision d;
  switch (mode) {
    case CgroupMode::Sandbox:
      d.reason = "--cgroup sandbox: plain dockerd, the sandbox provides a devices cgroup";
      return d;
    case CgroupMode::HostBind:
      d.reason = "--cgroup host-bind: plain dockerd, the host's cgroup tree is bind-mounted";
      return d;
    case CgroupMode::None:
      d.reason = "--cgroup none: plain dockerd, no cgroup workaround";
      return d;
    case CgroupMode::Userns:
      d.userns = true;
      d.reason = "--cgroup userns: dockerd in a nested user namespace";
      return d;
    case CgroupMode::Auto:
      break;
  }
  std::string text;
  int err = 0;
  if (!read_file(mountinfo_path, &text, &err)) {
    d.userns = true;
    d.reason = "--cgroup auto: cannot read " + mountinfo_path + " (" + errno_str(err) +
               "); using a nested user namespace";
    return d;
  }
  if (auto where = find_devices_cgroup(text)) {
    d.reason = "--cgroup auto: devices cgroup mounted at " + *where + "; plain dockerd";
  } else {
    d.userns = true;
    d.reason = "--cgroup auto: no devices cgroup mounted; dockerd in a nested user namespace";
  }
  return d;
}

}  // namespace sinit
