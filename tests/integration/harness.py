"""Test harness: runs the real sandbox-agent binary in a temporary root and talks to it
through its real socket and spool directory. Every wait is bounded; teardown kills what the
test started (agent, fake-runsc daemon) even when the test failed.

Binaries come from the environment (set by ctest): SANDBOX_AGENT, SANDBOXCTL, SANDBOX_INIT,
FAKE_RUNSC.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

AGENT = os.environ.get("SANDBOX_AGENT", "build/sandbox-agent")
SANDBOXCTL = os.environ.get("SANDBOXCTL", "build/sandboxctl")
SANDBOX_INIT = os.environ.get("SANDBOX_INIT", "build/sandbox-init")
FAKE_RUNSC = os.environ.get("FAKE_RUNSC", "build/tests/fake_runsc/fake-runsc")


def wait_for(predicate, timeout=10.0, interval=0.01, what="condition"):
    """Polls predicate until it returns a truthy value; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Client:
    """One NDJSON connection to the agent."""

    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def send(self, obj):
        self.send_raw(json.dumps(obj).encode() + b"\n")

    def read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("agent closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, obj):
        self.send(obj)
        return self.read()

    def closed_by_peer(self, timeout=5.0):
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def process_children(pid):
    """Direct children of pid, with their state letter."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        if int(rest[1]) == pid:
            out.append((int(entry), rest[0]))
    return out


def process_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def spawn_helper_of(agent_pid):
    """The agent's spawn helper (runsc.spawn_helper), or None."""
    for p, _ in process_children(agent_pid):
        if process_name(p) == "spawn-helper":
            return p
    return None


def agent_children(agent_pid):
    """What the agent has started and not yet reaped: its own children but the spawn helper,
    and the helper's children (runsc calls), with their state letters."""
    out = []
    for p, st in process_children(agent_pid):
        if process_name(p) == "spawn-helper":
            out += process_children(p)
        else:
            out.append((p, st))
    return out


def pids_with_cmdline(fragment):
    """Processes whose command line contains fragment."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment in cmd:
            found.append(int(entry))
    return found


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class AgentProcess:
    """A sandbox-agent with its own root, config and (by default) the fake runtime."""

    def __init__(self, root, config=None, runsc=None, extra_args=(), env=None, argv_prefix=()):
        self.root = root
        self.config_path = os.path.join(root, "config.json")
        self.socket_path = os.path.join(root, "agent.sock")
        self.log_path = os.path.join(root, "agent.log")
        self.runsc = runsc or os.path.abspath(FAKE_RUNSC)
        cfg = {"sandbox_init": os.path.abspath(SANDBOX_INIT), "log_level": "debug",
               "allowed_host_prefixes": [os.path.join(root, "images")]}
        cfg.update(config or {})
        os.makedirs(os.path.join(root, "images", "rootfs"), exist_ok=True)
        with open(self.config_path, "w") as f:
            json.dump(cfg, f)
        self.extra_args = list(extra_args)
        self.argv_prefix = list(argv_prefix)  # e.g. nsenter into a test network namespace
        self.env = env
        self.proc = None

    @property
    def rootfs(self):
        return os.path.join(self.root, "images", "rootfs")

    def start(self, wait=True):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv_prefix + [os.path.abspath(AGENT), "--root", self.root, "--config", self.config_path,
             "--runsc", self.runsc] + self.extra_args,
            stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        if wait:
            wait_for(self.answers, timeout=20, what="the agent to answer on its socket")
        return self

    def answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
        c = None
        try:
            c = Client(self.socket_path, timeout=2)
            return c.call({"op": "version"}).get("ok")
        except (OSError, ValueError):
            return False
        finally:
            if c:
                c.close()

    def client(self):
        return Client(self.socket_path)

    def call(self, obj):
        c = self.client()
        try:
            return c.call(obj)
        finally:
            c.close()

    def launch(self, request, wait=False):
        msg = {"op": "launch", "request": request}
        if wait:
            msg["wait"] = "ready"
        return self.call(msg)

    def status(self, sid):
        reply = self.call({"op": "status", "id": sid})
        return reply["sandbox"] if reply.get("ok") else None

    def wait_state(self, sid, states, timeout=20):
        if isinstance(states, str):
            states = (states,)
        return wait_for(lambda: (s := self.status(sid)) and s["state"] in states and s,
                        timeout=timeout, what=f"{sid} to reach {states}")

    def request(self, sid=None, **kw):
        r = {"rootfs": self.rootfs, "args": ["/bin/sleep", "infinity"]}
        if sid:
            r["id"] = sid
        r.update(kw)
        return r

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def fake_daemon_pid(self):
        try:
            with open(os.path.join(self.root, "runsc", "fake-runsc.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def kill_fake_daemon(self):
        # Every fake-runsc process of this root (CLIs and daemon), whatever the pid file says.
        # Again until three sweeps in a row find none: a CLI the killed agent had started can
        # still start a daemon after a sweep, and a process in the middle of its exec shows
        # no command line. (A daemon that escapes all this leaves once its root is removed.)
        deadline = time.monotonic() + 10
        empty = 0
        while time.monotonic() < deadline and empty < 3:
            pids = pids_with_cmdline(os.path.join(self.root, "runsc"))
            empty = 0 if pids else empty + 1
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)


def mounts_under(path):
    """Mount points at or under `path`, deepest first."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    found = [p for p in points if p == path or p.startswith(path.rstrip("/") + "/")]
    return sorted(found, key=len, reverse=True)


def unmount_under(path):
    """Lazily unmounts every mount at or under `path`, deepest first."""
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True)


def release_log_quotas(root):
    """Unmounts the logs tmpfs of sandboxes a killed agent left running (the log quota)."""
    unmount_under(os.path.join(root, "logs"))


def sandboxctl(agent, *args, input=None, timeout=60):
    return subprocess.run([os.path.abspath(SANDBOXCTL), "--socket", agent.socket_path, *args],
                          input=input, capture_output=True, text=True, timeout=timeout)


class AgentTestCase(unittest.TestCase):
    """Each test gets a fresh root; agents started through start_agent are torn down."""

    config = {}

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sa-test-")
        self.agents = []
        # Cleanups run last-registered first, after tearDown: this one runs after every mount
        # a test undoes with addCleanup, which tearDown's rmtree could not remove (busy).
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def tearDown(self):
        for a in self.agents:
            a.kill()
            a.kill_fake_daemon()
            release_log_quotas(a.root)
        if hasattr(self, "_outcome") and not self._passed():
            for a in self.agents:
                print(f"--- agent log ({a.root}) ---\n{a.log()[-20000:]}")
        # self.tmp goes in the cleanup setUp registered, after the tests' own cleanups.

    def _passed(self):
        result = self._outcome.result
        errors = getattr(result, "errors", []) + getattr(result, "failures", [])
        return not any(test is self for test, _ in errors)

    def start_agent(self, config=None, root=None, **kw):
        cfg = dict(self.config)
        cfg.update(config or {})
        a = AgentProcess(root or os.path.join(self.tmp, f"root{len(self.agents)}"), cfg, **kw)
        self.agents.append(a)
        return a.start()
