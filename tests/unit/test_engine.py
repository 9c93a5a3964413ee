"""The answer engine in-process: ``answer.resolve(snapshot, qname, qtype)`` → ``Answer``,
no sockets, one case per rule, each named after the RFC section it comes from. The
over-the-wire table (tests/integration/test_answers.py) asks the same kind of questions
of a running server; this one reads the engine's decision before rendering: the rcode,
AA, the kind of answer (what rate limiting and the query log count by) and each
section's (owner, type) pairs, compared as sets (order is the balancer's business).

Zones: the shipped example zones, and ``engine.test`` written here for what they do not
have (DNAME, a CNAME loop, a long CNAME chain, a wildcard CNAME, a DNAME substitution
that overflows 255 octets).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pytest
from dnslib import QTYPE

from authdns.base import names
from authdns.answering.answer import Answer, AnswerKind, MAX_CNAME_CHAIN, rcode_key, resolve
from authdns.zones.loader import load_snapshot
from authdns.base.protocol import RCODE_FORMERR, RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_YXDOMAIN
from authdns.zones.snapshot import Snapshot
from conftest import SHIPPED_ZONES
from support import write_zone

LONG_LABEL = "a" * 63
ENGINE_ZONE = f"""\
records:
  "@": {{SOA: {{mname: ns, rname: hostmaster}}, NS: ns}}
  ns: {{A: 192.0.2.1}}
  old: {{DNAME: new}}
  new: {{A: 192.0.2.2}}
  host.new: {{A: 192.0.2.3}}
  loop1: {{CNAME: loop2}}
  loop2: {{CNAME: loop1}}
{"".join(f"  c{n}: {{CNAME: c{n + 1}}}{chr(10)}" for n in range(MAX_CNAME_CHAIN + 3))}\
  c{MAX_CNAME_CHAIN + 3}: {{A: 192.0.2.4}}
  "*.alias": {{CNAME: new}}
  long: {{DNAME: {".".join([LONG_LABEL] * 3)}}}
