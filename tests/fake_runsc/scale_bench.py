#!/usr/bin/python3
"""Scale benchmark of fake-runsc: N Docker sandboxes in flight in one daemon.

  /usr/bin/python3 tests/fake_runsc/scale_bench.py BUILD/tests/fake_runsc/fake-runsc [N] [WORKERS]

Creates and starts N sandboxes (dockerd_delay_ms=0) with WORKERS parallel CLI callers,
waits until every fake dockerd is ready, pings a sample, prints the CLI cost and the
daemon's memory, then deletes everything and checks that the daemon retires.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time


def spec(status, logs, directives):
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "args": ["/.sandbox-agent/init", "--status-dir", "/.sandbox-agent/sockets",
                     "--log-dir", "/.sandbox-agent/logs", "--dockerd", "/usr/bin/dockerd",
                     "--cgroup", "auto", "--dockerd-socket", "/run/docker.sock",
                     "--relay-socket", "/.sandbox-agent/sockets/docker.sock",
                     "--", "/bin/sleep", "infinity"],
            "env": ["PATH=/usr/bin:/bin", "FAKE_RUNSC=" + directives],
        },
        "mounts": [
            {"destination": "/.sandbox-agent/sockets", "type": "bind", "source": status},
            {"destination": "/.sandbox-agent/logs", "type": "bind", "source": logs},
        ],
    }


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return -1


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_all(argvs, workers):
    """Runs every argv with `workers` threads; returns the wall time."""
    failures = []
    lock = threading.Lock()
    it = iter(argvs)

    def worker():
        while True:
            with lock:
                argv = next(it, None)
            if argv is None:
                return
            p = subprocess.run(argv, capture_output=True)
            if p.returncode != 0:
                failures.append((argv, p.stderr))

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit(f"{len(failures)} failures, first: {failures[0]}")
    return time.monotonic() - started


def main():
    exe = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    base = tempfile.mkdtemp(prefix="frs-")
    root = os.path.join(base, "root")
    daemon = None
    try:
        for i in range(n):
            d = os.path.join(base, f"s{i:05d}")
            status, logs = os.path.join(d, "st"), os.path.join(d, "lg")
            os.makedirs(status)
            os.makedirs(logs)
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(spec(status, logs, "dockerd_delay_ms=0"), f)
        g = [exe, "--root", root, "--platform=ptrace", "--network=none", "--host-uds=create"]
        ids = [f"s{i:05d}" for i in range(n)]
        t_create = run_all([g + ["create", "--bundle", os.path.join(base, i), i] for i in ids],
                           workers)
        t_start = run_all([g + ["start", i] for i in ids], workers)
        with open(os.path.join(root, "fake-runsc.pid")) as f:
            daemon = int(f.read())
        ready = os.path.join(root, "fake-dockerd-ready.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open(ready) as f:
                if sum(1 for _ in f) >= n:
                    break
            time.sleep(0.1)
        for i in range(0, n, max(1, n // 20)):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(os.path.join(base, ids[i], "st", "docker.sock"))
                s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
                reply = b""
                while chunk := s.recv(4096):
                    reply += chunk
                assert reply.endswith(b"\r\n\r\nOK"), reply
        listed = subprocess.run(g + ["list", "--format=json"], capture_output=True, check=True)
        running = sum(1 for s in json.loads(listed.stdout) if s["status"] == "running")
        rss, hwm, pss = status_kib(daemon, "VmRSS"), status_kib(daemon, "VmHWM"), pss_kib(daemon)
        fds = len(os.listdir(f"/proc/{daemon}/fd"))
        invocations = 2 * n
        cpu = cpu_seconds(daemon)
        print(f"sandboxes: {n} docker, {running} running, {fds} daemon fds")
        print(f"create: {t_create:.1f} s, start: {t_start:.1f} s, {workers} callers: "
              f"{(t_create + t_start) / invocations * 1e3:.3f} ms wall per invocation, "
              f"{invocations / (t_create + t_start):.0f} invocations/s")
        print(f"daemon pid {daemon}: VmRSS {rss} KiB, VmHWM {hwm} KiB, Pss {pss} KiB, "
              f"{rss * 1024 / n:.0f} bytes RSS per sandbox; daemon CPU {cpu:.2f} s "
              f"({cpu / invocations * 1e6:.0f} us per invocation, timers and sockets included)")
        t_delete = run_all([g + ["delete", "--force", i] for i in ids], workers)
        print(f"delete --force: {t_delete:.1f} s")
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{daemon}/status") and time.monotonic() < deadline:
            with open(f"/proc/{daemon}/status") as f:
                if "State:\tZ" in f.read():
                    break
            time.sleep(0.1)
        print("daemon retired after idle:", not os.path.exists(os.path.join(root, "fake-runsc.sock")))
        daemon = None
    finally:
        if daemon:
            os.kill(daemon, 9)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
