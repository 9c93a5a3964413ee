"""Differential test: NSD and authdns serve the same zones on loopback; every query must
get the same answer from both, except the differences listed in ``ALLOWED`` with the
rule that justifies ours.

Zones: the shipped ``zones/`` plus ``tests/reference/zones/`` (``ref.test`` covers the
resolution rules one name per rule; ``child.ref.test`` is a nested zone served beside
its parent). NSD gets them exactly as a user would: ``python -m authdns export FILE``.

Compared for every case, over UDP and over TCP (dnspython builds and parses every
message): whether there is a reply at all, rcode (extended rcode included), opcode, the
QR/AA/TC/RD/RA/Z/AD/CD flags, the question bytes exactly as echoed (0x20 case
included), each section as a set of RRsets with TTLs (owner and rdata text compared
case-sensitively), the section counts, and the OPT record (present iff the query had
one; version, payload size, DO bit, options such as Extended DNS Errors).

NSD runs with its defaults except what a test needs (no rate limiting, files in tmp).
One difference is taken out of every NSD reply before comparing: the apex NS RRset that
NSD's ``minimal-responses: no`` adds to positive answers (``ALLOWED_EVERYWHERE``).
Every other kept difference is an ``ALLOWED`` entry naming its reason; an entry whose
difference no longer shows fails, so the table stays true.

Skipped when the ``nsd`` binary is absent.
"""

from __future__ import annotations

import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdataclass
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.update
import pytest

from conftest import SHIPPED_ZONES, ServerProcess, fresh_state_dir, run_authdns, start_server, stop_server
from differential import TIMEOUT, NsdProcess, View, differences, exchange, run_nsd, stop_nsd, view, \
    without_apex_ns, zone_of
from nsd_support import NSD
from support import question_bytes

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out


if NSD is None:
    pytest.skip("nsd is not installed (looked in PATH and /usr/sbin/nsd)", allow_module_level=True)

REFERENCE_ZONES = Path(__file__).resolve().parent / "zones"
ZONE_FILES = sorted(SHIPPED_ZONES.glob("*.yaml")) + sorted(REFERENCE_ZONES.glob("*.yaml"))
ORIGINS = frozenset(path.name[: -len(".yaml")].lower() + "." for path in ZONE_FILES)


# ---------------------------------------------------------------- servers


def _export(zone_file: Path, target: Path, state_dir: Path | None = None) -> None:
    """``python -m authdns export FILE.yaml``: the master file a user would hand to NSD.
    With the server's ``state_dir`` the generated SOA serial is the one it serves."""
    extra = ["--state-dir", str(state_dir)] if state_dir is not None else []
    result = run_authdns("export", zone_file, *extra, timeout=30)
    assert result.returncode == 0, f"export {zone_file} failed:\n{result.stderr}"
    target.write_text(result.stdout)


def start_nsd(base: Path, zone_files: list[Path], state_dir: Path | None = None) -> NsdProcess:
    """Export the zones (as a user would hand them to NSD) and run NSD on them."""
    zones_dir = base / "nsdzones"
    zones_dir.mkdir()
    zones = []
    for zone_file in zone_files:
        origin = zone_file.name[: -len(".yaml")] + "."
        _export(zone_file, zones_dir / f"{origin}zone", state_dir)
        zones.append((origin, f"{origin}zone"))
    return run_nsd(base, zones_dir, zones, "ref.test.")


@pytest.fixture(scope="module")
def zone_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped zones and the reference zones in one directory."""
    target = tmp_path_factory.mktemp("reference") / "zones"
    target.mkdir()
    for source in ZONE_FILES:
        shutil.copy2(source, target / source.name)
    return target


@pytest.fixture(scope="module")
def state_dir(zone_set: Path) -> Path:
    """authdns's state dir, read by the export for NSD: files without a serial get a
    generated one, remembered there, so both servers serve the same (zones/serials.py)."""
    return fresh_state_dir(zone_set)


@pytest.fixture(scope="module")
def nsd(zone_set: Path, state_dir: Path, authdns: ServerProcess,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdProcess]:
    # Exported after authdns loaded the zones: `export --state-dir` gives the serials it serves.
    process = start_nsd(tmp_path_factory.mktemp("nsd"), sorted(zone_set.glob("*.yaml")), state_dir=state_dir)
    try:
        yield process
    finally:
        stop_nsd(process)


@pytest.fixture(scope="module")
def authdns(zone_set: Path, state_dir: Path) -> Iterator[ServerProcess]:
    server = start_server(zone_set, "--state-dir", str(state_dir))
    try:
        yield server
    finally:
        stop_server(server.process)


# ---------------------------------------------------------------- the client side


# ---------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One query. ``build`` overrides the message entirely (odd header or question count)."""

    id: str
    qname: str = "ref.test."
    qtype: str = "A"
    qclass: str = "IN"
    edns: int | None = None  # EDNS payload; None: no OPT
    version: int = 0
    do: bool = False
    rd: bool = False
    cd: bool = False
    ad: bool = False
    opcode: int = 0
    options: tuple = ()
    timeout: float = TIMEOUT  # shorter where no reply is the expected outcome
    build: Callable[[], dns.message.Message] | None = field(default=None, compare=False)
    raw: bytes | None = None  # a packet dnspython would refuse to build
    allowed: str | None = None  # a key of ALLOWED

    def wire(self) -> bytes:
        return self.raw if self.raw is not None else self.message().to_wire()

    def message(self) -> dns.message.Message:
        if self.build is not None:
            return self.build()
        kwargs = {}
        if self.edns is not None:
            kwargs = dict(use_edns=self.version, payload=self.edns, want_dnssec=self.do, options=list(self.options))
        message = dns.message.make_query(
            dns.name.from_text(self.qname), dns.rdatatype.from_text(self.qtype),
            dns.rdataclass.from_text(self.qclass), **kwargs,
        )
        message.flags &= ~dns.flags.RD
        if self.rd:
            message.flags |= dns.flags.RD
        if self.cd:
            message.flags |= dns.flags.CD
        if self.ad:
            message.flags |= dns.flags.AD
        if self.opcode:
            message.set_opcode(self.opcode)
        return message


