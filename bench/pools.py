#!/usr/bin/env python3
"""Launch to ready from a warm pool against a cold launch of the same template, measured in
the same run by the client (from sending `launch … wait: ready` to its reply):

- fake runtime: --claims claims (default 120) from a pool of --size, each after the pool has
  refilled, and as many cold launches of the template (a pool of size 0);
- real stack (current gVisor, Docker sandboxes): --real-claims (default 101: a nearest-rank p99 of fewer samples is their maximum) of each.

Prints p50/p99/max per kind, the cold/warm ratio, and for the slowest warm claims how much of
their time the agent spent inside the claim (its `sandbox_agent_pool_claim_seconds`). Every sandbox is stopped at the end.

    python3 bench/pools.py [--claims 120] [--real-claims 101] [--skip-real]
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
from time_to_ready import make_skeleton  # noqa: E402

REAL_RUNSC = "/usr/local/lib/sandbox-agent/runsc"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--claims", type=int, default=120)
    p.add_argument("--size", type=int, default=4)
    p.add_argument("--real-claims", type=int, default=101)
    p.add_argument("--skip-real", action="store_true")
    p.add_argument("--quiet", action="store_true",
                   help="before each claim, wait until the previous round's two sandboxes are stopped (their "
                        "tear-down, runsc delete and the copy of their logs to the disk, otherwise overlaps the "
                        "claim): the claim alone, not the claim beside other sandboxes' tear-downs")
    return p.parse_args()


def pool_ready(agent, name):
    for p in agent.call({"op": "pools"})["pools"]:
        if p["name"] == name:
            return p["ready"]
    return 0


def claim(agent, pool, sid):
    """ms from sending the launch to its held reply, and the pool_start the status gives."""
    c = agent.client(180)
    try:
        t0 = time.monotonic()
        r = c.call({"op": "launch", "wait": "ready", "request": {"pool": pool, "id": sid}})
        ms = (time.monotonic() - t0) * 1000
    finally:
        c.close()
    if r.get("state") != "ready":
        raise RuntimeError(f"{sid}: {r}")
    return ms, r["sandbox"].get("pool_start")


def claim_seconds(agent):
    """The agent's own sandbox_agent_pool_claim_seconds_sum (time spent inside claims)."""
    for line in agent.call({"op": "metrics"}).get("text", "").splitlines():
        if line.startswith("sandbox_agent_pool_claim_seconds_sum"):
            return float(line.split()[-1])
    return 0.0


def stopped(agent, sids):
    """Every one is stopped or failed, or gone (evicted as finished)."""
    for sid in sids:
        r = agent.call({"op": "status", "id": sid})
        if r.get("ok") and r.get("sandbox", {}).get("state") not in ("stopped", "failed"):
            return False
    return True


def measure(agent, n, size, timeout, quiet=False):
    warm, cold, kinds, inside = [], [], {}, []
    for i in range(n):
        if quiet and i and not bl.wait_for(lambda: stopped(agent, (f"w{i - 1}", f"c{i - 1}")), timeout):
            raise RuntimeError("the previous round did not stop")
        if not bl.wait_for(lambda: pool_ready(agent, "warm") >= size, timeout):
            raise RuntimeError("the pool did not refill")
        before = claim_seconds(agent)
        ms, kind = claim(agent, "warm", f"w{i}")
        inside.append((claim_seconds(agent) - before) * 1000)
        warm.append(ms)
        kinds[kind] = kinds.get(kind, 0) + 1
        ms, _ = claim(agent, "cold", f"c{i}")
        cold.append(ms)
        for sid in (f"w{i}", f"c{i}"):
            agent.call({"op": "stop", "id": sid, "timeout_ms": 2000})
    return warm, cold, kinds, inside


def report(title, warm, cold, kinds, inside):
    rows = [[name, str(len(v)), f"{bl.percentile(v, 50):.1f}", f"{bl.percentile(v, 99):.1f}", f"{max(v):.1f}"]
            for name, v in (("from the pool (warm)", warm), ("cold (same template)", cold))]
    print(title)
    print()
    print(bl.table(["launch", "n", "p50 ms", "p99 ms", "max ms"], rows))
    print()
    print(f"cold / warm: p50 {bl.percentile(cold, 50) / bl.percentile(warm, 50):.0f}x, "
          f"p99 {bl.percentile(cold, 99) / bl.percentile(warm, 99):.0f}x; claims served warm: {kinds}")
    # Where a slow claim's time went: inside the agent's claim (its record write) or around it.
    slowest = sorted(range(len(warm)), key=lambda i: warm[i])[-3:][::-1]
    print("slowest warm claims, client ms / inside the agent's claim ms (sandbox_agent_pool_claim_seconds): "
          + ", ".join(f"{warm[i]:.1f} / {inside[i]:.1f}" for i in slowest))
    print()


def run(tmp, name, runsc, template, n, size, timeout, images, quiet=False):
    root = os.path.join(tmp, name)
    template = dict(template, rootfs=os.path.join(root, "images", "rootfs"))
    os.makedirs(template["rootfs"], exist_ok=True)
    make_skeleton(template["rootfs"])
    pools = [{"name": "warm", "size": size, "request": template}, {"name": "cold", "size": 0, "request": template}]
    # stop_sandboxes_on_exit: the shutdown stops the members too (stopping them one by one
    # while the agent runs would only make the pool launch new ones).
    agent = bl.Agent(root, runsc=runsc, images=images,
                     config={"runsc": {"path": runsc, "timeout_ms": 60000}, "pools": pools,
                             "stop_sandboxes_on_exit": True}).start()
    try:
        return measure(agent, n, size, timeout, quiet)
    finally:
        agent.proc.send_signal(signal.SIGTERM)
        try:
            agent.proc.wait(180)
        except subprocess.TimeoutExpired:
            bl.log("the agent did not stop within 180 s")
        agent.kill()
        agent.kill_fake_daemon()


def main():
    args = parse_args()
    bl.need(bl.AGENT, bl.FAKE_RUNSC)
    tmp = tempfile.mkdtemp(prefix="sa-bench-pools-", dir=bl.DEFAULT_DIR)
    try:
        print(bl.machine_line())
        print()
        template = {"rootfs": "", "args": ["/bin/sleep", "infinity"], "docker": {"enabled": True}}
        warm, cold, kinds, inside = run(tmp, "fake", bl.FAKE_RUNSC, dict(template), args.claims, args.size, 60, [])
        report(f"Fake runtime, Docker template, {args.claims} claims from a pool of {args.size} (refilled between "
               "claims) and as many cold launches:", warm, cold, kinds, inside)
        if args.skip_real or not os.access(REAL_RUNSC, os.X_OK):
            print("real stack: skipped" + ("" if args.skip_real else f" ({REAL_RUNSC} is not installed)"))
            return
        real = dict(template, mounts=[{"source": "/usr", "destination": "/usr", "readonly": True},
                                      {"source": "/etc", "destination": "/etc", "readonly": True}])
        real_tmp = tempfile.mkdtemp(prefix="sa-bench-pools-real-")
        try:
            warm, cold, kinds, inside = run(real_tmp, "real", REAL_RUNSC, real, args.real_claims, 2, 180,
                                            ["/usr", "/etc"], args.quiet)
        finally:
            shutil.rmtree(real_tmp, ignore_errors=True)
        report(f"Real stack (current gVisor, dockerd answering /_ping), {args.real_claims} claims from a pool of 2 "
               "and as many cold launches" + (", each claim after the previous round's sandboxes stopped (--quiet)"
                                              if args.quiet else ", the previous round's tear-downs still running")
               + ":", warm, cold, kinds, inside)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
