#!/usr/bin/env python3
"""How fast the spool intake takes request files, against a shell claimer.

Starts sandbox-agent (fake runtime, a temporary root of its own), stages N request files in
spool/tmp/, renames them into spool/new/ as fast as possible, and measures files/s from the
first rename until every status file exists (a status file is first written on `accepted`,
so existing means `accepted` or later), and until every one says `ready`. In the same run, a
baseline: `inotifywait -m -e moved_to` piped into a `mv` loop claims the same number of files
from another directory (new/ -> cur/). Prints a markdown table. Asserts nothing about speed.

Binaries: --agent/--runsc/--init, else $SANDBOX_AGENT, $FAKE_RUNSC, $SANDBOX_INIT (as the
integration tests take them), else the build/ defaults. Everything it started is killed at
the end, and its temporary directory removed (unless --keep).

    python3 bench/spool_claim.py [--count 10000] [--timeout 600]
"""
import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(os.path.dirname(HERE), "build")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=10000, help="request files (default 10000)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for each phase (default 600)")
    p.add_argument("--agent", default=os.environ.get("SANDBOX_AGENT", os.path.join(BUILD, "sandbox-agent")))
    p.add_argument("--runsc", default=os.environ.get("FAKE_RUNSC", os.path.join(BUILD, "tests/fake_runsc/fake-runsc")))
    p.add_argument("--init", default=os.environ.get("SANDBOX_INIT", os.path.join(BUILD, "sandbox-init")))
    p.add_argument("--docker", action="store_true", help="Docker sandboxes (probed) instead of plain ones")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return p.parse_args()


def stage(directory, names, make_content):
    """Writes each file in directory (its tmp/), then one sync for all: not part of the timing."""
    paths = []
    for name in names:
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(make_content(name))
        paths.append(path)
    os.sync()
    return paths


def drop_all(staged, new_dir):
    """The timed part of a drop: renames into new/, as fast as they go. Returns the start time."""
    t0 = time.monotonic()
    for path in staged:
        os.rename(path, os.path.join(new_dir, os.path.basename(path)))
    return t0


def poll(predicate, timeout, interval):
    """Calls predicate until it is true; returns the time it first was, or None after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def entries(directory):
    """Names in directory without dot-files (the agent's and our temporaries)."""
    with os.scandir(directory) as it:
        return [e.name for e in it if not e.name.startswith(".")]


def pids_with_cmdline(fragment):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment in cmd:
            found.append(int(entry))
    return found


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def agent_answers(sock_path, proc):
    if proc.poll() is not None:
        raise RuntimeError(f"sandbox-agent exited with {proc.returncode}")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(sock_path)
            s.sendall(b'{"op":"version"}\n')
            return b'"ok":true' in s.recv(4096)
    except OSError:
        return False


def run_baseline(base, names, content, timeout):
    """inotifywait + mv: the shell way of claiming a maildir's new/ files."""
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(base, sub))
    new_dir, cur_dir = os.path.join(base, "new"), os.path.join(base, "cur")
    staged = stage(os.path.join(base, "tmp"), names, content)
    script = ('inotifywait -m -e moved_to --format %f "$1" | '
              'while IFS= read -r f; do mv -- "$1/$f" "$2/$f"; done')
    err_path = os.path.join(base, "inotifywait.err")
    with open(err_path, "w") as err:
        proc = subprocess.Popen(["bash", "-c", script, "baseline", new_dir, cur_dir],
                                stderr=err, start_new_session=True)
    try:
        def watching():
            with open(err_path) as f:
                return "Watches established" in f.read()

        if poll(watching, 20, 0.01) is None:
            raise RuntimeError("inotifywait did not start")
        t0 = drop_all(staged, new_dir)
        n = len(names)
        t1 = poll(lambda: len(entries(cur_dir)) >= n, timeout, 0.05)
        return (t1 - t0) if t1 else None, len(entries(cur_dir))
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # bash, inotifywait and a running mv: our own group
        except ProcessLookupError:
            pass
        proc.wait()


