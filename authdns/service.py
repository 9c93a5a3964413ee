"""``authdns serve`` as one object: the pieces that live as long as the server does,
started in the order that keeps every answer right and stopped in reverse.

Start: zones → overrides (drains) → health monitor with one full probe round (so no
answer ever carries a member that was not checked; gdnsd does the same) → DNS
listeners → control socket → ``ready``. Reload (SIGHUP): zones again; the balancer and
the monitor keep the state of members that are still there. Nothing here answers
queries or parses packets.
"""

from __future__ import annotations

import asyncio
import logging

from . import names
from .config import ServerConfig, control_path, overrides_path
from .control import ControlError, ControlServer
from .health import HealthMonitor
from .ordering import Balancer
from .overrides import OverridesFileError, load_overrides
from .responder import Responder
from .server import BindError, DnsServer
from .snapshot import EMPTY, LoadResult, Snapshot, load_snapshot
from .state import StateHolder
from .watchlist import watch_list

log = logging.getLogger("authdns")


class StartError(Exception):
    """The server cannot start; the message says why (logged, exit 1)."""


class Service:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.holder = StateHolder()
        self.balancer = Balancer()
        self.monitor = HealthMonitor(self._publish_health)
        self.responder = Responder(self.holder, config, self.balancer)
        self.dns = DnsServer(config, self.responder)
        self.control = ControlServer(config.control or control_path(config.state_dir), self.holder, self.balancer,
                                     overrides_path(config.state_dir))
        self.addresses: list[tuple[str, int]] = []
        self._reloading: asyncio.Lock = asyncio.Lock()

    def _publish_health(self, view) -> None:
        self.holder.publish(health=view)

    async def start(self) -> None:
        result = await asyncio.to_thread(load_snapshot, self.config.zone_dir, EMPTY)
        log_load(result)
        self.holder.publish(snapshot=result.snapshot)
        if not result.snapshot.zones:
            log.warning("no zones loaded from %s: every query will be REFUSED", self.config.zone_dir)
        try:
            overrides = load_overrides(overrides_path(self.config.state_dir))
        except OverridesFileError as error:
            raise StartError(str(error)) from None
        self.holder.publish(overrides=overrides)
        if overrides.members:
            log.info("overrides loaded members=%d file=%s", len(overrides.members),
                     overrides_path(self.config.state_dir))
        await self._watch(result.snapshot)
        try:
            self.addresses = await self.dns.start()
            await self.control.start()
        except (BindError, ControlError, OSError) as error:
            await self.close()
            raise StartError(str(error)) from None

    async def _watch(self, snapshot: Snapshot) -> None:
        """Hand the monitor what to probe, and wait for one round of new targets."""
        watches = watch_list(snapshot)
        await self.monitor.watch(watches)
        if watches:
            await self.monitor.first_round()
            self.holder.publish(health=self.monitor.view())
            log.info("health first round done members=%d", len(watches))

    async def reload(self) -> None:
        async with self._reloading:  # one reload at a time; a second waits for the first
            previous = self.holder.current.snapshot
            result = await asyncio.to_thread(load_snapshot, self.config.zone_dir, previous)
            log_load(result)
            await self._watch(result.snapshot)  # new members probed before they are answered
            self.holder.publish(snapshot=result.snapshot)
            self.balancer.retain(rrset for zone in result.snapshot.zones.values() for rrset in zone.rrsets())

    async def close(self) -> None:
        await self.control.close()
        await self.dns.close()
        await self.monitor.close()


def log_load(result: LoadResult) -> None:
    for problem in result.problems:
        if problem.warning:
            log.warning("zone warning: %s", problem)
        else:
            log.error("zone error: %s", problem)
    for path in result.failed:
        kept = any(zone.path == path for zone in result.snapshot.zones.values())
        log.error("zone not loaded file=%s%s", path, "; previous version keeps serving" if kept else "")
    for zone in result.loaded:
        log.info(
            "zone loaded origin=%s records=%d serial=%d file=%s",
            names.to_text(zone.origin), zone.record_count, zone.serial, zone.path,
        )
