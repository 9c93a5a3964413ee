"""Probes against real loopback listeners: ``smtp_banner`` in every FakeSmtp mode (ok, busy,
reject, silent, slow, stopped), EHLO accepted and refused, QUIT sent after a greeting,
multiline and malformed greetings from raw asyncio servers, ``tcp_connect`` up and down,
IPv6 loopback, cancellation closing the socket, and ``probe`` never raising."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

import pytest
from conftest import wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_listeners import FakeSmtp

from authdns.zones.balancespec import CheckKind, CheckSpec
from authdns.health.probes import ProbeOutcome, ProbeResult, probe, smtp_banner, tcp_connect

LOOPBACK = "127.0.0.1"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def banner(port: int, timeout: float = 1.0, ehlo: str | None = None, host: str = LOOPBACK) -> ProbeOutcome:
    return asyncio.run(smtp_banner(host, port, timeout, ehlo))


def refused_port() -> int:
    """A loopback port nobody listens on: a FakeSmtp started and stopped."""
    fake = FakeSmtp().start()
    fake.stop()
    return fake.port


async def raw_server(handler: Handler, host: str = LOOPBACK) -> asyncio.Server:
    """An inline listener for replies FakeSmtp does not make; the caller closes it."""
    return await asyncio.start_server(handler, host, 0)


def greeting_server_banner(greeting: bytes, timeout: float = 1.0, ehlo: str | None = None) -> ProbeOutcome:
    """``smtp_banner`` against a server that writes ``greeting`` and then answers every
    command line with 502, until the prober hangs up."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        try:
            while await reader.readline():
                writer.write(b"502 no\r\n")
        except OSError:
            pass
        writer.close()

    async def main() -> ProbeOutcome:
        server = await raw_server(handler)
        async with server:
            return await smtp_banner(LOOPBACK, server.sockets[0].getsockname()[1], timeout, ehlo)

    return asyncio.run(main())


def test_ok_greeting_is_up_with_rtt() -> None:
    with FakeSmtp("ok") as fake:
        outcome = banner(fake.port)
        assert outcome.result is ProbeResult.UP
        assert outcome.rtt is not None and outcome.rtt > 0
        assert outcome.detail.startswith("220 greeting in ") and outcome.detail.endswith(" ms")
        # RFC 5321 §4.1.1.10: the session ends with QUIT, answered before the probe returns
        assert wait_until(lambda: fake.commands or None, 2.0) == ["QUIT"]


def test_busy_greeting_is_degraded() -> None:
    with FakeSmtp("busy") as fake:
        outcome = banner(fake.port)
    assert outcome.result is ProbeResult.DEGRADED
    assert outcome.detail == "421 greeting: too busy"
    assert outcome.rtt is not None


def test_reject_greeting_is_down() -> None:
    with FakeSmtp("reject") as fake:
        outcome = banner(fake.port, ehlo="probe.example.test")
        assert outcome.result is ProbeResult.DOWN
        assert outcome.detail.startswith("554 greeting")
        # no EHLO after a 554, but still a polite QUIT (RFC 5321 §3.1)
        assert wait_until(lambda: fake.commands or None, 2.0) == ["QUIT"]


def test_silent_server_is_down_within_timeout() -> None:
    with FakeSmtp("silent") as fake:
        started = time.monotonic()
        outcome = banner(fake.port, timeout=0.5)
        elapsed = time.monotonic() - started
    assert outcome == ProbeOutcome(ProbeResult.DOWN, None, "no greeting within 0.5 s")
    assert 0.5 <= elapsed < 0.5 + 0.5


def test_slow_greeting_within_timeout_is_up() -> None:
    with FakeSmtp("slow", delay=0.3) as fake:
        outcome = banner(fake.port, timeout=1.0)
    assert outcome.result is ProbeResult.UP
    assert outcome.rtt is not None and outcome.rtt >= 0.3


def test_slow_greeting_past_timeout_is_down() -> None:
    with FakeSmtp("slow", delay=0.3) as fake:
        outcome = banner(fake.port, timeout=0.1)
    assert outcome.result is ProbeResult.DOWN
    assert outcome.detail == "no greeting within 0.1 s"


def test_stopped_listener_is_refused() -> None:
    outcome = banner(refused_port())
    assert outcome == ProbeOutcome(ProbeResult.DOWN, None, "connection refused")


def test_restarted_listener_is_up_again_on_the_same_port() -> None:
    fake = FakeSmtp("ok").start()
    try:
        port = fake.port
        fake.stop()
        assert banner(port).detail == "connection refused"
        fake.restart()
        assert fake.port == port
        assert banner(port).result is ProbeResult.UP
    finally:
        fake.stop()


def test_ehlo_answered_250_is_up() -> None:
    with FakeSmtp("ok") as fake:
        outcome = banner(fake.port, ehlo="probe.example.test")
        assert outcome.result is ProbeResult.UP
        assert outcome.detail.endswith(", EHLO 250")
        assert wait_until(lambda: fake.commands if len(fake.commands) == 2 else None, 2.0) == [
            "EHLO probe.example.test", "QUIT"]


def test_ehlo_refused_is_down() -> None:
    outcome = greeting_server_banner(b"220 half a server\r\n", ehlo="probe.example.test")
    assert outcome.result is ProbeResult.DOWN
    assert outcome.detail == "EHLO answered 502: no"
    assert outcome.rtt is not None  # the greeting did arrive


def test_without_ehlo_no_command_but_quit_is_sent() -> None:
    with FakeSmtp("ok") as fake:
        assert banner(fake.port).result is ProbeResult.UP
        assert wait_until(lambda: fake.commands or None, 2.0) == ["QUIT"]


