#include "markers.hpp"

#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <unistd.h>

#include "fd.hpp"
#include "log.hpp"

namespace sinit {

bool write_exit_marker(const std::string& dir, const char* name, int exit_code) {
  if (dir.empty()) return true;
  std::string tmp = dir + "/." + name + ".tmp";
  std::string final_path = dir + "/" + name;
  char body[64];
  int len = std::snprintf(body, sizeof body, "{\"exit_code\":%d}\n", exit_code);

  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) {
    log_msg("cannot create %s: %s", tmp.c_str(), errno_str(errno).c_str());
    return false;
  }
  if (!write_all(fd.get(), body, static_cast<size_t>(len))) {
    log_msg("cannot write %s: %s", tmp.c_str(), errno_str(errno).c_str());
    ::unlink(tmp.c_str());
    return false;
  }
  fd.reset();  // close before rename: the watcher may open the file as soon as it appears
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    log_msg("cannot rename %s to %s: %s", tmp.c_str(), final_path.c_str(),
            errno_str(errno).c_str());
    ::unlink(tmp.c_str());
    return false;
  }
  log_msg("wrote %s: exit_code %d", final_path.c_str(), exit_code);
  return true;
}

void remove_stale_markers(const std::string& dir) {
  if (dir.empty()) return;
  for (const char* name : {kInitExitMarker, kDockerdExitMarker}) {
    std::string path = dir + "/" + name;
    if (::unlink(path.c_str()) == 0) log_msg("removed stale marker %s", path.c_str());
  }
}

}  // namespace sinit