def run_agent(args, root, names, timeout):
    images = os.path.join(root, "images", "rootfs")
    os.makedirs(images)
    n = len(names)
    config = {
        "sandbox_init": os.path.abspath(args.init),
        "allowed_host_prefixes": [os.path.join(root, "images")],
        "log_level": "warn",
        "limits": {"max_sandboxes": n + 1000, "max_pending_launches": n + 1000},
    }
    config_path = os.path.join(root, "config.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    sock_path = os.path.join(root, "agent.sock")
    log = open(os.path.join(root, "agent.log"), "wb")
    proc = subprocess.Popen([os.path.abspath(args.agent), "--root", root, "--config", config_path,
                             "--runsc", os.path.abspath(args.runsc)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    result = {"accepted": None, "ready": None, "states": {}}
    try:
        if poll(lambda: agent_answers(sock_path, proc), 20, 0.02) is None:
            raise RuntimeError("sandbox-agent did not answer on its socket")
        spool = os.path.join(root, "spool")
        status_dir = os.path.join(spool, "status")

        def content(name):
            request = {"id": name[:-5], "rootfs": images, "args": ["/bin/sleep", "infinity"]}
            if args.docker:
                request["docker"] = {"enabled": True}
            return json.dumps(request)

        staged = stage(os.path.join(spool, "tmp"), names, content)
        cpu0 = cpu_seconds(proc.pid)
        t0 = drop_all(staged, os.path.join(spool, "new"))
        t1 = poll(lambda: len(entries(status_dir)) >= n, timeout, 0.05)
        result["accepted"] = (t1 - t0) if t1 else None
        result["cpu_accepted"] = cpu_seconds(proc.pid) - cpu0

        # The poller shares the cores with the agent: each pass reads the files not yet ready,
        # oldest first, and stops at the 20th still on its way (they get ready roughly in
        # order), so a pass costs little until the last ones.
        waiting = list(names)
        last = {}

        def all_ready():
            still, behind = [], 0
            for i, name in enumerate(waiting):
                if behind >= 20:
                    still.extend(waiting[i:])
                    break
                try:
                    with open(os.path.join(status_dir, name)) as f:
                        state = json.loads(f.read())["state"]
                except (OSError, ValueError):
                    state = None
                last[name] = state
                if state not in ("ready", "failed", "stopped"):
                    still.append(name)
                    behind += 1
            waiting[:] = still
            return not waiting

        t2 = poll(all_ready, timeout, 0.1)
        result["ready"] = (t2 - t0) if t2 else None
        result["cpu_ready"] = cpu_seconds(proc.pid) - cpu0
        for state in last.values():
            result["states"][state] = result["states"].get(state, 0) + 1
        result["left_in_new"] = len(entries(os.path.join(spool, "new")))
        result["rejected"] = len(entries(os.path.join(spool, "rejected")))
        return result
    finally:
        proc.kill()
        proc.wait()
        for pid in pids_with_cmdline(os.path.join(root, "runsc")):  # the fake runtime's daemon
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # the log quota's tmpfs of the sandboxes left running
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f if line.split()[4].startswith(os.path.join(root, "logs") + "/")]
        # In this process: one `umount` process per sandbox took minutes at 10,000.
        libc = ctypes.CDLL(None, use_errno=True)
        for p in sorted(points, key=len, reverse=True):
            libc.umount2(p.encode(), 2)  # MNT_DETACH


def rate(n, seconds):
    return f"{n / seconds:,.0f}" if seconds else "—"


def secs(seconds):
    return f"{seconds:.2f}" if seconds else "timed out"


def main():
    args = parse_args()
    for what in (args.agent, args.runsc, args.init):
        if not os.access(what, os.X_OK):
            sys.exit(f"not an executable: {what} (set SANDBOX_AGENT, FAKE_RUNSC, SANDBOX_INIT or pass flags)")
    if not shutil.which("inotifywait"):
        sys.exit("inotifywait (inotify-tools) is needed for the baseline")
    n = args.count
    names = [f"req-{i:06d}.json" for i in range(n)]
    tmp = tempfile.mkdtemp(prefix="spool-claim-")
    try:
        print(f"# {n} files, {os.cpu_count()} cores, temporary root {tmp}", file=sys.stderr)
        print("baseline: inotifywait + mv …", file=sys.stderr)
        base_secs, base_claimed = run_baseline(os.path.join(tmp, "baseline"), names,
                                               lambda name: json.dumps({"id": name[:-5]}), args.timeout)
        print("sandbox-agent spool …", file=sys.stderr)
        agent = run_agent(args, os.path.join(tmp, "agent"), names, args.timeout)

        kind = "Docker" if args.docker else "plain"
        print()
        print(f"Spool claim rate, {n:,} files renamed into new/ at once ({os.cpu_count()} cores, fake runtime, "
              f"{kind} sandboxes)")
        print()
        print("| claimer | until | seconds | files/s |")
        print("|---|---|---:|---:|")
        print(f"| sandbox-agent spool | every status file exists (`accepted` or later) | {secs(agent['accepted'])} "
              f"| {rate(n, agent['accepted'])} |")
        print(f"| sandbox-agent spool | every status file says `ready` | {secs(agent['ready'])} "
              f"| {rate(n, agent['ready'])} |")
        print(f"| `inotifywait -m -e moved_to` + `mv` loop | every file in cur/ | {secs(base_secs)} "
              f"| {rate(n, base_secs)} |")
        if agent["accepted"] and base_secs:
            print(f"| ratio | agent `accepted` / shell baseline | | {base_secs / agent['accepted']:.1f}× |")
        if agent["ready"] and base_secs:
            print(f"| ratio | agent `ready` / shell baseline | | {base_secs / agent['ready']:.1f}× |")
        print()
        print(f"final states: {agent['states']}; left in new/: {agent.get('left_in_new')}; "
              f"rejected: {agent.get('rejected')}; baseline claimed {base_claimed}/{n}; "
              f"agent CPU {agent['cpu_accepted']:.1f} s until all accepted, {agent['cpu_ready']:.1f} s until "
              f"all ready; load average {os.getloadavg()[0]:.1f}")
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
