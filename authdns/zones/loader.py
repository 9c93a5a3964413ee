"""Zone files read into snapshots: one file (``load_zone_file``), a whole directory
(``load_snapshot``), and ``ZoneLoader``, the one object that keeps what loading
remembers between loads — generated serials, the retry of files still being written,
each file's problems, when each zone was loaded and how many reloads failed.

The watcher (serve/watcher.py) only says which files changed; the service decides when to
swap the result in. Loads run in a worker thread, off the query path. Nothing here
touches sockets.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping, Protocol

from dnslib import QTYPE

from authdns.base import names
from authdns.base.names import Name
from authdns.base.rrtypes import type_name
from authdns.zones.serials import SerialStore, serial_gt
from authdns.zones.snapshot import EMPTY, Snapshot
from authdns.zones.yamltree import Where
from authdns.zones.zone import Zone, build_zone
from authdns.zones.zonediff import ZoneDiff, diff_zones, zone_delta
from authdns.zones.zonefile import (Problem, is_zone_file_name, not_yaml_hint, origin_from_path, read_zone_text,
                       wants_a_hint)

log = logging.getLogger("authdns")

LOAD_ATTEMPTS = 5  # loads dropped for an overlapping write, before one is taken anyway
DEFAULT_MAX_ZONE_BYTES = 256 << 20  # a million-record zone is about 30 MiB of YAML


def load_zone_file(
    path: Path, serials: SerialStore | None = None, previous: Zone | None = None, parsed: Zone | None = None,
    max_bytes: int = DEFAULT_MAX_ZONE_BYTES,
) -> tuple[Zone | None, list[Problem]]:
    """Read, parse and validate one file.

    An SOA without a serial gets one from ``serials`` (``zones/serials.py``: the same serial
    for the same content, a greater one for new content). ``previous`` is the version
    being served: when the file's bytes are unchanged it is returned as it is, not
    parsed again; when they changed but an explicit serial did not grow, that is warned
    about (secondaries would not transfer the change, RFC 1996 §4.7).
    """
    where = Where(str(path), 1, 1)
    if not is_zone_file_name(path.name):
        return None, [Problem(where, not_yaml_hint(path))]
    try:
        origin = origin_from_path(path)
    except names.BadName as error:
        return None, [Problem(where, f"file name does not give a zone origin: {error}")]
    try:
        size = path.stat().st_size
        if size > max_bytes:  # checked before reading: a huge file must not cost the memory
            return None, [Problem(where, f"file is {size:,} octets, over the limit of {max_bytes:,} "
                                         f"(--max-zone-size)")]
        data = path.read_bytes()
    except OSError as error:
        return None, [Problem(where, f"cannot read: {error.strerror}")]
    if len(data) > max_bytes:  # grew between the two looks
        return None, [Problem(where, f"file is {len(data):,} octets, over the limit of {max_bytes:,} "
                                     f"(--max-zone-size)")]
    content_hash = hashlib.sha256(data).hexdigest()
    if previous is not None and previous.content_hash == content_hash and previous.path == str(path):
        return previous, []
    if parsed is not None and parsed.content_hash == content_hash and parsed.path == str(path):
        return parsed, []  # parsed by a load that was dropped (a write overlapped it): same bytes
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, [Problem(where, f"not UTF-8 text (byte {error.start})")]
    serials = serials if serials is not None else SerialStore()
    default_serial = serials.serial_for(names.to_text(origin), content_hash, previous.serial if previous else None)
    source, problems = read_zone_text(text, str(path), origin, default_serial=default_serial)
    if source is None or any(not p.warning for p in problems):
        if source is not None:
            # Report the whole-zone findings too, so one `check` run lists everything.
            _, more = build_zone(source)
            problems = problems + more
        return None, problems
    zone, more = build_zone(source)
    problems = problems + more
    if zone is not None:
        zone = replace(zone, content_hash=content_hash)
        problems += _serial_problems(zone, serials, previous)
    return zone, problems


def _serial_problems(zone: Zone, serials: SerialStore, previous: Zone | None) -> list[Problem]:
    """An explicit serial that did not grow although the content changed (compared with
    the version served, else with the last one remembered)."""
    if not zone.serial_given:
        return []
    if previous is not None:
        old_hash, old_serial = previous.content_hash, previous.serial
    elif (remembered := serials.remembered(names.to_text(zone.origin))) is not None:
        old_hash, old_serial = remembered
    else:
        return []
    if old_hash == zone.content_hash or serial_gt(zone.serial, old_serial):
        return []
    where = zone.soa.where or Where(zone.path, 1, 1)
    return [Problem(where, f"the content changed but the SOA serial did not increase ({old_serial} -> "
                           f"{zone.serial}): secondaries will not transfer the change (RFC 1996 §4.7)", True)]


def _origin_or_none(path: Path) -> Name | None:
    try:
        return origin_from_path(path)
    except names.BadName:
        return None


def zone_files(paths: Iterable[Path]) -> list[Path]:
    """Expand directories into their zone files (sorted); keep files as given."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if is_zone_file_name(p.name) and p.is_file()))
        else:
            found.append(path)
    return found


