"""Zone files reloaded the moment they are ready: watchdog events → a debounce on the
event loop → one reload (``Service.reload``), which parses in a worker thread and swaps
the snapshot with one assignment.

Editors and tools write in every way: in place (truncate, write, close), a temporary
file renamed over the zone file, delete then create, in steps (half now, the rest a
moment later), a whole directory replaced (``git checkout``, ``mv zones.new zones``).
Each produces a burst of events; the debounce waits until the burst has been quiet for
the settle time (``--settle``; at most a second more after its first event), so a burst
is one reload. The watcher also says when each file was last written
(``written_ages``), which files are still open for writing and which were written
during a load: the loader's guard (zones/loader.py) holds a file that is not yet quiet.

Only the zones directory is watched, never its parent (a busy parent would cost a core
in events): a zones directory replaced whole, or a symlink to it swapped, is noticed by
a ``stat`` of its path ten times a second (its device and inode change), and the new
directory is watched. Nothing here parses zones or answers queries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from pathlib import Path
from typing import Awaitable, Callable

from watchdog.events import (
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from authdns.zones.zonefile import is_zone_file_name, wants_a_hint

log = logging.getLogger("authdns.watcher")

QUIET = 0.5  # seconds without events before the reload (the default --settle): a save is several events
LONGEST_EXTRA = 1.0  # ... but never wait more than this beyond the settle time after the first one
DIRECTORY_POLL = 0.1  # seconds between looks at which directory the zones path names
WRITTEN_MEMORY = 300.0  # seconds a file's last write is remembered (far beyond any settle time)
# A file written in place is read only after its writer closed it (inotify's
# close-after-write); until then its served version stays. A writer that keeps a file
# open without writing for this long is taken as done.
WRITER_LONGEST = 5.0


def _is_zone_file(path: str) -> bool:
    return is_zone_file_name(Path(path).name)


class _Handler(FileSystemEventHandler):
    """Runs in watchdog's thread: only filters and hands over to the loop."""

    def __init__(self, watcher: "ZoneWatcher") -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, (FileOpenedEvent, FileClosedNoWriteEvent)):
            return  # reads (our own loads included) change nothing
        real_dir = self.watcher.real_dir
        poke = self.watcher.poke_threadsafe
        paths = [p for p in (_text(event.src_path), _text(getattr(event, "dest_path", "") or "")) if p]
        if event.is_directory and event.event_type == "deleted" and any(Path(p) == real_dir for p in paths):
            poke("directory", event.event_type, str(self.watcher.zone_dir))  # the watched directory itself
            return
        for path in paths:
            where = Path(path)
            if where.parent == real_dir:
                if _is_zone_file(path):
                    poke(_kind(event), event.event_type, path)
                elif wants_a_hint(where.name) and isinstance(event, (FileClosedEvent, FileMovedEvent)):
                    # A master file copied in: a reload names it with the import command.
                    poke("settled", event.event_type, path)
                elif where.name.startswith("..") or event.is_directory or os.path.islink(path):
                    # Kubernetes ConfigMaps swap a `..data` symlink; other layouts swap a
                    # link or a directory the zone files point into: reload to see.
                    poke("settled", event.event_type, path)
            elif path in self.watcher.link_targets:
                poke(_kind(event), event.event_type, path)  # a zone file's symlink target


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

    def __init__(self, zone_dir: Path, reload: Callable[[str], Awaitable[object]], settle: float = QUIET) -> None:
        # inotify does not follow symlinks: the directory is watched where it really is
        # (real_dir); which directory the path names is looked at by its device and
        # inode (_look), so a symlink swapped for another release is noticed and the
        # new target watched (_rewatch).
        self.zone_dir = Path(os.path.abspath(zone_dir))
        self.real_dir = Path(os.path.realpath(self.zone_dir))
        self.directory_id = _directory_id(self.zone_dir)
        self.quiet = max(settle, 0.05)
        self.longest = self.quiet + LONGEST_EXTRA
        self.reload = reload
        self.loop: asyncio.AbstractEventLoop | None = None
        self.observer: Observer | None = None
        self.watch = None
        self.first_event: float | None = None
        self.last_event = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.looker: asyncio.TimerHandle | None = None
        self.running: asyncio.Task | None = None
        self.again = False
        self.reasons: list[str] = []
        self.writing: dict[str, float] = {}  # zone files modified and not yet closed -> last write
        self.written: dict[str, float] = {}  # zone file -> monotonic time of its last event
        self.seq = 0  # zone-file events seen so far
        self.changed: dict[str, int] = {}  # zone file -> seq of its last event
        self.link_targets: dict[str, str] = {}  # where symlinked zone files point -> the zone file's name
        self.link_watches: dict[str, object] = {}  # their directories, watched too

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.observer = Observer()
        self.handler = _Handler(self)
        try:
            self.watch = self.observer.schedule(self.handler, str(self.real_dir), recursive=False)
        except OSError as error:
            log.warning("cannot watch %s: %s; SIGHUP reloads", self.zone_dir, error)
        self.observer.daemon = True
        self.observer.start()
        self.follow_links()
        self.looker = self.loop.call_later(DIRECTORY_POLL, self._look)
        log.info("watching zone directory %s", self.zone_dir)

    async def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.looker is not None:
            self.looker.cancel()
            self.looker = None
        if self.observer is not None:
            self.observer.stop()
            await asyncio.to_thread(self.observer.join, 5)
        if self.running is not None:
            await asyncio.gather(self.running, return_exceptions=True)

    def poke_threadsafe(self, kind: str, event_type: str, path: str) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._poke, kind, event_type, path)

    def _poke(self, kind: str, event_type: str, path: str) -> None:
        """An event: note writers at work, (re)arm the debounce timer."""
        now = time.monotonic()
        self.seq += 1
        if kind == "directory":
            self._rewatch(now)
            self.writing.clear()  # another directory: its files were written before the swap
            self._arm(now, f"{Path(path).name} {event_type}")
            return
        # Files are known by their name in the zones directory (what the loader reads),
        # whether the event came from the directory itself or from a link's target.
        name = self.link_targets.get(path, Path(path).name)
        self.written[name] = now
        if kind == "writing":
            self.writing[name] = now
            self.loop.call_later(WRITER_LONGEST, self._writer_quiet, name)  # type: ignore[union-attr]
        else:
            self.writing.pop(name, None)
        self.changed[name] = self.seq
        self._arm(now, f"{Path(path).name} {event_type}")

    def _arm(self, now: float, reason: str) -> None:
        if len(self.reasons) < 20:
            self.reasons.append(reason)
        self.last_event = now
        if self.first_event is None:
            self.first_event = now
        if self.timer is None:
            self.timer = self.loop.call_later(self.quiet, self._due)  # type: ignore[union-attr]

    def _due(self) -> None:
        self.timer = None
        now = time.monotonic()
        quiet_until = self.last_event + self.quiet
        deadline = (self.first_event or now) + self.longest
        if now < quiet_until and now < deadline:
            wake = min(max(quiet_until, now + self.quiet / 3), deadline)
            self.timer = self.loop.call_later(wake - now, self._due)  # type: ignore[union-attr]
            return
        if self.running is not None and not self.running.done():
            self.again = True  # events during a reload: one more reload after it
            return
        self._start_reload()

    def _start_reload(self) -> None:
        reasons, self.reasons, self.first_event = self.reasons, [], None
        trigger = "watch: " + ", ".join(dict.fromkeys(reasons))
        self.running = self.loop.create_task(self.reload(trigger))  # type: ignore[union-attr]
        self.running.add_done_callback(self._reloaded)

    def dirty_since(self, seq: int) -> frozenset[str]:
        """Names of zone files written since ``seq`` or still open for writing: a load
        that read them may have read half a file."""
        return frozenset(path for path, at in self.changed.items() if at > seq) | self.open_writers()

    def open_writers(self) -> frozenset[str]:
        """Zone files written to and not closed, within the last WRITER_LONGEST seconds:
        the loader keeps their served version until their writer is done."""
        now = time.monotonic()
        return frozenset(name for name, at in self.writing.items() if now - at < WRITER_LONGEST)

    def written_ages(self) -> dict[str, float]:
        """Zone file name → seconds since its last event (the files of a directory
        swapped in count as written then): the loader's guard waits for ``--settle``."""
        now = time.monotonic()
        for name in [name for name, at in self.written.items() if now - at > WRITTEN_MEMORY]:
            del self.written[name]
        return {name: now - at for name, at in self.written.items()}

    def _writer_quiet(self, name: str) -> None:
        """A file written to and never closed, quiet for WRITER_LONGEST: read it as it is."""
        at = self.writing.get(name)
        if at is not None and time.monotonic() - at >= WRITER_LONGEST:
            del self.writing[name]
            self.seq += 1
            self.changed[name] = self.seq
            self._arm(time.monotonic(), f"{name} quiet")

    def follow_links(self) -> None:
        """Watch the directories that symlinked zone files point into, so an edit of the
        target (elsewhere) reloads too. Called at start and after each reload."""
        if self.observer is None:
            return
        targets: dict[str, str] = {}
        try:
            for entry in self.zone_dir.iterdir():
                if _is_zone_file(str(entry)) and entry.is_symlink():
                    targets[os.path.realpath(entry)] = entry.name
        except OSError:
            return
        self.link_targets = targets
        wanted = {os.path.dirname(target) for target in targets} - {str(self.real_dir)}
        for directory in set(self.link_watches) - wanted:
            try:
                self.observer.unschedule(self.link_watches.pop(directory))
            except (KeyError, ValueError, OSError):
                pass
        for directory in wanted - set(self.link_watches):
            try:
                self.link_watches[directory] = self.observer.schedule(self.handler, directory, recursive=False)
            except OSError as error:
                log.warning("cannot watch %s (a zone file links there): %s; SIGHUP reloads", directory, error)

    def _reloaded(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Service.reload logs its own failures and retries; this is the last word on any other.
            log.error("reload failed: %s; the zones served keep serving", task.exception())
        self.follow_links()
        if self.again:
            self.again = False
            if self.timer is None:
                self._start_reload()

    def _look(self) -> None:
        """Which directory the zones path names now (a stat, ten times a second): a
        directory replaced or a symlink swapped has another device and inode."""
        self.looker = self.loop.call_later(DIRECTORY_POLL, self._look)  # type: ignore[union-attr]
        found = _directory_id(self.zone_dir)
        if found != self.directory_id:
            self._poke("directory", "replaced" if found is not None else "missing", str(self.zone_dir))

    def _rewatch(self, now: float) -> None:
        """The zones directory itself was replaced, recreated or removed: watch the new
        one, and count its files as written now (they were not watched while written)."""
        self.directory_id = _directory_id(self.zone_dir)
        if self.observer is None:
            return
        if self.watch is not None:
            try:
                self.observer.unschedule(self.watch)
            except (KeyError, ValueError, OSError):
                pass
            self.watch = None
        self.real_dir = Path(os.path.realpath(self.zone_dir))
        if self.directory_id is None:
            return  # gone for now: _look sees it return
        try:
            self.watch = self.observer.schedule(self.handler, str(self.real_dir), recursive=False)
        except OSError as error:
            log.warning("cannot watch %s again: %s; SIGHUP reloads", self.zone_dir, error)
        try:
            for entry in os.scandir(self.real_dir):
                if _is_zone_file(entry.name):
                    self.written[entry.name] = now
        except OSError:
            pass  # unreadable: the reload says so


def _directory_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the directory ``path`` names (through symlinks), None if none."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino) if stat.S_ISDIR(found.st_mode) else None
