#!/usr/bin/env python3
"""Scale: N Docker sandboxes in flight at once on one agent (fake runtime).

For each N (default 1,000 / 5,000 / 10,000) a fresh agent in a temporary root of its own:
  - idle: the agent's RSS and CPU after it answers;
  - launch: N `launch` requests with `wait: ready`, pipelined over --connections sockets,
    all sent at once; wall time until the last held reply (and `stats` says N ready);
  - the agent's CPU (utime+stime of the agent process from /proc/PID/stat, its threads
    included, not its children: runsc CLIs are children) per sandbox, before/after;
  - its RSS per in-flight sandbox: (RSS with all N ready - RSS idle) / N;
  - stop: N `stop` requests; wall time until `stats` counts N stopped; CPU per sandbox.
Targets: <= 16 KiB per sandbox, <= 200 us CPU per sandbox, all 10,000 ready.

--wait stats launches without `wait` and polls `stats` instead (no held replies).
Prints markdown; --json FILE also writes the figures (bench/monitor_overhead.py reads them).

    python3 bench/scale.py [--counts 1000,5000,10000] [--dockerd-delay-ms 5] [--json out.json]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import perf_profile  # noqa: E402

KIB_TARGET = 16
CPU_TARGET_US = 200


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", default="1000,5000,10000")
    p.add_argument("--dockerd-delay-ms", type=int, default=5)
    p.add_argument("--connections", type=int, default=16, help="client sockets the launches are spread over")
    p.add_argument("--max-concurrent", type=int, default=8, help="runsc.max_concurrent of the agent")
    p.add_argument("--wait", choices=("held", "stats"), default="held",
                   help="held: launch with wait=ready; stats: launch without wait, poll stats")
    p.add_argument("--timeout", type=float, default=600, help="seconds allowed per phase")
    p.add_argument("--no-stop", action="store_true", help="skip the stop phase (the agent and runtime are killed)")
    p.add_argument("--dir", default=bl.DEFAULT_DIR,
                   help=f"where the agent's temporary root goes (default {bl.DEFAULT_DIR}); a directory on the disk "
                        "measures the file system too")
    p.add_argument("--fresh-fs", choices=("ext4", "ext4-nojournal"),
                   help="put the agent's root on a new file system made for this run (an 8 GiB sparse image "
                        "under /var/tmp, loop-mounted, removed after): figures that do not depend on what the "
                        "machine's own disk went through (ext4 without a journal scans every inode freed in its "
                        "last minutes at each new file)")
    p.add_argument("--perf", action="store_true",
                   help="profile the agent (perf record, 499 Hz) during each launch phase and print where its CPU "
                        "goes (it slows the agent down a little: figures of such a run are not the reference)")
    p.add_argument("--syscalls", action="store_true",
                   help="count the reactor thread's system calls per sandbox during the launch phase (strace -c on "
                        "the main thread; slows the agent a lot: figures of such a run are not the reference)")
    p.add_argument("--log-quota", type=int, default=None,
                   help="logs.max_bytes_per_sandbox (default: the agent's; 0: no quota, to see what it costs)")
    p.add_argument("--launch", choices=("run", "create_start"), default="run",
                   help="runsc.launch of the agent: one `runsc run --detach` (default) or create then start")
    p.add_argument("--spawn-helper", choices=("on", "off"), default="on",
                   help="runsc.spawn_helper of the agent: runsc forked by its helper process (default) or by the agent")
    p.add_argument("--json", help="write the figures here too")
    p.add_argument("--keep", action="store_true", help="keep the temporary roots (not with --fresh-fs: its file system goes)")
    return p.parse_args()


class Launcher(threading.Thread):
    """One connection: sends its launches at once, then reads every reply."""

    def __init__(self, agent, requests, wait):
        super().__init__(daemon=True)
        self.client = agent.client(timeout=600)
        self.requests = requests
        self.wait = wait
        self.states = {}
        self.errors = []
        self.last_reply = None

    def run(self):
        try:
            msgs = [{"op": "launch", "request": r, **({"wait": "ready"} if self.wait else {}), "tag": i}
                    for i, r in enumerate(self.requests)]
            self.client.send_many(msgs)
            for _ in msgs:
                reply = self.client.read()
                self.last_reply = time.monotonic()
                if reply.get("ok"):
                    self.states[reply["state"]] = self.states.get(reply["state"], 0) + 1
                else:
                    self.errors.append(reply.get("error"))
        except Exception as e:  # reported, never raised: a benchmark prints what happened
            self.errors.append(repr(e))
        finally:
            self.client.close()


def run_one(args, n, base):
    root = os.path.join(base, f"n{n}")
    cfg = {"limits": {"max_sandboxes": n + 100, "max_pending_launches": n + 100,
                      "max_connections": max(1024, args.connections + 16)},
           "runsc": {"max_concurrent": args.max_concurrent, "timeout_ms": 120000, "launch": args.launch,
                     "spawn_helper": args.spawn_helper == "on"},
           "docker": {"ready_timeout_ms": 600000}}
    if args.log_quota is not None:
        cfg["logs"] = {"max_bytes_per_sandbox": args.log_quota}
    agent = bl.Agent(root, cfg).start()
    res = {"n": n, "wait": args.wait, "connections": args.connections, "max_concurrent": args.max_concurrent}
    try:
        pid = agent.pid
        time.sleep(0.5)
        res["rss_idle_kib"] = bl.status_kib(pid)
        env = [f"FAKE_RUNSC=dockerd_delay_ms={args.dockerd_delay_ms}"]
        requests = [{"id": f"s{i:05d}", "rootfs": agent.rootfs, "args": ["/bin/sleep", "infinity"], "env": env,
                     "docker": {"enabled": True}} for i in range(n)]
        k = max(1, args.connections)
        launchers = [Launcher(agent, requests[j::k], args.wait == "held") for j in range(k)]
        perf_path = os.path.join(base, f"perf-{n}.data")
        perf = perf_profile.start(pid, perf_path) if args.perf else None
        strace_path = os.path.join(base, f"strace-{n}.txt")
        strace = None
        if args.syscalls:
            strace = subprocess.Popen(["strace", "-c", "-o", strace_path, "-p", str(pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)  # attached
        helper = bl.spawn_helper_of(pid)
        hcpu0 = bl.cpu_seconds(helper) if helper else 0
        cpu0 = bl.cpu_seconds(pid)
        faults0 = bl.minor_faults(pid)
        t0 = time.monotonic()
        for t in launchers:
            t.start()
        for t in launchers:
            t.join(args.timeout)
        stats = None
        if args.wait == "stats":
            def all_done():
                s = agent.stats()
                return s if s["ready"] + s["failed"] >= n else None
            stats = bl.wait_for(all_done, args.timeout, 0.25)
            t1 = time.monotonic()
        else:
            t1 = max((t.last_reply or t0) for t in launchers)
        cpu1 = bl.cpu_seconds(pid)
        res["faults_per_sandbox"] = (bl.minor_faults(pid) - faults0) / n
        hcpu1 = bl.cpu_seconds(helper) if helper else 0
        if perf:
            perf_profile.stop(perf)
            res["profile"] = perf_profile.breakdown(perf_path, pid=pid)
        if strace:
            strace.send_signal(signal.SIGINT)
            strace.wait(60)
            res["syscalls"] = syscall_table(strace_path, n)
        rss_n = bl.status_kib(pid)
        hwm = bl.status_kib(pid, "VmHWM")
        pss_n = bl.rollup_kib(pid, "Pss")
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        stats = stats or agent.stats()
        # What one `stats` request costs the agent with N sandboxes (a monitoring client's poll).
        c = agent.client()
        s0 = bl.cpu_seconds(pid)
        for _ in range(50):
            c.call({"op": "stats"})
        res["stats_call_us"] = (bl.cpu_seconds(pid) - s0) / 50 * 1e6
        c.close()
        states, errors = {}, []
        for t in launchers:
            for s, c in t.states.items():
                states[s] = states.get(s, 0) + c
            errors += t.errors
        res.update(launch_s=t1 - t0, cpu_launch_s=cpu1 - cpu0, rss_n_kib=rss_n, hwm_kib=hwm, pss_n_kib=pss_n,
                   fds=fds, replies=states, errors=errors[:5], error_count=len(errors),
                   stats_ready=stats["ready"], stats_failed=stats["failed"], in_flight=stats["in_flight"],
                   ttr=stats.get("time_to_ready_ms"))
        res["cpu_per_sandbox_us"] = res["cpu_launch_s"] / n * 1e6
        # The helper forks runsc for the agent: its own CPU (not its children's) is shown beside.
        res["helper_cpu_per_sandbox_us"] = (hcpu1 - hcpu0) / n * 1e6 if helper else None
        res["kib_per_sandbox"] = (rss_n - res["rss_idle_kib"]) / n
        res["all_ready"] = stats["ready"] == n
        bl.log(f"  N={n}: ready {stats['ready']}/{n} in {res['launch_s']:.2f} s, "
               f"{res['cpu_per_sandbox_us']:.0f} us CPU and {res['kib_per_sandbox']:.1f} KiB per sandbox"
               + (f" (spawn helper: {res['helper_cpu_per_sandbox_us']:.0f} us)" if helper else " (no spawn helper)"))

        if args.no_stop:
            return res
        # Stop them all.
        cpu2 = bl.cpu_seconds(pid)
        t2 = time.monotonic()
        c = agent.client(timeout=600)
        c.send_many([{"op": "stop", "id": r["id"], "timeout_ms": 10000} for r in requests])
        stop_errors = [r for r in (c.read() for _ in requests) if not r.get("ok")]
        c.close()
        done = bl.wait_for(lambda: (s := agent.stats())["stopped"] + s["failed"] >= n and s, args.timeout, 0.25)
        t3 = time.monotonic()
        cpu3 = bl.cpu_seconds(pid)
        final = agent.stats()
        res.update(stop_s=t3 - t2 if done else None, cpu_stop_s=cpu3 - cpu2, stopped=final["stopped"],
                   stop_errors=len(stop_errors), final_failed=final["failed"], agent_alive=agent.alive())
        res["cpu_stop_per_sandbox_us"] = res["cpu_stop_s"] / n * 1e6
        bl.log(f"  N={n}: stopped {final['stopped']}/{n} in {res['stop_s'] or float('nan'):.2f} s")
    except Exception as e:
        res["exception"] = repr(e)
        res["agent_alive"] = agent.alive()
        res["agent_log"] = agent.log_tail(2000)
        bl.log(f"  N={n}: {e!r}")
    finally:
        agent.kill()
        agent.kill_fake_daemon()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return res


def syscall_table(path, n):
    """strace -c's summary, per sandbox."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                    calls = int(parts[3])
                    errors = int(parts[4]) if len(parts) == 6 else 0
                    rows.append((parts[-1], calls / n, errors / n, float(parts[0])))
    except OSError:
        return "(strace produced nothing)"
    rows.sort(key=lambda r: -r[1])
    total = sum(r[1] for r in rows)
    out = [f"{total:.0f} system calls per sandbox on the reactor thread (strace -c; io_uring's own work not included):",
           "", "| system call | per sandbox | of which failed | share of syscall time |", "|---|---:|---:|---:|"]
    out += [f"| {name} | {calls:.1f} | {errors:.1f} | {pct:.1f}% |" for name, calls, errors, pct in rows[:20]]
    return "\n".join(out)


