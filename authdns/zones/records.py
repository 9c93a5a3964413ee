"""One record's YAML value → rdata, for every record type (README.md, "Record types").

Every type has a short form, its presentation text as a master file writes it after the
type (``TLSA: "3 1 1 0c72..."``), read by dnspython through ``base/rrtypes.py``; RFC 3597's
``\\# LEN HEX`` works for every type. The types people edit by hand also have a mapping
form with the RFC's field names. A few short forms predate that rule and stay as they
are: TXT and SPF take a string verbatim (one character-string, no quoting), SOA fields
have defaults, MX/NS/SRV targets are checked to be host names.

Every problem is a ``FieldError`` at the position of the value. Nothing here looks
beyond one record (whole-zone rules are ``zones/zone.py``'s).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Callable

from dnslib import AAAA, CAA, CNAME, MX, NS, PTR, QTYPE, RD, SRV, TXT, A

from authdns.base import names

from authdns.base import rrtypes
from authdns.base.names import Name
from authdns.zones.yamlfields import FieldError, integer as _integer, scalar as _scalar
from authdns.zones.yamltree import Mapping, Scalar, Sequence, Value

MAX_TTL = 2**31 - 1  # RFC 2181 §8
# SOA timers when the file leaves them out: the common values of RIPE-203 and RFC 1912,
# shortened for refresh/retry since NOTIFY (RFC 1996) makes polling a fallback only.
SOA_DEFAULTS = {"refresh": 14400, "retry": 3600, "expire": 1209600, "minimum": 3600}
SOA_FIELDS = ("mname", "rname", "serial", "refresh", "retry", "expire", "minimum")

_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TTL_PATTERN = re.compile(r"^(?:\d+[smhdw])+$")
GENERIC_PREFIX = "\\#"  # RFC 3597 §5


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


class Context:
    """What reading a record needs to know: the origin relative names hang from."""

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


def _part(text: str, like: Scalar) -> Scalar:
    return Scalar(text, "tag:yaml.org,2002:str", like.where, False)


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
    return [_part(part, scalar) for part in parts]


def _single(value: Value, key: str, what: str) -> Value:
    """A one-field record: the bare value or ``{key: value}``."""
    if isinstance(value, Mapping):
        return _fields(value, (key,), what)[0]
    return value


# ---------------------------------------------------------------- the native types


def _address(value: Value, type_name: str, kind: type, version: str, make: type) -> RD:
    scalar = _scalar(_single(value, "address", f"{type_name} record"), f"{type_name} address")
    try:
        return make(str(kind(scalar.text.strip())))
    except ValueError:
        raise FieldError(scalar.where, f"{type_name} address {scalar.text!r} is not an {version} address") from None


def parse_a(value: Value, ctx: Context) -> RD:
    return _address(value, "A", ipaddress.IPv4Address, "IPv4", A)


def parse_aaaa(value: Value, ctx: Context) -> RD:
    return _address(value, "AAAA", ipaddress.IPv6Address, "IPv6", AAAA)


def parse_mx(value: Value, ctx: Context) -> RD:
    preference, exchange = _fields(value, ("preference", "exchange"), "MX record")
    number = _integer(preference, "MX preference", 0, 65535)
    target = ctx.host(exchange, "MX exchange", "RFC 1035 §3.3.9")
    return MX(names.to_dnslabel(target), number)


def parse_ns(value: Value, ctx: Context) -> RD:
    target = ctx.host(_single(value, "nsdname", "NS record"), "NS target", "RFC 1035 §3.3.11")
    return NS(names.to_dnslabel(target))


def parse_cname(value: Value, ctx: Context) -> RD:
    return CNAME(names.to_dnslabel(ctx.name(_single(value, "cname", "CNAME record"), "CNAME target")))


def parse_ptr(value: Value, ctx: Context) -> RD:
    return PTR(names.to_dnslabel(ctx.name(_single(value, "ptrdname", "PTR record"), "PTR target")))


def _text_string(value: Value, kind: str) -> bytes:
    scalar = _scalar(value, f"{kind} string")
    data = scalar.text.encode("utf-8")
    if len(data) > 255:
        raise FieldError(
            scalar.where,
            f"{kind} string is {len(data)} octets; at most 255 (RFC 1035 §3.3); split it into a list of strings",
        )
    return data


def _text_strings(value: Value, kind: str) -> list[bytes]:
    """The character-strings of one TXT or SPF record: a string verbatim, or a list."""
    body = _single(value, "text", f"{kind} record")
    if isinstance(body, Sequence):
        if not body.items:
            raise FieldError(body.where, f"{kind} record needs at least one string")
        return [_text_string(item, kind) for item in body.items]
    return [_text_string(body, kind)]


def parse_txt(value: Value, ctx: Context) -> RD:
    return TXT(_text_strings(value, "TXT"))


def parse_spf(value: Value, ctx: Context) -> RD:
    """SPF (type 99) has TXT's rdata (RFC 7208 §14.1) and TXT's short form here."""
    strings = _text_strings(value, "SPF")
    return rrtypes.WireRdata(rrtypes.SPF, b"".join(bytes([len(s)]) + s for s in strings))


def parse_srv(value: Value, ctx: Context) -> RD:
    priority, weight, port, target = _fields(value, ("priority", "weight", "port", "target"), "SRV record")
    return SRV(
        _integer(priority, "SRV priority", 0, 65535),
        _integer(weight, "SRV weight", 0, 65535),
        _integer(port, "SRV port", 0, 65535),
        names.to_dnslabel(ctx.host(target, "SRV target", "RFC 2782")),
    )


_CAA_TAG = re.compile(r"^[A-Za-z0-9]{1,15}$")  # RFC 8659 §4.1


def parse_caa(value: Value, ctx: Context) -> RD:
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
        flags = _part(parts[0], scalar)
        tag_text, content_text = parts[1], parts[2]
        if len(content_text) >= 2 and content_text[0] == content_text[-1] == '"':
            content_text = content_text[1:-1]
    if not _CAA_TAG.match(tag_text):
        raise FieldError(where, f"CAA tag {tag_text!r} must be 1-15 letters or digits (RFC 8659 §4.1)")
    return CAA(_integer(flags, "CAA flags", 0, 255), tag_text.lower(), content_text)


@dataclass(slots=True)
class SoaDraft:
    """SOA fields as written; ``mname=None`` means "the first apex NS" (filled in later)."""

    mname: Name | None
    rname: Name
    serial: int | None
    timers: dict[str, int] = field(default_factory=dict)


def _rname(value: Value, ctx: Context) -> Name:
    """The mailbox: a name (``hostmaster``) or an address (``hostmaster@example.test``), RFC 1035 §8."""
    scalar = _scalar(value, "SOA rname")
    text = scalar.text.strip()
    if "@" in text:
        local, _, domain = text.partition("@")
        escaped = local.replace("\\", "\\\\").replace(".", "\\.")
        text = f"{escaped}.{domain.rstrip('.')}."
    return ctx.name(Scalar(text, scalar.tag, scalar.where, scalar.quoted), "SOA rname")


def parse_soa(value: Value, ctx: Context) -> SoaDraft:
    if isinstance(value, Scalar) and value.text.strip().startswith(GENERIC_PREFIX):
        return _soa_draft(parse_generic(QTYPE.SOA, value, ctx))
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
    return SoaDraft(mname, rname, serial, timers)


def _soa_draft(soa: RD) -> SoaDraft:
    serial, *timers = soa.times
    return SoaDraft(names.from_dnslabel(soa.mname), names.from_dnslabel(soa.rname), serial,
                    dict(zip(SOA_DEFAULTS, timers)))


# ---------------------------------------------------------------- every other type


def parse_generic(rtype: int, value: Value, ctx: Context) -> RD:
    """The short form of any type: its presentation text (RFC 1035 §5.1, RFC 3597 §5)."""
    scalar = _scalar(value, f"{rrtypes.type_name(rtype)} record")
    try:
        return rrtypes.rdata_from_text(rtype, scalar.text, ctx.origin)
    except rrtypes.RdataError as error:
        raise FieldError(scalar.where, str(error)) from None


def _quoted(text: str) -> str:
    """A <character-string> in quotes for presentation text (RFC 1035 §5.1)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# RFC 7218 §2 acronyms for TLSA (and SMIMEA, RFC 8162 §2) fields, accepted in mappings.
