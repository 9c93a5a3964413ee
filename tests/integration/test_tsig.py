"""TSIG (RFC 8945) on ordinary queries, against a real ``authdns serve`` with one key per
algorithm and the server's default workers, dnspython and dig as clients.

* A query signed with a configured key is answered signed, over UDP and TCP, for
  every algorithm offered: answers, NXDOMAIN, REFUSED, NOTIMP (a NOTIFY) alike, and the
  signed reply still fits the client's UDP size (TC set, MAC intact).
* Unknown key → NOTAUTH, TSIG error BADKEY, unsigned; wrong secret → BADSIG, unsigned;
  a clock outside the fudge → BADTIME, signed, the server's time in Other Data; a TSIG
  that is not the last record, or two TSIGs → FORMERR; a MAC cut below the policy →
  BADTRUNC; the server keeps answering unsigned queries from its cache. The signed
  error replies are checked by hand (dnspython's client only raises on them): their MAC
  covers the request's, and BADTIME's Time Signed is the request's.
* A TSIG in the answer section → FORMERR; a signed message with QR set (a response) is
  dropped, over UDP and over TCP (an AXFR-typed one) alike.
* Response rate limiting slips signed replies as it slips others, and the truncated
  slip of a signed reply is signed again (it verifies).
* An internal error answering a signed query gives a signed SERVFAIL (in process, the
  fault injected into the answer engine).
* ``--tsig-key hmac-md5:...`` stops start-up with a usage message.
"""

from __future__ import annotations

import base64
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Iterator

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import pytest

from conftest import ROOT, ServerProcess, rrset_texts, run_authdns, start_server, stop_server
from inprocess import serve_in_process
from support import frame, query_wire, signed_wire, tcp_exchange, udp_exchange, udp_replies_until, write_zone

from authdns.base.tsig import TsigSecret

SECRETS = {algorithm: bytes((index * 7 + offset) % 256 for offset in range(size))
           for index, (algorithm, size) in enumerate([("hmac-sha1", 20), ("hmac-sha224", 28), ("hmac-sha256", 32),
                                                      ("hmac-sha384", 48), ("hmac-sha512", 64)])}
KEYS = {algorithm: dns.tsig.Key(f"{algorithm}.key.", secret, algorithm) for algorithm, secret in SECRETS.items()}
SHA256 = KEYS["hmac-sha256"]

TXT_COUNT = 30
ZONE = "\n".join([
    "ttl: 300",
    "records:",
    '  "@": {SOA: {serial: 5}, NS: [ns1], MX: "10 mx1"}',
    "  ns1: {A: 192.0.2.53}",
    "  mx1: {A: [192.0.2.1, 192.0.2.2]}",
    "  big: {TXT: [" + ", ".join(f'"record {index:02d} {"x" * 40}"' for index in range(TXT_COUNT)) + "]}",
]) + "\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    zone_dir = tmp_path_factory.mktemp("tsig") / "zones"
    write_zone(zone_dir, "tsig.test", ZONE)
    shutil.copy(ROOT / "zones" / "example.test.yaml", zone_dir)  # start_server's readiness query asks it
    running = start_server(zone_dir, *tsig_flags(), workers=None)
    try:
        yield running
    finally:
        stop_server(running.process)


def tsig_flags() -> list[str]:
    return [argument for algorithm, key in KEYS.items()
            for argument in ("--tsig-key", f"{algorithm}:{key.name}:{base64.b64encode(key.secret).decode()}")]


def signed(qname: str, rdtype: str, key: dns.tsig.Key, **options) -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype, **options)
    query.use_tsig({key.name: key}, keyname=key.name, algorithm=key.algorithm)
    return query


def unverified(wire: bytes) -> dns.message.Message:
    """A reply parsed without checking its TSIG (dnspython's client raises on TSIG errors)."""
    return dns.message.from_wire(wire, keyring=False)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("algorithm", list(KEYS))