def _questions(count: int, edns: bool = False) -> Callable[[], dns.message.Message]:
    """A QUERY with ``count`` questions (RFC 9619: only one is allowed)."""

    def build() -> dns.message.Message:
        message = dns.message.Message()
        if edns:
            message.use_edns(0, payload=1232)
        for index in range(count):
            qname = dns.name.from_text("ref.test." if index == 0 else "host.ref.test.")
            message.find_rrset(message.question, qname, dns.rdataclass.IN, dns.rdatatype.A, create=True,
                               force_unique=True)
        return message

    return build


def _update() -> dns.message.Message:
    """A real RFC 2136 UPDATE: a prerequisite and an addition (dnslib cannot parse it)."""
    update = dns.update.UpdateMessage("ref.test.")
    update.present("host")
    update.add("new", 300, "A", "192.0.2.99")
    return update


def _raw_flags(flags: int) -> Callable[[], dns.message.Message]:
    """host.ref.test A with header flag bits dnspython would not set for a query."""

    def build() -> dns.message.Message:
        message = dns.message.make_query("host.ref.test.", "A")
        message.flags = flags
        return message

    return build


def _packet(qname_wire: bytes, *, flags: int = 0, edns: bool = False) -> bytes:
    """A query for qname_wire/A built byte by byte: ID 0x1234, one question, maybe an OPT."""
    header = struct.pack("!HHHHHH", 0x1234, flags, 1, 0, 0, 1 if edns else 0)
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0) if edns else b""
    return header + qname_wire + struct.pack("!HH", 1, 1) + opt


def C(id: str, qname: str = "ref.test.", qtype: str = "A", **kwargs) -> Case:  # noqa: N802
    return Case(id, qname, qtype, **kwargs)


