"""The agent as a system service, for real: the sd_notify protocol on a datagram socket this
test binds (READY=1 only after recovery and once the socket answers, STATUS=, WATCHDOG=1,
STOPPING=1), socket activation through Debian's systemd-socket-activate (LISTEN_FDS), the
units under systemd-analyze verify, and the embedding example (docs/examples/embed.cpp) on the
fake runtime. PID 1 here is not systemd: nothing is started through it.

Every wait is bounded; the harness kills the agents and fake runtimes the tests started."""
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
import unittest

from harness import AGENT, FAKE_RUNSC, SANDBOXCTL, AgentProcess, AgentTestCase, Client, wait_for

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UNITS = os.path.join(REPO, "systemd")
EMBED_EXAMPLE = os.environ.get(
    "EMBED_EXAMPLE", os.path.join(os.path.dirname(os.path.abspath(AGENT)), "docs", "examples", "embed_example"))
# What systemd gives a service and what the agent must not hand on to runsc.
SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV and k != "JOURNAL_STREAM"}
    env.update(extra)
    return env


def environ_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)


def socket_inodes(pid):
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target)
    return found


class NotifySocket:
    """The service manager's end of sd_notify: an AF_UNIX datagram socket; every message is
    kept with the time it arrived."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []  # (monotonic time, {KEY: VALUE}, raw text)

    def receive(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return None
        text = data.decode()
        fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
        msg = (time.monotonic(), fields, text)
        self.messages.append(msg)
        return msg

    def wait_for(self, predicate, timeout, what):
        """Receives until predicate(fields) holds; returns that message."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {[m[2] for m in self.messages]}")
            msg = self.receive(left)
            if msg and predicate(msg[1]):
                return msg

    def close(self):
        self.sock.close()


class SdNotifyTest(AgentTestCase):
    def notify_socket(self):
        n = NotifySocket(os.path.join(self.tmp, "notify.sock"))
        self.addCleanup(n.close)
        return n

    def notified_agent(self, root, notify, runsc=None, watchdog_usec=200000):
        env = clean_env(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC=str(watchdog_usec), SA_TEST_MARKER="inherited")
        a = AgentProcess(root, runsc=runsc, env=env)
        self.agents.append(a)
        return a.start(wait=False)

    def test_ready_status_watchdog_stopping_and_a_clean_runtime_environment(self):
        notify = self.notify_socket()
        a = self.notified_agent(os.path.join(self.tmp, "root"), notify)
        _, fields, _ = notify.wait_for(lambda f: "READY" in f, 20, "READY=1")
        # Sent once the agent serves: the socket exists and answers at the moment READY arrives.
        self.assertEqual(fields["READY"], "1")
        self.assertTrue(stat.S_ISSOCK(os.stat(a.socket_path).st_mode))
        self.assertTrue(a.answers(), "READY=1 came before the socket answered")
        self.assertEqual(len(notify.messages), 1, f"messages before READY=1: {notify.messages[:-1]}")
        self.assertRegex(fields.get("STATUS", ""), r"^in flight 0, ready 0, failed 0, clients \d+$")

        # STATUS= follows the in-flight count.
        self.assertTrue(a.launch(a.request("n1"), wait=True)["ok"])
        self.assertTrue(a.launch(a.request("n2"), wait=True)["ok"])
        notify.wait_for(lambda f: f.get("STATUS", "").startswith("in flight 2, ready 2,"), 10,
                        "STATUS= with two sandboxes in flight")

        # WATCHDOG=1 keeps coming, every WATCHDOG_USEC/2 (100 ms) on an idle agent.
        start = time.monotonic()
        ticks = []
        while time.monotonic() - start < 2.0:
            msg = notify.receive(2.0 - (time.monotonic() - start))
            if msg and msg[1].get("WATCHDOG") == "1":
                ticks.append(msg[0])
        self.assertGreaterEqual(len(ticks), 8, f"{len(ticks)} WATCHDOG=1 in 2 s at a 100 ms period")
        gaps = [b - a_ for a_, b in zip([start] + ticks, ticks)]
        self.assertLess(max(gaps), 1.0, f"a gap of {max(gaps):.3f} s between WATCHDOG=1 messages")

        # runsc (here the fake runtime's daemon, started by the agent's first `create`) gets the
        # agent's environment without systemd's variables.
        daemon = a.fake_daemon_pid()
        self.assertIsNotNone(daemon)
        env = environ_of(daemon)
        self.assertEqual(env.get(b"SA_TEST_MARKER"), b"inherited", "the check would prove nothing")
        for name in SYSTEMD_ENV:
            self.assertNotIn(name.encode(), env, f"{name} reached the runtime")

        # SIGTERM: STOPPING=1, then exit 0 (the sandboxes keep running).
        a.proc.send_signal(signal.SIGTERM)
        notify.wait_for(lambda f: f.get("STOPPING") == "1", 10, "STOPPING=1")
        self.assertEqual(a.proc.wait(30), 0)
        self.assertIn("sandboxes keep running", a.log())

    def test_ready_only_after_recovery_and_the_socket(self):
        root = os.path.join(self.tmp, "root")
        first = self.start_agent(root=root)
        self.assertTrue(first.launch(first.request("kept"), wait=True)["ok"])
        first.kill()  # SIGKILL: the sandbox keeps running, the next agent must adopt it
        os.unlink(first.socket_path)  # so that "the socket exists" means the new agent made it

        # A runtime whose `list` (the first thing recovery asks) takes 1.5 s.
        slow = os.path.join(self.tmp, "slow-runsc")
        with open(slow, "w") as f:
            f.write(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = list ] && sleep 1.5 && break; done\n'
                    f'exec {os.path.abspath(FAKE_RUNSC)} "$@"\n')
        os.chmod(slow, 0o755)
        notify = self.notify_socket()
        a = self.notified_agent(root, notify, runsc=slow)
        started = time.monotonic()
        # While it recovers: no message, no socket.
        while time.monotonic() - started < 1.0:
            self.assertIsNone(notify.receive(0.05), "a notification while the agent was recovering")
            self.assertFalse(os.path.exists(a.socket_path), "the socket opened before recovery finished")
        _, fields, _ = notify.wait_for(lambda f: "READY" in f, 20, "READY=1")
        self.assertGreaterEqual(time.monotonic() - started, 1.4, "READY=1 before runsc list returned")
        # At READY=1 the adopted sandbox is already known and the socket answers.
        c = Client(a.socket_path, timeout=5)
        try:
            reply = c.call({"op": "status", "id": "kept"})
        finally:
            c.close()
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["sandbox"]["state"], "ready")
        self.assertRegex(fields["STATUS"], r"^in flight 1, ready \d+, failed 0,")
        self.assertEqual(a.stop(), 0)

    def test_no_watchdog_without_watchdog_usec(self):
        notify = self.notify_socket()
        env = clean_env(NOTIFY_SOCKET=notify.path)
        a = AgentProcess(os.path.join(self.tmp, "root"), env=env)
        self.agents.append(a)
        a.start(wait=False)
        notify.wait_for(lambda f: f.get("READY") == "1", 20, "READY=1")
        # Without WATCHDOG_USEC only STATUS= refreshes (every 5 s): nothing else for a second.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            msg = notify.receive(end - time.monotonic())
            self.assertFalse(msg and "WATCHDOG" in msg[1], "WATCHDOG=1 without WATCHDOG_USEC")
        self.assertEqual(a.stop(), 0)


