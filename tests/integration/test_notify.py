"""NOTIFY out (transfer/notify.py ``Notifier``, RFC 1996), against a fake secondary: a UDP
socket on 127.0.0.1 that this test reads and answers by hand.

Checks:

* the message: opcode NOTIFY, QR=0, AA=1, RD=0, question (zone, SOA, IN), the new SOA
  in the answer section (RFC 1996 §3.7); ``notify sent … attempt=1`` is logged;
* an answer with the same ID, QR=1 and opcode NOTIFY ends the retries
  (``notify acknowledged``), also when it answers a later attempt; a datagram with
  another ID does not;
* unanswered, the NOTIFY is sent ``notify_attempts`` times with the same ID, the waits
  doubling (RFC 1996 §3.6; measured between the sender's log records), then
  ``notify gave up``;

* a REFUSED answer ends the retries with ``notify rejected``;
* a newer change of the zone replaces the pending retries: after the new serial's first
  NOTIFY the old serial is never sent again;
* with an allow rule carrying a key for the target's address, the NOTIFY is TSIG-signed
  with it, and an unsigned answer does not count as acknowledged;
* ``close()`` cancels what is pending.

Timing: RETRY is 0.5 s so that an answer normally lands before the first retry; a
retry that crosses the answer on a loaded machine is drained and checked (same ID, same
serial), never counted as a failure.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsig
import pytest

from conftest import wait_until
from inprocess import LoopThread
from support import write_zone

from authdns.base.tsig import TsigSecret
from authdns.configuration.config import ServerConfig
from authdns.zones.loader import load_zone_file
from authdns.transfer.notify import Notifier
from authdns.zones.zone import Zone

SECRET = bytes(range(1, 33))
KEYRING = {dns.name.from_text("sec1."): dns.tsig.Key("sec1.", SECRET, dns.tsig.HMAC_SHA256)}
# Long enough that an answer sent at once is in before the first retry even on a loaded
# machine; gaps are checked with scheduler slack (SLACK) and from the sender's log.
RETRY = 0.5
SLACK = 0.8


class Secondary:
    """A UDP socket standing in for a secondary's port: read NOTIFYs, answer or not."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def receive(self, timeout: float = 3.0, keyring=None) -> tuple[dns.message.Message, tuple, float]:
        self.sock.settimeout(timeout)
        data, sender = self.sock.recvfrom(65535)
        return dns.message.from_wire(data, keyring=keyring), sender, time.monotonic()

    def answer(self, query: dns.message.Message, sender: tuple, rcode: int = dns.rcode.NOERROR) -> None:
        response = dns.message.make_response(query)
        response.set_rcode(rcode)
        self.sock.sendto(response.to_wire(), sender)

    def drain(self) -> list[dns.message.Message]:
        """The NOTIFYs already queued, without waiting: once the notifier's task has
        ended, those were sent before our answer reached it (a retry may cross it)."""
        self.sock.setblocking(False)
        found = []
        try:
            while True:
                found.append(dns.message.from_wire(self.sock.recv(65535), keyring=False))
        except BlockingIOError:
            return found
        finally:
            self.sock.setblocking(True)


@pytest.fixture
def secondary() -> Iterator[Secondary]:
    fake = Secondary()
    yield fake
    fake.sock.close()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def zone_for(tmp_path: Path, port: int, serial: int = 100, allow: str = "[127.0.0.1]") -> Zone:
    text = f"""\
transfer:
  allow: {allow}
  notify: ["127.0.0.1:{port}"]
records:
  "@": {{SOA: {{serial: {serial}}}, NS: [ns1]}}
  ns1: {{A: 192.0.2.1}}
"""
    zone, problems = load_zone_file(write_zone(tmp_path / f"zones{serial}", "notify.test", text))
    assert zone is not None, problems
    return zone


def notifier(loop: LoopThread, attempts: int = 3, **fields) -> Notifier:
    config = ServerConfig(notify_retry=RETRY, notify_attempts=attempts, **fields)
    return loop.call(Notifier, config)


def settled(loop: LoopThread, notify: Notifier) -> bool | None:
    return True if not loop.call(lambda: dict(notify.tasks)) else None


def messages(caplog: pytest.LogCaptureFixture, prefix: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith(prefix)]


def test_message_and_acknowledgement(tmp_path: Path, loop: LoopThread, secondary: Secondary,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="authdns.transfer")
    notify = notifier(loop)
    loop.call(notify.zones_changed, [zone_for(tmp_path, secondary.port)])
    query, sender, _ = secondary.receive()
    assert query.opcode() == dns.opcode.NOTIFY
    assert query.flags & dns.flags.AA and not query.flags & (dns.flags.QR | dns.flags.RD)
    question = query.question[0]
    assert (question.name.to_text(), question.rdtype) == ("notify.test.", dns.rdatatype.SOA)
    assert [(rrset.rdtype, rrset[0].serial) for rrset in query.answer] == [(dns.rdatatype.SOA, 100)]
    stranger = dns.message.make_response(query)
    stranger.id = (query.id + 1) % 65536
    secondary.sock.sendto(stranger.to_wire(), sender)  # another ID: not an answer
    second, sender, _ = secondary.receive()
    assert second.id == query.id
    secondary.answer(second, sender)
    wait_until(lambda: settled(loop, notify))
    crossed = secondary.drain()  # retries sent before the answer arrived (a slow machine)
    assert all(late.id == query.id for late in crossed)
    sent = messages(caplog, "notify sent")
    fields = f"zone=notify.test. target=127.0.0.1:{secondary.port} serial=100"
    assert sent == [f"notify sent {fields} attempt={n}" for n in range(1, len(sent) + 1)]
    assert len(sent) == 2 + len(crossed)
    assert messages(caplog, "notify acknowledged") == [f"notify acknowledged {fields} attempt={len(sent)}"]


