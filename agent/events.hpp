// State changes flow out of the supervisor to whoever listens: socket `watch` clients,
// held `launch … wait` replies, the spool's status files, embedding programs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "sandbox.hpp"

namespace sandbox_agent {

class EventBus {
 public:
  using Handler = std::function<void(const StateEvent&, const Sandbox&)>;

  std::uint64_t subscribe(Handler h) {
    handlers_.emplace_back(next_, std::make_shared<Handler>(std::move(h)));
    return next_++;
  }
  void unsubscribe(std::uint64_t token) {
    for (auto& [t, h] : handlers_)
      if (t == token) h.reset();  // compacted after the current publish
    if (depth_ == 0) compact();
  }
  void publish(const StateEvent& e, const Sandbox& sb) {
    ++depth_;
    for (std::size_t i = 0; i < handlers_.size(); ++i)  // handlers may subscribe meanwhile
      if (auto h = handlers_[i].second) (*h)(e, sb);
    if (--depth_ == 0) compact();
  }
  std::size_t size() const { return handlers_.size(); }

 private:
  void compact() { std::erase_if(handlers_, [](auto& p) { return !p.second; }); }
  std::vector<std::pair<std::uint64_t, std::shared_ptr<Handler>>> handlers_;
  std::uint64_t next_ = 1;
  int depth_ = 0;
};

}  // namespace sandbox_agent
