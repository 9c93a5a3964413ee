"""The one parser and formatter of ``ADDR[:PORT]`` and ``[V6][:PORT]`` (base/hostport.py),
which listen addresses, NOTIFY targets and probe addresses all go through."""

from __future__ import annotations

import pytest

from authdns.base.hostport import BadAddress, BadPort, format_host_port, has_port, parse_host_port


@pytest.mark.parametrize("text,expected", [
    ("192.0.2.1", ("192.0.2.1", 53)),
    (" 192.0.2.1:5353 ", ("192.0.2.1", 5353)),
    ("::1", ("::1", 53)),  # a bare IPv6 address: its colons are its own
    ("2001:DB8::1", ("2001:db8::1", 53)),  # canonical text
    ("[2001:db8::1]", ("2001:db8::1", 53)),
    ("[2001:db8::1]:853", ("2001:db8::1", 853)),
    ("[::1]:", ("::1", 53)),
])
def test_accepted_forms(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, 53) == expected


@pytest.mark.parametrize("text,error,message", [
    ("ns2.example.net", BadAddress, "'ns2.example.net' is not an IP address"),
    ("[::1]x", BadAddress, "expected [ADDRESS]:PORT, got '[::1]x'"),
    ("[::1]:x", BadPort, "port 'x' is not a number from 1 to 65535"),
    ("192.0.2.1:0", BadPort, "port '0' is not a number from 1 to 65535"),
    ("192.0.2.1:65536", BadPort, "port '65536' is not a number from 1 to 65535"),
    (":53", BadAddress, "'' is not an IP address"),
    ("192.0.2.1:²", BadPort, "port '²' is not a number from 1 to 65535"),
])
def test_refused_forms(text: str, error: type[ValueError], message: str) -> None:
    with pytest.raises(error) as raised:
        parse_host_port(text, 53)
    assert str(raised.value) == message


def test_listen_style_options() -> None:
    """Listen addresses take port 0 (the kernel chooses) and ``:PORT`` for 127.0.0.1."""
    assert parse_host_port(":0", 5353, min_port=0, empty_host="127.0.0.1") == ("127.0.0.1", 0)
    assert parse_host_port("10.0.0.1", None) == ("10.0.0.1", None)
    for nothing in ("", "[]", "[]:53"):  # only ":PORT" means the default address
        with pytest.raises(BadAddress):
            parse_host_port(nothing, 5353, min_port=0, empty_host="127.0.0.1")


def test_has_port_and_format() -> None:
    assert has_port("[::1]:80") and has_port("127.0.0.1:80")
    assert not has_port("::1") and not has_port("[::1]") and not has_port("127.0.0.1") and not has_port("[::1]x")
    assert format_host_port("::1", 53) == "[::1]:53" and format_host_port("192.0.2.1", 53) == "192.0.2.1:53"
    for host, port in (("::1", 53), ("192.0.2.1", 8053), ("2001:db8::53", 1)):
        assert parse_host_port(format_host_port(host, port), None) == (host, port)


def test_client_keys_cut_to_the_client_prefix_or_a_shorter_subnet() -> None:
    """``client_key`` is the one maker of client keys (RRL, rotations, ECS): a peer and
    an ECS subnet of /24 (/56) or longer in the same network are one client; a shorter
    subnet is a client of its own, its length in its key."""
    import ipaddress
    from authdns.base.hostport import client_key, client_prefix

    def packed(text: str) -> bytes:
        return ipaddress.ip_address(text).packed

    assert client_prefix("192.0.2.7") == client_key(packed("192.0.2.0"), 24) == client_key(packed("192.0.2.9"), 32)
    assert client_prefix("::ffff:192.0.2.7") == client_prefix("192.0.2.7")  # a dual-stack socket's IPv4 peer
    assert client_prefix("2001:db8:0:100::1") == client_key(packed("2001:db8:0:1ff::"), 64)  # one /56
    assert client_key(packed("10.0.0.0"), 8) != client_key(packed("10.0.0.0"), 24)
    assert client_key(packed("10.1.2.3"), 8) == client_key(packed("10.9.9.9"), 8)
    assert client_key(packed("10.16.0.0"), 12) != client_key(packed("10.32.0.0"), 12)
    assert client_key(packed("2001:db8::"), 32) != client_key(packed("2001:db8::"), 56)
