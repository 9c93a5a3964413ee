"""RFC 1035 master files → records with their positions, for ``authdns import``.

The line grammar is read here (RFC 1035 §5.1: owner inheritance, ``@``, relative names,
parentheses, comments, quoted strings, TTL and class in either order; ``$ORIGIN``,
``$TTL`` (RFC 2308 §4), ``$INCLUDE`` and BIND's ``$GENERATE``), so that every record,
error and warning carries ``file:line:column`` and ``$INCLUDE`` is resolved against the
including file. The rdata of every type is read by dnspython (``dns.rdata.from_text``),
from the record's tokens exactly as written.

Where servers differ, the choice is stated where it is made: out-of-zone data is an error
(NSD); a record given twice is kept once with a warning; an RRset whose TTLs differ gets
the lowest (RFC 2181 §5.2) with a warning; records without a TTL and without ``$TTL``
take the last stated TTL (RFC 1035 §5.1), warned since NSD and BIND would not. Octets
outside ASCII are taken as octets (as NSD does), never IDNA-encoded. Writes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.ttl

from authdns.base import rrtypes
from authdns.zones.yamltree import Where
from authdns.zones.zonefile import Problem

MAX_INCLUDE_DEPTH = 16
MAX_GENERATE = 65536  # records one $GENERATE line may make
NSD_DEFAULT_TTL = 3600  # what NSD 4.6 gives records with no TTL and no $TTL (measured)


@dataclass(frozen=True, slots=True)
class Token:
    text: str  # as written: quotes and escapes kept, so dnspython reads it the same
    line: int
    column: int
    quoted: bool = False


@dataclass(frozen=True, slots=True)
class Entry:
    """One logical line: its tokens, and whether it began with blank (owner inherited)."""

    tokens: tuple[Token, ...]
    inherits_owner: bool


@dataclass(frozen=True, slots=True)
class MasterRecord:
    owner: dns.name.Name  # absolute
    ttl: int
    rdata: dns.rdata.Rdata
    where: Where


@dataclass(slots=True)
class MasterFile:
    origin: dns.name.Name
    records: list[MasterRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(not problem.warning for problem in self.problems)


class _Stop(Exception):
    """A problem that ends the current line (already recorded)."""


# ---------------------------------------------------------------- tokens


def _non_ascii_as_octets(text: str) -> str:
    """Non-ASCII characters as ``\\DDD`` escapes of their UTF-8 octets: a master file's
    names and strings are octets (RFC 1035 §5.1), not IDNA input."""
    if text.isascii():
        return text
    return "".join(ch if ch.isascii() else "".join(f"\\{octet:03d}" for octet in ch.encode("utf-8")) for ch in text)


def tokenize(text: str, path: str, problems: list[Problem]) -> list[Entry]:
    """Split master-file text into logical lines of tokens (RFC 1035 §5.1)."""
    entries: list[Entry] = []
    tokens: list[Token] = []
    depth = 0  # open parentheses
    inherits = False
    line_start = True
    index, line, column = 0, 1, 1
    length = len(text)

    def finish() -> None:
        nonlocal tokens
        if tokens:
            entries.append(Entry(tuple(tokens), inherits))
        tokens = []

    while index < length:
        char = text[index]
        if char == "\n":
            if depth == 0:
                finish()
                line_start = True
            index, line, column = index + 1, line + 1, 1
            continue
        if char in " \t\r":
            if line_start and depth == 0 and not tokens:
                inherits = True
            index, column = index + 1, column + 1
            continue
        if line_start and depth == 0 and not tokens and char != ";":
            if column == 1:
                inherits = False
            line_start = False
        if char == ";":
            while index < length and text[index] != "\n":
                index += 1
            continue
        if char == "(":
            depth += 1
            index, column = index + 1, column + 1
            continue
        if char == ")":
            if depth == 0:
                problems.append(Problem(Where(path, line, column), "')' without a matching '('"))
            else:
                depth -= 1
            index, column = index + 1, column + 1
            continue
        start_line, start_column, start = line, column, index
        quoted = char == '"'
        index += 1
        while index < length:
            char = text[index]
            if char == "\\":
                index += 2
                continue
            if quoted:
                if char == '"':
                    index += 1
                    break
                if char == "\n":
                    line += 1
            elif char in " \t\r\n;()":
                break
            index += 1
        else:
            if quoted and not text[start:].endswith('"'):
                problems.append(Problem(Where(path, start_line, start_column), "quoted string is not closed"))
        raw = text[start:index]
        tokens.append(Token(raw, start_line, start_column, quoted))
        column = start_column + len(raw) if line == start_line else len(raw) - raw.rfind("\n")
    if depth:
        problems.append(Problem(Where(path, line, column), "the file ends inside parentheses: a ')' is missing"))
    finish()
    return entries


# ---------------------------------------------------------------- $GENERATE

_MODIFIER = re.compile(r"\{([+-]?\d+)(?:,(\d+)(?:,([doxXnN]))?)?\}")


def _nibbles(value: int, width: int, upper: bool) -> str:
    """BIND's nibble format: hex digits, least significant first, dot-separated, zero
    nibbles added until the text is at least ``width`` characters long."""
    digits = "0123456789ABCDEF" if upper else "0123456789abcdef"
    parts = []
    while True:
        parts.append(digits[value & 0xF])
        value >>= 4
        if value == 0 and len(".".join(parts)) >= width:
            return ".".join(parts)


def generate_text(template: str, counter: int) -> str:
    """BIND's ``$GENERATE`` substitution: ``$`` is the counter, ``${offset,width,base}``
    modifies it (bases d, o, x, X, n, N), ``$$`` is a literal ``$`` and a backslash
    escape (``\\$``) is copied unchanged for the rdata reader."""
    out: list[str] = []
    index = 0
    while index < len(template):
        char = template[index]
        if char == "\\":
            out.append(template[index:index + 2])
            index += 2
        elif char != "$":
            out.append(char)
            index += 1
        elif template.startswith("$", index + 1):
            out.append("$")
            index += 2
        else:
            index += 1
            offset, width, base = 0, 0, "d"
            match = _MODIFIER.match(template, index)
            if template.startswith("{", index):
                if match is None:
                    raise ValueError(f"bad $GENERATE modifier in {template!r}: use ${{offset,width,base}}")
                offset = int(match.group(1))
                width = int(match.group(2) or 0)
                base = match.group(3) or "d"
                if width > 255:
                    raise ValueError(f"$GENERATE width {width} is larger than a name")
                index = match.end()
            value = counter + offset
            if base in "nN":
                if value < 0:
                    raise ValueError("a negative $GENERATE value has no nibble form")
                out.append(_nibbles(value, width, base == "N"))
            else:
                out.append(format(value, base).zfill(width))
    return "".join(out)


def _generate_range(text: str) -> range:
    match = re.fullmatch(r"(\d+)-(\d+)(?:/(\d+))?", text)
    if match is None:
        raise ValueError(f"$GENERATE range must be START-STOP or START-STOP/STEP, not {text!r}")
    start, stop, step = int(match.group(1)), int(match.group(2)), int(match.group(3) or 1)
    if stop < start or step < 1:
        raise ValueError(f"$GENERATE range {text!r} is empty or has a step below 1")
    if (stop - start) // step + 1 > MAX_GENERATE:
        raise ValueError(f"$GENERATE range {text!r} makes more than {MAX_GENERATE} records")
    return range(start, stop + 1, step)


# ---------------------------------------------------------------- the reader


@dataclass(slots=True)
class _FileState:
    path: str
    origin: dns.name.Name
    last_owner: dns.name.Name | None


class Reader:
    """Reads one master file and the files it includes into a ``MasterFile``."""

    def __init__(self, zone_origin: dns.name.Name) -> None:
        self.result = MasterFile(zone_origin)
        self.zone_origin = zone_origin
        self.default_ttl: int | None = None  # $TTL
        self.last_ttl: int | None = None  # the last TTL a record stated (RFC 1035 §5.1)
        self.soa_minimum: int | None = None
        self.dropped: dict[str, tuple[int, Where]] = {}  # signer types left out: count, first place
        self.including: list[str] = []
        self.top_base: Path | None = None  # the first file's directory

    # -- problems

    def error(self, where: Where, message: str) -> None:
        self.result.problems.append(Problem(where, message))

    def warn(self, where: Where, message: str) -> None:
        self.result.problems.append(Problem(where, message, warning=True))

    def at(self, state: _FileState, token: Token) -> Where:
        return Where(state.path, token.line, token.column)

    # -- files

    def read_text(self, text: str, path: str, origin: dns.name.Name, base: Path) -> None:
        if self.top_base is None:
            self.top_base = base
        state = _FileState(path, origin, None)
        self.including.append(path)
        try:
            for entry in tokenize(text, path, self.result.problems):
                try:
                    self.read_entry(entry, state, base)
                except _Stop:
                    continue
        finally:
            self.including.pop()

    def read_file(self, path: Path, shown: str, origin: dns.name.Name, where: Where) -> None:
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as error:
            self.error(where, f"cannot read {shown}: {error.strerror}")
            return
        except UnicodeDecodeError as error:
            self.error(where, f"{shown} is not UTF-8 text (byte {error.start})")
            return
        self.read_text(text, shown, origin, path.parent)

    # -- one logical line

    def read_entry(self, entry: Entry, state: _FileState, base: Path) -> None:
        first = entry.tokens[0]
        if not entry.inherits_owner and first.text.startswith("$") and not first.quoted:
            self.read_directive(entry, state, base)
            return
        tokens = list(entry.tokens)
        if entry.inherits_owner:
            if state.last_owner is None:
                self.error(self.at(state, first), "no owner name: the first record must name its owner")
                raise _Stop
            owner = state.last_owner
        else:
            owner = self.name(tokens.pop(0), state)
            state.last_owner = owner
        self.read_record(owner, tokens, state, self.at(state, first))

    def name(self, token: Token, state: _FileState) -> dns.name.Name:
        if token.text == "@":
            return state.origin
        try:
            return dns.name.from_text(_non_ascii_as_octets(token.text), state.origin)
        except dns.exception.DNSException as error:
            self.error(self.at(state, token), f"bad name {token.text!r}: {error}")
            raise _Stop from None

    def read_record(self, owner: dns.name.Name, tokens: list[Token], state: _FileState, where: Where,
                    ttl: int | None = None) -> None:
        """``[TTL] [CLASS] TYPE RDATA`` (TTL and class in either order, RFC 1035 §5.1)."""
        seen_class = False
        while tokens:
            token = tokens[0]
            if ttl is None and re.fullmatch(r"(?i)(\d+[smhdw]?)+", token.text):
                try:
                    ttl = dns.ttl.from_text(token.text)
                except dns.ttl.BadTTL as error:
                    self.error(self.at(state, token), f"bad TTL {token.text!r}: {error}")
                    raise _Stop from None
                self.last_ttl = ttl
                tokens.pop(0)
            elif not seen_class and _is_class(token.text):
                if dns.rdataclass.from_text(token.text) != dns.rdataclass.IN:
                    self.error(self.at(state, token), f"class {token.text.upper()}: only class IN is served")
                    raise _Stop
                seen_class = True
                tokens.pop(0)
            else:
                break
        if not tokens:
            self.error(where, "record has no type")
            raise _Stop
        type_token = tokens.pop(0)
        rtype = self.rtype(type_token, state)
        if rtype is None:
            return
        if not owner.is_subdomain(self.zone_origin):
            self.error(where, f"{owner} is out of zone: not at or below {self.zone_origin} (NSD refuses it too; "
                       "BIND drops it with a warning)")
            raise _Stop
        rdata = self.rdata(rtype, type_token, tokens, state)
        if rtype == dns.rdatatype.SOA and self.soa_minimum is None:
            self.soa_minimum = rdata.minimum
        self.result.records.append(MasterRecord(owner, self.implicit_ttl(ttl, rtype, rdata, where), rdata, where))

    def rtype(self, token: Token, state: _FileState) -> int | None:
        """The type's code, or None when the record is left out (a signer's type)."""
        try:
            code = dns.rdatatype.from_text(token.text)
        except (dns.rdatatype.UnknownRdatatype, ValueError):
            code = None
        if code is not None and code in rrtypes.SIGNER_TYPES:
            count, first = self.dropped.get(token.text.upper(), (0, self.at(state, token)))
            self.dropped[token.text.upper()] = (count + 1, first)
            return None
        try:
            return rrtypes.type_code(token.text)
        except rrtypes.RdataError as error:
            self.error(self.at(state, token), str(error))
            raise _Stop from None

    def rdata(self, rtype: int, type_token: Token, tokens: list[Token], state: _FileState) -> dns.rdata.Rdata:
        text = _non_ascii_as_octets(" ".join(token.text for token in tokens))
        try:
            return dns.rdata.from_text(dns.rdataclass.IN, rtype, text, origin=state.origin, relativize=False)
        except (dns.exception.DNSException, ValueError, TypeError, KeyError, IndexError) as error:
            where = self.at(state, tokens[0] if tokens else type_token)
            reason = str(error) or type(error).__name__
            self.error(where, f"{rrtypes.type_name(rtype)}: {reason}: {text!r}" if text else
                       f"{rrtypes.type_name(rtype)} record has no data")
            raise _Stop from None

    def implicit_ttl(self, ttl: int | None, rtype: int, rdata: dns.rdata.Rdata, where: Where) -> int:
        """A record's TTL when it states none: ``$TTL`` (RFC 2308 §4); without one the last
        stated TTL (RFC 1035 §5.1), else the SOA MINIMUM, else NSD's 3600 — warned about,
        since NSD (3600) and BIND (SOA MINIMUM) would not all agree."""
        if ttl is not None:
            return ttl
        if self.default_ttl is not None:
            return self.default_ttl
        if self.last_ttl is not None:
            chosen, why = self.last_ttl, "the last TTL stated before it (RFC 1035 §5.1)"
        elif self.soa_minimum is not None:
            chosen, why = self.soa_minimum, "the SOA MINIMUM (as BIND does)"
        else:
            chosen, why = NSD_DEFAULT_TTL, "3600 (NSD's default)"
        self.warn(where, f"no TTL and no $TTL: using {chosen}, {why}; NSD would use 3600 and BIND the SOA "
                  "MINIMUM: add a $TTL line to be sure")
        return chosen

    # -- directives

    def read_directive(self, entry: Entry, state: _FileState, base: Path) -> None:
        name, *arguments = entry.tokens
        directive = name.text.upper()
        where = self.at(state, name)
        if directive == "$ORIGIN" and len(arguments) == 1:
            state.origin = self.name(arguments[0], state)
        elif directive == "$TTL" and len(arguments) == 1:
            try:
                self.default_ttl = dns.ttl.from_text(arguments[0].text)
            except dns.ttl.BadTTL as error:
                self.error(self.at(state, arguments[0]), f"bad $TTL {arguments[0].text!r}: {error}")
        elif directive == "$INCLUDE" and 1 <= len(arguments) <= 2:
            self.include(arguments, state, base, where)
        elif directive == "$GENERATE" and len(arguments) >= 4:
            self.generate(arguments, state, where)
        elif directive in ("$ORIGIN", "$TTL", "$INCLUDE", "$GENERATE"):
            usage = {"$ORIGIN": "$ORIGIN NAME", "$TTL": "$TTL TTL", "$INCLUDE": "$INCLUDE FILE [ORIGIN]",
                     "$GENERATE": "$GENERATE START-STOP[/STEP] LHS [TTL] [CLASS] TYPE RHS"}[directive]
            self.error(where, f"{directive} takes: {usage}")
        else:
            self.error(where, f"unknown directive {name.text} (known: $ORIGIN, $TTL, $INCLUDE, $GENERATE)")

    def include_path(self, raw: str, base: Path) -> Path:
        """Where an ``$INCLUDE`` file is: relative to the including file's directory, or,
        when it is not there, to the first file's directory — BIND and NSD resolve every
        include from their working directory, which is usually where the zone files are."""
        if Path(raw).is_absolute():
            return Path(raw)
        beside = base / raw
        if not beside.exists() and self.top_base is not None and (self.top_base / raw).exists():
            return self.top_base / raw
        return beside

    def include(self, arguments: list[Token], state: _FileState, base: Path, where: Where) -> None:
        """``$INCLUDE FILE [ORIGIN]`` (RFC 1035 §5.1): the origin and the last owner are the
        including file's again afterwards."""
        raw = arguments[0].text.strip('"')
        path = self.include_path(raw, base)
        origin = self.name(arguments[1], state) if len(arguments) == 2 else state.origin
        resolved = str(path.resolve())
        if resolved in (str(Path(p).resolve()) for p in self.including if not p.startswith("<")):
            self.error(where, f"$INCLUDE loop: {' -> '.join(self.including + [raw])}")
            return
        if len(self.including) > MAX_INCLUDE_DEPTH:
            self.error(where, f"$INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep: {' -> '.join(self.including)}")
            return
        saved_owner = state.last_owner
        self.read_file(path, str(path), origin, where)
        state.last_owner = saved_owner

    def generate(self, arguments: list[Token], state: _FileState, where: Where) -> None:
        """BIND's ``$GENERATE START-STOP[/STEP] LHS [TTL] [CLASS] TYPE RHS``."""
        range_token, lhs, *rest = arguments
        rhs = rest.pop()
        try:
            counters = _generate_range(range_token.text)
        except ValueError as error:
            self.error(self.at(state, range_token), str(error))
            return
        ttl = None
        for counter in counters:
            try:
                owner_text, rdata_text = generate_text(lhs.text, counter), generate_text(rhs.text, counter)
            except ValueError as error:
                self.error(where, str(error))
                return
            owner = self.name(Token(owner_text, lhs.line, lhs.column), state)
            tokens = [Token(t.text, t.line, t.column) for t in rest] + [Token(rdata_text, rhs.line, rhs.column)]
            self.read_record(owner, tokens, state, where, ttl)
            state.last_owner = owner


