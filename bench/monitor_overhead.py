#!/usr/bin/env python3
"""What the per-sandbox-process model costs, beside the agent's per-sandbox figure.

Peers put one monitor process beside every sandbox (containerd's shim, conmon). This starts
--count of the smallest such monitor there can be (bench/monitor.cpp: spawn a child, hold a
pidfd on it, sleep in poll()), each watching its own `sleep infinity`, and measures the
monitors only (not the sleep children): RSS and page tables from /proc/PID/status, PSS from
/proc/PID/smaps_rollup (shared pages divided among their sharers). Both builds: linked the usual
way (shared libc + libstdc++) and static. Then compares with the agent's RSS per in-flight
sandbox from bench/scale.py (--scale-json) and quotes the measured docker + runsc shim.

    python3 bench/monitor_overhead.py [--count 500] [--scale-json scale.json]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

# shared/notes/gvisor-dind-facts.md, "The usual peer" (measured on this machine kind).
SHIM_PSS_MIB, SHIM_RSS_MIB = 2.8, 12.8
GVISOR_PSS_MIB = 10.6
KERNEL_STACK_KIB = 16  # per task on x86_64, not in RSS


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def measure(exe, count):
    procs = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([exe, "sleep", "infinity"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL))
        for p in procs:
            if p.stdout.readline() != b"ready\n":
                raise RuntimeError(f"{exe} did not start")
        time.sleep(0.2)
        rss = [bl.status_kib(p.pid, "VmRSS") for p in procs]
        pss = [bl.rollup_kib(p.pid, "Pss") for p in procs]
        pte = [bl.status_kib(p.pid, "VmPTE") for p in procs]
        return {"rss_kib": sum(rss) / count, "pss_kib": sum(pss) / count, "pte_kib": sum(pte) / count}
    finally:
        # End each "sandbox": its monitor notices through the pidfd and exits with it.
        for p in procs:
            bl.kill_pids(children(p.pid), signal.SIGKILL)
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.stdout.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--scale-json", help="bench/scale.py --json output: the agent's per-sandbox figure")
    args = p.parse_args()
    variants = [("C++ monitor, dynamically linked (libc only; bench/monitor)", bl.MONITOR),
                ("C++ monitor, static (bench/monitor_static)", bl.MONITOR + "_static")]
    bl.need(*(exe for _, exe in variants))
    results = []
    for name, exe in variants:
        bl.log(f"monitor overhead: {args.count} × {os.path.basename(exe)} ({bl.machine_line()})")
        results.append((name, measure(exe, args.count)))

    agent = None
    if args.scale_json and os.path.exists(args.scale_json):
        with open(args.scale_json) as f:
            ok = [r for r in json.load(f)["results"] if "kib_per_sandbox" in r]
        if ok:
            agent = max(ok, key=lambda r: r["n"])

    print(f"### Per-sandbox overhead: a monitor process per sandbox vs. the agent ({args.count} idle monitors, "
          f"each waiting on a pidfd of its own `sleep`)")
    print()
    rows = []
    for name, r in results:
        rows.append([name, f"{r['rss_kib']:,.0f}", f"{r['pss_kib']:,.0f}",
                     f"{r['pte_kib'] + KERNEL_STACK_KIB:,.0f}",
                     f"{r['rss_kib'] / agent['kib_per_sandbox']:,.0f}×" if agent and agent["kib_per_sandbox"] > 0 else "—",
                     f"{r['pss_kib'] / agent['kib_per_sandbox']:,.0f}×" if agent and agent["kib_per_sandbox"] > 0 else "—"])
    rows.append(["docker + runsc: containerd-shim-runc-v2 per sandbox (facts file, measured)",
                 f"{SHIM_RSS_MIB * 1024:,.0f}", f"{SHIM_PSS_MIB * 1024:,.0f}", "",
                 f"{SHIM_RSS_MIB * 1024 / agent['kib_per_sandbox']:,.0f}×" if agent and agent["kib_per_sandbox"] > 0 else "—",
                 f"{SHIM_PSS_MIB * 1024 / agent['kib_per_sandbox']:,.0f}×" if agent and agent["kib_per_sandbox"] > 0 else "—"])
    if agent:
        rows.append([f"sandbox-agent, per in-flight sandbox (bench/scale.py, N={agent['n']:,}: (RSS at N − idle) / N)",
                     f"{agent['kib_per_sandbox']:.1f}", "", "", "1×", "1×"])
    print(bl.table(["per sandbox", "RSS (KiB)", "PSS (KiB)", "kernel: page tables + 16 KiB stack (KiB)",
                    "RSS vs agent", "PSS vs agent"], rows, ["---", "---:", "---:", "---:", "---:", "---:"]))
    print()
    if agent:
        print(f"The agent's own fixed cost, shared by all sandboxes: {agent['rss_idle_kib'] / 1024:.1f} MiB RSS idle. "
              f"gVisor's own processes (sandbox + gofer) cost ~{GVISOR_PSS_MIB} MiB PSS per sandbox whoever supervises "
              f"them; a monitor process adds to that, the agent adds {agent['kib_per_sandbox']:.1f} KiB.")
    else:
        print("(no bench/scale.py figures given: run with --scale-json)")
    print()


if __name__ == "__main__":
    main()
