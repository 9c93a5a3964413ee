"""YAML zone files → ``ZoneSource``: every record parsed, typed and tagged with its position.

The format (README.md, "Zone files") in one glance::

    ttl: 3600                      # zone default TTL (optional, default 3600)
    records:
      "@":
        SOA: {mname: ns1, rname: hostmaster}   # every SOA field has a default
        NS: [ns1, ns2]
        MX: ["20 mail", "50 mail2"]
      mail: {A: 192.0.2.25}
      pool:
        MX: {ttl: 300, records: ["10 mx1", {preference: 10, exchange: mx2}]}

This module turns text into typed record data (dnslib RD objects) and reports every
problem it can find as ``file:line:column: message``. Rules that need the whole zone
(CNAME beside other data, glue, targets) live in ``zone.py``; nothing here packs wire
bytes or knows about answers.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from dnslib import AAAA, CAA, CNAME, MX, NS, PTR, QTYPE, RD, SOA, SRV, TXT, A

from . import names
from .names import Name
from .balancefile import BALANCE_OPTION_KEYS, parse_bool, parse_check_reference, parse_checks, parse_policy, split_member
from .balancespec import BALANCED_TYPE_NAMES, BalanceSpec, CheckSpec, MemberSpec, Policy
from .transferspec import TransferSpec, parse_transfer
from .yamlfields import FieldError, integer as _integer, scalar as _scalar
from .yamltree import Mapping, Scalar, Sequence, TreeError, Value, Where, parse_tree

SUPPORTED_TYPES = ("SOA", "NS", "A", "AAAA", "MX", "CNAME", "TXT", "SRV", "PTR", "CAA")
TYPE_CODES = {name: getattr(QTYPE, name) for name in SUPPORTED_TYPES}

DEFAULT_TTL = 3600
MAX_TTL = 2**31 - 1  # RFC 2181 §8
# SOA timers when the file leaves them out: the common values of RIPE-203 and RFC 1912,
# shortened for refresh/retry since NOTIFY (RFC 1996) makes polling a fallback only.
SOA_DEFAULTS = {"refresh": 14400, "retry": 3600, "expire": 1209600, "minimum": 3600}
ZONE_FILE_SUFFIXES = (".yaml", ".yml")
TOP_LEVEL_KEYS = ("origin", "ttl", "policy", "checks", "transfer", "records")
RRSET_OPTION_KEYS = ("ttl", "records") + BALANCE_OPTION_KEYS


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding, printed ``path:line:column: message`` (warnings say so)."""

    where: Where
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{self.where}: {'warning: ' if self.warning else ''}{self.message}"


@dataclass(frozen=True, slots=True)
class RecordSpec:
    rdata: RD
    where: Where


@dataclass(frozen=True, slots=True)
class RRsetSpec:
    owner: Name
    rtype: int
    ttl: int
    records: tuple[RecordSpec, ...]
    where: Where
    balance: BalanceSpec | None = None  # MX, A and AAAA with more than one record, or a check


@dataclass(frozen=True, slots=True)
class ZoneSource:
    """A zone file as read: origin, default TTL and RRsets, before whole-zone checks."""

    path: str
    origin: Name
    default_ttl: int
    rrsets: tuple[RRsetSpec, ...]
    where: Where
    serial_given: bool = False  # the SOA names its serial; else the loader generated it
    transfer: TransferSpec | None = None  # `transfer:`: who may AXFR/IXFR, whom to NOTIFY


# An RRset no DNS message could carry is a mistake (a generator gone wrong), not a zone:
# 4,096 A records already take about 65,000 octets.
MAX_RRSET_RECORDS = 4096


def origin_from_path(path: Path) -> Name:
    """``zones/example.test.yaml`` serves ``example.test.`` (one zone per file)."""
    stem = path.name
    for suffix in ZONE_FILE_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return names.from_text(stem if stem.endswith(".") else stem + ".")


# ---------------------------------------------------------------- scalar helpers

