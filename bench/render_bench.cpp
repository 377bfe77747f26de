// Spec rendering throughput: parse + validate + policy + render of a launch request, on one
// core, as the agent does for every launch. Prints specs per second of wall time and per
// CPU-second of this thread (the machine may be shared); asserts nothing.
//   render_bench [SECONDS]
//   render_bench --iterations N   (fixed work, for valgrind --tool=callgrind)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <time.h>
#include <unistd.h>

#include "sandbox_agent/request.hpp"
#include "sandbox_agent/spec.hpp"

using namespace sandbox_agent;

namespace {
double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}
}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  long iterations = 0;
  if (argc > 2 && std::string(argv[1]) == "--iterations") iterations = std::atol(argv[2]);
  auto dir = std::filesystem::temp_directory_path() / ("render-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "images" / "ubuntu");
  std::filesystem::create_directories(dir / "images" / "data");
  std::string images = (dir / "images").string();
  std::string request = R"({"id":"job-42","rootfs":")" + images + R"(/ubuntu","args":["/bin/sleep","infinity"],)"
                        R"("env":["LANG=C.UTF-8"],"cwd":"/","user":{"uid":0,"gid":0},"hostname":"job-42",)"
                        R"("mounts":[{"source":")" + images + R"(/data","destination":"/data","readonly":true}],)"
                        R"("resources":{"cpus":1.0,"memory_mb":2048,"pids":4096},"network":"none",)"
                        R"("docker":{"enabled":true,"cgroup":"auto","dockerd_args":[],"ready_timeout_ms":30000},)"
                        R"("labels":{"batch-job":"1234"},"socket_owner":{"uid":1000,"gid":1000}})";
  RequestPolicy policy{{images}, false, 1 << 20};
  SpecContext ctx{"/usr/lib/sandbox-agent/sandbox-init", "/var/lib/sandbox-agent/sockets/job-42",
                  "/var/lib/sandbox-agent/logs/job-42", "dockerd", {}, {}, {}, "containerd"};

  std::size_t bytes = 0, n = 0, parse_only = 0;
  double cpu_rate = 0;  // of the last run
  using clock = std::chrono::steady_clock;
  auto run = [&](bool with_render) {
    std::size_t count = 0;
    auto t0 = clock::now();
    double c0 = thread_cpu_seconds();
    auto end = t0 + std::chrono::duration<double>(seconds);
    while (iterations ? count < static_cast<std::size_t>(iterations) : clock::now() < end) {
      for (int i = 0; i < 100; ++i) {
        auto r = parse_launch_request(request, policy);
        if (!r) {
          std::fprintf(stderr, "bad request: %s\n", r.error().describe().c_str());
          return 0.0;
        }
        if (with_render) bytes += render_spec(*r, ctx, /*indented=*/false).size();
        ++count;
      }
    }
    double secs = std::chrono::duration<double>(clock::now() - t0).count();
    double cpu = thread_cpu_seconds() - c0;
    cpu_rate = cpu > 0 ? count / cpu : 0;
    if (with_render) n = count;
    else parse_only = count;
    return count / secs;
  };
  double parse_rate = run(false);
  double parse_cpu_rate = cpu_rate;
  double full_rate = run(true);
  double full_cpu_rate = cpu_rate;
  std::printf("| measure | per second (1 core) | per CPU-second | per item (CPU) |\n|---|---|---|---|\n");
  std::printf("| parse + validate + policy (realpath) | %.0f requests | %.0f | %.2f us |\n", parse_rate, parse_cpu_rate,
              1e6 / parse_cpu_rate);
  std::printf("| parse + validate + policy + render (cereal) | %.0f specs | %.0f | %.2f us |\n", full_rate,
              full_cpu_rate, 1e6 / full_cpu_rate);
  std::printf("(spec size %zu bytes; %zu specs rendered)\n", n ? bytes / n : 0, n);
  std::filesystem::remove_all(dir);
  return 0;
}
