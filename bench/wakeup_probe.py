#!/usr/bin/env python3
"""The machine's own wake-up lateness, as a baseline for latency figures taken at the same
time: sleeps 5 ms again and again and records how late each wake-up is, until SIGTERM/SIGINT;
then prints one JSON line {"n", "p50_ms", "p99_ms", "max_ms"}. An idle process that is woken
late here is woken late anywhere on this machine: no wake-up detector can beat this figure."""
import json
import signal
import time

late = []
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
while running:
    t = time.monotonic()
    time.sleep(0.005)
    late.append((time.monotonic() - t - 0.005) * 1000)
late.sort()
n = len(late)
print(json.dumps({"n": n, "p50_ms": late[n // 2] if n else None,
                  "p99_ms": late[min(n - 1, (99 * n + 99) // 100 - 1)] if n else None,
                  "max_ms": late[-1] if n else None}))
