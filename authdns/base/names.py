"""Domain names as lowercase uncompressed wire bytes.

A name such as ``mail.example.test.`` is held as ``b"\\x04mail\\x07example\\x04test\\x00"``:
hashing and comparing bytes is the cheapest lookup key Python has, ``parent()`` is a
slice, and the fast path can key on the bytes it reads from a packet. Lowercase because
names compare case-insensitively (RFC 1035 §2.3.3, RFC 4343).

This module does no I/O and knows nothing of zones.
"""

from __future__ import annotations

from dnslib import DNSLabel

Name = bytes

ROOT: Name = b"\x00"
WILDCARD_LABEL = b"*"

MAX_NAME_OCTETS = 255  # RFC 1035 §2.3.4, counting length octets and the root
MAX_LABEL_OCTETS = 63  # RFC 1035 §2.3.4


class BadName(ValueError):
    """A name that cannot be a domain name; the message says why."""


def parent(name: Name) -> Name:
    """The name with its first label removed; the root is its own parent."""
    if name == ROOT:
        return ROOT
    return name[name[0] + 1 :]


def labels(name: Name) -> list[bytes]:
    """The labels of a name, leftmost first, without the root."""
    result = []
    offset = 0
    while name[offset]:
        length = name[offset]
        result.append(name[offset + 1 : offset + 1 + length])
        offset += length + 1
    return result


def label_count(name: Name) -> int:
    return len(labels(name))


def from_labels(parts: list[bytes]) -> Name:
    """Join labels (leftmost first) into a lowercase wire name, enforcing RFC 1035 limits."""
    out = bytearray()
    for part in parts:
        if not part:
            raise BadName("empty label")
        if len(part) > MAX_LABEL_OCTETS:
            raise BadName(f"label longer than {MAX_LABEL_OCTETS} octets")
        out.append(len(part))
        out += part.lower()
    out.append(0)
    if len(out) > MAX_NAME_OCTETS:
        raise BadName(f"name longer than {MAX_NAME_OCTETS} octets")
    return bytes(out)


def is_subdomain(name: Name, ancestor: Name) -> bool:
    """True when ``name`` equals ``ancestor`` or lies below it (label-aligned)."""
    while len(name) > len(ancestor):
        name = parent(name)
    return name == ancestor


def ancestors_below(name: Name, top: Name) -> list[Name]:
    """The names strictly between ``top`` and ``name`` plus ``name`` itself, top-down.

    For ``a.b.example.test`` under ``example.test`` this is ``[b.example.test,
    a.b.example.test]``: the order in which a resolver meets zone cuts (RFC 1034 §4.3.2).
    """
    chain = []
    while len(name) > len(top):
        chain.append(name)
        name = parent(name)
    chain.reverse()
    return chain


def wildcard_of(closest_encloser: Name) -> Name:
    """The source of synthesis ``*.<closest encloser>`` (RFC 4592 §3.3.1)."""
    return b"\x01*" + closest_encloser


def is_wildcard(name: Name) -> bool:
    return name[:2] == b"\x01*"


def _split_text(text: str) -> list[bytes]:
    """Split presentation format into raw labels, honouring ``\\.`` and ``\\DDD`` escapes."""
    parts: list[bytes] = []
    current = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            digits = text[index + 1 : index + 4]
            if len(digits) == 3 and digits.isdigit():
                value = int(digits)
                if value > 255:
                    raise BadName(f"escape \\{digits} is not an octet")
                current.append(value)
                index += 4
                continue
            if index + 1 >= len(text):
                raise BadName("name ends in a lone backslash")
            current += text[index + 1].encode("utf-8")
            index += 2
            continue
        if char == ".":
            parts.append(bytes(current))
            current = bytearray()
        else:
            try:
                current += char.encode("ascii")
            except UnicodeEncodeError:
                raise BadName(f"character {char!r} is not allowed; write IDNs as xn-- labels") from None
        index += 1
    parts.append(bytes(current))
    return parts


def from_text(text: str, origin: Name | None = None) -> Name:
    """Parse a presentation-format name.

    ``@`` is the origin; a name ending in a dot is absolute; any other name is relative to
    ``origin`` (RFC 1035 §5.1). Raises ``BadName`` with a readable reason.
    """
    text = text.strip()
    if not text:
        raise BadName("empty name")
    if text == "@":
        if origin is None:
            raise BadName("@ needs an origin")
        return origin
    if text == ".":
        return ROOT
    parts = _split_text(text)
    absolute = parts[-1] == b""
    if absolute:
        parts.pop()
    if any(not part for part in parts):
        raise BadName(f"empty label in {text!r}")
    if absolute:
        return from_labels(parts)
    if origin is None:
        raise BadName(f"relative name {text!r} needs an origin")
    return from_labels(parts + labels(origin))


def _escape_label(label: bytes) -> str:
    out = []
    for octet in label:
        char = chr(octet)
        if char in '.\\"();@$':
            out.append("\\" + char)
        elif 0x21 <= octet <= 0x7E:
            out.append(char)
        else:
            out.append(f"\\{octet:03d}")
    return "".join(out)


def to_text(name: Name) -> str:
    """Absolute presentation form with a trailing dot, escaping what needs it."""
    if name == ROOT:
        return "."
    return "".join(_escape_label(label) + "." for label in labels(name))


def relative_text(name: Name, origin: Name) -> str:
    """``@`` for the origin, a relative name below it, otherwise the absolute form."""
    if name == origin:
        return "@"
    if is_subdomain(name, origin) and origin != ROOT:
        head = labels(name)[: label_count(name) - label_count(origin)]
        return ".".join(_escape_label(label) for label in head)
    return to_text(name)


def to_dnslabel(name: Name) -> DNSLabel:
    """The dnslib form of a name, for packing."""
    return DNSLabel(labels(name))


def from_dnslabel(label: DNSLabel) -> Name:
    """Lowercase wire form of a dnslib label (as parsed from a packet)."""
    return from_labels(list(label.label)) if label.label else ROOT
