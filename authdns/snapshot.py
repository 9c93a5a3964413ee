"""All served zones as one immutable ``Snapshot``, and loading it from a zones directory.

``find_zone()`` picks the closest enclosing zone (RFC 1034 §4.3.2 step 2), so a child
zone served beside its parent answers for its own names. ``load_snapshot()`` reads every
``*.yaml``/``*.yml`` file; a file that fails keeps its previous zone (when there was one)
and its problems are returned for the caller to log. Nothing here touches sockets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

from dnslib import QTYPE

from . import names
from .names import Name
from .yamltree import Where
from .zone import Zone, build_zone
from .zonefile import ZONE_FILE_SUFFIXES, Problem, origin_from_path, read_zone_text


@dataclass(frozen=True, slots=True)
class Snapshot:
    zones: Mapping[Name, Zone]

    def find_zone(self, qname: Name) -> Zone | None:
        """The zone whose origin is the longest suffix of ``qname``, or None (→ REFUSED)."""
        zones = self.zones
        while True:
            zone = zones.get(qname)
            if zone is not None:
                return zone
            if qname == names.ROOT:
                return None
            qname = names.parent(qname)


EMPTY = Snapshot(MappingProxyType({}))


def load_zone_file(path: Path) -> tuple[Zone | None, list[Problem]]:
    """Read, parse and validate one file. The SOA serial defaults to the file's mtime."""
    where = Where(str(path), 1, 1)
    try:
        origin = origin_from_path(path)
    except names.BadName as error:
        return None, [Problem(where, f"file name does not give a zone origin: {error}")]
    try:
        data = path.read_bytes()
        mtime = int(os.stat(path).st_mtime)
    except OSError as error:
        return None, [Problem(where, f"cannot read: {error.strerror}")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, [Problem(where, f"not UTF-8 text (byte {error.start})")]
    source, problems = read_zone_text(text, str(path), origin, default_serial=mtime & 0xFFFFFFFF)
    if source is None or any(not p.warning for p in problems):
        if source is not None:
            # Report the whole-zone findings too, so one `check` run lists everything.
            _, more = build_zone(source)
            problems = problems + more
        return None, problems
    zone, more = build_zone(source)
    return zone, problems + more


def zone_files(paths: Iterable[Path]) -> list[Path]:
    """Expand directories into their zone files (sorted); keep files as given."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix in ZONE_FILE_SUFFIXES and p.is_file()))
        else:
            found.append(path)
    return found


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
                    problems.append(Problem(where, f"{QTYPE[rrset.rtype]} at {owner_text} names {names.to_text(target)}, "
                                                   f"a CNAME in zone {names.to_text(other.origin)} (RFC 2181 §10.3)", True))
                if rrset.rtype == QTYPE.MX and target == other.origin:
                    problems.append(Problem(where, f"MX at {owner_text} points at {names.to_text(target)}, the apex of "
                                                   "another served zone: is the record reversed?", True))
    return problems


@dataclass(slots=True)
class LoadResult:
    snapshot: Snapshot
    problems: list[Problem] = field(default_factory=list)
    loaded: list[Zone] = field(default_factory=list)  # zones (re)built by this load
    failed: list[str] = field(default_factory=list)  # paths that did not load


def load_snapshot(zone_dir: Path, previous: Snapshot = EMPTY) -> LoadResult:
    """Load every zone file in ``zone_dir``.

    A file that fails keeps the previous version of its zone, if any (the operator's
    mistake must not take a working zone off the air); its problems are in the result.
    Two files for one origin (``x.yaml`` and ``x.yml``): the first in name order wins.
    """
    zones: dict[Name, Zone] = {}
    result = LoadResult(EMPTY)
    for path in zone_files([zone_dir]):
        zone, problems = load_zone_file(path)
        result.problems.extend(problems)
        if zone is None:
            result.failed.append(str(path))
            try:
                kept = previous.zones.get(origin_from_path(path))
            except names.BadName:
                kept = None
            if kept is not None:
                zones.setdefault(kept.origin, kept)
            continue
        if zone.origin in zones:
            result.problems.append(Problem(Where(str(path), 1, 1), f"zone {names.to_text(zone.origin)} "
                                           f"is already loaded from {zones[zone.origin].path}; this file is ignored"))
            continue
        zones[zone.origin] = zone
        result.loaded.append(zone)
    result.problems.extend(cross_zone_problems(zones))
    result.snapshot = Snapshot(MappingProxyType(zones))
    return result