"""


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    zone_dir = tmp_path_factory.mktemp("engine") / "zones"
    shutil.copytree(SHIPPED_ZONES, zone_dir)
    write_zone(zone_dir, "engine.test", ENGINE_ZONE)
    result = load_snapshot(zone_dir, save=False)
    assert not result.failed, result.problems
    return result.snapshot


@dataclass(frozen=True)
class Case:
    rule: str  # the RFC section the case shows, as the test id
    qname: str
    qtype: str
    rcode: int
    authoritative: bool
    kind: AnswerKind
    answer: frozenset[tuple[str, str]] = frozenset()
    authority: frozenset[tuple[str, str]] = frozenset()
    additional: frozenset[tuple[str, str]] | None = None  # None: not compared


def rrs(*pairs: str) -> frozenset[tuple[str, str]]:
    """"owner TYPE" strings → (owner, TYPE) pairs."""
    return frozenset(tuple(pair.rsplit(" ", 1)) for pair in pairs)  # type: ignore[misc]


SOA_TEST = rrs("example.test. SOA")
OK, NX, REFUSED = RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED
K = AnswerKind

CASES = [
    Case("RFC1034 4.3.2 step 3a: exact match", "mail.example.test", "A", OK, True, K.ANSWER,
         rrs("mail.example.test. A")),
    Case("RFC1035 3.3.9: MX exchanges' addresses in additional", "example.test", "MX", OK, True, K.ANSWER,
         rrs("example.test. MX"), additional=rrs("mail.example.test. A", "mail.example.test. AAAA",
                                                 "mail2.example.test. A")),
    Case("RFC2782: SRV target addresses in additional", "_imaps._tcp.example.test", "SRV", OK, True, K.ANSWER,
         rrs("_imaps._tcp.example.test. SRV"), additional=rrs("mail.example.test. A", "mail.example.test. AAAA")),
    Case("RFC7505: null MX has nothing in additional", "example.net", "MX", OK, True, K.ANSWER,
         rrs("example.net. MX"), additional=frozenset()),
    Case("RFC2308 2.2: NODATA carries the SOA", "mail.example.test", "TXT", OK, True, K.NODATA,
         authority=SOA_TEST),
    Case("RFC2308 2.1: NXDOMAIN carries the SOA", "nope.example.test", "A", NX, True, K.NXDOMAIN,
         authority=SOA_TEST),
    Case("RFC8020: an empty non-terminal is NODATA", "_tcp.example.test", "A", OK, True, K.NODATA,
         authority=SOA_TEST),
    Case("RFC8020: below a leaf is NXDOMAIN", "x.mail.example.test", "A", NX, True, K.NXDOMAIN,
         authority=SOA_TEST),
    Case("RFC1034 4.3.2 step 2: not ours is REFUSED", "example.org", "A", REFUSED, False, K.REFUSED),
    Case("RFC1034 4.3.2 step 2: a parent of our zone is not ours", "test", "SOA", REFUSED, False, K.REFUSED),
    Case("RFC1034 4.3.2 step 3a: CNAME followed in the zone", "www.example.test", "A", OK, True, K.ANSWER,
         rrs("www.example.test. CNAME", "example.test. A")),
    Case("RFC1034 4.3.2 step 3a: CNAME followed into another zone", "webmail.example.net", "A", OK, True,
         K.ANSWER, rrs("webmail.example.net. CNAME", "www.example.test. CNAME", "example.test. A")),
    Case("RFC1034 3.6.2: a CNAME query gets the CNAME alone", "www.example.test", "CNAME", OK, True, K.ANSWER,
         rrs("www.example.test. CNAME")),
    Case("RFC1034 3.6.2: a CNAME loop ends where a name repeats", "loop1.engine.test", "A", OK, True, K.ANSWER,
         rrs("loop1.engine.test. CNAME", "loop2.engine.test. CNAME")),
    Case("RFC1034 4.3.2 step 3a: a long chain is cut, the resolver goes on", "c0.engine.test", "A", OK, True,
         K.ANSWER, frozenset((f"c{n}.engine.test.", "CNAME") for n in range(MAX_CNAME_CHAIN + 1))),
    Case("RFC4592 3.3.1: a wildcard match takes the query name", "anything.users.example.test", "A", OK, True,
         K.ANSWER, rrs("anything.users.example.test. A")),
    Case("RFC4592 3.3.1: several labels below the wildcard match", "a.b.users.example.test", "A", OK, True,
         K.ANSWER, rrs("a.b.users.example.test. A")),
    Case("RFC4592 2.2.1: wildcard NODATA", "anything.users.example.test", "TXT", OK, True, K.NODATA,
         authority=SOA_TEST),
    Case("RFC4592 2.2.2: a wildcard CNAME is synthesized and followed", "x.alias.engine.test", "A", OK, True,
         K.ANSWER, rrs("x.alias.engine.test. CNAME", "new.engine.test. A")),
    Case("RFC1034 4.3.2 step 3b: a referral below a cut", "host.lab.example.test", "A", OK, False, K.REFERRAL,
         authority=rrs("lab.example.test. NS"), additional=rrs("ns.lab.example.test. A", "ns2.example.test. A")),
    Case("RFC1034 4.3.2 step 3b: NS at the cut is a referral too", "lab.example.test", "NS", OK, False,
         K.REFERRAL, authority=rrs("lab.example.test. NS")),
    Case("RFC4035 3.1.4.1: DS at the cut is the parent's", "lab.example.test", "DS", OK, True, K.NODATA,
         authority=SOA_TEST),
    Case("RFC8482 4.1: ANY gets one RRset", "mail.example.test", "ANY", OK, True, K.ANSWER,
         additional=None),
    Case("RFC6672 2.2: DNAME and the synthesized CNAME", "host.old.engine.test", "A", OK, True, K.ANSWER,
         rrs("old.engine.test. DNAME", "host.old.engine.test. CNAME", "host.new.engine.test. A")),
    Case("RFC6672 2.2: the DNAME itself at its owner", "old.engine.test", "DNAME", OK, True, K.ANSWER,
         rrs("old.engine.test. DNAME")),
    Case("RFC6672 2.2: a substitution over 255 octets is YXDOMAIN", f"{LONG_LABEL}.{LONG_LABEL}.long.engine.test",
         "A", RCODE_YXDOMAIN, True, K.ERROR, rrs("long.engine.test. DNAME")),
]


def name(text: str) -> bytes:
    return names.from_text(text.rstrip(".") + ".")


def sections(placed) -> frozenset[tuple[str, str]]:
    return frozenset((names.to_text(p.owner), QTYPE.get(p.rrset.rtype)) for p in placed)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.rule)
def test_engine(snapshot: Snapshot, case: Case) -> None:
    answer = resolve(snapshot, name(case.qname), getattr(QTYPE, case.qtype))
    assert (answer.rcode, answer.authoritative, answer.kind) == (case.rcode, case.authoritative, case.kind)
    if case.rule.startswith("RFC8482"):
        assert len({(p.owner, p.rrset.rtype) for p in answer.answer}) == 1  # which one is ours to pick
    else:
        assert sections(answer.answer) == case.answer
    assert sections(answer.authority) == case.authority
    if case.additional is not None:
        assert sections(answer.additional) == case.additional


def test_the_engine_is_pure(snapshot: Snapshot) -> None:
    """The same snapshot and question always give the same Answer (answering/answer.py's contract)."""
    for case in CASES:
        qname, qtype = name(case.qname), getattr(QTYPE, case.qtype)
        assert resolve(snapshot, qname, qtype) == resolve(snapshot, qname, qtype)


# ------------------------------------------------- Answer.key: RRL's "same response"

def key(snapshot: Snapshot, qname: str, qtype: str) -> bytes:
    return resolve(snapshot, name(qname), getattr(QTYPE, qtype)).key(name(qname), getattr(QTYPE, qtype))


@pytest.mark.parametrize(("first", "second", "same"), [
    (("a.lab.example.test", "A"), ("b.lab.example.test", "MX"), True),  # one delegation point
    (("a.users.example.test", "A"), ("b.c.users.example.test", "A"), True),  # one wildcard
    (("a.users.example.test", "A"), ("a.users.example.test", "MX"), False),  # ... per type
    (("nope1.example.test", "A"), ("x.nope2.example.test", "MX"), True),  # NXDOMAIN: by zone (its SOA)
    (("nope1.example.test", "A"), ("nope2.example.net", "A"), False),  # ... one bucket per zone
    (("mail.example.test", "TXT"), ("mail.example.test", "SRV"), True),  # NODATA: by zone too
    (("mail.example.test", "TXT"), ("mail2.example.test", "TXT"), True),
    (("mail.example.test", "TXT"), ("example.net", "SRV"), False),
    (("mail.example.test", "TXT"), ("nope.example.test", "TXT"), False),  # ... apart from NXDOMAIN
    (("mail.example.test", "A"), ("mail.example.test", "AAAA"), False),  # answers: name and type
    (("a.users.example.test", "TXT"), ("b.c.users.example.test", "TXT"), True),  # wildcard NODATA: the zone
    (("a.users.example.test", "TXT"), ("a.users.example.test", "A"), False),  # ... apart from its answers
    (("example.org", "A"), ("example.com", "MX"), True),  # REFUSED: per prefix
    (("nope.example.test", "A"), ("example.org", "A"), False),  # ... apart from NXDOMAIN
])
def test_answer_keys(snapshot: Snapshot, first: tuple[str, str], second: tuple[str, str], same: bool) -> None:
    assert (key(snapshot, *first) == key(snapshot, *second)) is same


def test_keys_start_with_the_kind(snapshot: Snapshot) -> None:
    for case in CASES:
        assert key(snapshot, case.qname, case.qtype)[0] == case.kind
    assert rcode_key(RCODE_FORMERR)[0] == AnswerKind.ERROR
    assert rcode_key(RCODE_REFUSED) == Answer(RCODE_REFUSED, False).key(names.ROOT, 1)
