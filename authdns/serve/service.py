"""``authdns serve`` as one object: the pieces that live as long as the server does,
started in the order that keeps every answer right and stopped in reverse; ``run()``
owns the process around them (signals, readiness, the systemd watchdog, the stop).

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
import signal
import time
from typing import Any

from authdns.configuration.config import ServerConfig, control_path, overrides_path, serials_path
from authdns.serve.answerer import build_answerer
from authdns.ops.control import ControlError, ControlServer
from authdns.health.monitor import HealthMonitor, HealthView
from authdns.base import descriptors
from authdns.base.hostport import format_host_port
from authdns.balancing.overrides import EMPTY_OVERRIDES, OverridesFileError, load_overrides, set_aside
from authdns.serve.server import BindError, raise_descriptor_limit
from authdns.zones.loader import LoadResult, ReloadPolicy, ZoneDirError, ZoneLoader
from authdns.zones.serials import SerialStore
from authdns.zones.snapshot import Snapshot
from authdns.serve.watcher import ZoneWatcher
from authdns.engine.state import StateHolder
from authdns.serve.systemd import SystemdNotifier
from authdns.transfer.notify import Notifier
from authdns.transfer.access import unknown_keys
from authdns.health.watchlist import watch_list
from authdns.balancing.counters import Observation, Totals
from authdns.ops.metrics import StatusHttpServer
from authdns.serve.workers import WorkerError, WorkerPool

log = logging.getLogger("authdns")

EXPLICIT_TRIGGERS = ("SIGHUP", "ctl")  # the operator says the files are ready: no guard waits
RETRY_FIRST = 0.5  # seconds before a failed load is tried again, doubling ...
RETRY_LONGEST = 10.0  # ... up to this, until one succeeds


class StartError(Exception):
    """The server cannot start; the message says why (logged, exit 1)."""


class Service:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.holder = StateHolder()
        self.monitor = HealthMonitor(lambda view: self.holder.publish(health=view))
        # One process answers (its own answerer), or N forked workers do (WorkerPool),
        # each with an answerer of its own; this one's balancer then only predicts
        # (explain, status), and its counters stay at zero.
        self.answerer = build_answerer(config, self.holder)
        self.balancer = self.answerer.balancer
        self.pool = WorkerPool(config, config.workers, self.holder) if config.workers > 1 else None
        self.notifier = Notifier(config)
        self.control = ControlServer(config.control or control_path(config.state_dir), self.holder, self.balancer,
                                     overrides_path(config.state_dir), self)
        self.addresses: list[tuple[str, int]] = []
        self._reloading: asyncio.Lock = asyncio.Lock()
        self.watcher = ZoneWatcher(config.zone_dir, self.reload, config.settle) if config.watch else None
        self.loader = ZoneLoader(config.zone_dir, SerialStore.load(serials_path(config.state_dir)),
                                 config.max_zone_bytes, config.ixfr_history, self.watcher,
                                 ReloadPolicy(config.settle, config.removal_share, config.removal_hold,
                                              config.delete_grace))
        # One timer for the next look the loader asked for: a failed load tried again
        # (backoff), or a change held by the guard due another look.
        self._follow_up: asyncio.TimerHandle | None = None
        self._follow_up_at = float("inf")
        self._retries = 0  # failed loads in a row
        self._reload_tasks: set[asyncio.Task] = set()
        self._closing = False
        self.systemd = SystemdNotifier()
        self.http = StatusHttpServer(config.metrics, self.observe, timeout=config.metrics_timeout,
                                     max_connections=config.metrics_max_connections) \
            if config.metrics is not None else None
        self.http_address: tuple[str, int] | None = None

    async def start(self) -> None:
        descriptors.install(asyncio.get_running_loop())  # accepts at the descriptor limit: counted, one log line
        # The supervisor probes every checked member (a socket each, two with agents): with
        # workers it never starts a DnsServer, so it raises its own limit here.
        raise_descriptor_limit()
        try:
            result = await self.loader.first()
        except ZoneDirError as error:
            raise StartError(str(error)) from None
        self._check_transfer_keys(result.snapshot)
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
        self.holder.publish(health=await self._rewatch(result.snapshot))
        try:
            # Health is known by now: workers are forked with it (and the zones) in hand.
            self.addresses = await (self.pool.start() if self.pool is not None else self.answerer.dns.start())
            await self.control.start()
            if self.http is not None:
                self.http_address = await self.http.start()
            # Secondaries learn of our serials at once, as BIND does at start (RFC 1996 §3.6).
            self.notifier.zones_changed(result.snapshot.zones.values())
            if self.watcher is not None:
                self.watcher.start()
        except (BindError, ControlError, OSError, WorkerError) as error:
            await self.close()
            raise StartError(str(error)) from None
        self._after(result)

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

    def _check_transfer_keys(self, snapshot: Snapshot) -> None:
        """Zones whose transfer rules name a TSIG key the server was not given (logged at
        each load: such a rule admits nobody)."""
        for line in unknown_keys(snapshot.zones.values(), self.config):
            log.warning("transfer: %s", line)

    async def _rewatch(self, snapshot: Snapshot):
        """Hand the monitor what to probe, wait for one round of new targets, and return
        the health to publish with ``snapshot`` (no answer carries an unchecked member)."""
        watches = watch_list(snapshot)
        view = await self.monitor.rewatch(watches)
        if watches:
            log.info("health first round done members=%d", len(watches))
        return view

    async def reload(self, trigger: str = "SIGHUP") -> LoadResult:
        """Load the zone directory again and swap the snapshot in with one assignment.
        Files that did not change are not parsed again; one that fails keeps its previous
        version; members still there keep their health, rotation and counters. A reload
        the watcher started (or a follow-up) is guarded (zones/loader.py ``ReloadPolicy``);
        SIGHUP and ``ctl reload`` take every change now. Raises ``ZoneDirError`` when
        the directory cannot be read (logged; tried again with backoff)."""
        async with self._reloading:  # one reload at a time; a second waits for the first
            self.systemd.reloading()
            try:
                return await self._reload(trigger)
            finally:
                self.systemd.ready(self.status_line())

    async def _reload(self, trigger: str) -> LoadResult:
        guarded = self.watcher is not None and trigger not in EXPLICIT_TRIGGERS
        try:
            result = await self.loader.again(self.holder.current.snapshot, guarded)
        except ZoneDirError as error:
            delay = self._retry_later()
            log.error("reload failed trigger=%s: %s; the zones served keep serving; trying again in %.1f s",
                      trigger, error, delay)
            raise
        self._check_transfer_keys(result.snapshot)
        if result.changes:
            health = None
            try:
                health = await self._rewatch(result.snapshot)  # new members probed before they are answered
            finally:
                # One assignment: the new zones with the health of their members. Also when
                # the rewatch failed: the monitor watches the new members now, and its next
                # view must not be published beside the old zones (it lacks their members).
                self.holder.publish(snapshot=result.snapshot, health=health if health is not None else self.monitor.view())
            self.balancer.retain(rrset for zone in result.snapshot.zones.values() for rrset in zone.rrsets())
            if self.pool is not None:
                await self.pool.caught_up()  # secondaries told now must get the new serial
            self.notifier.zones_changed(result.snapshot.zones[change.origin] for change in result.changes
                                        if change.new_serial is not None and change.new_serial != change.old_serial)
        log.info("reload done trigger=%s changed=%d unchanged=%d failed=%d generation=%d", trigger,
                 len(result.changes), result.unchanged, len(result.failed), self.holder.current.generation)
        self._after(result)
        return result

    def _after(self, result: LoadResult) -> None:
        """Ask for the next look a load needs: soon, with backoff, when something could
        not be read or saved (descriptors, permissions, a full disk: nothing else would
        bring the load back); when a held change is due."""
        if result.retry or result.save_error is not None:
            what = ", ".join(result.retry) if result.retry else "the remembered serials"
            log.warning("reload incomplete: %s not read or saved; trying again in %.1f s", what, self._retry_later())
        else:
            self._retries = 0
        if result.wake is not None:
            self._look_again(result.wake, "held")

    def _retry_later(self) -> float:
        delay = min(RETRY_FIRST * 2 ** self._retries, RETRY_LONGEST)
        self._retries += 1
        self._look_again(time.monotonic() + delay, "retry")
        return delay

    def _look_again(self, at: float, trigger: str) -> None:
        """One reload at monotonic time ``at`` (the earliest asked for wins)."""
        if self._closing or (self._follow_up is not None and self._follow_up_at <= at):
            return
        if self._follow_up is not None:
            self._follow_up.cancel()
        loop = asyncio.get_running_loop()
        self._follow_up_at = at
        self._follow_up = loop.call_later(max(at - time.monotonic(), 0.0), self._follow, trigger)

    def _follow(self, trigger: str) -> None:
        self._follow_up, self._follow_up_at = None, float("inf")
        self._spawn_reload(trigger)

    def _spawn_reload(self, trigger: str) -> None:
        """A reload nobody awaits (SIGHUP, follow-ups): held until done, its failure
        already logged by ``reload``."""
        task = asyncio.get_running_loop().create_task(self.reload(trigger))
        self._reload_tasks.add(task)  # held: a task nobody references may be collected mid-reload
        task.add_done_callback(self._reload_tasks.discard)
        task.add_done_callback(_settled)

    async def count(self) -> Totals:
        """What the processes that answer have counted: the workers (asked now), or this one."""
        return await self.pool.collect() if self.pool is not None else self.answerer.totals()

    async def observe(self) -> Observation:
        """What /metrics and the status page show, read now (workers asked for counts)."""
        totals = await self.count()
        probes = [(host, port, state.probes, state.failures, state.rtt)
                  for (host, port, _), state in self.monitor.targets().items()]
        loader = self.loader
        return Observation(time.time(), totals, self.control.status_of(totals), dict(loader.loaded_at), loader.reloads,
                           loader.failed_reloads, probes)

    def zone_problems(self) -> dict[str, list[str]]:
        """Each zone file's problems at the last load (``status``)."""
        return self.loader.problems

    def workers(self) -> list[dict[str, Any]] | None:
        """The workers serving now (``status``), or None when this process answers."""
        return self.pool.describe() if self.pool is not None else None

    def probed(self) -> HealthView:
        return self.monitor.view()

    async def set_query_log(self, enabled: bool) -> None:
        """The query log on or off, in every process that answers (engine/querylog.py)."""
        self.answerer.responder.query_log = enabled
        if self.pool is not None:
            await self.pool.set_query_log(enabled)
        log.info("query log %s", "on" if enabled else "off")

    def status_line(self) -> str:
        """One line for systemd's STATUS= (``systemctl status``)."""
        zones = len(self.holder.current.snapshot.zones)
        failing = len(self.loader.failed_files)
        workers = f", {self.config.workers} workers" if self.pool is not None else ""
        trouble = f"; {failing} zone file(s) not loaded, see the log" if failing else ""
        return f"serving {zones} zone(s){workers}, generation {self.holder.current.generation}{trouble}"

    async def run(self) -> int:
        """Start, serve until SIGINT or SIGTERM (SIGHUP reloads), stop; the exit code.
        systemd hears READY once every zone is loaded and every socket bound, and the
        watchdog is fed from then on."""
        try:
            await self.start()
        except StartError as error:
            log.error("%s", error)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_hangup() -> None:
            log.info("reload requested by SIGHUP")
            self._spawn_reload("SIGHUP")

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        self._log_ready()
        self.systemd.ready(self.status_line())
        self.systemd.start_watchdog()
        await stop.wait()
        log.info("stopping")
        self.systemd.stopping()
        await self.systemd.close()
        await self.close()
        return 0

    def _log_ready(self) -> None:
        for host, port in self.addresses:
            log.info("listening udp+tcp %s", format_host_port(host, port))
        log.info("control socket %s", self.control.path)
        if self.http_address is not None:
            host, port = self.http_address
            log.info("metrics and status page http://%s/ port=%d", format_host_port(host, port), port)
        log.info("ready port=%d zones=%d workers=%d loop=%s", self.addresses[0][1],
                 len(self.holder.current.snapshot.zones), self.config.workers, self.config.event_loop)

    async def close(self) -> None:
        self._closing = True
        if self._follow_up is not None:
            self._follow_up.cancel()
            self._follow_up = None
        if self._reload_tasks:
            await asyncio.gather(*self._reload_tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.close()
        if self.watcher is not None:
            await self.watcher.close()
        await self.control.close()
        await self.answerer.dns.close()
        if self.pool is not None:
            await self.pool.close()
        await self.notifier.close()
        await self.monitor.close()


def _settled(task: asyncio.Task) -> None:
    """Done callback of an unawaited reload: its failure was logged where it happened;
    retrieving it here keeps asyncio from reporting it again."""
    if not task.cancelled():
        task.exception()
