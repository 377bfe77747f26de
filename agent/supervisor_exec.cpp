// The supervisor's exec and cp: what may run where, and what a copy's report means. The
// processes themselves are Execs' (exec.hpp).
#include <cstdlib>

#include "paths.hpp"
#include "sandbox_agent/spec.hpp"
#include "supervisor.hpp"

namespace sandbox_agent {

namespace {

// sandbox-init's cp exit codes (agent/init/copy.hpp) and what each means to the client.
Error copy_error(int exit_code, std::string report, const std::string& path) {
  while (!report.empty() && (report.back() == '\n' || report.back() == ' ')) report.pop_back();
  if (auto nl = report.rfind('\n'); nl != std::string::npos) report.erase(0, nl + 1);  // its last word
  if (report.empty()) report = "cp in the sandbox ended with exit code " + std::to_string(exit_code);
  switch (exit_code) {
    case 3: return make_error(ErrorCode::not_found, report, "/path");
    case 2: return make_error(ErrorCode::invalid_request, report, "/path");
    case 4: return make_error(ErrorCode::too_large, report, "/path");
    default: return make_error(ErrorCode::internal, "copying " + path + ": " + report);
  }
}

// "copied N bytes", sandbox-init's last line on success.
bool copied_bytes(const std::string& report, std::uint64_t& bytes) {
  auto at = report.rfind("copied ");
  if (at == std::string::npos) return false;
  char* end = nullptr;
  bytes = std::strtoull(report.c_str() + at + 7, &end, 10);
  return end && std::string_view(end).starts_with(" bytes");
}

}  // namespace

Execs::Target Supervisor::exec_target(const Sandbox& sb) const {
  return {sb.id, sb.runsc_id, layout_.bundle_dir(sb.dir), paths::join(layout_.logs_dir(sb.dir), "runsc.log")};
}

Result<const Sandbox*> Supervisor::ready_sandbox(const std::string& id) const {
  if (shutting_down_) return make_error(ErrorCode::overloaded, "the agent is shutting down");
  auto* sb = find(id);
  if (!sb) return make_error(ErrorCode::not_found, "no sandbox " + id, "/id");
  if (sb->state != SandboxState::ready)
    return make_error(ErrorCode::invalid_request,
                      "sandbox " + id + " is " + std::string(to_string(sb->state)) + ": only a ready one runs commands",
                      "/id");
  return sb;
}

Result<std::string> Supervisor::exec(const std::string& id, const ExecArgs& args, Execs::Stdio stdio,
                                     Execs::Done done) {
  auto sb = ready_sandbox(id);
  if (!sb) return sb.error();
  return execs_.start(exec_target(**sb), args, std::move(stdio), std::move(done));
}

Result<std::string> Supervisor::copy(const std::string& id, const CopyArgs& args, UniqueFd fd, CopyDone done) {
  auto sb = ready_sandbox(id);
  if (!sb) return sb.error();
  ExecArgs run;
  bool in = args.direction == CopyDirection::in;
  char mode[16];
  std::snprintf(mode, sizeof mode, "--mode=%04o", args.mode);
  run.args = {std::string(kInitPath), in ? "cp-in" : "cp-out",
              "--max-bytes=" + std::to_string(config_.limits.max_copy_bytes)};
  if (in) run.args.push_back(mode);
  run.args.push_back("--");
  run.args.push_back(args.path);
  run.timeout_ms = args.timeout_ms;
  Execs::Stdio stdio;
  (in ? stdio.in : stdio.out) = std::move(fd);
  stdio.capture_err = true;
  auto path = args.path;
  auto timeout_ms = args.timeout_ms;
  return execs_.start(exec_target(**sb), run, std::move(stdio),
                      [done = std::move(done), path, timeout_ms](const Result<ExecOutcome>& r, const std::string& report) {
                        if (!r) return done(r.error());
                        std::uint64_t bytes = 0;
                        if (r->reason == "timeout")
                          return done(make_error(ErrorCode::internal, "copying " + path + " took longer than " +
                                                                          std::to_string(timeout_ms) + " ms",
                                                 "/timeout_ms"));
                        if (!r->reason.empty())
                          return done(make_error(ErrorCode::internal, "copying " + path + " was ended: " + r->reason));
                        if (r->exit_code == 0 && copied_bytes(report, bytes)) return done(bytes);
                        done(copy_error(r->exit_code, report, path));
                      });
}

}  // namespace sandbox_agent
