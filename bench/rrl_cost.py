#!/usr/bin/env python3
"""What one response-rate-limiting check costs, in this process (no sockets).

    python bench/rrl_cost.py [--calls 200000] [--repeats 5]

Times ``RateLimiter.check(address, reply, answer_key)`` (serve/rrl.py), the call the
UDP listener makes for every reply when ``--rrl-rate`` is on, in three cases:
* ``flood``: one source prefix and one response far over the limit (a spoofed flood:
  nearly every reply dropped or slipped);
* ``within``: one source and one response, always within the limit (a resolver);
* ``many``: 50,000 source prefixes in turn, each within its limit (a busy server's mix;
  more keys than a CPU cache holds).
Prints the best of ``--repeats`` runs in µs per call. The clock is a counter stepped by
the test itself, so refills are the same in every run and the figure is the check's own
cost. Figures are noisy on a shared machine: compare runs made one after the other.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from authdns.serve.rrl import RateLimiter  # noqa: E402

REPLY = b"\x12\x34\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00" + b"\x07example\x04test\x00\x00\x01\x00\x01" + bytes(40)
ANSWER_KEY = b"\x01\x07example\x04test\x00\x00\x01"
MANY = 50_000


class StepClock:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def run(case: str, calls: int) -> float:
    if case == "flood":
        limiter = RateLimiter(200, 2, clock=StepClock(1e-5))  # 100,000 q/s against 200/s
        addresses = [("192.0.2.7", 5353)]
    elif case == "within":
        limiter = RateLimiter(1_000_000, 2, clock=StepClock(1e-3))
        addresses = [("192.0.2.7", 5353)]
    else:
        limiter = RateLimiter(1000, 2, clock=StepClock(1e-5))
        addresses = [(f"10.{n >> 8 & 255}.{n & 255}.1", 5353) for n in range(MANY)]
    check = limiter.check
    count = len(addresses)
    for address in addresses:  # every bucket made before the timing
        check(address, REPLY, ANSWER_KEY)
    started = time.perf_counter()
    for n in range(calls):
        check(addresses[n % count], REPLY, ANSWER_KEY)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for case in ("flood", "within", "many"):
        best = min(run(case, args.calls) for _ in range(args.repeats))
        print(f"{case:7} {best:6.3f} µs per check")


if __name__ == "__main__":
    main()
