"""A default listen address the host lacks (the IPv6 loopback on a host without IPv6) is
skipped with a warning; an address the user named that cannot be bound stops start-up.

192.0.2.1 (TEST-NET-1, RFC 5737) is on no interface here, so binding it fails with
EADDRNOTAVAIL exactly as ``::1`` does where IPv6 is disabled. Nothing is sent to it."""

from __future__ import annotations

import asyncio
import logging

import dns.message
import dns.query
import dns.rcode
import pytest

from authdns.configuration.config import ServerConfig
from authdns.engine.responder import Responder
from authdns.serve.server import BindError, DnsServer
from authdns.engine.state import StateHolder

MISSING = ("192.0.2.1", 0)


async def _start(config: ServerConfig) -> tuple[DnsServer, list[tuple[str, int]]]:
    server = DnsServer(config, Responder(StateHolder(), config))
    return server, await server.start()


def test_optional_missing_address_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    config = ServerConfig(listen=(("127.0.0.1", 0), MISSING), optional_listen=frozenset({MISSING}))

    async def scenario() -> dns.message.Message:
        server, addresses = await _start(config)
        try:
            assert [host for host, _ in addresses] == ["127.0.0.1"]
            query = dns.message.make_query("example.test.", "SOA")
            # dnspython's blocking client in a thread, so the loop keeps serving.
            return await asyncio.to_thread(dns.query.udp, query, "127.0.0.1", 2.0, addresses[0][1])
        finally:
            await server.close()

    with caplog.at_level(logging.WARNING, logger="authdns.server"):
        reply = asyncio.run(scenario())
    assert reply.rcode() == dns.rcode.REFUSED  # no zones loaded: served, and not ours
    assert any("192.0.2.1" in record.getMessage() and "serving without it" in record.getMessage()
               for record in caplog.records)


def test_named_missing_address_stops_start_up() -> None:
    config = ServerConfig(listen=(("127.0.0.1", 0), MISSING))
    with pytest.raises(BindError, match="192.0.2.1"):
        asyncio.run(_start(config))


def test_only_optional_addresses_missing_is_an_error() -> None:
    config = ServerConfig(listen=(MISSING,), optional_listen=frozenset({MISSING}))
    with pytest.raises(BindError, match="no listen address"):
        asyncio.run(_start(config))