_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TTL_PATTERN = re.compile(r"^(?:\d+[smhdw])+$")


def parse_ttl(value: Value, what: str = "TTL") -> int:
    """A TTL in seconds, or with units as BIND and NSD accept (``1h30m``); RFC 2181 §8 range."""
    scalar = _scalar(value, what)
    text = scalar.text.strip().lower()
    if text.isdigit():
        seconds = int(text)
    elif _TTL_PATTERN.match(text):
        seconds = sum(int(n) * _TTL_UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", text))
    else:
        raise FieldError(scalar.where, f"{what} must be seconds or a duration like 1h30m, not {text!r}")
    if seconds > MAX_TTL:
        raise FieldError(scalar.where, f"{what} {seconds} is out of range 0..{MAX_TTL} (RFC 2181 §8)")
    return seconds


def _looks_like_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.rstrip("."))
    except ValueError:
        return False
    return True


class _Context:
    def __init__(self, origin: Name) -> None:
        self.origin = origin

    def name(self, value: Value, what: str) -> Name:
        scalar = _scalar(value, what)
        try:
            return names.from_text(scalar.text, self.origin)
        except names.BadName as error:
            raise FieldError(scalar.where, f"{what}: {error}") from None

    def host(self, value: Value, what: str, rule: str) -> Name:
        """A name that must be a host name, never an address (``rule`` cites why)."""
        scalar = _scalar(value, what)
        if _looks_like_address(scalar.text):
            raise FieldError(scalar.where, f"{what} must be a host name, not the IP address {scalar.text} ({rule})")
        return self.name(scalar, what)


# ---------------------------------------------------------------- per-type parsers


def _fields(value: Value, expected: tuple[str, ...], what: str) -> list[Value]:
    """The fields of a record: a mapping with ``expected`` keys or a whitespace-separated string."""
    if isinstance(value, Mapping):
        unknown = [key for key in value.keys() if key not in expected]
        if unknown:
            raise FieldError(value.where, f"{what}: unknown field {unknown[0]!r} (fields: {', '.join(expected)})")
        missing = [key for key in expected if value.get(key) is None]
        if missing:
            raise FieldError(value.where, f"{what}: missing field {missing[0]!r}")
        return [value.get(key) for key in expected]  # type: ignore[misc]
    scalar = _scalar(value, what)
    parts = scalar.text.split()
    if len(parts) != len(expected):
        raise FieldError(
            scalar.where, f"{what} needs {len(expected)} fields ({' '.join(expected)}), got {scalar.text!r}"
        )
    return [Scalar(part, "tag:yaml.org,2002:str", scalar.where, False) for part in parts]


def _single(value: Value, key: str, what: str) -> Value:
    """A one-field record: the bare value or ``{key: value}``."""
    if isinstance(value, Mapping):
        return _fields(value, (key,), what)[0]
    return value


def parse_a(value: Value, ctx: _Context) -> RD:
    scalar = _scalar(_single(value, "address", "A record"), "A address")
    try:
        return A(str(ipaddress.IPv4Address(scalar.text.strip())))
    except ValueError:
        raise FieldError(scalar.where, f"A address {scalar.text!r} is not an IPv4 address") from None


def parse_aaaa(value: Value, ctx: _Context) -> RD:
    scalar = _scalar(_single(value, "address", "AAAA record"), "AAAA address")
    try:
        return AAAA(str(ipaddress.IPv6Address(scalar.text.strip())))
    except ValueError:
        raise FieldError(scalar.where, f"AAAA address {scalar.text!r} is not an IPv6 address") from None


def parse_mx(value: Value, ctx: _Context) -> RD:
    preference, exchange = _fields(value, ("preference", "exchange"), "MX record")
    number = _integer(preference, "MX preference", 0, 65535)
    target = ctx.host(exchange, "MX exchange", "RFC 1035 §3.3.9")
    return MX(names.to_dnslabel(target), number)


def parse_ns(value: Value, ctx: _Context) -> RD:
    target = ctx.host(_single(value, "nsdname", "NS record"), "NS target", "RFC 1035 §3.3.11")
    return NS(names.to_dnslabel(target))


