#!/usr/bin/env python3
"""The cold floor of a Docker sandbox, change by change: time from `launch` to `ready` (and
dockerd's own `API listen on`) for a ladder of configurations, each one change away from the
one before, all in one run, runs interleaved. The first rung is what ran before (Debian's runsc
on ptrace, dockerd starting its own containerd): the baseline every ratio is taken against.

  debian-ptrace      Debian's runsc 20221219, ptrace, containerd started by dockerd
  current-ptrace     + current gVisor (built from its Go module), still ptrace
  current-systrap    + the systrap platform
  containerd-beside  + containerd started by sandbox-init beside dockerd (docker.containerd_path)
  runsc-run          + one `runsc run --detach` instead of `runsc create` + `runsc start`
                       (runsc.launch "run")
  no-host-cgroup     + no host cgroup for a sandbox without resources limits (runsc
                       --ignore-cgroups; runsc.host_cgroups "limited") = the agent's defaults today
Measured too, not shipped (see docs/benchmarks.md for why):
  gogc-off           + GOGC=off for dockerd and containerd
  exclusive-mounts   + runsc --file-access-mounts=exclusive
  gogc-off-limited   + GOGC=off GOMEMLIMIT=256MiB (a collector again once the heap nears 256 MiB)

A second table splits each rung's time into phases read from the logs (runsc's create and
start halves from the agent's timings, then sandbox-init's first line, dockerd's "Starting up", dockerd
connected to containerd, "Loading containers", "API listen on"), as ms after `launch`.

    python3 bench/cold_floor.py [--runs 5] [--only RUNG,…]

--only runs the named rungs beside the baseline and the defaults (an A/B of one change
with more runs than the whole ladder can afford).
"""
import argparse
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
from runtimes import CURRENT, DEBIAN, request, stop  # noqa: E402
from time_to_ready import make_skeleton  # noqa: E402

# name, what changed, runsc, platform, runsc config (launch, host_cgroups), docker config,
# runsc flags, what the request adds (its env)
BEFORE = {"launch": "create_start", "host_cgroups": "always"}
ONE_CALL = {"launch": "run", "host_cgroups": "always"}
DEFAULTS = {}  # the agent's own: runsc.launch "run", runsc.host_cgroups "limited"
RUNGS = [
    ("debian-ptrace", "baseline: what ran before", DEBIAN, "ptrace", BEFORE, {"containerd_path": ""}, [], {}),
    ("current-ptrace", "current gVisor", CURRENT, "ptrace", BEFORE, {"containerd_path": ""}, [], {}),
    ("current-systrap", "systrap platform", CURRENT, "systrap", BEFORE, {"containerd_path": ""}, [], {}),
    ("containerd-beside", "containerd started beside dockerd", CURRENT, "systrap", BEFORE, {}, [], {}),
    ("runsc-run", "one `runsc run --detach`", CURRENT, "systrap", ONE_CALL, {}, [], {}),
    ("no-host-cgroup", "no host cgroup for a sandbox without limits (defaults today)", CURRENT, "systrap", DEFAULTS,
     {}, [], {}),
]
SHIPPED_NAMES = {r[0] for r in RUNGS}
NOT_SHIPPED = [
    ("gogc-off", "GOGC=off for dockerd and containerd", CURRENT, "systrap", DEFAULTS, {}, [], {"env": ["GOGC=off"]}),
    ("exclusive-mounts", "runsc --file-access-mounts=exclusive", CURRENT, "systrap", DEFAULTS, {},
     ["--file-access-mounts=exclusive"], {}),
    ("gogc-off-limited", "GOGC=off GOMEMLIMIT=256MiB for dockerd and containerd", CURRENT, "systrap", DEFAULTS, {},
     [], {"env": ["GOGC=off", "GOMEMLIMIT=256MiB"]}),
]
# Phase marks: (column, text in dockerd.log); None for sandbox-init's first line.
MARKS = [("init", None), ("dockerd up", "Starting up"),
         ("containerd connected", "Channel Connectivity change to READY"),
         ("loading containers", "Loading containers: start"), ("API listen", "API listen on")]
LOGRUS_TIME = re.compile(r'time="([^"]+)"')
INIT_TIME = re.compile(r"(\d{4}-\d\d-\d\dT[\d:.]+Z)")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--timeout", type=float, default=90)
    p.add_argument("--only", default="", help="comma-separated rungs to run besides the baseline and the defaults")
    return p.parse_args()


def phases(log_dir, t0):
    """{mark: ms after t0} from init.log's first line and dockerd.log."""
    out = {}
    try:
        with open(os.path.join(log_dir, "init.log"), errors="replace") as f:
            m = INIT_TIME.search(f.readline())
            if m:
                out["init"] = (bl.rfc3339_us(m.group(1)) - t0) / 1000
        with open(os.path.join(log_dir, "dockerd.log"), errors="replace") as f:
            for line in f:
                for name, text in MARKS:
                    if text and name not in out and text in line:
                        m = LOGRUS_TIME.search(line)
                        if m:
                            out[name] = (bl.rfc3339_us(m.group(1)) - t0) / 1000
    except OSError:
        pass
    return out


