#!/usr/bin/env python3
"""Spec render throughput beside a baseline, in the same run: bench/render_bench (C++: simdjson
parse + validation + realpath policy + cereal render, what the agent does per launch) and
bench/render_baseline.py (Python's json, the same request and checks, the same spec as a dict,
json.dumps; verified equal to `sandbox-agent render`). Alternated for --rounds rounds; the
median round is reported. Rates are per CPU-second of the benchmarking thread (= per core,
whatever else the machine runs) and per wall second.

    python3 bench/render_compare.py [--seconds 1.5] [--rounds 3]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

TARGET = 100_000


def cxx(seconds):
    out = subprocess.run([bl.RENDER_BENCH, str(seconds)], capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\| (parse[^|]*) \| (\d+) \w+ \| (\d+) \|", line)
        if m:
            rows["render" if "render" in m.group(1) else "parse"] = (float(m.group(2)), float(m.group(3)))
    size = re.search(r"spec size (\d+) bytes", out)
    return rows, int(size.group(1)) if size else None


def python(seconds, check):
    argv = [sys.executable, os.path.join(bl.HERE, "render_baseline.py"), str(seconds)] + (["--check"] if check else [])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    eq = re.search(r"equivalent (\w+)", out)
    m = re.search(r"specs_per_s (\d+) cpu_s ([\d.]+) wall_s ([\d.]+) count (\d+)", out)
    count, cpu = int(m.group(4)), float(m.group(2))
    return (float(m.group(1)), count / cpu if cpu else 0.0), (eq.group(1) if eq else None)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    bl.need(bl.RENDER_BENCH, bl.AGENT)
    c_parse, c_render, py, equivalent, size = [], [], [], None, None
    for i in range(args.rounds):
        bl.log(f"render: round {i + 1}/{args.rounds} ({bl.machine_line()})")
        rows, size = cxx(args.seconds)
        c_parse.append(rows["parse"])
        c_render.append(rows["render"])
        rate, eq = python(args.seconds, check=(i == 0))
        equivalent = equivalent or eq
        py.append(rate)

    def med(pairs, k):
        return statistics.median(x[k] for x in pairs)

    cr_cpu, py_cpu = med(c_render, 1), med(py, 1)
    print(f"### Spec render: parse + validate + policy + render of the same Docker launch request, one core "
          f"(median of {args.rounds} alternated rounds of {args.seconds:g} s)")
    print()
    print(bl.table(["implementation", "specs per CPU-second (= per core)", "µs per spec (CPU)", "specs per wall second",
                    "CPU share while running"], [
        ["sandbox-agent, parse + validate + policy only (render_bench)", f"{med(c_parse, 1):,.0f}",
         f"{1e6 / med(c_parse, 1):.2f}", f"{med(c_parse, 0):,.0f}", f"{med(c_parse, 0) / med(c_parse, 1):.0%}"],
        ["sandbox-agent, + render (render_bench, cereal)", f"{cr_cpu:,.0f}", f"{1e6 / cr_cpu:.2f}",
         f"{med(c_render, 0):,.0f}", f"{med(c_render, 0) / cr_cpu:.0%}"],
        ["Python 3 json baseline (render_baseline.py)", f"{py_cpu:,.0f}", f"{1e6 / py_cpu:.2f}", f"{med(py, 0):,.0f}",
         f"{med(py, 0) / py_cpu:.0%}"],
    ], ["---", "---:", "---:", "---:", "---:"]))
    print()
    print(bl.table(["figure", "value"], [
        ["C++ / Python (per CPU-second)", f"{cr_cpu / py_cpu:.1f}×"],
        [f"target ≥ {TARGET:,} specs/s/core", f"{cr_cpu:,.0f} → {bl.met(cr_cpu >= TARGET)}"],
        ["spec size", f"{size} bytes"],
        ["Python baseline's spec equals `sandbox-agent render`'s", equivalent or "not checked"],
    ], ["---", "---:"]))
    print()


if __name__ == "__main__":
    main()