CASES: list[Case] = [
    # -- the shipped zones --------------------------------------------------------
    C("shipped-apex-soa", "example.test.", "SOA"),
    C("shipped-apex-ns", "example.test.", "NS"),
    C("shipped-apex-a", "example.test.", "A"),
    C("shipped-apex-aaaa", "example.test.", "AAAA"),
    C("shipped-apex-mx", "example.test.", "MX"),
    C("shipped-apex-txt", "example.test.", "TXT"),
    C("shipped-apex-caa", "example.test.", "CAA"),
    C("shipped-apex-any", "example.test.", "ANY", allowed="minimal-any"),
    C("shipped-apex-hinfo-nodata", "example.test.", "HINFO"),
    C("shipped-www-cname-a", "www.example.test.", "A"),
    C("shipped-www-cname-mx", "www.example.test.", "MX"),
    C("shipped-www-qtype-cname", "www.example.test.", "CNAME"),
    C("shipped-ns1-a", "ns1.example.test.", "A"),
    C("shipped-ns1-aaaa", "ns1.example.test.", "AAAA"),
    C("shipped-ns2-aaaa-nodata", "ns2.example.test.", "AAAA"),
    C("shipped-mail-a", "mail.example.test.", "A"),
    C("shipped-mail2-a", "mail2.example.test.", "A"),
    C("shipped-pool-mx", "pool.example.test.", "MX"),
    C("shipped-smtp-a", "smtp.example.test.", "A"),
    C("shipped-smtp-aaaa", "smtp.example.test.", "AAAA"),
    C("shipped-submission-srv", "_submission._tcp.example.test.", "SRV"),
    C("shipped-imaps-srv", "_imaps._tcp.example.test.", "SRV"),
    C("shipped-tcp-ent", "_tcp.example.test.", "SRV"),
    C("shipped-wildcard-a", "alice.users.example.test.", "A"),
    C("shipped-wildcard-mx", "alice.users.example.test.", "MX"),
    C("shipped-wildcard-nodata", "alice.users.example.test.", "AAAA"),
    C("shipped-wildcard-deep", "a.b.c.users.example.test.", "A"),
    C("shipped-wildcard-parent-ent", "users.example.test.", "A"),
    C("shipped-referral-ns", "lab.example.test.", "NS"),
    C("shipped-referral-a", "lab.example.test.", "A"),
    C("shipped-referral-below", "www.lab.example.test.", "A"),
    C("shipped-referral-glue-name", "ns.lab.example.test.", "A"),
    C("shipped-referral-ds", "lab.example.test.", "DS"),
    C("shipped-sub-mx-other-zone", "sub.example.test.", "MX", allowed="additional-other-zone"),
    C("shipped-nxdomain", "nonexistent.example.test.", "A"),
    C("shipped-net-null-mx", "example.net.", "MX"),
    C("shipped-net-txt-two-strings", "example.net.", "TXT"),
    C("shipped-net-soa", "example.net.", "SOA"),
    C("shipped-net-ns", "example.net.", "NS", allowed="additional-other-zone"),
    C("shipped-net-mx-a", "mx.example.net.", "A"),
    C("shipped-net-webmail-chain", "webmail.example.net.", "A"),
    C("shipped-net-webmail-cname", "webmail.example.net.", "CNAME"),
    C("shipped-reverse-ptr", "10.2.0.192.in-addr.arpa.", "PTR"),
    C("shipped-reverse-ptr-mx1", "31.2.0.192.in-addr.arpa.", "PTR"),
    C("shipped-reverse-nxdomain", "99.2.0.192.in-addr.arpa.", "PTR"),
    C("shipped-reverse-soa", "2.0.192.in-addr.arpa.", "SOA"),
    C("shipped-reverse-ns", "2.0.192.in-addr.arpa.", "NS", allowed="additional-other-zone"),
    # -- ref.test: apex, data types, additional section ------------------------------
    C("apex-soa", "ref.test.", "SOA"),
    C("apex-ns", "ref.test.", "NS", allowed="additional-other-zone"),
    C("apex-mx-additional-three-kinds", "ref.test.", "MX", allowed="additional-other-zone"),
    C("apex-txt", "ref.test.", "TXT"),
    C("apex-a-nodata-soa-ttl-minimum", "ref.test.", "A"),
    C("apex-any", "ref.test.", "ANY", allowed="minimal-any"),
    C("ns1-a", "ns1.ref.test.", "A"),
    C("ns1-aaaa", "ns1.ref.test.", "AAAA"),
    C("host-a", "host.ref.test.", "A"),
    C("host-txt", "host.ref.test.", "TXT"),
    C("host-mx-nodata", "host.ref.test.", "MX"),
    C("host-any", "host.ref.test.", "ANY"),
    C("null-mx", "nomail.ref.test.", "MX"),
    C("txt-several-strings", "txt.ref.test.", "TXT"),
    C("caa", "caa.ref.test.", "CAA"),
    C("srv-additional", "_sip._udp.ref.test.", "SRV", allowed="additional-other-zone"),
    C("srv-none", "_none._tcp.ref.test.", "SRV"),
    C("srv-target-from-wildcard", "_wild._tcp.ref.test.", "SRV"),
    C("mx-target-below-cut-no-glue", "mxglue.ref.test.", "MX"),
    C("srv-ent-parent", "_udp.ref.test.", "SRV"),
    C("ptr", "ptr.ref.test.", "PTR"),
    C("ttls-a", "ttls.ref.test.", "A"),
    C("ttls-aaaa", "ttls.ref.test.", "AAAA"),
    C("ttls-any", "ttls.ref.test.", "ANY"),
    C("nxdomain", "nothere.ref.test.", "A"),
    C("nxdomain-deep", "a.b.c.nothere.ref.test.", "MX"),
    C("qtype-hinfo-nodata", "host.ref.test.", "HINFO"),
    C("qtype-65280-nodata", "host.ref.test.", "TYPE65280"),
    C("qtype-65280-nxdomain", "nothere.ref.test.", "TYPE65280"),
    C("qtype-null", "host.ref.test.", "NULL"),
    C("qtype-dnskey-apex", "ref.test.", "DNSKEY"),
    C("qtype-ds-apex-no-parent", "ref.test.", "DS"),
    C("qtype-rrsig", "host.ref.test.", "RRSIG"),
    C("qtype-nsec", "host.ref.test.", "NSEC"),
    C("qtype-svcb", "host.ref.test.", "SVCB"),
    C("qtype-https", "host.ref.test.", "HTTPS"),
    C("qtype-axfr", "ref.test.", "AXFR", allowed="no-transfers"),
    C("qtype-ixfr", "ref.test.", "IXFR"),
    C("qtype-maila", "host.ref.test.", "MAILA"),
    # -- CNAME ---------------------------------------------------------------------
    C("cname-single", "alias.ref.test.", "A"),
    C("cname-single-txt", "alias.ref.test.", "TXT"),
    C("cname-nodata-at-end", "alias.ref.test.", "MX"),
    C("cname-qtype-cname", "alias.ref.test.", "CNAME"),
    C("cname-any", "alias.ref.test.", "ANY"),
    C("cname-chain", "chain1.ref.test.", "A"),
    C("cname-chain-middle", "chain2.ref.test.", "TXT"),
    C("cname-chain-qtype-cname", "chain1.ref.test.", "CNAME"),
    C("cname-long-chain", "long1.ref.test.", "A"),
    C("cname-cross-zone-chain", "cross.ref.test.", "A"),
    C("cname-cross-zone-chain-aaaa", "cross.ref.test.", "AAAA"),
    C("cname-cross-zone-chain-mx", "cross.ref.test.", "MX"),
    C("cname-to-nxdomain", "dangling.ref.test.", "A"),
    C("cname-to-nxdomain-qtype-cname", "dangling.ref.test.", "CNAME"),
    C("cname-out-of-zones", "outside.ref.test.", "A"),
    C("cname-loop", "loop1.ref.test.", "A"),
    C("cname-loop-qtype-cname", "loop2.ref.test.", "CNAME"),
    C("cname-self-loop", "self.ref.test.", "A"),
    C("cname-chain-past-limit", "deep1.ref.test.", "A", allowed="cname-chain-limit"),
    C("cname-chain-past-limit-edns", "deep1.ref.test.", "A", edns=4096, allowed="cname-chain-limit"),
    C("cname-chain-limit-from-middle", "deep5.ref.test.", "A"),
    C("cname-into-delegation", "to-deleg.ref.test.", "A"),
    C("cname-into-nested-zone", "to-child.ref.test.", "A"),
    C("cname-into-nested-zone-nodata", "to-child.ref.test.", "MX"),
    C("cname-to-empty-non-terminal", "to-ent.ref.test.", "A"),
    C("cname-to-wildcard", "to-wild.ref.test.", "A"),
    C("cname-to-wildcard-mx", "to-wild.ref.test.", "MX"),
    C("cname-from-nested-zone-to-parent", "alias.child.ref.test.", "A"),
    # -- empty non-terminals (RFC 8020) ----------------------------------------------
    C("ent-nodata", "b.ent.ref.test.", "A"),
    C("ent-top-nodata", "ent.ref.test.", "TXT"),
    C("ent-leaf", "a.b.ent.ref.test.", "A"),
    C("ent-sibling-nxdomain", "c.b.ent.ref.test.", "A"),
    C("ent-below-nxdomain", "x.ent.ref.test.", "A"),
    # -- wildcards (RFC 4592) ----------------------------------------------------------
    C("wildcard-a", "foo.wild.ref.test.", "A"),
    C("wildcard-mx-additional", "foo.wild.ref.test.", "MX"),
    C("wildcard-txt", "foo.wild.ref.test.", "TXT"),
    C("wildcard-nodata", "foo.wild.ref.test.", "AAAA"),
    C("wildcard-any", "foo.wild.ref.test.", "ANY"),
    C("wildcard-several-labels-below", "a.b.c.wild.ref.test.", "A"),
    C("wildcard-literal-star", "*.wild.ref.test.", "A"),
    C("wildcard-parent-ent", "wild.ref.test.", "A"),
    C("wildcard-existing-name-blocks", "exists.wild.ref.test.", "A"),
    C("wildcard-existing-name-data", "exists.wild.ref.test.", "AAAA"),
    C("wildcard-below-existing-name", "sub.exists.wild.ref.test.", "A"),
    C("wildcard-ent-blocks", "ent.wild.ref.test.", "A"),
    C("wildcard-below-ent-nxdomain", "y.ent.wild.ref.test.", "A"),
    C("wildcard-ent-leaf", "x.ent.wild.ref.test.", "A"),
    C("wildcard-cname", "foo.cn.ref.test.", "A"),
    C("wildcard-cname-deep", "a.b.cn.ref.test.", "TXT"),
    C("wildcard-cname-qtype-cname", "foo.cn.ref.test.", "CNAME"),
    C("wildcard-cname-to-other-zone-nxdomain", "foo.cnout.ref.test.", "A"),
    C("wildcard-mx-other-zone", "foo.mxw.ref.test.", "MX", allowed="additional-other-zone"),
    C("wildcard-mx-deep", "a.b.mxw.ref.test.", "MX", allowed="additional-other-zone"),
    C("wildcard-mx-nodata", "foo.mxw.ref.test.", "A"),
    # -- delegations ---------------------------------------------------------------
    C("referral-at-cut", "deleg.ref.test.", "A"),
    C("referral-ns-at-cut", "deleg.ref.test.", "NS"),
    C("referral-soa-at-cut", "deleg.ref.test.", "SOA"),
    C("referral-below-cut", "www.deleg.ref.test.", "A"),
    C("referral-deep-below-cut", "a.b.c.deleg.ref.test.", "MX"),
    C("referral-glue-owner", "ns.deleg.ref.test.", "A"),
    C("referral-glue-owner-aaaa", "ns.deleg.ref.test.", "AAAA"),
    C("referral-ds-at-cut", "deleg.ref.test.", "DS"),
    C("referral-ds-below-cut", "www.deleg.ref.test.", "DS"),
    C("referral-any-at-cut", "deleg.ref.test.", "ANY"),
    C("referral-out-of-bailiwick-hosts", "oob.ref.test.", "NS"),
    C("referral-out-of-bailiwick-below", "x.oob.ref.test.", "A"),
    C("referral-out-of-bailiwick-ds", "oob.ref.test.", "DS"),
    C("referral-glue-inside-other-delegation", "www.sib.ref.test.", "A"),
    C("referral-glue-inside-other-delegation-ns", "sib.ref.test.", "NS"),
    C("referral-big-no-edns", "www.big.ref.test.", "A", allowed="glue-tc"),
    C("referral-big-edns-1232", "www.big.ref.test.", "A", edns=1232),
    C("referral-big-edns-512", "www.big.ref.test.", "A", edns=512, allowed="glue-tc"),
    C("referral-big-glue-owner", "a.ns.big.ref.test.", "AAAA", allowed="glue-tc"),
    # -- nested zone child.ref.test (closest enclosing zone wins) ---------------------
    C("nested-apex-soa", "child.ref.test.", "SOA"),
    C("nested-apex-ns", "child.ref.test.", "NS"),
    C("nested-apex-mx-parent-additional", "child.ref.test.", "MX", allowed="additional-other-zone"),
    C("nested-apex-nodata-ttl-soa-ttl", "child.ref.test.", "A"),
    C("nested-ds-from-parent", "child.ref.test.", "DS"),
    C("nested-www", "www.child.ref.test.", "A"),
    C("nested-ns-host", "ns.child.ref.test.", "A"),
    C("nested-nxdomain-ttl", "nothere.child.ref.test.", "A"),
    # -- REFUSED outside our zones ----------------------------------------------------
    C("refused-other-domain", "www.elsewhere.invalid.", "A"),
    C("refused-parent-of-zone", "test.", "SOA"),
    C("refused-root", ".", "NS"),
    C("refused-suffix-lookalike", "xref.test.", "A"),
    C("refused-edns", "www.elsewhere.invalid.", "A", edns=1232),
    # -- size and truncation ---------------------------------------------------------
    C("large-udp-no-edns-tc", "large.ref.test.", "A"),
    C("large-edns-1232-fits", "large.ref.test.", "A", edns=1232),
    C("large-edns-4096-fits", "large.ref.test.", "A", edns=4096),
    C("large-edns-512-tc", "large.ref.test.", "A", edns=512),
    C("large-edns-below-512", "large.ref.test.", "A", edns=100),
    C("additional-overflow-no-edns", "manymx.ref.test.", "MX", allowed="room-left-by-authority"),
    C("additional-overflow-edns-512", "manymx.ref.test.", "MX", edns=512, allowed="room-left-by-authority"),
    C("additional-fits-edns-1232", "manymx.ref.test.", "MX", edns=1232),
    # -- EDNS (RFC 6891) -------------------------------------------------------------
    C("edns-payload-512", "host.ref.test.", "A", edns=512),
    C("edns-payload-1232", "host.ref.test.", "A", edns=1232),
    C("edns-payload-4096", "host.ref.test.", "A", edns=4096),
    C("edns-payload-65535", "host.ref.test.", "A", edns=65535),
    C("edns-payload-0", "host.ref.test.", "A", edns=0),
    C("edns-do-bit", "host.ref.test.", "A", edns=1232, do=True),
    C("edns-do-nxdomain", "nothere.ref.test.", "A", edns=1232, do=True),
    C("edns-do-nodata", "host.ref.test.", "AAAA", edns=1232, do=True),
    C("edns-do-referral", "www.deleg.ref.test.", "A", edns=1232, do=True),
    C("edns-unknown-option", "host.ref.test.", "A", edns=1232,
      options=(dns.edns.GenericOption(65001, b"\x01\x02"),)),
    C("edns-version-1-badvers", "host.ref.test.", "A", edns=1232, version=1),
    C("edns-version-1-refused-name", "www.elsewhere.invalid.", "A", edns=1232, version=1),
    C("edns-version-1-do", "host.ref.test.", "A", edns=1232, version=1, do=True, allowed="badvers-do-echoed"),
    # -- header flags --------------------------------------------------------------
    C("flag-rd-echoed", "host.ref.test.", "A", rd=True),
    C("flag-cd-echoed", "host.ref.test.", "A", cd=True, allowed="cd-echoed"),
    C("flag-rd-cd-nxdomain", "nothere.ref.test.", "A", rd=True, cd=True, allowed="cd-echoed"),
    C("flag-ad-in-query", "host.ref.test.", "A", ad=True),
    C("flag-rd-refused", "www.elsewhere.invalid.", "A", rd=True),
    # -- 0x20: the question is echoed as asked --------------------------------------
    C("case-apex", "ReF.tEsT.", "SOA"),
    C("case-host", "HoSt.rEf.TeSt.", "A"),
    C("case-cname", "AlIaS.rEf.TeSt.", "A"),
    C("case-wildcard", "FoO.wIlD.rEf.TeSt.", "MX"),
    C("case-nxdomain", "NoThErE.ReF.tEsT.", "A"),
    C("case-referral", "WwW.dElEg.ReF.tEsT.", "A"),
    C("case-shipped-cname", "WWW.EXAMPLE.TEST.", "A"),
    C("case-nested", "WwW.cHiLd.ReF.tEsT.", "A"),
    C("case-refused", "WwW.eLsEwHeRe.InVaLiD.", "A"),
    # -- CHAOS class -----------------------------------------------------------------
    C("chaos-version-bind", "version.bind.", "TXT", qclass="CH", allowed="version-text"),
    C("chaos-version-server", "version.server.", "TXT", qclass="CH", allowed="version-text"),
    C("chaos-id-server", "id.server.", "TXT", qclass="CH"),
    C("chaos-hostname-bind", "hostname.bind.", "TXT", qclass="CH"),
    C("chaos-version-bind-a", "version.bind.", "A", qclass="CH"),
    C("chaos-other-name", "authors.bind.", "TXT", qclass="CH"),
    C("chaos-zone-name", "ref.test.", "SOA", qclass="CH"),
    # -- other classes and opcodes ---------------------------------------------------
    C("class-hs", "ref.test.", "SOA", qclass="HS", allowed="question-echoed"),
    C("class-unknown", "ref.test.", "SOA", qclass="CLASS42", allowed="question-echoed"),
    C("class-none", "ref.test.", "SOA", qclass="NONE", allowed="question-echoed"),
    C("class-any", "ref.test.", "SOA", qclass="ANY", allowed="class-any-refused"),
    C("opcode-iquery", "ref.test.", "SOA", opcode=1, allowed="question-echoed"),
    C("opcode-status", "ref.test.", "SOA", opcode=2, allowed="question-echoed"),
    C("opcode-3", "ref.test.", "SOA", opcode=3, allowed="question-echoed"),
    C("opcode-notify", "ref.test.", "SOA", opcode=4, allowed="notify-notimp"),
    C("opcode-update", "ref.test.", "SOA", opcode=5, allowed="question-echoed"),
    C("opcode-15", "ref.test.", "SOA", opcode=15, allowed="question-echoed"),
    C("opcode-update-real", build=_update),
    C("qdcount-0", build=_questions(0), allowed="qdcount-formerr"),
    C("qdcount-2", build=_questions(2)),
    C("qdcount-2-edns", build=_questions(2, edns=True), allowed="formerr-opt"),
    C("label-over-63-octets", raw=_packet(b"\x40" + b"a" * 64 + b"\x03ref\x04test\x00")),
    C("label-over-63-octets-edns", raw=_packet(b"\x40" + b"a" * 64 + b"\x03ref\x04test\x00", edns=True),
      allowed="formerr-opt"),
    C("name-over-255-octets", raw=_packet(b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63
                                          + b"\x3f" + b"d" * 63 + b"\x03ref\x04test\x00")),
    C("label-over-63-octets-opcode-status", raw=_packet(b"\x40" + b"a" * 64 + b"\x03ref\x04test\x00", flags=0x1000)),
    C("qr-set-dropped", build=_raw_flags(0x8000), timeout=0.5),
    C("flag-z-set", build=_raw_flags(0x0040)),
    C("flag-tc-set-in-query", build=_raw_flags(0x0200)),
    # -- Extended DNS Errors on REFUSED (RFC 8914) -------------------------------------
    C("ede-refused-not-authoritative-do", "www.elsewhere.invalid.", "MX", edns=4096, do=True),
    C("ede-class-unknown", "ref.test.", "SOA", qclass="CLASS42", edns=1232, allowed="question-echoed"),
    C("ede-class-hs", "host.ref.test.", "A", qclass="HS", edns=512, allowed="question-echoed"),
    C("ede-chaos-other-name", "authors.bind.", "TXT", qclass="CH", edns=1232),
    C("ede-chaos-version-bind-a", "version.bind.", "A", qclass="CH", edns=1232),
    C("ede-opcode-update", "ref.test.", "SOA", opcode=5, edns=1232, allowed="question-echoed"),
    C("ede-opcode-status-do", "ref.test.", "SOA", opcode=2, edns=1232, do=True, allowed="question-echoed"),
    C("ede-axfr", "ref.test.", "AXFR", edns=1232, allowed="no-transfers"),
    C("ede-ixfr", "ref.test.", "IXFR", edns=1232),
    C("chaos-version-bind-any", "version.bind.", "ANY", qclass="CH", allowed="version-text"),
    C("chaos-id-server-edns", "id.server.", "TXT", qclass="CH", edns=1232, do=True),
    C("chaos-case", "VeRsIoN.bInD.", "TXT", qclass="CH", allowed="version-text"),
]


