"""Shared helpers of the benchmarks in bench/: where the binaries are, an agent in a root of
its own, a blocking NDJSON client, /proc figures, statistics and markdown tables.

Benchmarks print figures; they are not tests. Nothing here asserts anything about speed.
Binaries come from $BUILD_DIR (default build-bench, as bench/run-all builds them); single
ones can be overridden with $SANDBOX_AGENT, $SANDBOXCTL, $SANDBOX_INIT, $FAKE_RUNSC.
"""
import datetime
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BUILD = os.path.abspath(os.path.join(REPO, os.environ.get("BUILD_DIR", "build-bench")))


def binary(env, relative):
    return os.path.abspath(os.environ.get(env) or os.path.join(BUILD, relative))


AGENT = binary("SANDBOX_AGENT", "sandbox-agent")
SANDBOXCTL = binary("SANDBOXCTL", "sandboxctl")
SANDBOX_INIT = binary("SANDBOX_INIT", "sandbox-init")
FAKE_RUNSC = binary("FAKE_RUNSC", "tests/fake_runsc/fake-runsc")
RENDER_BENCH = binary("RENDER_BENCH", "bench/render_bench")
MONITOR = binary("BENCH_MONITOR", "bench/monitor")
REAL_RUNSC = "/usr/bin/runsc"
# The fake-runtime benchmarks put the agent's root on a tmpfs by default, so that they measure
# the agent rather than the disk's file system (bench/scale.py --dir /tmp measures both).
DEFAULT_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*args):
    """Progress goes to stderr; the report (tables) to stdout."""
    print(*args, file=sys.stderr, flush=True)


def need(*paths):
    for p in paths:
        if not os.access(p, os.X_OK):
            sys.exit(f"not built: {p} (run bench/run-all, or BUILD_DIR=build-bench scripts/build …)")


# --- waiting ----------------------------------------------------------------------------

