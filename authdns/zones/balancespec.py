"""What a zone file says about balancing, as immutable values: the ordering policy of an
RRset, its members' weights and probe addresses, and the health checks that guard them.

These are configuration only. ``zones/zonefile.py`` fills them in from YAML, ``balancing/ordering.py``
turns them into answer order, ``health/monitor.py`` into probes. Nothing here holds state,
opens sockets or reads files.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from authdns.base.names import Name, to_text
from authdns.base.rrtypes import type_name
from authdns.zones.yamltree import Where


class Policy(enum.Enum):
    FIXED = "fixed"  # zone order
    ROUND_ROBIN = "round-robin"  # the next rotation per answer (BIND's rrset-order cyclic)
    RANDOM = "random"  # a fresh shuffle per answer
    WEIGHTED = "weighted"  # smooth weighted round robin: exact shares per cycle


POLICY_NAMES = tuple(policy.value for policy in Policy)
BALANCED_TYPE_NAMES = ("MX", "A", "AAAA")

# A balanced RRset cached for longer than this is mostly answered from resolver caches,
# not by us: `check` warns (the README explains why).
BALANCED_TTL_WARNING = 300

AUTO = None  # MemberSpec.weight for ``weight: auto``

DEFAULT_DOWN_TTL = 5  # seconds: the TTL of a balanced RRset while a member is unsettled
DEFAULT_SETTLE = 60.0  # seconds after a flip its RRset keeps the down TTL: a flapping member
# that goes down again soon is then in caches for down_ttl, not the full TTL
# `check` warns where detection plus TTL (the worst time a sender can still be sent to a
# dead member, README "Health checks") is above this.
FAILOVER_WARNING = 120
# How the probe loops pace themselves (health/monitor.py, health/probes.py), here because
# failover_bound depends on them: the least gap between two probes of one target, and
# how long a probe waits for a graceful close before aborting the socket.
PROBE_MIN_GAP = 0.05
PROBE_CLOSE_WAIT = 0.1


class CheckKind(enum.Enum):
    SMTP = "smtp"  # connect, read the 220 greeting (RFC 5321 §4.2), optional EHLO, QUIT
    TCP = "tcp"  # connect only


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """An agent check beside a health check (HAProxy's ``agent-check``/``agent-port``):
    a TCP port on the probed address that answers one line such as ``75%`` or ``drain``
    (``health/agent.py`` reads it), asked on the check's schedule, within its timeout."""

    port: int


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One health check as declared. Equal specs share probe state, so the position in
    the file is left out of equality: moving a check to another line keeps its state."""

    kind: CheckKind
    port: int
    interval: float = 5.0  # seconds between probes of one target
    timeout: float = 2.0  # connect plus greeting, seconds
    rise: int = 2  # consecutive successes that bring a down target up (gdnsd, HAProxy)
    fall: int = 3  # consecutive failures that take an up target down
    ehlo: str | None = None  # SMTP only: send EHLO with this name after the greeting
    agent: AgentSpec | None = None  # the exchanger's own word on its load (README, "Agent checks")
    # While a member is down or degraded, and for `settle` seconds after it flips, its
    # RRset is served with min(TTL, down_ttl): resolvers drop a stale answer soon (gdnsd
    # shortens the TTL of down resources the same way). How answers are served, not what
    # is probed: left out of equality, so changing them keeps the probe state.
    down_ttl: int = field(default=DEFAULT_DOWN_TTL, compare=False)
    settle: float = field(default=DEFAULT_SETTLE, compare=False)
    name: str | None = field(default=None, compare=False)  # the `checks:` key, if named
    where: Where | None = field(default=None, compare=False)


def failover_bound(check: CheckSpec, ttl: int) -> float:
    """The worst time from a member's death until no resolver can still hand it out:
    it dies just after a probe succeeded; the next probe starts ``interval`` later, and
    the ``fall`` failing ones start one probe period apart (``interval``, or longer when a
    probe that times out takes longer: health/monitor.py's fixed cadence), the last one
    ending after ``timeout`` and the close wait; an answer given just before that is
    cached for the full ``ttl`` (the member was settled, so the TTL was not shortened)."""
    failing = check.timeout + PROBE_CLOSE_WAIT
    period = max(check.interval, failing + PROBE_MIN_GAP)
    return round(check.interval + (check.fall - 1) * period + failing + ttl, 2)


@dataclass(frozen=True, slots=True)
class ProbeAddress:
    """Where to probe a member instead of its served address (``probe: ADDR[:PORT]``)."""

    host: str
    port: int | None = None  # None: the check's port


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """One record of a balanced RRset, beyond its data."""

    weight: int | None = 1  # AUTO (None): derived from the smoothed probe round-trip time
    probe: ProbeAddress | None = None
    where: Where | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class BalanceSpec:
    """How one MX, A or AAAA RRset is ordered; ``members`` parallels the RRset's records."""

    policy: Policy
    members: tuple[MemberSpec, ...]
    answer: int | None = None  # return only the first N members (per preference group for MX)
    promote: bool = False  # MX: the chosen member gets preference - 1 for this answer
    check: CheckSpec | None = None


# A member of a balanced RRset, the same across reloads: owner (wire), type, and the
# member's own data as text (the exchange name for MX, the address for A/AAAA).
MemberKey = tuple[Name, int, str]  # built by zone.member_key


def member_key_text(key: MemberKey) -> str:
    """``example.test. MX mx1.example.test.``: a member as log lines name it."""
    owner, rtype, data = key
    return f"{to_text(owner)} {type_name(rtype)} {data}"
