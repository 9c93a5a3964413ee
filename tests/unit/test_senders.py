"""The simulated RFC 5321 senders of the demo and bench/delivered_mail.py
(``authdns/cli/senders.py``) against raw SMTP listeners on loopback that reply what the
test says, so each sender rule can fail on its own:

* a message accepted (250 after the data) is delivered even when QUIT gets 421: it is
  never sent to a second exchanger (a duplicate);
* a 5xx to RCPT bounces: no other exchanger is tried; a 4xx moves on to the next;
* a DNS timeout defers the message (``lookup_failed``) instead of raising into the
  sender's thread.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator

import dns.rdata
import dns.rdatatype
import pytest

from authdns.cli.senders import CachingResolver, deliver


class ScriptedSmtp:
    """A one-thread SMTP listener: 220, then ``rcpt`` to RCPT TO, 250 to other commands,
    354 and 250 around the data, ``quit`` to QUIT. Records each accepted message."""

    def __init__(self, address: str, rcpt: bytes = b"250 ok", quit_reply: bytes = b"221 bye", port: int = 0) -> None:
        self.rcpt, self.quit_reply, self.accepted = rcpt, quit_reply, 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as stream:
                self._session(stream)

    def _session(self, stream) -> None:
        stream.write(b"220 scripted\r\n")
        stream.flush()
        in_data = False
        for line in stream:
            if in_data:
                if line == b".\r\n":
                    self.accepted += 1
                    in_data = False
                    stream.write(b"250 queued\r\n")
                    stream.flush()
                continue
            verb = line[:4].upper()
            reply = {b"DATA": b"354 go", b"RCPT": self.rcpt, b"QUIT": self.quit_reply}.get(verb, b"250 ok")
            stream.write(reply + b"\r\n")
            stream.flush()
            in_data = verb == b"DATA" and reply.startswith(b"354")
            if verb == b"QUIT":
                return

    def close(self) -> None:
        self.sock.close()


class FixedResolver:
    """Two exchangers at one preference, mx1 on 127.0.0.11 and mx2 on 127.0.0.12."""

    def lookup(self, name: str, rdtype: int) -> list:
        if rdtype == dns.rdatatype.MX:
            return [dns.rdata.from_text("IN", "MX", "10 mx1.t."), dns.rdata.from_text("IN", "MX", "10 mx2.t.")]
        return [dns.rdata.from_text("IN", "A", {"mx1.t.": "127.0.0.11", "mx2.t.": "127.0.0.12"}[name])]


@pytest.fixture
def pair(request) -> Iterator[tuple[ScriptedSmtp, ScriptedSmtp]]:
    rcpt, quit_reply = request.param
    first = ScriptedSmtp("127.0.0.11", rcpt, quit_reply)
    second = ScriptedSmtp("127.0.0.12", rcpt, quit_reply, port=first.port)
    yield first, second
    first.close()
    second.close()


@pytest.mark.parametrize("pair", [(b"250 ok", b"421 closing")], indirect=True)
def test_accepted_message_is_not_sent_again_when_quit_fails(pair) -> None:
    for seed in range(6):  # either exchanger may come first
        delivery = deliver(FixedResolver(), "t.", pair[0].port, random.Random(seed), f"{seed}@t")
        assert delivery.accepted_by in ("127.0.0.11", "127.0.0.12") and delivery.refused == []
    assert pair[0].accepted + pair[1].accepted == 6


@pytest.mark.parametrize("pair", [(b"550 no such user", b"221 bye")], indirect=True)
def test_permanent_refusal_bounces_without_trying_the_next(pair) -> None:
    delivery = deliver(FixedResolver(), "t.", pair[0].port, random.Random(1), "1@t")
    assert delivery.bounced and delivery.accepted_by is None and delivery.refused == []


@pytest.mark.parametrize("pair", [(b"451 try later", b"221 bye")], indirect=True)
def test_temporary_refusal_moves_on(pair) -> None:
    delivery = deliver(FixedResolver(), "t.", pair[0].port, random.Random(1), "1@t")
    assert not delivery.bounced and delivery.accepted_by is None
    assert sorted(delivery.refused) == ["127.0.0.11", "127.0.0.12"]


def test_dns_timeout_defers_instead_of_raising() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        resolver = CachingResolver(silent.getsockname(), clock=lambda: 0.0, rng=random.Random(0))
        delivery = deliver(resolver, "t.", 25, random.Random(0), "1@t")
    finally:
        silent.close()
    assert delivery.accepted_by is None and delivery.lookup_failed