def wait_for(predicate, timeout, interval=0.01):
    """Polls predicate until truthy; returns its value, or None after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


# --- /proc ------------------------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of the process (all its threads, not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def minor_faults(pid):
    """Minor page faults the process has taken (minflt, all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def spawn_helper_of(pid):
    """The agent's spawn helper process (runsc.spawn_helper), or None."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        return None
    for k in kids:
        try:
            with open(f"/proc/{k}/comm") as f:
                if f.read().strip() == "spawn-helper":
                    return k
        except OSError:
            pass
    return None


def status_kib(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def rollup_kib(pid, key="Pss"):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def pids_with_cmdline(fragment):
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


def kill_pids(pids, sig=signal.SIGKILL):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


# --- time -------------------------------------------------------------------------------

def rfc3339_us(text):
    """'2026-11-29T09:11:20.123456Z' (or with nanoseconds / an offset) -> UNIX microseconds."""
    text = text.strip().strip('"')
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    main, _, rest = text.partition(".")
    frac, tz = "", ""
    if rest:
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tz = rest[:i], rest[i:]
    else:
        for sign in ("+", "-"):
            pos = main.rfind(sign)
            if pos > 10:
                main, tz = main[:pos], main[pos:]
                break
    dt = datetime.datetime.fromisoformat(main + (tz or "+00:00"))
    micros = int((frac + "000000")[:6]) if frac else 0
    return int(dt.timestamp()) * 1_000_000 + micros


def now_us():
    return time.time_ns() // 1000


# --- statistics and tables --------------------------------------------------------------

def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-q * len(v) // 100)) - 1))
    return v[k]


def summary(values):
    if not values:
        return {"n": 0}
    return {"n": len(values), "median": statistics.median(values), "min": min(values), "max": max(values),
            "p50": percentile(values, 50), "p99": percentile(values, 99), "mean": statistics.fmean(values)}


def table(header, rows, align=None):
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def met(ok):
    return "**met**" if ok else "**missed**"


# --- the agent --------------------------------------------------------------------------

class Client:
    """One blocking NDJSON connection to the agent."""

    def __init__(self, path, timeout=60.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send(self, obj):
        self.sock.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def send_many(self, objs):
        self.sock.sendall(b"".join(json.dumps(o, separators=(",", ":")).encode() + b"\n" for o in objs))

    def read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the agent closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, obj):
        self.send(obj)
        return self.read()

    def close(self):
        self.sock.close()


class Agent:
    """sandbox-agent in ROOT with a config of its own; by default the fake runtime."""

    def __init__(self, root, config=None, runsc=None, images=None, prefix=()):
        self.prefix = list(prefix)  # e.g. ["chrt", "-f", "10"]: the agent and everything it runs
        self.root = os.path.abspath(root)
        self.runsc = runsc or FAKE_RUNSC
        self.socket_path = os.path.join(self.root, "agent.sock")
        self.config_path = os.path.join(self.root, "config.json")
        self.log_path = os.path.join(self.root, "agent.log")
        self.rootfs = os.path.join(self.root, "images", "rootfs")
        os.makedirs(self.rootfs, exist_ok=True)
        cfg = {"sandbox_init": SANDBOX_INIT, "log_level": "warn",
               "allowed_host_prefixes": [os.path.join(self.root, "images")] + list(images or [])}
        cfg.update(config or {})
        with open(self.config_path, "w") as f:
            json.dump(cfg, f)
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.prefix + [AGENT, "--root", self.root, "--config", self.config_path,
                                          "--runsc", self.runsc], stdout=out, stderr=subprocess.STDOUT)
        if not wait_for(self._answers, 30, 0.02):
            raise RuntimeError(f"sandbox-agent did not answer on {self.socket_path}:\n{self.log_tail()}")
        return self

    def _answers(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"sandbox-agent exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            c = Client(self.socket_path, timeout=2)
        except OSError:
            return False
        try:
            return c.call({"op": "version"}).get("ok")
        except (OSError, ValueError):
            return False
        finally:
            c.close()

    @property
    def pid(self):
        return self.proc.pid

    def client(self, timeout=60.0):
        return Client(self.socket_path, timeout)

    def call(self, obj, timeout=60.0):
        c = self.client(timeout)
        try:
            return c.call(obj)
        finally:
            c.close()

    def stats(self):
        return self.call({"op": "stats"})["stats"]

    def status(self, sid):
        r = self.call({"op": "status", "id": sid})
        return r.get("sandbox")

    def runsc_id(self, sid):
        with open(os.path.join(self.root, "state", sid + ".json")) as f:
            return json.load(f)["runsc_id"]

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        release_log_quotas(self.root)

    def kill_fake_daemon(self):
        kill_pids(pids_with_cmdline(os.path.join(self.root, "runsc")))


def release_real_agent(agent):
    """Kills an agent on a real runsc and removes what it leaves: its sandboxes (`runsc delete
    --force`), runsc's pinned gofer namespace and the log quota mounts."""
    agent.kill()
    rr = os.path.join(agent.root, "runsc")
    listed = subprocess.run([agent.runsc, "--root", rr, "list", "--format=json"], capture_output=True, text=True).stdout
    for i in [c["id"] for c in (json.loads(listed or "null") or [])]:
        subprocess.run([agent.runsc, "--root", rr, "delete", "--force", i], capture_output=True, timeout=60)
    for _ in range(64):
        if subprocess.run(["umount", "-l", os.path.join(rr, "null-netns")], capture_output=True).returncode:
            break


def leftovers(base):
    """(processes, mounts) whose command line or mount point names `base`."""
    procs = pids_with_cmdline(base)
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if base in line]
    return procs, mounts


def print_failures_and_cleanup(results, procs, mounts):
    """The closing lines of the real-stack reports: the first failed runs ({name: [run]}, each
    with "ok" and "detail"), then what the runs left behind."""
    fails = [(name, r.get("detail")) for name in results for r in results[name] if not r["ok"]]
    if fails:
        print(f"- failed runs: {fails[:4]}")
    print(f"- cleanup: {len(procs)} processes and {len(mounts)} mounts left behind")
    print()


def release_log_quotas(root):
    """Unmounts the logs tmpfs (the log quota) of sandboxes a killed agent left, deepest first."""
    logs = os.path.join(root, "logs") + "/"
    with open("/proc/self/mountinfo") as f:
        points = sorted((line.split()[4] for line in f if line.split()[4].startswith(logs)), key=len, reverse=True)
    for p in points:
        subprocess.run(["umount", "-l", p], capture_output=True)


def fake_ready_log(root):
    """ROOT/runsc/fake-dockerd-ready.log: {runsc id: UNIX µs when its fake dockerd began answering}."""
    out = {}
    try:
        with open(os.path.join(root, "runsc", "fake-dockerd-ready.log")) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    out.setdefault(parts[0], int(parts[1]))
    except OSError:
        pass
    return out


def machine_line():
    return f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
