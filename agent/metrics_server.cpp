#include "metrics_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <map>

#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read_until.hpp>
#include <asio/write.hpp>

#include "log.hpp"
#include "paths.hpp"

namespace sandbox_agent {

namespace {

constexpr std::size_t kMaxHead = 8192;
constexpr Millis kHeadTimeout{5000};
constexpr std::size_t kMaxClients = 16;

using unix_protocol = asio::local::stream_protocol;
using tcp = asio::ip::tcp;

// A Unix socket path that something still answers on is not ours to replace.
bool someone_listens(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  path.copy(sa.sun_path, sizeof sa.sun_path - 1);
  bool answers = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  ::close(fd);
  return answers;
}

}  // namespace

struct MetricsServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::any_io_executor ex, std::function<std::string()> r)
      : ex(ex), render(std::move(r)), unix_acceptor(ex), tcp_acceptor(ex), all_returned(ex) {}

  // Counts a coroutine while it runs, so that shutdown can wait for them (see wait_closed).
  struct Running {
    explicit Running(Impl& i) : impl(i.shared_from_this()) { ++impl->running; }
    ~Running() {
      if (--impl->running == 0) impl->all_returned.notify();
    }
    std::shared_ptr<Impl> impl;
  };

  template <class Acceptor>
  awaitable<void> accept_loop(Acceptor& acceptor) {
    Running running(*this);
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
      if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor || closed) co_return;
      if (ec) {  // EMFILE and friends: back off briefly instead of spinning
        spdlog::warn("metrics: accept failed: {}", ec.message());
        asio::steady_timer t(ex, Millis(50));
        co_await t.async_wait(use_nothrow);
        continue;
      }
      // Full: the oldest client still silent about its request makes room (it was going to
      // be closed at its deadline anyway), so idle connections cannot lock scrapers out.
      // With every one of them being answered, this one closes here: scrapes are retried.
      if (clients >= kMaxClients && !close_oldest_silent()) continue;
      asio::co_spawn(ex, serve(std::make_shared<typename Acceptor::protocol_type::socket>(std::move(socket))),
                     asio::detached);
    }
  }

  template <class Socket>
  awaitable<void> serve(std::shared_ptr<Socket> socket) {
    Running running(*this);
    ++clients;
    auto token = ++next_client;
    auto reading = std::make_shared<bool>(true);  // still waiting for its request's head
    closers[token] = [weak = std::weak_ptr<Socket>(socket)] {
      if (auto s = weak.lock()) {
        std::error_code ignored;
        s->close(ignored);
      }
    };
    silent[token] = reading;
    struct Leave {
      Impl& impl;
      std::uint64_t token;
      ~Leave() {
        --impl.clients;
        impl.closers.erase(token);
        impl.silent.erase(token);
      }
    } leave{*this, token};
    // The head's deadline. `reading` tells its handler whether it still applies: one that
    // fired as the head arrived may run after cancel() and must not cut the answer short.
    asio::steady_timer deadline(ex, kHeadTimeout);
    deadline.async_wait([weak = std::weak_ptr<Socket>(socket), reading](std::error_code ec) {
      if (auto s = weak.lock(); s && !ec && *reading) {
        std::error_code ignored;
        s->close(ignored);
      }
    });
    std::string head;
    std::size_t end = std::string::npos;
    char buf[2048];
    while (end == std::string::npos && head.size() < kMaxHead && !closed) {
      auto [ec, n] = co_await socket->async_read_some(asio::buffer(buf), use_nothrow);
      if (ec) break;
      head.append(buf, n);
      end = head.find("\r\n\r\n");
    }
    *reading = false;
    deadline.cancel();
    if (closed || !socket->is_open()) co_return;
    auto answer = answer_metrics_request(head, end != std::string::npos);
    if (answer.status == 0) answer = head.size() >= kMaxHead ? HttpAnswer{431, "Request Header Fields Too Large"}
                                                             : HttpAnswer{400, "Bad Request"};
    std::string body = answer.body ? render() : std::string(answer.reason) + "\n";
    std::string response = "HTTP/1.1 " + std::to_string(answer.status) + " " + std::string(answer.reason) + "\r\n";
    response += answer.body ? "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                            : "Content-Type: text/plain; charset=utf-8\r\n";
    if (answer.status == 405) response += "Allow: GET\r\n";
    response += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    response += body;
    // The write and the drain are bounded too: a client that stops reading is closed.
    asio::steady_timer write_deadline(ex, kHeadTimeout);
    write_deadline.async_wait([weak = std::weak_ptr<Socket>(socket)](std::error_code ec) {
      if (auto s = weak.lock(); s && !ec) {
        std::error_code ignored;
        s->close(ignored);
      }
    });
    auto [write_ec, written] = co_await asio::async_write(*socket, asio::buffer(response), use_nothrow);
    // Closing with unread input would reset the connection and could destroy the answer in
    // flight (a refused head that was longer than we read): end our side, then read what
    // the client still sends until it closes, within the same deadline and at most 64 KiB.
    std::error_code ignored;
    socket->shutdown(asio::socket_base::shutdown_send, ignored);
    for (std::size_t drained = 0; !write_ec && drained < (64u << 10);) {
      auto [ec, n] = co_await socket->async_read_some(asio::buffer(buf), use_nothrow);
      if (ec) break;
      drained += n;
    }
    write_deadline.cancel();
    socket->close(ignored);
  }

  asio::any_io_executor ex;
  std::function<std::string()> render;
  unix_protocol::acceptor unix_acceptor;
  tcp::acceptor tcp_acceptor;
  std::string owned_path;
  std::size_t clients = 0, running = 0;
  std::uint64_t next_client = 0;
  std::map<std::uint64_t, std::function<void()>> closers;  // one per client: close() ends them
  std::map<std::uint64_t, std::shared_ptr<bool>> silent;  // per client: no whole request head yet

  bool close_oldest_silent() {
    for (auto& [token, reading] : silent)  // tokens grow: the first is the oldest
      if (*reading) {
        *reading = false;
        closers[token]();
        return true;
      }
    return false;
  }
  bool closed = false;
  Wake all_returned;
};

