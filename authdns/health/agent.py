"""The agent-check protocol as HAProxy speaks it: what one reply line of an agent means.

An agent is a TCP port on the exchanger (the check's ``agent: PORT``) that writes one
line and closes, such as ``75%``, ``drain``, ``down#queue full`` or ``up, 50%``.
``parse_reply`` turns that line into an ``AgentReply``; ``quantise`` turns its percent
into the tenths the balancer multiplies weights by. README, "Agent checks", is the
user's version of these rules:

- words are separated by spaces, tabs or commas, in any order and any case; text after
  ``#`` is a description, shown but not read;
- ``N%`` (0..100, decimals rounded; above 100 counts as 100): the member's weight is
  scaled to N % of its base weight;
- ``drain``: a standby (weight 0) while it stays up; ``maint``: out of the answers;
  ``up`` and ``ready``: neither of those any more. These stick until the agent says
  another of them (HAProxy's administrative state);
- ``down``, ``fail``, ``stopped``: this probe counts as a failed probe, so the check's
  ``fall`` applies;
- ``maxconn:N`` is HAProxy's and means nothing to DNS: accepted and ignored, as are
  unknown words beside known ones. A line with no known word is garbage.

Pure: no sockets (``health/probes.py`` reads the line), no state (``health/monitor.py``
keeps the last reply per target).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

MAX_REPLY = 512  # octets: HAProxy reads one buffer; a longer line is garbage, not a reply
MAX_PERCENT = 100  # the agent scales the configured weight down, never above it
STEP = 10  # percent per quantisation step: weights in tenths keep weighted cycles short
_SEPARATORS = re.compile(r"[\s,]+")
_PERCENT = re.compile(r"^([0-9]{1,6})(?:\.([0-9]{1,6}))?%$")
_MAXCONN = re.compile(r"^maxconn:[0-9]+$")


class Admin(enum.Enum):
    """The sticky part of a reply (HAProxy's administrative state)."""

    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


_ADMIN_WORDS = {"up": Admin.READY, "ready": Admin.READY, "drain": Admin.DRAIN, "maint": Admin.MAINT}
_DOWN_WORDS = ("down", "fail", "stopped")


@dataclass(frozen=True, slots=True)
class AgentReply:
    """What one well-formed reply said; None where it said nothing of that kind."""

    percent: int | None = None  # 0..MAX_PERCENT
    admin: Admin | None = None
    down: bool = False  # down / fail / stopped: count this probe as failed
    description: str = ""  # text after '#'


@dataclass(frozen=True, slots=True)
class AgentOutcome:
    """One agent probe: the reply, or None when the agent could not be reached or
    answered garbage; ``detail`` is the reply as received, or what went wrong.
    ``unknown``: the agent was not asked at all (no descriptor for a socket,
    base/descriptors.py), which says nothing about it: its state stays as it was."""

    reply: AgentReply | None
    detail: str
    unknown: bool = False


class AgentGarbage(ValueError):
    """A reply that is not one: empty, too long, not text, or no known word in it."""


def parse_reply(raw: bytes) -> AgentReply:
    """One reply line (the bytes up to the newline or the close) → ``AgentReply``, or
    ``AgentGarbage`` saying why not. When words contradict each other the last one wins."""
    if len(raw) > MAX_REPLY:
        raise AgentGarbage(f"reply longer than {MAX_REPLY} octets")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise AgentGarbage("reply is not ASCII text") from None
    words_text, _, description = text.partition("#")
    percent: int | None = None
    admin: Admin | None = None
    down = False
    known = False
    for word in _SEPARATORS.split(words_text.strip().lower()):
        if word in _ADMIN_WORDS:
            admin = _ADMIN_WORDS[word]
            down = down and word != "up"  # "down up": the last word wins
        elif word in _DOWN_WORDS:
            down = True
        elif (match := _PERCENT.match(word)) is not None:
            whole = int(match[1]) + (1 if match[2] and match[2][0] >= "5" else 0)
            percent = min(whole, MAX_PERCENT)
        elif _MAXCONN.match(word) is None:
            continue  # an unknown word beside known ones is ignored, as HAProxy does
        known = True
    if not known:
        shown = printable(words_text.strip())
        raise AgentGarbage(f"no agent word in reply {shown!r}" if shown else "empty reply")
    return AgentReply(percent, admin, down, printable(description.strip()))


def quantise(percent: int) -> int:
    """Tenths of the base weight for ``percent``: rounded to the nearest STEP, at least
    one step for anything above 0 % (a loaded member keeps a share; only 0 % is none)."""
    if percent <= 0:
        return 0
    return min(MAX_PERCENT // STEP, max(1, (percent + STEP // 2) // STEP))  # half up: 75 % → 8


def printable(text: str, limit: int = 80) -> str:
    """Agent text for a log line or status: control characters escaped, bounded."""
    return "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in text)[:limit]
