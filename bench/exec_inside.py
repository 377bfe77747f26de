#!/usr/bin/env python3
"""What starting a process costs inside a gVisor sandbox, against the host: the floor under a
Docker sandbox's cold start that no agent change reaches (dockerd's Go start-up, and the
`runc --version` and `docker-init --version` it runs before it listens).

One plain sandbox on current gVisor (systrap), /usr and /etc bind-mounted from the host as
the other benchmarks do; inside it a shell times each command N times in a row
(`date +%s%N` around the loop), over `sandboxctl exec`. The host column times the same
commands from Python. Rounds alternate so the machine's drift hits every command alike.

    python3 bench/exec_inside.py [--runs 10] [--rounds 2]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
from runtimes import CURRENT  # noqa: E402
from time_to_ready import make_skeleton  # noqa: E402

COMMANDS = [
    ("`/bin/true` (dynamic)", ["/bin/true"]),
    ("`busybox true` (static)", ["/bin/busybox", "true"]),
    ("`docker-init --version` (tini, static)", ["/usr/bin/docker-init", "--version"]),
    ("`runc --version`", ["/usr/sbin/runc", "--version"]),
    ("`containerd --version`", ["/usr/bin/containerd", "--version"]),
    ("`dockerd --version`", ["/usr/sbin/dockerd", "--version"]),
    ("`dockerd --version`, `GOGC=off`", ["/usr/bin/env", "GOGC=off", "/usr/sbin/dockerd", "--version"]),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10, help="times each command runs in a row")
    p.add_argument("--rounds", type=int, default=2)
    return p.parse_args()


def inside_ms(agent, sid, argv, runs):
    """Mean ms per run of `argv`, timed by a shell inside the sandbox."""
    cmd = " ".join(argv)
    script = (f"s=$(date +%s%N); i=0; while [ $i -lt {runs} ]; do {cmd} >/dev/null 2>&1; i=$((i+1)); done; "
              f"e=$(date +%s%N); echo $(( (e-s)/{runs}000 ))")
    r = subprocess.run([bl.SANDBOXCTL, "--socket", agent.socket_path, "exec", sid, "--", "/bin/sh", "-c", script],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"exec {cmd}: rc {r.returncode}: {r.stderr.strip()}")
    return int(r.stdout.split()[-1]) / 1000


def host_ms(argv, runs):
    t0 = time.monotonic()
    for _ in range(runs):
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.monotonic() - t0) * 1000 / runs


def main():
    args = parse_args()
    bl.need(bl.AGENT, bl.SANDBOXCTL, bl.SANDBOX_INIT, CURRENT)
    base = tempfile.mkdtemp(prefix="bench-exec-inside-")
    os.chmod(base, 0o755)
    inside = {name: [] for name, _ in COMMANDS}
    host = {name: [] for name, _ in COMMANDS}
    agent = None
    try:
        agent = bl.Agent(os.path.join(base, "agent"), {"runsc": {"path": CURRENT, "platform": "systrap",
                                                                  "flags": ["--network=none"]}},
                         runsc=CURRENT, images=["/usr", "/etc"]).start()
        make_skeleton(agent.rootfs)
        req = {"id": "x", "rootfs": agent.rootfs, "args": ["/bin/sleep", "infinity"],
               "mounts": [{"source": "/usr", "destination": "/usr", "readonly": True},
                          {"source": "/etc", "destination": "/etc", "readonly": True}]}
        reply = agent.call({"op": "launch", "request": req, "wait": "ready"}, timeout=120)
        if reply.get("state") != "ready":
            raise RuntimeError(f"the sandbox did not start: {reply}")
        for rnd in range(1, args.rounds + 1):
            for name, argv in COMMANDS:
                bl.log(f"exec_inside: round {rnd}/{args.rounds}, {name}")
                inside[name].append(inside_ms(agent, "x", argv, args.runs))
                host[name].append(host_ms(argv, args.runs))
    finally:
        if agent:
            bl.release_real_agent(agent)
        procs, mounts = bl.leftovers(base)
        if not procs and not mounts:
            shutil.rmtree(base, ignore_errors=True)

    print(f"### Starting a process inside a sandbox (current gVisor, systrap) and on the host "
          f"({args.runs} runs in a row, {args.rounds} rounds)")
    print()
    rows = []
    for name, _ in COMMANDS:
        i, h = inside[name], host[name]
        rows.append([name, "–".join(f"{v:.0f}" for v in (min(i), max(i))) if len(i) > 1 else f"{i[0]:.0f}",
                     "–".join(f"{v:.1f}" for v in (min(h), max(h))) if len(h) > 1 else f"{h[0]:.1f}",
                     f"{min(i) / max(min(h), 0.1):.0f}×"])
    print(bl.table(["command", "inside gVisor, ms per run (per round)", "on the host, ms per run", "inside / host"],
                   rows, ["---", "---:", "---:", "---:"]))
    print()
    print(f"- cleanup: {len(procs)} processes and {len(mounts)} mounts left behind")


if __name__ == "__main__":
    main()