def test_a_signed_query_is_answered_signed(server: ServerProcess, algorithm: str, tcp: bool) -> None:
    key = KEYS[algorithm]
    query = signed("tsig.test.", "MX", key)
    send = dns.query.tcp if tcp else dns.query.udp
    reply = send(query, server.host, port=server.port, timeout=3)  # dnspython verifies the MAC
    assert reply.had_tsig and reply.keyname == key.name and reply.tsig[0].algorithm == key.algorithm
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    plain = server.query("tsig.test.", "MX", tcp=tcp)
    assert rrset_texts(reply.answer) == rrset_texts(plain.answer)  # order-free: the A records rotate
    assert rrset_texts(reply.additional) == rrset_texts(plain.additional)


@pytest.mark.parametrize("qname,rdtype,rcode", [
    ("nothere.tsig.test.", "A", dns.rcode.NXDOMAIN),
    ("ns1.tsig.test.", "MX", dns.rcode.NOERROR),  # NODATA
    ("elsewhere.invalid.", "A", dns.rcode.REFUSED),
])
def test_negative_answers_and_refusals_are_signed(server: ServerProcess, qname: str, rdtype: str,
                                                  rcode: int) -> None:
    reply = dns.query.udp(signed(qname, rdtype, SHA256), server.host, port=server.port, timeout=3)
    assert reply.rcode() == rcode and reply.had_tsig


def test_a_signed_notify_gets_a_signed_notimp(server: ServerProcess) -> None:
    """authdns is a primary: a NOTIFY to it is NOTIMP (as NSD without a secondary zone
    answers), and the answer to a signed one is signed."""
    query = signed("tsig.test.", "SOA", SHA256)
    query.flags = dns.flags.AA
    query.set_opcode(dns.opcode.NOTIFY)  # after the flags: the opcode lives in them
    reply = dns.query.udp(query, server.host, port=server.port, timeout=3)
    assert reply.rcode() == dns.rcode.NOTIMP and reply.opcode() == dns.opcode.NOTIFY and reply.had_tsig


@pytest.mark.parametrize("payload", [None, 1232])
def test_a_signed_reply_fits_the_clients_size(server: ServerProcess, payload: int | None) -> None:
    """The TXT RRset is about 1.5 KB: truncated for 512 and 1232 octets, the signature
    inside the limit (RFC 8945 §5.3: the TSIG is computed over the truncated message)."""
    key = KEYS["hmac-sha512"]
    options = {"use_edns": 0, "payload": payload} if payload else {}
    query = signed("big.tsig.test.", "TXT", key, **options)
    wire = udp_exchange(server.host, server.port, query.to_wire(), timeout=3)
    assert len(wire) <= (payload or 512)
    reply = dns.message.from_wire(wire, keyring={key.name: key}, request_mac=query.mac)
    assert reply.flags & dns.flags.TC and reply.had_tsig
    full = dns.query.tcp(signed("big.tsig.test.", "TXT", key), server.host, port=server.port, timeout=3)
    assert len(full.answer[0]) == TXT_COUNT and full.had_tsig


def reply_mac_verifies(wire: bytes, key: dns.tsig.Key, request_mac: bytes) -> bool:
    """A signed reply's MAC recomputed here (RFC 8945 §4.3.2: the request's MAC, the
    reply without its TSIG record, the TSIG variables), for the error replies
    dnspython's client refuses to read."""
    tsig = unverified(wire).tsig[0]
    rdata = tsig.to_wire()
    record = key.name.to_wire() + struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(rdata)) + rdata
    assert wire.endswith(record), "the TSIG is the last record, its names uncompressed"
    body = wire[: -len(record)]
    body = body[:10] + struct.pack("!H", struct.unpack_from("!H", body, 10)[0] - 1) + body[12:]
    expected, _ = dns.tsig.sign(body, key, tsig, tsig.time_signed, request_mac)
    return expected.mac == tsig.mac


