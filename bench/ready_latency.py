#!/usr/bin/env python3
"""Ready-detection latency: from the moment a (fake) dockerd begins to answer to the agent's
`ready_at`.

The fake runtime records, in ROOT/runsc/fake-dockerd-ready.log, the moment (UNIX µs) each
fake dockerd starts answering (`answer_delay_ms` after `runsc start`; connections made
before wait in its backlog). The agent's `ready_at` (status, RFC 3339 µs) is when it saw
`GET /_ping` -> OK. Both are the host's CLOCK_REALTIME. For each scenario a fresh agent
launches --count Docker sandboxes in waves (--wave every --wave-gap-ms, so they are not
all simultaneous), and the distribution of ready_at - answer moment is printed.

Scenarios (answer moment D = --answer-ms after start):
  A  defaults; the socket appears at D (what the real relay does: it binds once dockerd's
     socket accepts) -> the inotify event on sockets/ID/ wakes the probe at once.
  B  defaults; the socket appears 20 ms after start, dockerd answers at D -> the first
     probe connects at once and waits in the backlog (attempt_timeout_ms 1000).
  C  defaults but attempt_timeout_ms 5: socket early, every attempt before D gives up,
     so only the backoff (5 ms x2 ... 250 ms, ±20 %) finds D: what the probe costs
     without the inotify wake-up and the held connection.
  D  a beta9-like fixed 1 s backoff (initial=max=1000 ms, no jitter), socket at D:
     inotify still wakes the probe at once.
  E  the same 1 s backoff, socket early, attempt_timeout_ms 5: pure 1 s polling.
  F  defaults, socket early, dockerd answers only after 2.5 s (not D): the default 1 s
     attempts time out twice, as with a slow real dockerd.
Target: p99 <= 10 ms with the defaults (A, B).

    python3 bench/ready_latency.py [--count 200] [--answer-ms 300] [--scenarios ABCDE]
"""
import argparse
import json
import signal
import subprocess
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import perf_profile  # noqa: E402

TARGET_P99_MS = 10.0
ONE_SECOND = {"initial_ms": 1000, "factor": 1.0, "max_ms": 1000, "jitter": 0.0}


def scenarios(d):
    return {
        "A": ("defaults; socket appears at D (inotify wake-up)", {}, f"dockerd_delay_ms={d}"),
        "B": ("defaults; socket at 20 ms, answers at D (held connection)", {},
              f"dockerd_delay_ms=20,answer_delay_ms={d}"),
        "C": ("defaults, attempt_timeout_ms 5; socket at 20 ms, answers at D (backoff only)",
              {"attempt_timeout_ms": 5}, f"dockerd_delay_ms=20,answer_delay_ms={d}"),
        "D": ("fixed 1 s backoff; socket appears at D (inotify wake-up)", dict(ONE_SECOND), f"dockerd_delay_ms={d}"),
        "E": ("fixed 1 s backoff, attempt_timeout_ms 5; socket at 20 ms, answers at D (1 s polling)",
              dict(ONE_SECOND, attempt_timeout_ms=5), f"dockerd_delay_ms=20,answer_delay_ms={d}"),
        "F": ("defaults; socket at 20 ms, answers at 2.5 s (a slow dockerd: 1 s attempts time out twice)", {},
              "dockerd_delay_ms=20,answer_delay_ms=2500"),
    }


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=200, help="sandboxes per scenario (default 200)")
    p.add_argument("--wave", type=int, default=5, help="launches per wave (default 5)")
    p.add_argument("--wave-gap-ms", type=int, default=40, help="between waves (default 40)")
    p.add_argument("--answer-ms", type=int, default=300, help="D: when dockerd answers, after start")
    p.add_argument("--scenarios", default="ABCDEF")
    p.add_argument("--timeout", type=float, default=15,
                   help="seconds to wait for all to be ready (and again for all to be stopped); default 15")
    p.add_argument("--chrt", action="store_true",
                   help="run the agent (and so the fake runtime it starts) under SCHED_FIFO (chrt -f 10), "
                        "out of reach of the machine's other load")
    p.add_argument("--dir", default=bl.DEFAULT_DIR,
                   help=f"where the agents' temporary roots go (default {bl.DEFAULT_DIR})")
    p.add_argument("--offcpu", default="",
                   help="scenarios (e.g. A) to run once more under perf sched_switch recording, to show where the "
                        "agent's reactor thread waited")
    p.add_argument("--json", help="write the figures here too")
    return p.parse_args()