def unserved_files(directory: Path) -> list[Problem]:
    """A warning for each file in a zones directory that is not a zone file (say
    ``example.com.zone`` copied from BIND): never skipped without a word."""
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return []
    return [Problem(Where(str(path), 1, 1), not_yaml_hint(path), True) for path in entries
            if wants_a_hint(path.name) and path.is_file()]


def cross_zone_problems(zones: Mapping[Name, Zone]) -> list[Problem]:
    """Rules that look across served zones: MX to another zone's CNAME, reversed MX."""
    problems: list[Problem] = []
    snapshot = Snapshot(zones)
    for zone in zones.values():
        for rrset in zone.rrsets():
            if rrset.rtype not in (QTYPE.MX, QTYPE.NS):
                continue
            for target in rrset.targets:
                where = rrset.where or Where(zone.path, 1, 1)
                other = snapshot.find_zone(target)
                if other is None or other is zone:
                    continue
                owner_text = names.to_text(rrset.name)
                node = other.nodes.get(target)
                if node is not None and QTYPE.CNAME in node.rrsets:
                    problems.append(Problem(where, f"{type_name(rrset.rtype)} at {owner_text} names {names.to_text(target)}, "
                                                   f"a CNAME in zone {names.to_text(other.origin)} (RFC 2181 §10.3)", True))
                if rrset.rtype == QTYPE.MX and target == other.origin:
                    problems.append(Problem(where, f"MX at {owner_text} points at {names.to_text(target)}, the apex of "
                                                   "another served zone: is the record reversed?", True))
    return problems


@dataclass(frozen=True, slots=True)
class ZoneChange:
    """What a reload did to one zone, for its log line and ``authdns ctl reload``."""

    origin: Name
    path: str
    old_serial: int | None  # None: newly served
    new_serial: int | None  # None: no longer served (its file is gone)
    diff: ZoneDiff | None = None


@dataclass(slots=True)
class LoadResult:
    snapshot: Snapshot
    problems: list[Problem] = field(default_factory=list)
    loaded: list[Zone] = field(default_factory=list)  # zones (re)built by this load
    failed: list[str] = field(default_factory=list)  # paths that did not load
    changes: list[ZoneChange] = field(default_factory=list)  # added, changed and removed zones
    unchanged: int = 0  # files whose bytes had not changed: not parsed again