def test_unknown_key_is_notauth_badkey_unsigned(server: ServerProcess) -> None:
    stranger = dns.tsig.Key("nobody.", SECRETS["hmac-sha256"], "hmac-sha256")
    query = signed("tsig.test.", "SOA", stranger)
    with pytest.raises(dns.tsig.PeerBadKey):
        dns.query.udp(query, server.host, port=server.port, timeout=3)
    reply = unverified(udp_exchange(server.host, server.port, query.to_wire(), timeout=3))
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADKEY and reply.mac == b""


def test_a_known_name_with_another_algorithm_is_badkey(server: ServerProcess) -> None:
    """RFC 8945 §5.2.1: the key is the name and the algorithm together."""
    mixed = dns.tsig.Key(SHA256.name, SHA256.secret, "hmac-sha512")
    reply = unverified(udp_exchange(server.host, server.port, signed("tsig.test.", "SOA", mixed).to_wire()))
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADKEY


def test_wrong_secret_is_notauth_badsig_unsigned(server: ServerProcess) -> None:
    forged = dns.tsig.Key(SHA256.name, bytes(32), "hmac-sha256")
    query = signed("tsig.test.", "SOA", forged)
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.query.tcp(query, server.host, port=server.port, timeout=3)
    reply = unverified(udp_exchange(server.host, server.port, query.to_wire(), timeout=3))
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADSIG and reply.mac == b""
    assert not reply.answer


def test_skewed_clock_is_badtime_signed_with_the_servers_time(server: ServerProcess) -> None:
    """RFC 8945 §5.2.3: signed, Time Signed copied from the request (so the client can
    check the MAC whatever its clock), the server's time in Other Data."""
    skewed = int(time.time()) - 1000
    wire, mac = signed_wire(SHA256, "tsig.test.", dns.rdatatype.SOA, time_signed=skewed)
    reply_wire = udp_exchange(server.host, server.port, wire, timeout=3)
    with pytest.raises(dns.tsig.PeerBadTime):
        dns.message.from_wire(reply_wire, keyring={SHA256.name: SHA256}, request_mac=mac)
    reply = unverified(reply_wire)
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADTIME and len(reply.mac) == 32
    assert reply.tsig[0].time_signed == skewed
    assert abs(int.from_bytes(reply.tsig[0].other, "big") - time.time()) < 60
    assert reply_mac_verifies(reply_wire, SHA256, mac)


def test_a_truncated_mac_that_verifies_is_badtrunc(server: ServerProcess) -> None:
    wire, mac = signed_wire(SHA256, "tsig.test.", dns.rdatatype.SOA, mac=lambda full: full[:16])
    reply_wire = udp_exchange(server.host, server.port, wire, timeout=3)
    reply = unverified(reply_wire)
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADTRUNC
    assert abs(reply.tsig[0].time_signed - time.time()) < 60 and reply_mac_verifies(reply_wire, SHA256, mac)


@pytest.mark.parametrize("size", [4, 40])
def test_a_mac_of_impossible_size_is_formerr(server: ServerProcess, size: int) -> None:
    wire, _ = signed_wire(SHA256, "tsig.test.", dns.rdatatype.SOA, mac=lambda full: (full + bytes(8))[:size])
    reply = unverified(udp_exchange(server.host, server.port, wire, timeout=3))
    assert reply.rcode() == dns.rcode.FORMERR and not reply.had_tsig


OPT_RECORD = b"\x00" + struct.pack("!HHIH", dns.rdatatype.OPT, 1232, 0, 0)


def test_a_tsig_before_another_record_is_formerr(server: ServerProcess) -> None:
    """RFC 8945 §5.1: the TSIG must be the last record."""
    wire, _ = signed_wire(SHA256, "tsig.test.", dns.rdatatype.SOA)
    moved = wire[:10] + struct.pack("!H", 2) + wire[12:] + OPT_RECORD
    reply = udp_exchange(server.host, server.port, moved, timeout=3)
    assert reply[3] & 0xF == dns.rcode.FORMERR and reply[:2] == moved[:2]


