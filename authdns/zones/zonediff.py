"""What changed between two versions of a zone, RRset by RRset: counts for the reload
log line and ``authdns ctl reload`` (``diff_zones``), records for IXFR (``zone_delta``).
Pure."""

from __future__ import annotations

from dataclasses import dataclass

from dnslib import QTYPE

from authdns.base.rrtypes import WireRdata
from authdns.zones.zone import Records, RRset, Zone, ZoneDelta, rdata_key


def _rdata_key(rdata) -> object:
    """What tells two records apart: the wire form where it is held (cheaper than
    rendering it as text), else dnslib's text."""
    return rdata.data if isinstance(rdata, WireRdata) else repr(rdata)


@dataclass(frozen=True, slots=True)
class ZoneDiff:
    added: int  # RRsets (owner, type) only the new version has
    removed: int  # RRsets only the old version had
    changed: int  # RRsets in both, with other TTL, data or balancing

    def __str__(self) -> str:
        return f"rrsets added={self.added} removed={self.removed} changed={self.changed}"


def _rrsets(zone: Zone) -> dict[tuple[bytes, int], tuple]:
    return {(rrset.name, rrset.rtype): (rrset.ttl, frozenset(map(_rdata_key, rrset.rdatas)), rrset.balance)
            for node in zone.nodes.values() for rrset in node.rrsets.values()}


def diff_zones(old: Zone, new: Zone) -> ZoneDiff:
    before, after = _rrsets(old), _rrsets(new)
    changed = sum(1 for key in before.keys() & after.keys() if before[key] != after[key])
    return ZoneDiff(len(after.keys() - before.keys()), len(before.keys() - after.keys()), changed)


def _by_key(zone: Zone) -> dict[tuple[bytes, int], RRset]:
    return {(rrset.name, rrset.rtype): rrset for node in zone.nodes.values() for rrset in node.rrsets.values()
            if rrset.rtype != QTYPE.SOA}


def _not_in(these: dict[tuple[bytes, int], RRset], those: dict[tuple[bytes, int], RRset]) -> list[Records]:
    """The records of ``these`` that ``those`` lacks, RRset by RRset; all of an RRset
    whose TTL differs (so that a secondary ends up with the new TTL)."""
    found: list[Records] = []
    for key, rrset in these.items():
        other = those.get(key)
        if other is not None and other.ttl == rrset.ttl and other.rdatas == rrset.rdatas:
            continue  # the common case, cheaply: the same records in the same order
        if other is None or other.ttl != rrset.ttl:
            found.append((rrset.name, rrset.rtype, rrset.ttl, rrset.rdatas))
            continue
        present = {rdata_key(rrset.rtype, rdata) for rdata in other.rdatas}
        missing = tuple(rdata for rdata in rrset.rdatas if rdata_key(rrset.rtype, rdata) not in present)
        if missing:
            found.append((rrset.name, rrset.rtype, rrset.ttl, missing))
    return found


def zone_delta(old: Zone, new: Zone) -> ZoneDelta:
    """The records to remove from ``old`` and add to make ``new`` (RFC 1995 §4), in
    zone order. Records compare by canonical rdata; an RRset whose TTL changed is
    removed and added whole."""
    before, after = _by_key(old), _by_key(new)
    return ZoneDelta(old.soa, new.soa, old.serial, new.serial, tuple(_not_in(before, after)),
                     tuple(_not_in(after, before)))


def removed_share(old: Zone, new: Zone) -> float:
    """The share of ``old``'s records that ``new`` lacks (0 to 1), TTLs aside: what the
    reload guard weighs (loader.ReloadPolicy.removal_share), since a file cut short is
    a valid zone with fewer records."""
    if not old.record_count:
        return 0.0
    before, after = _by_key(old), _by_key(new)
    removed = 0
    for key, rrset in before.items():
        other = after.get(key)
        if other is None:
            removed += len(rrset.rdatas)
        elif other.rdatas != rrset.rdatas:
            present = {rdata_key(rrset.rtype, rdata) for rdata in other.rdatas}
            removed += sum(rdata_key(rrset.rtype, rdata) not in present for rdata in rrset.rdatas)
    return removed / old.record_count
