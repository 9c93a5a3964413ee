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
from authdns.zones.zonediff import ZoneDiff, diff_zones, removed_share, zone_delta
from authdns.zones.zonefile import (ROOT_ZONE_STEM, Problem, is_zone_file_name, not_yaml_hint, origin_from_path,
                                    read_zone_text, wants_a_hint)

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
        return None, [Unreadable(where, f"cannot read: {error.strerror}")]
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
    retry: list[str] = field(default_factory=list)  # files that could not be read: loaded again soon
    save_error: str | None = None  # the remembered serials could not be saved (the zones are served)
    notes: list[str] = field(default_factory=list)  # what the guard held, took or kept, for the log
    wake: float | None = None  # monotonic time something held is due another look


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


class ZoneDirError(Exception):
    """The zones directory cannot be listed (permissions, descriptors): the message says
    why, in one line. The zones already served keep serving."""


@dataclass(frozen=True, slots=True)
class ReloadPolicy:
    """What a watched reload waits for before it takes a change (README, "Reloading
    zones"): ``settle`` seconds of quiet for a file; a change that removes more than
    ``removal_share`` of a zone's records, or a file that does not end with a line break
    (written only in part, most likely), held ``removal_hold`` seconds and taken if still
    unchanged; a deleted file's zone kept ``delete_grace`` seconds."""

    settle: float = 0.5
    removal_share: float = 0.5
    removal_hold: float = 3.0
    delete_grace: float = 3.0


@dataclass(slots=True)
class Guard:
    """One guarded load's view and memory, filled in the load thread. Like the
    ``SerialStore``, a copy is made for each load and kept when its result is.

    ``written``: file name → seconds since the watcher last saw it written; ``gone``:
    path → monotonic time its file was first found missing; ``held``: path → the zone
    held and since when (monotonic); ``wake``: when something held is due another look."""

    policy: ReloadPolicy
    now: float
    written: Mapping[str, float] = field(default_factory=dict)
    gone: dict[str, float] = field(default_factory=dict)
    held: dict[str, tuple[Zone, float]] = field(default_factory=dict)
    wake: float | None = None

    def copy(self, now: float, written: Mapping[str, float]) -> "Guard":
        return Guard(self.policy, now, written, dict(self.gone), dict(self.held))

    def due(self, after: float) -> None:
        at = self.now + max(after, 0.01)
        self.wake = at if self.wake is None else min(self.wake, at)

    def unsettled(self, path: Path) -> float:
        """Seconds until ``path`` has been quiet for ``settle``: no write seen by the
        watcher, and a change time at least that old (which also covers writes made
        before the watch began, or into a directory swapped in)."""
        quiet = self.written.get(path.name, float("inf"))
        try:
            changed = time.time() - path.stat().st_ctime
        except OSError:
            changed = float("inf")  # gone or unreadable: the load says so
        if changed >= -1.0:  # a change time in the future (the clock set back) tells nothing
            quiet = min(quiet, max(changed, 0.0))
        return max(0.0, self.policy.settle - quiet)


class Unreadable(Problem):
    """A file that could not be read (descriptors, permissions, I/O), as opposed to one
    whose content is wrong: worth loading again without waiting for a change."""

    __slots__ = ()


def canonical_name(origin: Name) -> str:
    """The file name that names ``origin`` plainly: lowercase, no trailing dot, ``.yaml``
    (``root.yaml`` for the root)."""
    if origin == names.ROOT:
        return f"{ROOT_ZONE_STEM}.yaml"
    stem = names.to_text(origin)[:-1]
    return f"{stem}..yaml" if stem == ROOT_ZONE_STEM else f"{stem}.yaml"


def _by_origin(files: list[Path]) -> dict[Name | None, list[Path]]:
    """Zone files grouped by the origin their names give (None: no origin)."""
    groups: dict[Name | None, list[Path]] = {}
    for path in files:
        groups.setdefault(_origin_or_none(path), []).append(path)
    return groups


def _claimant(origin: Name, paths: list[Path], served: Zone | None) -> Path:
    """Of several files naming one origin, the one that serves it: the one serving it
    now, else the plainly named one, else the first in name order."""
    for path in paths:
        if served is not None and served.path == str(path):
            return path
    return min(paths, key=lambda path: (path.name != canonical_name(origin), path.name))


