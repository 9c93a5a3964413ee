"""Telling systemd how the server is doing (``Type=notify``): sd_notify(3) without libsystemd.

A datagram of ``KEY=VALUE`` lines to the unix socket named by ``$NOTIFY_SOCKET`` (a path,
or ``@name`` for the abstract namespace): ``READY=1`` once every zone is loaded and every
socket bound, ``RELOADING=1`` with ``MONOTONIC_USEC`` (systemd.service(5), for
``Type=notify-reload``) then ``READY=1`` around a reload, ``STOPPING=1``, ``STATUS=`` a
one-line summary, and ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` when the unit sets
``WatchdogSec=``. The pings come from the event loop, so a loop that hangs stops them and
systemd restarts the service. Without ``$NOTIFY_SOCKET`` (not under systemd) every call
does nothing. Nothing else lives here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("authdns.systemd")


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        # The abstract namespace is spelled with a leading "@" (sd_notify(3)).
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval = _watchdog_interval(environ)
        self._watchdog: asyncio.Task | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields: str) -> None:
        """One notification; ``ready="1"`` becomes ``READY=1``. Failures are logged once:
        systemd going away must not take DNS with it."""
        if not self.address:
            return
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, self.address)
        except OSError as error:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"), error.strerror)

    def ready(self, status: str) -> None:
        self.send(ready="1", status=status)

    def reloading(self) -> None:
        self.send(reloading="1", monotonic_usec=str(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000),
                  status="reloading zones")

    def stopping(self) -> None:
        self.send(stopping="1", status="stopping")

    def start_watchdog(self) -> None:
        """Ping every half ``WatchdogSec=`` from the running loop."""
        if self.enabled and self.watchdog_interval and self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._ping())

    async def _ping(self) -> None:
        while True:
            self.send(watchdog="1")
            await asyncio.sleep(self.watchdog_interval / 2)

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None


def _watchdog_interval(environ: Mapping[str, str]) -> float:
    """Seconds from ``$WATCHDOG_USEC``, when it is meant for this process (``$WATCHDOG_PID``
    unset or ours); 0 otherwise."""
    pid = environ.get("WATCHDOG_PID")
    if pid is not None and pid != str(os.getpid()):
        return 0.0
    usec = environ.get("WATCHDOG_USEC", "")
    return int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 else 0.0
