#!/usr/bin/env python3
"""Time to ready on the real stack: runsc (ptrace) + dockerd inside, one sandbox at a time.

Methods, interleaved run by run (so drifting machine load hits them alike):
  agent   `launch` with `wait: ready` of a Docker sandbox through the agent's socket; from
          just before the request to the ready reply; the agent's own `timings` are kept.
  poll1s  the shell baseline (bench/runsc_poll.sh): `runsc create` + `runsc start` of the
          same rendered bundle (`sandbox-agent render`), then `curl --unix-socket … /_ping`
          every 1 s until OK: what beta9's worker and gVisor's image tests do.
  poll100ms, poll10ms  the same with a 100 ms / 10 ms loop.
The floor of every run: dockerd.log's `API listen on` (dockerd serves its API from then on),
relative to the same start. Rootfs: a skeleton directory with the host's /usr and /etc bound
read-only (as tests/e2e does). Every sandbox is killed and deleted after its run; processes
and mounts left behind are reported.

    python3 bench/time_to_ready.py [--runs 5] [--methods agent,poll1s,poll100ms,poll10ms]
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

RUNSC = bl.REAL_RUNSC
POLL = os.path.join(bl.HERE, "runsc_poll.sh")
INTERVALS = {"poll1s": "1", "poll100ms": "0.1", "poll10ms": "0.01"}
FLAGS = ["--platform=ptrace", "--network=none", "--host-uds=create"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--methods", default="agent,poll1s,poll100ms,poll10ms")
    p.add_argument("--timeout", type=float, default=90, help="seconds allowed per launch")
    p.add_argument("--json", help="write the figures here too")
    return p.parse_args()


def make_skeleton(path):
    for d in ("usr", "etc", "proc", "sys", "dev", "tmp", "run", "var", "root"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        if not os.path.lexists(os.path.join(path, link)):
            os.symlink(f"usr/{link}", os.path.join(path, link))


def request(rootfs, sid):
    return {"id": sid, "rootfs": rootfs, "docker": {"enabled": True},
            "mounts": [{"source": "/usr", "destination": "/usr", "readonly": True},
                       {"source": "/etc", "destination": "/etc", "readonly": True}]}


API_LISTEN = re.compile(r'time="([^"]+)".*API listen on')


def api_listen_us(log_dir):
    """UNIX µs of dockerd's `API listen on` line, or None."""
    try:
        with open(os.path.join(log_dir, "dockerd.log"), errors="replace") as f:
            for line in f:
                m = API_LISTEN.search(line)
                if m:
                    return bl.rfc3339_us(m.group(1))
    except OSError:
        pass
    return None


def runsc_list(runsc_root):
    r = subprocess.run([RUNSC, "--root", runsc_root, "list", "--format=json"], capture_output=True, text=True,
                       timeout=60)
    try:
        return json.loads(r.stdout or "null") or []
    except ValueError:
        return []


