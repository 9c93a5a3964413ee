"""Several worker processes answering on the same addresses, and the supervisor that
keeps them (``authdns serve --workers N``).

The supervisor is the process ``authdns serve`` starts. It does everything that must
happen once, whatever the number of workers: zone loads and the file watcher, health
probes, the control socket, NOTIFY, serials. It binds N sockets per address and
protocol with SO_REUSEPORT (the kernel spreads clients over them by address hash) and
keeps every one of them open, so a worker that exits loses nothing queued: whoever
serves its slot next reads the same socket.

Workers are forked from the supervisor with the state to serve in hand, so a zone
snapshot, shared copy-on-write, costs nothing to hand over, however large it is:
- a new snapshot means a new generation: a worker is forked per slot with it; once
  every one of them serves, the old worker of each slot stops reading its sockets
  (what they hold is read by the new one), answers the TCP queries it has under way,
  and exits. No query is lost and none sees a mix of zone versions.
- health views and operator overrides go to every worker as a message on its channel
  (a socketpair), and each applies it with one publish; a health update carries only
  the members whose entry changed since the view that worker has, one update in flight
  per worker (views published meanwhile coalesce), so its cost follows the flips.
- a worker that dies is forked again for its slot, after a pause if it keeps dying.
- response rate limiting is the server's, not each worker's: the supervisor makes the
  bucket table in shared memory before the first fork (serve/rrl.py), and every worker
  of every generation counts into it, so a reload does not hand a flood a fresh burst.
- a worker that hangs is killed and so forked again: each worker's event loop sends a
  heartbeat on its channel every quarter of ``--heartbeat-timeout``; one silent for the
  timeout is killed with SIGKILL (see ``HeartbeatWatch`` for what counts as silence).
- each worker keeps its own rotors: the share of first positions is exact per worker,
  so over all of them to within one pick per worker. ``status`` asks every worker for
  its counters and adds those of workers that have exited, so counts survive reloads.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from authdns.base import eventloop

from authdns.base import logformat
from authdns.serve.answerer import Answerer, build_answerer
from authdns.configuration.config import ServerConfig
from authdns.balancing.counters import Totals
from authdns.serve.rrl import RateLimiter, rate_limiter
from authdns.serve.server import bind_all, close_pairs
from authdns.engine.state import ServingState, StateHolder
from authdns.health.monitor import EMPTY_HEALTH, HealthView
from authdns.serve.workerchannel import (Count, Counted, HealthUpdate, Heartbeat, OverridesUpdate, Paused, Ready, Serve,
                                         SetQueryLog, Stop, Switched, ToWorker, receive, send)

log = logging.getLogger("authdns.workers")

START_TIMEOUT = 30.0  # seconds a forked worker may take to serve before it is given up
STATS_TIMEOUT = 1.0  # seconds ``status`` waits for a worker's counters
HANDOVER_TIMEOUT = 2.0  # seconds new workers wait for old ones to stop reading, at most
RETIRE_GRACE = 5.0  # seconds a retiring worker has to finish the TCP queries under way
QUICK_EXIT = 5.0  # a worker that dies younger than this is restarted after a pause
MAX_PAUSE = 10.0
BEATS_PER_TIMEOUT = 4  # heartbeats sent, and silences judged, this many times per heartbeat timeout


class WorkerError(Exception):
    """Workers could not be started; the message says why."""


# -- the supervisor's side ---------------------------------------------------------------

@dataclass(eq=False)
class Worker:
    slot: int
    pid: int
    generation: int  # of the supervisor's serving state it was forked with
    started: float
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    ready: asyncio.Future
    counted: Totals = field(default_factory=Totals)  # its latest report
    reported: asyncio.Event = field(default_factory=asyncio.Event)
    retiring: bool = False
    paused: asyncio.Event = field(default_factory=asyncio.Event)  # reads nothing more
    switched: asyncio.Event = field(default_factory=asyncio.Event)  # applied the last query-log switch
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    # The health view it has, or will have once the updates sent are read; one update in
    # flight at a time, made when sent (from this view to the latest): a worker slow to
    # read gets fewer, larger updates, never a queue of them.
    health: HealthView = EMPTY_HEALTH
    health_sending: bool = False
    health_messages: int = 0  # HealthUpdates sent, and their bytes (status)
    health_bytes: int = 0
    beat: float = field(default_factory=time.monotonic)  # when its last heartbeat was read (supervisor's clock)
    hung: bool = False  # killed for its silence


class HeartbeatWatch:
    """Which workers have been silent too long, judged on the supervisor's loop.

    A worker's silence is the time since its last heartbeat was read, less the time the
    supervisor's own loop was not turning: a fork of a large heap, a big snapshot
    published or any other stall of ours leaves heartbeats unread in the channels, and
    must not be taken for the workers' hang. ``tick`` runs every ``timeout / 4``; a tick
    that comes later than one more period tells the stall's length, which moves every
    worker's last heartbeat forward by as much, and that tick judges nobody (the
    listeners read what queued first)."""

    def __init__(self, timeout: float, clock=time.monotonic) -> None:
        self.timeout = timeout
        self.period = timeout / BEATS_PER_TIMEOUT
        self.clock = clock
        self.last = clock()

    def tick(self, workers: list[Worker]) -> list[tuple[Worker, float]]:
        """The ready workers, not yet killed, silent over the timeout, with their silence."""
        now = self.clock()
        late = now - self.last - self.period
        self.last = now
        if late > self.period:
            log.debug("supervisor loop stalled %.2f s: heartbeats unread meanwhile are not held against workers",
                      late)
            for worker in workers:
                worker.beat += late
            return []
        return [(worker, now - worker.beat) for worker in workers
                if worker.ready.done() and not worker.hung and not worker.writer.is_closing()
                and now - worker.beat > self.timeout]


class WorkerPool:
    """N worker processes on shared sockets; the supervisor's half of this module."""

    def __init__(self, config: ServerConfig, count: int, holder: StateHolder) -> None:
        self.config = config
        self.count = count
        self.holder = holder
        self.bound: list[list] = []  # per address: one (udp, tcp) pair per slot
        self.slots: list[Worker | None] = [None] * count
        self.live: set[Worker] = set()  # serving, starting or retiring
        self.retired = Totals()  # counts of workers that have exited
        self.restarts = [0] * count
        self.hangs = [0] * count  # workers killed for their silence, per slot
        self.generations = 0  # worker generations rolled out after the first
        self.rolled_out = 0  # the serving-state generation of the last rollout (done or given up)
        self.wanted = 0  # the generation of the latest snapshot published
        self._rolled = asyncio.Event()
        self.closing = False
        self._rollout_wanted = asyncio.Event()
        self.query_log = config.query_log  # switched at runtime (set_query_log)
        # One bucket table for every worker of every generation, made before the first
        # fork (an anonymous shared map: serve/rrl.py), so the rate is the server's.
        self.limiter = rate_limiter(config)
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> list[tuple[str, int]]:
        """Bind every address N times, fork the first workers and wait until all serve."""
        self.bound = bind_all(self.config, self.count)
        addresses = [pairs[0][0].getsockname()[:2] for pairs in self.bound]
        try:
            workers = [await self._fork(slot) for slot in range(self.count)]
            await self._await_ready(workers)
        except BaseException:
            await self.close()
            raise
        for worker in workers:
            self.slots[worker.slot] = worker
        self.rolled_out = self.holder.current.generation
        self.holder.listeners.append(self._on_publish)
        self._spawn_task(self._rollouts())
        if self.config.heartbeat_timeout:
            self._spawn_task(self._watch(HeartbeatWatch(self.config.heartbeat_timeout)))
        return addresses

    def _spawn_task(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _fork(self, slot: int, serving: bool = True) -> Worker:
        state = self.holder.current
        ours, theirs = socket.socketpair()
        # Objects that exist now are shared with the child: keep the cyclic collector
        # off them (in both processes), or its walks would copy every shared page.
        # Garbage first, so that none of it is kept for good.
        gc.collect()
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            ours.close()
            _become_worker(slot, self.config, state, [pairs[slot] for pairs in self.bound], theirs, serving,
                           self.query_log, self.limiter)
        theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        worker = Worker(slot, pid, state.generation, time.time(), reader, writer,
                        asyncio.get_running_loop().create_future())
        worker.health = state.health
        self.live.add(worker)
        self._spawn_task(self._listen(worker))
        self._update_health(worker)  # a view published while it was being connected
        log.debug("worker forked slot=%d pid=%d generation=%d", slot, pid, state.generation)
        return worker

    async def _await_ready(self, workers: list[Worker]) -> None:
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.gather(*(worker.ready for worker in workers))
        except TimeoutError:
            raise WorkerError(f"workers did not start serving within {START_TIMEOUT:.0f} s") from None

    async def _listen(self, worker: Worker) -> None:
        """Everything a worker says, until it exits (its channel closes with it)."""
        try:
            while (message := await receive(worker.reader)) is not None:
                match message:
                    case Ready() if not worker.ready.done():
                        worker.beat = time.monotonic()  # watched from now on
                        worker.ready.set_result(None)
                    case Heartbeat():
                        worker.beat = time.monotonic()
                    case Switched():
                        worker.switched.set()
                    case Paused():
                        worker.paused.set()
                    case Counted(totals):
                        worker.counted = totals
                        worker.reported.set()
        finally:
            await self._reap(worker)

    async def _reap(self, worker: Worker) -> None:
        worker.writer.close()
        _, status = await asyncio.to_thread(os.waitpid, worker.pid, 0)
        self.live.discard(worker)
        worker.paused.set()
        self.retired.add(worker.counted)  # its last report: the final one when it retired
        worker.exited.set()
        if not worker.ready.done():
            worker.ready.set_exception(WorkerError(f"worker pid {worker.pid} exited before serving: "
                                                    f"{_exit_text(status)}"))
            worker.ready.exception()  # retrieved here: whoever awaited it has its own copy
        if worker.retiring or self.closing or self.slots[worker.slot] is not worker:
            return
        lived = time.time() - worker.started
        self.restarts[worker.slot] += 1
        pause = 0.0 if lived >= QUICK_EXIT else min(MAX_PAUSE, 0.5 * 2 ** min(self.restarts[worker.slot], 5))
        log.error("worker exited slot=%d pid=%d %s; starting another in %.1f s", worker.slot, worker.pid,
                  _exit_text(status), pause)
        self._spawn_task(self._restart(worker, pause))

    async def _watch(self, watch: HeartbeatWatch) -> None:
        """Kill every worker silent for the heartbeat timeout. Its slot's sockets are the
        supervisor's, so what they queued meanwhile waits there: ``_reap`` sees the channel
        close and forks the next worker for the slot, as for any worker that dies."""
        while not self.closing:
            await asyncio.sleep(watch.period)
            for worker, silence in watch.tick(list(self.live)):
                worker.hung = True
                self.hangs[worker.slot] += 1
                log.error("worker hung slot=%d pid=%d: no heartbeat for %.2f s (timeout %g s); killing it",
                          worker.slot, worker.pid, silence, watch.timeout)
                try:
                    os.kill(worker.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # gone meanwhile: _reap deals with it

    async def _restart(self, dead: Worker, pause: float) -> None:
        if pause:
            await asyncio.sleep(pause)  # a worker that keeps dying must not take a core forking
        slot = dead.slot
        if self.closing or self.slots[slot] is not dead:
            return  # stopping, or a new generation already serves this slot
        worker = await self._fork(slot)
        self.slots[slot] = worker
        try:
            await self._await_ready([worker])
        except WorkerError as error:  # _reap restarts it again if it died
            log.error("%s", error)
            return
        log.info("worker serving slot=%d pid=%d", slot, worker.pid)

    # -- state changes -------------------------------------------------------------------

    def _on_publish(self, old: ServingState, new: ServingState) -> None:
        if new.snapshot is not old.snapshot:
            self.wanted = new.generation
            self._rollout_wanted.set()  # forked with everything current, health included
            return
        if new.health is not old.health:
            for worker in list(self.live):
                self._update_health(worker)
        messages: list[ToWorker] = []
        if new.overrides is not old.overrides:
            messages.append(OverridesUpdate.of(new.overrides))
        for worker in list(self.live):
            if not worker.retiring:
                for message in messages:
                    self._spawn_task(self._tell(worker, message))

    def _update_health(self, worker: Worker) -> None:
        if not worker.health_sending and not worker.retiring and worker.health is not self.holder.current.health:
            worker.health_sending = True
            self._spawn_task(self._send_health(worker))

    async def _send_health(self, worker: Worker) -> None:
        """Send the worker what changed from its view to the latest until it has the
        latest: views published meanwhile coalesce into the next update."""
        try:
            while not worker.retiring and worker.health is not (latest := self.holder.current.health):
                update, worker.health = HealthUpdate.of(latest, worker.health), latest
                worker.health_bytes += await self._tell(worker, update)
                worker.health_messages += 1
        finally:
            worker.health_sending = False

    async def set_query_log(self, enabled: bool) -> None:
        """Every worker, and those forked from now on, log queries or stop; returns once
        the workers have switched (or STATS_TIMEOUT passed), so the next query obeys."""
        self.query_log = enabled
        telling = [worker for worker in self.live if not worker.retiring]
        for worker in telling:
            worker.switched.clear()
            await self._tell(worker, SetQueryLog(enabled))
        if telling:
            await asyncio.wait([self._spawn_task(worker.switched.wait()) for worker in telling],
                               timeout=STATS_TIMEOUT)

    async def _tell(self, worker: Worker, message: ToWorker) -> int:
        try:
            return await send(worker.writer, message)
        except (ConnectionError, OSError, RuntimeError):  # RuntimeError: uvloop's closed transport
            return 0  # it has exited: _reap deals with it

    async def _rollouts(self) -> None:
        """One generation at a time; publishes during one coalesce into the next."""
        while True:
            await self._rollout_wanted.wait()
            self._rollout_wanted.clear()
            if self.closing:
                return
            generation = self.holder.current.generation
            try:
                await self._rollout()
            finally:
                self.rolled_out = generation
                self._rolled.set()

    async def caught_up(self) -> None:
        """Return once workers serve the zones published so far (or a rollout of them
        failed and was logged): NOTIFY and ``ctl reload`` wait for this, so that a
        secondary asking at once gets the new serial."""
        target = self.wanted
        while self.rolled_out < target and not self.closing:
            self._rolled.clear()
            try:
                async with asyncio.timeout(START_TIMEOUT + HANDOVER_TIMEOUT):
                    await self._rolled.wait()
            except TimeoutError:
                log.warning("workers still not serving generation %d", target)
                return

    async def _rollout(self) -> None:
        """New workers are forked and made ready but read nothing; every old worker stops
        reading (its sockets queue meanwhile); then the new ones read. So once any
        client has had an answer from the new zones, no client gets one from the old."""
        generation = self.holder.current.generation
        new = [await self._fork(slot, serving=False) for slot in range(self.count)]
        try:
            await self._await_ready(new)
        except WorkerError as error:
            log.error("new workers for generation %d failed, the previous ones keep serving: %s", generation, error)
            for worker in new:
                self._stop(worker)
            return
        old = [worker for worker in self.slots if worker is not None]
        self.slots = list(new)
        handover = time.monotonic()  # from here until Serve is read, no worker reads the sockets
        for worker in old:
            self._stop(worker)
        if old:
            await asyncio.wait([self._spawn_task(worker.paused.wait()) for worker in old], timeout=HANDOVER_TIMEOUT)
        for worker in new:
            await self._tell(worker, Serve())
        self.generations += 1
        log.info("workers serving generation=%d workers=%d", generation, self.count)
        log.debug("handover of generation %d took %.1f ms (Stop sent to Serve sent)", generation,
                  (time.monotonic() - handover) * 1000)

    def _stop(self, worker: Worker) -> None:
        if worker.retiring:
            return
        worker.retiring = True
        self._spawn_task(self._tell(worker, Stop()))

    # -- counters ------------------------------------------------------------------------

    async def collect(self) -> Totals:
        """Every worker's counters now (those that answer within STATS_TIMEOUT), plus
        those of workers that have exited (``counters.Totals``)."""
        asking = [worker for worker in self.live if not worker.retiring and worker.ready.done()]
        for worker in asking:
            worker.reported.clear()
            await self._tell(worker, Count())
        if asking:
            await asyncio.wait([self._spawn_task(worker.reported.wait()) for worker in asking],
                               timeout=STATS_TIMEOUT)
        total = Totals()
        total.add(self.retired)
        for worker in self.live:
            total.add(worker.counted)
        return total

    def describe(self) -> list[dict[str, Any]]:
        """The workers serving now, for ``status``: ``heartbeat`` is the seconds since
        the last heartbeat was read (None when they are off), ``hangs`` the workers of
        the slot killed for their silence."""
        now = time.monotonic()
        beating = bool(self.config.heartbeat_timeout)
        return [{"slot": worker.slot, "pid": worker.pid, "generation": worker.generation,
                 "started": round(worker.started, 3), "queries": worker.counted.queries.received,
                 "restarts": self.restarts[worker.slot], "hangs": self.hangs[worker.slot],
                 "heartbeat": round(now - worker.beat, 3) if beating else None,
                 "health_messages": worker.health_messages, "health_bytes": worker.health_bytes}
                for worker in self.slots if worker is not None]

    async def close(self) -> None:
        """Stop every worker (they finish TCP queries under way), then close the sockets."""
        self.closing = True
        self._rollout_wanted.set()
        if self._on_publish in self.holder.listeners:
            self.holder.listeners.remove(self._on_publish)
        workers = list(self.live)
        for worker in workers:
            self._stop(worker)
        if workers:
            _, pending = await asyncio.wait([self._spawn_task(worker.exited.wait()) for worker in workers],
                                               timeout=RETIRE_GRACE + 2.0)
            for worker in workers:
                if not worker.exited.is_set():
                    log.warning("worker pid=%d did not stop in time; killed", worker.pid)
                    try:
                        os.kill(worker.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        for pairs in self.bound:
            close_pairs(pairs)
        self.bound = []
        for task in list(self._tasks):
            task.cancel()


def _exit_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


# -- the worker's side -------------------------------------------------------------------

def _become_worker(slot: int, config: ServerConfig, state: ServingState, pairs: list, channel: socket.socket,
                   serving: bool, query_log: bool, limiter: RateLimiter | None) -> NoReturn:
    """In the forked child: shed what belongs to the supervisor, serve, never return."""
    code = 1
    try:
        # The supervisor's loop wrote signals to a self-pipe this process shares: a
        # signal here must not wake the supervisor as if it were its own.
        signal.set_wakeup_fd(-1)
        os.environ.pop("NOTIFY_SOCKET", None)  # only the supervisor speaks to systemd
        for signum in (signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # Ctrl-C and reloads are the supervisor's to act on
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        gc.collect()  # garbage the supervisor left closes its descriptors now, not after we reuse them
        keep = {0, 1, 2, channel.fileno()} | {sock.fileno() for pair in pairs for sock in pair} | _log_fds()
        _close_inherited(keep)
        logformat.label_process(worker=slot, pid=os.getpid())
        code = eventloop.run(_serve_worker(config, state, pairs, channel, serving, query_log, limiter),
                             config.event_loop)
    except BaseException:
        log.exception("worker slot=%d failed", slot)
    finally:
        logging.shutdown()
        os._exit(code)


def _close_inherited(keep: set[int]) -> None:
    """Close every descriptor but ``keep``: a health probe's connection, the control
    socket or a zone file must not stay open in a worker after the supervisor closes it."""
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        open_fds = list(range(3, 1024))
    for fd in open_fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor, already gone


def _log_fds() -> set[int]:
    """Descriptors the log handlers write to (a log file, say): the worker logs there too."""
    fds = set()
    for handler in logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        try:
            fds.add(stream.fileno())
        except (AttributeError, OSError, ValueError):
            pass
    return fds


async def _serve_worker(config: ServerConfig, state: ServingState, pairs: list, channel: socket.socket,
                        serving: bool, query_log: bool, limiter: RateLimiter | None = None) -> int:
    """Answer on ``pairs`` (at once, or from ``Serve`` on) until told to stop."""
    holder = StateHolder()
    holder.publish(snapshot=state.snapshot, health=state.health, overrides=state.overrides)
    answerer = build_answerer(config, holder, limiter)  # the supervisor's rate limiter: shared buckets
    answerer.responder.query_log = query_log
    dns = answerer.dns
    await dns.start(pairs, serving=serving)
    reader, writer = await asyncio.open_unix_connection(sock=channel)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await send(writer, Ready())
    beating = (asyncio.ensure_future(_heartbeats(writer, config.heartbeat_timeout / BEATS_PER_TIMEOUT))
               if config.heartbeat_timeout else None)
    try:
        return await _obey(reader, writer, stop, holder, answerer)
    finally:
        if beating is not None:
            beating.cancel()


async def _obey(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event,
                holder: StateHolder, answerer: Answerer) -> int:
    """What the supervisor says, until it says ``Stop`` (or SIGTERM) or goes."""
    dns = answerer.dns
    receiving = asyncio.ensure_future(receive(reader))
    stopping = asyncio.ensure_future(stop.wait())
    while True:
        await asyncio.wait([receiving, stopping], return_when=asyncio.FIRST_COMPLETED)
        message = receiving.result() if receiving.done() else Stop()
        match message:
            case None:  # the supervisor is gone: so is the reason to serve
                await dns.close()
                return 0
            case Stop():
                dns.pause()
                await send(writer, Paused())
                await dns.retire(RETIRE_GRACE)
                await send(writer, Counted(answerer.totals()))
                return 0
            case HealthUpdate():
                holder.publish(health=message.view(holder.current.health))
            case OverridesUpdate():
                holder.publish(overrides=message.overrides())
            case SetQueryLog(enabled):
                answerer.responder.query_log = enabled
                await send(writer, Switched())
            case Serve():
                await dns.serve()
            case Count():
                await send(writer, Counted(answerer.totals()))
        receiving = asyncio.ensure_future(receive(reader))


async def _heartbeats(writer: asyncio.StreamWriter, period: float) -> None:
    """A ``Heartbeat`` every ``period`` from a timer on the loop that answers queries, so
    the beats stop exactly when answering does: a handler that never returns, a process
    stopped or starved. Nothing a worker does legitimately holds its loop for long: its
    zones come with the fork (a rollout forks new workers, it does not load into old
    ones), transfers are packed in a thread, and a retiring worker's TCP grace is awaited
    (its beats go on, and a hung retiring worker is killed too, not forked again)."""
    try:
        while True:
            await send(writer, Heartbeat())
            await asyncio.sleep(period)
    except (ConnectionError, OSError, RuntimeError):  # RuntimeError: uvloop's write to a closed transport
        pass  # the supervisor is gone: the main loop sees its channel close
