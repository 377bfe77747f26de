#!/usr/bin/env python3
"""Time to ready of a Docker sandbox through the agent, on each supported runtime, side by side
in one run, and the time of a nested `docker run --rm IMAGE true` inside where it works:

  debian-ptrace    Debian's runsc 20221219, ptrace platform (the baseline: what ran before)
  current-systrap  current gVisor built from its Go module, systrap (the default)
  current-ptrace   current gVisor, ptrace (what the platform alone is worth)

Runs are interleaved (run 1 of each, then run 2 of each…) so drifting load hits all alike.
Each configuration has its own agent and root; every sandbox is stopped after its run, and
the processes and mounts left behind are reported. Time to ready is from just before the
`launch` request to the `ready` reply; the floor is dockerd.log's `API listen on`.

    python3 bench/runtimes.py [--runs 5] [--nested-runs 5]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
from time_to_ready import api_listen_us, make_skeleton  # noqa: E402

CURRENT = "/usr/local/lib/sandbox-agent/runsc"
DEBIAN = "/usr/bin/runsc"
DOCKER = "/usr/bin/docker"
CONFIGS = [("debian-ptrace", DEBIAN, "ptrace"), ("current-systrap", CURRENT, "systrap"),
           ("current-ptrace", CURRENT, "ptrace")]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--nested-runs", type=int, default=5)
    p.add_argument("--timeout", type=float, default=90)
    return p.parse_args()


def busybox_tar(path):
    with tarfile.open(path, "w") as tar:
        tar.add("/bin/busybox", "bin/busybox")
        for applet in ("sh", "true", "echo"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)


def request(rootfs, sid):
    return {"id": sid, "rootfs": rootfs, "docker": {"enabled": True},
            "mounts": [{"source": "/usr", "destination": "/usr", "readonly": True},
                       {"source": "/etc", "destination": "/etc", "readonly": True}]}


def launch_once(agent, sid, timeout):
    c = agent.client(timeout=timeout)
    t0 = bl.now_us()
    reply = c.call({"op": "launch", "request": request(agent.rootfs, sid), "wait": "ready"})
    t1 = bl.now_us()
    c.close()
    sb = reply.get("sandbox") or {}
    api = api_listen_us(os.path.join(agent.root, "logs", sid))
    return {"ok": reply.get("state") == "ready", "ready_ms": (t1 - t0) / 1000,
            "floor_ms": (api - t0) / 1000 if api else None, "socket": sb.get("docker_socket"),
            "nested": (sb.get("capabilities") or {}).get("nested_containers"), "detail": sb.get("reason")}


def stop(agent, sid):
    agent.call({"op": "stop", "id": sid, "timeout_ms": 5000})
    bl.wait_for(lambda: (agent.status(sid) or {}).get("state") in ("stopped", "failed"), 60, 0.05)


def nested_runs(sock, image, n):
    """docker import once, then n × `docker run --rm bb true`, each timed from the client."""
    d = [DOCKER, "-H", f"unix://{sock}"]
    if subprocess.run(d + ["import", image, "bb"], capture_output=True, timeout=120).returncode != 0:
        return None
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        r = subprocess.run(d + ["run", "--rm", "bb", "true"], capture_output=True, timeout=120)
        if r.returncode != 0:
            return None
        times.append((time.monotonic() - t0) * 1000)
    return times


def fmt(values):
    s = bl.summary([v for v in values if v is not None])
    return (f"{s['median']:.0f}", f"{s['min']:.0f}–{s['max']:.0f}") if s["n"] else ("—", "—")


def main():
    args = parse_args()
    bl.need(bl.AGENT, bl.SANDBOX_INIT, DEBIAN, CURRENT, DOCKER)
    base = tempfile.mkdtemp(prefix="bench-runtimes-")
    os.chmod(base, 0o755)
    image = os.path.join(base, "busybox.tar")
    busybox_tar(image)
    agents, results, nested = {}, {name: [] for name, _, _ in CONFIGS}, {}
    try:
        for name, runsc, platform in CONFIGS:
            cfg = {"runsc": {"path": runsc, "platform": platform, "timeout_ms": 60000},
                   "allowed_host_prefixes": ["ROOT/images", "/usr", "/etc"]}
            agents[name] = bl.Agent(os.path.join(base, name), cfg, runsc=runsc).start()
            make_skeleton(agents[name].rootfs)
        for run in range(1, args.runs + 1):
            for name, _, _ in CONFIGS[run % 3:] + CONFIGS[:run % 3]:  # rotate who goes first
                sid = f"rt-{run:02d}"
                bl.log(f"runtimes: run {run}/{args.runs}, {name}")
                r = launch_once(agents[name], sid, args.timeout)
                if run == 1 and r["ok"] and r["nested"]:
                    nested[name] = nested_runs(r["socket"], image, args.nested_runs)
                results[name].append(r)
                stop(agents[name], sid)
                time.sleep(0.3)
    finally:
        for a in agents.values():
            bl.release_real_agent(a)
        procs, mounts = bl.leftovers(base)
        if not procs and not mounts:
            shutil.rmtree(base, ignore_errors=True)

    versions = {p: subprocess.run([p, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
                for p in (DEBIAN, CURRENT)}
    print(f"### Time to ready per runtime: a Docker sandbox through the agent ({args.runs} runs each, interleaved)")
    print()
    print(f"- Debian: `{versions[DEBIAN]}`; current: `{versions[CURRENT]}`")
    print()
    rows, medians = [], {}
    for name, _, _ in CONFIGS:
        ok = [r for r in results[name] if r["ok"]]
        med, rng = fmt([r["ready_ms"] for r in ok])
        fmed, _ = fmt([r["floor_ms"] for r in ok])
        medians[name] = bl.summary([r["ready_ms"] for r in ok]).get("median")
        n = nested.get(name)
        nmed, nrng = fmt(n) if n else (("fails: Debian's runsc cannot run containers inside", "") if name.startswith("debian")
                                       else ("—", ""))
        rows.append([name, f"{len(ok)}/{len(results[name])}", med, rng, fmed, nmed, nrng])
    print(bl.table(["runtime", "ok", "time to ready, median (ms)", "min–max", "floor: `API listen on` (ms)",
                    f"nested `docker run --rm bb true`, median of {args.nested_runs} (ms)", "min–max"], rows,
                   ["---", "---:", "---:", "---:", "---:", "---:", "---:"]))
    print()
    base_med = medians.get("debian-ptrace")
    ratios = [[f"{name} / debian-ptrace (time to ready, medians)", f"{medians[name] / base_med:.2f}"]
              for name, _, _ in CONFIGS[1:] if base_med and medians.get(name)]
    if ratios:
        print(bl.table(["ratio", "value"], ratios, ["---", "---:"]))
        print()
    bl.print_failures_and_cleanup(results, procs, mounts)


if __name__ == "__main__":
    main()