def runsc_remove(runsc_root, ids):
    """kill KILL, then delete --force, all at once (delete waits ~2 s for the sandbox to go)."""
    for i in ids:
        subprocess.run([RUNSC, "--root", runsc_root, "kill", i, "KILL"], capture_output=True, timeout=30)
    procs = [subprocess.Popen([RUNSC, "--root", runsc_root, "delete", "--force", i],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in ids]
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()


class Bench:
    def __init__(self, args, base):
        self.args = args
        self.base = base
        cfg = {"runsc": {"path": RUNSC, "timeout_ms": 60000}, "allowed_host_prefixes": ["ROOT/images", "/usr", "/etc"]}
        self.agent = bl.Agent(os.path.join(base, "agent"), cfg, runsc=RUNSC)
        make_skeleton(self.agent.rootfs)
        # The baseline renders with the same configuration in a root of its own (its own
        # runsc --root: the agent would clean up sandboxes it has no record of).
        self.broot = os.path.join(base, "baseline")
        self.bconfig = os.path.join(self.broot, "config.json")
        self.brootfs = os.path.join(self.broot, "images", "rootfs")
        os.makedirs(self.brootfs)
        make_skeleton(self.brootfs)
        with open(self.bconfig, "w") as f:
            json.dump({"sandbox_init": bl.SANDBOX_INIT, "allowed_host_prefixes": ["ROOT/images", "/usr", "/etc"],
                       "runsc": {"path": RUNSC}}, f)
        self.bruns = os.path.join(self.broot, "runsc")
        os.makedirs(self.bruns)

    def run_agent(self, run):
        sid = f"ttr-agent-{run:02d}"
        c = self.agent.client(timeout=self.args.timeout)
        t0 = bl.now_us()
        reply = c.call({"op": "launch", "request": request(self.agent.rootfs, sid), "wait": "ready"})
        t1 = bl.now_us()
        c.close()
        sb = reply.get("sandbox") or {}
        out = {"ok": reply.get("state") == "ready", "ready_ms": (t1 - t0) / 1000, "timings": sb.get("timings"),
               "state": reply.get("state"), "reason": sb.get("reason")}
        api = api_listen_us(os.path.join(self.agent.root, "logs", sid))
        out["floor_ms"] = (api - t0) / 1000 if api else None
        if not out["ok"]:
            out["detail"] = reply
        # Stop it and wait until it is gone, so that the next run has the machine to itself.
        self.agent.call({"op": "stop", "id": sid, "timeout_ms": 5000})
        bl.wait_for(lambda: (self.agent.status(sid) or {}).get("state") in ("stopped", "failed"), 60, 0.05)
        return out

    def run_poll(self, method, run):
        interval = INTERVALS[method]
        sid = f"bl{method[4:]:>5}-{run:02d}".replace(" ", "x")  # fixed length: never a prefix of another
        with open(os.path.join(self.base, "req.json"), "w") as f:
            json.dump(request(self.brootfs, sid), f)
        spec = subprocess.run([bl.AGENT, "--config", self.bconfig, "--root", self.broot, "render",
                               os.path.join(self.base, "req.json")], capture_output=True, text=True, check=True).stdout
        bundle = os.path.join(self.broot, "bundles", sid)
        os.makedirs(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            f.write(spec)
        # The host directories the spec names (the agent creates them for its own sandboxes).
        sockets, logs = os.path.join(self.broot, "sockets", sid), os.path.join(self.broot, "logs", sid)
        os.makedirs(sockets, mode=0o700)
        os.makedirs(logs)
        sock = os.path.join(sockets, "docker.sock")
        t0 = bl.now_us()
        p = subprocess.Popen(["sh", POLL, self.bruns, bundle, sid, sock, interval, os.path.join(logs, "runsc.log")],
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, _ = p.communicate(timeout=self.args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            stdout, _ = p.communicate()
        out = {"ok": p.returncode == 0 and bool(stdout.strip())}
        if out["ok"]:
            created, started, ready, fails = (int(x) for x in stdout.split())
            out.update(ready_ms=(ready // 1000 - t0) / 1000, create_ms=(created // 1000 - t0) / 1000,
                       start_ms=(started - created) / 1e6, failed_attempts=fails)
        else:
            out["detail"] = f"exit {p.returncode}"
        api = api_listen_us(logs)
        out["floor_ms"] = (api - t0) / 1000 if api else None
        runsc_remove(self.bruns, [sid])
        return out

    def leftovers(self):
        procs = [(pid, open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ")[:120].decode(errors="replace"))
                 for pid in bl.pids_with_cmdline(self.base)]
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f if self.base in line]
        return procs, mounts


def fmt(values, spec=".0f"):
    s = bl.summary([v for v in values if v is not None])
    if not s["n"]:
        return "—", "—"
    return format(s["median"], spec), f"{format(s['min'], spec)}–{format(s['max'], spec)}"


def main():
    args = parse_args()
    bl.need(bl.AGENT, bl.SANDBOX_INIT, RUNSC)
    methods = [m for m in args.methods.split(",") if m]
    base = tempfile.mkdtemp(prefix="bench-ttr-")
    os.chmod(base, 0o755)
    results = {m: [] for m in methods}
    leftovers = ([], [])
    b = Bench(args, base)
    try:
        b.agent.start()
        for run in range(1, args.runs + 1):
            order = methods[run % len(methods):] + methods[:run % len(methods)]  # rotate who goes first
            for m in order:
                bl.log(f"time to ready: run {run}/{args.runs}, {m} ({bl.machine_line()})")
                try:
                    r = b.run_agent(run) if m == "agent" else b.run_poll(m, run)
                except Exception as e:  # reported, not raised
                    r = {"ok": False, "detail": repr(e)}
                bl.log(f"  {m}: {r.get('ready_ms', float('nan')):.0f} ms, floor {r.get('floor_ms')}")
                results[m].append(r)
                time.sleep(0.3)
    finally:
        b.agent.kill()
        agent_runsc = os.path.join(b.agent.root, "runsc")
        for root in (agent_runsc, b.bruns):
            if os.path.isdir(root):
                runsc_remove(root, [c["id"] for c in runsc_list(root)])
        leftovers = b.leftovers()
        if not leftovers[0] and not leftovers[1]:
            shutil.rmtree(base, ignore_errors=True)

    label = {"agent": "sandbox-agent `launch` + `wait: ready`",
             "poll1s": "runsc create + start, `curl /_ping` every 1 s (beta9 / gVisor tests)",
             "poll100ms": "runsc create + start, `curl /_ping` every 100 ms",
             "poll10ms": "runsc create + start, `curl /_ping` every 10 ms"}
    print(f"### Time to ready, real runsc (ptrace) + dockerd {docker_version()} inside, one sandbox at a time "
          f"({args.runs} runs per method, interleaved)")
    print()
    rows, medians, floors = [], {}, []
    for m in methods:
        ok = [r for r in results[m] if r.get("ok")]
        ready = [r["ready_ms"] for r in ok]
        after = [r["ready_ms"] - r["floor_ms"] for r in ok if r.get("floor_ms") is not None]
        floors += [r["floor_ms"] for r in ok if r.get("floor_ms") is not None]
        med, rng = fmt(ready)
        amed, arng = fmt(after)
        fmed, frng = fmt([r.get("floor_ms") for r in ok])
        medians[m] = bl.summary(ready).get("median")
        rows.append([label[m], f"{len(ok)}/{len(results[m])}", med, rng, fmed, amed, arng])
    fl_med, fl_rng = fmt(floors)
    rows.append(["floor: dockerd.log `API listen on` (all runs)", f"{len(floors)}", fl_med, fl_rng, "", "", ""])
    print(bl.table(["method", "ok", "median (ms)", "min–max", "floor in these runs (ms)", "after the floor, median (ms)",
                    "after the floor, min–max"], rows, ["---", "---:", "---:", "---:", "---:", "---:", "---:"]))
    print()
    ag = [r for r in results.get("agent", []) if r.get("ok")]
    if ag:
        tims = [r.get("timings") or {} for r in ag]
        c_med, c_rng = fmt([t.get("create_ms") for t in tims])
        s_med, s_rng = fmt([t.get("start_ms") for t in tims])
        r_med, r_rng = fmt([t.get("ready_ms") for t in tims])
        print(bl.table(["agent's own `timings`", "median (ms)", "min–max"], [
            ["`create_ms` (runsc create)", c_med, c_rng], ["`start_ms` (runsc start)", s_med, s_rng],
            ["`ready_ms` (accepted → ready)", r_med, r_rng]], ["---", "---:", "---:"]))
        print()
        polls = [r for m in methods if m != "agent" for r in results[m] if r.get("ok")]
        if polls:
            pc_med, _ = fmt([r["create_ms"] for r in polls])
            ps_med, _ = fmt([r["start_ms"] for r in polls])
            print(f"Shell baseline, same runs: `runsc create` done {pc_med} ms after the start (median, "
                  f"includes sh + fork), `runsc start` {ps_med} ms.")
            print()
    ratios = []
    after_med = {}
    for m in methods:
        after = [r["ready_ms"] - r["floor_ms"] for r in results[m] if r.get("ok") and r.get("floor_ms") is not None]
        after_med[m] = bl.summary(after).get("median")
    if medians.get("agent"):
        agent_floor = [r["ready_ms"] / r["floor_ms"] for r in ag if r.get("floor_ms")]
        if agent_floor:
            ratios.append(["agent / floor (time to ready ÷ dockerd's `API listen on`, median of the agent's runs)",
                           f"{bl.summary(agent_floor)['median']:.3f}"])
        for m in methods:
            if m != "agent" and medians.get(m):
                what = label[m].split(",")[-1].strip()
                ratios.append([f"agent / {what}: time to ready (medians; dominated by dockerd's own start-up, "
                               f"which varies run to run)", f"{medians['agent'] / medians[m]:.3f}"])
                if after_med.get(m) and after_med.get("agent") is not None:
                    ratios.append([f"agent / {what}: time after the floor (medians: {after_med['agent']:.0f} vs "
                                   f"{after_med[m]:.0f} ms)", f"{after_med['agent'] / after_med[m]:.2f}"])
    if ratios:
        print(bl.table(["ratio", "value"], ratios, ["---", "---:"]))
        print()
    fails = [(m, r.get("detail")) for m in methods for r in results[m] if not r.get("ok")]
    if fails:
        print(f"- failed runs: {fails[:4]}")
    procs, mounts = leftovers
    print(f"- cleanup: {len(procs)} processes and {len(mounts)} mounts left behind"
          + (f": {procs[:3]} {mounts[:3]} (kept {base})" if procs or mounts else ""))
    print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)


def docker_version():
    try:
        return subprocess.run(["dockerd", "--version"], capture_output=True, text=True).stdout.split(",")[0].split()[-1]
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
