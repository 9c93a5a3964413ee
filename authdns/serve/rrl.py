"""Response rate limiting over UDP, as NSD, Knot and BIND do it: a spoofed flood must not
turn the server into an amplifier aimed at the spoofed address.

Answers are counted per client prefix (/24 for IPv4, /56 for IPv6: one host or network
behind many addresses counts once) and per "same response" (``answer.Answer.key``, which
the responder hands over), grouped much as BIND and NSD group them: positive answers by
name and type, NODATA by name (BIND's choice; NSD takes the zone), both by the wildcard
when the question matched one (as NSD), referrals by the delegation point, and NXDOMAIN
and each error rcode for the prefix as a whole, so random names do not open a bucket
each. Each bucket refills at ``rate`` answers a
second, holding at most one second's worth. Over the limit, every ``slip``-th answer goes
out truncated (TC=1, question only: a real client retries over TCP, which is never
limited) and the others are dropped; ``slip`` 0 drops them all, 1 truncates them all.

Signed replies are limited like any other (as BIND does: a captured signed query can be
replayed from a spoofed address within the fudge); the slip of a ``tsig.SignedReply`` is
signed again, so its requester can verify the truncated reply and retry over TCP.

Off by default (``--rrl-rate``). Bounded: past ``max_buckets`` the table starts over.
In the transport, after the responder; TCP never comes here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from authdns.base.hostport import client_prefix
from authdns.base.protocol import BYTE_TC, HEADER_LENGTH

MAX_BUCKETS = 200_000


class RateLimiter:
    __slots__ = ("rate", "slip", "clock", "buckets", "max_buckets")

    def __init__(self, rate: int, slip: int = 2, clock: Callable[[], float] = time.monotonic,
                 max_buckets: int = MAX_BUCKETS) -> None:
        self.rate = float(rate)
        self.slip = slip
        self.clock = clock
        self.buckets: dict[bytes, list[float]] = {}  # key -> [tokens, last refill, answers limited]
        self.max_buckets = max_buckets

    def check(self, address: tuple, reply: bytes, answer_key: bytes) -> bytes | None:
        """``reply`` when within the limit; else a truncated reply (a slip) or None (drop).
        ``answer_key``: the reply's ``Answer.key`` (``Responder.reply_key``)."""
        key = client_prefix(address[0]) + answer_key
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_buckets:
                self.buckets.clear()  # start over rather than grow: a flood of sources stays bounded
            bucket = self.buckets[key] = [self.rate, now, 0.0]
        else:
            bucket[0] = min(self.rate, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return reply
        bucket[2] += 1
        if self.slip and bucket[2] % self.slip == 0:
            return truncated(reply)
        return None


def _question_end(reply: bytes) -> int:
    """End of the first question (names in a question are never compressed by us)."""
    offset = HEADER_LENGTH
    while offset < len(reply) and reply[offset]:
        if reply[offset] & 0xC0:
            return offset + 2 + 4
        offset += reply[offset] + 1
    return offset + 1 + 4


def truncated(reply: bytes) -> bytes:
    """The header with TC set and only the question: "ask again over TCP" (RFC 7766 §3);
    signed again when the reply was signed (RFC 8945 §5.3: the TSIG went with the rest)."""
    end = _question_end(reply) if reply[5] or reply[4] else HEADER_LENGTH
    questions = 1 if end > HEADER_LENGTH else 0
    short = reply[:2] + bytes((reply[2] | BYTE_TC, reply[3], 0, questions, 0, 0, 0, 0, 0, 0)) \
        + reply[HEADER_LENGTH:end]
    signer = getattr(reply, "signer", None)  # a tsig.SignedReply
    return short if signer is None else signer.sign(short)[0]
