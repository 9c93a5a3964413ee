"""An IP address with an optional port, as people write one: ``ADDR``, ``ADDR:PORT``,
``[V6]`` or ``[V6]:PORT`` (a bare IPv6 address has no port: its colons are its own;
brackets as in RFC 3986 §3.2.2). One parser and one formatter for every place that
takes or shows one: listen and metrics addresses, NOTIFY targets, probe addresses, log
lines and metric labels; and a client's key (``client_key``: a peer's /24 or /56, or an
EDNS Client Subnet's shorter prefix), the unit in which RRL counts clients and balanced
answers keep one rotation (RRL by the peer only).
"""

from __future__ import annotations

import ipaddress
import socket

MAX_PORT = 65535


class BadAddress(ValueError):
    """The address part is not an IP address, or the brackets are misplaced."""


class BadPort(ValueError):
    """The port is not a whole number in the allowed range."""


def split_host_port(text: str) -> tuple[str, str | None]:
    """The address and port texts, unchecked; the port is None when none is written."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise BadAddress(f"expected [ADDRESS]:PORT, got {text!r}")
        return host, (rest[1:] if rest else None)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


def has_port(text: str) -> bool:
    try:
        return split_host_port(text)[1] is not None
    except BadAddress:
        return False


def parse_host_port(text: str, default_port: int | None, min_port: int = 1,
                    empty_host: str | None = None) -> tuple[str, int | None]:
    """(address in its canonical text, port or ``default_port``, also for an empty
    written port such as ``ADDR:``). ``empty_host``: the address to take for ``:PORT``
    (an error when None). Raises ``BadAddress`` or
    ``BadPort`` with a message that names the text."""
    host, port_text = split_host_port(text)
    if empty_host is not None and text.strip().startswith(":"):  # ":PORT" only, not "" or "[]"
        host = empty_host
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise BadAddress(f"{host!r} is not an IP address") from None
    if not port_text:
        return address, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not min_port <= int(port_text) <= MAX_PORT:
        raise BadPort(f"port {port_text!r} is not a number from {min_port} to {MAX_PORT}")
    return address, int(port_text)


def format_host_port(host: str, port: int) -> str:
    """``ADDR:PORT``, or ``[V6]:PORT`` for an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# The prefix one client is taken to be (RRL's buckets, balanced answers' rotations): a
# /24 of IPv4, a /56 of IPv6 (one site), by the packed address's length in octets.
CLIENT_PREFIX = {4: 24, 16: 56}
_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


def client_key(packed: bytes, length: int | None = None) -> bytes:
    """The one maker of client keys: a packed IPv4 (4 octets) or IPv6 (16) address cut
    to the client's prefix, /24 or /56 (``CLIENT_PREFIX``), or to ``length`` bits when
    that is shorter (an EDNS Client Subnet's SOURCE PREFIX-LENGTH, RFC 7871 §6: the
    resolver says no more of its client). A key cut shorter than /24 (/56) carries its
    length, so 10.0.0.0/8 and 10.0.0.0/24 are two clients; at /24 (/56) it is the peer's
    key, so a subnet and a resolver inside it that asks for itself share a rotation.
    ``length`` None: a socket's peer, where a v4-mapped IPv6 address is the IPv4 client
    it is."""
    if length is None and len(packed) == 16 and packed[:12] == _V4_MAPPED:
        packed = packed[12:]
    family = b"4" if len(packed) == 4 else b"6"
    bits = CLIENT_PREFIX[len(packed)]
    if length is None or length >= bits:
        return family + packed[:bits // 8]
    whole, rest = divmod(length, 8)
    cut = packed[:whole] + (bytes((packed[whole] & (0xFF << (8 - rest)) & 0xFF,)) if rest else b"")
    return family + cut.ljust(bits // 8, b"\x00") + bytes((length,))


def client_prefix(host: str) -> bytes:
    """A socket peer's key (``client_key``): its /24 (IPv4) or /56 (IPv6), one host or
    network, as BIND's rate limiting counts clients by default."""
    if ":" in host:
        return client_key(socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0]))
    return client_key(socket.inet_aton(host))
