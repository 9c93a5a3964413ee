"""serve/rrl.py's bucket table in-process, on a clock the test moves: the burst and the
rate, the slip, the client prefix, the fixed size, and buckets shared with a forked
process (what workers do)."""

from __future__ import annotations

import os

import pytest

from authdns.serve.rrl import FIELDS, RateLimiter

REPLY = b"\x12\x34\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00" + b"\x07example\x04test\x00\x00\x01\x00\x01" + b"answer"
KEY = b"\x03\x07example\x04test\x00"  # NXDOMAIN in example.test (Answer.key)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def outcomes(limiter: RateLimiter, count: int, address=("192.0.2.1", 53), key: bytes = KEY) -> list[str]:
    names = []
    for _ in range(count):
        reply = limiter.check(address, REPLY, key)
        names.append("full" if reply is REPLY else "drop" if reply is None else "slip")
    return names


def test_a_burst_of_one_second_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(10, slip=0, clock=clock)
    assert outcomes(limiter, 15).count("full") == 10  # one second's worth at once
    clock.now += 0.5
    assert outcomes(limiter, 15).count("full") == 5  # then 10 a second
    clock.now += 60
    assert outcomes(limiter, 15).count("full") == 10  # a bucket holds one second, no more


def test_every_slip_th_limited_answer_goes_out_truncated() -> None:
    limiter = RateLimiter(4, slip=2, clock=Clock())
    seen = outcomes(limiter, 10)
    assert seen == ["full"] * 4 + ["drop", "slip"] * 3
    assert limiter.check(("192.0.2.1", 53), REPLY, KEY) is None  # the 7th limited
    truncated = limiter.check(("192.0.2.1", 53), REPLY, KEY)  # the 8th
    assert truncated == REPLY[:2] + b"\x86\x00\x00\x01" + bytes(6) + REPLY[12:-6]  # TC, the question only
    assert outcomes(RateLimiter(4, slip=1, clock=Clock()), 6)[4:] == ["slip", "slip"]
    assert outcomes(RateLimiter(4, slip=0, clock=Clock()), 6)[4:] == ["drop", "drop"]


@pytest.mark.parametrize(("other", "shared"), [
    (("192.0.2.200", 5353), True), (("192.0.3.1", 53), False),  # one /24
    (("2001:db8:0:ff::1", 53), True), (("2001:db8:0:100::1", 53), False),  # one /56
])
def test_one_bucket_per_client_prefix(other: tuple, shared: bool) -> None:
    first = ("192.0.2.1", 53) if "." in other[0] else ("2001:db8::1", 53)
    limiter = RateLimiter(3, slip=0, clock=Clock())
    assert outcomes(limiter, 3, first).count("full") == 3
    assert outcomes(limiter, 1, other) == (["drop"] if shared else ["full"])


def test_responses_count_apart() -> None:
    limiter = RateLimiter(2, slip=0, clock=Clock())
    assert outcomes(limiter, 3).count("full") == 2
    assert outcomes(limiter, 3, key=b"\x03\x07example\x03net\x00").count("full") == 2  # another zone


def test_the_table_never_grows() -> None:
    """More keys than slots: each new key takes a slot over with a full bucket; the map
    stays its size (slots × FIELDS × 8 octets)."""
    limiter = RateLimiter(5, slip=0, clock=Clock(), slots=1024)
    size = len(limiter.table)
    assert size == 1024 * FIELDS * 8
    for n in range(20_000):
        assert limiter.check((f"10.{n >> 8 & 255}.{n & 255}.1", 53), REPLY, KEY) is REPLY
    assert len(limiter.table) == size
    with pytest.raises(ValueError):
        RateLimiter(5, slots=1000)


def test_a_forked_process_counts_into_the_same_buckets() -> None:
    """What the supervisor's workers do: the map made before the fork is one memory."""
    limiter = RateLimiter(10, slip=0)  # the real clock: CLOCK_MONOTONIC, one for every process
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if outcomes(limiter, 10).count("full") == 10 else 2  # the whole burst
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert outcomes(limiter, 3) == ["drop"] * 3  # the child took it
    limiter.close()
