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

This module reads the file's structure (owners, types, RRset options, the SOA) and
reports every problem it can find as ``file:line:column: message``; each record's value
is read by ``zones/records.py`` (every type).  Rules that need the whole zone
(CNAME beside other data, glue, targets) live in ``zones/zone.py``; nothing here packs wire
bytes or knows about answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dnslib import QTYPE, RD, SOA

from authdns.base import names

from authdns.base import rrtypes
from authdns.base.names import Name
from authdns.zones.balancefile import BALANCE_OPTION_KEYS, parse_bool, parse_check_reference, parse_checks, parse_policy, split_member
from authdns.zones.balancespec import BALANCED_TYPE_NAMES, BalanceSpec, CheckSpec, MemberSpec, Policy
from authdns.zones.records import Context, SoaDraft, parse_record, parse_soa, parse_ttl
from authdns.zones.transferspec import TransferSpec, parse_transfer
from authdns.zones.yamlfields import FieldError, integer as _integer
from authdns.zones.yamltree import Mapping, Scalar, Sequence, TreeError, Value, Where, parse_tree

DEFAULT_TTL = 3600
ZONE_FILE_SUFFIXES = (".yaml", ".yml")
# The root zone's file: "..yaml" would be a hidden file (and every tool hides it), so the
# root gets a name of its own, as Knot's default template names it root.zone.
ROOT_ZONE_STEM = "root"
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


def is_zone_file_name(name: str) -> bool:
    """A zone file's name: ``*.yaml``/``*.yml``, not hidden (".x.yaml.swp" and
    ".x.yaml.tmp" are editors' and tools' files, never zones)."""
    return name.endswith(ZONE_FILE_SUFFIXES) and not name.startswith(".")


# Left behind by editors, patch and package tools: not zones, and not worth a warning.
BACKUP_SUFFIXES = ("~", ".bak", ".orig", ".rej", ".swp", ".tmp", ".dpkg-old", ".dpkg-new", ".dpkg-dist",
                   ".rpmnew", ".rpmsave")


def wants_a_hint(name: str) -> bool:
    """A file beside the zones that is no zone file and deserves a word: not hidden, not
    an editor's or package tool's backup (a master file copied in, most likely)."""
    return not is_zone_file_name(name) and not name.startswith(".") and not name.endswith(BACKUP_SUFFIXES)


MASTER_FILE_SUFFIXES = (".zone", ".db", ".signed", ".hosts", ".txt")


def master_file_origin(file_name: str) -> str:
    """The origin a master file's name suggests: ``example.com.zone``, ``example.com.db``,
    ``db.example.com`` (BIND's habit) or ``example.com`` all give ``example.com.``;
    ``root.zone`` gives the root (Knot's name for it)."""
    stem = file_name
    for suffix in MASTER_FILE_SUFFIXES:
        stem = stem.removesuffix(suffix)
    stem = stem.removeprefix("db.").rstrip(".")
    return "." if stem.lower() in (ROOT_ZONE_STEM, "") else stem + "."


def not_yaml_hint(path: Path) -> str:
    """Why a file beside the zones is not served, and how to make it a zone: a master
    file is converted with ``authdns import`` (README, "Importing a zone")."""
    origin = master_file_origin(path.name)
    target = f"{ROOT_ZONE_STEM}.yaml" if origin == "." else f"{origin.rstrip('.')}.yaml"
    return (f"not a YAML zone file, so not served; if it is a master file, convert it with "
            f"`authdns import {path.name} --origin {origin} -o {target}`")


def origin_from_path(path: Path) -> Name:
    """``zones/example.test.yaml`` serves ``example.test.`` (one zone per file);
    ``root.yaml`` serves the root zone, ``root..yaml`` the name ``root.``."""
    stem = path.name
    for suffix in ZONE_FILE_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    if stem.lower() == ROOT_ZONE_STEM:
        return names.ROOT
    return names.from_text(stem if stem.endswith(".") else stem + ".")


# ---------------------------------------------------------------- the file


