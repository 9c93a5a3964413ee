"""NOTIFY out (RFC 1996): whenever a zone's serial changes, each secondary its
``transfer: notify:`` lists is told, over UDP, again after ``--notify-retry`` seconds
and doubling until it answers or ``--notify-attempts`` went unanswered; TSIG-signed
with the key of the first allow rule matching the secondary's address. Runs on the
event loop; owns its retry tasks.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import struct
from typing import Iterable

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig

from authdns.base import names
from authdns.configuration.config import ServerConfig
from authdns.base.hostport import format_host_port
from authdns.base.names import Name
from authdns.base.protocol import FLAG_QR, HEADER_LENGTH, OPCODE_MASK, OPCODE_NOTIFY
from authdns.transfer.access import allow_rules
from authdns.transfer.pack import rdata_wire
from authdns.base.tsig import FUDGE, keyring
from authdns.zones.zone import RRset, Zone

log = logging.getLogger("authdns.transfer")  # the name operators' log filters know


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
        message.use_tsig(key, fudge=FUDGE)
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
    if len(data) < HEADER_LENGTH:
        return None
    ident, flags = struct.unpack_from("!HH", data)
    if ident != message.id or not flags & FLAG_QR or (flags & OPCODE_MASK) >> 11 != OPCODE_NOTIFY:
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
    return format_host_port(*target)


def rrset_records(rrset: RRset) -> list[dns.rrset.RRset]:
    """An RRset as one-record dnspython RRsets in zone order (the NOTIFY's SOA)."""
    owner = dns.name.from_wire(rrset.name, 0)[0]
    result = []
    for rdata in rrset.rdatas:
        wire = rdata_wire(rrset.rtype, rdata)
        parsed = dns.rdata.from_wire(dns.rdataclass.IN, rrset.rtype, wire, 0, len(wire))
        result.append(dns.rrset.from_rdata(owner, rrset.ttl, parsed))
    return result
