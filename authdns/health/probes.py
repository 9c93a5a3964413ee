"""Active health probes: one connection, one verdict.

``smtp_banner()`` connects, reads the SMTP greeting (RFC 5321 §4.2), optionally says
EHLO, says QUIT and closes; ``tcp_connect()`` only connects; ``agent_reply()`` reads an
agent's one line (HAProxy's agent check, parsed by ``health/agent.py``). Each returns a
``ProbeOutcome``: UP, DEGRADED (a 4xx greeting such as 421, RFC 5321 §3.8 / §4.2.1:
the server runs but is busy) or DOWN, with the time the greeting (or the connect) took
and a short human detail for logs. A probe that cannot even open its socket because
this process is out of descriptors (EMFILE, ENFILE, ENOBUFS: base/descriptors.py)
is UNKNOWN: it learnt nothing about the target, so the monitor keeps the target's
state and does not count it toward rise or fall.

This module owns the conversation with one target and nothing else. It must not hold
state between probes (rise/fall lives in ``health/monitor.py``), must not raise out of
``probe()``, and must leave no socket or task behind, even when cancelled.
"""

from __future__ import annotations

import asyncio
import enum
import re
from dataclasses import dataclass

from authdns.base.descriptors import SHORTAGE, exhausted
from authdns.health.agent import MAX_REPLY, AgentGarbage, AgentOutcome, parse_reply, printable
from authdns.zones.balancespec import PROBE_CLOSE_WAIT, CheckKind, CheckSpec

# A reply line: three digits, then "-" (more lines follow), " " or nothing (the last
# line), RFC 5321 §4.2. Anything else in a greeting is garbage.
_REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -]|$)(.*)$", re.DOTALL)
_MAX_LINE = 4096  # RFC 5321 §4.5.3.1.5 allows 512 octets a reply line; be generous, not unbounded
_MAX_REPLY_LINES = 64  # a multiline greeting that never ends is garbage, not a greeting
_DETAIL_TEXT = 80  # characters of server text kept in a detail
_QUIT_WAIT = 0.2  # seconds we wait for "221" after QUIT: politeness, not part of the verdict
_CLOSE_WAIT = PROBE_CLOSE_WAIT  # seconds we wait for a graceful close before aborting the socket


class ProbeResult(enum.Enum):
    UP = "up"
    DEGRADED = "degraded"  # answering, but asked us to come back later (4xx greeting)
    DOWN = "down"
    UNKNOWN = "unknown"  # no socket could be opened (descriptors exhausted): nothing was learnt


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    result: ProbeResult
    rtt: float | None  # seconds from connect start until the greeting / the connect; None when none
    detail: str  # "220 greeting in 3.1 ms", "connection refused", "no greeting within 2.0 s"


class _Failed(Exception):
    """A probe step failed; the message is the outcome's detail."""


class _Short(Exception):
    """No socket could be opened: this process is out of descriptors, the target untried."""


def _unknown(short: _Short) -> ProbeOutcome:
    return ProbeOutcome(ProbeResult.UNKNOWN, None, str(short))


def _down(detail: str) -> ProbeOutcome:
    return ProbeOutcome(ProbeResult.DOWN, None, detail)


