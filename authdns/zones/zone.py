"""The immutable zone model and the whole-zone rules that decide whether a zone may serve.

``build_zone()`` turns a ``ZoneSource`` into a ``Zone``: nodes keyed by wire name
(empty non-terminals included, so "exists" is one dict lookup), zone cuts marked, the
negative-answer SOA and the dnslib records precomputed. A ``Zone`` is never changed
after it is built: a reload builds a new one and swaps a single reference, and an
unchanged zone can be shared between snapshots for free.

This module knows nothing of health, rotation or sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from types import MappingProxyType
from typing import Mapping

from dnslib import CLASS, QTYPE, RD, RR, DNSBuffer

from authdns.base import names

from authdns.base import rrtypes
from authdns.base.answershares import answer_levels
from authdns.base.names import Name
from authdns.zones.balancespec import (BALANCED_TTL_WARNING, FAILOVER_WARNING, BalanceSpec, MemberKey, Policy,
                                      failover_bound)
from authdns.zones.transferspec import TransferSpec
from authdns.zones.yamltree import Where
from authdns.zones.zonefile import Problem, RRsetSpec, ZoneSource

ADDRESS_TYPES = (QTYPE.A, QTYPE.AAAA)


@dataclass(frozen=True, slots=True)
class RRset:
    """One owner's records of one type, in zone-file order, ready to pack."""

    name: Name
    rtype: int
    ttl: int
    rdatas: tuple[RD, ...]
    rrs: tuple[RR, ...]
    # Names whose addresses belong in the additional section (RFC 1035 §3.3.9, §3.3.11;
    # RFC 2782 for SRV): MX exchanges, NS hosts, SRV targets; empty for other types.
    targets: tuple[Name, ...]
    where: Where | None = None  # where the zone file wrote it, for diagnostics
    balance: BalanceSpec | None = None  # how balancing/ordering.py orders it; None: zone order, always

    def __len__(self) -> int:
        return len(self.rdatas)

    def records_as(self, owner: Name) -> tuple[RR, ...]:
        """The records with another owner name: wildcard synthesis (RFC 4592 §3.3.1)."""
        if owner == self.name:
            return self.rrs
        label = names.to_dnslabel(owner)
        return tuple(RR(label, rr.rtype, rr.rclass, rr.ttl, rr.rdata) for rr in self.rrs)


def make_rrset(
    name: Name, rtype: int, ttl: int, rdatas: tuple[RD, ...], where: Where | None = None, rclass: int = CLASS.IN,
    balance: BalanceSpec | None = None,
) -> RRset:
    label = names.to_dnslabel(name)
    rrs = tuple(RR(label, rtype, rclass, ttl, rdata) for rdata in rdatas)
    targets = tuple(t for t in (_target(rtype, rdata) for rdata in rdatas) if t is not None)
    return RRset(name, rtype, ttl, rdatas, rrs, targets, where, balance)


def _largest_group(spec: RRsetSpec) -> int:
    """How many records can trade places: an MX preference group (RFC 5321 §5.1), or
    the whole address RRset."""
    if spec.rtype != QTYPE.MX:
        return len(spec.records)
    sizes: dict[int, int] = {}
    for record in spec.records:
        sizes[record.rdata.preference] = sizes.get(record.rdata.preference, 0) + 1
    return max(sizes.values())


def member_text(rtype: int, rdata: RD) -> str:
    """How a member of a balanced RRset is named (in status, drains, explain): the
    exchange of an MX, the address of an A/AAAA."""
    if rtype == QTYPE.MX:
        return names.to_text(names.from_dnslabel(rdata.label))
    return str(rdata)


def member_key(rrset: RRset, rdata: RD) -> MemberKey:
    """What one member of a balanced RRset is known by in health, drains, weights and
    counters: (owner, type, ``member_text``)."""
    return (rrset.name, rrset.rtype, member_text(rrset.rtype, rdata))


def _target(rtype: int, rdata: RD) -> Name | None:
    if rtype == QTYPE.MX:
        target = names.from_dnslabel(rdata.label)
        return None if target == names.ROOT else target  # null MX (RFC 7505) has no host
    if rtype == QTYPE.NS:
        return names.from_dnslabel(rdata.label)
    if rtype == QTYPE.SRV:
        target = names.from_dnslabel(rdata.target)
        return None if target == names.ROOT else target  # "." means no service (RFC 2782)
    return None