def parse_cname(value: Value, ctx: _Context) -> RD:
    return CNAME(names.to_dnslabel(ctx.name(_single(value, "cname", "CNAME record"), "CNAME target")))


def parse_ptr(value: Value, ctx: _Context) -> RD:
    return PTR(names.to_dnslabel(ctx.name(_single(value, "ptrdname", "PTR record"), "PTR target")))


def _text_string(value: Value) -> bytes:
    scalar = _scalar(value, "TXT string")
    data = scalar.text.encode("utf-8")
    if len(data) > 255:
        raise FieldError(
            scalar.where,
            f"TXT string is {len(data)} octets; at most 255 (RFC 1035 §3.3); split it into a list of strings",
        )
    return data


def parse_txt(value: Value, ctx: _Context) -> RD:
    body = _single(value, "text", "TXT record")
    if isinstance(body, Sequence):
        if not body.items:
            raise FieldError(body.where, "TXT record needs at least one string")
        return TXT([_text_string(item) for item in body.items])
    return TXT([_text_string(body)])


def parse_srv(value: Value, ctx: _Context) -> RD:
    priority, weight, port, target = _fields(value, ("priority", "weight", "port", "target"), "SRV record")
    return SRV(
        _integer(priority, "SRV priority", 0, 65535),
        _integer(weight, "SRV weight", 0, 65535),
        _integer(port, "SRV port", 0, 65535),
        names.to_dnslabel(ctx.host(target, "SRV target", "RFC 2782")),
    )


_CAA_TAG = re.compile(r"^[A-Za-z0-9]{1,15}$")  # RFC 8659 §4.1


def parse_caa(value: Value, ctx: _Context) -> RD:
    if isinstance(value, Mapping):
        flags, tag, content = _fields(value, ("flags", "tag", "value"), "CAA record")
        where = value.where
        tag_text, content_text = _scalar(tag, "CAA tag").text, _scalar(content, "CAA value").text
    else:
        scalar = _scalar(value, "CAA record")
        where = scalar.where
        parts = scalar.text.split(None, 2)
        if len(parts) != 3:
            raise FieldError(where, f"CAA record needs flags, tag and value, got {scalar.text!r}")
        flags = Scalar(parts[0], "tag:yaml.org,2002:str", where, False)
        tag_text, content_text = parts[1], parts[2]
        if len(content_text) >= 2 and content_text[0] == content_text[-1] == '"':
            content_text = content_text[1:-1]
    if not _CAA_TAG.match(tag_text):
        raise FieldError(where, f"CAA tag {tag_text!r} must be 1-15 letters or digits (RFC 8659 §4.1)")
    return CAA(_integer(flags, "CAA flags", 0, 255), tag_text.lower(), content_text)


@dataclass(slots=True)
class _SoaDraft:
    """SOA fields as written; ``mname=None`` means "the first apex NS" (filled in later)."""

    mname: Name | None
    rname: Name
    serial: int | None
    timers: dict[str, int] = field(default_factory=dict)


def _rname(value: Value, ctx: _Context) -> Name:
    """The mailbox: a name (``hostmaster``) or an address (``hostmaster@example.test``), RFC 1035 §8."""
    scalar = _scalar(value, "SOA rname")
    text = scalar.text.strip()
    if "@" in text:
        local, _, domain = text.partition("@")
        escaped = local.replace("\\", "\\\\").replace(".", "\\.")
        text = f"{escaped}.{domain.rstrip('.')}."
    return ctx.name(Scalar(text, scalar.tag, scalar.where, scalar.quoted), "SOA rname")


SOA_FIELDS = ("mname", "rname", "serial", "refresh", "retry", "expire", "minimum")