# ---------------------------------------------------------------- allowed differences


@dataclass(frozen=True)
class Allowed:
    """A difference we keep: the fields that may differ, the rule that makes ours right,
    what ours must be instead (``check``), and the transports it shows on."""

    reason: str
    fields: tuple[str, ...]
    check: Callable[[Case, View | None, View | None], None]
    transports: tuple[str, ...] = ("udp", "tcp")


def _check_minimal_any(case: Case, nsd: View | None, ours: View | None) -> None:
    assert nsd is not None and ours is not None
    assert len(nsd.answer) == len(ours.answer) == 1, "both answer ANY with one RRset (RFC 8482 §4.1)"
    (nsd_rrset,), (our_rrset,) = nsd.answer, ours.answer
    assert our_rrset[0] == nsd_rrset[0]
    # ours is the lowest type number at the name (A or NS at these apexes); NSD picks SOA
    assert nsd_rrset[3] == "SOA" and our_rrset[3] in ("A", "NS")
    names = {host.lower() for host in our_rrset[4]}
    assert all(key[0].lower() in names and key[3] in ("A", "AAAA") for key in ours.additional)


def _check_additional_other_zone(case: Case, nsd: View | None, ours: View | None) -> None:
    assert nsd is not None and ours is not None
    assert nsd.additional <= ours.additional, "ours holds everything NSD adds"
    home = zone_of(case.qname, ORIGINS)
    extra = ours.additional - nsd.additional
    assert extra, "the case exists to show an address from another served zone"
    for key in extra:
        assert key[3] in ("A", "AAAA") and zone_of(key[0], ORIGINS) not in (None, home), key