def launch_once(agent, sid, adds, timeout):
    req = request(agent.rootfs, sid)
    req["env"] = list(adds.get("env", []))
    c = agent.client(timeout=timeout)
    t0 = bl.now_us()
    reply = c.call({"op": "launch", "request": req, "wait": "ready"})
    t1 = bl.now_us()
    c.close()
    sb = reply.get("sandbox") or {}
    row = {"ok": reply.get("state") == "ready", "ready": (t1 - t0) / 1000, "detail": sb.get("reason") or sb.get("error"),
           "create": (sb.get("timings") or {}).get("create_ms"), "start": (sb.get("timings") or {}).get("start_ms")}
    row.update(phases(os.path.join(agent.root, "logs", sid), t0))
    return row


def median(rows, key):
    s = bl.summary([r[key] for r in rows if r.get(key) is not None])
    return s["median"] if s["n"] else None


def main():
    args = parse_args()
    bl.need(bl.AGENT, bl.SANDBOX_INIT, DEBIAN, CURRENT)
    rungs = RUNGS + NOT_SHIPPED
    if args.only:
        keep = {RUNGS[0][0], RUNGS[-1][0], *(n.strip() for n in args.only.split(",") if n.strip())}
        unknown = keep - {r[0] for r in rungs}
        if unknown:
            sys.exit(f"cold_floor: unknown rung(s): {', '.join(sorted(unknown))}")
        rungs = [r for r in rungs if r[0] in keep]
    base = tempfile.mkdtemp(prefix="bench-cold-floor-")
    os.chmod(base, 0o755)
    agents, results = {}, {r[0]: [] for r in rungs}
    try:
        for name, _, runsc, platform, runsc_cfg, docker, flags, _ in rungs:
            cfg = {"runsc": {"path": runsc, "platform": platform, "timeout_ms": 60000, **runsc_cfg,
                             "flags": ["--network=none"] + flags},
                   "docker": docker, "allowed_host_prefixes": ["ROOT/images", "/usr", "/etc"]}
            agents[name] = bl.Agent(os.path.join(base, name), cfg, runsc=runsc).start()
            make_skeleton(agents[name].rootfs)
        for run in range(1, args.runs + 1):
            k = run % len(rungs)
            for name, *_, adds in rungs[k:] + rungs[:k]:  # rotate who goes first
                bl.log(f"cold_floor: run {run}/{args.runs}, {name}")
                sid = f"cf-{run:02d}"
                results[name].append(launch_once(agents[name], sid, adds, args.timeout))
                stop(agents[name], sid)
                time.sleep(0.3)
    finally:
        for a in agents.values():
            bl.release_real_agent(a)
        procs, mounts = bl.leftovers(base)
        if not procs and not mounts:
            shutil.rmtree(base, ignore_errors=True)

    print(f"### Cold floor, change by change: a Docker sandbox, launch → ready ({args.runs} runs per rung, interleaved)")
    print()
    base_ready = median([r for r in results[RUNGS[0][0]] if r["ok"]], "ready")
    rows, previous = [], None
    for i, (name, change, *_rest) in enumerate(rungs):
        ok = [r for r in results[name] if r["ok"]]
        s = bl.summary([r["ready"] for r in ok])
        ready, floor = median(ok, "ready"), median(ok, "API listen")
        shipped = name in SHIPPED_NAMES
        ref = previous if shipped else median([r for r in results[RUNGS[-1][0]] if r["ok"]], "ready")
        delta = f"{ready - ref:+.0f}" if ready is not None and ref is not None and i else ""
        ratio = f"{ready / base_ready:.2f}" if ready and base_ready else "—"
        rows.append([name if shipped else f"{name} (not shipped)", change, f"{len(ok)}/{len(results[name])}",
                     f"{ready:.0f}" if ready else "—", f"{s['min']:.0f}–{s['max']:.0f}" if s["n"] else "—",
                     f"{floor:.0f}" if floor else "—", delta, ratio])
        if shipped:
            previous = ready
    print(bl.table(["rung", "change", "ok", "ready, median (ms)", "min–max", "floor: `API listen on` (ms)",
                    "Δ ready (ms)", "× baseline"], rows,
                   ["---", "---", "---:", "---:", "---:", "---:", "---:", "---:"]))
    print()
    print(f"Δ: against the rung above; for the rungs not shipped, against the defaults ({RUNGS[-1][0]}).")
    print()
    cols = ["create", "start"] + [m for m, _ in MARKS] + ["ready"]
    rows = []
    for name, *_ in rungs:
        ok = [r for r in results[name] if r["ok"]]
        rows.append([name] + [f"{v:.0f}" if v is not None else "—" for v in (median(ok, c) for c in cols)])
    print("#### Where the time goes: medians, ms after `launch` (create and start are durations; "
          "with `runsc run` its call split where runsc wrote the pid file)")
    print()
    print(bl.table(["rung", "runsc create", "runsc start", "sandbox-init", "dockerd up", "containerd connected",
                    "loading containers", "API listen", "ready"], rows, ["---"] + ["---:"] * 8))
    print()
    default = median([r for r in results[RUNGS[-1][0]] if r["ok"]], "ready")
    if default and base_ready:
        print(f"- goal ≤ 0.5× the baseline ({0.5 * base_ready:.0f} ms): defaults today {default:.0f} ms = "
              f"{default / base_ready:.2f}× → {'met' if default <= 0.5 * base_ready else '**missed**'}")
    bl.print_failures_and_cleanup(results, procs, mounts)


if __name__ == "__main__":
    main()