@dataclass(slots=True)
class MasterRRset:
    """The records of one owner and type, in file order, with the RRset's TTL."""

    owner: dns.name.Name
    rtype: int
    ttl: int
    rdatas: list[dns.rdata.Rdata]
    where: Where  # its first record


def group(master: MasterFile) -> list[MasterRRset]:
    """Records into RRsets, in the order their first record came. A record given twice is
    kept once (an RRset is a set, RFC 2181 §5; BIND and NSD drop the copy silently);
    records of one RRset with different TTLs give it the lowest (RFC 2181 §5.2: what a
    client must assume; NSD 4.6 warns and serves each TTL, BIND warns and uses the first)."""
    rrsets: dict[tuple[dns.name.Name, int], MasterRRset] = {}
    seen: dict[tuple[dns.name.Name, int], dict[bytes, Where]] = {}
    for record in master.records:
        key = (record.owner, record.rdata.rdtype)
        rrset = rrsets.get(key)
        if rrset is None:
            rrsets[key] = MasterRRset(record.owner, record.rdata.rdtype, record.ttl, [record.rdata], record.where)
            seen[key] = {record.rdata.to_digestable(): record.where}
            continue
        type_name = rrtypes.type_name(record.rdata.rdtype)
        if record.ttl != rrset.ttl:  # a copy's TTL counts too: clients would see it
            lowest = min(record.ttl, rrset.ttl)
            master.problems.append(Problem(record.where, f"TTL {record.ttl} differs from the TTL {rrset.ttl} of the "
                                           f"{record.owner} {type_name} RRset (RFC 2181 §5.2): the RRset gets the "
                                           f"lowest, {lowest}", warning=True))
            rrset.ttl = lowest
        digest = record.rdata.to_digestable()
        if digest in seen[key]:
            master.problems.append(Problem(record.where, f"duplicate {type_name} record left out: the same data as "
                                           f"line {seen[key][digest].line}", warning=True))
            continue
        seen[key][digest] = record.where
        rrset.rdatas.append(record.rdata)
    return list(rrsets.values())


