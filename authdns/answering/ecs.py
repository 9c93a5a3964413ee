"""EDNS Client Subnet (RFC 7871): the option read from a query, its key, its echo.

A resolver that sends ECS says which network its client asks from; authdns uses it for
one thing only, whose rotation a balanced answer moves (balancing/rotors.py): the
subnet cut to min(SOURCE PREFIX-LENGTH, /24 for IPv4, /56 for IPv6) is the client key
(``base/hostport.client_key``), in place of the resolver's own /24 (/56). So each
subnet behind one resolver walks its own weighted cycle, as each resolver does.

The reply echoes FAMILY, SOURCE PREFIX-LENGTH and ADDRESS (§7.2.1) with a SCOPE
PREFIX-LENGTH of ``scope`` bits (the key's length) when the answer carries a balanced
RRset ordered by that client's rotors, else 0: a resolver that caches by scope (§7.3.1)
then keeps one copy of a balanced answer per subnet, each subnet's successive cache
windows ask again with its own ECS and get the next answer of its own cycle, while
answers that are the same for everyone stay cached once for all. Parsing only; decides
no answer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from authdns.base.hostport import CLIENT_PREFIX, client_key
from authdns.base.protocol import OPTION_ECS

FAMILY_IPV4 = 1  # address family numbers (IANA), as RFC 7871 §6 uses them
FAMILY_IPV6 = 2
ADDRESS_OCTETS = {FAMILY_IPV4: 4, FAMILY_IPV6: 16}
FIXED_LENGTH = 4  # FAMILY (2), SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH


class BadSubnet(ValueError):
    """A malformed ECS option: the query is answered FORMERR (RFC 7871 §7.2.1)."""


@dataclass(frozen=True, slots=True)
class ClientSubnet:
    """The query's ECS option as sent: ``address`` holds exactly the octets SOURCE
    PREFIX-LENGTH needs (§6)."""

    family: int
    source: int
    address: bytes

    @property
    def key(self) -> bytes | None:
        """The client key its answers' rotors are kept under, or None when SOURCE
        PREFIX-LENGTH is 0: the resolver keeps its client to itself (§7.1.2), and the
        resolver's own address is the client, as without ECS."""
        if not self.source:
            return None
        octets = ADDRESS_OCTETS[self.family]
        return client_key(self.address.ljust(octets, b"\x00"), self.source)

    @property
    def scope(self) -> int:
        """The prefix a per-client answer depends on: the bits of the key."""
        return min(self.source, CLIENT_PREFIX[ADDRESS_OCTETS[self.family]])

    def option(self, scope: int) -> bytes:
        """The option's data for the reply (§6, §7.2.1): FAMILY, SOURCE PREFIX-LENGTH
        and ADDRESS copied from the query, SCOPE PREFIX-LENGTH ``scope``."""
        return struct.pack("!HBB", self.family, self.source, scope) + self.address

    def wire_length(self) -> int:
        """Octets the option takes in the reply's OPT: code, length, data."""
        return 4 + FIXED_LENGTH + len(self.address)


def read_subnet(options: list[tuple[int, bytes]]) -> ClientSubnet | None:
    """The ECS option among an OPT's (code, data) options, None when there is none.

    Raises ``BadSubnet`` (§6, §7.1.1, §7.2.1): an option shorter than its fixed part,
    a FAMILY other than IPv4 and IPv6, a SOURCE PREFIX-LENGTH beyond the address, a
    SCOPE PREFIX-LENGTH other than 0 (a query's is always 0), ADDRESS octets more or
    fewer than SOURCE PREFIX-LENGTH needs, a bit set beyond it, or two ECS options
    (which subnet would count is not said).
    """
    found = [data for code, data in options if code == OPTION_ECS]
    if not found:
        return None
    if len(found) > 1:
        raise BadSubnet("more than one ECS option")
    data = found[0]
    if len(data) < FIXED_LENGTH:
        raise BadSubnet("ECS option shorter than 4 octets")
    family, source, scope = struct.unpack_from("!HBB", data)
    octets = ADDRESS_OCTETS.get(family)
    if octets is None:
        raise BadSubnet(f"ECS FAMILY {family} is neither IPv4 nor IPv6")
    if source > octets * 8:
        raise BadSubnet(f"ECS SOURCE PREFIX-LENGTH {source} is longer than the address")
    if scope:
        raise BadSubnet("ECS SCOPE PREFIX-LENGTH must be 0 in a query")
    address = data[FIXED_LENGTH:]
    if len(address) != (source + 7) // 8:
        raise BadSubnet(f"ECS ADDRESS has {len(address)} octets, SOURCE PREFIX-LENGTH {source} needs "
                        f"{(source + 7) // 8}")
    if source % 8 and address[-1] & (0xFF >> (source % 8)):
        raise BadSubnet("ECS ADDRESS has bits set beyond SOURCE PREFIX-LENGTH")
    return ClientSubnet(family, source, address)
