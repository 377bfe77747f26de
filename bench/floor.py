#!/usr/bin/env python3
"""The floor under the agent's CPU per sandbox: the kernel work of a launch with no agent.

bench/syscall_floor does, N times in a loop, the system calls a Docker launch cannot avoid
under the contract's layout (three directories, the log quota's tmpfs mount, config.json,
the record written twice, an inotify watch, runsc.log appended to and a child spawned the
agent's way and reaped for its one runsc call (`runsc run --detach`), the pid file read) and prints its own CPU per sandbox; once more
without the children. bench/scale.py then measures the agent for the same N, fake runtime,
root on a tmpfs: with its spawn helper forking runsc (the default; the helper's own CPU is
shown beside) and without it (the agent's own clone). Runs interleaved; medians. What the agent costs above the floor is its own
logic (requests, JSON, events, the probe, io_uring).

    python3 bench/floor.py [--count 2000] [--runs 3]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

FLOOR = bl.binary("SYSCALL_FLOOR", "bench/syscall_floor")


def floor_once(n, spawn):
    d = tempfile.mkdtemp(prefix="bench-floor-", dir="/dev/shm")
    try:
        out = subprocess.run([FLOOR, d, str(n)] + ([] if spawn else ["--no-spawn"]),
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.rmdir(d)
    return int(re.search(r"(\d+) us of CPU", out).group(1))


def agent_once(n, helper):
    """The agent's CPU per sandbox, and its spawn helper's (None without one)."""
    out = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "scale.py"), "--counts", str(n),
                          "--wait", "stats", "--no-stop", "--spawn-helper", "on" if helper else "off"],
                         capture_output=True, text=True).stderr
    m = re.search(r"ready \d+/\d+ in [\d.]+ s, (\d+) us CPU", out)
    h = re.search(r"spawn helper: (\d+) us", out)
    return (int(m.group(1)) if m else None), (int(h.group(1)) if h else None)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    bl.need(FLOOR, bl.AGENT)
    rows = {"floor": [], "nospawn": [], "agent": [], "helper": [], "agent_alone": []}
    for run in range(args.runs):
        bl.log(f"floor: run {run + 1}/{args.runs}")
        rows["floor"].append(floor_once(args.count, True))
        rows["nospawn"].append(floor_once(args.count, False))
        a, h = agent_once(args.count, True)
        if a:
            rows["agent"].append(a)
        if h is not None:
            rows["helper"].append(h)
        a, _ = agent_once(args.count, False)
        if a:
            rows["agent_alone"].append(a)
    med = {k: statistics.median(v) if v else None for k, v in rows.items()}
    print(f"### The floor: the kernel work of a launch with no agent, N={args.count:,} "
          f"({args.runs} runs each, interleaved, root on a tmpfs)")
    print()
    print(bl.table(["what", "CPU per sandbox, median (µs)", "runs"], [
        ["bench/syscall_floor: the system calls of a Docker launch, its one runsc child spawned and reaped",
         f"{med['floor']:.0f}", ", ".join(map(str, rows["floor"]))],
        ["the same without the children", f"{med['nospawn']:.0f}", ", ".join(map(str, rows["nospawn"]))],
        ["sandbox-agent (bench/scale.py, fake runtime), runsc forked by its spawn helper (the default)",
         f"{med['agent']:.0f}" if med["agent"] else "—", ", ".join(map(str, rows["agent"]))],
        ["… its spawn helper's own CPU meanwhile (not its children's)",
         f"{med['helper']:.0f}" if med["helper"] is not None else "—", ", ".join(map(str, rows["helper"]))],
        ["sandbox-agent forking runsc itself (`runsc.spawn_helper: false`)",
         f"{med['agent_alone']:.0f}" if med["agent_alone"] else "—", ", ".join(map(str, rows["agent_alone"]))],
    ]))
    print()
    if med["agent"]:
        print(bl.table(["ratio", "value"], [
            ["agent / floor", f"{med['agent'] / med['floor']:.2f}"],
            ["agent with its spawn helper / agent forking runsc itself",
             f"{med['agent'] / med['agent_alone']:.2f}" if med["agent_alone"] else "—"],
            ["agent − floor: the agent's own logic (µs per sandbox)", f"{med['agent'] - med['floor']:.0f}"],
            ["the runsc child's spawn and reaping, in the floor (µs per sandbox)", f"{med['floor'] - med['nospawn']:.0f}"],
            ["200 µs target / floor", f"{200 / med['floor']:.2f}"],
        ]))


if __name__ == "__main__":
    main()