_TLSA_NAMES = {
    "usage": {"pkix-ta": 0, "pkix-ee": 1, "dane-ta": 2, "dane-ee": 3, "privcert": 255},
    "selector": {"cert": 0, "spki": 1, "privsel": 255},
    "matching_type": {"full": 0, "sha2-256": 1, "sha2-512": 2, "privmatch": 255},
}


def _tlsa_field(key: str) -> Callable[[Scalar], str]:
    def convert(scalar: Scalar) -> str:
        return str(_TLSA_NAMES[key].get(scalar.text.strip().lower(), scalar.text.strip()))
    return convert


def _plain(scalar: Scalar) -> str:
    return scalar.text.strip()


def _string(scalar: Scalar) -> str:
    return _quoted(scalar.text)


@dataclass(frozen=True, slots=True)
class MappingForm:
    """A type's mapping form: its fields in presentation order, each turned into text."""

    fields: tuple[tuple[str, Callable[[Scalar], str]], ...]
    optional: tuple[str, ...] = ()


_TLSA_FORM = MappingForm((("usage", _tlsa_field("usage")), ("selector", _tlsa_field("selector")),
                          ("matching_type", _tlsa_field("matching_type")), ("data", _plain)))
_DS_FORM = MappingForm((("key_tag", _plain), ("algorithm", _plain), ("digest_type", _plain), ("digest", _plain)))
_SVCB_FORM = MappingForm((("priority", _plain), ("target", _plain)), optional=("params",))

