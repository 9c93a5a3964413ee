"""Who may transfer a zone and whom to NOTIFY: the zone file's ``transfer:`` key and
the server flags ``--allow-transfer`` and ``--tsig-key``, as frozen values.

Zone file (README.md, "Secondaries")::

    transfer:
      allow: [127.0.0.1, "192.0.2.0/24", {from: "10.0.0.0/8", key: sec1}]
      notify: ["127.0.0.1:5300", "192.0.2.53"]

Zone-file errors are ``FieldError`` with the position of the offending value (collected
by ``zones/zonefile.py``); flag values raise ``ValueError`` with a message fit for argparse.
Nothing here opens sockets or knows the keys' secrets' use (``transfer/access.py``
and ``base/tsig.py`` do).
"""

from __future__ import annotations

import binascii
import ipaddress
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterable, Mapping, Union

from authdns.base.hostport import parse_host_port
from authdns.base import names
from authdns.zones.yamlfields import FieldError, scalar as _scalar
from authdns.base.tsig import ALGORITHMS, DEFAULT_ALGORITHM, REFUSED_ALGORITHMS, TsigSecret
from authdns.zones.yamltree import Mapping as YamlMapping, Sequence, Value

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

TRANSFER_KEYS = ("allow", "notify")
ALLOW_FIELDS = ("from", "key")
NOTIFY_PORT = 53  # RFC 1996 §3.1: NOTIFY goes to the secondary's DNS port


@dataclass(frozen=True, slots=True)
class AllowRule:
    """Transfers are allowed from ``network``; with ``key`` only when the request is
    TSIG-signed with that key (RFC 8945). ``key`` is an absolute, lowercase name."""

    network: Network
    key: str | None = None

    def matches(self, address: Address) -> bool:
        return address.version == self.network.version and address in self.network


@dataclass(frozen=True, slots=True)
class TransferSpec:
    """A zone's ``transfer:``: who may AXFR/IXFR it, and the secondaries to NOTIFY."""

    allow: tuple[AllowRule, ...] = ()
    notify: tuple[tuple[str, int], ...] = ()  # (address, port)


# ---------------------------------------------------------------- plain text


IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")  # RFC 4291 §2.5.5.2


def parse_network(text: str) -> Network:
    """``ADDR`` (one host) or ``ADDR/LEN``; host bits must be clear, as a typo guard.

    Rejected, since they would silently never match: an IPv4-mapped IPv6 prefix
    (``::ffff:192.0.2.0/120``: the server's IPv6 sockets are IPv6-only, so IPv4 clients
    arrive as IPv4 and rules match within their own IP version), and an IPv6 zone index
    (``fe80::1%eth0``: the client's scope is not compared, so the rule would match that
    address on any interface)."""
    text = text.strip()
    try:
        network = ipaddress.ip_network(text)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or prefix (like 192.0.2.0/24)") from None
        raise ValueError(f"{text!r} has host bits set; the prefix is {loose}") from None
    if isinstance(network, ipaddress.IPv6Network):
        if network.network_address.scope_id is not None:
            bare = text.split("%", 1)[0] + (text[text.index("/"):] if "/" in text else "")
            raise ValueError(f"{text!r}: a zone index (%{network.network_address.scope_id}) is not supported; "
                             f"write {bare} (the rule then applies on every interface)")
        if network.subnet_of(IPV4_MAPPED):
            mapped = network.network_address.ipv4_mapped
            ipv4 = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
            suggestion = ipv4.network_address if ipv4.prefixlen == 32 else ipv4
            raise ValueError(f"{text!r} is an IPv4-mapped IPv6 address, which never matches (IPv4 clients are "
                             f"seen as IPv4); write {suggestion} instead")
    return network


def key_name(text: str) -> str:
    """A TSIG key name as compared: absolute and lowercase (``sec1`` → ``sec1.``)."""
    text = text.strip()
    try:
        name = names.from_text(text if text.endswith(".") else text + ".")
    except names.BadName as error:
        raise ValueError(f"key name {text!r}: {error}") from None
    if name == names.ROOT:
        raise ValueError("key name must not be the root")
    return names.to_text(name)


def parse_address_port(text: str, default_port: int = NOTIFY_PORT) -> tuple[str, int]:
    """``ADDR``, ``ADDR:PORT``, ``[V6]`` or ``[V6]:PORT`` (a bare IPv6 address has no port)."""
    host, port = parse_host_port(text, default_port)
    return host, default_port if port is None else port


# ---------------------------------------------------------------- server flags


def parse_allow_rule(text: str) -> AllowRule:
    """``--allow-transfer PREFIX[,key=NAME]``: like a zone's ``allow:`` entry. A comma,
    not a colon, separates the key, since IPv6 prefixes are full of colons."""
    prefix, _, option = text.partition(",")
    rule_key = None
    if option:
        field_name, equals, value = option.partition("=")
        if field_name.strip() != "key" or not equals or not value.strip():
            raise ValueError(f"expected PREFIX or PREFIX,key=NAME, got {text!r}")
        rule_key = key_name(value)
    return AllowRule(parse_network(prefix), rule_key)