MetricsServer::MetricsServer(asio::any_io_executor ex, std::function<std::string()> render)
    : impl_(std::make_shared<Impl>(ex, std::move(render))) {}

MetricsServer::~MetricsServer() { close(); }

Status MetricsServer::listen(const MetricsEndpoint& ep, unsigned group) {
  if (impl_->closed) return Ok{};  // shut down before start-up got here: nothing to open
  std::error_code ec;
  if (ep.kind == MetricsEndpoint::unix_socket) {
    struct stat st {};
    if (::lstat(ep.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return make_error(ErrorCode::internal, ep.path + " exists and is not a socket; refusing to replace it", "/metrics/listen");
      if (someone_listens(ep.path))
        return make_error(ErrorCode::internal, "something already listens on " + ep.path, "/metrics/listen");
      ::unlink(ep.path.c_str());  // stale, from an agent that did not exit cleanly
    }
    auto& a = impl_->unix_acceptor;
    a.open(unix_protocol(), ec);
    if (!ec) a.bind(unix_protocol::endpoint(ep.path), ec);
    if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return make_error(ErrorCode::internal, "metrics: listening on " + ep.path + ": " + ec.message(), "/metrics/listen");
    impl_->owned_path = ep.path;
    if (::chmod(ep.path.c_str(), 0660) != 0 || ::chown(ep.path.c_str(), 0, group) != 0)
      spdlog::warn("cannot set the mode/owner of {}: {}", ep.path, paths::errno_text());
    spdlog::info("metrics on unix:{} (GET /metrics)", ep.path);
  } else if (ep.kind == MetricsEndpoint::tcp) {
    auto address = asio::ip::make_address(ep.address, ec);
    if (ec) return make_error(ErrorCode::invalid_request, "not an IP address: " + ep.address, "/metrics/listen");
    tcp::endpoint where(address, ep.port);
    auto& a = impl_->tcp_acceptor;
    a.open(where.protocol(), ec);
    if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) a.bind(where, ec);
    if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
    auto shown = ep.address.find(':') == std::string::npos ? ep.address : "[" + ep.address + "]";
    if (ec)
      return make_error(ErrorCode::internal, "metrics: listening on " + shown + ":" + std::to_string(ep.port) + ": " + ec.message(),
                        "/metrics/listen");
    spdlog::info("metrics on http://{}:{}/metrics", shown, a.local_endpoint().port());
  }
  return Ok{};
}

void MetricsServer::start() {
  auto& i = *impl_;
  if (i.closed) return;
  if (i.unix_acceptor.is_open()) asio::co_spawn(i.ex, i.accept_loop(i.unix_acceptor), asio::detached);
  if (i.tcp_acceptor.is_open()) asio::co_spawn(i.ex, i.accept_loop(i.tcp_acceptor), asio::detached);
}

void MetricsServer::close() {
  auto& i = *impl_;
  i.closed = true;
  std::error_code ignored;
  if (i.unix_acceptor.is_open()) i.unix_acceptor.close(ignored);
  if (i.tcp_acceptor.is_open()) i.tcp_acceptor.close(ignored);
  if (!i.owned_path.empty()) ::unlink(i.owned_path.c_str());
  i.owned_path.clear();
  auto closers = std::move(i.closers);
  for (auto& [token, close_client] : closers) close_client();
}

awaitable<void> MetricsServer::wait_closed(Millis bound) {
  auto deadline = Clock::now() + bound;
  while (impl_->running > 0 && Clock::now() < deadline) co_await impl_->all_returned.wait_until(deadline);
}

}  // namespace sandbox_agent
