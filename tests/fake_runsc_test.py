#!/usr/bin/python3
"""Tests of fake-runsc (tests/fake_runsc/), the runsc stand-in of the fast tests.

Run: /usr/bin/python3 tests/fake_runsc_test.py BUILD/tests/fake_runsc/fake-runsc
(or set FAKE_RUNSC). Each test has its own temporary --root and kills its daemon.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

FAKE_RUNSC = os.environ.get("FAKE_RUNSC", "")

STATUS_IN = "/.sandbox-agent/sockets"
LOGS_IN = "/.sandbox-agent/logs"


def wait_for(predicate, timeout=5.0, interval=0.005):
    """Polls predicate until it is true; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def process_gone(pid):
    """True once `pid` has exited (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def http(path, request, timeout=3.0, pieces=1):
    """Sends `request` (bytes) over a Unix socket in `pieces` parts; returns all read."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        step = max(1, len(request) // pieces)
        for i in range(0, len(request), step):
            s.sendall(request[i:i + step])
            if pieces > 1:
                time.sleep(0.01)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk


def ping(path, timeout=3.0, pieces=1):
    return http(path, b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n", timeout, pieces)


class FakeRunscTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="frt-")
        self.dir = self.tmp.name
        self.root = os.path.join(self.dir, "root")
        self.daemon_pids = set()

    def tearDown(self):
        self.remember_daemon()
        for pid in self.daemon_pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"fake-runsc" not in f.read():
                        continue
                os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass
        self.tmp.cleanup()

    # --- helpers -------------------------------------------------------------------
    def remember_daemon(self):
        try:
            with open(os.path.join(self.root, "fake-runsc.pid")) as f:
                pid = int(f.read())
            self.daemon_pids.add(pid)
            return pid
        except (FileNotFoundError, ValueError):
            return None

    def runsc(self, *args, timeout=10, check=None):
        argv = [FAKE_RUNSC, "--root", self.root, "--platform=ptrace", "--network=none",
                "--host-uds=create", *args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        self.remember_daemon()
        if check is not None:
            self.assertEqual(p.returncode, check, f"{args}: {p.stderr}")
        return p

    def bundle(self, name, directives="", docker=True, extra_args=()):
        """A bundle dir whose config.json runs sandbox-init as the agent does."""
        base = os.path.join(self.dir, name)
        status, logs = os.path.join(base, "status"), os.path.join(base, "logs")
        os.makedirs(status)
        os.makedirs(logs)
        args = ["/.sandbox-agent/init", "--status-dir", STATUS_IN, "--log-dir", LOGS_IN]
        if docker:
            args += ["--dockerd", "/usr/bin/dockerd", "--cgroup", "auto",
                     "--dockerd-socket", "/run/docker.sock",
                     f"--relay-socket={STATUS_IN}/docker.sock",
                     "--dockerd-arg=--iptables=false", "--dockerd-arg=--bridge=none"]
        args += [*extra_args, "--", "/bin/sleep", "infinity"]
        env = ["PATH=/usr/bin:/bin"]
        if directives:
            env.append("FAKE_RUNSC=" + directives)
        spec = {
            "ociVersion": "1.0.2-dev",
            "process": {"args": args, "env": env, "cwd": "/"},
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": STATUS_IN, "type": "bind", "source": status,
                 "options": ["rbind", "rw"]},
                {"destination": LOGS_IN, "type": "bind", "source": logs,
                 "options": ["rbind", "rw"]},
            ],
        }
        with open(os.path.join(base, "config.json"), "w") as f:
            json.dump(spec, f)
        return {"bundle": base, "status": status, "logs": logs,
                "socket": os.path.join(status, "docker.sock")}

    def create(self, cid, b, check=0):
        return self.runsc("create", "--bundle", b["bundle"], "--pid-file",
                          os.path.join(b["bundle"], "pid"), cid, check=check)

    def state(self, cid):
        p = self.runsc("state", cid, check=0)
        return json.loads(p.stdout)

    def marker(self, b, name, timeout=3.0):
        path = os.path.join(b["status"], name)
        wait_for(lambda: os.path.exists(path), timeout)
        with open(path) as f:
            return json.load(f)

    # --- tests -----------------------------------------------------------------------
    def test_version(self):
        p = subprocess.run([FAKE_RUNSC, "--version"], capture_output=True, text=True, timeout=5)
        self.assertEqual(p.returncode, 0)
        self.assertEqual(p.stdout, "runsc version fake\nspec: 1.0.2-dev\n")

    def test_round_trip(self):
        b = self.bundle("c1", docker=False)
        self.create("c1", b)
        daemon = self.remember_daemon()
        self.assertIsNotNone(daemon)
        with open(os.path.join(b["bundle"], "pid")) as f:
            self.assertEqual(int(f.read()), daemon)
        p = self.runsc("state", "c1", check=0)
        self.assertEqual(p.stdout, '{\n  "ociVersion": "1.0.2-dev",\n  "id": "c1",\n'
                         f'  "status": "created",\n  "pid": {daemon},\n'
                         f'  "bundle": "{b["bundle"]}"\n}}')
        self.runsc("start", "c1", check=0)
        self.assertEqual(self.state("c1"), {"ociVersion": "1.0.2-dev", "id": "c1",
                                            "status": "running", "pid": daemon,
                                            "bundle": b["bundle"]})
        listed = json.loads(self.runsc("list", "--format", "json", check=0).stdout)
        self.assertEqual(listed, [self.state("c1")])
        for form in (["--format=json"], ["-format", "json"], ["-format=json"]):
            self.assertEqual(json.loads(self.runsc("list", *form, check=0).stdout), listed)
        table = self.runsc("list", check=0).stdout.splitlines()
        self.assertEqual(table[0].split(), ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"])
        self.assertEqual(table[1].split()[:4], ["c1", str(daemon), "running", b["bundle"]])
        self.assertEqual(self.runsc("delete", "c1").returncode, 128)  # running, no --force
        self.runsc("kill", "c1", "KILL", check=0)
        self.assertEqual(self.state("c1")["status"], "stopped")
        self.assertEqual(self.state("c1")["pid"], -1)
        self.assertFalse(os.path.exists(os.path.join(b["status"], "init.exit")))
        self.runsc("delete", "c1", check=0)
        self.assertEqual(self.runsc("list", "--format=json", check=0).stdout.strip(), "[]")
        dup = self.bundle("dup", docker=False)
        self.create("dup", dup)
        p = self.create("dup", dup, check=1)
        self.assertIn("container with id dup already exists", p.stderr)

    def test_unknown_id(self):
        # Without a daemon (answered by the CLI itself, which must not start one) ...
        for cmd in (["state", "nope"], ["start", "nope"], ["kill", "nope"], ["delete", "nope"]):
            p = self.runsc(*cmd)
            self.assertEqual(p.returncode, 128, cmd)
            self.assertIn("file does not exist", p.stderr)
        self.assertEqual(self.runsc("state", "nope").stderr, "loading container: file does not exist\n")
        self.assertFalse(os.path.exists(os.path.join(self.root, "fake-runsc.pid")))
        # ... and with one.
        self.create("c1", self.bundle("c1", docker=False))
        for cmd in (["state", "nope"], ["start", "nope"], ["kill", "nope", "KILL"],
                    ["delete", "--force", "nope"]):
            p = self.runsc(*cmd)
            self.assertEqual(p.returncode, 128, cmd)
            self.assertIn("file does not exist", p.stderr)

    def test_ids_match_by_prefix_like_runsc(self):
        self.create("rsd_1", self.bundle("a", docker=False))
        self.assertEqual(self.state("rsd_")["id"], "rsd_1")
        self.create("rsd_11", self.bundle("b", docker=False))
        p = self.runsc("state", "rsd_1")
        self.assertEqual(p.returncode, 128)
        self.assertIn("ambiguous", p.stderr)
        self.assertEqual(self.state("rsd_11")["id"], "rsd_11")

    def test_create_fail(self):
        p = self.create("c1", self.bundle("c1", "create=fail"), check=1)
        self.assertIn("create=fail", p.stderr)
        self.assertEqual(self.runsc("state", "c1").returncode, 128)
        self.assertEqual(json.loads(self.runsc("list", "--format=json", check=0).stdout), [])

    def test_unknown_directive_fails_create(self):
        p = self.create("c1", self.bundle("c1", "frobnicate=yes"), check=1)
        self.assertIn("unknown directive", p.stderr)

    def test_create_hang_dies_when_killed(self):
        b = self.bundle("c1", "create=hang")
        cli = subprocess.Popen([FAKE_RUNSC, "--root", self.root, "create", "--bundle",
                                b["bundle"], "c1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            with self.assertRaises(subprocess.TimeoutExpired):
                cli.wait(timeout=0.5)
            cli.terminate()
            self.assertEqual(cli.wait(timeout=2), -signal.SIGTERM)
        finally:
            cli.kill()
            cli.wait()
            cli.stdout.close()
            cli.stderr.close()
        self.remember_daemon()
        self.assertEqual(self.runsc("state", "c1").returncode, 128)
        self.create("c2", self.bundle("c2", docker=False))  # the daemon still serves

    def test_start_fail_and_state_fail(self):
        self.create("c1", self.bundle("c1", "start=fail", docker=False))
        self.assertEqual(self.runsc("start", "c1").returncode, 1)
        self.assertEqual(self.state("c1")["status"], "stopped")
        self.create("c2", self.bundle("c2", "state=fail", docker=False))
        p = self.runsc("state", "c2")
        self.assertEqual(p.returncode, 1)
        self.assertIn("state=fail", p.stderr)

    def test_exit_after_ms_writes_init_exit(self):
        b = self.bundle("c1", "exit_after_ms=100,exit_code=7", docker=False)
        self.create("c1", b)
        self.runsc("start", "c1", check=0)
        self.assertEqual(self.state("c1")["status"], "running")
        self.assertEqual(self.marker(b, "init.exit"), {"exit_code": 7})
        self.assertEqual(self.state("c1")["status"], "stopped")
        self.assertEqual(self.state("c1")["pid"], -1)
        self.assertFalse(os.path.exists(os.path.join(b["status"], ".init.exit.tmp")))
        with open(os.path.join(b["status"], "init.exit")) as f:
            self.assertEqual(f.read(), '{"exit_code":7}\n')
        with open(os.path.join(b["logs"], "init.log")) as f:
            last = f.read().splitlines()[-1]
        self.assertTrue(last.startswith("sandbox-init: 20"), last)
        self.assertTrue(last.endswith("Z exiting with status 7"), last)

    def test_docker_socket_and_ping(self):
        b = self.bundle("c1", "dockerd_delay_ms=300")
        self.create("c1", b)
        started = time.monotonic()
        self.runsc("start", "c1", check=0)
        self.assertFalse(os.path.exists(b["socket"]))
        self.assertTrue(wait_for(lambda: os.path.exists(b["socket"]), 3))
        self.assertGreaterEqual(time.monotonic() - started, 0.25)
        reply = ping(b["socket"])
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply)
        head, body = reply.split(b"\r\n\r\n", 1)
        self.assertIn(b"Content-Length: 2", head)
        self.assertEqual(body, b"OK")
        self.assertTrue(ping(b["socket"], pieces=4).endswith(b"\r\n\r\nOK"))
        self.assertIn(b" 404 ", http(b["socket"], b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n"))
        # Many connections at once, each answered.
        socks = []
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(3)
            s.connect(b["socket"])
            socks.append(s)
        for s in socks:
            s.sendall(b"GET /_ping HTTP/1.1\r\n\r\n")
        for s in socks:
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            self.assertTrue(data.endswith(b"OK"))
            s.close()
        with open(os.path.join(self.root, "fake-dockerd-ready.log")) as f:
            self.assertEqual(f.read().split()[0], "c1")
        with open(os.path.join(self.root, "fake-starts.log")) as f:
            self.assertEqual(f.read().split()[0], "c1")

    def test_answer_delay(self):
        b = self.bundle("c1", "dockerd_delay_ms=0,answer_delay_ms=400")
        self.create("c1", b)
        started = time.monotonic()
        self.runsc("start", "c1", check=0)
        self.assertTrue(wait_for(lambda: os.path.exists(b["socket"]), 0.3))
        self.assertTrue(ping(b["socket"]).endswith(b"OK"))  # waits in the backlog
        self.assertGreaterEqual(time.monotonic() - started, 0.35)

    def test_ping_error_garbage_hang(self):
        for name, directive in (("e", "ping=error"), ("g", "ping=garbage"), ("h", "ping=hang")):
            b = self.bundle(name, "dockerd_delay_ms=0," + directive)
            self.create(name, b)
            self.runsc("start", name, check=0)
            self.assertTrue(wait_for(lambda: os.path.exists(b["socket"]), 2))
            if name == "e":
                reply = ping(b["socket"])
                self.assertTrue(reply.startswith(b"HTTP/1.1 500 "), reply)
                self.assertTrue(reply.endswith(b"\r\n\r\nerror"))
            elif name == "g":
                self.assertEqual(ping(b["socket"]), b"garbage\r\n")
            else:
                with self.assertRaises(socket.timeout):
                    ping(b["socket"], timeout=0.3)

    def test_dockerd_never(self):
        b = self.bundle("c1", "dockerd=never")
        self.create("c1", b)
        self.runsc("start", "c1", check=0)
        time.sleep(0.2)
        self.assertFalse(os.path.exists(b["socket"]))

    def test_dockerd_exit_marker_and_log(self):
        b = self.bundle("c1", "dockerd_delay_ms=0,dockerd_exit_after_ms=200")
        self.create("c1", b)
        self.runsc("start", "c1", check=0)
        self.assertTrue(wait_for(lambda: os.path.exists(b["socket"]), 2))
        self.assertEqual(self.marker(b, "dockerd.exit"), {"exit_code": 1})
        self.assertFalse(os.path.exists(b["socket"]))
        with open(os.path.join(b["logs"], "dockerd.log")) as f:
            self.assertEqual(f.read().splitlines()[-1],
                             "failed to start daemon: Devices cgroup isn't mounted")
        self.assertEqual(self.state("c1")["status"], "running")

    def test_kill_term_writes_143(self):
        b = self.bundle("c1", "dockerd_delay_ms=0")
        self.create("c1", b)
        self.runsc("start", "c1", check=0)
        self.assertTrue(wait_for(lambda: os.path.exists(b["socket"]), 2))
        self.runsc("kill", "c1", check=0)  # default TERM
        self.assertEqual(self.marker(b, "init.exit"), {"exit_code": 143})
        self.assertFalse(os.path.exists(b["socket"]))  # gone before init.exit, like sandbox-init
        self.assertEqual(self.state("c1")["status"], "stopped")
        self.assertEqual(self.runsc("kill", "c1", "KILL").returncode, 128)  # like runsc

    def test_kill_signal_forms_and_ignore_term(self):
        b = self.bundle("c1", "kill=ignore-term", docker=False)
        self.create("c1", b)
        self.runsc("start", "c1", check=0)
        for sig in ("TERM", "SIGTERM", "15"):
            self.runsc("kill", "c1", sig, check=0)
        time.sleep(0.1)
        self.assertEqual(self.state("c1")["status"], "running")
        self.runsc("kill", "c1", "SIGINT", check=0)
        self.assertEqual(self.marker(b, "init.exit"), {"exit_code": 130})
        self.assertEqual(self.runsc("kill", "c1", "BOGUS").returncode, 128)
        c2 = self.bundle("c2", docker=False)
        self.create("c2", c2)
        self.runsc("kill", "c2", "9", check=0)  # created, never started
        self.assertEqual(self.state("c2")["status"], "stopped")

    def test_delete_force_removes_socket(self):
        b = self.bundle("c1", "dockerd_delay_ms=0")
        self.create("c1", b)
        self.runsc("start", "c1", check=0)
        self.assertTrue(wait_for(lambda: os.path.exists(b["socket"]), 2))
        self.runsc("delete", "--force", "c1", check=0)
        self.assertFalse(os.path.exists(b["socket"]))
        self.assertFalse(os.path.exists(os.path.join(b["status"], "init.exit")))
        self.assertEqual(self.runsc("state", "c1").returncode, 128)

    def test_delete_hang(self):
        self.create("c1", self.bundle("c1", "delete=hang", docker=False))
        with self.assertRaises(subprocess.TimeoutExpired):
            self.runsc("delete", "--force", "c1", timeout=0.5)
        self.assertEqual(self.state("c1")["status"], "created")

    def test_concurrent_creates_one_daemon(self):
        n = 200
        bundles = [self.bundle(f"c{i}", docker=(i % 2 == 0)) for i in range(n)]
        self.assertFalse(os.path.exists(os.path.join(self.root, "fake-runsc.pid")))
        codes = [None] * n
        gate = threading.Barrier(20)

        def worker(w):
            gate.wait()
            for i in range(w, n, 20):
                codes[i] = self.create(f"c{i}", bundles[i]).returncode

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(codes, [0] * n)
        listed = json.loads(self.runsc("list", "--format=json", check=0).stdout)
        self.assertEqual(sorted(s["id"] for s in listed), sorted(f"c{i}" for i in range(n)))
        pids = set()
        for b in bundles:
            with open(os.path.join(b["bundle"], "pid")) as f:
                pids.add(int(f.read()))
        self.assertEqual(pids, {self.remember_daemon()})  # started exactly once
        self.assertEqual({s["pid"] for s in listed}, pids)

    def test_daemon_exits_when_idle(self):
        self.create("c1", self.bundle("c1", docker=False))
        pid = self.remember_daemon()
        self.runsc("delete", "c1", check=0)
        time.sleep(2)
        self.assertFalse(process_gone(pid))
        self.assertTrue(wait_for(lambda: not os.path.exists(os.path.join(self.root, "fake-runsc.sock")), 4))
        self.assertFalse(os.path.exists(os.path.join(self.root, "fake-runsc.pid")))
        self.assertTrue(wait_for(lambda: process_gone(pid), 2))
        self.create("c2", self.bundle("c2", docker=False))  # a new daemon starts
        self.assertNotEqual(self.remember_daemon(), pid)

    def test_daemon_with_sandboxes_leaves_once_its_root_is_removed(self):
        # A test's root removed while the daemon still held a sandbox (the runtime swept
        # while a CLI was starting it): nothing can reach the daemon again, so it must go.
        self.create("c1", self.bundle("c1", docker=False))
        pid = self.remember_daemon()
        time.sleep(1.5)
        self.assertFalse(process_gone(pid))  # a sandbox keeps it from being idle
        shutil.rmtree(self.root)
        self.assertTrue(wait_for(lambda: process_gone(pid), 4), "the daemon outlived its root")

    def test_stale_socket_after_daemon_killed(self):
        self.create("c1", self.bundle("c1", docker=False))
        pid = self.remember_daemon()
        os.kill(pid, signal.SIGKILL)
        self.assertTrue(wait_for(lambda: process_gone(pid), 2))
        self.assertEqual(self.runsc("state", "c1").returncode, 128)  # state died with it
        self.create("c1", self.bundle("c1b", docker=False))
        self.assertNotEqual(self.remember_daemon(), pid)

    def test_cli_cost_1000_cycles(self):
        b = self.bundle("bench", docker=False)
        n = 1000
        started = time.monotonic()
        for i in range(n):
            self.runsc("create", "--bundle", b["bundle"], f"b{i:05d}", check=0)
            self.runsc("start", f"b{i:05d}", check=0)
        elapsed = time.monotonic() - started
        print(f"\n[fake-runsc] {n} create+start cycles: {elapsed:.2f} s, "
              f"{elapsed / (2 * n) * 1e3:.2f} ms per CLI invocation "
              "(including Python's subprocess overhead)", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        FAKE_RUNSC = os.path.abspath(sys.argv.pop(1))
    if not FAKE_RUNSC or not os.access(FAKE_RUNSC, os.X_OK):
        sys.exit("usage: fake_runsc_test.py PATH/TO/fake-runsc (or set FAKE_RUNSC)")
    unittest.main()
