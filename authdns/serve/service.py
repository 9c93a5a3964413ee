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
from authdns.serve.server import BindError
from authdns.zones.loader import LoadResult, ZoneLoader
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
        self.watcher = ZoneWatcher(config.zone_dir, self.reload) if config.watch else None
        self.loader = ZoneLoader(config.zone_dir, SerialStore.load(serials_path(config.state_dir)),
                                 config.max_zone_bytes, config.ixfr_history, self.watcher)
        self.systemd = SystemdNotifier()
        self.http = StatusHttpServer(config.metrics, self.observe, timeout=config.metrics_timeout,
                                     max_connections=config.metrics_max_connections) \
            if config.metrics is not None else None
        self.http_address: tuple[str, int] | None = None

    async def start(self) -> None:
        descriptors.install(asyncio.get_running_loop())  # accepts at the descriptor limit: counted, one log line
        result = await self.loader.first()
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
        version; members still there keep their health, rotation and counters."""
        async with self._reloading:  # one reload at a time; a second waits for the first
            self.systemd.reloading()
            try:
                return await self._reload(trigger)
            finally:
                self.systemd.ready(self.status_line())

    async def _reload(self, trigger: str) -> LoadResult:
        result = await self.loader.again(self.holder.current.snapshot)
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
        return result

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
        reloading: set[asyncio.Task] = set()

        def on_hangup() -> None:
            log.info("reload requested by SIGHUP")
            task = loop.create_task(self.reload("SIGHUP"))
            reloading.add(task)  # held: a task nobody references may be collected mid-reload
            task.add_done_callback(reloading.discard)

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