@pytest.mark.slow
def test_retries_with_backoff_then_gives_up(tmp_path: Path, loop: LoopThread, secondary: Secondary,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="authdns.transfer")
    notify = notifier(loop, attempts=3)
    loop.call(notify.zones_changed, [zone_for(tmp_path, secondary.port)])
    received = [secondary.receive() for _ in range(3)]
    assert len({query.id for query, _, _ in received}) == 1, "one ID for every retry of one change"
    wait_until(lambda: settled(loop, notify), timeout=10)
    assert secondary.drain() == []
    # The gaps as the sender logged them: the receiving thread's wake-ups do not count.
    sent = [record.created for record in caplog.records if record.getMessage().startswith("notify sent")]
    assert len(sent) == 3
    first_wait, second_wait = sent[1] - sent[0], sent[2] - sent[1]
    assert first_wait >= RETRY * SLACK and second_wait >= 2 * RETRY * SLACK, (first_wait, second_wait)
    assert second_wait > first_wait * 1.5, ("the wait doubles", first_wait, second_wait)
    assert messages(caplog, "notify gave up") == [
        f"notify gave up zone=notify.test. target=127.0.0.1:{secondary.port} serial=100 attempts=3"]


def test_refused_ends_the_retries(tmp_path: Path, loop: LoopThread, secondary: Secondary,
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="authdns.transfer")
    notify = notifier(loop, attempts=5)
    loop.call(notify.zones_changed, [zone_for(tmp_path, secondary.port)])
    query, sender, _ = secondary.receive()
    secondary.answer(query, sender, dns.rcode.REFUSED)
    wait_until(lambda: settled(loop, notify))  # well before 5 attempts' 15.5 s
    crossed = secondary.drain()
    assert all(late.id == query.id for late in crossed)
    assert len(messages(caplog, "notify sent")) == 1 + len(crossed)
    rejected = messages(caplog, "notify rejected")
    assert len(rejected) == 1 and "rcode=REFUSED" in rejected[0]


def test_newer_change_supersedes_pending_retries(tmp_path: Path, loop: LoopThread, secondary: Secondary) -> None:
    notify = notifier(loop, attempts=4)
    old, new = zone_for(tmp_path, secondary.port, 100), zone_for(tmp_path, secondary.port, 101)
    loop.call(notify.zones_changed, [old])
    first, _, _ = secondary.receive()
    assert first.answer[0][0].serial == 100
    loop.call(notify.zones_changed, [new])
    serials = []
    while True:
        query, sender, _ = secondary.receive()
        serials.append(query.answer[0][0].serial)
        if serials[-1] == 101:
            secondary.answer(query, sender)
            break
    wait_until(lambda: settled(loop, notify))
    crossed = [late.answer[0][0].serial for late in secondary.drain()]
    assert crossed == [101] * len(crossed), "after the new serial's first NOTIFY, never the old one again"
    assert serials[-1] == 101 and serials.count(101) == 1, serials


def test_signed_when_the_targets_rule_names_a_key(tmp_path: Path, loop: LoopThread, secondary: Secondary,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="authdns.transfer")
    notify = notifier(loop, attempts=4, tsig_keys={"sec1.": TsigSecret("hmac-sha256", SECRET)})
    loop.call(notify.zones_changed, [zone_for(tmp_path, secondary.port, allow="[{from: 127.0.0.0/8, key: sec1}]")])
    query, sender, _ = secondary.receive(keyring=KEYRING)  # raises unless the MAC verifies
    assert query.had_tsig and query.keyname == dns.name.from_text("sec1.")
    unsigned = dns.message.make_response(dns.message.from_wire(query.to_wire(), keyring=False))
    secondary.sock.sendto(unsigned.to_wire(), sender)  # an unsigned answer to a signed NOTIFY: ignored
    second, sender, _ = secondary.receive(keyring=KEYRING)
    secondary.answer(second, sender)  # make_response signs with the request's key
    wait_until(lambda: settled(loop, notify))
    acknowledged = messages(caplog, "notify acknowledged")
    assert len(acknowledged) == 1 and not acknowledged[0].endswith("attempt=1"), "the unsigned answer did not count"


def test_close_cancels_pending(tmp_path: Path, loop: LoopThread, secondary: Secondary) -> None:
    notify = notifier(loop, attempts=50)
    zone = zone_for(tmp_path, secondary.port)
    loop.call(notify.zones_changed, [zone, replace(zone, origin=dns.name.from_text("other.test.").to_wire())])
    secondary.receive()
    loop.run(notify.close())
    assert loop.call(lambda: dict(notify.tasks)) == {}


def test_zones_without_targets_are_skipped(tmp_path: Path, loop: LoopThread) -> None:
    notify = notifier(loop)
    zone = zone_for(tmp_path, 53)
    loop.call(notify.zones_changed, [replace(zone, transfer=None)])
    assert loop.call(lambda: dict(notify.tasks)) == {}
