"""What the health monitor must probe for a snapshot: one ``MemberWatch`` per member of
every RRset that declares a check. Pure: reads the snapshot, opens nothing.

- A/AAAA member: its own address (or its ``probe:`` address) on the check's port.
- MX member: the addresses of its exchange: the in-zone A/AAAA we serve (not glue below
  a delegation), or, for an exchange outside our zones, a name for the system resolver.
  An exchange is up while at least one of its addresses is up (``health/monitor.py``).
- ``weighs_rtt``: the member is ``weight: auto`` under ``weighted``, the one case whose
  answers read its rtt (the monitor publishes its rtt moves, nobody else's).
"""

from __future__ import annotations

from dataclasses import replace

from dnslib import QTYPE

from authdns.base import names
from authdns.zones.balancespec import MemberKey, Policy
from authdns.health.monitor import MemberWatch
from authdns.zones.snapshot import Snapshot
from authdns.zones.zone import ADDRESS_TYPES, RRset, member_key


def watch_list(snapshot: Snapshot) -> dict[MemberKey, MemberWatch]:
    watches: dict[MemberKey, MemberWatch] = {}
    for zone in snapshot.zones.values():
        for rrset in zone.rrsets():
            if rrset.balance is not None and rrset.balance.check is not None:
                watches.update(_rrset_watches(snapshot, rrset))
    return watches


def _rrset_watches(snapshot: Snapshot, rrset: RRset) -> dict[MemberKey, MemberWatch]:
    balance = rrset.balance
    assert balance is not None and balance.check is not None
    check = balance.check
    watches = {}
    for rdata, member in zip(rrset.rdatas, balance.members):
        key = member_key(rrset, rdata)
        port = member.probe.port if member.probe is not None and member.probe.port is not None else check.port
        # `weight: auto` weighs by rtt (balancing/ordering.py), so its rtt moves are news to answers
        weighs_rtt = balance.policy is Policy.WEIGHTED and member.weight is None
        if member.probe is not None:
            watch = MemberWatch(check, (member.probe.host,), port)
        elif rrset.rtype == QTYPE.MX:
            exchange = names.from_dnslabel(rdata.label)
            addresses = served_addresses(snapshot, exchange)
            if addresses is None:
                watch = MemberWatch(check, (), port, resolve=names.to_text(exchange))
            else:
                watch = MemberWatch(check, addresses, port)
        else:
            watch = MemberWatch(check, (str(rdata),), port)
        watches[key] = replace(watch, weighs_rtt=weighs_rtt) if weighs_rtt else watch
    return watches


def served_addresses(snapshot: Snapshot, host: names.Name) -> tuple[str, ...] | None:
    """The A and AAAA addresses we serve for ``host``; None when we are not authoritative
    for it: outside our zones, or below a delegation (glue is not ours to trust, RFC 1034
    §4.2.1), so the system resolver must find them."""
    zone = snapshot.find_zone(host)
    if zone is None:
        return None
    if any(zone.nodes.get(a) is not None and zone.nodes[a].is_cut for a in names.ancestors_below(host, zone.origin)):
        return None
    node = zone.nodes.get(host)
    if node is None:
        return ()
    return tuple(str(rdata) for rtype in ADDRESS_TYPES if rtype in node.rrsets
                 for rdata in node.rrsets[rtype].rdatas)
