// The socket protocol: NDJSON lines in (parsed with simdjson), replies out (cereal).
// No I/O here; the socket intake frames lines and calls these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "exec_args.hpp"
#include "sandbox_agent/error.hpp"
#include "sandbox_agent/request.hpp"
#include "sandbox_agent/status.hpp"

namespace sandbox_agent::protocol {

// NDJSON framing: a byte stream in, complete lines out ("\n" or "\r\n" ended).
class LineFramer {
 public:
  explicit LineFramer(std::size_t max_line) : max_(max_line) {}
  void feed(std::string_view bytes) { buf_.append(bytes); }
  enum class Next { line, need_more, too_long };
  // The next complete line, without its end; the view is valid until the next call.
  // too_long: a line (complete or not) over max_line bytes: the rest cannot be trusted.
  Next next(std::string_view& line);
  std::size_t buffered() const { return buf_.size() - start_; }
  // Stream offset just past the last line returned (its newline included).
  std::uint64_t consumed() const { return consumed_; }

 private:
  std::uint64_t consumed_ = 0;
  std::string buf_;
  std::size_t start_ = 0;    // first byte not yet returned
  std::size_t scanned_ = 0;  // no newline before this offset
  std::size_t max_;
};

enum class Op { launch, status, list, stop, watch, stats, version, extend, logs, exec, cp, pools, metrics };

// A client's tag, echoed as given: a string or an integer.
using Tag = std::variant<std::monostate, std::string, std::int64_t>;

struct Message {
  Op op = Op::version;
  Tag tag;
  LaunchRequest request;  // launch
  bool wait_ready = false;  // launch
  std::string id;           // status, stop
  unsigned timeout_ms = 10000;  // stop
  std::uint64_t ttl_ms = 0;     // extend
  std::string source = "main";  // logs: main, dockerd, runsc
  ExecArgs exec;                // exec
  CopyArgs copy;                // cp
};

// How many descriptors an op takes with its line (SCM_RIGHTS): exec the client's stdin,
// stdout and stderr, cp the file to read from or write to.
std::size_t passed_fds(Op op);

struct ParseError {
  Error error;
  Tag tag;  // when the line carried one
};

// Parses one line (without its newline). Launch requests get the full request validation
// and policy. Errors come back with the tag, when there was one, to echo.
std::variant<Message, ParseError> parse_line(std::string_view line, const RequestPolicy& policy);

// Replies, one line each, newline included.
std::string reply_error(const Error& e, const Tag& tag);
std::string reply_launched(const std::string& id, SandboxState state, const Tag& tag);
std::string reply_launch_final(const SandboxStatus& s, const Tag& tag);
std::string reply_status(const SandboxStatus& s, const Tag& tag);
std::string reply_list(const std::vector<SandboxStatus>& all, const Tag& tag);
std::string reply_stop(const std::string& id, SandboxState state, const Tag& tag);
std::string reply_extend(const std::string& id, std::int64_t deadline_us, const Tag& tag);
// Sent with the log file's descriptor (SCM_RIGHTS).
std::string reply_logs(const std::string& id, const std::string& source, const std::string& path, const Tag& tag);
// exec: at once, then when the process has ended.
std::string reply_exec_started(const std::string& exec_id, const Tag& tag);
std::string reply_exec_ended(const std::string& exec_id, const ExecOutcome& o, const Tag& tag);
std::string reply_copied(const std::string& id, std::uint64_t bytes, const Tag& tag);
struct PoolInfo {
  std::string name;
  unsigned size = 0, ready = 0, warming = 0, failed_in_a_row = 0;
  std::optional<std::int64_t> retry_at_us;
  std::string last_error;
};
std::string reply_pools(const std::vector<PoolInfo>& pools, const Tag& tag);
std::string reply_ok(const Tag& tag);  // watch
std::string reply_stats(const Stats& s, const Tag& tag);
std::string reply_version(std::string_view version, const Tag& tag);
std::string reply_metrics(const std::string& text, const Tag& tag);  // the Prometheus text format
std::string event_line(const StateEvent& e);

}  // namespace sandbox_agent::protocol
