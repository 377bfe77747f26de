#!/usr/bin/python3
"""Tests for sandbox-init (agent/init), run directly on the host (no gVisor).

Usage:
    SANDBOX_INIT=build/sandbox-init /usr/bin/python3 tests/sandbox_init_test.py
    /usr/bin/python3 tests/sandbox_init_test.py build/sandbox-init [unittest args]

dockerd is replaced by FAKE_DOCKERD below: a small Python script that listens on the
--host=unix://PATH it is given and speaks just enough HTTP. Its behaviour is chosen with
--dockerd-arg=--fake-... options, which also checks that init passes --dockerd-arg through.
Every test runs init in its own session and kills that session's process group on cleanup.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

INIT = os.environ.get("SANDBOX_INIT", "")
if len(sys.argv) > 1 and not sys.argv[1].startswith("-") and os.path.isfile(sys.argv[1]):
    INIT = sys.argv.pop(1)
INIT = os.path.abspath(INIT) if INIT else ""

FAKE_DOCKERD = textwrap.dedent(r'''
    #!/usr/bin/python3
    # Fake dockerd for sandbox-init tests. Options (all but --host are optional):
    #   --host=unix://PATH        socket to listen on (given by init)
    #   --fake-info=FILE          write ids, namespaces, argv and open fds to FILE (JSON)
    #   --fake-listen-delay=SEC   wait before listening
    #   --fake-listen=0           never listen
    #   --fake-print=TEXT         print TEXT on stdout and "err: TEXT" on stderr
    #   --fake-spam=BYTES         write BYTES bytes of output before listening
    #   --fake-exit-after=SEC     exit on its own after SEC seconds (code --fake-exit-code=N)
    #   --fake-ignore-term        ignore SIGTERM
    import json, os, signal, socket, sys, threading, time

    # Inherited fds, before Python opens anything of its own (listdir's own fd is closed
    # again by the time readlink runs, so it drops out).
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[name] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass

    opts = {}
    for a in sys.argv[1:]:
        k, _, v = a.partition("=")
        opts[k] = v

    # Leave with init: dockerd runs in its own session, so killing the test's process group
    # would not reach us if init itself were killed.
    parent = os.getppid()
    def watch_parent():
        while os.getppid() == parent:
            time.sleep(0.1)
        os._exit(99)
    threading.Thread(target=watch_parent, daemon=True).start()

    if "--fake-ignore-term" in opts:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError as e:
            return "error: %s" % e

    if "--fake-info" in opts:
        info = {"argv": sys.argv, "pid": os.getpid(), "uid": os.getuid(),
                "uid_map": read("/proc/self/uid_map"), "gid_map": read("/proc/self/gid_map"),
                "setgroups": read("/proc/self/setgroups"),
                "userns": os.readlink("/proc/self/ns/user"), "sid": os.getsid(0),
                "mntns": os.readlink("/proc/self/ns/mnt"), "fds": fds}
        tmp = opts["--fake-info"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f)
        os.rename(tmp, opts["--fake-info"])

    if "--fake-print" in opts:
        print(opts["--fake-print"], flush=True)
        print("err: " + opts["--fake-print"], file=sys.stderr, flush=True)
    if "--fake-spam" in opts:
        left = int(opts["--fake-spam"])
        line = b"spam " * 20 + b"\n"
        while left > 0:
            n = os.write(1, line[:left])
            left -= n

    if "--fake-exit-after" in opts:
        def exit_later():
            time.sleep(float(opts["--fake-exit-after"]))
            print("fake dockerd exiting", flush=True)
            os._exit(int(opts.get("--fake-exit-code", "0")))
        threading.Thread(target=exit_later, daemon=True).start()

    time.sleep(float(opts.get("--fake-listen-delay", "0")))
    path = opts["--host"][len("unix://"):]
    if opts.get("--fake-listen", "1") == "0":
        time.sleep(3600)
    try:
        os.unlink(path)
    except OSError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1024)
    print("API listen on " + path, flush=True)

    def handle(conn):
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for l in lines[1:]:
                k, _, v = l.partition(":")
                headers[k.strip().lower()] = v.strip()
            if target == "/_ping":
                body = b"OK"
            elif target == "/echo":
                n = int(headers.get("content-length", "0"))
                while len(rest) < n:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    rest += chunk
                body = rest[:n]
            elif target == "/until-eof":
                # Answers only after the client's EOF: tests half-close through the relay.
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    rest += chunk
                body = str(len(rest)).encode()
            elif target.startswith("/big?n="):
                body = b"x" * int(target.split("=", 1)[1])
            else:
                body = b"not found"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % len(body) + body)
        except OSError:
            pass
        finally:
            conn.close()

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()
''').lstrip()


FAKE_CONTAINERD = textwrap.dedent(r'''
    #!/usr/bin/python3
    # Fake containerd: `--config FILE`; listens on the [grpc] address of FILE, writes its argv and
    # config to $FAKE_CONTAINERD_INFO, exits after $FAKE_CONTAINERD_EXIT_AFTER seconds if set.
    import json, os, re, signal, socket, sys, time
    config = open(sys.argv[sys.argv.index("--config") + 1]).read()
    address = re.search(r'address = "([^"]+)"', config).group(1)
    def term(*_):
        print("fake containerd exiting", flush=True)
        os._exit(0)
    signal.signal(signal.SIGTERM, term)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(address)
    s.listen(16)
    with open(os.environ["FAKE_CONTAINERD_INFO"], "w") as f:
        json.dump({"argv": sys.argv, "config": config, "pid": os.getpid(), "sid": os.getsid(0)}, f)
    print("fake containerd serving", flush=True)
    parent = os.getppid()
    deadline = time.time() + float(os.environ.get("FAKE_CONTAINERD_EXIT_AFTER", "1e9"))
    while os.getppid() == parent and time.time() < deadline:
        time.sleep(0.05)
    os._exit(4)
''').lstrip()


def wait_for(cond, timeout, interval=0.01, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


def http(sock_path, target, method="GET", body=b"", half_close=False, timeout=10.0,
         read_delay=0.0):
    """One request over a Unix socket; returns (status line, body), reading until EOF."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        req = b"%s %s HTTP/1.1\r\nHost: x\r\n" % (method.encode(), target.encode())
        if method != "GET" and target != "/until-eof":
            req += b"Content-Length: %d\r\n" % len(body)
        s.sendall(req + b"\r\n" + body)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        if read_delay:
            time.sleep(read_delay)
        chunks = []
        while True:
            c = s.recv(1 << 20)
            if not c:
                break
            chunks.append(c)
    finally:
        s.close()
    data = b"".join(chunks)
    head, _, payload = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(), payload


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children_of(pid):
    """(pid, state) of each process whose parent is pid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append((int(name), fields[0]))
    return out


@unittest.skipUnless(INIT and os.access(INIT, os.X_OK),
                     "set SANDBOX_INIT or pass the sandbox-init binary as the first argument")
class SandboxInitTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="sinit-test-")
        self.dir = self.tmp.name
        self.status = os.path.join(self.dir, "status")
        self.logs = os.path.join(self.dir, "logs")
        self.run_dir = os.path.join(self.dir, "run")
        for d in (self.status, self.logs, self.run_dir):
            os.mkdir(d)
        self.fake = os.path.join(self.dir, "fake-dockerd")
        with open(self.fake, "w") as f:
            f.write(FAKE_DOCKERD)
        os.chmod(self.fake, 0o755)
        self.inner = os.path.join(self.run_dir, "docker.sock")
        self.relay = os.path.join(self.status, "docker.sock")
        self.fake_containerd = os.path.join(self.dir, "fake-containerd")
        with open(self.fake_containerd, "w") as f:
            f.write(FAKE_CONTAINERD)
        os.chmod(self.fake_containerd, 0o755)
        self.containerd_info = os.path.join(self.dir, "containerd.json")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()
        self.tmp.cleanup()

    # -- helpers ---------------------------------------------------------------------------

    def start(self, args, dockerd=None, cgroup="auto", markers=True, logs=True, containerd=None, env=None):
        """Starts init in its own session. dockerd: list of extra --fake-* options, or None;
        containerd: the --containerd path, or None."""
        cmd = [INIT]
        if markers:
            cmd += ["--status-dir", self.status]
        if logs:
            cmd += ["--log-dir=" + self.logs]
        if dockerd is not None:
            cmd += ["--dockerd", self.fake, "--cgroup", cgroup, "--dockerd-socket", self.inner,
                    "--relay-socket=" + self.relay, "--dockerd-arg=--iptables=false"]
            cmd += ["--dockerd-arg=" + a for a in dockerd]
            if containerd:
                cmd += ["--containerd", containerd]
        if args:
            cmd += ["--"] + list(args)
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True,
                             env=dict(os.environ, FAKE_CONTAINERD_INFO=self.containerd_info, **(env or {})))
        self.procs.append(p)
        return p

    def finish(self, p, timeout=15):
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out.decode(), err.decode()

    def marker(self, name):
        path = os.path.join(self.status, name)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def log(self, name="init.log"):
        try:
            with open(os.path.join(self.logs, name)) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_relay(self, timeout=10):
        # The file appears at bind(); connections succeed once listen() follows.
        def accepting():
            if not os.path.exists(self.relay):
                return False
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.relay)
                return True
            except OSError:
                return False
            finally:
                s.close()
        wait_for(accepting, timeout, what="the relay socket")

    def read_info(self, path, timeout=10):
        wait_for(lambda: os.path.exists(path), timeout, what=path)
        with open(path) as f:
            return json.load(f)

    # -- command line ----------------------------------------------------------------------

    def test_version(self):
        r = subprocess.run([INIT, "--version"], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stdout.decode(), "sandbox-init 0.1.0\n")

    def test_bad_options_exit_2(self):
        for args in (["--bogus"], ["--status-dir"], ["--cgroup=weird", "--dockerd", "x",
                     "--dockerd-socket", "/s"], ["--dockerd", "/x"], ["-x", "true"],
                     ["--relay-socket", "/r", "true"]):
            with self.subTest(args=args):
                r = subprocess.run([INIT] + args, capture_output=True, timeout=10)
                self.assertEqual(r.returncode, 2, r)
                self.assertIn(b"sandbox-init: ", r.stderr)
                self.assertIn(b"usage:", r.stderr)

    # -- exit status and markers -----------------------------------------------------------

    def test_exit_status_propagation_and_marker(self):
        cases = [(["true"], 0), (["sh", "-c", "exit 7"], 7),
                 (["sh", "-c", "kill -KILL $$"], 128 + signal.SIGKILL),
                 (["sh", "-c", "kill -TERM $$"], 128 + signal.SIGTERM)]
        for args, want in cases:
            with self.subTest(args=args):
                for name in os.listdir(self.status):
                    os.unlink(os.path.join(self.status, name))
                code, _, _ = self.finish(self.start(args))
                self.assertEqual(code, want)
                self.assertEqual(self.marker("init.exit"), {"exit_code": want})
                # Written atomically: nothing else (no .tmp) is left behind.
                self.assertEqual(sorted(os.listdir(self.status)), ["init.exit"])

    def test_exec_failure_127_and_126(self):
        code, _, err = self.finish(self.start(["/nonexistent/program"]))
        self.assertEqual(code, 127)
        self.assertIn("cannot execute '/nonexistent/program'", err)
        self.assertEqual(self.marker("init.exit"), {"exit_code": 127})
        noexec = os.path.join(self.dir, "noexec")
        with open(noexec, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(noexec, 0o644)
        code, _, _ = self.finish(self.start([noexec]))
        self.assertEqual(code, 126)
        self.assertEqual(self.marker("init.exit"), {"exit_code": 126})

    def test_main_child_inherits_stdio(self):
        p = self.start(["sh", "-c", "echo to-stdout; echo to-stderr >&2"])
        code, out, err = self.finish(p)
        self.assertEqual(code, 0)
        self.assertEqual(out, "to-stdout\n")
        self.assertIn("to-stderr\n", err)

    def test_logs_to_file_with_prefix_and_utc_timestamp(self):
        self.finish(self.start(["true"]))
        lines = self.log().splitlines()
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^sandbox-init: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")

    def test_logs_to_stderr_without_log_dir(self):
        _, _, err = self.finish(self.start(["true"], logs=False))
        self.assertIn("sandbox-init: ", err)
        self.assertIn("exiting with status 0", err)

    def test_no_fd_leaks_into_main_child(self):
        # The test starts init with only 0-2 open, so anything else was opened by init.
        # (listdir's own fd is closed again before readlink, so it drops out.)
        script = ("import os\n"
                  "fds = []\n"
                  "for n in os.listdir('/proc/self/fd'):\n"
                  "    try: os.readlink('/proc/self/fd/' + n); fds.append(int(n))\n"
                  "    except OSError: pass\n"
                  "print(sorted(fds))\n")
        code, out, _ = self.finish(self.start(["/usr/bin/python3", "-c", script],
                                              dockerd=["--fake-listen-delay=0.5"]))
        self.assertEqual(code, 0)
        self.assertEqual(out.strip(), "[0, 1, 2]")

    # -- signals and reaping ---------------------------------------------------------------

    def test_sigterm_forwarded_to_main_child(self):
        got = os.path.join(self.dir, "got-term")
        script = ("import signal,sys,time\n"
                  "def h(s,f):\n"
                  "    open(%r,'w').write('term'); sys.exit(42)\n"
                  "signal.signal(signal.SIGTERM,h)\n"
                  "open(%r,'w').write('ready')\n"
                  "time.sleep(30)\n") % (got, got + ".ready")
        p = self.start(["/usr/bin/python3", "-c", script])
        wait_for(lambda: os.path.exists(got + ".ready"), 10, what="child ready")
        p.send_signal(signal.SIGTERM)
        code, _, _ = self.finish(p)
        self.assertEqual(code, 42)
        with open(got) as f:
            self.assertEqual(f.read(), "term")
        self.assertEqual(self.marker("init.exit"), {"exit_code": 42})
        self.assertIn("forwarded SIGTERM to the main child", self.log())

    def test_other_signals_forwarded_without_shutdown(self):
        out = os.path.join(self.dir, "sigs")
        script = ("import signal,time\n"
                  "seen=[]\n"
                  "def h(s,f):\n"
                  "    seen.append(signal.Signals(s).name)\n"
                  "    open(%r,'w').write(' '.join(seen))\n"
                  "for s in (signal.SIGHUP,signal.SIGUSR1,signal.SIGUSR2,signal.SIGQUIT):\n"
                  "    signal.signal(s,h)\n"
                  "open(%r,'w').write('')\n"
                  "while len(seen)<4: time.sleep(0.01)\n") % (out, out)
        p = self.start(["/usr/bin/python3", "-c", script])
        wait_for(lambda: os.path.exists(out), 10, what="child ready")
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT):
            p.send_signal(sig)
            time.sleep(0.05)
        code, _, _ = self.finish(p)
        self.assertEqual(code, 0)
        with open(out) as f:
            self.assertEqual(f.read(), "SIGHUP SIGUSR1 SIGUSR2 SIGQUIT")

    def test_without_args_waits_for_sigterm_then_exits_0(self):
        p = self.start([])
        time.sleep(0.3)
        self.assertIsNone(p.poll())
        p.send_signal(signal.SIGINT)
        code, _, _ = self.finish(p)
        self.assertEqual(code, 0)
        self.assertEqual(self.marker("init.exit"), {"exit_code": 0})

    def test_reaps_orphaned_grandchildren(self):
        # Each (sleep &) subshell exits at once: its sleep is orphaned and, with init as the
        # child subreaper, reparented to init, which must reap it when it exits.
        script = "for i in 1 2 3 4 5; do (sleep 0.2 &); done; sleep 1.5"
        p = self.start(["sh", "-c", script])
        time.sleep(0.1)
        orphans = [c for c in children_of(p.pid) if c[1] != "Z"]
        self.assertGreaterEqual(len(orphans), 5, "orphans should be reparented to init")
        time.sleep(0.6)  # the orphaned sleeps are done
        kids = children_of(p.pid)
        self.assertEqual([k for k in kids if k[1] == "Z"], [], "zombies left: %r" % kids)
        self.assertEqual(len(kids), 1, kids)  # just the main child
        code, _, _ = self.finish(p)
        self.assertEqual(code, 0)
        self.assertEqual(self.log().count("reaped orphan pid"), 5)

    # -- dockerd and the relay -------------------------------------------------------------

    def test_relay_ping_and_dockerd_argv(self):
        info = os.path.join(self.dir, "info.json")
        p = self.start(["sleep", "30"], dockerd=["--fake-info=" + info], cgroup="none")
        self.wait_relay()
        self.assertEqual(http(self.relay, "/_ping"), ("HTTP/1.1 200 OK", b"OK"))
        got = self.read_info(info)
        self.assertEqual(got["sid"], got["pid"], "dockerd runs in its own session")
        argv = got["argv"]
        self.assertEqual(argv[1:], ["--host=unix://" + self.inner, "--group=root",
                                    "--iptables=false", "--fake-info=" + info])
        log = self.log()
        self.assertIn("cgroup strategy: --cgroup none", log)
        self.assertIn("relay: listening on " + self.relay, log)
        p.send_signal(signal.SIGTERM)
        code, _, _ = self.finish(p)
        self.assertEqual(code, 128 + signal.SIGTERM)  # sleep was killed by the forwarded TERM
        self.assertIsNone(self.marker("dockerd.exit"))  # stopped by init: no marker
        self.assertEqual(self.marker("init.exit"), {"exit_code": 143})
        self.assertFalse(os.path.exists(self.relay), "relay socket removed on exit")

    def test_dockerd_gets_no_inherited_fds(self):
        info = os.path.join(self.dir, "info.json")
        p = self.start(["sleep", "30"], dockerd=["--fake-info=" + info])
        fds = self.read_info(info)["fds"]
        self.assertEqual(sorted(fds), ["0", "1", "2"], fds)
        self.assertEqual(fds["0"], "/dev/null")
        self.assertTrue(fds["1"].startswith("pipe:") and fds["1"] == fds["2"], fds)
        p.send_signal(signal.SIGTERM)
        self.finish(p)

    def test_relay_many_concurrent_connections(self):
        p = self.start(["sleep", "60"], dockerd=[])
        self.wait_relay()
        n = 100
        results = [None] * n
        payload = os.urandom(256 * 1024)
        barrier = threading.Barrier(n)

        def worker(i):
            barrier.wait(timeout=10)
            try:
                if i % 4 == 0:
                    results[i] = http(self.relay, "/echo", "POST", payload, timeout=30)[1] == payload
                else:
                    results[i] = http(self.relay, "/_ping", timeout=30) == ("HTTP/1.1 200 OK", b"OK")
            except Exception as e:  # recorded, asserted below
                results[i] = e

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(results, [True] * n)
        self.assertIsNone(p.poll())
        p.send_signal(signal.SIGTERM)
        self.finish(p)

    def test_relay_half_close(self):
        p = self.start(["sleep", "30"], dockerd=[])
        self.wait_relay()
        # Ping, then EOF right after the request: the full reply must still arrive.
        self.assertEqual(http(self.relay, "/_ping", half_close=True), ("HTTP/1.1 200 OK", b"OK"))
        # The server answers only after it sees EOF: our shutdown(SHUT_WR) must reach it.
        body = os.urandom(300 * 1024)
        self.assertEqual(http(self.relay, "/until-eof", "POST", body, half_close=True),
                         ("HTTP/1.1 200 OK", str(len(body)).encode()))
        p.send_signal(signal.SIGTERM)
        self.finish(p)

    def test_relay_backpressure_bounded_memory(self):
        p = self.start(["sleep", "30"], dockerd=[])
        self.wait_relay()
        size = 64 * 1024 * 1024
        before = rss_kib(p.pid)
        result = {}

        def slow_reader():
            result["r"] = http(self.relay, "/big?n=%d" % size, read_delay=1.5, timeout=60)

        t = threading.Thread(target=slow_reader)
        t.start()
        time.sleep(1.0)  # the client reads nothing yet: init must stop reading dockerd
        during = rss_kib(p.pid)
        t.join(timeout=60)
        self.assertEqual(result["r"][0], "HTTP/1.1 200 OK")
        self.assertEqual(len(result["r"][1]), size)
        self.assertLess(during - before, 4 * 1024, "init buffered %d KiB" % (during - before))
        p.send_signal(signal.SIGTERM)
        self.finish(p)

    def test_relay_socket_not_before_inner_socket(self):
        p = self.start(["sleep", "30"], dockerd=["--fake-listen-delay=0.8"])
        time.sleep(0.4)
        self.assertFalse(os.path.exists(self.relay), "relay bound before dockerd listened")
        self.assertFalse(os.path.exists(self.inner))
        self.wait_relay()
        # By the time the relay exists, the inner socket exists and accepts connections.
        self.assertTrue(os.path.exists(self.inner))
        self.assertEqual(http(self.relay, "/_ping")[1], b"OK")
        p.send_signal(signal.SIGTERM)
        self.finish(p)

    def test_stale_relay_socket_removed_at_start(self):
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(self.relay)
        stale.close()
        p = self.start(["sleep", "30"], dockerd=["--fake-listen-delay=0.8"])
        wait_for(lambda: not os.path.exists(self.relay), 5, what="stale relay removal")
        self.wait_relay()
        self.assertEqual(http(self.relay, "/_ping")[1], b"OK")
        p.send_signal(signal.SIGTERM)
        self.finish(p)

    def test_dockerd_dies_marker_and_log(self):
        p = self.start(["sleep", "30"], dockerd=["--fake-print=hello from fake dockerd",
                                                 "--fake-exit-after=0.5", "--fake-exit-code=3"])
        wait_for(lambda: self.marker("dockerd.exit"), 10, what="dockerd.exit")
        self.assertEqual(self.marker("dockerd.exit"), {"exit_code": 3})
        log = self.log("dockerd.log")
        self.assertIn("hello from fake dockerd\n", log)  # stdout
        self.assertIn("err: hello from fake dockerd\n", log)  # stderr
        self.assertIn("fake dockerd exiting\n", log)  # its last words, before the marker
        # init keeps running the main child; a relay client now gets its connection closed.
        time.sleep(0.2)
        self.assertIsNone(p.poll())
        self.assertIsNone(self.marker("init.exit"))
        try:  # closed at once: an empty reply, a reset or EPIPE depending on timing
            self.assertEqual(http(self.relay, "/_ping"), ("", b""))
        except (ConnectionResetError, BrokenPipeError):
            pass
        self.assertIsNone(p.poll())
        self.assertIn("cannot connect to " + self.inner, self.log())
        p.send_signal(signal.SIGTERM)
        code, _, _ = self.finish(p)
        self.assertEqual(code, 143)
        self.assertEqual(self.marker("init.exit"), {"exit_code": 143})

    def test_containerd_is_started_first_and_stopped_after_dockerd(self):
        info = os.path.join(self.dir, "info.json")
        p = self.start(["sleep", "30"], dockerd=["--fake-info=" + info], containerd=self.fake_containerd)
        self.wait_relay()
        ctrd = self.read_info(self.containerd_info)
        config = os.path.join(self.run_dir, "sandbox-init", "containerd.toml")
        self.assertEqual(ctrd["argv"][1:], ["--config", config])
        self.assertEqual(ctrd["sid"], ctrd["pid"], "containerd runs in its own session")
        address = os.path.join(self.run_dir, "sandbox-init", "containerd.sock")
        self.assertIn(f'address = "{address}"', ctrd["config"])
        self.assertIn('"io.containerd.grpc.v1.cri"', ctrd["config"])  # disabled, as dockerd does
        self.assertEqual(os.stat(os.path.dirname(config)).st_mode & 0o777, 0o700)
        self.assertEqual(self.read_info(info)["argv"][-1], "--containerd=" + address)
        log = self.log()
        self.assertLess(log.index("containerd: started pid"), log.index("dockerd: started pid"))
        wait_for(lambda: "fake containerd serving" in self.log("dockerd.log"), 10,
                 what="containerd's output in dockerd.log")
        p.send_signal(signal.SIGTERM)
        code, _, _ = self.finish(p)
        self.assertEqual(code, 143)
        log = self.log()
        # dockerd stops its containers through containerd: containerd goes last.
        self.assertLess(re.search(r"dockerd \(pid \d+\) exited", log).start(), log.index("stopping containerd"))
        self.assertIn("containerd (pid %d) exited: exit code 0" % ctrd["pid"], log)
        self.assertIn("fake containerd exiting", self.log("dockerd.log"))
        self.assertFalse(os.path.exists("/proc/%d" % ctrd["pid"]), "containerd is gone")

    def test_containerd_that_dies_takes_dockerd_down(self):
        p = self.start(["sleep", "30"], dockerd=[], containerd=self.fake_containerd,
                       env={"FAKE_CONTAINERD_EXIT_AFTER": "0.5"})
        wait_for(lambda: self.marker("dockerd.exit"), 10, what="dockerd.exit")
        self.assertIn("containerd exited while dockerd runs; stopping dockerd", self.log())
        self.assertIsNone(p.poll(), "the main child keeps running; the agent decides")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.finish(p)[0], 143)

    def test_containerd_that_dies_before_dockerd_is_up_is_replaced_by_dockerds_own(self):
        info = os.path.join(self.dir, "info.json")
        p = self.start(["sleep", "30"], dockerd=["--fake-info=" + info, "--fake-listen-delay=1.5"],
                       containerd=self.fake_containerd, env={"FAKE_CONTAINERD_EXIT_AFTER": "0.2"})
        wait_for(lambda: "starting it again with a containerd of its own" in self.log(), 10, what="the restart")
        self.assertIn("containerd exited before dockerd came up", self.log())
        # the second dockerd has no --containerd, and comes up; no death was reported
        wait_for(lambda: os.path.exists(info) and "--containerd" not in " ".join(self.read_info(info)["argv"]),
                 10, what="dockerd started again without --containerd")
        self.wait_relay()
        self.assertEqual(http(self.relay, "/_ping"), ("HTTP/1.1 200 OK", b"OK"))
        self.assertIsNone(self.marker("dockerd.exit"))
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.finish(p)[0], 143)

    def test_containerd_is_left_to_dockerd_in_a_user_namespace(self):
        info = os.path.join(self.dir, "info.json")
        p = self.start(["sleep", "30"], dockerd=["--fake-info=" + info], cgroup="userns",
                       containerd=self.fake_containerd)
        self.wait_relay()
        self.assertNotIn("--containerd", " ".join(self.read_info(info)["argv"]))
        self.assertIn("containerd: left to dockerd (it runs in a user namespace)", self.log())
        self.assertFalse(os.path.exists(self.containerd_info))
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.finish(p)[0], 143)

    def test_containerd_that_cannot_start_leaves_it_to_dockerd(self):
        info = os.path.join(self.dir, "info.json")
        p = self.start(["sleep", "30"], dockerd=["--fake-info=" + info], containerd="/nonexistent/containerd")
        self.wait_relay()
        self.assertNotIn("--containerd", " ".join(self.read_info(info)["argv"]))
        self.assertIn("containerd: cannot start /nonexistent/containerd", self.log())
        self.assertIn("dockerd starts its own", self.log())
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.finish(p)[0], 143)

    def test_a_containerd_of_the_users_own_is_left_alone(self):
        info = os.path.join(self.dir, "info.json")
        p = self.start(["sleep", "30"], dockerd=["--fake-info=" + info, "--containerd=/run/theirs.sock"],
                       containerd=self.fake_containerd)
        self.wait_relay()
        self.assertEqual([a for a in self.read_info(info)["argv"] if "containerd" in a], ["--containerd=/run/theirs.sock"])
        self.assertFalse(os.path.exists(self.containerd_info))
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.finish(p)[0], 143)

    def test_dockerd_dies_before_listening(self):
        p = self.start([], dockerd=["--fake-listen=0", "--fake-exit-after=0.3",
                                    "--fake-exit-code=1"])
        wait_for(lambda: self.marker("dockerd.exit"), 10, what="dockerd.exit")
        self.assertEqual(self.marker("dockerd.exit"), {"exit_code": 1})
        time.sleep(0.1)
        self.assertIn("stopped waiting", self.log())
        self.assertFalse(os.path.exists(self.relay))
        p.send_signal(signal.SIGTERM)
        code, _, _ = self.finish(p)
        self.assertEqual(code, 0)

    def test_dockerd_exec_failure_writes_marker(self):
        cmd = [INIT, "--status-dir", self.status, "--log-dir", self.logs, "--dockerd",
               "/nonexistent/dockerd", "--cgroup", "none", "--dockerd-socket", self.inner,
               "--relay-socket", self.relay, "--", "sleep", "30"]
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
        self.procs.append(p)
        wait_for(lambda: self.marker("dockerd.exit"), 10, what="dockerd.exit")
        self.assertEqual(self.marker("dockerd.exit"), {"exit_code": 127})
        self.assertIsNone(p.poll())
        p.send_signal(signal.SIGTERM)
        self.finish(p)

    def test_main_exit_stops_dockerd(self):
        info = os.path.join(self.dir, "info.json")
        p = self.start(["sh", "-c", "sleep 0.5; exit 5"], dockerd=["--fake-info=" + info])
        dockerd_pid = self.read_info(info)["pid"]
        code, _, _ = self.finish(p)
        self.assertEqual(code, 5)
        self.assertFalse(os.path.exists("/proc/%d" % dockerd_pid) and
                         "Z" not in open("/proc/%d/stat" % dockerd_pid).read().split()[2])
        self.assertIsNone(self.marker("dockerd.exit"))
        self.assertEqual(self.marker("init.exit"), {"exit_code": 5})

    def test_dockerd_ignoring_sigterm_is_killed_after_5s(self):
        p = self.start([], dockerd=["--fake-ignore-term"])
        self.wait_relay()
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        code, _, _ = self.finish(p, timeout=20)
        elapsed = time.monotonic() - t0
        self.assertEqual(code, 0)
        self.assertGreater(elapsed, 4.5)
        self.assertLess(elapsed, 8)
        self.assertIn("SIGKILL", self.log())
        self.assertIsNone(self.marker("dockerd.exit"))

    def test_dockerd_log_rotates_at_8_mib(self):
        p = self.start(["sleep", "30"], dockerd=["--fake-spam=%d" % (9 * 1024 * 1024)])
        self.wait_relay(timeout=30)
        old = os.path.join(self.logs, "dockerd.log.1")
        self.assertTrue(os.path.exists(old))
        self.assertGreater(os.path.getsize(old), 8 * 1024 * 1024)
        self.assertLess(os.path.getsize(os.path.join(self.logs, "dockerd.log")), 2 * 1024 * 1024)
        self.assertIn("API listen on", self.log("dockerd.log"))  # the tail is in the new file
        p.send_signal(signal.SIGTERM)
        self.finish(p)

    # -- cgroup strategies -----------------------------------------------------------------

    def test_userns_strategy_runs_dockerd_in_new_user_namespace(self):
        info = os.path.join(self.dir, "info.json")
        p = self.start(["sleep", "30"], dockerd=["--fake-info=" + info], cgroup="userns")
        got = self.read_info(info)
        self.assertNotEqual(got["userns"], os.readlink("/proc/%d/ns/user" % p.pid))
        self.assertNotEqual(got["mntns"], os.readlink("/proc/%d/ns/mnt" % p.pid))
        self.assertEqual(got["uid"], 0)
        self.assertEqual(got["setgroups"].strip(), "deny")
        # Not the full "0 0 4294967295": dockerd would take that for the initial namespace.
        self.assertEqual(got["uid_map"].split(), ["0", "0", "4294967294"])
        self.assertEqual(got["gid_map"].split(), ["0", "0", "4294967294"])
        self.wait_relay()
        self.assertEqual(http(self.relay, "/_ping")[1], b"OK")
        self.assertIn("cgroup strategy: --cgroup userns", self.log())
        p.send_signal(signal.SIGTERM)
        self.finish(p)

    def test_auto_strategy_is_logged(self):
        info = os.path.join(self.dir, "info.json")
        p = self.start(["sleep", "30"], dockerd=["--fake-info=" + info], cgroup="auto")
        got = self.read_info(info)
        with open("/proc/self/mountinfo") as f:
            devices = any(" - cgroup " in l and "devices" in l.split(" - ")[1].split()[2].split(",")
                          for l in f)
        same_ns = got["userns"] == os.readlink("/proc/%d/ns/user" % p.pid)
        self.assertEqual(same_ns, devices)
        wait_for(lambda: "cgroup strategy: --cgroup auto" in self.log(), 5, what="log line")
        self.assertIn("devices cgroup mounted at" if devices else "no devices cgroup", self.log())
        p.send_signal(signal.SIGTERM)
        self.finish(p)


if __name__ == "__main__":
    unittest.main(verbosity=2)