@dataclass(frozen=True, slots=True)
class Node:
    """A name in the zone. No RRsets means an empty non-terminal (RFC 8020 §2: it exists)."""

    name: Name
    rrsets: Mapping[int, RRset]
    is_cut: bool  # NS below the apex: a delegation (RFC 1034 §4.2.2)


# Records of one owner and type that a zone version removed or added: (owner, type,
# TTL, rdatas). A changed TTL is the old RRset removed and the new one added.
Records = tuple[Name, int, int, tuple[RD, ...]]


@dataclass(frozen=True, slots=True)
class ZoneDelta:
    """One step of a zone's history, for IXFR (RFC 1995 §4): from ``old_serial`` to
    ``new_serial``, the records removed and added, SOA excepted (the steps' SOAs frame
    them). Made by ``zonediff.zone_delta`` when a reload brings a greater serial."""

    old_soa: RRset
    new_soa: RRset
    old_serial: int
    new_serial: int
    removed: tuple[Records, ...]
    added: tuple[Records, ...]

    @property
    def record_count(self) -> int:
        """Records this step sends: both SOAs, the removed and the added ones."""
        return 2 + sum(len(records[3]) for records in self.removed + self.added)


@dataclass(frozen=True, slots=True)
class Zone:
    origin: Name
    path: str
    nodes: Mapping[Name, Node]
    soa: RRset
    # The SOA as negative answers carry it: TTL = min(SOA TTL, SOA MINIMUM), RFC 2308 §3.
    negative_soa: RRset
    serial: int
    record_count: int
    has_wildcards: bool
    # SHA-256 of the file's bytes (set by the loader): an unchanged file keeps its Zone
    # and its serial across reloads and restarts.
    content_hash: str = ""
    serial_given: bool = False  # the file names its serial (else it was generated)
    transfer: TransferSpec | None = None  # `transfer:` (zones/transferspec.py): AXFR ACL and NOTIFY targets
    # The steps that led here, oldest first, the last ending at ``serial``: what IXFR
    # answers from (loader.with_history keeps the last ``--ixfr-history`` of them).
    history: tuple[ZoneDelta, ...] = ()

    def rrsets(self) -> list[RRset]:
        return [rrset for node in self.nodes.values() for rrset in node.rrsets.values()]


def rdata_key(rtype: int, rdata: RD) -> bytes:
    """Canonical wire form of one rdata, to find duplicates: the native types' names are
    lowercase already; other types' are lowercased where RFC 4034 §6.2 says so."""
    if isinstance(rdata, rrtypes.WireRdata):
        return rrtypes.canonical_wire(rtype, rdata.data)
    buffer = DNSBuffer()
    rdata.pack(buffer)
    return bytes(buffer.data)


