"""Where a process's CPU goes, from `perf record -g` samples: used by bench/scale.py --perf.

start(pid, path) begins sampling one process (all its threads) at 499 Hz; stop(proc) ends it;
breakdown(path, comm, pid) returns markdown: the share of samples in the kernel by system call,
and the hottest user-space functions (self time). Needs /usr/bin/perf; returns a note if not.
"""
import collections
import os
import re
import shutil
import signal
import subprocess


def start(pid, path):
    if not shutil.which("perf"):
        return None
    return subprocess.Popen(["perf", "record", "-q", "-F", os.environ.get("PERF_FREQ", "499"), "-g", "-p", str(pid), "-o", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc):
    if proc:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def short(sym):
    """Without argument lists and template arguments: `ns::Class::method` or `…::{lambda#1}`."""
    sym = sym.replace("[abi:cxx11]", "").replace("[clone .isra.0]", "").strip()
    for pattern, repl in ((r"\([^()]*\)", ""), (r"<[^<>]*>", "\x00")):
        while re.search(pattern, sym):
            sym = re.sub(pattern, repl, sym)
    return sym.replace("\x00", "<…>").replace("::operator", "")[:90]


def breakdown(path, comm="sandbox-agent", top=12, pid=None):
    """`pid`: only that process's samples. A child the agent spawns keeps its comm until its exec
    completes, so filtering by comm alone counts the children's fork and exec as the agent's."""
    if not os.path.exists(path):
        return "(no profile: perf is not installed or could not record)"
    only = ["--pid", str(pid)] if pid else ["--comm", comm]
    out = subprocess.run(["perf", "script", "-i", path, *only, "-F", "ip,sym,dso"],
                         capture_output=True, text=True).stdout
    by_sys, by_user = collections.Counter(), collections.Counter()
    total = user = 0
    for block in out.split("\n\n"):
        frames = [line.strip() for line in block.strip().split("\n") if line.strip()]
        if not frames:
            continue
        total += 1
        first = frames[0]
        if "kernel" in first:
            sc = next((f.split()[1] for f in frames if re.search(r" (__do_sys_|__x64_sys_|__se_sys_)\w+", f)), None)
            by_sys[re.sub(r"^(__do_sys_|__x64_sys_|__se_sys_)", "", sc) if sc else "(interrupts, faults, scheduling)"] += 1
        else:
            user += 1
            parts = first.split(None, 1)
            sym = parts[1].rsplit(" (", 1)[0] if len(parts) > 1 else "?"
            by_user[short(sym)] += 1
    if not total:
        return "(no samples)"
    who = f"process {pid} (`{comm}`, all threads, not its children)" if pid else f"`{comm}` (all threads)"
    lines = [f"{total} samples of {who}: {100 * (total - user) / total:.0f}% in the kernel, "
             f"{100 * user / total:.0f}% in user space.", "",
             "| kernel: system call | share of samples |", "|---|---:|"]
    lines += [f"| {k} | {100 * v / total:.1f}% |" for k, v in by_sys.most_common(top)]
    lines += ["", "| user space: function (self) | share of samples |", "|---|---:|"]
    lines += [f"| `{k}` | {100 * v / total:.1f}% |" for k, v in by_user.most_common(top)]
    return "\n".join(lines)


def offcpu_start(pid, path):
    """Records every context switch of the process, with the kernel stack it left from."""
    if not shutil.which("perf"):
        return None
    return subprocess.Popen(["perf", "record", "-q", "-g", "-e", "sched:sched_switch", "-p", str(pid), "-o", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


SWITCH = re.compile(r"\s([\d.]+):\s+sched:sched_switch:\s+prev_comm=(\S+) prev_pid=(\d+) prev_prio=\d+ "
                    r"prev_state=(\S+) ==> next_comm=(\S+) next_pid=(\d+)")


def offcpu_breakdown(path, main_pid):
    """Markdown: where the main (reactor) thread was while off the CPU, by cause."""
    if not os.path.exists(path):
        return "(no off-CPU profile: perf is not installed or could not record)"
    out = subprocess.run(["perf", "script", "-i", path, "-F", "tid,time,event,trace,ip,sym"],
                         capture_output=True, text=True).stdout
    cats = collections.defaultdict(lambda: [0, 0.0, 0.0])
    left = None
    first = last = None
    for block in out.split("\n\n"):
        lines = block.strip("\n").split("\n")
        m = SWITCH.search(lines[0]) if lines else None
        if not m:
            continue
        t, prev, state, nxt = float(m.group(1)), int(m.group(3)), m.group(4), int(m.group(6))
        first = first if first is not None else t
        last = t
        if prev == main_pid:
            frames = [line.split()[-1] for line in lines[1:] if line.strip()]
            left = (t, state, frames)
        elif nxt == main_pid and left:
            ms = (t - left[0]) * 1000
            sc = next((f for f in left[2] if re.match(r"(__do_sys_|__x64_sys_|__se_sys_)", f)), "?")
            sc = re.sub(r"^(__do_sys_|__x64_sys_|__se_sys_)", "", sc)
            if left[1].startswith("R"):
                key = "runnable but not running (CPU taken by other processes)"
            elif left[1] == "S":
                key = f"idle: waiting for work ({sc})"
            else:
                key = f"blocked in `{sc}`" + (" (posix_spawn: the parent waits until the child has exec'd)"
                                               if sc == "clone3" else "")
            c = cats[key]
            c[0] += 1
            c[1] += ms
            c[2] = max(c[2], ms)
            left = None
    if not cats:
        return "(no context switches recorded)"
    span = (last - first) * 1000 if first is not None else 0
    lines = [f"The agent's reactor thread off the CPU during {span / 1000:.1f} s (perf record -e sched:sched_switch):",
             "", "| where the reactor was | times | total (ms) | longest (ms) |", "|---|---:|---:|---:|"]
    for k, (n, tot, mx) in sorted(cats.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"| {k} | {n} | {tot:.1f} | {mx:.2f} |")
    return "\n".join(lines)