def _unbracket(host: str) -> str:
    """``[::1]`` → ``::1``: asyncio wants IPv6 addresses bare."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


async def probe(check: CheckSpec, host: str, port: int) -> ProbeOutcome:
    """Run ``check`` against ``host:port``. Never raises (cancellation aside): any error
    becomes DOWN with the error as detail, because a probe bug must not kill its loop."""
    try:
        if check.kind is CheckKind.SMTP:
            return await smtp_banner(host, port, check.timeout, check.ehlo)
        if check.kind is CheckKind.TCP:
            return await tcp_connect(host, port, check.timeout)
        return _down(f"unknown check kind {check.kind!r}")
    except Exception as error:  # noqa: BLE001 - the promise is "never raises"
        return _down(f"probe error: {type(error).__name__}: {error}"[:160])


async def agent_reply(host: str, port: int, timeout: float) -> AgentOutcome:
    """Ask the agent at ``host:port`` (HAProxy's agent check): connect, read one line up
    to a newline or the close, all within ``timeout`` seconds, and parse it
    (``health/agent.py``). Never raises (cancellation aside): a refusal, a timeout or
    garbage is an outcome without a reply, which leaves the member to its check."""
    try:
        return await _ask_agent(host, port, timeout)
    except Exception as error:  # noqa: BLE001 - the promise is "never raises"
        return AgentOutcome(None, f"agent error: {type(error).__name__}: {error}"[:160])


async def _ask_agent(host: str, port: int, timeout: float) -> AgentOutcome:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        reader, writer = await _connect(host, port, deadline)
    except _Failed as failure:
        return AgentOutcome(None, f"agent {failure}")
    except _Short as short:
        return AgentOutcome(None, f"agent not asked: {short}", unknown=True)
    try:
        async with asyncio.timeout_at(deadline):
            line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as short:  # closed without a newline: the line is what came
        line = short.partial
    except asyncio.LimitOverrunError:
        line = b"x" * (MAX_REPLY + 1)  # garbage by its length
    except TimeoutError:
        writer.transport.abort()
        return AgentOutcome(None, f"agent reply not within {timeout:g} s")
    except OSError as error:
        writer.transport.abort()
        return AgentOutcome(None, f"agent {_describe(error, 'reply')}")
    except BaseException:
        writer.transport.abort()  # cancelled: drop the socket now
        raise
    await _close(writer)
    line = line.rstrip(b"\r\n")
    try:
        reply = parse_reply(line)
    except AgentGarbage as garbage:
        return AgentOutcome(None, f"agent garbage: {garbage}")
    return AgentOutcome(reply, printable(line.decode("ascii", "replace")))


async def tcp_connect(host: str, port: int, timeout: float) -> ProbeOutcome:
    """UP when a TCP connection to ``host:port`` completes within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        _, writer = await _connect(host, port, start + timeout)
    except _Failed as failure:
        return _down(str(failure))
    except _Short as short:
        return _unknown(short)
    rtt = loop.time() - start
    await _close(writer)
    return ProbeOutcome(ProbeResult.UP, rtt, f"connected in {rtt * 1000:.1f} ms")


async def smtp_banner(host: str, port: int, timeout: float, ehlo: str | None = None) -> ProbeOutcome:
    """Connect and read the greeting, all within ``timeout`` seconds (RFC 5321 §4.2).

    2xx → UP; 4xx (421, RFC 5321 §3.8: service not available, try later) → DEGRADED;
    5xx (554, §3.1: no SMTP service here), garbage, refusal, reset, timeout → DOWN. With
    ``ehlo``, a 220 greeting must be followed by a 250 reply to EHLO (§4.1.1.1), else
    DOWN. QUIT follows any well-formed greeting; its reply never changes the verdict.
    The rtt runs from the connect start to the arrival of the greeting's last line.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        reader, writer = await _connect(host, port, start + timeout)
    except _Failed as failure:
        return _down(str(failure))
    except _Short as short:
        return _unknown(short)
    try:
        outcome = await _converse(reader, writer, start, timeout, ehlo)
    except BaseException:
        writer.transport.abort()  # cancelled (or a bug): drop the socket now, no goodbyes
        raise
    await _close(writer)
    return outcome


async def _converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, start: float,
                    timeout: float, ehlo: str | None) -> ProbeOutcome:
    """Greeting, optional EHLO, QUIT; every failure is a DOWN outcome, not an exception."""
    deadline = start + timeout
    try:
        code, text = await _read_reply(reader, deadline, f"no greeting within {timeout:g} s", "greeting")
    except _Failed as failure:
        return _down(str(failure))  # no greeting, nobody to say goodbye to
    outcome = _judge_greeting(code, text, asyncio.get_running_loop().time() - start)
    if ehlo is not None and outcome.result is ProbeResult.UP:
        try:
            outcome = await _say_ehlo(reader, writer, ehlo, deadline, timeout, outcome)
        except _Failed as failure:
            outcome = ProbeOutcome(ProbeResult.DOWN, outcome.rtt, str(failure))
    # RFC 5321 §3.8 / §4.1.1.10: end the session with QUIT, even after 421 or 554
    await _quit(reader, writer)
    return outcome


def _judge_greeting(code: int, text: str, rtt: float) -> ProbeOutcome:
    """The verdict on a complete greeting by its reply code class (RFC 5321 §4.2.1)."""
    if 200 <= code < 300:
        return ProbeOutcome(ProbeResult.UP, rtt, f"{code} greeting in {rtt * 1000:.1f} ms")
    shown = f"{code} greeting: {text[:_DETAIL_TEXT]}" if text else f"{code} greeting"
    if 400 <= code < 500:
        # 421 and friends: alive but overloaded; stays in answers at reduced weight
        return ProbeOutcome(ProbeResult.DEGRADED, rtt, shown)
    return ProbeOutcome(ProbeResult.DOWN, rtt, shown)


async def _say_ehlo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str,
                    deadline: float, timeout: float, greeting: ProbeOutcome) -> ProbeOutcome:
    """Send EHLO and require 250 (RFC 5321 §4.1.1.1); keeps the greeting's rtt."""
    try:
        writer.write(f"EHLO {name}\r\n".encode("ascii", "replace"))
        async with asyncio.timeout_at(deadline):
            await writer.drain()
    except (OSError, TimeoutError) as error:
        raise _Failed(_describe(error, "EHLO")) from None
    code, text = await _read_reply(reader, deadline, f"no EHLO reply within {timeout:g} s", "EHLO reply")
    if code != 250:
        shown = f": {text[:_DETAIL_TEXT]}" if text else ""
        return ProbeOutcome(ProbeResult.DOWN, greeting.rtt, f"EHLO answered {code}{shown}")
    return ProbeOutcome(ProbeResult.UP, greeting.rtt, f"{greeting.detail}, EHLO 250")


async def _read_reply(reader: asyncio.StreamReader, deadline: float, silence: str, what: str) -> tuple[int, str]:
    """One complete reply, multiline included ("220-..." lines until "220 ...", RFC 5321
    §4.2.1), before ``deadline``: (code, text of all lines). Raises ``_Failed``."""
    texts: list[str] = []
    code = 0
    try:
        async with asyncio.timeout_at(deadline):
            for _ in range(_MAX_REPLY_LINES):
                line = await reader.readline()
                if not line.endswith(b"\n"):  # end of stream, maybe after part of a line
                    raise _Failed(f"connection closed {'during' if texts or line else 'before'} {what}")
                match = _REPLY_LINE.match(line.rstrip(b"\r\n"))
                if match is None or (texts and int(match[1]) != code):
                    raise _Failed(f"garbage {what}: {_printable(line)}")
                code = int(match[1])
                texts.append(_printable(match[3]))
                if match[2] != b"-":
                    return code, " ".join(text for text in texts if text)
            raise _Failed(f"{what} longer than {_MAX_REPLY_LINES} lines")
    except TimeoutError:
        raise _Failed(silence) from None
    except ValueError:  # readline past the stream limit (LimitOverrunError is reported this way)
        raise _Failed(f"garbage {what}: line longer than {_MAX_LINE} octets") from None
    except OSError as error:
        raise _Failed(_describe(error, what)) from None


async def _quit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Say QUIT and wait briefly for 221, so the server sees a clean goodbye rather than a
    dropped session. Nothing here can change the verdict: every error is ignored."""
    try:
        writer.write(b"QUIT\r\n")
        async with asyncio.timeout(_QUIT_WAIT):
            await writer.drain()
            await reader.readline()
    except (OSError, TimeoutError, ValueError):
        pass


async def _connect(host: str, port: int, deadline: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection before ``deadline`` (loop time) or raise ``_Failed``; ``_Short``
    when no socket could be had (counted and logged, rate-limited, by base/descriptors.py)."""
    try:
        async with asyncio.timeout_at(deadline):
            return await asyncio.open_connection(_unbracket(host), port, limit=_MAX_LINE)
    except TimeoutError:  # before OSError, which TimeoutError is a kind of
        raise _Failed("timeout connecting") from None
    except (OSError, UnicodeError) as error:
        if exhausted(error):
            SHORTAGE.note("health probe", error)
            raise _Short(f"no socket for the probe: {error.strerror}") from None
        raise _Failed(_describe(error, "connect")) from None


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close gracefully if the peer lets us within a moment, else abort: never linger."""
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_WAIT):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()


def _printable(raw: bytes) -> str:
    """Server text for a log line: ASCII, control characters escaped, bounded."""
    text = raw.rstrip(b"\r\n")[: _DETAIL_TEXT * 2].decode("ascii", "backslashreplace")
    return "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in text)[: _DETAIL_TEXT * 2]


def _describe(error: BaseException, step: str) -> str:
    """Short words for a socket error, as an operator would say them."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return f"connection reset during {step}"
    if isinstance(error, TimeoutError):
        return f"timeout during {step}"
    if isinstance(error, OSError) and error.strerror:
        return f"{step} failed: {error.strerror}"
    return f"{step} failed: {error}"[:120]