def one_file_per_origin(origin: Name, paths: list[Path], served: Zone | None = None) -> tuple[Path, list[Problem]]:
    """Of several files naming ``origin`` (any spelling), the one that serves it
    (``_claimant``) and an error for each of the others, which are ignored."""
    chosen = _claimant(origin, paths, served)
    mark = " (served)" if served is not None and served.path == str(chosen) else ""
    return chosen, [Problem(Where(str(other), 1, 1), (
        f"zone {names.to_text(origin)} is already named by {chosen}{mark}; file names are compared "
        "without case or a trailing dot, so this file is ignored: remove or rename one of them"))
        for other in paths if other != chosen]


def duplicate_origin_problems(files: list[Path]) -> list[Problem]:
    """``check``'s view of the rule ``load_snapshot`` applies: an error for every file
    that names an origin another file already names."""
    return [problem for origin, paths in _by_origin(files).items() if origin is not None and len(paths) > 1
            for problem in one_file_per_origin(origin, paths)[1]]


def list_zone_files(zone_dir: Path) -> list[Path]:
    """The zone files of ``zone_dir``, sorted; ``ZoneDirError`` when it cannot be listed."""
    try:
        return zone_files([zone_dir])
    except OSError as error:
        raise ZoneDirError(f"cannot read zone directory {zone_dir}: {error.strerror}") from None


def load_snapshot(zone_dir: Path, previous: Snapshot = EMPTY, serials: SerialStore | None = None,
                  save: bool = True, parsed: Snapshot = EMPTY, hold: frozenset[str] = frozenset(),
                  max_bytes: int = DEFAULT_MAX_ZONE_BYTES, ixfr_history: int = 0,
                  guard: Guard | None = None) -> LoadResult:
    """Load every zone file in ``zone_dir``. ``hold``: names of files being written,
    kept at their served version (serve/service.py reads them once their writer is done).
    ``ixfr_history``: how many steps of each zone's history to keep for IXFR.
    ``guard``: a watched reload's rules (``ReloadPolicy``); None takes every change at
    once (start-up, SIGHUP, ``ctl reload``, ``check``).

    A file whose bytes did not change keeps its ``Zone`` (not parsed again). A file that
    fails keeps the previous version of its zone, if any (the operator's mistake must not
    take a working zone off the air); its problems are in the result. A zone whose file
    is gone is no longer served (under a guard: once it has been gone ``delete_grace``).
    Two files for one origin in any spelling (``x.yaml``, ``X.yaml``, ``x..yaml``,
    ``x.yml``): the one serving it keeps it (at start: the plainly named one, else the
    first in name order) and the other is an error. Runs in a worker thread, off the
    query path. Raises ``ZoneDirError`` when the directory cannot be listed.
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
    files = list_zone_files(zone_dir)
    result.problems.extend(unserved_files(zone_dir))
    for origin, paths in _by_origin(files).items():
        served = previous.zones.get(origin) if origin is not None else None
        if origin is not None and len(paths) > 1:
            chosen, problems = one_file_per_origin(origin, paths, served)
            result.problems.extend(problems)
            paths = [chosen]
        if (guard is not None and served is not None and served.path != str(paths[0])
                and _kept_while_gone(served, zones, result, guard)):
            # Renamed to another spelling, or a variant left beside a file deleted for a
            # moment: the deleted file keeps the zone until its grace ends.
            continue
        for path in paths:
            _load_one(path, served, zones, result, serials, parsed, hold, max_bytes, ixfr_history, guard)
    for origin, gone in previous.zones.items():
        if origin in zones:
            if guard is not None and zones[origin] is not gone:
                guard.gone.pop(gone.path, None)
            continue
        if guard is not None and _kept_while_gone(gone, zones, result, guard):
            continue
        result.changes.append(ZoneChange(origin, gone.path, gone.serial, None))
    if result.changes:  # the cross-zone rules only need a look when something changed
        result.problems.extend(cross_zone_problems(zones))
    result.snapshot = Snapshot(MappingProxyType(zones))
    try:
        if save:
            serials.save()
    except OSError as error:
        result.save_error = f"cannot save remembered serials to {serials.path}: {error.strerror}"
    return result


def _kept_while_gone(served: Zone, zones: dict[Name, Zone], result: LoadResult, guard: Guard) -> bool:
    """A served zone whose file is missing keeps serving for ``delete_grace`` after it
    was first found missing (delete-then-create, ``git checkout``, rsync); True while it
    does. A file still there is not gone."""
    if Path(served.path).exists():
        guard.gone.pop(served.path, None)
        return False
    since = guard.gone.setdefault(served.path, guard.now)
    left = since + guard.policy.delete_grace - guard.now
    if left <= 0:
        guard.gone.pop(served.path, None)
        return False
    if since == guard.now:
        result.notes.append(f"zone file deleted origin={names.to_text(served.origin)} file={served.path}; the zone "
                            f"keeps serving for {guard.policy.delete_grace:g} s in case the file returns")
    zones[served.origin] = served
    guard.due(left)
    return True


def _load_one(path: Path, before: Zone | None, zones: dict[Name, Zone], result: LoadResult, serials: SerialStore,
              parsed: Snapshot, hold: frozenset[str], max_bytes: int, ixfr_history: int, guard: Guard | None) -> None:
    """One zone file into ``zones`` (or its served version kept), under the guard's rules."""
    same = before is not None and before.path == str(path)
    if path.name in hold:  # being written: keep what is served, read it when it is done
        if before is not None and same:
            zones[before.origin] = before
            result.unchanged += 1
        return
    if guard is not None and (wait := guard.unsettled(path)) > 0:
        if before is not None:  # written a moment ago: not yet; looked at again when it is quiet
            zones[before.origin] = before
            result.unchanged += 1
        guard.due(wait)
        return
    held = guard.held.get(str(path)) if guard is not None else None
    earlier = held[0] if held is not None else parsed.zones.get(before.origin if before else _origin_or_none(path))
    zone, problems = load_zone_file(path, serials, before, earlier, max_bytes)
    result.problems.extend(problems)
    if zone is None:
        result.failed.append(str(path))
        if any(isinstance(problem, Unreadable) for problem in problems):
            result.retry.append(str(path))
        if before is not None and same:
            zones[before.origin] = before  # this file's last good version
        if guard is not None:
            guard.held.pop(str(path), None)
        return
    if zone is not before and guard is not None and _held(path, zone, before, result, guard):
        if before is not None:
            zones[before.origin] = before
        return
    zones[zone.origin] = zone
    serials.remember(names.to_text(zone.origin), zone.content_hash, zone.serial)
    if zone is before:
        result.unchanged += 1
        return
    if before is not None and not zone.history:  # (a zone parsed by a dropped attempt has it)
        zone = zones[zone.origin] = with_history(zone, before, ixfr_history)
    result.loaded.append(zone)
    result.changes.append(ZoneChange(zone.origin, zone.path, before.serial if before else None, zone.serial,
                                     diff_zones(before, zone) if before else None))


