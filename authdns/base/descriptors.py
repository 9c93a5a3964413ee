"""Running out of file descriptors, recognised and reported once.

At its descriptor limit (``RLIMIT_NOFILE``: EMFILE; the system's table: ENFILE; no
socket buffers: ENOBUFS, ENOMEM) a process cannot open a socket, accept a connection
or read a file. That says nothing about a probed exchanger, a client or a zone file,
so the callers treat it apart: a health probe that cannot open its socket reports
"unknown" (health/probes.py), not "down". Every such failure is counted here per
place (``authdns_descriptor_exhaustion_total{where}`` in /metrics) and logged one
line per ``LOG_EVERY`` seconds for the whole process, however many probes, accepts
and requests hit it meanwhile: a shortage is one event for the operator, not a flood.

``install(loop)`` routes asyncio's own "socket.accept() out of system resource"
reports (its listeners retry a second later) here too, instead of a traceback per
listener per second. ``accept()`` is the accept of the listeners that are ours
(ops/httpserver.py, ops/control.py): it waits for a connection to be there before
accepting (Linux reports EMFILE before looking at the queue, so an idle listener at
the limit would otherwise fail at once, again and again), and with a ``Spare``, one
descriptor held back, it can still take that one connection at the limit (the
control socket's ``status`` answers).

Process-wide: each process counts its own (workers answer DNS; the supervisor
probes, serves /metrics and the control socket).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("authdns.descriptors")

EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
LOG_EVERY = 60.0  # seconds between the log lines of one shortage
ACCEPT_RETRY = 1.0  # seconds before trying a listener again at the limit (asyncio waits as long)
PLACES = ("accept", "control socket", "health probe")  # the places that note a shortage
_ACCEPT_MESSAGE = "socket.accept() out of system resource"  # asyncio's words (selector_events)


def exhausted(error: BaseException) -> bool:
    """Whether ``error`` is the process (or the system) being out of descriptors or
    socket memory, rather than anything about the peer."""
    return isinstance(error, OSError) and error.errno in EXHAUSTED


class Shortage:
    """Counts of descriptor shortages by place, and the rate-limited log line."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.counts: dict[str, int] = {}
        self._clock = clock
        self._logged = -math.inf
        self._since_logged = 0

    def note(self, where: str, error: BaseException | None = None) -> None:
        self.counts[where] = self.counts.get(where, 0) + 1
        now = self._clock()
        if now - self._logged < LOG_EVERY:
            self._since_logged += 1
            return
        left_out, self._since_logged, self._logged = self._since_logged, 0, now
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error or "")
        log.error('descriptors exhausted where=%s error="%s" limit=%s suppressed=%d; health probes report '
                  "unknown (members keep their state), connections wait; raise LimitNOFILE or find what "
                  "holds them (/proc/PID/fd); next line in %.0f s at most", where, reason, _limit(), left_out,
                  LOG_EVERY)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


SHORTAGE = Shortage()


def _limit() -> str:
    try:
        import resource  # unix only; imported here so the module loads anywhere
        return str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    except (ImportError, OSError, ValueError):
        return "?"


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Count asyncio's accept failures for lack of descriptors (it retries the
    listener a second later by itself) instead of logging a traceback each time."""
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if context.get("message") == _ACCEPT_MESSAGE and error is not None and exhausted(error):
            SHORTAGE.note("accept", error)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


class Spare:
    """One descriptor held back (``/dev/null``), given up for a moment when the limit is
    reached so that one more connection can be accepted, and taken again after."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.take()

    def take(self) -> bool:
        """Hold the spare again; False while there is none to take."""
        if self.fd is None:
            try:
                self.fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return False
        return True

    def give(self) -> bool:
        """Free the spare descriptor for the caller's next open; False if none was held."""
        if self.fd is None:
            return False
        os.close(self.fd)
        self.fd = None
        return True

    def close(self) -> None:
        self.give()


async def readable(sock: socket.socket) -> None:
    """Until ``sock`` has something to read (for a listener: a connection waits)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def accept(listener: socket.socket, where: str, spare: Spare | None = None) -> tuple[socket.socket, bool]:
    """The next connection on the non-blocking ``listener``, and whether it holds the
    spare's descriptor (give it back with ``spare.take()`` once that socket is closed).
    At the limit: noted under ``where``; with a spare, the connection is taken in its
    place; without, the listener is tried again ``ACCEPT_RETRY`` seconds later while the
    client waits in the backlog. Other errors are raised."""
    while True:
        await readable(listener)
        try:
            return listener.accept()[0], False
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            continue  # taken by another process sharing the listener, or gone already
        except OSError as error:
            if not exhausted(error):
                raise
            note = error
        SHORTAGE.note(where, note)
        if spare is not None and spare.give():
            try:
                return listener.accept()[0], True
            except OSError:
                spare.take()  # at once, before anything else takes the descriptor back
        await asyncio.sleep(ACCEPT_RETRY)