def _check_rcode(rcode: str) -> Callable[[Case, View | None, View | None], None]:
    def check(case: Case, nsd: View | None, ours: View | None) -> None:
        assert ours is not None and ours.rcode == rcode

    return check


def _check_refused_prohibited(case: Case, nsd: View | None, ours: View | None) -> None:
    assert ours is not None and ours.rcode == "REFUSED"
    if case.edns is not None:
        assert ours.edns is not None and ours.edns[3] == ((dns.edns.OptionType.EDE, b"\x00\x12"),)


def _check_formerr_opt(case: Case, nsd: View | None, ours: View | None) -> None:
    assert nsd is not None and ours is not None and ours.rcode == nsd.rcode == "FORMERR"
    assert nsd.edns is None and ours.edns == (0, 1232, False, ())


def _check_cname_chain_cut(case: Case, nsd: View | None, ours: View | None) -> None:
    assert nsd is not None and ours is not None
    assert ours.answer < nsd.answer and {key[3] for key in ours.answer} == {"CNAME"}
    assert len(ours.answer) == 13, "MAX_CNAME_CHAIN + 1 names visited"


def _check_glue_tc(case: Case, nsd: View | None, ours: View | None) -> None:
    assert nsd is not None and ours is not None
    assert "TC" not in nsd.flags and ours.flags == nsd.flags | {"TC"}
    assert ours.authority == nsd.authority
    glue = {key[0] for key in nsd.additional}
    assert all(key[0] in glue for key in ours.additional)


