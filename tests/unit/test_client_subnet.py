"""The Client Subnet option's rules (answering/ecs.py, RFC 7871 §6, §7.2.1), value by
value; tests/integration/test_ecs.py checks them on the wire."""

from __future__ import annotations

import struct

import pytest

from authdns.answering.ecs import BadSubnet, ClientSubnet, read_subnet
from authdns.base.protocol import OPTION_ECS


def option(family: int, source: int, scope: int, address: bytes) -> tuple[int, bytes]:
    return OPTION_ECS, struct.pack("!HBB", family, source, scope) + address


def test_no_option_is_none_and_other_options_are_left_alone() -> None:
    assert read_subnet([]) is None
    assert read_subnet([(10, b"cookie12")]) is None


@pytest.mark.parametrize(("family", "source", "address", "scope"), [
    (1, 24, b"\xc0\x00\x02", 24), (1, 32, b"\xc0\x00\x02\x07", 24), (1, 20, b"\xc0\x00\x10", 20),
    (2, 64, b"\x20\x01\x0d\xb8\x00\x00\x01\x00", 56), (2, 48, b"\x20\x01\x0d\xb8\x00\x00", 48),
])
def test_a_valid_option_is_echoed_as_sent_with_the_keys_scope(family: int, source: int, address: bytes,
                                                              scope: int) -> None:
    subnet = read_subnet([option(family, source, 0, address)])
    assert subnet == ClientSubnet(family, source, address)
    assert subnet.scope == scope and subnet.key is not None
    assert subnet.option(scope) == struct.pack("!HBB", family, source, scope) + address
    assert subnet.wire_length() == 4 + 4 + len(address)


def test_source_zero_has_no_key() -> None:
    subnet = read_subnet([option(1, 0, 0, b"")])
    assert subnet is not None and subnet.key is None and subnet.scope == 0


@pytest.mark.parametrize("options", [
    [(OPTION_ECS, b"\x00\x01\x18")],
    [option(3, 0, 0, b"")],
    [option(0, 0, 0, b"")],
    [option(1, 33, 0, b"\xc0\x00\x02\x07\x00")],
    [option(2, 129, 0, b"\x20" + bytes(16))],
    [option(1, 24, 0, b"\xc0\x00\x02\x00")],
    [option(1, 24, 0, b"\xc0\x00")],
    [option(1, 0, 0, b"\x00")],
    [option(1, 23, 0, b"\xc0\x00\x03")],
    [option(1, 24, 8, b"\xc0\x00\x02")],
    [option(1, 24, 0, b"\xc0\x00\x02")] * 2,
])
def test_a_malformed_option_is_refused(options: list[tuple[int, bytes]]) -> None:
    with pytest.raises(BadSubnet):
        read_subnet(options)


def test_many_subnets_stay_bounded(tmp_path) -> None:
    """A flood of distinct subnets (in process, the responder itself): ECS queries have no
    fast-path key, so the answer cache takes none of them, and the rotor table never
    holds more than --client-rotors; every reply still echoes its own subnet."""
    import dns.edns
    import dns.message

    from authdns.answering.query import Via
    from authdns.balancing.ordering import Balancer
    from authdns.configuration.config import ServerConfig
    from authdns.engine.responder import Responder
    from authdns.engine.state import StateHolder
    from authdns.zones.loader import load_snapshot

    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "flood.test.yaml").write_text('ttl: 60\nrecords:\n  "@": {NS: ns1}\n  ns1: {A: 192.0.2.1}\n'
                                           '  rr: {MX: ["10 mx1", "10 mx2", "10 mx3"]}\n'
                                           '  mx1: {A: 192.0.2.11}\n  mx2: {A: 192.0.2.12}\n  mx3: {A: 192.0.2.13}\n')
    holder = StateHolder()
    holder.publish(snapshot=load_snapshot(zones).snapshot)
    responder = Responder(holder, ServerConfig(), Balancer(client_rotors=50))
    for index in range(2000):
        subnet = f"10.{index // 256}.{index % 256}.0"
        query = dns.message.make_query("rr.flood.test", "MX", use_edns=0, options=[dns.edns.ECSOption(subnet, 24)])
        reply = dns.message.from_wire(responder.respond(query.to_wire(), Via.UDP, ("127.0.0.1", 5300)))
        (echo,) = reply.options
        assert (echo.address, echo.srclen, echo.scopelen) == (subnet, 24, 24)
    assert len(responder.balancer.rotors.clients) <= 50
    assert len(holder.current.cache) == 0
    assert responder.fast_hits == 0