def fmt(x, spec=".2f", none="—"):
    return none if x is None else format(x, spec)


def describe_fs(path):
    """The file system under `path`: type, and for ext4 whether it has a journal."""
    try:
        out = subprocess.run(["df", "--output=source,fstype", path], capture_output=True, text=True,
                             check=True).stdout.split("\n")[1].split()
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "?"
    source, fstype = out[0], out[1]
    if fstype != "ext4":
        return fstype
    try:
        # /dev/mapper/NAME is a link to /dev/dm-N, the name sysfs uses
        with open(f"/sys/fs/ext4/{os.path.basename(os.path.realpath(source))}/journal_task") as f:
            return "ext4 without a journal" if f.read().strip() == "<none>" else "ext4 with a journal"
    except OSError:
        return "ext4"


class FreshFs:
    """A new ext4 on a sparse image, loop-mounted for one run; gone afterwards, even on failure."""

    def __init__(self, kind):
        self.kind = kind
        self.top = tempfile.mkdtemp(prefix="bench-fs-", dir="/var/tmp")
        self.image = os.path.join(self.top, "image")
        self.mnt = os.path.join(self.top, "mnt")
        self.mounted = False

    def __enter__(self):
        os.mkdir(self.mnt)
        with open(self.image, "wb") as f:
            f.truncate(8 << 30)
        features = ["-O", "^has_journal"] if self.kind == "ext4-nojournal" else []
        subprocess.run(["mkfs.ext4", "-q", "-F", *features, self.image], check=True)
        subprocess.run(["mount", "-o", "loop", self.image, self.mnt], check=True)
        self.mounted = True
        return self.mnt

    def __exit__(self, *exc):
        if self.mounted and subprocess.run(["umount", self.mnt], check=False).returncode != 0:
            # Busy: detach it (the loop device goes once nothing holds it) and never walk into it.
            subprocess.run(["umount", "-l", self.mnt], check=False)
        if os.path.ismount(self.mnt):
            bl.log(f"scale: {self.mnt} is still mounted; left in place")
            return
        shutil.rmtree(self.top, ignore_errors=True)