def test_a_tsig_in_the_answer_section_is_formerr(server: ServerProcess) -> None:
    """RFC 8945 §5.1: the TSIG is the last record of the additional section."""
    wire, _ = signed_wire(SHA256, "tsig.test.", dns.rdatatype.SOA)
    moved = wire[:6] + struct.pack("!HHH", 1, 0, 0) + wire[12:]
    reply = udp_exchange(server.host, server.port, moved, timeout=3)
    assert reply[3] & 0xF == dns.rcode.FORMERR and reply[:2] == moved[:2]


STRANGER = dns.tsig.Key("nobody.", SECRETS["hmac-sha256"], "hmac-sha256")


@pytest.mark.parametrize("key", [SHA256, STRANGER], ids=["known-key", "unknown-key"])
def test_a_signed_response_is_dropped(server: ServerProcess, key: dns.tsig.Key) -> None:
    """RFC 1035 §4.1.1: a message with QR set is an answer, never answered, signed or
    not (a BADKEY "reply" to one would bounce between two servers)."""
    response, _ = signed_wire(key, "tsig.test.", dns.rdatatype.SOA, flags=dns.flags.QR | dns.flags.AA)
    sentinel_id = 777
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(response, (server.host, server.port))
        sock.sendto(query_wire("tsig.test.", "SOA", ident=sentinel_id), (server.host, server.port))
        others, sentinel = udp_replies_until(sock, sentinel_id, timeout=3.0)
    assert others == [] and dns.message.from_wire(sentinel).rcode() == dns.rcode.NOERROR
    transfer, _ = signed_wire(key, "tsig.test.", dns.rdatatype.AXFR, flags=dns.flags.QR)
    with socket.create_connection((server.host, server.port), timeout=3) as sock:
        sock.sendall(frame(transfer))
        reply = tcp_exchange(sock, query_wire("tsig.test.", "SOA", ident=sentinel_id))
    assert struct.unpack_from("!H", reply)[0] == sentinel_id, "the sentinel's answer is the first to come back"


def test_two_tsig_records_are_formerr(server: ServerProcess) -> None:
    wire, _ = signed_wire(SHA256, "tsig.test.", dns.rdatatype.SOA)
    question_end = 12 + len(dns.name.from_text("tsig.test.").to_wire()) + 4
    record = wire[question_end:]
    doubled = wire[:10] + struct.pack("!H", 2) + wire[12:] + record
    reply = udp_exchange(server.host, server.port, doubled, timeout=3)
    assert reply[3] & 0xF == dns.rcode.FORMERR


def test_unsigned_queries_are_unaffected(server: ServerProcess) -> None:
    """Signed queries never take the fast path, and never leave a signed answer in it."""
    for _ in range(3):
        plain = server.query("tsig.test.", "MX")
        assert not plain.had_tsig and plain.rcode() == dns.rcode.NOERROR
        reply = dns.query.udp(signed("tsig.test.", "MX", SHA256), server.host, port=server.port, timeout=3)
        assert reply.had_tsig


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig (bind9-dnsutils) is not installed")
@pytest.mark.parametrize("algorithm", ["hmac-sha1", "hmac-sha384"])
def test_dig_verifies_the_signed_answer(server: ServerProcess, algorithm: str) -> None:
    """BIND's dig as the client: it checks the MAC and says so when it fails."""
    key = KEYS[algorithm]
    secret = base64.b64encode(key.secret).decode()
    result = subprocess.run(["dig", "-p", str(server.port), f"@{server.host}", "-y",
                             f"{algorithm}:{key.name}:{secret}", "+norec", "+tries=1", "+time=3", "tsig.test.", "MX"],
                            capture_output=True, text=True, timeout=20)
    assert "status: NOERROR" in result.stdout, result.stdout
    assert "TSIG PSEUDOSECTION" in result.stdout and "NOERROR" in result.stdout.split("TSIG PSEUDOSECTION")[1]
    assert "failure" not in result.stdout.lower() + result.stderr.lower(), result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("kdig") is None, reason="kdig (knot-dnsutils) is not installed")