def parse_soa(value: Value, ctx: _Context) -> _SoaDraft:
    if isinstance(value, Mapping):
        unknown = [key for key in value.keys() if key not in SOA_FIELDS]
        if unknown:
            raise FieldError(value.where, f"SOA: unknown field {unknown[0]!r} (fields: {', '.join(SOA_FIELDS)})")
        given = {key: value.get(key) for key in SOA_FIELDS if value.get(key) is not None}
    elif isinstance(value, Scalar) and value.is_null:
        given = {}
    else:
        given = dict(zip(SOA_FIELDS, _fields(value, SOA_FIELDS, "SOA record")))
    mname = ctx.host(given["mname"], "SOA mname", "RFC 1035 §3.3.13") if "mname" in given else None
    rname = _rname(given["rname"], ctx) if "rname" in given else names.from_text("hostmaster", ctx.origin)
    serial = _integer(given["serial"], "SOA serial", 0, 2**32 - 1) if "serial" in given else None
    timers = {
        key: (parse_ttl(given[key], f"SOA {key}") if key in given else default)
        for key, default in SOA_DEFAULTS.items()
    }
    return _SoaDraft(mname, rname, serial, timers)


PARSERS = {
    "A": parse_a,
    "AAAA": parse_aaaa,
    "MX": parse_mx,
    "NS": parse_ns,
    "CNAME": parse_cname,
    "PTR": parse_ptr,
    "TXT": parse_txt,
    "SRV": parse_srv,
    "CAA": parse_caa,
}


# ---------------------------------------------------------------- the file