def with_history(zone: Zone, before: Zone, keep: int) -> Zone:
    """``zone`` with the steps IXFR answers from: ``before``'s and the one from it, the
    last ``keep``. When the serial did not grow, a step back or sideways cannot be told
    to a secondary (RFC 1995 §4 and RFC 1982 order): the history starts again (old
    serials get AXFR), unless the records are the same as before (a comment or a
    transfer rule edited), which keeps it."""
    if keep <= 0:
        return zone
    if not serial_gt(zone.serial, before.serial):
        if before.history and _same_records(before, zone):
            return replace(zone, history=before.history[-keep:])
        return zone
    steps = before.history + (zone_delta(before, zone),)
    return replace(zone, history=steps[-keep:])


def _same_records(before: Zone, zone: Zone) -> bool:
    """Every record and TTL alike, the SOA's too (the history's last step ends with it)."""
    if (before.soa.ttl, before.soa.rdatas) != (zone.soa.ttl, zone.soa.rdatas):
        return False
    delta = zone_delta(before, zone)
    return not delta.removed and not delta.added


def load_snapshot(zone_dir: Path, previous: Snapshot = EMPTY, serials: SerialStore | None = None,
                  save: bool = True, parsed: Snapshot = EMPTY, hold: frozenset[str] = frozenset(),
                  max_bytes: int = DEFAULT_MAX_ZONE_BYTES, ixfr_history: int = 0) -> LoadResult:
    """Load every zone file in ``zone_dir``. ``hold``: names of files being written,
    kept at their served version (serve/service.py reads them once their writer is done).
    ``ixfr_history``: how many steps of each zone's history to keep for IXFR.

    A file whose bytes did not change keeps its ``Zone`` (not parsed again). A file that
    fails keeps the previous version of its zone, if any (the operator's mistake must not
    take a working zone off the air); its problems are in the result. A zone whose file
    is gone is no longer served. Two files for one origin (``x.yaml`` and ``x.yml``):
    the first in name order wins. Runs in a worker thread, off the query path.
    """
    serials = serials if serials is not None else SerialStore()
    zones: dict[Name, Zone] = {}
    result = LoadResult(EMPTY)
    if not zone_dir.is_dir():
        # Missing for a moment (`rm -rf zones && cp -r new zones`) or gone: keep serving
        # what we have rather than take every zone off the air; the watcher sees it return.
        result.snapshot = previous
        result.problems.append(Problem(Where(str(zone_dir), 1, 1), "zone directory is missing or not a directory; "
                                       "the zones already served keep serving", True))
        return result
    result.problems.extend(unserved_files(zone_dir))
    for path in zone_files([zone_dir]):
        try:
            before = previous.zones.get(origin_from_path(path))
        except names.BadName:
            before = None
        if path.name in hold:  # being written: keep what is served, read it when it is done
            if before is not None and before.path == str(path):
                zones.setdefault(before.origin, before)
                result.unchanged += 1
            continue
        zone, problems = load_zone_file(path, serials, before, parsed.zones.get(before.origin if before else
                                                                                 _origin_or_none(path)), max_bytes)
        result.problems.extend(problems)
        if zone is None:
            result.failed.append(str(path))
            if before is not None and before.path == str(path):
                zones.setdefault(before.origin, before)  # this file's last good version
            continue
        if zone.origin in zones:
            result.problems.append(Problem(Where(str(path), 1, 1), f"zone {names.to_text(zone.origin)} "
                                           f"is already loaded from {zones[zone.origin].path}; this file is ignored"))
            continue
        zones[zone.origin] = zone
        serials.remember(names.to_text(zone.origin), zone.content_hash, zone.serial)
        if zone is before:
            result.unchanged += 1
            continue
        if before is not None and not zone.history:  # (a zone parsed by a dropped attempt has it)
            zone = zones[zone.origin] = with_history(zone, before, ixfr_history)
        result.loaded.append(zone)
        result.changes.append(ZoneChange(zone.origin, zone.path, before.serial if before else None, zone.serial,
                                         diff_zones(before, zone) if before else None))
    for origin, gone in previous.zones.items():
        if origin not in zones:
            result.changes.append(ZoneChange(origin, gone.path, gone.serial, None))
    if result.changes:  # the cross-zone rules only need a look when something changed
        result.problems.extend(cross_zone_problems(zones))
    result.snapshot = Snapshot(MappingProxyType(zones))
    try:
        if save:
            serials.save()
    except OSError as error:
        # Generated serials still grow with the time; only their stability across restarts suffers.
        result.problems.append(Problem(Where(str(serials.path), 1, 1), f"cannot save remembered serials: "
                                       f"{error.strerror}", True))
    return result


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


