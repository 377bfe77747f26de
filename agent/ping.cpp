#include "ping.hpp"

#include <asio/local/stream_protocol.hpp>
#include <asio/write.hpp>

#include <charconv>
#include <memory>

namespace sandbox_agent {

namespace {
bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}
std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
}  // namespace

PingVerdict judge_ping_response(std::string_view r, bool eof) {
  auto head_end = r.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    if (eof) return {PingVerdict::bad, r.empty() ? "connection closed without a reply" : "truncated HTTP reply"};
    if (r.size() > 8192) return {PingVerdict::bad, "HTTP reply headers too large"};
    return {};
  }
  auto head = r.substr(0, head_end);
  auto line_end = head.find("\r\n");
  auto status_line = head.substr(0, line_end);
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12 || status_line[8] != ' ')
    return {PingVerdict::bad, "not an HTTP reply: " + std::string(status_line.substr(0, 64))};
  int code = 0;
  std::from_chars(status_line.data() + 9, status_line.data() + 12, code);

  std::size_t content_length = std::string_view::npos;
  for (std::size_t pos = line_end; pos != std::string_view::npos && pos < head.size();) {
    auto next = head.find("\r\n", pos + 2);
    auto line = head.substr(pos + 2, next == std::string_view::npos ? std::string_view::npos : next - pos - 2);
    pos = next;
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    if (iequals(trim(line.substr(0, colon)), "content-length")) {
      auto v = trim(line.substr(colon + 1));
      std::size_t n = 0;
      if (std::from_chars(v.data(), v.data() + v.size(), n).ec == std::errc()) content_length = n;
    }
  }
  auto body = r.substr(head_end + 4);
  if (content_length != std::string_view::npos) {
    if (body.size() < content_length) {
      if (eof) return {PingVerdict::bad, "truncated HTTP body"};
      return {};
    }
    body = body.substr(0, content_length);
  } else if (!eof) {
    return {};  // body runs to the end of the connection
  }
  if (code != 200) return {PingVerdict::bad, "HTTP " + std::to_string(code) + ": " + std::string(body.substr(0, 200))};
  if (trim(body) != "OK") return {PingVerdict::bad, "unexpected body: " + std::string(body.substr(0, 200))};
  return {PingVerdict::ok, {}};
}

awaitable<PingResult> ping_docker(std::string socket_path, Millis timeout) {
  using asio::local::stream_protocol;
  auto ex = co_await asio::this_coro::executor;
  struct Attempt {
    explicit Attempt(asio::any_io_executor ex) : sock(std::move(ex)) {}
    stream_protocol::socket sock;
    bool expired = false;
  };
  auto attempt = std::make_shared<Attempt>(ex);
  auto sock = std::shared_ptr<stream_protocol::socket>(attempt, &attempt->sock);
  // The timer cancels whichever operation is pending; each step checks `expired` too, for a
  // timer that fires between two operations. It cancels rather than closes: a descriptor
  // closed while Asio's io_uring backend still has an operation queued for it can be reused
  // by another probe's socket, and that operation would then read the other sandbox's reply
  // (a sandbox reported ready before its own dockerd answered; bench/ready_latency.py saw it).
  // It holds only a weak reference, so it is harmless if it fires after we are done.
  asio::steady_timer deadline(ex, timeout);
  deadline.async_wait([weak = std::weak_ptr(attempt)](std::error_code ec) {
    if (ec) return;
    if (auto a = weak.lock()) {
      a->expired = true;
      std::error_code ignored;
      a->sock.cancel(ignored);
    }
  });
  const bool& expired = attempt->expired;
  PingResult result;
  auto fail = [&](std::string what, std::error_code ec) {
    result.error = expired ? "no reply within " + std::to_string(timeout.count()) + " ms" : what + ": " + ec.message();
    result.timed_out = expired;
    result.refused = !expired && (ec == asio::error::connection_refused || ec == asio::error::not_found ||
                                  ec.value() == ENOENT);
  };

  const auto timed_out = asio::error::make_error_code(asio::error::timed_out);
  if (auto [ec] = co_await sock->async_connect(stream_protocol::endpoint(socket_path), use_nothrow); ec || expired) {
    fail("connect", ec ? ec : timed_out);
  } else if (auto [wec, wn] = co_await asio::async_write(*sock, asio::buffer(kPingRequest), use_nothrow); wec || expired) {
    fail("send", wec ? wec : timed_out);
  } else {
    std::string received;
    char buf[1024];
    for (;;) {
      auto [rec, n] = co_await sock->async_read_some(asio::buffer(buf), use_nothrow);
      received.append(buf, n);
      bool eof = rec == asio::error::eof;
      if ((rec && !eof) || expired) {
        fail("read", rec ? rec : timed_out);
        break;
      }
      auto verdict = judge_ping_response(received, eof);
      if (verdict.kind == PingVerdict::ok) {
        result.ok = true;
        break;
      }
      if (verdict.kind == PingVerdict::bad) {
        result.error = verdict.why;
        break;
      }
    }
  }
  deadline.cancel();
  std::error_code ignored;
  sock->close(ignored);
  co_return result;
}

}  // namespace sandbox_agent