@unittest.skipUnless(shutil.which("systemd-socket-activate"), "systemd-socket-activate is not installed")
class SocketActivationTest(AgentTestCase):
    def test_adopts_the_passed_socket_and_leaves_its_path(self):
        root = os.path.join(self.tmp, "root")
        a = AgentProcess(root)
        self.agents.append(a)
        path = os.path.join(self.tmp, "activated.sock")
        log = open(a.log_path, "ab")
        # systemd-socket-activate binds PATH, waits for the first connection, then execs the
        # agent with the listening socket as fd 3 and LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES.
        a.proc = subprocess.Popen(
            ["systemd-socket-activate", "-l", path, "--fdname=sandbox-agent",
             os.path.abspath(AGENT), "--root", root, "--config", a.config_path, "--runsc", a.runsc],
            stdout=log, stderr=subprocess.STDOUT, env=clean_env())
        log.close()
        # It says so once the socket listens (the file exists from bind() on, a moment earlier).
        wait_for(lambda: f"Listening on {path} as 3." in a.log(), timeout=10,
                 what="systemd-socket-activate to listen")
        self.assertIsNone(a.proc.poll())
        self.assertFalse(os.path.exists(os.path.join(root, "state")), "the agent ran before the first connection")

        # The first client connects before the agent runs; its request waits in the backlog.
        c = Client(path, timeout=30)
        try:
            self.assertEqual(c.call({"op": "version", "tag": 1}), {"ok": True, "version": "0.1.0", "tag": 1})
            reply = c.call({"op": "launch", "request": a.request("act1", docker={"enabled": True}), "wait": "ready"})
            self.assertTrue(reply["ok"], reply)
            self.assertEqual(reply["state"], "ready")
            status = c.call({"op": "status", "id": "act1"})
            self.assertEqual(status["sandbox"]["state"], "ready")
            self.assertTrue(os.path.exists(status["sandbox"]["docker_socket"]))
        finally:
            c.close()
        r = subprocess.run([os.path.abspath(SANDBOXCTL), "--socket", path, "ps", "--json"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([s["id"] for s in json.loads(r.stdout)["sandboxes"]], ["act1"])

        self.assertIn("listening on the socket systemd passed (fd 3)", a.log())
        self.assertFalse(os.path.exists(a.socket_path), "the agent bound ROOT/agent.sock as well")
        # The agent is the process systemd-socket-activate became; its listening socket and
        # LISTEN_* stay with it: neither reaches the runtime.
        listening = os.readlink(f"/proc/{a.proc.pid}/fd/3")
        self.assertTrue(listening.startswith("socket:["), listening)
        daemon = a.fake_daemon_pid()
        self.assertIsNotNone(daemon)
        self.assertNotIn(listening, socket_inodes(daemon))
        env = environ_of(daemon)
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            self.assertNotIn(name.encode(), env)

        # It did not create the path, so it leaves it: the socket unit owns it.
        self.assertEqual(a.stop(), 0)
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode), "the agent removed the socket it was passed")


@unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed: cannot verify the units")
class UnitFilesTest(AgentTestCase):
    def verify(self, directory):
        r = subprocess.run(["systemd-analyze", "verify", "--man=no",
                            os.path.join(directory, "sandbox-agent.socket"),
                            os.path.join(directory, "sandbox-agent.service")],
                           capture_output=True, text=True, timeout=120, cwd=directory)
        # Unknown keys and bad values are only warnings (exit 0): any line about our units fails.
        ours = [line for line in (r.stdout + r.stderr).splitlines() if "sandbox-agent" in line]
        return r.returncode, ours

    def test_units_verify(self):
        # verify needs ExecStart's binary: copies of the units that run the built agent.
        d = os.path.join(self.tmp, "units")
        os.makedirs(d)
        shutil.copy(os.path.join(UNITS, "sandbox-agent.socket"), d)
        with open(os.path.join(UNITS, "sandbox-agent.service")) as f:
            service = f.read()
        self.assertIn("ExecStart=/usr/bin/sandbox-agent --config /etc/sandbox-agent/config.json\n", service)
        with open(os.path.join(d, "sandbox-agent.service"), "w") as f:
            f.write(service.replace("ExecStart=/usr/bin/sandbox-agent", "ExecStart=" + os.path.abspath(AGENT)))
        rc, ours = self.verify(d)
        self.assertEqual((rc, ours), (0, []))

        # And the check catches mistakes: a misspelt key, a wrong value.
        with open(os.path.join(d, "sandbox-agent.service"), "a") as f:
            f.write("WatchdogSecs=30\n")
        rc, ours = self.verify(d)
        self.assertTrue(ours, "systemd-analyze verify did not notice an unknown key")

    def test_the_units_say_what_the_docs_say(self):
        def settings(name):
            out = {}
            with open(os.path.join(UNITS, name)) as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith(("#", "[")) and "=" in line:
                        k, v = line.split("=", 1)
                        out.setdefault(k, []).append(v)
            return {k: v[-1] if len(v) == 1 else v for k, v in out.items()}
        service = settings("sandbox-agent.service")
        for key, value in {"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30",
                           "Restart": "on-failure", "KillMode": "process", "StateDirectory": "sandbox-agent",
                           "LimitNOFILE": "1048576", "TasksMax": "infinity", "OOMPolicy": "continue",
                           "ExecStart": "/usr/bin/sandbox-agent --config /etc/sandbox-agent/config.json"}.items():
            self.assertEqual(service.get(key), value, key)
        for key, value in {"NoNewPrivileges": "yes", "SystemCallArchitectures": "native",
                           "RestrictRealtime": "yes", "LockPersonality": "yes"}.items():
            self.assertEqual(service.get(key), value, key)
        # What runsc and adopted sandboxes cannot live with.
        for absent in ("RuntimeDirectory", "LogsDirectory", "User", "ProtectSystem", "PrivateTmp",
                       "PrivateDevices", "ProtectControlGroups", "RestrictNamespaces", "SystemCallFilter",
                       "MemoryDenyWriteExecute", "PrivateNetwork", "CapabilityBoundingSet"):
            self.assertNotIn(absent, service)
        sock = settings("sandbox-agent.socket")
        self.assertEqual(sock.get("ListenStream"), "/var/lib/sandbox-agent/agent.sock")
        self.assertEqual(sock.get("SocketMode"), "0660")
        self.assertEqual(sock.get("Service"), "sandbox-agent.service")
        # Each hardening option the unit considers is explained in docs/operations.md too.
        with open(os.path.join(REPO, "docs", "operations.md")) as f:
            ops = f.read()
        with open(os.path.join(UNITS, "sandbox-agent.service")) as f:
            hardening = f.read().split("# Hardening.", 1)[1].split("[Install]", 1)[0]
        considered = set(re.findall(r"\b([A-Z][A-Za-z]+)=", hardening))
        self.assertGreater(len(considered), 30)
        missing = sorted(o for o in considered if f"`{o}=" not in ops)
        self.assertEqual(missing, [], "hardening options the unit names but docs/operations.md does not")


