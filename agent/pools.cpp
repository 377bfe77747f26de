#include "pools.hpp"

#include <asio/post.hpp>

#include <algorithm>

#include "log.hpp"

namespace sandbox_agent {

namespace {

constexpr Millis kFirstBackoff{500};
constexpr Millis kMaxBackoff{60000};

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

struct Pools::State {
  explicit State(asio::any_io_executor ex, const PoolConfig& c) : config(c), timer(std::move(ex)) {}
  const PoolConfig& config;
  unsigned failed_in_a_row = 0;
  Clock::time_point next_attempt{};
  std::optional<std::int64_t> retry_at_us;
  std::string last_error;
  unsigned launching = 0;  // launch calls not yet answered
  bool timer_armed = false;
  asio::steady_timer timer;
};

Pools::Pools(asio::any_io_executor ex, const Config& config, Supervisor& supervisor, EventBus& events)
    : ex_(ex), config_(config), supervisor_(supervisor), events_(events) {
  for (const auto& p : config_.pools) pools_.push_back(std::make_unique<State>(ex_, p));
}

Pools::~Pools() { stop(); }

void Pools::start() {
  for (const auto& id : supervisor_.unwanted_pool_members()) {
    spdlog::info("pool member {} is not wanted by this configuration (its pool, template or size changed): stopping it", id);
    (void)supervisor_.stop(id, 10000);
  }
  if (pools_.empty()) return;
  running_ = true;
  token_ = events_.subscribe([this](const StateEvent& e, const Sandbox& sb) { on_event(e, sb); });
  for (auto& st : pools_) {
    auto m = supervisor_.pool_members(st->config.name, st->config.template_hash);
    spdlog::info("pool {}: size {}, {} ready and {} warming at start", st->config.name, st->config.size, m.ready, m.warming);
    top_up(*st);
  }
}

void Pools::stop() {
  running_ = false;
  if (token_) events_.unsubscribe(std::exchange(token_, 0));
  for (auto& st : pools_) st->timer.cancel();
}

std::vector<Pools::Info> Pools::info() const {
  std::vector<Info> out;
  for (const auto& st : pools_) {
    auto m = supervisor_.pool_members(st->config.name, st->config.template_hash);
    out.push_back({st->config.name, st->config.size, m.ready, m.warming + st->launching, st->failed_in_a_row,
                   st->failed_in_a_row && st->next_attempt > Clock::now() ? st->retry_at_us : std::nullopt,
                   st->last_error});
  }
  return out;
}

void Pools::on_event(const StateEvent& e, const Sandbox& sb) {
  if (sb.pool.empty()) return;
  auto it = std::find_if(pools_.begin(), pools_.end(), [&](auto& st) { return st->config.name == sb.pool; });
  if (it == pools_.end()) return;
  State& st = **it;
  if (sb.pool_start == PoolStart::waiting) {
    if (e.state == SandboxState::ready) {
      if (st.failed_in_a_row) spdlog::info("pool {}: {} is ready; the pool is healthy again", st.config.name, sb.id);
      st.failed_in_a_row = 0;
      st.last_error.clear();
    } else if (e.state == SandboxState::failed) {
      failed(st, sb.id + " failed (" + sb.reason + "): " + first_line(sb.log_tail));
    } else if (!is_terminal(e.state)) {
      return;
    }
  } else if (!(sb.pool_start == PoolStart::warm && e.state == SandboxState::ready)) {
    return;  // a claimed or cold sandbox's own life is not the pool's
  }
  // Not from inside the publish: a launch changes what the publisher may be walking.
  asio::post(ex_, [this, state = &st] {
    if (running_) top_up(*state);
  });
}

void Pools::failed(State& st, std::string why) {
  ++st.failed_in_a_row;
  auto backoff = std::min<Millis>(kMaxBackoff, kFirstBackoff * (1u << std::min(st.failed_in_a_row - 1, 7u)));
  st.next_attempt = Clock::now() + backoff;
  st.retry_at_us = now_unix_us() + std::chrono::duration_cast<std::chrono::microseconds>(backoff).count();
  st.last_error = std::move(why);
  spdlog::warn("pool {}: {}; {} failure{} in a row, next member in {} ms", st.config.name, st.last_error,
               st.failed_in_a_row, st.failed_in_a_row == 1 ? "" : "s", backoff.count());
}

void Pools::top_up(State& st) {
  if (!running_) return;
  auto m = supervisor_.pool_members(st.config.name, st.config.template_hash);
  unsigned have = m.ready + m.warming + st.launching;
  if (have >= st.config.size) return;
  if (Clock::now() < st.next_attempt) {
    if (!st.timer_armed) {
      st.timer_armed = true;
      st.timer.expires_at(st.next_attempt);
      st.timer.async_wait([this, state = &st](std::error_code ec) {
        state->timer_armed = false;
        if (!ec && running_) top_up(*state);
      });
    }
    return;
  }
  // A pool that has been failing tries one member at a time until one is ready.
  unsigned want = st.failed_in_a_row ? (m.warming + st.launching == 0 ? 1u : 0u) : st.config.size - have;
  for (unsigned i = 0; i < want; ++i) asio::co_spawn(ex_, launch_one(&st), asio::detached);
}

awaitable<void> Pools::launch_one(State* st) {
  ++st->launching;
  auto r = co_await supervisor_.launch_pool_member(st->config);
  --st->launching;
  if (!r) {
    failed(*st, "launching a member: " + r.error().describe());
    top_up(*st);  // arms the retry
  }
}

}  // namespace sandbox_agent