def run_scenario(args, key, probe, directives, base, offcpu=False):
    root = os.path.join(base, key + ("-offcpu" if offcpu else ""))
    cfg = {"limits": {"max_sandboxes": args.count + 100, "max_pending_launches": args.count + 100}}
    if probe:
        cfg["probe"] = probe
    agent = bl.Agent(root, cfg, prefix=["chrt", "-f", "10"] if args.chrt else ()).start()
    ids = [f"{key.lower()}{i:04d}" for i in range(args.count)]
    out = {"key": key, "launched": 0, "errors": []}
    # The machine's own wake-up lateness meanwhile: the baseline no detector can beat.
    probe_proc = subprocess.Popen([sys.executable, os.path.join(bl.HERE, "wakeup_probe.py")], stdout=subprocess.PIPE,
                                  text=True)
    perf_path = os.path.join(base, f"offcpu-{key}.data")
    perf = perf_profile.offcpu_start(agent.pid, perf_path) if offcpu else None
    try:
        if perf:
            time.sleep(0.5)  # perf attaches
        c = agent.client()
        for w in range(0, len(ids), args.wave):
            batch = ids[w:w + args.wave]
            c.send_many([{"op": "launch", "request": {"id": i, "rootfs": agent.rootfs, "args": ["/bin/sleep", "infinity"],
                                                      "env": ["FAKE_RUNSC=" + directives],
                                                      "docker": {"enabled": True}}} for i in batch])
            for _ in batch:
                r = c.read()
                if r.get("ok"):
                    out["launched"] += 1
                else:
                    out["errors"].append(r.get("error"))
            time.sleep(args.wave_gap_ms / 1000)
        c.close()
        # Every sandbox here is ready within about a second of D; one that is not after
        # --timeout seconds never will be (reported as stuck, with its state).
        bl.wait_for(lambda: (s := agent.stats())["ready"] + s["failed"] >= out["launched"], args.timeout, 0.05)
        probe_proc.send_signal(signal.SIGTERM)
        out["machine"] = json.loads(probe_proc.communicate(timeout=30)[0] or "{}")
        if perf:
            perf_profile.stop(perf)
            out["offcpu"] = perf_profile.offcpu_breakdown(perf_path, agent.pid)
        answered = bl.fake_ready_log(agent.root)
        lat, missing, states, early, stuck = [], 0, {}, [], []
        for i in ids:
            s = agent.status(i)
            if not s:
                continue
            states[s["state"]] = states.get(s["state"], 0) + 1
            rid = agent.runsc_id(i)
            if s.get("ready_at") and rid in answered:
                ms = (bl.rfc3339_us(s["ready_at"]) - answered[rid]) / 1000
                # ready before its dockerd answered at all: a reply that was not its own
                (early if ms < 0 else lat).append(round(ms, 1))
            else:
                missing += 1
            if s["state"] not in ("ready", "failed"):
                stuck.append(f"{i} {s['state']}")
        out.update(lat=lat, missing=missing, states=states, early=early, stuck=stuck)
        c = agent.client()
        c.send_many([{"op": "stop", "id": i, "timeout_ms": 5000} for i in ids])
        for _ in ids:
            c.read()
        c.close()
        bl.wait_for(lambda: (s := agent.stats())["stopped"] + s["failed"] >= out["launched"], args.timeout, 0.05)
        out["unstopped"] = out["launched"] - (lambda s: s["stopped"] + s["failed"])(agent.stats())
    except Exception as e:
        out["exception"] = repr(e)
        out["agent_log"] = agent.log_tail(2000)
    finally:
        if probe_proc.poll() is None:
            probe_proc.kill()
            probe_proc.wait()
        agent.kill()
        agent.kill_fake_daemon()
        shutil.rmtree(root, ignore_errors=True)
    return out


