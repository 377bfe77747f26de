#include "netns.hpp"

#include <fcntl.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "paths.hpp"

namespace sandbox_agent::netns {

namespace {
Status fail(const std::string& what) { return make_error(ErrorCode::internal, what + ": " + paths::errno_text()); }

// A new namespace's lo is down; runsc copies only interfaces that are up into its netstack,
// and dockerd inside wants 127.0.0.1.
bool loopback_up() {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = ::ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  ok = ok && ::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  ::close(s);
  return ok;
}
}  // namespace

Status create(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
  if (fd < 0) return fail("creating " + path);
  ::close(fd);
  int own = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (own < 0) {
    auto s = fail("opening this thread's network namespace");
    ::unlink(path.c_str());
    return s;
  }
  Status result = Ok{};
  if (::unshare(CLONE_NEWNET) != 0) {
    result = fail("unshare(CLONE_NEWNET)");
  } else {
    if (::mount("/proc/thread-self/ns/net", path.c_str(), nullptr, MS_BIND, nullptr) != 0)
      result = fail("pinning the namespace at " + path);
    else if (!loopback_up())
      result = fail("bringing up lo in the new namespace");
    // Back home whatever happened: everything else this thread does is in the host's namespace.
    if (::setns(own, CLONE_NEWNET) != 0) {
      ::close(own);
      std::abort();  // the reactor thread stranded in a sandbox's namespace: never go on
    }
  }
  ::close(own);
  if (!result) ::unlink(path.c_str());
  return result;
}

Status remove(const std::string& path) {
  while (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) {
  }
  if (errno != EINVAL && errno != ENOENT) return fail("unmounting " + path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return fail("removing " + path);
  return Ok{};
}

std::string ipv4_of(const std::string& path, const std::string& ifname) {
  int target = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) return {};
  int own = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (own < 0) {
    ::close(target);
    return {};
  }
  int s = -1;
  if (::setns(target, CLONE_NEWNET) == 0) {
    s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);  // a socket stays in the namespace it was made in
    if (::setns(own, CLONE_NEWNET) != 0) std::abort();    // never stay in a sandbox's namespace
  }
  ::close(target);
  ::close(own);
  if (s < 0) return {};
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  std::string out;
  if (::ioctl(s, SIOCGIFADDR, &ifr) == 0) {
    auto* addr = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
    char text[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &addr->sin_addr, text, sizeof text);
    out = text;
    if (::ioctl(s, SIOCGIFNETMASK, &ifr) == 0) {
      auto mask = ntohl(reinterpret_cast<sockaddr_in*>(&ifr.ifr_netmask)->sin_addr.s_addr);
      out.push_back('/');
      out += std::to_string(__builtin_popcount(mask));
    }
  }
  ::close(s);
  return out;
}

}  // namespace sandbox_agent::netns