def _held(path: Path, zone: Zone, before: Zone | None, result: LoadResult, guard: Guard) -> bool:
    """Whether a parsed change waits: it removes more than ``removal_share`` of the
    served zone's records, or the file does not end with a line break (a writer cut
    short leaves a valid, smaller zone, its last value maybe cut too). Held changes are
    taken once they have stayed the same for ``removal_hold``; a new content starts
    the wait again."""
    policy = guard.policy
    reasons = []
    if not _ends_with_line_break(path):
        reasons.append("the file does not end with a line break")
    if before is not None and policy.removal_share < 1:
        share = removed_share(before, zone)
        if share > policy.removal_share:
            reasons.append(f"it removes {share:.0%} of the zone's records (over --removal-share "
                           f"{policy.removal_share:.0%})")
    key = str(path)
    if not reasons:
        guard.held.pop(key, None)
        return False
    held = guard.held.get(key)
    origin = names.to_text(zone.origin)
    if held is None or held[0].content_hash != zone.content_hash:
        guard.held[key] = (zone, guard.now)
        result.notes.append(f"zone change held origin={origin} file={path}: {' and '.join(reasons)}; it is served if "
                            f"unchanged for {policy.removal_hold:g} s (`authdns ctl reload` takes it now)")
        since = guard.now
    else:
        since = held[1]
    if guard.now - since >= policy.removal_hold:
        del guard.held[key]
        result.notes.append(f"zone change taken after {guard.now - since:.1f} s unchanged origin={origin} file={path}")
        return False
    guard.due(since + policy.removal_hold - guard.now)
    return True


def _ends_with_line_break(path: Path) -> bool:
    try:
        with open(path, "rb") as stream:
            stream.seek(0, 2)
            if stream.tell() == 0:
                return True  # empty: an error of its own
            stream.seek(-1, 2)
            return stream.read(1) in (b"\n", b"\r")
    except OSError:
        return True  # unreadable now: the load reported it


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
    for note in result.notes:
        log.info("%s", note)
    if result.save_error is not None:
        log.error("%s; the zones are served, but a generated serial may not stay the same across a restart "
                  "(retrying)", result.save_error)
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

    def written_ages(self) -> dict[str, float]: ...