def main():
    args = parse_args()
    bl.need(bl.AGENT, bl.FAKE_RUNSC, bl.SANDBOX_INIT)
    table = scenarios(args.answer_ms)
    base = tempfile.mkdtemp(prefix="bench-ready-", dir=args.dir)
    results, profiles = [], []
    try:
        for key in args.scenarios:
            what, probe, directives = table[key]
            bl.log(f"ready latency: scenario {key} ({what}), {args.count} sandboxes; {bl.machine_line()}")
            r = run_scenario(args, key, probe, directives, base)
            r["what"], r["probe"], r["directives"] = what, probe, directives
            results.append(r)
        profiles = []
        for key in args.offcpu:
            what, probe, directives = table[key]
            bl.log(f"ready latency: scenario {key} again, under perf (off-CPU profile)")
            profiles.append(run_scenario(args, key, probe, directives, base, offcpu=True))
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(f"### Ready-detection latency: fake dockerd answers at D = {args.answer_ms} ms after `runsc start` → agent "
          f"`ready_at` ({args.count} sandboxes per scenario, waves of {args.wave} every {args.wave_gap_ms} ms)")
    print()
    rows = []
    for r in results:
        s = bl.summary(r.get("lat", []))
        if not s["n"]:
            rows.append([r["key"], r["what"], "no samples: " + r.get("exception", str(r.get("states"))), "", "", "", ""])
            continue
        m = r.get("machine") or {}
        base_p99 = f"{m['p99_ms']:.2f}" if m.get("p99_ms") is not None else "—"
        rows.append([r["key"], r["what"], f"{s['n']}/{args.count}", f"{s['p50']:.2f}", f"{s['p99']:.2f}",
                     f"{s['max']:.2f}", f"{s['min']:.2f}", base_p99])
    print(bl.table(["", "scenario", "samples", "p50 (ms)", "p99 (ms)", "max (ms)", "min (ms)",
                    "baseline: machine's wake-up lateness p99 (ms)"], rows,
                   ["---", "---", "---:", "---:", "---:", "---:", "---:", "---:"]))
    print()
    verdicts = []
    for r in results:
        if r["key"] in "AB" and r.get("lat"):
            p99 = bl.percentile(r["lat"], 99)
            m = (r.get("machine") or {}).get("p99_ms")
            verdicts.append([f"p99 ≤ {TARGET_P99_MS:g} ms, scenario {r['key']} (defaults)",
                             f"{p99:.2f} ms" + (f" ({p99 / m:.1f}× the machine's wake-up p99 of {m:.2f} ms)"
                                                 if m else ""), bl.met(p99 <= TARGET_P99_MS)])
    if verdicts:
        print(bl.table(["target", "figure", "verdict"], verdicts, ["---", "---:", "---"]))
        print()
    print("How to read it: A and D differ only in the backoff (5 ms…250 ms vs. a fixed 1 s) and give the same "
          "latency, because the socket's appearance wakes the probe (inotify), not the backoff timer. B: the "
          "probe's connection waits in dockerd's backlog and is answered the moment it serves. C and E take "
          "both away (attempts give up after 5 ms): the latency becomes the backoff's step, up to 250 ms with "
          "the defaults and up to 1 s with a beta9-style 1 s poll. F: dockerd answers only after 2.5 s, so the "
          "default 1 s attempts time out. A sandbox reported ready before its own dockerd answered would be listed "
          "below and left out of the distribution (it happened where attempts time out, before the probe stopped "
          "closing sockets with an operation in flight: see docs/benchmarks.md).")
    print()
    for r in results:
        notes = [f"final states {r.get('states')}"]
        if r.get("missing"):
            notes.append(f"{r['missing']} without a sample")
        if r.get("early"):
            notes.append(f"**{len(r['early'])} reported ready before their dockerd answered** (ms before: "
                         f"{sorted(r['early'])[:5]}): excluded from the distribution")
        if r.get("stuck"):
            notes.append(f"**{len(r['stuck'])} never resolved** within {args.timeout:g} s: {r['stuck'][:5]}")
        if r.get("unstopped"):
            notes.append(f"{r['unstopped']} did not stop within {args.timeout:g} s")
        if r.get("errors"):
            notes.append(f"{len(r['errors'])} launch errors, first {r['errors'][0]}")
        if r.get("exception"):
            notes.append(f"exception {r['exception']}")
        print(f"- {r['key']}: probe {r['probe'] or 'defaults'}, `FAKE_RUNSC={r['directives']}`; " + "; ".join(notes))
    print()
    for r in profiles:
        lat = r.get("lat") or [0]
        print(f"Scenario {r['key']} once more with the agent's context switches recorded (p50 "
              f"{bl.percentile(lat, 50):.2f} ms, p99 {bl.percentile(lat, 99):.2f} ms in that run). While the reactor "
              f"thread is off the CPU or blocked in a system call, no inotify event, ping reply or timer is handled:")
        print()
        print(r.get("offcpu", "(no profile)"))
        print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results}, f)


if __name__ == "__main__":
    main()
