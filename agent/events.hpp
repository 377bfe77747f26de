// State changes flow out of the supervisor to whoever listens: socket `watch` clients,
// held `launch … wait` replies, the spool's status files, embedding programs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sandbox.hpp"

namespace sandbox_agent {

// Subscribers of every sandbox's events (watchers, the spool, pools) are few; subscribers of
// one sandbox's (a held `launch … wait` reply each) can be thousands, so they are kept by id:
// an event reaches its own sandbox's subscribers without passing every other one.
class EventBus {
 public:
  using Handler = std::function<void(const StateEvent&, const Sandbox&)>;

  // Every sandbox's events.
  std::uint64_t subscribe(Handler h) {
    all_.push_back({next_, std::make_shared<Handler>(std::move(h))});
    return next_++;
  }
  // Only the events of sandbox `id`.
  std::uint64_t subscribe(const std::string& id, Handler h) {
    by_id_[id].push_back({next_, std::make_shared<Handler>(std::move(h))});
    id_of_.emplace(next_, id);
    return next_++;
  }
  void unsubscribe(std::uint64_t token) {
    // Entries are only cleared here: lists are compacted once no publish is walking them.
    auto clear = [token](std::vector<Entry>& list) {
      for (auto& e : list)
        if (e.token == token) e.handler.reset();
    };
    if (auto it = id_of_.find(token); it != id_of_.end()) {
      if (auto list = by_id_.find(it->second); list != by_id_.end()) clear(list->second);
      dirty_ids_.push_back(std::move(it->second));
      id_of_.erase(it);
    } else {
      clear(all_);
    }
    if (depth_ == 0) compact();
  }
  void publish(const StateEvent& e, const Sandbox& sb) {
    ++depth_;
    // By index, and each handler held while it runs: handlers may subscribe and unsubscribe.
    for (std::size_t i = 0; i < all_.size(); ++i)
      if (auto h = all_[i].handler) (*h)(e, sb);
    if (auto it = by_id_.find(e.id); it != by_id_.end()) {
      auto& list = it->second;  // stays valid: nothing is erased from by_id_ while depth_ > 0
      for (std::size_t i = 0; i < list.size(); ++i)
        if (auto h = list[i].handler) (*h)(e, sb);
    }
    if (--depth_ == 0) compact();
  }
  std::size_t size() const { return all_.size() + id_of_.size(); }

 private:
  struct Entry {
    std::uint64_t token;
    std::shared_ptr<Handler> handler;
  };
  void compact() {
    std::erase_if(all_, [](const Entry& e) { return !e.handler; });
    for (const auto& id : dirty_ids_) {
      auto it = by_id_.find(id);
      if (it == by_id_.end()) continue;
      std::erase_if(it->second, [](const Entry& e) { return !e.handler; });
      if (it->second.empty()) by_id_.erase(it);
    }
    dirty_ids_.clear();
  }
  std::vector<Entry> all_;
  std::unordered_map<std::string, std::vector<Entry>> by_id_;
  std::unordered_map<std::uint64_t, std::string> id_of_;  // token -> id, for subscribe(id, …)
  std::vector<std::string> dirty_ids_;                     // ids with cleared entries to compact
  std::uint64_t next_ = 1;
  int depth_ = 0;
};

}  // namespace sandbox_agent