class _Builder:
    def __init__(self, source: ZoneSource) -> None:
        self.source = source
        self.origin = source.origin
        self.problems: list[Problem] = []
        self.specs: dict[Name, dict[int, RRsetSpec]] = {}
        for spec in source.rrsets:
            self.specs.setdefault(spec.owner, {})[spec.rtype] = self.without_duplicates(spec)
        self.cuts = frozenset(
            owner for owner, types in self.specs.items() if QTYPE.NS in types and owner != self.origin
        )

    def error(self, where: Where, message: str) -> None:
        self.problems.append(Problem(where, message))

    def warn(self, where: Where, message: str) -> None:
        self.problems.append(Problem(where, message, warning=True))

    def cut_above(self, name: Name) -> Name | None:
        """The zone cut at or above ``name`` (below the apex), if any."""
        for ancestor in names.ancestors_below(name, self.origin):
            if ancestor in self.cuts:
                return ancestor
        return None

    def has_address(self, name: Name) -> bool:
        types = self.specs.get(name, {})
        return any(rtype in types for rtype in ADDRESS_TYPES)

    # -- rules ------------------------------------------------------------------

    def check_apex(self) -> None:
        apex = self.specs.get(self.origin, {})
        if QTYPE.NS not in apex:
            self.error(self.source.where, f"zone apex {names.to_text(self.origin)} has no NS records (RFC 1034 §4.2.1)")

    def without_duplicates(self, spec: RRsetSpec) -> RRsetSpec:
        """An RRset is a set (RFC 2181 §5): a record given twice is served once. BIND and
        NSD drop the copy silently; here it is a warning, since it is usually a typo."""
        seen: dict[bytes, Where] = {}
        kept = []
        for record in spec.records:
            key = rdata_key(spec.rtype, record.rdata)
            if key in seen:
                self.warn(record.where, f"duplicate record ignored: same {rrtypes.type_name(spec.rtype)} data as "
                          f"line {seen[key].line}")
            else:
                seen[key] = record.where
                kept.append(record)
        return spec if len(kept) == len(spec.records) else replace(spec, records=tuple(kept))

    def check_cname(self, owner: Name, types: dict[int, RRsetSpec]) -> None:
        """CNAME stands alone at its name (RFC 1034 §3.6.2, RFC 2181 §10.1)."""
        spec = types.get(QTYPE.CNAME)
        if spec is None:
            return
        if len(spec.records) > 1:
            self.error(spec.records[1].where, f"{names.to_text(owner)} has more than one CNAME (RFC 2181 §10.1)")
        others = [rrtypes.type_name(rtype) for rtype in types if rtype != QTYPE.CNAME]
        if others:
            self.error(
                spec.where,
                f"CNAME at {names.to_text(owner)} beside other data ({', '.join(others)}): "
                "a CNAME must be the only record at its name (RFC 1034 §3.6.2)",
            )

    def check_null_mx(self, spec: RRsetSpec) -> None:
        """A null MX ("0 .") says the domain takes no mail; it stands alone with
        preference 0 (RFC 7505 §3). BIND and NSD load it either way, so a warning: a
        sender skips a null MX beside real ones, and "10 ." still means no mail."""
        null = [r for r in spec.records if names.from_dnslabel(r.rdata.label) == names.ROOT]
        if null and len(spec.records) > 1:
            self.warn(null[0].where, "null MX (0 .) should be the only MX record at its name (RFC 7505 §3)")
        for record in null:
            if record.rdata.preference != 0:
                self.warn(record.where, f"null MX should have preference 0, not {record.rdata.preference} "
                          "(RFC 7505 §3)")

    def check_targets(self, owner: Name, spec: RRsetSpec) -> None:
        """MX, NS and SRV targets: not an alias (RFC 2181 §10.3; RFC 2782 for SRV), with
        addresses when in zone. Strictness as BIND's named-checkzone has it: an alias MX or
        NS target is an error here (the issue's rule; BIND only warns for MX), an SRV one
        a warning; an in-zone NS target without an address is an error (BIND refuses the
        zone), an MX or SRV one a warning (BIND warns, NSD loads it)."""
        kind = {QTYPE.MX: "MX exchange", QTYPE.NS: "NS target", QTYPE.SRV: "SRV target"}[spec.rtype]
        delegation = owner in self.cuts and spec.rtype == QTYPE.NS
        for record in spec.records:
            target = _target(spec.rtype, record.rdata)
            if target is None or not names.is_subdomain(target, self.origin):
                continue
            text = names.to_text(target)
            cut = self.cut_above(target)
            if cut is not None:
                # Below a delegation only glue exists; for the cut's own NS it must be there.
                if delegation and names.is_subdomain(target, owner) and not self.has_address(target):
                    self.warn(record.where, f"delegation {names.to_text(owner)}: no glue address (A/AAAA) for {text}")
                continue
            report = self.error if spec.rtype != QTYPE.SRV else self.warn
            if QTYPE.CNAME in self.specs.get(target, {}):
                report(record.where, f"{kind} {text} is a CNAME; it must name a host (RFC 2181 §10.3)")
            elif self.dname_above(target) is not None:
                report(record.where, f"{kind} {text} is below a DNAME; it must name a host (RFC 2181 §10.3)")
            elif not self.has_address(target):
                report = self.error if spec.rtype == QTYPE.NS else self.warn
                report(record.where, f"{kind} {text} is in this zone but has no A or AAAA records")

    def check_occluded(self, owner: Name, types: dict[int, RRsetSpec]) -> None:
        """Data below a zone cut is not authoritative; only glue addresses are used (RFC 1034 §4.2.1)."""
        cut = self.cut_above(owner)
        if cut is None or cut == owner:
            if cut == owner:
                # DS is the parent side of the cut (RFC 4035 §3.1.4.1): answered here, not hidden
                extra = [rrtypes.type_name(t) for t in types if t not in (QTYPE.NS, QTYPE.A, QTYPE.AAAA, QTYPE.DS)]
                if extra:
                    self.warn(
                        types[QTYPE.NS].where,
                        f"{', '.join(extra)} at delegation {names.to_text(owner)} is hidden by the referral",
                    )
            return
        hidden = [rrtypes.type_name(t) for t in types if t not in ADDRESS_TYPES]
        if hidden:
            first = next(iter(types.values()))
            self.warn(first.where, f"{', '.join(hidden)} at {names.to_text(owner)} is below the delegation "
                      f"{names.to_text(cut)} and will not be served")

    def dname_above(self, name: Name) -> Name | None:
        """The owner of a DNAME strictly above ``name`` in this zone, if any."""
        for ancestor in names.ancestors_below(names.parent(name), self.origin) + [self.origin]:
            if ancestor != name and rrtypes.DNAME in self.specs.get(ancestor, {}):
                return ancestor
        return None

    def check_dname(self, owner: Name, types: dict[int, RRsetSpec]) -> None:
        """A DNAME is alone of its type at its name, and no data lies below it: the
        names below are redirected (RFC 6672 §2.4; NSD and BIND refuse both)."""
        spec = types.get(rrtypes.DNAME)
        if spec is not None and len(spec.records) > 1:
            self.error(spec.records[1].where, f"{names.to_text(owner)} has more than one DNAME (RFC 6672 §2.4)")
        above = self.dname_above(owner)
        if above is not None and self.cut_above(owner) is None:
            first = next(iter(types.values()))
            self.error(first.where, f"{names.to_text(owner)} is below the DNAME at {names.to_text(above)}: "
                       "no data may exist below a DNAME (RFC 6672 §2.4)")

    def check(self) -> None:
        self.check_apex()
        for owner, types in self.specs.items():
            self.check_cname(owner, types)
            self.check_dname(owner, types)
            self.check_occluded(owner, types)
            for spec in types.values():
                if spec.rtype == QTYPE.MX:
                    self.check_null_mx(spec)
                if spec.rtype in (QTYPE.MX, QTYPE.NS, QTYPE.SRV):
                    self.check_targets(owner, spec)
                if spec.balance is not None:
                    self.check_balance(spec, spec.balance)

    def check_balance(self, spec: RRsetSpec, balance: BalanceSpec) -> None:
        """Balancing that cannot work as written (README, "Load balancing")."""
        rotates = balance.policy is not Policy.FIXED or balance.answer is not None or balance.check is not None
        if rotates and _largest_group(spec) > 1 and spec.ttl > BALANCED_TTL_WARNING:
            self.warn(spec.where, f"balanced {rrtypes.type_name(spec.rtype)} RRset has TTL {spec.ttl}: resolvers cache one "
                      f"order that long, so keep it at {BALANCED_TTL_WARNING} s or less")
        for member in balance.members:
            if member.weight is None and balance.check is None:
                self.error(member.where, "weight: auto needs a check: it is derived from probe round-trip times")
            elif balance.policy is not Policy.WEIGHTED and member.weight not in (0, 1):
                self.warn(member.where, f"weight only shapes shares under policy weighted (this RRset is "
                          f"{balance.policy.value}); here only weight 0 (standby) counts")
            if member.probe is not None and balance.check is None:
                self.warn(member.where, "probe address is unused: this RRset has no check")
        if balance.promote and spec.rtype == QTYPE.MX:  # on A/AAAA the file reader reported it
            self.check_promote(spec)
        promoted = balance.promote and spec.rtype == QTYPE.MX  # the sender takes the promoted one: exact
        self.check_failover(spec, balance, promoted)
        if balance.policy is Policy.WEIGHTED and balance.answer is not None and balance.answer > 1 and not promoted:
            self.check_answer_shares(spec, balance, balance.answer)

    def check_failover(self, spec: RRsetSpec, balance: BalanceSpec, promoted: bool) -> None:
        """How long a dead member can still be sent mail (README, "Health checks"):
        detection plus TTL above FAILOVER_WARNING; and ``answer: 1``, whose answers hold
        no fallback, so a sender whose resolver cached one naming a dead member defers
        its mail (RFC 5321 §5.1 leaves it nothing else to try) until the TTL ends."""
        if len(spec.records) < 2:
            return
        check = balance.check
        bound = failover_bound(check, spec.ttl) if check is not None else 0.0
        if check is not None and bound > FAILOVER_WARNING:
            self.warn(spec.where, f"a dead member can still be sent mail for up to {bound:g} s: "
                      f"{failover_bound(check, 0):g} s to detect it (fall {check.fall}, interval {check.interval:g} s, "
                      f"timeout {check.timeout:g} s) plus TTL {spec.ttl}; a shorter TTL or interval keeps it under "
                      f"{FAILOVER_WARNING} s")
        preferences = {record.rdata.preference for record in spec.records} if spec.rtype == QTYPE.MX else {0}
        if balance.answer == 1 and not promoted and len(preferences) == 1:
            fallback = "promote keeps the others as fallback" if spec.rtype == QTYPE.MX else "answer: 2 keeps one"
            self.warn(spec.where, "answer: 1 leaves each answer one member: while a resolver caches an answer "
                      f"naming a member that died, its senders have nothing else to try and defer; {fallback}")

    def check_answer_shares(self, spec: RRsetSpec, balance: BalanceSpec, answer: int) -> None:
        """A sender picks evenly among the equal-preference members an answer gives it
        (RFC 5321 §5.1), so a member whose weight is above 1/N of its group can only get
        its share from answers of fewer members, some of them that member alone
        (``base/answershares.py``). Such an answer has no fallback while a resolver caches
        it: say how many there are, and that promote keeps one in every answer."""
        groups: dict[int, list[int]] = {}
        for index, record in enumerate(spec.records):
            preference = record.rdata.preference if spec.rtype == QTYPE.MX else 0
            groups.setdefault(preference, []).append(index)
        for indexes in groups.values():
            weights = {index: balance.members[index].weight for index in indexes}
            if any(weight is None for weight in weights.values()):
                continue  # weight: auto changes with the probes; nothing to check here
            if sum(1 for weight in weights.values() if weight) <= answer:
                continue  # every member is in every answer: the sender's shuffle decides
            levels = answer_levels(weights, answer)
            total = sum(weights.values())
            for index, weight in weights.items():
                # this member's own answers alone: a level of size 1 holds it in `inclusion` of them
                alone = sum((level.fraction * level.inclusion.get(index, Fraction(0))
                             for level in levels if level.size == 1), Fraction(0))
                if alone:
                    record = spec.records[index]
                    name = str(record.rdata.label if spec.rtype == QTYPE.MX else record.rdata)
                    self.warn(balance.members[index].where or spec.where,
                              f"weight {weight} of {total} is {100 * weight / total:.0f} % of the mail, above "
                              f"1/{answer}: a sender splits an answer evenly among its members (RFC 5321 §5.1), so "
                              f"{float(100 * alone):.0f} % of answers carry {name} alone, with no fallback while a resolver "
                              "caches one; promote keeps a fallback in every answer")

    def check_promote(self, spec: RRsetSpec) -> None:
        """promote gives the chosen exchanger preference - 1; that value must be free so
        the promoted record stays between its group and the better one (RFC 5321 §5.1)."""
        preferences = {record.rdata.preference for record in spec.records}
        for preference in sorted(preferences):
            if preference == 0 or preference - 1 in preferences:
                self.error(spec.where, f"promote needs preference {preference} - 1 free for the promoted "
                           "exchanger; leave a gap below each preference")
                return

    # -- building -----------------------------------------------------------------

    def build(self) -> Zone:
        nodes: dict[Name, Node] = {}
        for owner, types in self.specs.items():
            rrsets = {
                rtype: make_rrset(owner, rtype, spec.ttl, tuple(r.rdata for r in spec.records), spec.where,
                                  balance=spec.balance)
                for rtype, spec in types.items()
            }
            nodes[owner] = Node(owner, MappingProxyType(rrsets), owner in self.cuts)
        for owner in list(nodes):
            for ancestor in names.ancestors_below(names.parent(owner), self.origin):
                nodes.setdefault(ancestor, Node(ancestor, MappingProxyType({}), False))
        nodes.setdefault(self.origin, Node(self.origin, MappingProxyType({}), False))
        soa = nodes[self.origin].rrsets[QTYPE.SOA]
        minimum = soa.rdatas[0].times[4]
        negative = make_rrset(self.origin, QTYPE.SOA, min(soa.ttl, minimum), soa.rdatas)
        return Zone(
            origin=self.origin,
            path=self.source.path,
            nodes=MappingProxyType(nodes),
            soa=soa,
            negative_soa=negative,
            serial=soa.rdatas[0].times[0],
            record_count=sum(len(spec.records) for types in self.specs.values() for spec in types.values()),
            has_wildcards=any(names.is_wildcard(name) for name in nodes),
            serial_given=self.source.serial_given,
            transfer=self.source.transfer,
        )


def build_zone(source: ZoneSource) -> tuple[Zone | None, list[Problem]]:
    """Apply the whole-zone rules; build the zone when none of them is an error."""
    builder = _Builder(source)
    builder.check()
    if any(not problem.warning for problem in builder.problems):
        return None, builder.problems
    if QTYPE.SOA not in builder.specs.get(source.origin, {}):
        return None, builder.problems + [Problem(source.where, "zone has no SOA")]
    return builder.build(), builder.problems
