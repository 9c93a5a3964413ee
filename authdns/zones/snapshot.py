"""All served zones as one immutable ``Snapshot``.

``find_zone()`` picks the closest enclosing zone (RFC 1034 §4.3.2 step 2), so a child
zone served beside its parent answers for its own names. Reading zone files into a
snapshot is zones/loader.py's job; nothing here reads files or touches sockets.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from authdns.base import names
from authdns.base.names import Name
from authdns.zones.zone import Zone


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
