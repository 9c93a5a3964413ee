"""Zone files reloaded the moment they change: watchdog events → a debounce on the
event loop → one reload (``Service.reload``), which parses in a worker thread and swaps
the snapshot with one assignment.

Editors and tools write in every way: in place (truncate, write, close), a temporary
file renamed over the zone file, delete then create, a whole directory replaced
(``git checkout``, ``mv zones.new zones``). Each produces a burst of events; the
debounce waits until the burst has been quiet for ``QUIET`` seconds (at most ``LONGEST``
after its first event), so a burst is one reload and a file is read after its writer
closed it. The watch also covers the parent directory, so a zones directory replaced
as a whole is watched again. Nothing here parses zones or answers queries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Awaitable, Callable

from watchdog.events import (
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from .zonefile import ZONE_FILE_SUFFIXES

log = logging.getLogger("authdns.reload")

QUIET = 0.15  # seconds without events before the reload: a save is several events
LONGEST = 0.6  # ... but never wait longer than this after the first one (changes serve within 1 s)
# A file written in place is read only after its writer closed it (inotify's
# close-after-write), however long it writes, up to this bound.
WRITER_LONGEST = 5.0


def _is_zone_file(path: str) -> bool:
    name = Path(path).name
    return name.endswith(ZONE_FILE_SUFFIXES) and not name.startswith(".")


class _Handler(FileSystemEventHandler):
    """Runs in watchdog's thread: only filters and hands over to the loop."""

    def __init__(self, zone_dir: Path, poke: Callable[[str, str, str], None]) -> None:
        self.zone_dir = zone_dir
        self.poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, (FileOpenedEvent, FileClosedNoWriteEvent)):
            return  # reads (our own loads included) change nothing
        paths = [_text(event.src_path), _text(getattr(event, "dest_path", "") or "")]
        if event.is_directory:
            # The zones directory itself created, moved or deleted (seen by the parent's
            # watch). Its own "modified" events only echo the file events below.
            if event.event_type != "modified" and any(p and Path(p) == self.zone_dir for p in paths):
                self.poke("directory", event.event_type, str(self.zone_dir))
            return
        for path in paths:
            if path and _is_zone_file(path) and Path(path).parent == self.zone_dir:
                self.poke(_kind(event), event.event_type, path)


def _text(path: str | bytes) -> str:
    return path.decode() if isinstance(path, bytes) else path


def _kind(event: FileSystemEvent) -> str:
    """How the event bears on a writer still at work on the file."""
    if isinstance(event, (FileCreatedEvent, FileModifiedEvent)):
        return "writing"
    if isinstance(event, FileClosedEvent):
        return "closed"
    return "settled"  # moved, deleted: nobody writes to that name now


class ZoneWatcher:
    """Watches ``zone_dir`` and calls ``reload()`` once per burst of changes."""

    def __init__(self, zone_dir: Path, reload: Callable[[str], Awaitable[object]]) -> None:
        self.zone_dir = zone_dir.resolve()
        self.reload = reload
        self.loop: asyncio.AbstractEventLoop | None = None
        self.observer: Observer | None = None
        self.watch = None
        self.first_event: float | None = None
        self.last_event = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.running: asyncio.Task | None = None
        self.again = False
        self.reasons: list[str] = []
        self.writing: set[str] = set()  # zone files modified and not yet closed

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.observer = Observer()
        handler = _Handler(self.zone_dir, self._poke_threadsafe)
        self.observer.schedule(handler, str(self.zone_dir.parent), recursive=False)
        self.watch = self.observer.schedule(handler, str(self.zone_dir), recursive=False)
        self.observer.daemon = True
        self.observer.start()
        log.info("watching zone directory %s", self.zone_dir)

    async def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.observer is not None:
            self.observer.stop()
            await asyncio.to_thread(self.observer.join, 5)
        if self.running is not None:
            await asyncio.gather(self.running, return_exceptions=True)

    def _poke_threadsafe(self, kind: str, event_type: str, path: str) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._poke, kind, event_type, path)

    def _poke(self, kind: str, event_type: str, path: str) -> None:
        """An event: note writers at work, (re)arm the debounce timer."""
        now = time.monotonic()
        if kind == "directory":
            self._rewatch()
            self.writing.clear()
        elif kind == "writing":
            self.writing.add(path)
        else:
            self.writing.discard(path)
        if len(self.reasons) < 20:
            self.reasons.append(f"{Path(path).name} {event_type}")
        self.last_event = now
        if self.first_event is None:
            self.first_event = now
        if self.timer is None:
            self.timer = self.loop.call_later(QUIET, self._due)  # type: ignore[union-attr]

    def _due(self) -> None:
        self.timer = None
        now = time.monotonic()
        quiet_until = self.last_event + QUIET
        deadline = (self.first_event or now) + (WRITER_LONGEST if self.writing else LONGEST)
        if (now < quiet_until or self.writing) and now < deadline:
            wake = min(max(quiet_until, now + QUIET / 3), deadline)
            self.timer = self.loop.call_later(wake - now, self._due)  # type: ignore[union-attr]
            return
        if self.running is not None and not self.running.done():
            self.again = True  # events during a reload: one more reload after it
            return
        self._start_reload()

    def _start_reload(self) -> None:
        reasons, self.reasons, self.first_event = self.reasons, [], None
        self.writing.clear()  # a writer that never closed (past WRITER_LONGEST): read what is there
        trigger = "watch: " + ", ".join(dict.fromkeys(reasons))
        self.running = self.loop.create_task(self.reload(trigger))  # type: ignore[union-attr]
        self.running.add_done_callback(self._reloaded)

    def _reloaded(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("reload failed: %r; the previous zones keep serving", task.exception())
        if self.again:
            self.again = False
            if self.timer is None:
                self._start_reload()

    def _rewatch(self) -> None:
        """The zones directory itself was replaced or recreated: watch the new one."""
        if self.observer is None:
            return
        if self.watch is not None:
            try:
                self.observer.unschedule(self.watch)
            except (KeyError, ValueError, OSError):
                pass
            self.watch = None
        if self.zone_dir.is_dir():
            handler = _Handler(self.zone_dir, self._poke_threadsafe)
            try:
                self.watch = self.observer.schedule(handler, str(self.zone_dir), recursive=False)
            except OSError as error:
                log.warning("cannot watch %s again: %s; SIGHUP reloads", self.zone_dir, error)