def parse_tsig_key(text: str) -> tuple[str, TsigSecret]:
    """``--tsig-key [ALGORITHM:]NAME:BASE64SECRET`` (dig's ``-y`` syntax) → (name, secret).

    ALGORITHM is one of ``tsig.ALGORITHMS`` (hmac-sha1 ... hmac-sha512; hmac-sha256 when
    left out); hmac-md5 is refused with the reason. The secret is what ``tsig-keygen``,
    ``keymgr -t`` or ``openssl rand -base64 32`` print. RFC 8945 §6: keys SHOULD be as
    long as the hash output.
    """
    parts = text.strip().split(":")
    algorithm = DEFAULT_ALGORITHM
    if len(parts) == 3:
        algorithm = parts.pop(0).strip().lower()
        if algorithm in REFUSED_ALGORITHMS:
            raise ValueError(REFUSED_ALGORITHMS[algorithm])
        if algorithm not in ALGORITHMS:
            raise ValueError(f"TSIG algorithm {algorithm!r} is not supported; use one of {', '.join(ALGORITHMS)}")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise ValueError(f"expected [ALGORITHM:]NAME:BASE64SECRET, got {text!r}")
    try:
        secret = binascii.a2b_base64(parts[1].strip().encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"TSIG key {parts[0].strip()!r}: the secret is not base64") from None
    if not secret:
        raise ValueError(f"TSIG key {parts[0].strip()!r}: the secret is empty")
    return key_name(parts[0]), TsigSecret(algorithm, secret)


def tsig_keyring(pairs: Iterable[tuple[str, TsigSecret]]) -> Mapping[str, TsigSecret]:
    """The ``--tsig-key`` values as ``ServerConfig.tsig_keys``; a name given twice is an error."""
    keys: dict[str, TsigSecret] = {}
    for name, secret in pairs:
        if name in keys:
            raise ValueError(f"TSIG key {name} is given twice")
        keys[name] = secret
    return MappingProxyType(keys)


def parse_notify_retry(text: str) -> float:
    """``--notify-retry SECONDS``: the first NOTIFY retry delay (then doubling)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0.01 <= seconds <= 3600:  # also rejects nan
        raise ValueError(f"expected seconds from 0.01 to 3600, got {text!r}")
    return seconds


def parse_notify_attempts(text: str) -> int:
    """``--notify-attempts N``: NOTIFY messages sent per secondary before giving up."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 100:
        raise ValueError(f"expected a whole number from 1 to 100, got {text!r}")
    return int(text)


# ---------------------------------------------------------------- zone file


def _items(value: Value) -> tuple[Value, ...]:
    """A list, or a single entry written without brackets."""
    return value.items if isinstance(value, Sequence) else (value,)


def _allow_entry(value: Value) -> AllowRule:
    """``PREFIX`` or ``{from: PREFIX, key: NAME}``."""
    if isinstance(value, YamlMapping):
        unknown = [key for key in value.keys() if key not in ALLOW_FIELDS]
        if unknown:
            raise FieldError(value.where, f"allow: unknown field {unknown[0]!r} (fields: {', '.join(ALLOW_FIELDS)})")
        source, key_value = value.get("from"), value.get("key")
        if source is None:
            raise FieldError(value.where, "allow: missing field 'from' (an address or prefix)")
    else:
        source, key_value = value, None
    source_text = _scalar(source, "allow address").text
    try:
        network = parse_network(source_text)
    except ValueError as error:
        raise FieldError(source.where, f"allow: {error}") from None
    if key_value is None:
        return AllowRule(network)
    try:
        return AllowRule(network, key_name(_scalar(key_value, "allow key").text))
    except ValueError as error:
        raise FieldError(key_value.where, f"allow: {error}") from None


def _notify_entry(value: Value) -> tuple[str, int]:
    text = _scalar(value, "notify target").text
    try:
        return parse_address_port(text)
    except ValueError as error:
        raise FieldError(value.where, f"notify: {error} (expected ADDRESS or ADDRESS:PORT)") from None


def parse_transfer(value: Value) -> tuple[TransferSpec | None, list[FieldError]]:
    """A zone's ``transfer:`` mapping; every bad entry is reported, at its position."""
    if not isinstance(value, YamlMapping):
        return None, [FieldError(value.where, "'transfer:' must be a mapping with 'allow:' and/or 'notify:'")]
    errors = [FieldError(key.where, f"transfer: unknown key {key.text!r} (keys: {', '.join(TRANSFER_KEYS)})")
              for key, _ in value.items if key.text not in TRANSFER_KEYS]
    parsed: dict[str, list] = {"allow": [], "notify": []}
    for field_name, parse in (("allow", _allow_entry), ("notify", _notify_entry)):
        entries = value.get(field_name)
        if entries is None:
            continue
        for entry in _items(entries):
            try:
                parsed[field_name].append(parse(entry))
            except FieldError as error:
                errors.append(error)
    return TransferSpec(tuple(parsed["allow"]), tuple(dict.fromkeys(parsed["notify"]))), errors
