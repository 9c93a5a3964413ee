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
import gc
import logging
import time
from pathlib import Path

from . import names
from .config import ServerConfig, control_path, overrides_path, serials_path
from .control import ControlError, ControlServer
from .health import HealthMonitor
from .ordering import Balancer
from .overrides import EMPTY_OVERRIDES, OverridesFileError, load_overrides, set_aside
from .responder import Responder
from .server import BindError, DnsServer
from .reload import ZoneWatcher
from .serials import SerialStore
from .snapshot import EMPTY, LoadResult, Snapshot, load_snapshot
from .state import StateHolder
from .systemd import SystemdNotifier
from .notify import Notifier
from .transfer import TransferResponder
from .transferaccess import unknown_keys
from .watchlist import watch_list
from .counters import Observation, Totals
from .metrics import StatusHttpServer
from .workers import WorkerError, WorkerPool

log = logging.getLogger("authdns")

LOAD_ATTEMPTS = 5  # loads dropped for an overlapping write, before one is taken anyway


class StartError(Exception):
    """The server cannot start; the message says why (logged, exit 1)."""


class Service:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.holder = StateHolder()
        self.balancer = Balancer()
        self.monitor = HealthMonitor(self._publish_health)
        self.transfer = TransferResponder(self.holder, config)
        self.responder = Responder(self.holder, config, self.balancer, transfer=self.transfer)
        # One process answers (DnsServer here), or N forked workers do (WorkerPool).
        self.dns = DnsServer(config, self.responder, transfer=self.transfer)
        self.pool = WorkerPool(config, config.workers, self.holder) if config.workers > 1 else None
        self.notifier = Notifier(config)
        self.control = ControlServer(config.control or control_path(config.state_dir), self.holder, self.balancer,
                                     overrides_path(config.state_dir), self.count)
        self.addresses: list[tuple[str, int]] = []
        self._reloading: asyncio.Lock = asyncio.Lock()
        self.serials = SerialStore.load(serials_path(config.state_dir))
        self.watcher = ZoneWatcher(config.zone_dir, self.reload) if config.watch else None
        self.control.reloader = self.reload
        self.control.zone_problems = self.zone_problems
        self.control.query_logger = self.set_query_log
        if self.pool is not None:
            self.control.workers = self.pool.describe
        self.problems: dict[str, list[str]] = {}  # file -> its problems at the last load
        self.failed_files: list[str] = []  # files not loaded at the last load
        self.reloads = 0
        self.failed_reloads = 0  # reloads in which some file could not be loaded
        self._reload_pending = False
        self.systemd = SystemdNotifier()
        self.zones_loaded_at: dict[str, float] = {}  # zone origin (text) -> wall time of its served version
        self.http = StatusHttpServer(config.metrics, self.observe) if config.metrics is not None else None
        self.http_address: tuple[str, int] | None = None

    def _publish_health(self, view) -> None:
        # During a reload the monitor already watches the new snapshot's members while
        # the old snapshot still serves: its view would drop members the old one answers
        # (and unknown members count as up). The reload publishes both together instead.
        if not self._reload_pending:
            self.holder.publish(health=view)

    async def start(self) -> None:
        if self.serials.warning:
            log.error("%s", self.serials.warning)
        result = await asyncio.to_thread(load_snapshot, self.config.zone_dir, EMPTY, self.serials,
                                         max_bytes=self.config.max_zone_bytes, ixfr_history=self.config.ixfr_history)
        log_load(result, first=True)
        self._note_loaded(result)
        self._keep_problems(result)
        # The zones just loaded live as long as the server does: keep the cyclic garbage
        # collector from walking them (a full collection over a large zone held the GIL
        # for about 0.5 s, stalling every query meanwhile).
        gc.freeze()
        self.holder.publish(snapshot=result.snapshot)
        if not result.snapshot.zones:
            log.warning("no zones loaded from %s: every query will be REFUSED", self.config.zone_dir)
        overrides = self._load_overrides()
        self.holder.publish(overrides=overrides)
        if overrides.members:
            log.info("overrides loaded members=%d file=%s", len(overrides.members),
                     overrides_path(self.config.state_dir))
        await self._watch(result.snapshot)
        try:
            # Health is known by now: workers are forked with it (and the zones) in hand.
            self.addresses = await (self.pool.start() if self.pool is not None else self.dns.start())
            await self.control.start()
            if self.http is not None:
                self.http_address = self.http.start()
            # Secondaries learn of our serials at once, as BIND does at start (RFC 1996 §3.6).
            self.notifier.zones_changed(result.snapshot.zones.values())
            if self.watcher is not None:
                self.watcher.start()
        except (BindError, ControlError, OSError, WorkerError) as error:
            await self.close()
            raise StartError(str(error)) from None

    def _load_overrides(self):
        """The saved drains. An unreadable file must not keep DNS off the air: it is
        moved aside with a loud error, and the server starts without overrides."""
        path = overrides_path(self.config.state_dir)
        try:
            return load_overrides(path)
        except OverridesFileError as error:
            try:
                kept = set_aside(path, time.time())
            except OSError as move_error:
                raise StartError(f"{error}; and it cannot be moved aside: {move_error.strerror}") from None
            log.error("%s; moved to %s; starting WITHOUT drains or temporary weights: set them again "
                      "with `authdns ctl`", error, kept)
            return EMPTY_OVERRIDES

    async def _watch(self, snapshot: Snapshot) -> None:
        """Hand the monitor what to probe, and wait for one round of new targets."""
        watches = watch_list(snapshot)
        await self.monitor.watch(watches)
        if watches:
            await self.monitor.first_round()
            if not self._reload_pending:
                self.holder.publish(health=self.monitor.view())
            log.info("health first round done members=%d", len(watches))

    async def reload(self, trigger: str = "SIGHUP") -> LoadResult:
        """Load the zone directory again and swap the snapshot in with one assignment.
        Files that did not change are not parsed again; one that fails keeps its previous
        version; members still there keep their health, rotation and counters."""
        async with self._reloading:  # one reload at a time; a second waits for the first
            self.systemd.reloading()
            try:
                return await self._reload(trigger)
            finally:
                self.systemd.ready(self.status_line())

    async def _reload(self, trigger: str) -> LoadResult:
        result = await self._load_settled()
        self.reloads += 1
        if result.failed:
            self.failed_reloads += 1
        log_load(result, first=False)
        self._note_loaded(result)
        self._keep_problems(result)
        if result.changes:
            self._reload_pending = True
            try:
                await self._watch(result.snapshot)  # new members probed before they are answered
            finally:
                self._reload_pending = False
                # One assignment: the new zones with the health of their members.
                self.holder.publish(snapshot=result.snapshot, health=self.monitor.view())
            self.balancer.retain(rrset for zone in result.snapshot.zones.values() for rrset in zone.rrsets())
            if self.pool is not None:
                await self.pool.caught_up()  # secondaries told now must get the new serial
            self.notifier.zones_changed(result.snapshot.zones[change.origin] for change in result.changes
                                        if change.new_serial is not None and change.new_serial != change.old_serial)
        log.info("reload done trigger=%s changed=%d unchanged=%d failed=%d generation=%d", trigger,
                 len(result.changes), result.unchanged, len(result.failed), self.holder.current.generation)
        return result

    async def _load_settled(self) -> LoadResult:
        """A load in which no file was read while being written. A file written during
        the load (or still open for writing) may have been read half-way, and half a YAML
        file can be a valid, smaller zone: the load is done again with such files held at
        their served version; the watcher reloads them once their writer is done. Files
        the dropped load parsed are not parsed again."""
        parsed = EMPTY
        hold = self.watcher.open_writers() if self.watcher is not None else frozenset()
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            seq = self.watcher.seq if self.watcher is not None else 0
            serials = self.serials.copy()
            result = await asyncio.to_thread(load_snapshot, self.config.zone_dir, self.holder.current.snapshot,
                                             serials, False, parsed, hold, self.config.max_zone_bytes,
                                             self.config.ixfr_history)
            parsed = result.snapshot
            dirty = self.watcher.dirty_since(seq) - hold if self.watcher is not None else frozenset()
            if not dirty:
                break
            hold |= dirty
            log.info("zone files written during the load; loading again without them files=%s attempt=%d",
                     ",".join(sorted(Path(path).name for path in dirty)), attempt + 1)
        self.serials = serials
        try:
            await asyncio.to_thread(serials.save)
        except OSError as error:
            log.warning("cannot save remembered serials to %s: %s", serials.path, error.strerror)
        return result

    def _keep_problems(self, result: LoadResult) -> None:
        """Every file's problems at the last load, for ``authdns status``."""
        for line in unknown_keys(result.snapshot.zones.values(), self.config):
            log.warning("transfer: %s", line)
        problems: dict[str, list[str]] = {}
        for problem in result.problems:
            problems.setdefault(problem.where.path, []).append(str(problem))
        self.problems = problems
        self.failed_files = list(result.failed)

    def _note_loaded(self, result: LoadResult) -> None:
        now = time.time()
        for change in result.changes:
            origin = names.to_text(change.origin)
            if change.new_serial is None:
                self.zones_loaded_at.pop(origin, None)
            else:
                self.zones_loaded_at[origin] = now

    async def count(self) -> Totals:
        """What the processes that answer have counted: the workers (asked now), or this one."""
        return await self.pool.collect() if self.pool is not None else Totals.of(self.responder, self.balancer)

    async def observe(self) -> Observation:
        """What /metrics and the status page show, read now (workers asked for counts)."""
        totals = await self.count()
        probes = [(host, port, state.probes, state.failures, state.rtt)
                  for (host, port, _), state in self.monitor.targets().items()]
        return Observation(time.time(), totals, self.control.status_of(totals), dict(self.zones_loaded_at), self.reloads,
                           self.failed_reloads, probes)

    def zone_problems(self) -> dict[str, list[str]]:
        return self.problems

    async def set_query_log(self, enabled: bool) -> None:
        """The query log on or off, in every process that answers (querylog.py)."""
        self.responder.query_log = enabled
        if self.pool is not None:
            await self.pool.set_query_log(enabled)
        log.info("query log %s", "on" if enabled else "off")

    def status_line(self) -> str:
        """One line for systemd's STATUS= (``systemctl status``)."""
        zones = len(self.holder.current.snapshot.zones)
        failing = len(self.failed_files)
        workers = f", {self.config.workers} workers" if self.pool is not None else ""
        trouble = f"; {failing} zone file(s) not loaded, see the log" if failing else ""
        return f"serving {zones} zone(s){workers}, generation {self.holder.current.generation}{trouble}"

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.watcher is not None:
            await self.watcher.close()
        await self.control.close()
        await self.dns.close()
        if self.pool is not None:
            await self.pool.close()
        await self.notifier.close()
        await self.monitor.close()


def log_load(result: LoadResult, first: bool) -> None:
    """One line per zone that changed, then the problems (RFC-style ``file:line:column``)."""
    for problem in result.problems:
        if problem.warning:
            log.warning("zone warning: %s", problem)
        else:
            log.error("zone error: %s", problem)
    for path in result.failed:
        kept = any(zone.path == path for zone in result.snapshot.zones.values())
        log.error("zone not loaded file=%s%s", path, "; previous version keeps serving" if kept else "")
    loaded = {zone.origin: zone for zone in result.loaded}
    for change in result.changes:
        origin = names.to_text(change.origin)
        if change.new_serial is None:
            log.info("zone removed origin=%s serial=%s file=%s; its names are REFUSED now", origin,
                     change.old_serial, change.path)
        elif change.old_serial is None or first:
            zone = loaded[change.origin]
            log.info("zone loaded origin=%s records=%d serial=%d file=%s", origin, zone.record_count, zone.serial,
                     zone.path)
        else:
            log.info("zone reloaded origin=%s serial=%d->%d %s file=%s", origin, change.old_serial,
                     change.new_serial, change.diff, change.path)
