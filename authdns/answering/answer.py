"""The answer engine: ``resolve(snapshot, qname, qtype) -> Answer``. Pure: no I/O, no bytes,
no randomness, no health — the same snapshot and question always give the same Answer.

It follows the authoritative part of RFC 1034 §4.3.2, with the clarifications of
RFC 2181 (CNAME, glue), RFC 2308 (negative answers), RFC 4592 (wildcards), RFC 6604
(rcode after a CNAME chain), RFC 6672 (DNAME), RFC 8020 (empty non-terminals) and
RFC 8482 (ANY).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping

from dnslib import CLASS, CNAME, QTYPE, TXT

from authdns.base import names

from authdns.base import rrtypes
from authdns.base.names import Name
from authdns.base.protocol import (EDE_NOT_AUTHORITATIVE, EDE_NOT_SUPPORTED, RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED,
                       RCODE_YXDOMAIN)
from authdns.zones.snapshot import Snapshot
from authdns.zones.zone import ADDRESS_TYPES, Node, RRset, Zone, make_rrset

# A CNAME chain longer than this is cut where it stands, and the resolver restarts from
# its last target (RFC 1034 §4.3.2 step 3a); a loop ends earlier, when a name repeats.
# NSD 4.6 has no such bound (it followed 60 links in tests/reference).
MAX_CNAME_CHAIN = 12


@dataclass(frozen=True, slots=True)
class Placed:
    """An RRset as it goes into a section: ``owner`` differs from the RRset's own name
    only for wildcard synthesis. ``required`` marks glue that must fit or set TC
    (RFC 9471 §3: in-domain glue of a referral)."""

    owner: Name
    rrset: RRset
    required: bool = False

    def records(self):  # -> tuple[RR, ...]
        return self.rrset.records_as(self.owner)


class AnswerKind(enum.IntEnum):
    """What a reply is, in the classes response rate limiting counts apart (BIND's and
    NSD's RRL) and the query log names."""

    ANSWER = 1  # records for the question, a CNAME chain's included (RFC 1034 §4.3.2 step 3a)
    NODATA = 2  # the name exists, not with this type (RFC 2308 §2.2)
    NXDOMAIN = 3  # the name does not exist (RFC 2308 §2.1), after a CNAME chain too (RFC 6604)
    REFERRAL = 4  # a delegation: the child's NS in authority, AA clear (RFC 1034 §4.3.2 step 3b)
    REFUSED = 5  # not ours, or not allowed (RFC 1035 §4.1.1)
    ERROR = 6  # any other rcode: FORMERR, SERVFAIL, NOTIMP, YXDOMAIN, BADVERS, NOTAUTH ...


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: int
    authoritative: bool
    answer: tuple[Placed, ...] = ()
    authority: tuple[Placed, ...] = ()
    additional: tuple[Placed, ...] = ()
    qclass: int = CLASS.IN
    ede: int | None = None  # Extended DNS Error info-code for the OPT record (RFC 8914)
    wildcard: Name | None = None  # the wildcard the question matched (RFC 4592 §3.3.1), if it did

    @property
    def kind(self) -> AnswerKind:
        if self.rcode != RCODE_NOERROR:
            return kind_of_rcode(self.rcode)
        if self.answer:
            return AnswerKind.ANSWER
        if not self.authoritative and self.authority:
            return AnswerKind.REFERRAL  # only a referral leaves AA clear with an empty answer
        return AnswerKind.NODATA

    def key(self, qname: Name, qtype: int) -> bytes:
        """The kind (first octet) and what the reply is about: "the same response" to
        response rate limiting (serve/rrl.py), classed as NSD's rrl.c and BIND's
        rate-limit do it, so that random names never open a bucket each:
        - an answer: its name and type; synthesized from a wildcard, the wildcard's
          owner (``*.users.example.test``) instead of the name (RFC 4592 §3.3.1);
        - NXDOMAIN and NODATA: the zone whose SOA is in authority (RFC 2308 §3, §2.2),
          as NSD and BIND (nxdomains-per-second, nodata-per-second) count them;
        - a referral: the delegation point;
        - REFUSED and other errors: the rcode alone, per client prefix (BIND's
          errors-per-second; NSD takes the zone, which a REFUSED reply has none of)."""
        kind = self.kind
        if kind is AnswerKind.ANSWER:
            return answer_key(self.wildcard or qname, qtype)
        if kind is AnswerKind.REFERRAL:
            return bytes((kind,)) + self.authority[0].owner
        if kind is AnswerKind.NODATA or kind is AnswerKind.NXDOMAIN:
            zone = self.negative_zone()
            if zone is not None:
                return bytes((kind,)) + zone
            if kind is AnswerKind.NODATA:  # no SOA to name the zone (CH answers): the name
                return bytes((kind,)) + (self.wildcard or qname)
        return rcode_key(self.rcode)

    def negative_zone(self) -> Name | None:
        """The owner of the SOA a negative answer carries in authority: its zone."""
        for placed in self.authority:
            if placed.rrset.rtype == QTYPE.SOA:
                return placed.owner
        return None


def answer_key(qname: Name, qtype: int) -> bytes:
    """``Answer.key`` of a positive answer: its kind, the name and the type."""
    return bytes((AnswerKind.ANSWER,)) + qname + qtype.to_bytes(2, "big")


def kind_of_rcode(rcode: int) -> AnswerKind:
    """The kind of a reply known only by its rcode (a reject, a transfer, a TSIG error)."""
    if rcode == RCODE_NXDOMAIN:
        return AnswerKind.NXDOMAIN
    if rcode == RCODE_REFUSED:
        return AnswerKind.REFUSED
    return AnswerKind.ANSWER if rcode == RCODE_NOERROR else AnswerKind.ERROR


def rcode_key(rcode: int) -> bytes:
    """``Answer.key`` of a reply known only by its rcode: its kind and the rcode."""
    return bytes((kind_of_rcode(rcode), rcode & 0xFF))


# Not ours: REFUSED with EDE "Not Authoritative" (RFC 8914 §4.21).
REFUSED = Answer(RCODE_REFUSED, authoritative=False, ede=EDE_NOT_AUTHORITATIVE)


@dataclass(slots=True)
class _Builder:
    snapshot: Snapshot
    answer: list[Placed] = field(default_factory=list)
    authority: list[Placed] = field(default_factory=list)
    additional: list[Placed] = field(default_factory=list)
    rcode: int = RCODE_NOERROR
    authoritative: bool = True
    wildcard: Name | None = None  # the wildcard the question itself matched

    def done(self) -> Answer:
        return Answer(self.rcode, self.authoritative, tuple(self.answer), tuple(self.authority), tuple(self.additional),
                      wildcard=self.wildcard)

    def negative(self, zone: Zone, rcode: int) -> None:
        """NXDOMAIN or NODATA: the zone's SOA in authority, TTL min(TTL, MINIMUM) (RFC 2308 §3, §2.2)."""
        self.rcode = rcode
        self.authority.append(Placed(zone.origin, zone.negative_soa))


def resolve(snapshot: Snapshot, qname: Name, qtype: int) -> Answer:
    """Answer an IN-class question from the served zones (RFC 1034 §4.3.2 steps 2-6)."""
    zone = _zone_for(snapshot, qname, qtype)
    if zone is None:
        return REFUSED  # not ours: REFUSED rather than NXDOMAIN (RFC 1034 §4.3.2 step 2)
    builder = _Builder(snapshot)
    visited: set[Name] = set()
    while len(visited) <= MAX_CNAME_CHAIN:
        visited.add(qname)
        target = _resolve_in_zone(builder, zone, qname, qtype)
        if target is None or target in visited:
            break  # answered, or a CNAME loop: what was found so far is the answer
        next_zone = _zone_for(snapshot, target, qtype)
        if next_zone is None:
            break  # a CNAME out of our zones: the resolver follows it (RFC 1034 §4.3.2 step 3a)
        zone, qname = next_zone, target
    _add_additional(builder)
    return builder.done()


def _zone_for(snapshot: Snapshot, qname: Name, qtype: int) -> Zone | None:
    """The closest enclosing zone (RFC 1034 §4.3.2 step 2), except that DS at a zone's
    apex belongs to the parent side of the cut, so when we also serve the parent it
    answers (RFC 4035 §3.1.4.1; as NSD does)."""
    zone = snapshot.find_zone(qname)
    if zone is not None and qtype == QTYPE.DS and qname == zone.origin and qname != names.ROOT:
        parent = snapshot.find_zone(names.parent(qname))
        if parent is not None:
            return parent
    return zone


def _resolve_in_zone(builder: _Builder, zone: Zone, qname: Name, qtype: int) -> Name | None:
    """One step of the algorithm; returns the CNAME target to restart with, or None."""
    cut = _zone_cut(zone, qname, qtype)
    if cut is not None:
        answer_referral(builder, zone, cut)
        return None
    node = zone.nodes.get(qname)
    owner = qname
    if node is None:
        encloser = _closest_encloser(zone, qname)
        dname = zone.nodes[encloser].rrsets.get(rrtypes.DNAME)
        if dname is not None:
            # No data lies below a DNAME (zones/zone.py refuses it), so a DNAME above the name
            # asked is always at its closest encloser, and it wins over wildcards.
            return answer_dname(builder, encloser, dname, qname)
        wildcard = names.wildcard_of(encloser)
        node = zone.nodes.get(wildcard)
        if node is None:
            builder.negative(zone, RCODE_NXDOMAIN)  # RFC 6604 §3: the rcode of the last name
            return None
        # RFC 4592 §3.3.1: synthesize from the wildcard with the query name as owner.
        if not builder.answer:  # the question's own name, not a CNAME target further on
            builder.wildcard = wildcard
    return answer_from_node(builder, zone, node, owner, qtype)


def _zone_cut(zone: Zone, qname: Name, qtype: int) -> Node | None:
    """The delegation at or above ``qname``, if any (RFC 1034 §4.3.2 step 3b).

    At the cut itself a DS query belongs to the parent (RFC 4035 §3.1.4.1): no referral.
    """
    for name in names.ancestors_below(qname, zone.origin):
        node = zone.nodes.get(name)
        if node is not None and node.is_cut:
            if name == qname and qtype == QTYPE.DS:
                return None
            return node
    return None


def _closest_encloser(zone: Zone, qname: Name) -> Name:
    """The longest existing ancestor (RFC 4592 §3.3.1); empty non-terminals exist."""
    name = names.parent(qname)
    while name not in zone.nodes:
        name = names.parent(name)
    return name


def answer_from_node(builder: _Builder, zone: Zone, node: Node, owner: Name, qtype: int) -> Name | None:
    """Data at an existing (or wildcard-matched) name: the RRset, a CNAME to follow, or NODATA.

    A CNAME is followed only when the qtype does not match it; ANY matches every type
    (RFC 1034 §4.3.2 step 3a, RFC 1035 §3.2.3), so ANY at an alias gets the CNAME alone.
    """
    rrsets = node.rrsets
    cname = rrsets.get(QTYPE.CNAME)
    if cname is not None and qtype not in (QTYPE.CNAME, QTYPE.ANY):
        builder.answer.append(Placed(owner, cname))
        return cname.targets[0] if cname.targets else names.from_dnslabel(cname.rdatas[0].label)
    if qtype == QTYPE.ANY:
        return answer_any(builder, zone, node, owner)
    rrset = rrsets.get(qtype)
    if rrset is None:
        builder.negative(zone, RCODE_NOERROR)  # NODATA (RFC 2308 §2.2), also for empty non-terminals
        return None
    builder.answer.append(Placed(owner, rrset))
    return None


def answer_dname(builder: _Builder, owner: Name, dname: RRset, qname: Name) -> Name | None:
    """A name below a DNAME: the DNAME itself, then a CNAME synthesized from it with the
    DNAME's TTL, whose target replaces the DNAME's owner by its target; the lookup goes
    on from there (RFC 6672 §3.2 step 3c, §3.1). A target longer than 255 octets is
    YXDOMAIN, with the DNAME alone (RFC 6672 §2.2)."""
    builder.answer.append(Placed(owner, dname))
    target = qname[: len(qname) - len(owner)] + rrtypes.dname_target(dname.rdatas[0])
    if len(target) > names.MAX_NAME_OCTETS:
        builder.rcode = RCODE_YXDOMAIN
        return None
    synthesized = make_rrset(qname, QTYPE.CNAME, dname.ttl, (CNAME(names.to_dnslabel(target)),))
    builder.answer.append(Placed(qname, synthesized))
    return target


def answer_any(builder: _Builder, zone: Zone, node: Node, owner: Name) -> None:
    """ANY gets one RRset, not all of them (RFC 8482 §4.1): the lowest type number present."""
    if not node.rrsets:
        builder.negative(zone, RCODE_NOERROR)
        return None
    rtype = min(node.rrsets)
    builder.answer.append(Placed(owner, node.rrsets[rtype]))
    return None


def answer_referral(builder: _Builder, zone: Zone, cut: Node) -> None:
    """A referral: not authoritative, the child's NS in authority, glue in additional
    (RFC 1034 §4.3.2 step 3b, RFC 2181 §6.1).

    In-domain glue (at or below the cut) must fit or the response is truncated (RFC 9471
    §3.1); sibling glue (below another cut of this zone, RFC 9471 §3.2) and the addresses
    of other hosts in this zone are added when they fit. Every server's A comes before
    any AAAA, so when space runs short each server keeps an address (NSD orders them so).
    """
    ns = cut.rrsets[QTYPE.NS]
    if not builder.answer:
        builder.authoritative = False
    builder.authority.append(Placed(cut.name, ns))
    for rtype in ADDRESS_TYPES:
        for target in ns.targets:
            node = zone.nodes.get(target)
            rrset = node.rrsets.get(rtype) if node is not None else None
            if rrset is not None:
                builder.additional.append(Placed(target, rrset, required=names.is_subdomain(target, cut.name)))


def _add_additional(builder: _Builder) -> None:
    """Addresses of MX, NS and SRV targets that we serve authoritatively (RFC 1035 §3.3.9,
    §4.3.2 step 6), skipping what the answer already holds. Every target's A comes before
    any AAAA, as in referrals."""
    present = {(placed.owner, placed.rrset.rtype) for placed in builder.answer}
    present.update((placed.owner, placed.rrset.rtype) for placed in builder.additional)
    targets: dict[Name, bool] = {}  # target -> may its addresses be glue
    for placed in builder.answer:
        for target in placed.rrset.targets:
            targets[target] = targets.get(target, False) or placed.rrset.rtype == QTYPE.NS
    found = [(target, _authoritative_addresses(builder.snapshot, target, glue)) for target, glue in targets.items()]
    for rtype in ADDRESS_TYPES:
        for target, rrsets in found:
            rrset = rrsets.get(rtype)
            if rrset is not None and (target, rtype) not in present:
                present.add((target, rtype))
                builder.additional.append(Placed(target, rrset))


def _authoritative_addresses(snapshot: Snapshot, target: Name, glue: bool = False) -> Mapping[int, RRset]:
    """The RRsets a lookup of ``target`` finds in the zone we serve it from: the node's
    own, or those of the wildcard that matches it (RFC 4592 §3.3.1; NSD synthesizes
    these too). Nothing below a zone cut: glue is not authoritative data (RFC 1034 §4.2.1)
    -- except for the servers of an NS answer (``glue``), whose addresses below another
    cut are how a resolver reaches them (a root zone's NS under a delegated TLD; NSD adds
    them the same way)."""
    zone = snapshot.find_zone(target)
    if zone is None:
        return {}
    if _zone_cut(zone, target, QTYPE.A) is not None:
        node = zone.nodes.get(target) if glue else None
        return {} if node is None else node.rrsets
    node = zone.nodes.get(target)
    if node is None:
        node = zone.nodes.get(names.wildcard_of(_closest_encloser(zone, target)))
    return {} if node is None else node.rrsets


# ---------------------------------------------------------------- CHAOS class

VERSION_NAMES = (names.from_text("version.bind."), names.from_text("version.server."))
IDENTITY_NAMES = (names.from_text("id.server."), names.from_text("hostname.bind."))


def resolve_chaos(qname: Name, qtype: int, version: str, identity: str | None) -> Answer:
    """CH TXT (or ANY) version.bind / version.server and id.server / hostname.bind, as
    NSD answers them (RFC 4892 §2.2 for id.server). AA is clear: we serve no CH zone, so
    we are no authority for these names (RFC 1035 §4.1.1). Anything else in CH, other
    qtypes at these names included, is REFUSED with EDE "Not Supported" (RFC 8914 §4.22):
    a NODATA would need an SOA we do not have (RFC 2308 §2.2)."""
    if qname in VERSION_NAMES:
        text = version
    elif qname in IDENTITY_NAMES and identity is not None:
        text = identity
    else:
        text = None
    if text is None or qtype not in (QTYPE.TXT, QTYPE.ANY):
        return Answer(RCODE_REFUSED, authoritative=False, qclass=CLASS.CH, ede=EDE_NOT_SUPPORTED)
    rrset = make_rrset(qname, QTYPE.TXT, 0, (TXT(text.encode()[:255]),), rclass=CLASS.CH)
    return Answer(RCODE_NOERROR, False, (Placed(qname, rrset),), qclass=CLASS.CH)