class EmbedExampleTest(AgentTestCase):
    def test_launches_prints_events_stops_and_exits_0(self):
        self.assertTrue(os.access(EMBED_EXAMPLE, os.X_OK), f"{EMBED_EXAMPLE} is not built")
        root = os.path.join(self.tmp, "root")
        rootfs = os.path.join(root, "images", "rootfs")
        os.makedirs(rootfs)
        try:
            r = subprocess.run([EMBED_EXAMPLE, root, rootfs, os.path.abspath(FAKE_RUNSC)],
                               capture_output=True, text=True, timeout=120, env=clean_env())
        finally:
            for pid in subprocess.run(["pgrep", "-f", os.path.join(root, "runsc")],
                                      capture_output=True, text=True).stdout.split():
                os.kill(int(pid), signal.SIGKILL)
        self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        events = [line.split()[2] for line in r.stdout.splitlines() if line.startswith("event embed-example ")]
        self.assertEqual(events,
                         ["accepted", "creating", "starting", "probing", "ready", "stopping", "stopped"], r.stdout)
        self.assertIn("accepted embed-example", r.stdout)
        self.assertRegex(r.stdout, r"ready: docker -H unix://\S+/sockets/embed-example/docker.sock")
        # No socket, no spool: only the library's own directories.
        self.assertFalse(os.path.exists(os.path.join(root, "agent.sock")))
        self.assertFalse(os.path.exists(os.path.join(root, "spool")))
        # shutdown() returned once the records were on disk: the last one says it all.
        with open(os.path.join(root, "state", "embed-example.json")) as f:
            record = json.load(f)
        self.assertEqual((record["state"], record["finished"]), ("stopped", True))

    def test_usage_error(self):
        r = subprocess.run([EMBED_EXAMPLE], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage: embed_example ROOT ROOTFS", r.stderr)


class JournalFormatTest(AgentTestCase):
    """Under systemd, stderr is the journal stream: each line starts with its syslog
    priority (<6> info, <4> warning, ...; sd-daemon(3)) for journald to file it by."""

    def agent_with_journal_stream(self, value_of):
        root = os.path.join(self.tmp, f"j{len(self.agents)}")
        os.makedirs(root)
        log = os.path.join(root, "agent.log")  # the harness's log file: the agent's stderr
        open(log, "ab").close()
        st = os.stat(log)
        return self.start_agent(root=root, config={"log_level": "debug"}, env=clean_env(JOURNAL_STREAM=value_of(st)))

    def test_lines_carry_their_priority_when_stderr_is_the_journal(self):
        a = self.agent_with_journal_stream(lambda st: f"{st.st_dev}:{st.st_ino}")
        self.assertEqual(a.launch(a.request("d", docker={"enabled": True}), wait=True)["state"], "ready")
        a.launch(a.request("slow", env=["FAKE_RUNSC=dockerd=never"], docker={"enabled": True, "ready_timeout_ms": 300}))
        a.wait_state("slow", "failed")
        lines = wait_for(lambda: (l := a.log().splitlines()) and any("failing" in x for x in l) and l,
                         timeout=10, what="the failure in the log")
        self.assertTrue(any(re.match(r"^<6>info .*starting: root ", l) for l in lines), lines[:5])
        self.assertTrue(any(re.match(r"^<4>warning slow failing \(ready_timeout\)", l) for l in lines), lines)
        self.assertTrue(any(re.match(r"^<7>debug d dockerd answered", l) for l in lines), lines)
        self.assertFalse([l for l in lines if not re.match(r"^<[2-7]>", l)])

    def test_an_inherited_variable_for_another_stream_changes_nothing(self):
        a = self.agent_with_journal_stream(lambda st: f"{st.st_dev}:{st.st_ino + 1}")
        lines = a.log().splitlines()
        self.assertTrue(lines)
        self.assertFalse([l for l in lines if not re.match(r"^\d{4}-\d\d-\d\dT", l)], lines[:5])


if __name__ == "__main__":
    unittest.main()
