"""What changed between two versions of a zone, RRset by RRset: for the reload log line
and ``authdns ctl reload``. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from .rrtypes import WireRdata
from .zone import Zone


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