def _check_more_additional(case: Case, nsd: View | None, ours: View | None) -> None:
    assert nsd is not None and ours is not None and "TC" not in ours.flags
    assert nsd.additional < ours.additional
    assert all(key[3] in ("A", "AAAA") for key in ours.additional - nsd.additional)
    targets = {rdata.split()[-1] for key in ours.answer for rdata in key[4]}
    assert {key[0] for key in ours.additional if key[3] == "A"} == targets, "an A for every target first"


def _check_version_text(case: Case, nsd: View | None, ours: View | None) -> None:
    assert nsd is not None and ours is not None
    ((*_, nsd_text),), ((*_, our_text),) = nsd.answer, ours.answer
    assert next(iter(nsd_text)).startswith('"NSD ') and next(iter(our_text)).startswith('"authdns ')


def _check_cd_echoed(case: Case, nsd: View | None, ours: View | None) -> None:
    assert nsd is not None and ours is not None
    assert "CD" not in nsd.flags and ours.flags == nsd.flags | {"CD"}


def _check_do_echoed(case: Case, nsd: View | None, ours: View | None) -> None:
    assert nsd is not None and ours is not None and nsd.edns is not None and ours.edns is not None
    assert not nsd.edns[2] and ours.edns == (nsd.edns[0], nsd.edns[1], True, nsd.edns[3])


