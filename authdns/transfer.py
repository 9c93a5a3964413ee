"""Zone transfers out (AXFR, RFC 5936; IXFR answered in full, RFC 1995 §4) with their
access list and TSIG (RFC 8945), and NOTIFY out (RFC 1996) with retries.

``TransferResponder.respond(packet, peer)`` takes a TCP message and returns the framed
replies' bodies for a transfer query, or None for anything else (the ordinary query
path answers it). ``respond_udp()`` answers AXFR/IXFR over UDP. ``Notifier`` tells the
listed secondaries that a zone's serial changed.

dnspython builds these messages and signs them: TSIG over a multi-message transfer
(RFC 8945 §5.3.1) is exacting and dnspython's implementation is well kept; the query
path stays dnslib. Records go out exactly as the zone file has them: zone order, no
rotation, no health. This module answers no ordinary queries and changes no state.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Mapping

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.renderer
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig
from dnslib import QTYPE, DNSBuffer

from . import names
from .config import ServerConfig
from .names import Name
from .query import EDE_NOT_AUTHORITATIVE, EDE_NOT_SUPPORTED, EDE_PROHIBITED, MIN_UDP_PAYLOAD
from .render import render_servfail
from .serials import serial_gt
from .state import StateHolder
from .transferspec import Address, AllowRule
from .zone import RRset, Zone

log = logging.getLogger("authdns.transfer")

TRANSFER_QTYPES = (QTYPE.AXFR, QTYPE.IXFR)
TCP_MESSAGE_LIMIT = 65535  # RFC 1035 §4.2.2: the two-octet length prefix
# Room kept free in every message for the OPT and TSIG records (a TSIG with a 255-octet
# key name and a SHA-256 MAC is under 330 octets).
TRAILER_RESERVE = 512
TSIG_FUDGE = 300  # seconds of clock skew accepted (RFC 8945 §10: 300 recommended)
REFUSAL_LOG_INTERVAL = 1.0  # at most one "transfer refused" line a second (scanners)


def keyring(keys: Mapping[str, bytes]) -> dict[dns.name.Name, dns.tsig.Key]:
    """``ServerConfig.tsig_keys`` as dnspython keys (hmac-sha256, RFC 8945 §6)."""
    return {dns.name.from_text(name): dns.tsig.Key(name, secret, dns.tsig.HMAC_SHA256)
            for name, secret in keys.items()}


def allow_rules(zone: Zone, config: ServerConfig) -> tuple[AllowRule, ...]:
    """The zone's own ``transfer: allow:`` rules, then the server's ``--allow-transfer``."""
    own = zone.transfer.allow if zone.transfer is not None else ()
    return own + config.allow_transfer


def unknown_keys(zones: Iterable[Zone], config: ServerConfig) -> list[str]:
    """Allow rules naming a TSIG key the server was not given: they match nothing. For
    the caller to log after each load (``check`` cannot know the server's keys)."""
    places = [(f"{zone.path}: transfer allow", zone.transfer.allow) for zone in zones if zone.transfer is not None]
    places.append(("--allow-transfer", config.allow_transfer))
    return [f"{place} rule {rule.network} names TSIG key {rule.key}, which is not configured (--tsig-key); "
            "no transfer matches it" for place, rules in places for rule in rules
            if rule.key is not None and rule.key not in config.tsig_keys]


def peer_address(peer: tuple | None) -> Address | None:
    """The client's address from ``peername`` (scope id dropped), None when unknown."""
    if not peer:
        return None
    try:
        return ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return None


def is_transfer_query(packet: bytes) -> bool:
    """QR=0, OPCODE=QUERY, QDCOUNT=1 and QTYPE AXFR or IXFR, read without a parse, so that
    ordinary TCP queries pay a few byte reads only."""
    if len(packet) < 17 or packet[2] & 0xF8 or packet[4:6] != b"\x00\x01":
        return False
    offset = 12
    try:
        while (length := packet[offset]) != 0:
            if length & 0xC0:
                return True  # a pointer in a question is odd; let the full parse decide
            offset += length + 1
        return int.from_bytes(packet[offset + 1 : offset + 3], "big") in TRANSFER_QTYPES
    except IndexError:
        return False


# ---------------------------------------------------------------- zone → dnspython


def _rdata(rtype: int, rdata) -> dns.rdata.Rdata:
    """One dnslib rdata through its wire form, so every octet is kept exactly."""
    buffer = DNSBuffer()
    rdata.pack(buffer)
    wire = bytes(buffer.data)
    return dns.rdata.from_wire(dns.rdataclass.IN, rtype, wire, 0, len(wire))


def rrset_records(rrset: RRset) -> list[dns.rrset.RRset]:
    """An RRset as one-record dnspython RRsets in zone order, so a transfer can split a
    large RRset across messages (RFC 5936 §2.2: an RRset may span messages)."""
    owner = dns.name.from_wire(rrset.name, 0)[0]
    return [dns.rrset.from_rdata(owner, rrset.ttl, _rdata(rrset.rtype, rdata)) for rdata in rrset.rdatas]


@dataclass(frozen=True, slots=True)
class ZoneRecords:
    """A zone as a transfer sends it: the SOA, and every other record (glue and data
    below cuts included, as the zone file has them: RFC 5936 §3.2, §3.5)."""

    soa: dns.rrset.RRset
    body: tuple[dns.rrset.RRset, ...]


def zone_records(zone: Zone) -> ZoneRecords:
    rrsets = sorted((rrset for rrset in zone.rrsets() if rrset.rtype != QTYPE.SOA),
                    key=lambda rrset: (names.labels(rrset.name)[::-1], rrset.rtype))
    body = tuple(record for rrset in rrsets for record in rrset_records(rrset))
    return ZoneRecords(rrset_records(zone.soa)[0], body)


# ---------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class Refusal:
    rcode: int
    ede: int
    reason: str


class TransferResponder:
    """AXFR/IXFR queries → reply messages. Reads ``holder.current`` once per request.

    Safe to call from a worker thread (the TCP listener does, so that rendering a large
    zone does not stall the loop): what it reads is immutable, and its conversion cache
    and counters can only lose work or a count to a race, never be wrong."""

    def __init__(self, holder: StateHolder, config: ServerConfig) -> None:
        self.holder = holder
        self.config = config
        self.keyring = keyring(config.tsig_keys)
        self._records: dict[Name, tuple[Zone, ZoneRecords]] = {}
        self._last_refusal_log = 0.0
        self.transfers = 0
        self.refused = 0
        # Rendering runs here, not on the event loop (see TcpListener), at most two at a
        # time, so transfers neither stall queries nor take the threads reloads use.
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="authdns-transfer")

    def respond(self, packet: bytes, peer: tuple | None) -> list[bytes] | None:
        """A TCP message: None unless it is an AXFR/IXFR query; else the messages to send.
        An unexpected error is logged and answered SERVFAIL, as the responder does."""
        if not is_transfer_query(packet):
            return None
        try:
            query = self._parse(packet)
            if query is None or isinstance(query, bytes):
                return None if query is None else [query]
            return self._answer(query, peer, TCP_MESSAGE_LIMIT, tcp=True)
        except Exception:
            log.exception("internal error answering a transfer query; answered SERVFAIL")
            reply = render_servfail(packet)
            return [reply] if reply is not None else []

    def respond_udp(self, packet: bytes, peer: tuple | None) -> bytes | None:
        """AXFR/IXFR over UDP. AXFR: REFUSED (RFC 5936 §4.2: UDP is not defined for it).
        IXFR: the same access rules, and when allowed our SOA only, which tells the
        client to come back over TCP (RFC 1995 §2; BIND and NSD do the same)."""
        query = self._parse(packet)
        if query is None or isinstance(query, bytes):
            return query
        if query.question and query.question[0].rdtype == dns.rdatatype.AXFR:
            return self._refuse(query, Refusal(dns.rcode.REFUSED, EDE_PROHIBITED, "AXFR over UDP"))
        limit = max(MIN_UDP_PAYLOAD, min(query.payload, self.config.udp_payload)) if query.edns >= 0 \
            else MIN_UDP_PAYLOAD
        return self._answer(query, peer, limit, tcp=False)[0]

    def _answer(self, query: dns.message.Message, peer: tuple | None, limit: int, tcp: bool) -> list[bytes]:
        decision = self._decide(query, peer_address(peer))
        if isinstance(decision, Refusal):
            self.refused += 1
            self._log_refusal(query, peer, decision)
            return [self._refuse(query, decision)]
        zone = decision
        qtype = query.question[0].rdtype
        if qtype == dns.rdatatype.IXFR and (not tcp or self._client_current(query, zone)):
            sequence = rrset_records(zone.soa)
        else:
            records = self._zone_records(zone)
            sequence = [records.soa, *records.body, records.soa]  # RFC 5936 §2.2: SOA first and last
        messages = render_transfer(query, sequence, limit, self.config.udp_payload)
        if len(sequence) > 1:
            self.transfers += 1
            log.info("transfer zone=%s peer=%s type=%s serial=%d records=%d messages=%d tsig=%s",
                     names.to_text(zone.origin), _peer_text(peer), dns.rdatatype.to_text(qtype), zone.serial,
                     len(sequence) - 1, len(messages), _key_text(query) or "none")
        return messages

    def _decide(self, query: dns.message.Message, address: Address | None) -> Zone | Refusal:
        """Whose zone, and may this client have it (README, "Secondaries")."""
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN:
            return Refusal(dns.rcode.REFUSED, EDE_NOT_SUPPORTED, "class not IN")
        zone = self.holder.current.snapshot.zones.get(question.name.canonicalize().to_wire())
        if zone is None:
            # No zone has this apex: "not authoritative for the zone" (RFC 8914 §4.21).
            return Refusal(dns.rcode.REFUSED, EDE_NOT_AUTHORITATIVE, "not a zone apex")
        key = _key_text(query)
        rules = allow_rules(zone, self.config)
        if address is not None and any(rule.matches(address) and rule.key in (None, key) for rule in rules):
            return zone
        needs_key = address is not None and any(rule.matches(address) for rule in rules)
        return Refusal(dns.rcode.REFUSED, EDE_PROHIBITED, "wrong or missing TSIG key" if needs_key
                       else "not in the allow list")

    def _client_current(self, query: dns.message.Message, zone: Zone) -> bool:
        """IXFR whose authority SOA is not older than ours: one SOA answers it (RFC 1995 §2)."""
        for rrset in query.authority:
            if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                return not serial_gt(zone.serial, rrset[0].serial)
        return False

    def _zone_records(self, zone: Zone) -> ZoneRecords:
        """Converted once per zone version; a reload's new Zone object converts again."""
        cached = self._records.get(zone.origin)
        if cached is not None and cached[0] is zone:
            return cached[1]
        if len(self._records) > 2 * len(self.holder.current.snapshot.zones) + 8:
            self._records.clear()  # zones that are gone: drop them now and then
        records = zone_records(zone)
        self._records[zone.origin] = (zone, records)
        return records

    # -- parsing and TSIG (RFC 8945 §5.2) ----------------------------------------

    def _parse(self, packet: bytes) -> dns.message.Message | bytes | None:
        """The query with its TSIG verified, a NOTAUTH reply when TSIG fails, or None
        when dnspython cannot read it (the ordinary path then says FORMERR)."""
        try:
            unverified = dns.message.from_wire(packet, keyring=False)
        except Exception:  # any parse failure: not ours to answer
            return None
        if unverified.flags & dns.flags.QR or len(unverified.question) != 1:
            return None
        if not unverified.had_tsig:
            return unverified
        payload = self.config.udp_payload
        key = self.keyring.get(unverified.keyname)
        if key is None or key.algorithm != unverified.keyalgorithm:
            return tsig_error_reply(unverified, dns.rcode.BADKEY, payload)  # RFC 8945 §5.2.1
        try:
            return dns.message.from_wire(packet, keyring={key.name: key})
        except dns.tsig.BadTime:
            return tsig_error_reply(unverified, dns.rcode.BADTIME, payload, key)  # RFC 8945 §5.2.3
        except Exception:
            return tsig_error_reply(unverified, dns.rcode.BADSIG, payload)  # RFC 8945 §5.2.2

    def _refuse(self, query: dns.message.Message, refusal: Refusal) -> bytes:
        """REFUSED with an Extended DNS Error when the query had EDNS (RFC 8914); signed
        when the query was (RFC 8945 §5.3)."""
        response = dns.message.make_response(query, our_payload=self.config.udp_payload)
        response.set_rcode(refusal.rcode)
        if query.edns >= 0:
            response.use_edns(0, query.ednsflags & dns.flags.DO, self.config.udp_payload,
                              options=[dns.edns.EDEOption(refusal.ede)])
        return response.to_wire()

    def _log_refusal(self, query: dns.message.Message, peer: tuple | None, refusal: Refusal) -> None:
        now = time.monotonic()
        if now - self._last_refusal_log < REFUSAL_LOG_INTERVAL:
            return
        self._last_refusal_log = now
        log.info("transfer refused zone=%s peer=%s type=%s reason=%s tsig=%s",
                 query.question[0].name.to_text(), _peer_text(peer),
                 dns.rdatatype.to_text(query.question[0].rdtype), refusal.reason.replace(" ", "-"),
                 _key_text(query) or "none")


