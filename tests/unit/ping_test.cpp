// Judging Docker's `GET /_ping` reply from the bytes received so far (agent/ping.hpp).
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "ping.hpp"

using namespace sandbox_agent;

namespace {

// What dockerd 20.10 answers to kPingRequest, byte for byte apart from the date.
const std::string kDockerdReply =
    "HTTP/1.1 200 OK\r\n"
    "Api-Version: 1.41\r\n"
    "Cache-Control: no-cache, no-store, must-revalidate\r\n"
    "Content-Length: 2\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Docker-Experimental: false\r\n"
    "Ostype: linux\r\n"
    "Pragma: no-cache\r\n"
    "Server: Docker/20.10.24+dfsg1 (linux)\r\n"
    "Date: Sun, 29 Nov 2026 08:47:49 GMT\r\n"
    "\r\n"
    "OK";

const char* kind_name(PingVerdict::Kind k) {
  switch (k) {
    case PingVerdict::incomplete: return "incomplete";
    case PingVerdict::ok: return "ok";
    case PingVerdict::bad: return "bad";
  }
  return "?";
}

std::string judge(std::string_view bytes, bool eof) {
  return kind_name(judge_ping_response(bytes, eof).kind);
}

std::string why(std::string_view bytes, bool eof) { return judge_ping_response(bytes, eof).why; }

}  // namespace

TEST_CASE("ping: the request is a well-formed HTTP/1.1 GET /_ping") {
  std::string_view r = kPingRequest;
  CHECK(r.starts_with("GET /_ping HTTP/1.1\r\n"));
  CHECK(r.find("\r\nHost: ") != std::string_view::npos);
  CHECK(r.ends_with("\r\n\r\n"));
}

TEST_CASE("ping: a dockerd reply in one piece") {
  CHECK(judge(kDockerdReply, false) == "ok");
  CHECK(judge(kDockerdReply, true) == "ok");
  CHECK(judge_ping_response(kDockerdReply, false).why.empty());
}

TEST_CASE("ping: a dockerd reply split byte by byte is incomplete until complete") {
  for (std::size_t n = 0; n < kDockerdReply.size(); ++n) {
    INFO("first " << n << " bytes");
    CHECK(judge(std::string_view(kDockerdReply).substr(0, n), false) == "incomplete");
  }
  CHECK(judge(kDockerdReply, false) == "ok");
}

TEST_CASE("ping: a dockerd reply cut short by EOF is bad") {
  for (std::size_t n : {std::size_t{0}, std::size_t{5}, std::size_t{17}, kDockerdReply.size() - 3,
                        kDockerdReply.size() - 1}) {
    INFO("first " << n << " bytes, then EOF");
    CHECK(judge(std::string_view(kDockerdReply).substr(0, n), true) == "bad");
  }
  CHECK(why("", true).find("closed without a reply") != std::string::npos);
  CHECK(why("HTTP/1.1 200 OK\r\nContent-Le", true).find("truncated") != std::string::npos);
  CHECK(why(std::string_view(kDockerdReply).substr(0, kDockerdReply.size() - 1), true).find("truncated") !=
        std::string::npos);
}

TEST_CASE("ping: HTTP errors are bad") {
  const std::string r500 =
      "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n"
      "{\"message\":\"daemon failing\"}\n";
  CHECK(judge(r500, false) == "bad");
  CHECK(why(r500, false).find("500") != std::string::npos);
  const std::string r404 = "HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\n\r\n404 page not found\n";
  CHECK(judge(r404, false) == "bad");
  CHECK(why(r404, false).find("404") != std::string::npos);
  // Headers complete but the body still coming: wait for it before judging.
  CHECK(judge(r404.substr(0, r404.size() - 5), false) == "incomplete");
  CHECK(judge("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", false) == "bad");
}

TEST_CASE("ping: a 200 whose body is not OK is bad") {
  CHECK(judge("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nNO", false) == "bad");
  CHECK(why("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nNO", false).find("unexpected body") != std::string::npos);
  CHECK(judge("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false) == "bad");
  CHECK(judge("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nOKAY", false) == "bad");
}

TEST_CASE("ping: header names are case-insensitive and the body may follow extra bytes") {
  CHECK(judge("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nOK", false) == "ok");
  CHECK(judge("HTTP/1.1 200 OK\r\nCONTENT-LENGTH:2\r\n\r\nOK", false) == "ok");
  CHECK(judge("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK", false) == "ok");
  // Only Content-Length bytes are the body.
  CHECK(judge("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOKtrailing", false) == "ok");
}

TEST_CASE("ping: without Content-Length the body runs to EOF") {
  const std::string r = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nOK";
  CHECK(judge(r, false) == "incomplete");
  CHECK(judge(r, true) == "ok");
  CHECK(judge("HTTP/1.1 200 OK\r\n\r\nnope", true) == "bad");
}

TEST_CASE("ping: garbage is bad") {
  CHECK(judge("SSH-2.0-OpenSSH_9.2\r\n\r\n", false) == "bad");
  CHECK(why("SSH-2.0-OpenSSH_9.2\r\n\r\n", false).find("not an HTTP reply") != std::string::npos);
  CHECK(judge("\x16\x03\x01\x02\xfc\x03\x03\r\n\r\n", false) == "bad");
  CHECK(judge("HTTP/1.1\r\n\r\n", false) == "bad");
  CHECK(judge("garbage without an end", true) == "bad");
  CHECK(judge("garbage without an end", false) == "incomplete");
  // Endless headers are cut off rather than buffered forever.
  CHECK(judge(std::string(9000, 'x'), false) == "bad");
}
