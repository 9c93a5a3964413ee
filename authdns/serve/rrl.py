"""Response rate limiting over UDP, as NSD, Knot and BIND do it: a spoofed flood must not
turn the server into an amplifier aimed at the spoofed address.

Answers are counted per client prefix (/24 for IPv4, /56 for IPv6: one host or network
behind many addresses counts once) and per "same response" (``answer.Answer.key``, which
the responder hands over), classed as NSD's rrl.c and BIND class them: positive answers
by name and type, those synthesized from a wildcard by the wildcard's owner, NXDOMAIN
and NODATA by their zone (the SOA owner), referrals by the delegation point, REFUSED and
each other error rcode for the prefix as a whole, so random names never open a bucket
each. Each bucket refills at ``rate`` answers a second, holding at most one second's
worth (the burst). Over the limit, every ``slip``-th answer goes out truncated (TC=1,
question only: a real client retries over TCP, which is never limited) and the others
are dropped; ``slip`` 0 drops them all, 1 truncates them all.

The rate is the server's, not each worker's: the buckets live in one fixed table of
``slots`` slots in an anonymous shared memory map (``mmap``, MAP_SHARED) that the
supervisor makes before it forks the workers (serve/workers.py), so every worker, and
every later generation of workers, counts into the same buckets. A slot is three 8-octet
fields: the key's hash (the tag), the bucket's due time (``time.monotonic``:
CLOCK_MONOTONIC, one clock for every process on the host) and the answers limited (for
the slip). A key, the prefix and the response, goes to slot ``hash(key) % slots``; a
slot holding another key's tag is taken over with a full bucket, as NSD does, so the
table never grows (``slots`` × 24 octets; 6 MiB by default, only the pages touched
count) and a flood of sources cannot exhaust it. ``hash`` of str and bytes is keyed by
the interpreter's secret (PYTHONHASHSEED): forked workers share it, and a client cannot
pick two keys that meet in one slot to keep resetting each other's bucket.

No lock: workers update a slot without one (a lock would cost a system call per
answer, more than the whole check). So two of them checking one bucket at the same
moment can both let an answer through for the same interval (a lost update: one extra
answer per such overlap), and two keys taking one slot at the same moment can leave one
key's tag beside the other's due time (that bucket starts from the other's state,
once). The first only ever lets a few answers more than the rate through; the
integration tests bound the total with two workers.

Signed replies are limited like any other (as BIND does: a captured signed query can be
replayed from a spoofed address within the fudge); the slip of a ``tsig.SignedReply`` is
signed again, so its requester can verify the truncated reply and retry over TCP.

Off by default (``--rrl-rate``). In the transport, after the responder; TCP never comes
here.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Callable

from authdns.base.hostport import client_prefix
from authdns.configuration.config import ServerConfig
from authdns.base.protocol import BYTE_TC, HEADER_LENGTH

SLOTS = 1 << 18  # 262,144 buckets, 6 MiB at most (NSD's rrl-size default is 1,000,000 per process)
FIELDS = 3  # per slot: the tag (int64), then the bucket's due time and its answers limited (doubles)
DUE, LIMITED = 1, 2  # the doubles' offsets within a slot


class RateLimiter:
    """The bucket table and the check. Made once per server: by the supervisor before
    it forks workers (they inherit the shared map), else by the single process.

    A bucket is kept as one time rather than tokens and a refill time (the generic cell
    rate algorithm, GCRA, which is a token bucket written another way): ``due`` moves
    ``1/rate`` seconds later with each answer let through, and an answer goes through
    while ``due`` is at most ``burst - 1`` intervals ahead of now. One read and one
    write per answer, and none at all for an answer over the limit."""

    __slots__ = ("rate", "slip", "clock", "slots", "mask", "interval", "tolerance", "table", "tags", "values")

    def __init__(self, rate: int, slip: int = 2, clock: Callable[[], float] = time.monotonic,
                 slots: int = SLOTS) -> None:
        if slots <= 0 or slots & (slots - 1):
            raise ValueError("slots must be a power of two")
        self.rate = float(rate)
        self.slip = slip
        self.clock = clock
        self.slots = slots
        self.mask = slots - 1
        self.interval = 1.0 / rate
        self.tolerance = (rate - 1) * self.interval  # a burst of ``rate`` answers: one second's worth
        # Anonymous and shared: pages a fork inherits stay one memory, zeroed (all slots empty).
        self.table = mmap.mmap(-1, slots * FIELDS * 8, flags=mmap.MAP_SHARED)
        self.tags = memoryview(self.table).cast("q")  # two typed views of the same octets
        self.values = memoryview(self.table).cast("d")

    def check(self, address: tuple, reply: bytes, answer_key: bytes) -> bytes | None:
        """``reply`` when within the limit; else a truncated reply (a slip) or None (drop).
        ``answer_key``: the reply's ``Answer.key`` (``Responder.reply_key``)."""
        host = address[0]
        # The /24 of an IPv4 peer is its text up to the last dot (the kernel writes the
        # dotted quad one way): a third of the cost of packing it (client_prefix).
        prefix = client_prefix(host) if ":" in host else host[:host.rindex(".")]
        tag = hash((prefix, answer_key)) or 1  # 0 marks an empty slot
        index = (tag & self.mask) * FIELDS
        values = self.values
        now = self.clock()
        if self.tags[index] != tag:  # empty, or another key's: this key starts a full bucket
            self.tags[index] = tag
            values[index + DUE] = now + self.interval
            values[index + LIMITED] = 0.0
            return reply
        due = values[index + DUE]
        if due - now <= self.tolerance:
            values[index + DUE] = (now if due < now else due) + self.interval
            return reply
        limited = values[index + LIMITED] + 1.0
        values[index + LIMITED] = limited
        if self.slip and limited % self.slip == 0:
            return truncated(reply)
        return None

    def close(self) -> None:
        """Unmap the table (the views first: a map with views exported cannot close)."""
        self.tags.release()
        self.values.release()
        self.table.close()


def rate_limiter(config: ServerConfig) -> RateLimiter | None:
    """The server's limiter for ``--rrl-rate``/``--rrl-slip``, None when off: made once
    per server (the single process, or the supervisor for all its workers)."""
    return RateLimiter(config.rrl_rate, config.rrl_slip) if config.rrl_rate else None


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