MAPPING_FORMS: dict[str, MappingForm] = {
    "TLSA": _TLSA_FORM,  # RFC 6698 §2.2
    "SMIMEA": _TLSA_FORM,  # RFC 8162 §2
    "SSHFP": MappingForm((("algorithm", _plain), ("fp_type", _plain), ("fingerprint", _plain))),  # RFC 4255 §3.2
    "DS": _DS_FORM,  # RFC 4034 §5.3
    "CDS": _DS_FORM,  # RFC 7344 §3.1
    "NAPTR": MappingForm((("order", _plain), ("preference", _plain), ("flags", _string), ("service", _string),
                          ("regexp", _string), ("replacement", _plain))),  # RFC 3403 §4.1
    "SVCB": _SVCB_FORM,  # RFC 9460 §2.1
    "HTTPS": _SVCB_FORM,  # RFC 9460 §9
}


def _svc_params(value: Value) -> str:
    """``params: {alpn: [h2, h3], port: 443, no-default-alpn: null}`` → ``alpn="h2,h3" port="443" no-default-alpn``."""
    if not isinstance(value, Mapping):
        raise FieldError(value.where, "params must map SvcParam keys to values (RFC 9460 §2.1)")
    parts = []
    for key, item in value.items:
        if isinstance(item, Scalar) and item.is_null:
            parts.append(key.text)
        elif isinstance(item, Sequence):
            # A comma inside one value is escaped (RFC 9460 Appendix A.1, value lists)
            texts = [_scalar(element, f"{key.text} value").text.replace(",", "\\,") for element in item.items]
            parts.append(f"{key.text}={_quoted(','.join(texts))}")
        else:
            parts.append(f"{key.text}={_quoted(_scalar(item, f'{key.text} value').text)}")
    return " ".join(parts)


def parse_mapping_form(rtype: int, form: MappingForm, value: Mapping, ctx: Context) -> RD:
    type_text = rrtypes.type_name(rtype)
    known = [key for key, _ in form.fields] + list(form.optional)
    unknown = [key for key in value.keys() if key not in known]
    if unknown:
        raise FieldError(value.where, f"{type_text}: unknown field {unknown[0]!r} (fields: {', '.join(known)})")
    texts = []
    for key, convert in form.fields:
        item = value.get(key)
        if item is None:
            raise FieldError(value.where, f"{type_text}: missing field {key!r}")
        texts.append(convert(_scalar(item, f"{type_text} {key}")))
    params = value.get("params")
    if params is not None:
        texts.append(_svc_params(params))
    try:
        return rrtypes.rdata_from_text(rtype, " ".join(texts), ctx.origin)
    except rrtypes.RdataError as error:
        raise FieldError(value.where, str(error)) from None


PARSERS: dict[int, Callable[[Value, Context], RD]] = {
    QTYPE.A: parse_a,
    QTYPE.AAAA: parse_aaaa,
    QTYPE.MX: parse_mx,
    QTYPE.NS: parse_ns,
    QTYPE.CNAME: parse_cname,
    QTYPE.PTR: parse_ptr,
    QTYPE.TXT: parse_txt,
    rrtypes.SPF: parse_spf,
    QTYPE.SRV: parse_srv,
    QTYPE.CAA: parse_caa,
}


def parse_record(rtype: int, value: Value, ctx: Context) -> RD:
    """One record of any type except SOA (``parse_soa``), from its YAML value."""
    if isinstance(value, Scalar) and value.text.lstrip().startswith(GENERIC_PREFIX + " "):
        return parse_generic(rtype, value, ctx)
    parser = PARSERS.get(rtype)
    if parser is not None:
        return parser(value, ctx)
    form = MAPPING_FORMS.get(rrtypes.type_name(rtype))
    if isinstance(value, Mapping):
        if form is None:
            raise FieldError(value.where, f"{rrtypes.type_name(rtype)} has no mapping form here; write the record "
                             "as its presentation text, as in a master file")
        return parse_mapping_form(rtype, form, value, ctx)
    return parse_generic(rtype, value, ctx)
