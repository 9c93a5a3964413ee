"""``arrange(answer, plans)``: the engine's answer rewritten in the order the Balancer
planned, the one place an answer's records are reordered. Pure: plans in, a new
``Answer`` out; it decides nothing (``ordering`` does) and renders nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from dnslib import MX, QTYPE, RR

from authdns.base import names
from authdns.answering.answer import Answer, Placed
from authdns.base.names import Name
from authdns.zones.zone import ADDRESS_TYPES, RRset

if TYPE_CHECKING:
    from authdns.balancing.ordering import Plan


def arrange(answer: Answer, plans: dict[tuple[str, Name, int], Plan]) -> Answer:
    """The answer in the order the plans give: balanced RRsets reordered (and MX
    preferences promoted); in additional, the addresses of targets that left the answer
    go too, the others follow the answer's target order (every A before any AAAA, as
    the engine puts them); required glue (RFC 9471) is never touched. Pure."""
    ordered: list[Placed] = []
    targets: list[Name] = []
    for placed in answer.answer:
        plan = plans.get(("answer", placed.owner, placed.rrset.rtype))
        rrset = placed.rrset if plan is None else _reordered(placed.rrset, plan)
        targets.extend(rrset.targets)
        ordered.append(placed if plan is None else Placed(placed.owner, rrset, placed.required))
    named = set(targets)
    gone = {target for placed in answer.answer for target in placed.rrset.targets if target not in named}
    rank = {target: position for position, target in enumerate(dict.fromkeys(targets))}
    kept = []
    for position, placed in enumerate(answer.additional):
        if placed.required:
            kept.append(((-1, position), placed))
            continue
        if placed.owner in gone:
            continue
        plan = plans.get(("additional", placed.owner, placed.rrset.rtype))
        if plan is not None:
            placed = Placed(placed.owner, _reordered(placed.rrset, plan))
        type_rank = ADDRESS_TYPES.index(placed.rrset.rtype) if placed.rrset.rtype in ADDRESS_TYPES else 2
        kept.append(((type_rank, rank.get(placed.owner, len(rank) + position)), placed))
    kept.sort(key=lambda item: item[0])
    return replace(answer, answer=tuple(ordered), additional=tuple(placed for _, placed in kept))


def _reordered(rrset: RRset, plan: Plan) -> RRset:
    """The RRset with its records in the plan's order (and promoted MX preferences), at
    the TTL the plan serves it with (``ordering.served_ttl``)."""
    rdatas = []
    rrs = []
    ttl = plan.ttl
    for index in plan.order:
        rdata, rr = rrset.rdatas[index], rrset.rrs[index]
        if index in plan.promoted:
            rdata = MX(rdata.label, rdata.preference - 1)
            rr = RR(rr.rname, rr.rtype, rr.rclass, ttl, rdata)
        elif rr.ttl != ttl:
            rr = RR(rr.rname, rr.rtype, rr.rclass, ttl, rdata)
        rdatas.append(rdata)
        rrs.append(rr)
    # A balanced MX has no null MX (RFC 7505 §3: it stands alone), so every record has a target.
    targets = tuple(names.from_dnslabel(rdata.label) for rdata in rdatas) if rrset.rtype == QTYPE.MX else rrset.targets
    return replace(rrset, ttl=ttl, rdatas=tuple(rdatas), rrs=tuple(rrs), targets=targets)