@dataclass(slots=True)
class _Reader:
    path: str
    origin: Name
    default_ttl: int = DEFAULT_TTL
    problems: list[Problem] = field(default_factory=list)
    rrsets: dict[tuple[Name, int], RRsetSpec] = field(default_factory=dict)
    soa: tuple[_SoaDraft, int, Where] | None = None
    default_policy: Policy | None = None  # the zone's `policy:`; None: by record count
    serial_given: bool = False  # the SOA names its serial (else the loader generates one)
    checks: dict[str, CheckSpec] = field(default_factory=dict)
    transfer: TransferSpec | None = None

    def error(self, where: Where, message: str) -> None:
        self.problems.append(Problem(where, message))

    def read_top(self, top: Mapping) -> None:
        for key, value in top.items:
            if key.text not in TOP_LEVEL_KEYS:
                self.error(key.where, f"unknown top-level key {key.text!r} (expected: {', '.join(TOP_LEVEL_KEYS)})")
        origin_value = top.get("origin")
        if origin_value is not None:
            try:
                written = _Context(names.ROOT).name(origin_value, "origin")
                if written != self.origin:
                    self.error(
                        origin_value.where,
                        f"origin {names.to_text(written)} does not match the file name, "
                        f"which serves {names.to_text(self.origin)}",
                    )
            except FieldError as error:
                self.error(error.where, error.message)
        ttl_value = top.get("ttl")
        if ttl_value is not None:
            try:
                self.default_ttl = parse_ttl(ttl_value, "zone TTL")
            except FieldError as error:
                self.error(error.where, error.message)
        self.read_balance_defaults(top)
        self.read_transfer(top)
        records = top.get("records")
        if records is None:
            self.error(top.where, "no 'records:' mapping: a zone needs at least SOA defaults and NS records")
        elif not isinstance(records, Mapping):
            self.error(records.where, "'records:' must map owner names to their record types")
        else:
            for owner_key, types in records.items:
                self.read_owner(owner_key, types)

    def read_balance_defaults(self, top: Mapping) -> None:
        """The zone's default ``policy:`` and its named ``checks:`` (read before the
        records, which refer to them)."""
        policy_value = top.get("policy")
        if policy_value is not None:
            try:
                self.default_policy = parse_policy(policy_value)
            except FieldError as error:
                self.error(error.where, error.message)
        checks_value = top.get("checks")
        if checks_value is not None:
            self.checks, errors = parse_checks(checks_value)
            for error in errors:
                self.error(error.where, error.message)

    def read_transfer(self, top: Mapping) -> None:
        """The zone's ``transfer:`` (transferspec.py); each bad entry reported at its place."""
        value = top.get("transfer")
        if value is None:
            return
        self.transfer, errors = parse_transfer(value)
        for error in errors:
            self.error(error.where, error.message)

    def read_owner(self, owner_key: Scalar, types: Value) -> None:
        try:
            owner = _Context(self.origin).name(owner_key, "owner name")
        except FieldError as error:
            self.error(error.where, error.message)
            return
        if not names.is_subdomain(owner, self.origin):
            self.error(
                owner_key.where,
                f"{names.to_text(owner)} is out of zone: not at or below {names.to_text(self.origin)}",
            )
            return
        if not isinstance(types, Mapping):
            self.error(types.where, f"{owner_key.text}: expected a mapping of record types (A:, MX:, ...)")
            return
        for type_key, body in types.items:
            self.read_rrset(owner, type_key, body)

    def read_rrset(self, owner: Name, type_key: Scalar, body: Value) -> None:
        type_name = type_key.text.strip().upper()
        if type_name not in TYPE_CODES:
            self.error(
                type_key.where,
                f"unsupported record type {type_key.text!r} (supported: {', '.join(SUPPORTED_TYPES)})",
            )
            return
        rtype = TYPE_CODES[type_name]
        if (owner, rtype) in self.rrsets or (rtype == QTYPE.SOA and self.soa is not None):
            self.error(type_key.where, f"{type_name} at {names.to_text(owner)} is given twice")
            return
        ttl = self.default_ttl
        items: Value = body
        if isinstance(body, Mapping) and body.get("records") is not None:
            self.check_rrset_options(body, type_name)
            items = body.get("records")  # type: ignore[assignment]
            ttl_value = body.get("ttl")
            if ttl_value is not None:
                try:
                    ttl = parse_ttl(ttl_value)
                except FieldError as error:
                    self.error(error.where, error.message)
        if rtype == QTYPE.SOA:
            self.read_soa(owner, items, ttl, type_key.where)
            return
        records, members = self.read_records(type_name, items)
        if records:
            options = body if isinstance(body, Mapping) and body.get("records") is not None else None
            balance = self.read_balance(type_name, options, members)
            self.rrsets[(owner, rtype)] = RRsetSpec(owner, rtype, ttl, tuple(records), type_key.where, balance)

    def read_balance(self, type_name: str, options: Mapping | None, members: list[MemberSpec]) -> BalanceSpec | None:
        """The RRset's balancing: its options, else the zone's policy, else round-robin
        when it has several records (README, "Load balancing")."""
        given = {key: options.get(key) for key in BALANCE_OPTION_KEYS} if options is not None else {}
        given = {key: value for key, value in given.items() if value is not None}
        if type_name not in BALANCED_TYPE_NAMES:
            for key, value in given.items():
                self.error(value.where, f"{type_name}: {key!r} applies to MX, A and AAAA records only")
            return None
        try:
            policy = parse_policy(given["policy"]) if "policy" in given else None
            answer = _integer(given["answer"], "answer", 1, 1000) if "answer" in given else None
            promote = parse_bool(given["promote"], "promote") if "promote" in given else False
            check = parse_check_reference(given["check"], self.checks) if "check" in given else None
        except FieldError as error:
            self.error(error.where, error.message)
            return None
        if promote and type_name != "MX":
            self.error(given["promote"].where, "promote applies to MX records only (it rewrites preferences)")
        if policy is None:
            policy = self.default_policy or (Policy.ROUND_ROBIN if len(members) > 1 else Policy.FIXED)
        if len(members) < 2 and check is None and answer is None:
            return None  # one record and nothing to watch: nothing to balance
        return BalanceSpec(policy, tuple(members), answer, promote, check)

    def check_rrset_options(self, body: Mapping, type_name: str) -> None:
        for key, _ in body.items:
            if key.text not in RRSET_OPTION_KEYS:
                self.error(
                    key.where,
                    f"{type_name}: unknown RRset option {key.text!r} (options: {', '.join(RRSET_OPTION_KEYS)})",
                )

    def read_soa(self, owner: Name, items: Value, ttl: int, where: Where) -> None:
        if owner != self.origin:
            self.error(where, "SOA belongs at the zone apex (@) only (RFC 1035 §5.2)")
            return
        try:
            self.soa = (parse_soa(items, _Context(self.origin)), ttl, where)
        except FieldError as error:
            self.error(error.where, error.message)

    def read_records(self, type_name: str, items: Value) -> tuple[list[RecordSpec], list[MemberSpec]]:
        """The records, and for balanced types each one's member fields (weight, probe)."""
        parser = PARSERS[type_name]
        values = items.items if isinstance(items, Sequence) else (items,)
        if isinstance(items, Sequence) and not values:
            self.error(items.where, f"{type_name}: empty list; leave the type out instead")
        if len(values) > MAX_RRSET_RECORDS:
            self.error(items.where, f"{type_name}: {len(values)} records; an RRset holds at most "
                       f"{MAX_RRSET_RECORDS} (more cannot fit in one DNS message of 65,535 octets, RFC 1035 §4.2.2)")
            return [], []
        records: list[RecordSpec] = []
        members: list[MemberSpec] = []
        ctx = _Context(self.origin)
        for item in values:
            try:
                record_value, member = split_member(item) if type_name in BALANCED_TYPE_NAMES else (item, None)
                records.append(RecordSpec(parser(record_value, ctx), item.where))
                if member is not None:
                    members.append(member)
            except FieldError as error:
                self.error(error.where, error.message)
        return records, members

    def finish_soa(self, default_serial: int, where: Where) -> None:
        """Build the SOA RRset, filling the defaults (mname: the first apex NS)."""
        if self.soa is None:
            nothing_given = Scalar("", "tag:yaml.org,2002:null", where, False)
            draft, ttl, soa_where = parse_soa(nothing_given, _Context(self.origin)), self.default_ttl, where
        else:
            draft, ttl, soa_where = self.soa
        mname = draft.mname
        if mname is None:
            apex_ns = self.rrsets.get((self.origin, QTYPE.NS))
            if apex_ns is None:
                return  # zone.py reports the missing apex NS; no SOA can be derived
            mname = names.from_dnslabel(apex_ns.records[0].rdata.label)
        serial = draft.serial if draft.serial is not None else default_serial
        self.serial_given = draft.serial is not None
        times = (serial, draft.timers["refresh"], draft.timers["retry"], draft.timers["expire"], draft.timers["minimum"])
        rdata = SOA(names.to_dnslabel(mname), names.to_dnslabel(draft.rname), times)
        self.rrsets[(self.origin, QTYPE.SOA)] = RRsetSpec(
            self.origin, QTYPE.SOA, ttl, (RecordSpec(rdata, soa_where),), soa_where
        )


def read_zone_text(
    text: str, path: str, origin: Name, default_serial: int
) -> tuple[ZoneSource | None, list[Problem]]:
    """Parse one zone file's text. Returns the source (None when unreadable) and every problem.

    ``default_serial`` is used when the SOA gives none (the loader passes the file's
    modification time, so the serial grows with each change and survives restarts).
    """
    start = Where(path, 1, 1)
    try:
        tree, duplicates = parse_tree(text, path)
    except TreeError as error:
        return None, [Problem(error.where, error.message)]
    problems = [Problem(error.where, error.message) for error in duplicates]
    if tree is None:
        return None, problems + [Problem(start, "file is empty: a zone needs SOA defaults and NS records")]
    if not isinstance(tree, Mapping):
        return None, problems + [Problem(tree.where, "a zone file is a mapping with 'records:' (and optional 'ttl:')")]
    reader = _Reader(path, origin)
    reader.read_top(tree)
    reader.finish_soa(default_serial, tree.where)
    problems += reader.problems
    source = ZoneSource(path, origin, reader.default_ttl, tuple(reader.rrsets.values()), tree.where,
                        serial_given=reader.serial_given, transfer=reader.transfer)
    return source, problems
