"""Simulated mail senders behind a caching resolver: what decides where mail goes.

Used by ``authdns demo`` (on the wall clock) and ``bench/delivered_mail.py`` (on a
virtual one), so both measure delivered mail the same way:

- ``CachingResolver`` asks authdns over UDP (dnspython), from its own source address,
  and keeps each answer until its TTL runs out, as unbound does with its defaults; it
  hands the records out in a new order each time (unbound's ``rrset-roundrobin: yes``).
- ``deliver`` is one message sent as RFC 5321 §5.1 says: the MX records by ascending
  preference, those of equal preference shuffled (as Postfix and Exim do), each
  exchanger's addresses shuffled too, tried in order until one accepts the message over
  real SMTP (``smtplib``); a refused or failed connection, or a 4xx reply, moves on to
  the next. A 5xx reply to the envelope or the data is permanent (RFC 5321 §4.2.1): the
  message bounces, no other exchanger is tried. A message the exchanger accepted (250
  after the data) is delivered whatever QUIT gets back, so it is never sent twice; a
  DNS failure (timeout, SERVFAIL) defers the message, as an MTA's temporary lookup
  failure does, instead of ending its sender.

Blocking, one message at a time: the demo runs each sender in a thread of its own.
"""

from __future__ import annotations

import random
import smtplib
from dataclasses import dataclass, field
from typing import Callable

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

SMTP_TIMEOUT = 2.0  # seconds per connection attempt: a dead exchanger refuses at once on loopback


class LookupFailed(dns.exception.DNSException):
    """A temporary DNS failure (an rcode other than NOERROR and NXDOMAIN)."""


class CachingResolver:
    """Keeps each answer until its TTL runs out on ``clock``; a new order each time."""

    def __init__(self, server: tuple[str, int], clock: Callable[[], float], rng: random.Random,
                 source: str | None = None) -> None:
        self.server, self.clock, self.rng, self.source = server, clock, rng, source
        self.cache: dict[tuple[str, int], tuple[float, list]] = {}
        self.asked = 0
        self.fetched: list[tuple[str, int, list]] = []  # every answer fetched from authdns, in order

    def lookup(self, name: str, rdtype: int) -> list:
        found = self.cache.get((name, rdtype))
        if found is None or self.clock() >= found[0]:
            host, port = self.server
            reply = dns.query.udp(dns.message.make_query(name, rdtype), host, port=port, timeout=2,
                                  source=self.source)
            self.asked += 1
            if reply.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                raise LookupFailed(f"{name}: {dns.rcode.to_text(reply.rcode())}")
            records = [rr for rrset in reply.answer if rrset.rdtype == rdtype for rr in rrset]
            ttl = min((rrset.ttl for rrset in reply.answer if rrset.rdtype == rdtype), default=0)
            found = self.cache[(name, rdtype)] = (self.clock() + ttl, records)
            self.fetched.append((name, rdtype, records))
        records = list(found[1])
        self.rng.shuffle(records)
        return records


@dataclass
class Delivery:
    """What happened to one message."""

    accepted_by: str | None = None  # the address that took it; None: deferred (or bounced)
    bounced: bool = False  # a 5xx reply: permanent, the sender gives up on the message
    lookup_failed: str | None = None  # the DNS failure that deferred it before any attempt
    refused: list[str] = field(default_factory=list)  # addresses tried first that refused or failed
    best: list[str] = field(default_factory=list)  # the exchanges of the answer's lowest preference


def deliver(resolver: CachingResolver, domain: str, port: int, rng: random.Random, message_id: str,
            recipient: str | None = None) -> Delivery:
    """One message to ``domain``'s exchangers, SMTP on ``port`` (RFC 5321 §5.1)."""
    delivery = Delivery()
    by_preference: dict[int, list[str]] = {}
    try:
        records = resolver.lookup(domain, dns.rdatatype.MX)
    except dns.exception.DNSException as error:
        delivery.lookup_failed = str(error) or type(error).__name__
        return delivery
    for mx in records:
        by_preference.setdefault(mx.preference, []).append(mx.exchange.to_text())
    if not by_preference:
        return delivery
    delivery.best = list(by_preference[min(by_preference)])
    body = f"Message-ID: <{message_id}>\r\nSubject: share\r\n\r\nhello\r\n".encode()
    for preference in sorted(by_preference):
        group = by_preference[preference]
        rng.shuffle(group)
        for exchange in group:
            try:
                addresses = resolver.lookup(exchange, dns.rdatatype.A)
            except dns.exception.DNSException:
                continue  # this exchanger cannot be reached now; the next one may
            for record in addresses:
                outcome = _send(record.address, port, recipient or f"user@{domain.rstrip('.')}", body)
                if outcome == "accepted":
                    delivery.accepted_by = record.address
                    return delivery
                if outcome == "bounced":
                    delivery.bounced = True
                    return delivery
                delivery.refused.append(record.address)
    return delivery


def _send(address: str, port: int, recipient: str, body: bytes) -> str:
    """One SMTP transaction: "accepted" (250 after the data), "bounced" (5xx to the
    envelope or the data) or "failed" (no connection, a 4xx, a broken session)."""
    try:
        smtp = smtplib.SMTP(address, port, timeout=SMTP_TIMEOUT)
    except (OSError, smtplib.SMTPException):
        return "failed"  # refused, timed out, or a greeting other than 220 (Postfix tries the next)
    try:
        smtp.sendmail("sender@demo.invalid", [recipient], body)
        return "accepted"
    except (smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as error:
        codes = [error.smtp_code] if hasattr(error, "smtp_code") else [
            code for code, _ in getattr(error, "recipients", {}).values()]
        return "bounced" if codes and all(code >= 500 for code in codes) else "failed"
    except (OSError, smtplib.SMTPException):
        return "failed"
    finally:
        try:
            smtp.quit()  # the message's fate is decided; whatever QUIT gets changes nothing
        except (OSError, smtplib.SMTPException):
            smtp.close()