@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_kdig_verifies_the_signed_answer(server: ServerProcess, transport: str) -> None:
    """Knot's kdig as the client (Knot's library checks TSIG as knotd's refresh does)."""
    key = KEYS["hmac-sha224"]
    secret = base64.b64encode(key.secret).decode()
    result = subprocess.run(["kdig", "-p", str(server.port), f"@{server.host}", "-y", f"hmac-sha224:{key.name}:{secret}",
                             transport, "+norec", "+retry=0", "+time=3", "tsig.test.", "SOA"],
                            capture_output=True, text=True, timeout=20)
    output = result.stdout + result.stderr
    assert "status: NOERROR" in output and ";; TSIG PSEUDOSECTION:" in output, output
    assert "WARNING" not in output and "failed" not in output.lower(), output


def test_an_md5_key_is_refused_at_start_up(tmp_path: Path) -> None:
    result = run_authdns("serve", "--zones", tmp_path, "--tsig-key", "hmac-md5:old:" + base64.b64encode(bytes(16)).decode(),
                         timeout=30)
    assert result.returncode == 2, result.stderr
    assert "hmac-md5 must not be used (RFC 8945 §6)" in result.stderr and "usage:" in result.stderr


def test_rate_limiting_signs_the_slips_of_signed_replies(tmp_path: Path) -> None:
    """One answer a second per question, every further one slipped (sent truncated, the
    question only). Signed replies are limited too; their slips carry a signature that
    verifies, so a signed client can read them and retry over TCP. One process: each
    worker would keep its own buckets."""
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, "tsig.test", ZONE)
    shutil.copy(ROOT / "zones" / "example.test.yaml", zone_dir)
    running = start_server(zone_dir, *tsig_flags(), "--rrl-rate", "1", "--rrl-slip", "1")
    try:
        truncated = {"unsigned": 0, "signed": 0}
        for _ in range(10):
            reply = dns.message.from_wire(udp_exchange(running.host, running.port,
                                                       query_wire("tsig.test.", "SOA"), timeout=3))
            truncated["unsigned"] += bool(reply.flags & dns.flags.TC)
        for _ in range(10):
            reply = dns.query.udp(signed("tsig.test.", "SOA", SHA256), running.host, port=running.port, timeout=3)
            assert reply.had_tsig  # dnspython verified the MAC, slip or not
            if reply.flags & dns.flags.TC:
                truncated["signed"] += 1
                assert not reply.answer and reply.question
        assert truncated["unsigned"] >= 8 and truncated["signed"] >= 8, truncated
    finally:
        stop_server(running.process)


def test_an_internal_error_on_a_signed_query_is_a_signed_servfail(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A signed requester discards an unsigned reply (RFC 8945 §5.3), so even the last
    resort is signed. The fault is injected into the answer engine the responder calls."""
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, "tsig.test", ZONE)

    def broken(*_args, **_kwargs):
        raise RuntimeError("injected fault")

    keys = {str(SHA256.name): TsigSecret("hmac-sha256", SHA256.secret)}
    with serve_in_process(zone_dir, tsig_keys=keys) as running:
        monkeypatch.setattr("authdns.engine.responder.resolve", broken)
        reply = dns.query.udp(signed("tsig.test.", "SOA", SHA256), running.host, port=running.port, timeout=3)
        assert reply.rcode() == dns.rcode.SERVFAIL and reply.had_tsig  # dnspython verified the MAC
        plain = dns.query.udp(dns.message.make_query("tsig.test.", "SOA"), running.host, port=running.port, timeout=3)
        assert plain.rcode() == dns.rcode.SERVFAIL and not plain.had_tsig