class ZoneLoader:
    """Loads the zones directory, first at start and then on each reload, and keeps
    what the loads leave behind: the remembered serials (saved to the state directory),
    the guard's memory (changes held, files found missing), every file's problems at the
    last load, the files that did not load, when each served zone was loaded, and the
    reload counts. Event-loop thread; the parsing runs in ``asyncio.to_thread``."""

    def __init__(self, zone_dir: Path, serials: SerialStore, max_bytes: int = DEFAULT_MAX_ZONE_BYTES,
                 ixfr_history: int = 0, writes: WriteTracker | None = None,
                 policy: ReloadPolicy = ReloadPolicy()) -> None:
        self.zone_dir, self.max_bytes, self.ixfr_history = zone_dir, max_bytes, ixfr_history
        self.writes = writes  # None: nothing watches the directory (--no-watch)
        self.serials = serials
        self.guard = Guard(policy, time.monotonic())
        self.problems: dict[str, list[str]] = {}  # file -> its problems at the last load
        self.failed_files: list[str] = []  # files not loaded at the last load
        self.loaded_at: dict[str, float] = {}  # zone origin (text) -> wall time of its served version
        self.reloads = 0
        self.failed_reloads = 0  # reloads in which some file could not be loaded

    async def first(self) -> LoadResult:
        """The load at start: every file parsed, every change taken (nothing is served
        yet). Raises ``ZoneDirError``."""
        if self.serials.warning:
            log.error("%s", self.serials.warning)
        result = await asyncio.to_thread(load_snapshot, self.zone_dir, EMPTY, self.serials,
                                         max_bytes=self.max_bytes, ixfr_history=self.ixfr_history)
        self._note(result, first=True)
        return result

    async def again(self, served: Snapshot, guarded: bool = False) -> LoadResult:
        """A reload beside the ``served`` snapshot: files whose bytes did not change keep
        their zone, a file that fails keeps its served version. ``guarded`` (a reload the
        watcher started, or a follow-up): the ``ReloadPolicy`` applies; otherwise (SIGHUP,
        ``ctl reload``: the operator says the files are ready) every change is taken now.
        Raises ``ZoneDirError`` (counted as a failed reload)."""
        self.reloads += 1
        try:
            result = await self._load_settled(served, guarded)
        except ZoneDirError:
            self.failed_reloads += 1
            raise
        if result.failed:
            self.failed_reloads += 1
        self._note(result, first=False)
        return result

    async def _load_settled(self, served: Snapshot, guarded: bool) -> LoadResult:
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
            guard = self.guard.copy(time.monotonic(), writes.written_ages() if writes is not None else {}) \
                if guarded else None
            result = await asyncio.to_thread(load_snapshot, self.zone_dir, served, serials, False, parsed,
                                             hold, self.max_bytes, self.ixfr_history, guard)
            parsed = result.snapshot
            dirty = writes.dirty_since(seq) - hold if writes is not None else frozenset()
            if not dirty:
                break
            hold |= dirty
            log.info("zone files written during the load; loading again without them files=%s attempt=%d",
                     ",".join(sorted(Path(path).name for path in dirty)), attempt + 1)
        self.serials = serials
        if guard is not None:
            self.guard = guard
            result.wake = guard.wake
        else:
            self.guard = Guard(self.guard.policy, time.monotonic())  # every change taken: nothing held or missing
        try:
            await asyncio.to_thread(serials.save)
        except OSError as error:
            result.save_error = f"cannot save remembered serials to {serials.path}: {error.strerror}"
        return result

    def _note(self, result: LoadResult, first: bool) -> None:
        """Log the load, and keep its problems and load times for ``status``."""
        log_load(result, first)
        problems: dict[str, list[str]] = {}
        for problem in result.problems:
            problems.setdefault(problem.where.path, []).append(str(problem))
        if result.save_error is not None and self.serials.path is not None:
            problems.setdefault(str(self.serials.path), []).append(result.save_error)
        self.problems = problems
        self.failed_files = list(result.failed)
        now = time.time()
        for change in result.changes:
            origin = names.to_text(change.origin)
            if change.new_serial is None:
                self.loaded_at.pop(origin, None)
            else:
                self.loaded_at[origin] = now