def _check_question_echoed(case: Case, nsd: View | None, ours: View | None) -> None:
    assert nsd is not None and ours is not None
    assert nsd.question == b"" and ours.question == question_bytes(case.wire())
    assert ours.counts[:3] == (1, 0, 0)
    if case.edns is not None:  # RFC 6891 §6.1.1: an OPT in the query means one in the reply
        assert ours.edns is not None and ours.edns[:3] == (0, 1232, case.do)


def _check_formerr(case: Case, nsd: View | None, ours: View | None) -> None:
    assert nsd is None, "NSD closes the connection without a reply"
    assert ours is not None and ours.rcode == "FORMERR"


QUESTION_ECHOED = (
    "RFC 1035 §7.3: a resolver matches a reply to its query by the question, so authdns "
    "echoes it on every rejection it can parse; NSD sends none on NOTIMP and on a "
    "REFUSED class."
)

ALLOWED: dict[str, Allowed] = {
    "minimal-any": Allowed(
        "RFC 8482 §4.1: both answer ANY with one RRset, and which one is the responder's "
        "choice. authdns takes the lowest type number present (NS at an apex); NSD takes "
        "the first RRset it stored (SOA at an apex).",
        ("answer", "additional", "counts"), _check_minimal_any),
    "additional-other-zone": Allowed(
        "RFC 1034 §4.3.2 step 6 (\"using local data only, add RRs which may be useful\"): "
        "authdns also adds the addresses of MX/NS/SRV targets that lie in another zone it "
        "serves authoritatively (the shipped sub.example.test MX -> mx.example.net); NSD "
        "takes additional data from the answer's own zone only.",
        ("additional", "counts"), _check_additional_other_zone),
    "no-transfers": Allowed(
        "These zones allow no transfers: authdns REFUSES AXFR/IXFR to everyone not on a "
        "transfer allow list, on every transport, with EDE 18 Prohibited (RFC 5936 §5: "
        "transfers are a matter of policy), as NSD does over TCP and for IXFR; NSD says "
        "NOTIMP, without EDE, to AXFR over UDP (RFC 5936 §4.2 leaves AXFR over UDP out).",
        ("rcode", "edns"), _check_refused_prohibited, transports=("udp",)),
    "cname-chain-limit": Allowed(
        "authdns follows at most MAX_CNAME_CHAIN (12) CNAMEs and leaves the rest to the "
        "resolver, which restarts at the last target (RFC 1034 §4.3.2 step 3a; RFC 1034 "
        "§3.6.2 discourages chains); NSD 4.6 follows chains of any length.",
        ("answer", "counts"), _check_cname_chain_cut),
    "glue-tc": Allowed(
        "RFC 9471 §3.1: a referral MUST include all in-domain glue or set TC=1. authdns "
        "truncates; NSD 4.6 (older than RFC 9471) sends as much glue as fits without TC.",
        ("flags", "additional", "counts"), _check_glue_tc, transports=("udp",)),
    "room-left-by-authority": Allowed(
        "A consequence of ALLOWED_EVERYWHERE: NSD spends part of the 512 octets on the apex "
        "NS RRset in authority, so fewer optional additional records fit than in ours. "
        "Both put every target's A before any AAAA and leave out, without TC, what does "
        "not fit (RFC 2181 §9: TC only when required data is missing).",
        ("additional", "counts"), _check_more_additional, transports=("udp",)),
    "version-text": Allowed(
        "CH TXT version.bind/version.server name the software: \"NSD 4.x.y\" there, "
        "\"authdns x.y.z\" here.",
        ("answer",), _check_version_text),
    "cd-echoed": Allowed(
        "RFC 4035 §3.1.6 and the issue: the CD bit is copied from the query into the "
        "response (Knot does too); NSD 4.6 clears it.",
        ("flags",), _check_cd_echoed),
    "badvers-do-echoed": Allowed(
        "RFC 3225 §3: the DO bit of the query is copied into the response, BADVERS "
        "included; NSD clears it in BADVERS.",
        ("edns",), _check_do_echoed),
    "question-echoed": Allowed(
        QUESTION_ECHOED + " With EDNS, NSD also leaves out the OPT record on NOTIMP, which "
        "RFC 6891 §6.1.1 requires (\"MUST include an OPT record\").",
        ("question", "counts", "edns"), _check_question_echoed),
    "notify-notimp": Allowed(
        "The issue: opcodes other than QUERY get NOTIMP; authdns is no secondary, so it has "
        "no use for a NOTIFY (RFC 1996). NSD REFUSES a NOTIFY from a source not in "
        "allow-notify. " + QUESTION_ECHOED,
        ("rcode", "question", "counts"), _check_rcode("NOTIMP")),
    "class-any-refused": Allowed(
        "The issue: only IN and CH are served; other classes are REFUSED (EDE 21). NSD "
        "answers QCLASS=* (RFC 1035 §3.2.5) from its IN data with AA clear and negative "
        "answers without SOA (RFC 1034 §3.7.1: with QCLASS=* no answer is authoritative). "
        "Worth revisiting if a client ever needs it.",
        ("rcode", "answer", "authority", "additional", "counts", "edns"), _check_rcode("REFUSED")),
    "formerr-opt": Allowed(
        "RFC 6891 §6.1.1: \"If an OPT record is present in a received request, compliant "
        "responders MUST include an OPT record in their respective responses\"; the OPT "
        "itself was fine. NSD leaves it out of a FORMERR for QDCOUNT=2 or a bad qname.",
        ("counts", "edns"), _check_formerr_opt),
    "qdcount-formerr": Allowed(
        "RFC 9619 and the issue: QDCOUNT other than 1 gets FORMERR on every transport; "
        "NSD closes a TCP connection whose query has no question, without a reply.",
        ("reply",), _check_formerr, transports=("tcp",)),
}

def test_enough_cases() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "case ids are unique"
    assert len(CASES) >= 150
    assert all(case.allowed in ALLOWED for case in CASES if case.allowed is not None)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_same_answer_as_nsd(case: Case, transport: str, nsd: NsdProcess, authdns: ServerProcess) -> None:
    wire = case.wire()
    tcp = transport == "tcp"
    theirs = view(exchange(nsd.port, wire, tcp=tcp, timeout=case.timeout))
    if theirs is not None:
        theirs = without_apex_ns(theirs, ORIGINS)
    ours = view(exchange(authdns.port, wire, tcp=tcp, timeout=case.timeout))
    report = f"\nNSD:\n{theirs.show() if theirs else 'no reply'}\nauthdns:\n{ours.show() if ours else 'no reply'}"
    differing = differences(theirs, ours)
    allowed = ALLOWED.get(case.allowed or "")
    if allowed is not None and transport in allowed.transports:
        assert differing, f"allowed difference {case.allowed!r} no longer shows: drop it{report}"
        allowed.check(case, theirs, ours)
        differing = [name for name in differing if name not in allowed.fields]
    assert not differing, f"differs in {differing}{report}"
