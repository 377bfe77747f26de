"""The reactor is one io_uring on one thread: run the real daemon under strace -f through a
short life (start, a Docker launch with the fake runtime, a stop, SIGTERM) and read what the
agent itself called."""
import os
import re
import signal
import subprocess
import unittest

from harness import AGENT, AgentProcess, AgentTestCase, wait_for


class ReactorTest(AgentTestCase):
    def test_one_thread_on_io_uring_never_epoll(self):
        trace = os.path.join(self.tmp, "strace.out")
        root = os.path.join(self.tmp, "root")
        a = AgentProcess(root)
        self.agents.append(a)
        # strace runs the agent; a.proc is strace, the agent is its child.
        log = open(a.log_path, "ab")
        # LeakSanitizer cannot work under ptrace: in the sanitizer build the traced processes
        # (the agent and the fake runtime it forks) run without it.
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS", ""), "detect_leaks=0"]))
        a.proc = subprocess.Popen(
            ["strace", "-f", "-qq", "-o", trace, "-e",
             "trace=io_uring_setup,io_uring_enter,epoll_create,epoll_create1,epoll_ctl,epoll_wait,"
             "epoll_pwait,epoll_pwait2,clone,clone3,fork,vfork,eventfd2,timerfd_create",
             os.path.abspath(AGENT), "--root", root, "--config", a.config_path, "--runsc", a.runsc],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        wait_for(a.answers, timeout=30, what="the traced agent to answer")
        agent_pid = wait_for(lambda: [int(p) for p in os.listdir("/proc") if p.isdigit()
                                      and _ppid(int(p)) == a.proc.pid and "sandbox-agent" in _cmd(int(p))],
                             what="the agent's pid")[0]
        # Killing strace detaches its tracees: the agent itself must go too, whatever happens.
        self.addCleanup(_kill_quietly, agent_pid)
        final = a.launch(a.request("r1", docker={"enabled": True}), wait=True)
        self.assertEqual(final["state"], "ready")
        # While it works, the agent has one thread of its own. The kernel's io_uring
        # workers (iou-wrk-*, iou-sqp-*) show up in /proc/PID/task too; they are not ours.
        tasks = os.listdir(f"/proc/{agent_pid}/task")
        own = [t for t in tasks if not _comm(agent_pid, t).startswith("iou-")]
        self.assertEqual(len(own), 1, [_comm(agent_pid, t) for t in tasks])
        a.call({"op": "stop", "id": "r1"})
        a.wait_state("r1", "stopped")
        os.kill(agent_pid, signal.SIGTERM)
        self.assertEqual(a.proc.wait(30), 0)

        calls = {}
        thread_clones = []
        with open(trace) as f:
            for line in f:
                m = re.match(r"(\d+)\s+(\w+)\((.*)", line)
                if not m or int(m.group(1)) != agent_pid:
                    continue
                name = m.group(2)
                calls[name] = calls.get(name, 0) + 1
                if name.startswith("clone") and "CLONE_THREAD" in m.group(3):
                    thread_clones.append(line.strip())
        self.assertGreaterEqual(calls.get("io_uring_setup", 0), 1, calls)
        self.assertGreater(calls.get("io_uring_enter", 0), 10, calls)
        for name in ("epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
                     "timerfd_create"):
            self.assertNotIn(name, calls, f"the agent called {name}")
        self.assertEqual(thread_clones, [])
        # it did spawn runsc (clone with CLONE_VM, without CLONE_THREAD)
        self.assertGreaterEqual(calls.get("clone", 0) + calls.get("clone3", 0) + calls.get("vfork", 0), 2, calls)


def _kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return int(stat[stat.rfind(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _cmd(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _comm(pid, tid):
    try:
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


if __name__ == "__main__":
    unittest.main()
