"""Who may transfer a zone (README, "Secondaries"): the zone's own ``transfer: allow:``
rules, then the server's ``--allow-transfer``; a rule admits an address, and when it
names a TSIG key, only requests signed with that key (verified by base/tsig.py first).
``decide`` answers one request; ``unknown_keys`` finds rules naming keys the server
was not given. Pure.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable

from authdns.configuration.config import ServerConfig
from authdns.base.protocol import EDE_NOT_AUTHORITATIVE, EDE_NOT_SUPPORTED, EDE_PROHIBITED, RCODE_REFUSED
from authdns.zones.transferspec import Address, AllowRule
from authdns.zones.zone import Zone


@dataclass(frozen=True, slots=True)
class Refusal:
    rcode: int
    ede: int
    reason: str


def allow_rules(zone: Zone, config: ServerConfig) -> tuple[AllowRule, ...]:
    """The zone's own ``transfer: allow:`` rules, then the server's ``--allow-transfer``."""
    own = zone.transfer.allow if zone.transfer is not None else ()
    return own + config.allow_transfer


def unknown_keys(zones: Iterable[Zone], config: ServerConfig) -> list[str]:
    """Allow rules naming a TSIG key the server was not given: they match nothing. For
    the caller to log after each load (``check`` cannot know the server's keys)."""
    places = [(f"{zone.path}: transfer allow", zone.transfer.allow) for zone in zones if zone.transfer is not None]
    places.append(("--allow-transfer", config.allow_transfer))
    return [f"{place} rule {rule.network} names TSIG key {rule.key}, which is not configured (--tsig-key); "
            "no transfer matches it" for place, rules in places for rule in rules
            if rule.key is not None and rule.key not in config.tsig_keys]


def peer_address(peer: tuple | None) -> Address | None:
    """The client's address from ``peername`` (scope id dropped: rules carry none), None
    when unknown."""
    if not peer:
        return None
    try:
        return ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return None


def decide(zone: Zone | None, in_class: bool, key: str | None, address: Address | None,
           config: ServerConfig) -> Zone | Refusal:
    """The zone when this client may have it, else why not: class not IN (EDE 21), not a
    zone apex (EDE 20, "not authoritative", RFC 8914 §4.21), or no rule admits the
    address with this key (EDE 18, Prohibited). ``key``: the verified TSIG key's name,
    None when unsigned."""
    if not in_class:
        return Refusal(RCODE_REFUSED, EDE_NOT_SUPPORTED, "class not IN")
    if zone is None:
        return Refusal(RCODE_REFUSED, EDE_NOT_AUTHORITATIVE, "not a zone apex")
    rules = allow_rules(zone, config)
    if address is not None and any(rule.matches(address) and rule.key in (None, key) for rule in rules):
        return zone
    needs_key = address is not None and any(rule.matches(address) for rule in rules)
    return Refusal(RCODE_REFUSED, EDE_PROHIBITED, "wrong or missing TSIG key" if needs_key else "not in the allow list")