def _key_text(query: dns.message.Message) -> str | None:
    """The verified TSIG key's name as ``AllowRule.key`` spells it, or None when unsigned."""
    if not query.had_tsig or not query.keyring:
        return None
    return query.keyname.canonicalize().to_text()


def _peer_text(peer: tuple | None) -> str:
    return f"{peer[0]}:{peer[1]}" if peer else "unknown"


def tsig_error_reply(query: dns.message.Message, error: int, payload: int, key: dns.tsig.Key | None = None) -> bytes:
    """NOTAUTH with the TSIG error (RFC 8945 §5.2). BADKEY and BADSIG go unsigned, with an
    empty MAC (§5.3.2); BADTIME is signed and carries our clock in Other Data (§5.2.3)."""
    response = dns.message.make_response(query, our_payload=payload)
    response.set_rcode(dns.rcode.NOTAUTH)
    now = int(time.time())
    if key is not None:
        response.use_tsig(key, fudge=TSIG_FUDGE, tsig_error=error,
                          other_data=struct.pack("!HI", now >> 32, now & 0xFFFFFFFF))
        response.request_mac = query.mac
        return response.to_wire()
    rdata = dns.rdtypes.ANY.TSIG.TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, query.keyalgorithm, now, TSIG_FUDGE,
                                      b"", query.id, error, b"")
    response.tsig = dns.rrset.from_rdata(query.keyname, 0, rdata)
    return response.to_wire()


