#!/usr/bin/env python3
"""The tail of one durable write on a disk, idle and beside other writers: what a warm-pool
claim waits for (its record is written durably before the caller hears).

Three ways to write a ~780-byte record, each timed N times, 20 ms apart:
  record    what the agent does: tmp file + fsync, rename, fsync of the directory
  journal   one 512-byte block of a preallocated, already synced file: pwrite + fdatasync
            (no metadata change: ext4 needs no journal commit)
  nosync    tmp file + rename, no fsync (survives an agent crash, not a power loss)
Each is measured idle, then twice while a background loop writes 64 MiB files and creates and
removes 200 small files (what running and stopping sandboxes do to the same disk). Prints p50,
p99 and max per way and phase. Everything happens in a temporary directory under --dir (default
/tmp: this machine's disk), removed at the end with the load loop stopped.

    python3 bench/durable_write_tail.py [--dir /tmp] [--count 200]
"""
import argparse
import os
import shutil
import subprocess
import tempfile
import time

RECORD = b"x" * 780
LOAD = r"""
d=$1; mkdir -p "$d"
while :; do
  dd if=/dev/zero of="$d/big" bs=1M count=64 2>/dev/null
  i=0; while [ $i -lt 200 ]; do echo data > "$d/f$i"; i=$((i+1)); done
  rm -f "$d"/f* "$d/big"
done
"""


def measure(way, state, count):
    lat = []
    dfd = os.open(state, os.O_RDONLY | os.O_DIRECTORY)
    jfd = -1
    if way == "journal":
        jfd = os.open(os.path.join(state, "claims.log"), os.O_RDWR | os.O_CREAT, 0o644)
        os.write(jfd, b"\0" * (512 * (count + 1)))
        os.fsync(jfd)
    try:
        for i in range(count):
            path = os.path.join(state, f"m{i % 50}.json")
            t = time.perf_counter()
            if way == "journal":
                os.pwrite(jfd, RECORD[:500], 512 * i)
                os.fdatasync(jfd)
            else:
                fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.write(fd, RECORD)
                if way == "record":
                    os.fsync(fd)
                os.close(fd)
                os.rename(path + ".tmp", path)
                if way == "record":
                    os.fsync(dfd)
            lat.append((time.perf_counter() - t) * 1000)
            time.sleep(0.02)
    finally:
        os.close(dfd)
        if jfd >= 0:
            os.close(jfd)
    lat.sort()
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], lat[-1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default="/tmp")
    p.add_argument("--count", type=int, default=200)
    args = p.parse_args()
    base = tempfile.mkdtemp(prefix="bench-durable-", dir=args.dir)
    load = None
    rows = []
    try:
        state = os.path.join(base, "state")
        os.makedirs(state)
        for way in ("record", "journal", "nosync"):
            rows.append((way, "idle", measure(way, state, args.count)))
        load = subprocess.Popen(["sh", "-c", LOAD, "load", os.path.join(base, "load")], start_new_session=True)
        for run in (1, 2):
            for way in ("record", "journal", "nosync"):
                rows.append((way, f"under load, run {run}", measure(way, state, args.count)))
    finally:
        if load:
            os.killpg(load.pid, 9)
            load.wait()
        shutil.rmtree(base, ignore_errors=True)
    print(f"#### One durable write on {args.dir}: {args.count} writes 20 ms apart per row")
    print()
    print("| way | phase | p50 (ms) | p99 (ms) | max (ms) |")
    print("|---|---|---:|---:|---:|")
    for way, phase, (p50, p99, mx) in rows:
        print(f"| {way} | {phase} | {p50:.2f} | {p99:.2f} | {mx:.2f} |")


if __name__ == "__main__":
    main()