def _is_class(text: str) -> bool:
    try:
        dns.rdataclass.from_text(text)
    except (dns.rdataclass.UnknownRdataclass, ValueError):
        return False
    return not text.isdigit()


def read_master(text: str, origin: dns.name.Name, path: str = "<stdin>", base: Path = Path(".")) -> MasterFile:
    """Read master-file text for the zone ``origin``; ``base`` is where ``$INCLUDE``
    paths start (the file's own directory)."""
    reader = Reader(origin)
    reader.read_text(text, path, origin, base)
    for type_name, (count, where) in reader.dropped.items():
        reader.warn(where, f"{count} {type_name} record(s) left out: authdns does not sign zones yet and serves this "
                    "zone unsigned (a DS for it at the parent would make it fail validation)")
    return reader.result


def leading_origin(text: str) -> str | None:
    """The ``$ORIGIN`` a file sets before its first record, if it does (``import`` takes
    it for the zone's origin when none is given)."""
    for entry in tokenize(text, "<origin>", []):
        first = entry.tokens[0]
        if first.text.upper() == "$ORIGIN" and len(entry.tokens) == 2 and not entry.inherits_owner:
            name = entry.tokens[1].text
            return name if name.endswith(".") else None
        if not first.text.startswith("$"):
            return None
    return None
