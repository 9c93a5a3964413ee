"""The channel between the supervisor and one worker (serve/workers.py): a socketpair carrying
length-prefixed pickles of the typed messages below, one class per thing said.

Supervisor → worker: ``Serve``, ``Stop``, ``Count``, ``SetQueryLog``, ``HealthUpdate``,
``OverridesUpdate``. Worker → supervisor: ``Ready``, ``Paused``, ``Switched``,
``Counted``, ``Heartbeat``. Both ends are processes of the same program forked from one another, so
pickle is safe here (nothing else can write to the pair). Nothing here decides anything.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass
from types import MappingProxyType

from authdns.zones.balancespec import MemberKey
from authdns.balancing.counters import Totals
from authdns.health.monitor import HealthView, MemberHealth
from authdns.balancing.overrides import Override, Overrides


# -- supervisor → worker -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Serve:
    """Start reading the sockets (a worker forked for a new generation waits for this)."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop reading, finish the TCP queries under way, report the counts, exit."""


@dataclass(frozen=True, slots=True)
class Count:
    """Report the counters now (``Counted``)."""


@dataclass(frozen=True, slots=True)
class SetQueryLog:
    enabled: bool


@dataclass(frozen=True, slots=True)
class HealthUpdate:
    """The members whose health entry changed since the view the worker has, and those
    gone: the monitor keeps an unchanged member's entry (the same object), so a flip in
    a pool of 500 sends one entry, not 500 (health/monitor.py)."""

    members: dict[MemberKey, MemberHealth]  # a plain dict: a mapping proxy does not pickle
    removed: tuple[MemberKey, ...] = ()
    published: int = 0  # HealthView.published

    @classmethod
    def of(cls, view: HealthView, since: HealthView | None = None) -> "HealthUpdate":
        """``view`` as a change from ``since`` (None: all of it)."""
        if since is None:
            return cls(dict(view.members), (), view.published)
        old = since.members
        return cls({key: health for key, health in view.members.items() if old.get(key) is not health},
                   tuple(key for key in old if key not in view.members), view.published)

    def view(self, since: HealthView | None = None) -> HealthView:
        """The view this update makes of ``since`` (None: of nothing)."""
        members = dict(since.members) if since is not None else {}
        members.update(self.members)
        for key in self.removed:
            members.pop(key, None)
        return HealthView(MappingProxyType(members), self.published)


@dataclass(frozen=True, slots=True)
class OverridesUpdate:
    members: dict[MemberKey, Override]

    @classmethod
    def of(cls, overrides: Overrides) -> "OverridesUpdate":
        return cls(dict(overrides.members))

    def overrides(self) -> Overrides:
        return Overrides(MappingProxyType(self.members))


# -- worker → supervisor -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ready:
    """Bound and set up (serving, or waiting for ``Serve``)."""


@dataclass(frozen=True, slots=True)
class Paused:
    """Reads nothing more (the reply to ``Stop``, before the TCP grace)."""


@dataclass(frozen=True, slots=True)
class Switched:
    """Applied the last ``SetQueryLog``."""


@dataclass(frozen=True, slots=True)
class Counted:
    totals: Totals


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The worker's event loop is turning: sent from a timer on that loop, so it stops
    when the loop stops (serve/workers.py kills a worker silent for the timeout)."""


ToWorker = Serve | Stop | Count | SetQueryLog | HealthUpdate | OverridesUpdate
ToSupervisor = Ready | Paused | Switched | Counted | Heartbeat


async def send(writer: asyncio.StreamWriter, message: ToWorker | ToSupervisor) -> int:
    """Write one message and wait for the buffer to drain; its size in bytes."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(struct.pack("!I", len(payload)) + payload)
    await writer.drain()
    return 4 + len(payload)


async def receive(reader: asyncio.StreamReader) -> ToWorker | ToSupervisor | None:
    """The next message, or None when the other side has gone."""
    try:
        size = struct.unpack("!I", await reader.readexactly(4))[0]
        return pickle.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
