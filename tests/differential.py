"""What the differential tests against NSD share (tests/reference/test_nsd_differential.py
on exported YAML zones, test_corpus_differential.py on master files NSD reads as they
are): NSD started on a free port over given zone files, one query sent to a server, and
a reply reduced to the ``View`` that is compared, with NSD's one blanket difference
(``without_apex_ns``) taken out."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from conftest import stop_server, wait_until
from nsd_support import HOST, NSD, server_lines
from support import ExternalServer, frame, free_port, question_bytes, tcp_read_message

TIMEOUT = 2.0


# ---------------------------------------------------------------- NSD


NsdProcess = ExternalServer  # what run_nsd returns


def nsd_config(base: Path, port: int, zonesdir: Path, zones: list[tuple[str, str]]) -> str:
    """nsd.conf for ``zones`` as (origin, file name inside ``zonesdir``)."""
    lines = server_lines(base, port, zonesdir)
    for origin, file_name in zones:
        lines += ["zone:", f"    name: {origin}", f"    zonefile: {file_name}"]
    return "\n".join(lines) + "\n"


def run_nsd(base: Path, zonesdir: Path, zones: list[tuple[str, str]], probe: str, attempts: int = 3) -> NsdProcess:
    """``nsd -d`` over ``zones``; polls until it answers ``probe`` SOA. A port taken between
    choosing and binding makes NSD exit: try again on another one. NSD reads relative
    ``$INCLUDE`` paths from ``zonesdir`` (it changes into it)."""
    assert NSD is not None
    nsd = None
    for _ in range(attempts):
        port = free_port()
        config = base / "nsd.conf"
        config.write_text(nsd_config(base, port, zonesdir, zones))
        process = subprocess.Popen([NSD, "-d", "-c", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        nsd = NsdProcess(process, port, base / "nsd.log")

        def nsd_answers() -> bool | None:
            if process.poll() is not None:
                return False  # exited: most likely the port was taken meanwhile
            reply = exchange(port, dns.message.make_query(probe, "SOA").to_wire(), tcp=False, timeout=0.3)
            return True if reply is not None else None

        try:
            if wait_until(nsd_answers, timeout=15.0):
                return nsd
        except BaseException:
            stop_nsd(nsd)
            raise
    raise AssertionError(f"nsd exited {attempts} times; last log:\n{nsd.log() if nsd else ''}")


def stop_nsd(nsd: NsdProcess) -> None:
    """Stop the NSD we started, by its PID (it stops its own children)."""
    stop_server(nsd.process, grace=10.0)



# ---------------------------------------------------------------- the client side


def exchange(port: int, wire: bytes, *, tcp: bool, timeout: float = TIMEOUT) -> bytes | None:
    """Send one message to 127.0.0.1:port; the reply's bytes, or None when none came."""
    deadline = time.monotonic() + timeout
    if tcp:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect((HOST, port))
                sock.sendall(frame(wire))
                return tcp_read_message(sock) or None
            except OSError:
                return None  # refused, reset or timed out: no reply (half a message fails the test)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((HOST, port))
        sock.send(wire)
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except OSError:
                return None
            if data[:2] == wire[:2]:
                return data
        return None


FLAG_BITS = {"QR": 0x8000, "AA": 0x0400, "TC": 0x0200, "RD": 0x0100, "RA": 0x0080, "Z": 0x0040,
             "AD": 0x0020, "CD": 0x0010}


def _rrset_key(rrset: dns.rrset.RRset) -> tuple:
    """One RRset, order-free and case-sensitive: owner, TTL, class, type, rdata texts."""
    return (
        rrset.name.to_text(),
        rrset.ttl,
        dns.rdataclass.to_text(rrset.rdclass),
        dns.rdatatype.to_text(rrset.rdtype),
        frozenset(rdata.to_text() for rdata in rrset),
    )