def report(args, results):
    where = args.dir or tempfile.gettempdir()
    print(f"### Scale: N Docker sandboxes in flight on one agent (fake runtime, dockerd_delay_ms="
          f"{args.dockerd_delay_ms}, launches {'with `wait: ready`' if args.wait == 'held' else 'polled via `stats`'}"
          f" over {args.connections} connections, runsc.max_concurrent {args.max_concurrent}, agent root "
          + (f"on a new {args.fs}, made for this run)" if args.fresh_fs else f"under {where}, {args.fs})"))
    print()
    rows = []
    for r in results:
        if "exception" in r and "launch_s" not in r:
            rows.append([f"{r['n']:,}", "error: " + r["exception"][:80]] + [""] * 10)
            continue
        rows.append([f"{r['n']:,}", f"{r['stats_ready']:,}/{r['n']:,}", fmt(r["launch_s"]),
                     f"{r['n'] / r['launch_s']:,.0f}", fmt(r["cpu_per_sandbox_us"], ".0f"),
                     fmt(r.get("helper_cpu_per_sandbox_us"), ".0f"),
                     f"{r['rss_idle_kib'] / 1024:.1f} → {r['rss_n_kib'] / 1024:.1f}",
                     fmt(r["kib_per_sandbox"], ".1f"), f"{r['fds']:,}",
                     fmt(r.get("stop_s")), fmt(r.get("cpu_stop_per_sandbox_us"), ".0f"),
                     f"{r['stopped']:,}" if "stopped" in r else "not run"])
    print(bl.table(["N", "ready", "launch → all ready (s)", "sandboxes/s", "agent CPU per sandbox (µs)",
                    "spawn helper's CPU per sandbox (µs)",
                    "agent RSS idle → at N (MiB)", "RSS per sandbox (KiB)", "agent fds at N",
                    "stop all (s)", "stop CPU per sandbox (µs)", "stopped"], rows))
    print()
    big = max((r for r in results if "launch_s" in r), key=lambda r: r["n"], default=None)
    if big:
        worst_kib = max(r["kib_per_sandbox"] for r in results if "launch_s" in r)
        worst_cpu = max(r["cpu_per_sandbox_us"] for r in results if "launch_s" in r)
        print(bl.table(["target", "figure", "verdict"], [
            [f"≤ {KIB_TARGET} KiB RSS per in-flight sandbox", f"{worst_kib:.1f} KiB (worst N)", bl.met(worst_kib <= KIB_TARGET)],
            [f"≤ {CPU_TARGET_US} µs agent CPU per sandbox (launch → ready)", f"{worst_cpu:.0f} µs (worst N)",
             bl.met(worst_cpu <= CPU_TARGET_US)],
            ["all 10,000 ready", f"N={big['n']:,}: {big['stats_ready']:,} ready, {big['stats_failed']:,} failed",
             bl.met(big["all_ready"]) if big["n"] >= 10000 else "not run at 10,000"],
        ], ["---", "---:", "---"]))
        print()
    for r in results:
        notes = []
        if r.get("error_count"):
            notes.append(f"{r['error_count']} error replies, first: {r['errors'][:2]}")
        if r.get("replies") and args.wait == "held":
            notes.append(f"held replies by state: {r['replies']}")
        if r.get("ttr"):
            notes.append(f"agent's time_to_ready_ms: p50 {r['ttr'].get('p50')}, p99 {r['ttr'].get('p99')}, "
                         f"max {r['ttr'].get('max')}")
        if r.get("stop_errors"):
            notes.append(f"{r['stop_errors']} stop errors")
        if r.get("final_failed"):
            notes.append(f"{r['final_failed']} failed")
        if "exception" in r:
            notes.append(f"exception: {r['exception']}; agent alive: {r.get('agent_alive')}")
        if "hwm_kib" in r:
            notes.append(f"VmHWM {r['hwm_kib'] / 1024:.1f} MiB, Pss at N {r['pss_n_kib'] / 1024:.1f} MiB")
        if "faults_per_sandbox" in r:
            notes.append(f"{r['faults_per_sandbox']:.1f} minor page faults per sandbox while launching")
        if "stats_call_us" in r:
            notes.append(f"one `stats` request costs the agent {r['stats_call_us']:.0f} µs CPU at this N "
                         f"(mean of 50; /proc ticks are 10 ms)")
        print(f"- N={r['n']:,}: " + "; ".join(notes))
    print()
    for r in results:
        if r.get("syscalls"):
            print(f"System calls during the launch phase, N={r['n']:,}:")
            print()
            print(r["syscalls"])
            print()
        if r.get("profile"):
            print(f"Profile of the agent during the launch phase, N={r['n']:,} (perf record -g, 499 Hz):")
            print()
            print(r["profile"])
            print()


def main():
    args = parse_args()
    bl.need(bl.AGENT, bl.FAKE_RUNSC, bl.SANDBOX_INIT)
    counts = [int(x) for x in args.counts.split(",") if x]
    fresh = FreshFs(args.fresh_fs) if args.fresh_fs else None
    results = []
    try:
        if fresh:
            args.dir = fresh.__enter__()
        args.fs = describe_fs(args.dir or tempfile.gettempdir())
        base = tempfile.mkdtemp(prefix="bench-scale-", dir=args.dir)
        try:
            for n in counts:
                bl.log(f"scale: N={n} ({bl.machine_line()}; root on {args.fs})")
                results.append(run_one(args, n, base))
        finally:
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
    finally:
        if fresh:
            fresh.__exit__(None, None, None)
    report(args, results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results}, f, indent=1)


if __name__ == "__main__":
    main()