@dataclass(slots=True)
class _Reader:
    path: str
    origin: Name
    default_ttl: int = DEFAULT_TTL
    problems: list[Problem] = field(default_factory=list)
    rrsets: dict[tuple[Name, int], RRsetSpec] = field(default_factory=dict)
    soa: tuple[SoaDraft, int, Where] | None = None
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
                written = Context(names.ROOT).name(origin_value, "origin")
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
        """The zone's ``transfer:`` (zones/transferspec.py); each bad entry reported at its place."""
        value = top.get("transfer")
        if value is None:
            return
        self.transfer, errors = parse_transfer(value)
        for error in errors:
            self.error(error.where, error.message)

    def read_owner(self, owner_key: Scalar, types: Value) -> None:
        try:
            owner = Context(self.origin).name(owner_key, "owner name")
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
        try:
            rtype = rrtypes.type_code(type_key.text)
        except rrtypes.RdataError as error:
            self.error(type_key.where, str(error))
            return
        type_name = rrtypes.type_name(rtype)
        if (owner, rtype) in self.rrsets or (rtype == QTYPE.SOA and self.soa is not None):
            self.error(type_key.where, f"{type_name} at {names.to_text(owner)} is given twice")
            return
        ttl = self.default_ttl
        items: Value = body
        options = body if isinstance(body, Mapping) and body.get("records") is not None else None
        if options is not None:
            self.check_rrset_options(options, type_name)
            items = options.get("records")  # type: ignore[assignment]
            ttl_value = options.get("ttl")
            if ttl_value is not None:
                try:
                    ttl = parse_ttl(ttl_value)
                except FieldError as error:
                    self.error(error.where, error.message)
        if rtype == QTYPE.SOA:
            self.read_soa(owner, items, ttl, type_key.where)
            return
        records, members = self.read_records(rtype, type_name, items)
        if records:
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
        if isinstance(items, Sequence):
            # The RRset form's `records:` list, as for every type; an SOA RRset holds one
            # record (RFC 1035 §5.2, RFC 2181 §6.1).
            if len(items.items) != 1:
                self.error(items.where, f"an SOA RRset holds exactly one record, not {len(items.items)}")
                return
            items = items.items[0]
        try:
            self.soa = (parse_soa(items, Context(self.origin)), ttl, where)
        except FieldError as error:
            self.error(error.where, error.message)

    def read_records(self, rtype: int, type_name: str, items: Value) -> tuple[list[RecordSpec], list[MemberSpec]]:
        """The records, and for balanced types each one's member fields (weight, probe)."""
        values = items.items if isinstance(items, Sequence) else (items,)
        if isinstance(items, Sequence) and not values:
            self.error(items.where, f"{type_name}: empty list; leave the type out instead")
        if len(values) > MAX_RRSET_RECORDS:
            self.error(items.where, f"{type_name}: {len(values)} records; an RRset holds at most "
                       f"{MAX_RRSET_RECORDS} (more cannot fit in one DNS message of 65,535 octets, RFC 1035 §4.2.2)")
            return [], []
        records: list[RecordSpec] = []
        members: list[MemberSpec] = []
        ctx = Context(self.origin)
        for item in values:
            try:
                record_value, member = split_member(item) if type_name in BALANCED_TYPE_NAMES else (item, None)
                records.append(RecordSpec(parse_record(rtype, record_value, ctx), item.where))
                if member is not None:
                    members.append(member)
            except FieldError as error:
                self.error(error.where, error.message)
        return records, members

    def finish_soa(self, default_serial: int, where: Where) -> None:
        """Build the SOA RRset, filling the defaults (mname: the first apex NS)."""
        if self.soa is None:
            nothing_given = Scalar("", "tag:yaml.org,2002:null", where, False)
            draft, ttl, soa_where = parse_soa(nothing_given, Context(self.origin)), self.default_ttl, where
        else:
            draft, ttl, soa_where = self.soa
        mname = draft.mname
        if mname is None:
            apex_ns = self.rrsets.get((self.origin, QTYPE.NS))
            if apex_ns is None:
                return  # zones/zone.py reports the missing apex NS; no SOA can be derived
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