@dataclass(frozen=True)
class View:
    """What is compared of one response."""

    rcode: str
    opcode: str
    flags: frozenset[str]
    question: bytes
    answer: frozenset
    authority: frozenset
    additional: frozenset
    counts: tuple[int, int, int, int]
    edns: tuple | None  # (version, payload, DO, options) or None when there is no OPT

    def show(self) -> str:
        lines = [f"rcode={self.rcode} opcode={self.opcode} flags={' '.join(sorted(self.flags))} "
                 f"counts={self.counts} edns={self.edns} question={self.question!r}"]
        for section in ("answer", "authority", "additional"):
            for key in sorted(getattr(self, section), key=repr):
                lines.append(f"  {section}: {key[0]} {key[1]} {key[2]} {key[3]} {sorted(key[4])}")
        return "\n".join(lines)


def view(wire: bytes | None) -> View | None:
    if wire is None:
        return None
    message = dns.message.from_wire(wire, ignore_trailing=False, one_rr_per_rrset=False)
    header_flags = struct.unpack_from("!H", wire, 2)[0]
    flags = frozenset(name for name, bit in FLAG_BITS.items() if header_flags & bit)
    edns = None
    if message.edns >= 0:
        options = tuple(sorted((option.otype, option.to_wire()) for option in message.options))
        edns = (message.edns, message.payload, bool(message.ednsflags & dns.flags.DO), options)
    counts = struct.unpack_from("!HHHH", wire, 4)
    sections = message.sections
    return View(
        rcode=dns.rcode.to_text(message.rcode()),
        opcode=dns.opcode.to_text(message.opcode()),
        flags=flags,
        question=question_bytes(wire),
        answer=frozenset(_rrset_key(r) for r in sections[1]),
        authority=frozenset(_rrset_key(r) for r in sections[2]),
        additional=frozenset(_rrset_key(r) for r in sections[3]),
        counts=counts,
        edns=edns,
    )



def zone_of(name: str, origins: frozenset[str]) -> str | None:
    """The closest of ``origins`` at or above ``name`` (lowercase text), like find_zone()."""
    labels = name.lower().rstrip(".").split(".")
    for index in range(len(labels) + 1):
        candidate = ".".join(labels[index:]) + "."
        if candidate in origins:
            return candidate
    return None


# ---------------------------------------------------------------- NSD's blanket difference


# Applied to every NSD reply before comparing (see without_apex_ns): NSD's default
# ``minimal-responses: no`` puts the zone's apex NS RRset in the authority section of
# every positive answer, plus those servers' addresses in additional. authdns answers
# minimally (RFC 1034 §4.3.2 step 3a copies only the answer; authority data on a
# positive answer is optional), like Knot and PowerDNS. ``minimal-responses: yes`` is
# no better a reference: it also drops the MX/SRV target addresses of RFC 1035 §3.3.9.
ALLOWED_EVERYWHERE = "apex NS in the authority section of positive answers (NSD minimal-responses: no)"


def without_apex_ns(nsd: View, origins: frozenset[str]) -> View:
    """NSD's reply without the apex NS RRset that ``minimal-responses: no`` adds to a
    positive answer, and without the addresses of those servers unless the answer itself
    names them (see ALLOWED_EVERYWHERE)."""
    if nsd.rcode != "NOERROR" or not nsd.answer or "AA" not in nsd.flags:
        return nsd
    apex_ns = {key for key in nsd.authority if key[3] == "NS" and key[0].lower() in origins}
    if not apex_ns or apex_ns != nsd.authority:
        return nsd
    hosts = {target.lower() for key in apex_ns for target in key[4]}
    named = {rdata.split()[-1].lower() for key in nsd.answer if key[3] in ("MX", "NS", "SRV") for rdata in key[4]}
    additional = frozenset(
        key for key in nsd.additional
        if not (key[3] in ("A", "AAAA") and key[0].lower() in hosts and key[0].lower() not in named)
    )
    removed_authority = sum(len(key[4]) for key in apex_ns)
    removed_additional = sum(len(key[4]) for key in nsd.additional - additional)
    counts = (nsd.counts[0], nsd.counts[1], nsd.counts[2] - removed_authority, nsd.counts[3] - removed_additional)
    return replace(nsd, authority=frozenset(), additional=additional, counts=counts)


COMPARED = ("rcode", "opcode", "flags", "question", "answer", "authority", "additional", "counts", "edns")


def differences(nsd: View | None, ours: View | None) -> list[str]:
    if nsd is None or ours is None:
        return [] if nsd is ours else ["reply"]
    return [name for name in COMPARED if getattr(nsd, name) != getattr(ours, name)]
