// The supervisor's part of warm pools: launching a member, and handing a ready one to a
// caller (a claim). When to launch members is Pools' (pools.hpp).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "log.hpp"
#include "paths.hpp"
#include "sandbox_agent/spec.hpp"
#include "supervisor.hpp"

namespace sandbox_agent {

namespace {

std::string pool_names(const Config& c) {
  std::string names;
  for (const auto& p : c.pools) names += (names.empty() ? "" : ", ") + p.name;
  return names.empty() ? "none configured" : names;
}

}  // namespace

awaitable<Result<std::string>> Supervisor::launch_pool_member(const PoolConfig& pool) {
  LaunchRequest r = pool.request;
  r.id = "pool-" + pool.name + "-" + new_sandbox_id().substr(3, 8);
  r.ttl_ms.reset();  // a lifetime starts at the claim
  PoolTag tag{pool.name, PoolStart::waiting, pool.template_hash};
  std::string origin = "pool:" + pool.name;  // named, as every argument of a co_await (g++ 12)
  co_return co_await launch_sandbox(std::move(r), std::move(origin), std::move(tag));
}

Supervisor::PoolMembers Supervisor::pool_members(const std::string& pool, std::uint64_t template_hash) const {
  PoolMembers m;
  for (const auto& [id, sb] : sandboxes_) {
    if (sb->pool != pool || sb->pool_start != PoolStart::waiting || sb->pool_template != template_hash) continue;
    if (sb->finished || is_terminal(sb->state) || sb->stop_requested) continue;
    if (sb->state == SandboxState::ready) ++m.ready;
    else ++m.warming;
  }
  return m;
}

std::vector<std::string> Supervisor::unwanted_pool_members() const {
  std::map<std::string, std::vector<const Sandbox*>> wanted;
  std::vector<std::string> out;
  for (const auto& [id, sb] : sandboxes_) {
    if (sb->pool_start != PoolStart::waiting || sb->finished || is_terminal(sb->state) || sb->stop_requested) continue;
    const auto* pc = config_.pool(sb->pool);
    if (!pc || pc->template_hash != sb->pool_template) out.push_back(id);
    else wanted[sb->pool].push_back(sb.get());
  }
  for (auto& [name, members] : wanted) {
    auto size = config_.pool(name)->size;
    if (members.size() <= size) continue;
    // Keep the oldest (closest to ready, or ready longest); the newest go.
    std::sort(members.begin(), members.end(),
              [](const Sandbox* a, const Sandbox* b) { return a->created_at_us < b->created_at_us; });
    for (std::size_t i = size; i < members.size(); ++i) out.push_back(members[i]->id);
  }
  return out;
}

awaitable<Result<std::string>> Supervisor::launch_from_pool(LaunchRequest request, std::string origin) {
  if (shutting_down_) co_return make_error(ErrorCode::overloaded, "the agent is shutting down");
  const auto* pc = config_.pool(request.pool);
  if (!pc) co_return make_error(ErrorCode::invalid_request, "no pool " + request.pool + " (pools: " + pool_names(config_) + ")", "/pool");
  if (request.socket_owner && !pc->request.docker.enabled)
    co_return make_error(ErrorCode::invalid_request, "pool " + pc->name + " runs no dockerd: there is no socket to own",
                         "/socket_owner");
  if (!request.id.empty())
    if (auto it = sandboxes_.find(request.id); it != sandboxes_.end() && !it->second->finished)
      co_return make_error(ErrorCode::exists,
                           "sandbox " + request.id + " exists (state " + std::string(to_string(it->second->state)) + ")",
                           "/id");
  // The member ready longest: the others may still be settling.
  SandboxPtr member;
  for (const auto& [id, sb] : sandboxes_)
    if (sb->pool == pc->name && sb->pool_start == PoolStart::waiting && sb->pool_template == pc->template_hash &&
        sb->state == SandboxState::ready && !sb->stop_requested && !sb->ended() &&
        (!member || sb->ready_at_us < member->ready_at_us))
      member = sb;
  if (member) co_return co_await claim(member, *pc, std::move(request), std::move(origin));

  // None ready: the template, cold, with the caller's own fields.
  LaunchRequest cold = pc->request;
  cold.id = request.id;
  if (!request.labels.empty()) cold.labels = request.labels;
  if (request.socket_owner) cold.socket_owner = request.socket_owner;
  if (request.ttl_ms) cold.ttl_ms = request.ttl_ms;
  spdlog::info("pool {} has no sandbox ready: launching its template cold", pc->name);
  PoolTag tag{pc->name, PoolStart::cold, pc->template_hash};
  co_return co_await launch_sandbox(std::move(cold), std::move(origin), std::move(tag));
}

awaitable<Result<std::string>> Supervisor::claim(SandboxPtr member, const PoolConfig& pool, LaunchRequest request,
                                                 std::string origin) {
  auto began = Clock::now();
  std::string id = request.id.empty() ? new_sandbox_id() : request.id;
  if (auto it = sandboxes_.find(id); it != sandboxes_.end()) {  // finished (checked above): its id is reused
    if (it->second->dir != id) paths::remove_file_and_staging(layout_.state_file(it->second->dir));
    sandboxes_.erase(it);
    std::erase(finished_order_, id);
  }
  // What the claim changes, kept to undo it if its record cannot be written.
  auto before_id = member->id;
  auto before_request = member->request;
  auto before_origin = member->origin;
  auto before_deadline = member->ttl_deadline_us;

  member->id = id;
  member->request.id = id;
  if (!request.labels.empty()) member->request.labels = std::move(request.labels);
  if (request.socket_owner) member->request.socket_owner = request.socket_owner;
  member->request.ttl_ms = request.ttl_ms ? request.ttl_ms : pool.request.ttl_ms;
  if (member->request.ttl_ms)
    member->ttl_deadline_us = now_unix_us() + static_cast<std::int64_t>(*member->request.ttl_ms) * 1000;
  member->origin = std::move(origin);
  member->pool_start = PoolStart::warm;
  sandboxes_.erase(before_id);
  sandboxes_[id] = member;
  if (unwritten_records_.erase(before_id)) unwritten_records_.insert(id);

  // The record (same file: its name is the member's) says whose it is before the caller hears.
  if (!co_await persist_now(member)) {
    sandboxes_.erase(id);
    member->id = before_id;
    member->request = std::move(before_request);
    member->origin = std::move(before_origin);
    member->ttl_deadline_us = before_deadline;
    member->pool_start = PoolStart::waiting;
    sandboxes_[before_id] = member;
    // What happened to it under the new id during the write goes back to its own.
    if (unwritten_records_.erase(id)) unwritten_records_.insert(before_id);
    std::replace(finished_order_.begin(), finished_order_.end(), id, before_id);
    co_return make_error(ErrorCode::internal, "cannot record the claim in " + layout_.state_dir() + ": " + member->log_tail);
  }
  if (member->request.socket_owner) apply_socket_owner(*member);
  ++counters_.accepted;
  metrics_.count(metrics_.pool_claims, pool.name);
  metrics_.pool_claim.observe(std::chrono::duration<double>(Clock::now() - began).count());
  spdlog::info("{} claimed from pool {} (member {}, ready {} ms before)", id, pool.name, before_id,
               member->ready_at_us ? (now_unix_us() - *member->ready_at_us) / 1000 : 0);
  member->wake.notify();  // its lifecycle now has a deadline to keep
  // It may have ended while the claim was written: the caller gets it as it is (its failure
  // was published under its new id), and no `ready` follows a `failed`.
  if (member->state == SandboxState::ready && !member->stop_requested)
    events_.publish({id, SandboxState::ready, "pool", now_unix_us(), {}}, *member);
  co_return id;
}

// A claim with socket_owner: the sockets directory and docker.sock become the caller's.
void Supervisor::apply_socket_owner(Sandbox& sb) {
  auto owner = sb.request.socket_owner.value_or(Owner{0, 0});
  auto dir = layout_.sockets_dir(sb.dir);
  auto sock = paths::join(dir, std::string(kDockerSocketName));
  struct stat st {};
  if (::lchown(dir.c_str(), owner.uid, owner.gid) != 0 ||
      (::lstat(sock.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && ::lchown(sock.c_str(), owner.uid, owner.gid) != 0))
    spdlog::warn("{} cannot give {} to {}:{}: {}", sb.id, dir, owner.uid, owner.gid, paths::errno_text());
}

}  // namespace sandbox_agent