class WriteTracker(Protocol):
    """What the watcher knows about writers at work (watcher.ZoneWatcher)."""

    seq: int  # zone-file events seen so far

    def dirty_since(self, seq: int) -> frozenset[str]: ...

    def open_writers(self) -> frozenset[str]: ...


class ZoneLoader:
    """Loads the zones directory, first at start and then on each reload, and keeps
    what the loads leave behind: the remembered serials (saved to the state directory),
    every file's problems at the last load, the files that did not load, when each
    served zone was loaded, and the reload counts. Event-loop thread; the parsing runs in
    ``asyncio.to_thread``."""

    def __init__(self, zone_dir: Path, serials: SerialStore, max_bytes: int = DEFAULT_MAX_ZONE_BYTES,
                 ixfr_history: int = 0, writes: WriteTracker | None = None) -> None:
        self.zone_dir, self.max_bytes, self.ixfr_history = zone_dir, max_bytes, ixfr_history
        self.writes = writes  # None: nothing watches the directory (--no-watch)
        self.serials = serials
        self.problems: dict[str, list[str]] = {}  # file -> its problems at the last load
        self.failed_files: list[str] = []  # files not loaded at the last load
        self.loaded_at: dict[str, float] = {}  # zone origin (text) -> wall time of its served version
        self.reloads = 0
        self.failed_reloads = 0  # reloads in which some file could not be loaded

    async def first(self) -> LoadResult:
        """The load at start: every file parsed."""
        if self.serials.warning:
            log.error("%s", self.serials.warning)
        result = await asyncio.to_thread(load_snapshot, self.zone_dir, EMPTY, self.serials,
                                         max_bytes=self.max_bytes, ixfr_history=self.ixfr_history)
        self._note(result, first=True)
        return result

    async def again(self, served: Snapshot) -> LoadResult:
        """A reload beside the ``served`` snapshot: files whose bytes did not change keep
        their zone, a file that fails keeps its served version."""
        result = await self._load_settled(served)
        self.reloads += 1
        if result.failed:
            self.failed_reloads += 1
        self._note(result, first=False)
        return result

    async def _load_settled(self, served: Snapshot) -> LoadResult:
        """A load in which no file was read while being written. A file written during
        the load (or still open for writing) may have been read half-way, and half a YAML
        file can be a valid, smaller zone: the load is done again with such files held at
        their served version; the watcher reloads them once their writer is done. Files
        the dropped load parsed are not parsed again."""
        writes = self.writes
        parsed = EMPTY
        hold = writes.open_writers() if writes is not None else frozenset()
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            seq = writes.seq if writes is not None else 0
            serials = self.serials.copy()
            result = await asyncio.to_thread(load_snapshot, self.zone_dir, served, serials, False, parsed,
                                             hold, self.max_bytes, self.ixfr_history)
            parsed = result.snapshot
            dirty = writes.dirty_since(seq) - hold if writes is not None else frozenset()
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

    def _note(self, result: LoadResult, first: bool) -> None:
        """Log the load, and keep its problems and load times for ``status``."""
        log_load(result, first)
        problems: dict[str, list[str]] = {}
        for problem in result.problems:
            problems.setdefault(problem.where.path, []).append(str(problem))
        self.problems = problems
        self.failed_files = list(result.failed)
        now = time.time()
        for change in result.changes:
            origin = names.to_text(change.origin)
            if change.new_serial is None:
                self.loaded_at.pop(origin, None)
            else:
                self.loaded_at[origin] = now
