"""``workers.HeartbeatWatch`` on a clock of its own: a ready worker silent for longer
than the timeout is named, one that beat is not, one not yet ready or already killed is
left alone; a tick that comes late (the supervisor's loop stalled, heartbeats unread)
judges nobody and does not count the stall as the workers' silence."""

from __future__ import annotations

from types import SimpleNamespace

from authdns.serve.workers import HeartbeatWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Done:
    def __init__(self, done: bool) -> None:
        self._done = done

    def done(self) -> bool:
        return self._done


class Channel:
    def __init__(self, closing: bool = False) -> None:
        self.closing = closing

    def is_closing(self) -> bool:
        return self.closing


def worker(beat: float, ready: bool = True, hung: bool = False, closing: bool = False) -> SimpleNamespace:
    return SimpleNamespace(beat=beat, ready=Done(ready), hung=hung, writer=Channel(closing))


def ticks(watch: HeartbeatWatch, clock: Clock, workers: list, count: int) -> list:
    named = []
    for _ in range(count):
        clock.now += watch.period
        named += watch.tick(workers)
    return named


def test_only_a_ready_silent_worker_is_named() -> None:
    clock = Clock()
    watch = HeartbeatWatch(1.0, clock)
    assert watch.period == 0.25
    silent, starting, killed, reaped = (worker(clock.now), worker(clock.now, ready=False),
                                        worker(clock.now, hung=True), worker(clock.now, closing=True))
    beating = worker(clock.now)
    workers = [silent, starting, killed, reaped, beating]
    named = []
    for _ in range(5):
        clock.now += watch.period
        beating.beat = clock.now
        named += watch.tick(workers)
    assert [(entry[0], round(entry[1], 2)) for entry in named] == [(silent, 1.25)]


def test_a_stall_of_the_supervisor_is_not_the_workers_silence() -> None:
    clock = Clock()
    watch = HeartbeatWatch(1.0, clock)
    quiet = worker(clock.now)
    assert ticks(watch, clock, [quiet], 2) == []  # silent 0.5 s so far
    clock.now += 5.0  # our loop held for 5 s: its heartbeats may wait unread in the channel
    assert watch.tick([quiet]) == []
    assert ticks(watch, clock, [quiet], 1) == []  # 0.5 before, a period for the late tick, one more: 1.0
    assert [entry[0] for entry in ticks(watch, clock, [quiet], 1)] == [quiet]
