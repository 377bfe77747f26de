#!/usr/bin/env python3
"""Spike: `runsc checkpoint` of a ready Docker sandbox, and `runsc restore` as a way to refill
pools (issue 17, optional). Rerunnable, so the answer can be checked again on a newer gVisor.

One agent on current gVisor launches a Docker sandbox (its defaults: systrap, containerd
beside dockerd, docker.sock bound to the host through --host-uds=create). Then, with the global
flags the agent gave `runsc create` (read from the sandbox's runsc.log):
  1. `runsc checkpoint --leave-running --image-path DIR` of the ready sandbox: outcome, time,
     image size, and whether dockerd still answers /_ping afterwards;
  2. only if 1 worked: the original deleted, `runsc create` of a copy of its bundle under a
     new id and `runsc restore --image-path DIR --detach`, then time until the copy's dockerd
     answers on the same socket path.
Prints a short markdown report; everything it made is removed at the end.

    python3 bench/checkpoint_spike.py
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
from runtimes import CURRENT, request  # noqa: E402
from time_to_ready import make_skeleton  # noqa: E402


def pings(sock, timeout=2.0):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(sock)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        data = s.recv(4096)
        s.close()
        return data.startswith(b"HTTP/1.1 200") and data.endswith(b"OK")
    except OSError:
        return False


def global_flags(runsc_log, runsc_id):
    """The flags between `runsc` and the subcommand of the agent's `run` (or `create`) call (which
    has the Docker flags too: checkpoint --leave-running needs every flag the sandbox was run with)."""
    with open(runsc_log, errors="replace") as f:
        for line in f:
            words = line.split()
            if len(words) > 3 and words[1] == "runsc" and words[-1] == runsc_id:
                for verb in ("run", "create"):
                    if verb in words:
                        return words[2:words.index(verb)]
    raise RuntimeError(f"no run or create call for {runsc_id} in {runsc_log}")


def first_error_line(text):
    for line in text.splitlines():
        if line.strip() and not line.startswith(("\t", "goroutine ", "panic(", "gvisor.dev/", "created by ")):
            return line.strip()[:300]
    return text.strip()[:300]


def main():
    bl.need(bl.AGENT, bl.SANDBOX_INIT, CURRENT)
    base = tempfile.mkdtemp(prefix="bench-ckpt-")
    os.chmod(base, 0o755)
    agent = bl.Agent(os.path.join(base, "agent"), {
        "runsc": {"path": CURRENT, "timeout_ms": 60000, "flags": ["--network=none"]},
        "allowed_host_prefixes": ["ROOT/images", "/usr", "/etc"]}, runsc=CURRENT).start()
    make_skeleton(agent.rootfs)
    rows, notes = [], []
    try:
        c = agent.client(timeout=120)
        reply = c.call({"op": "launch", "request": request(agent.rootfs, "ck"), "wait": "ready"})
        c.close()
        if reply.get("state") != "ready":
            raise RuntimeError(f"the Docker sandbox did not become ready: {reply}")
        sb = reply["sandbox"]
        sock = sb["docker_socket"]
        status = agent.call({"op": "list"})
        runsc_id = next((s.get("runsc_id") for s in status.get("sandboxes", []) if s.get("id") == "ck"), None)
        log = os.path.join(agent.root, "logs", "ck", "runsc.log")
        if not runsc_id:
            with open(os.path.join(agent.root, "state", "ck.json")) as f:
                runsc_id = json.load(f)["runsc_id"]
        flags = global_flags(log, runsc_id)
        image = os.path.join(base, "image")
        t0 = time.monotonic()
        ck = subprocess.run([CURRENT] + flags + ["checkpoint", "--leave-running", "--image-path", image, runsc_id],
                            capture_output=True, text=True, timeout=300)
        ms = (time.monotonic() - t0) * 1000
        size = sum(os.path.getsize(os.path.join(image, n)) for n in os.listdir(image)) if os.path.isdir(image) else 0
        alive = pings(sock)
        outcome = "worked" if ck.returncode == 0 else "failed: " + first_error_line(ck.stderr + ck.stdout)
        rows.append(["checkpoint --leave-running", outcome, f"{ms:.0f}", f"{size / 2**20:.1f}",
                     "yes" if alive else "**no**"])
        if ck.returncode == 0:
            # The copy binds the original's sockets directory (its bundle is a copy): the
            # original goes first, so an answer can only come from the restored copy.
            subprocess.run([CURRENT] + flags + ["delete", "--force", runsc_id], capture_output=True, timeout=60)
            bl.wait_for(lambda: not pings(sock, 0.2), 10)
            bundle = os.path.join(base, "restored-bundle")
            shutil.copytree(os.path.join(agent.root, "bundles", "ck"), bundle, symlinks=True)
            new_id = runsc_id + "r"
            t0 = time.monotonic()
            cr = subprocess.run([CURRENT] + flags + ["create", "--bundle", bundle, new_id],
                                capture_output=True, text=True, timeout=120)
            rs = cr if cr.returncode else subprocess.run(
                [CURRENT] + flags + ["restore", "--detach", "--image-path", image, "--bundle", bundle, new_id],
                capture_output=True, text=True, timeout=120)
            answered = rs.returncode == 0 and bl.wait_for(lambda: pings(sock, 0.5), 30)
            ms = (time.monotonic() - t0) * 1000
            outcome = "worked" if answered else "failed: " + first_error_line(rs.stderr + rs.stdout or "no answer")
            rows.append(["create + restore of a copy (original deleted first)", outcome, f"{ms:.0f}", "", "—"])
            notes.append("the copy binds the original's sockets directory (its bundle is a copy); "
                         "a pool refill would need one of its own per copy")
    finally:
        bl.release_real_agent(agent)
        procs, mounts = bl.leftovers(base)
        if not procs and not mounts:
            shutil.rmtree(base, ignore_errors=True)

    print("### Spike: checkpoint and restore of a ready Docker sandbox (current gVisor)")
    print()
    print(bl.table(["step", "outcome", "time (ms)", "image (MiB)", "original still answers /_ping"], rows,
                   ["---", "---", "---:", "---:", "---"]))
    print()
    verdict = ("reliable enough to try as a refill path" if all(r[1] == "worked" for r in rows) and len(rows) == 2
               else "not usable as a refill path as the sandbox is built today")
    print(f"- verdict: {verdict}")
    for n in notes:
        print(f"- {n}")
    print(f"- cleanup: {len(procs)} processes and {len(mounts)} mounts left behind")
    print()


if __name__ == "__main__":
    main()