@pytest.mark.parametrize(("greeting", "result", "detail"), [
    (b"220-first line\r\n220-second\r\n220 last\r\n", ProbeResult.UP, "220 greeting in "),
    (b"220-a\r\n220 b\r\n", ProbeResult.UP, "220 greeting in "),
    (b"220\r\n", ProbeResult.UP, "220 greeting in "),  # no text at all: still a complete reply
    (b"421-busy\r\n421 come back later\r\n", ProbeResult.DEGRADED, "421 greeting: busy come back later"),
    (b"220-a\r\n421 b\r\n", ProbeResult.DOWN, "garbage greeting: 421 b"),  # codes must agree (§4.2.1)
    (b"HTTP/1.1 400 Bad Request\r\n", ProbeResult.DOWN, "garbage greeting: HTTP/1.1 400"),
    (b"2200 too long a code\r\n", ProbeResult.DOWN, "garbage greeting"),
    (b"\x00\xff\r\n", ProbeResult.DOWN, "garbage greeting: \\x00\\xff"),
    (b"", ProbeResult.DOWN, "connection closed before greeting"),
    (b"220 no line end", ProbeResult.DOWN, "connection closed during greeting"),
    (b"220-never ending\r\n" * 100, ProbeResult.DOWN, "greeting longer than 64 lines"),
    (b"220 " + b"x" * 5000 + b"\r\n", ProbeResult.DOWN, "garbage greeting: line longer than"),
])
def test_greeting_forms(greeting: bytes, result: ProbeResult, detail: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        writer.close()  # closing right away also covers "closed before/during greeting"

    async def main() -> ProbeOutcome:
        server = await raw_server(handler)
        async with server:
            return await smtp_banner(LOOPBACK, server.sockets[0].getsockname()[1], 1.0)

    outcome = asyncio.run(main())
    assert outcome.result is result
    assert outcome.detail.startswith(detail), outcome.detail


def test_tcp_connect_up_and_down() -> None:
    with FakeSmtp("silent") as fake:
        up = asyncio.run(tcp_connect(LOOPBACK, fake.port, 1.0))
    assert up.result is ProbeResult.UP and up.rtt is not None and up.rtt > 0
    assert up.detail.startswith("connected in ")
    down = asyncio.run(tcp_connect(LOOPBACK, refused_port(), 1.0))
    assert down == ProbeOutcome(ProbeResult.DOWN, None, "connection refused")


def test_probe_dispatches_on_kind() -> None:
    with FakeSmtp("busy") as fake:
        smtp = asyncio.run(probe(CheckSpec(CheckKind.SMTP, fake.port, timeout=1.0), LOOPBACK, fake.port))
        tcp = asyncio.run(probe(CheckSpec(CheckKind.TCP, fake.port, timeout=1.0), LOOPBACK, fake.port))
    assert smtp.result is ProbeResult.DEGRADED  # SMTP reads the 421
    assert tcp.result is ProbeResult.UP  # TCP only connects


def test_probe_never_raises_on_bad_input() -> None:
    check = CheckSpec(CheckKind.SMTP, 25, timeout=0.5)
    for host, port in [("not..an address", 25), ("127.0.0.1", 70000), ("", -1), ("\x00", 25)]:
        outcome = asyncio.run(probe(check, host, port))
        assert outcome.result is ProbeResult.DOWN and outcome.detail, (host, port)


REPLY_PIECES = [b"220 ok\r\n", b"220-more\r\n", b"250-x\r\n", b"250 OK\r\n", b"421 busy\r\n",
                b"554 no\r\n", b"\r\n", b"2", b"\xff", b" "]
GARBAGE = st.one_of(st.binary(max_size=300), st.lists(st.sampled_from(REPLY_PIECES), max_size=8).map(b"".join))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(GARBAGE, st.booleans())
def test_probe_never_raises_on_garbage(garbage: bytes, with_ehlo: bool) -> None:
    check = CheckSpec(CheckKind.SMTP, 25, timeout=1.0, ehlo="probe.test" if with_ehlo else None)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(garbage)
        writer.write_eof()  # all we will ever say: the prober sees the end instead of waiting
        try:
            await reader.read()
        except OSError:
            pass
        writer.close()

    async def main() -> ProbeOutcome:
        server = await raw_server(handler)
        async with server:
            return await probe(check, LOOPBACK, server.sockets[0].getsockname()[1])

    outcome = asyncio.run(main())
    assert isinstance(outcome, ProbeOutcome) and outcome.detail
    if not garbage.startswith((b"2", b"4")):
        assert outcome.result is ProbeResult.DOWN


def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe_socket:
            probe_socket.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 v6 ESMTP\r\n")
        await writer.drain()
        writer.close()

    async def main() -> tuple[ProbeOutcome, ProbeOutcome]:
        server = await raw_server(handler, "::1")
        async with server:
            port = server.sockets[0].getsockname()[1]
            return await smtp_banner("::1", port, 1.0), await smtp_banner("[::1]", port, 1.0)

    for outcome in asyncio.run(main()):
        assert outcome.result is ProbeResult.UP


def test_cancelled_probe_closes_its_socket() -> None:
    async def main() -> None:
        connected, hung_up = asyncio.Event(), asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connected.set()
            await reader.read()  # returns when the prober's socket is gone
            hung_up.set()
            writer.close()

        server = await raw_server(handler)
        async with server:
            task = asyncio.create_task(smtp_banner(LOOPBACK, server.sockets[0].getsockname()[1], 10.0))
            await asyncio.wait_for(connected.wait(), 2.0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(hung_up.wait(), 2.0)
        assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left behind

    asyncio.run(main())
