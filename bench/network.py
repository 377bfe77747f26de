#!/usr/bin/env python3
"""What bridge networking costs: 20 plain sandboxes launched at once on the real runsc, with
`network: none` (the baseline, measured in the same run) and `network: bridge` (a namespace,
the CNI chain and the egress rules each), rounds interleaved. Prints time to ready per sandbox
(p50/p90/max), the batch's launches per second, the agent's own network_ms, and the ratios.

The agent runs in a test network namespace (tests/integration/netlab.py), as the tests do:
its bridge, NAT and rules die with it. Every sandbox is stopped after its round and what a
bridge sandbox could leave behind is listed (it must be nothing).

    python3 bench/network.py [--rounds 3] [--batch 20]
"""
import argparse
import json
import os
import subprocess
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import benchlib as bl  # noqa: E402
import netlab  # noqa: E402
from time_to_ready import make_skeleton  # noqa: E402

RUNSC = "/usr/local/lib/sandbox-agent/runsc"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--timeout", type=float, default=120)
    return p.parse_args()


def batch(agent, mode, n, round_no, timeout):
    """Launches n sandboxes at once; returns (per-sandbox ready ms, batch seconds, network_ms list)."""
    ids = [f"{mode}-{round_no}-{i}" for i in range(n)]
    reqs = [{"op": "launch", "request": {"id": sid, "rootfs": agent.rootfs, "network": mode,
                                         "args": ["/bin/sleep", "infinity"],
                                         "mounts": [{"source": "/usr", "destination": "/usr", "readonly": True}]}}
            for sid in ids]
    c = agent.client(timeout)
    t0 = bl.now_us()
    c.send_many(reqs)
    for _ in reqs:
        r = c.read()
        if not r.get("ok"):
            raise RuntimeError(f"launch refused: {r}")
    c.close()
    done = {}
    deadline = time.monotonic() + timeout
    while len(done) < n and time.monotonic() < deadline:
        for sid in ids:
            if sid in done:
                continue
            s = agent.status(sid)
            if s and s["state"] in ("ready", "failed"):
                done[sid] = s
        time.sleep(0.01)
    failed = [s for s in done.values() if s["state"] != "ready"]
    if failed or len(done) < n:
        raise RuntimeError(f"{mode}: {len(failed)} failed, {n - len(done)} not ready: {failed[:1]}")
    ready_ms = [s["timings"]["ready_ms"] for s in done.values()]
    last = max(bl.rfc3339_us(s["ready_at"]) for s in done.values())
    network_ms = [s["timings"].get("network_ms") for s in done.values() if s["timings"].get("network_ms") is not None]
    for sid in ids:
        agent.call({"op": "stop", "id": sid, "timeout_ms": 2000})
    bl.wait_for(lambda: all((agent.status(sid) or {}).get("state") in ("stopped", "failed") for sid in ids), timeout)
    return ready_ms, (last - t0) / 1e6, network_ms


def main():
    args = parse_args()
    bl.need(RUNSC, "/usr/lib/cni/bridge")
    why = netlab.tools_missing()
    if why:
        print(f"skipped: {why}")
        return
    tmp = tempfile.mkdtemp(prefix="sa-bench-net-")
    lab = netlab.NetLab()
    agent = None
    try:
        agent = bl.Agent(os.path.join(tmp, "root"), runsc=RUNSC, images=["/usr"],
                         config={"runsc": {"path": RUNSC, "timeout_ms": 60000}},
                         prefix=lab.in_host()).start()
        make_skeleton(agent.rootfs)
        results = {"none": ([], [], []), "bridge": ([], [], [])}
        for r in range(args.rounds):
            for mode in ("none", "bridge"):
                bl.log(f"round {r + 1}/{args.rounds}: {args.batch} x {mode}")
                ready, secs, net = batch(agent, mode, args.batch, r, args.timeout)
                results[mode][0].extend(ready)
                results[mode][1].append(args.batch / secs)
                results[mode][2].extend(net)
        leftovers = lab.leftovers(agent.root)
        rows = []
        for mode in ("none", "bridge"):
            ready, rates, net = results[mode]
            rows.append([mode, f"{bl.percentile(ready, 50):.0f}", f"{bl.percentile(ready, 90):.0f}",
                         f"{max(ready):.0f}", f"{sum(rates) / len(rates):.1f}",
                         f"{bl.percentile(net, 50):.0f}" if net else "-"])
        print(bl.machine_line())
        print()
        print(f"{args.batch} plain sandboxes launched at once, {args.rounds} rounds, real runsc ({RUNSC}):")
        print()
        print(bl.table(["network", "ready p50 ms", "p90 ms", "max ms", "launches/s", "network_ms p50"], rows))
        print()
        n50 = bl.percentile(results["none"][0], 50)
        b50 = bl.percentile(results["bridge"][0], 50)
        nr = sum(results["none"][1]) / len(results["none"][1])
        br = sum(results["bridge"][1]) / len(results["bridge"][1])
        print(f"bridge / none: time to ready p50 {b50 / n50:.2f}x, launches/s {br / nr:.2f}x")
        print(f"leftovers after the runs: {leftovers if leftovers else 'none'}")
    finally:
        if agent:
            agent.kill()
            rr = os.path.join(agent.root, "runsc")
            listed = subprocess.run([RUNSC, "--root", rr, "list", "--format=json"], capture_output=True, text=True).stdout
            for i in [c["id"] for c in (json.loads(listed or "null") or [])]:
                subprocess.run([RUNSC, "--root", rr, "delete", "--force", i], capture_output=True, timeout=60)
            netns_dir = os.path.join(agent.root, "network", "netns")
            pins = [os.path.join(netns_dir, n) for n in (os.listdir(netns_dir) if os.path.isdir(netns_dir) else [])]
            for pin in pins + [os.path.join(rr, "null-netns")] * 8:
                subprocess.run(["umount", "-l", pin], capture_output=True)
        lab.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