def render_transfer(query: dns.message.Message, records: list[dns.rrset.RRset], limit: int,
                    payload: int) -> list[bytes]:
    """The records in as few messages as fit ``limit`` octets each (RFC 5936 §2.2): the
    question in the first only, AA set, an OPT in the first when the query had one, and
    every message TSIG-signed when the query was, each MAC chained to the one before
    (RFC 8945 §5.3.1)."""
    question = query.question[0]
    flags = dns.flags.QR | dns.flags.AA | (query.flags & dns.flags.RD)
    messages: list[bytes] = []
    context = None
    index = 0
    while index < len(records) or not messages:
        renderer = dns.renderer.Renderer(query.id, flags, limit)
        renderer.reserve(min(TRAILER_RESERVE, limit // 4))
        if not messages:
            renderer.add_question(question.name, question.rdtype, question.rdclass)
        index = _fill(renderer, records, index)
        renderer.release_reserved()
        if not messages and query.edns >= 0:
            renderer.add_edns(0, query.ednsflags & dns.flags.DO, payload)
        renderer.write_header()
        if query.had_tsig and query.keyring:
            context = renderer.add_multi_tsig(context, query.keyname, query.keyring, TSIG_FUDGE, query.id, 0, b"",
                                              query.mac, query.keyalgorithm)
        messages.append(renderer.get_wire())
    return messages


def _fill(renderer: dns.renderer.Renderer, records: list[dns.rrset.RRset], index: int) -> int:
    """Add records from ``index`` until the message is full; the index of the next one."""
    start = index
    while index < len(records):
        try:
            renderer.add_rrset(dns.renderer.ANSWER, records[index])
        except dns.exception.TooBig:
            if index == start:
                raise  # one record larger than a whole message: cannot be sent at all
            break
        index += 1
    return index


# ---------------------------------------------------------------- NOTIFY out


class Notifier:
    """NOTIFY (RFC 1996) to each secondary a zone lists, whenever its serial changes.

    Each target gets the message again after ``notify_retry`` seconds, then twice that,
    and so on, until it answers (RFC 1996 §3.6) or ``notify_attempts`` messages went
    unanswered. A newer change of a zone replaces the pending retries for it. A NOTIFY is
    TSIG-signed when the first allow rule matching the target's address names a key."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.keyring = keyring(config.tsig_keys)
        self.tasks: dict[Name, asyncio.Task] = {}

    def zones_changed(self, zones: Iterable[Zone]) -> None:
        """Schedule NOTIFYs for these zones (event-loop thread only)."""
        loop = asyncio.get_running_loop()
        for zone in zones:
            if zone.transfer is None or not zone.transfer.notify:
                continue
            pending = self.tasks.pop(zone.origin, None)
            if pending is not None:
                pending.cancel()  # superseded: the secondaries want the newest serial only
            task = loop.create_task(self._notify_zone(zone))
            self.tasks[zone.origin] = task
            task.add_done_callback(functools.partial(self._forget, zone.origin))

    def _forget(self, origin: Name, task: asyncio.Task) -> None:
        if self.tasks.get(origin) is task:
            del self.tasks[origin]

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()

    async def _notify_zone(self, zone: Zone) -> None:
        assert zone.transfer is not None
        await asyncio.gather(*(self._notify_target(zone, target) for target in zone.transfer.notify))

    def key_for(self, zone: Zone, host: str) -> dns.tsig.Key | None:
        """The key of the first allow rule matching the target's address, if configured."""
        address = ipaddress.ip_address(host)
        for rule in allow_rules(zone, self.config):
            if rule.matches(address):
                return self.keyring.get(dns.name.from_text(rule.key)) if rule.key else None
        return None

    async def _notify_target(self, zone: Zone, target: tuple[str, int]) -> None:
        fields = (f"zone={names.to_text(zone.origin)} target={_target_text(target)} serial={zone.serial}")
        try:
            with _connected_socket(target) as sock:
                attempts = await self._attempts(sock, zone, target, fields)
        except OSError as error:
            log.warning("notify gave up %s reason=%s", fields, error.strerror or error)
            return
        if attempts is None:
            log.warning("notify gave up %s attempts=%d", fields, self.config.notify_attempts)

    async def _attempts(self, sock: socket.socket, zone: Zone, target: tuple[str, int], fields: str) -> int | None:
        """Send and wait, doubling the wait; the attempt that was answered, or None."""
        message = notify_message(zone, self.key_for(zone, target[0]))
        macs: list[bytes] = []
        delay = self.config.notify_retry
        loop = asyncio.get_running_loop()
        for attempt in range(1, self.config.notify_attempts + 1):
            wire = message.to_wire()
            if message.had_tsig:
                macs.append(message.mac)
            try:
                sock.send(wire)
            except OSError as error:
                log.info("notify not sent %s attempt=%d reason=%s", fields, attempt, error.strerror or error)
            else:
                log.info("notify sent %s attempt=%d", fields, attempt)
            reply = await _await_reply(sock, message, macs, loop.time() + delay)
            if reply is not None:
                rcode = dns.rcode.to_text(reply.rcode())
                if reply.rcode() == dns.rcode.NOERROR:
                    log.info("notify acknowledged %s attempt=%d", fields, attempt)
                else:  # the secondary answered: retrying cannot change its mind
                    log.warning("notify rejected %s attempt=%d rcode=%s", fields, attempt, rcode)
                return attempt
            delay *= 2
        return None


def notify_message(zone: Zone, key: dns.tsig.Key | None) -> dns.message.Message:
    """NOTIFY for a zone: QR=0, AA=1, question (zone, SOA, IN), and the new SOA in the
    answer section as a hint (RFC 1996 §3.7); one ID for all retries of one change."""
    origin = dns.name.from_wire(zone.origin, 0)[0]
    message = dns.message.make_query(origin, dns.rdatatype.SOA)
    message.flags = dns.flags.AA
    message.set_opcode(dns.opcode.NOTIFY)
    message.answer.append(rrset_records(zone.soa)[0])
    if key is not None:
        message.use_tsig(key, fudge=TSIG_FUDGE)
    return message


async def _await_reply(sock: socket.socket, message: dns.message.Message, macs: list[bytes],
                       deadline: float) -> dns.message.Message | None:
    """The secondary's answer to ``message`` (same ID, QR=1, opcode NOTIFY, valid TSIG
    when signed: RFC 1996 §4.7), or None when ``deadline`` passes first."""
    loop = asyncio.get_running_loop()
    while (remaining := deadline - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), remaining)
        except asyncio.TimeoutError:
            return None
        except OSError:
            # ICMP port unreachable, typically: nobody listens yet. Wait out this
            # attempt's time rather than retry at once.
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            return None
        reply = _matching_reply(data, message, macs)
        if reply is not None:
            return reply
    return None


def _matching_reply(data: bytes, message: dns.message.Message, macs: list[bytes]) -> dns.message.Message | None:
    if len(data) < 12:
        return None
    ident, flags = struct.unpack_from("!HH", data)
    if ident != message.id or not flags & 0x8000 or (flags >> 11) & 0xF != dns.opcode.NOTIFY:
        return None
    for mac in reversed(macs or [b""]):  # a late answer to an earlier attempt counts too
        try:
            return dns.message.from_wire(data, keyring=message.keyring if macs else None, request_mac=mac)
        except Exception:
            continue  # not signed by our key, or not for this attempt: keep waiting
    return None


def _connected_socket(target: tuple[str, int]) -> socket.socket:
    """A UDP socket connected to the target: the kernel keeps other senders' datagrams
    out, and picks the source address the secondary sees (its allow-notify list)."""
    host, port = target
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _target_text(target: tuple[str, int]) -> str:
    host, port = target
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
