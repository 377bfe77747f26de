#include "mounts.hpp"

#include "files.hpp"

namespace fake_runsc {

std::string host_path(const std::vector<MountView>& mounts, std::string_view path) {
  const MountView* best = nullptr;
  for (const auto& m : mounts) {
    std::string_view dest = m.destination;
    while (dest.size() > 1 && dest.back() == '/') dest.remove_suffix(1);
    const bool covers = path == dest || (path.starts_with(dest) && path.size() > dest.size() &&
                                         (path[dest.size()] == '/' || dest == "/"));
    if (covers && (!best || dest.size() > best->destination.size())) best = &m;
  }
  if (!best) return {};
  std::string_view dest = best->destination;
  while (dest.size() > 1 && dest.back() == '/') dest.remove_suffix(1);
  std::string rest(path.substr(dest.size()));
  return rest.empty() ? std::string(best->source)
                      : join_path(best->source, std::string_view(rest).substr(rest[0] == '/'));
}

std::string exec_host_path(const Plan& plan, std::string_view path) {
  if (path.empty() || path[0] != '/') return std::string(path);
  std::vector<MountView> mounts;
  for (const auto& [dest, source] : plan.mounts) mounts.push_back({dest, source});
  auto host = host_path(mounts, path);
  return host.empty() ? std::string(path) : host;
}

}  // namespace fake_runsc
