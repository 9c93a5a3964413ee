"""Balancing options in zone files: what ``authdns check`` rejects or warns about, at
which ``file:line:column``, and what a valid file loads to.

Checks: unknown policy, options on types that cannot be balanced, promote on A or with
no free preference below a group, ``answer`` out of range, ``weight: auto`` without a
check, a weight out of range, unknown or malformed checks (kind, port, timing, ehlo on
tcp, agent ports, down_ttl, settle), malformed probe addresses; warnings for a balanced
TTL above 300 s, weights under a non-weighted policy, a probe without a check, a failover
bound (detection + TTL) above 120 s and ``answer: 1`` with no fallback; defaults (round-robin for several
records, the zone's ``policy:``, none for a single record).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dnslib import QTYPE

from authdns.base import names
from authdns.zones.balancespec import DEFAULT_DOWN_TTL, DEFAULT_SETTLE, AgentSpec, CheckKind, Policy, ProbeAddress
from support import load_text

HEAD = """\
ttl: 60
checks:
  mail: {kind: smtp, interval: 2, timeout: 1, rise: 1, fall: 2, ehlo: probe.example.test}
records:
  "@": {NS: ns1}
  ns1: {A: 192.0.2.1}
  mx1: {A: 192.0.2.11}
  mx2: {A: 192.0.2.12}
"""


def load(tmp_path: Path, body: str):
    return load_text(tmp_path, "example.test", body)


ERRORS = [
    ("unknown-policy", "  p: {MX: {policy: fastest, records: ['10 mx1', '10 mx2']}}\n", "9:20", "unknown policy 'fastest'"),
    ("policy-on-txt", "  p: {TXT: {policy: random, records: [a, b]}}\n", "9:21", "'policy' applies to MX, A and AAAA records only"),
    ("promote-on-a", "  p: {A: {promote: yes, records: [192.0.2.5, 192.0.2.6]}}\n", "9:20", "promote applies to MX records only"),
    ("promote-no-gap", "  p: {MX: {promote: yes, records: ['10 mx1', '11 mx2']}}\n", "9:7", "promote needs preference 11 - 1 free"),
    ("promote-preference-0", "  p: {MX: {promote: yes, records: ['0 mx1', '0 mx2']}}\n", "9:7", "promote needs preference 0 - 1 free"),
    ("answer-zero", "  p: {MX: {answer: 0, records: ['10 mx1', '10 mx2']}}\n", "9:20", "answer 0 is out of range 1..1000"),
    ("auto-without-check", "  p: {MX: {records: [{preference: 10, exchange: mx1, weight: auto}, '10 mx2']}}\n",
     "9:22", "weight: auto needs a check"),
    ("weight-out-of-range", "  p: {MX: {records: [{preference: 10, exchange: mx1, weight: 1001}, '10 mx2']}}\n",
     "9:62", "weight 1001 is out of range 0..1000"),
    ("unknown-check", "  p: {MX: {check: web, records: ['10 mx1', '10 mx2']}}\n", "9:19", "unknown check 'web' (checks: mail)"),
    ("check-bad-kind", "  p: {MX: {check: {kind: icmp}, records: ['10 mx1', '10 mx2']}}\n", "9:26", "check kind must be smtp or tcp"),
    ("tcp-check-needs-port", "  p: {A: {check: {kind: tcp}, records: [192.0.2.5, 192.0.2.6]}}\n", "9:18", "a tcp check needs a port"),
    ("check-timeout", "  p: {A: {check: {kind: tcp, port: 80, timeout: 0}, records: [192.0.2.5]}}\n", "9:49", "check timeout must be seconds"),
    ("ehlo-on-tcp", "  p: {A: {check: {kind: tcp, port: 80, ehlo: x}, records: [192.0.2.5]}}\n", "9:46", "ehlo applies to smtp checks only"),
    ("agent-port-zero", "  p: {A: {check: {kind: tcp, port: 80, agent: 0}, records: [192.0.2.5]}}\n", "9:47",
     "agent port 0 is out of range 1..65535"),
    ("agent-not-number", "  p: {A: {check: {kind: tcp, port: 80, agent: http}, records: [192.0.2.5]}}\n", "9:47",
     "agent port must be a whole number, not 'http'"),
    ("agent-list", "  p: {A: {check: {kind: tcp, port: 80, agent: [4711]}, records: [192.0.2.5]}}\n", "9:47",
     "agent must be a port like 4711 or a mapping like {port: 4711}"),
    ("agent-empty", "  p: {A: {check: {kind: tcp, port: 80, agent: }, records: [192.0.2.5]}}\n", "9:47",
     "agent must be a port like 4711"),
    ("agent-unknown-field", "  p: {A: {check: {kind: tcp, port: 80, agent: {port: 4711, send: hi}}, records: [192.0.2.5]}}\n",
     "9:47", "agent: unknown field 'send' (fields: port)"),
    ("agent-no-port", "  p: {A: {check: {kind: tcp, port: 80, agent: {}}, records: [192.0.2.5]}}\n", "9:47",
     "agent: missing field 'port'"),
    ("agent-port-big", "  p: {A: {check: {kind: tcp, port: 80, agent: {port: 70000}}, records: [192.0.2.5]}}\n", "9:54",
     "agent port 70000 is out of range 1..65535"),
    ("check-unknown-field", "  p: {A: {check: {kind: tcp, port: 80, every: 3}, records: [192.0.2.5]}}\n", "9:18", "unknown field 'every'"),
    ("probe-not-address", "  p: {A: {check: mail, records: [{address: 192.0.2.5, probe: mail.example.test}]}}\n",
     "9:62", "probe must be an IP address"),
    ("probe-bad-port", "  p: {A: {check: mail, records: [{address: 192.0.2.5, probe: '127.0.0.1:0'}]}}\n",
     "9:62", "probe port must be from 1 to 65535"),
    ("probe-empty-port", "  p: {A: {check: mail, records: [{address: 192.0.2.5, probe: '127.0.0.1:'}]}}\n",
     "9:62", "probe port must be from 1 to 65535"),
    ("down-ttl-negative", "  p: {A: {check: {kind: tcp, port: 80, down_ttl: -1}, records: [192.0.2.5]}}\n", "9:50",
     "check down_ttl must be seconds or a duration like 1h30m, not '-1'"),
    ("down-ttl-range", "  p: {A: {check: {kind: tcp, port: 80, down_ttl: 4294967296}, records: [192.0.2.5]}}\n",
     "9:50", "check down_ttl 4294967296 is out of range"),
    ("settle-word", "  p: {A: {check: {kind: tcp, port: 80, settle: soon}, records: [192.0.2.5]}}\n", "9:48",
     "check settle must be seconds from 0 to 86400, not 'soon'"),
    ("probe-non-ascii-port", "  p: {A: {check: mail, records: [{address: 192.0.2.5, probe: '127.0.0.1:²'}]}}\n",
     "9:62", "probe port must be from 1 to 65535"),
]


@pytest.mark.parametrize("line,position,fragment", [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS])
def test_error_at_its_place(tmp_path: Path, line: str, position: str, fragment: str) -> None:
    path, zone, problems = load(tmp_path, HEAD + line)
    assert zone is None, problems
    assert any(problem.startswith(f"{path}:{position}: ") and fragment in problem for problem in problems), problems


WARNINGS = [
    ("long-ttl", "  p: {A: {ttl: 301, records: [192.0.2.5, 192.0.2.6]}}\n", "9:7", "balanced A RRset has TTL 301"),
    ("weight-not-weighted", "  p: {MX: {records: [{preference: 10, exchange: mx1, weight: 3}, '10 mx2']}}\n",
     "9:22", "weight only shapes shares under policy weighted"),
    ("probe-without-check", "  p: {A: {records: [{address: 192.0.2.5, probe: 127.0.0.1}, 192.0.2.6]}}\n",
     "9:21", "probe address is unused"),
    # RFC 5321 §5.1: a sender splits an answer's mail evenly, so 60 % under answer: 2 needs answers of mx1 alone
    # (3:1:1 -> 80 % {mx1, mx2 or ns1}, 20 % {mx1}).
    ("share-over-answer", "  p: {MX: {policy: weighted, answer: 2, records: [{preference: 10, exchange: mx1, weight: 3}, "
     "{preference: 10, exchange: mx2, weight: 1}, {preference: 10, exchange: ns1, weight: 1}]}}\n",
     "9:51", "weight 3 of 5 is 60 % of the mail, above 1/2: a sender splits an answer evenly among its members "
     "(RFC 5321 §5.1), so 20 % of answers carry mx1.example.test. alone"),
    # detection: 2 s to the first failing probe, 2 s to the second, which ends after 1 s + the
    # 0.1 s close wait; plus the TTL: 205.1 s before no cache can name a dead member
    ("failover-bound", "  p: {MX: {ttl: 200, check: mail, records: ['10 mx1', '10 mx2']}}\n", "9:7",
     "a dead member can still be sent mail for up to 205.1 s: 5.1 s to detect it (fall 2, interval 2 s, "
     "timeout 1 s) plus TTL 200; a shorter TTL or interval keeps it under 120 s"),
    ("answer-1-mx", "  p: {MX: {answer: 1, records: ['10 mx1', '10 mx2']}}\n", "9:7",
     "answer: 1 leaves each answer one member: while a resolver caches an answer naming a member that died, its "
     "senders have nothing else to try and defer; promote keeps the others as fallback"),
    ("answer-1-a", "  p: {A: {answer: 1, records: [192.0.2.5, 192.0.2.6]}}\n", "9:7", "defer; answer: 2 keeps one"),
]


@pytest.mark.parametrize("line", [
    # 2 of 4 is 50 %: reachable with two members per answer
    "  p: {MX: {policy: weighted, answer: 2, records: [{preference: 10, exchange: mx1, weight: 2}, "
    "{preference: 10, exchange: mx2, weight: 1}, {preference: 10, exchange: mx3, weight: 1}]}}\n",
    # every member in every answer: nothing to cap
    "  p: {MX: {policy: weighted, answer: 2, records: [{preference: 10, exchange: mx1, weight: 3}, "
    "{preference: 10, exchange: mx2, weight: 1}]}}\n",
    # promote: the sender takes the promoted member, whose share is exact
    "  p: {MX: {policy: weighted, answer: 2, promote: true, records: [{preference: 10, exchange: mx1, weight: 3}, "
    "{preference: 10, exchange: mx2, weight: 1}, {preference: 10, exchange: mx3, weight: 1}]}}\n",
    # answer: 1 per group, but a second preference to fall back to
    "  p: {MX: {answer: 1, records: ['10 mx1', '10 mx2', '20 mx3']}}\n",
    # groups apart: 3 of 3 in its own group, the other group 1:1
    "  p: {MX: {policy: weighted, answer: 2, records: [{preference: 10, exchange: mx1, weight: 3}, "
    "{preference: 20, exchange: mx2, weight: 1}, {preference: 20, exchange: mx3, weight: 1}]}}\n",
])
def test_shares_answer_n_can_deliver_are_not_warned_about(tmp_path: Path, line: str) -> None:
    _, zone, problems = load(tmp_path, HEAD + "  mx3: {A: 192.0.2.13}\n" + line)
    assert zone is not None and problems == [], problems


@pytest.mark.parametrize("line,position,fragment", [case[1:] for case in WARNINGS], ids=[case[0] for case in WARNINGS])
def test_warning_at_its_place(tmp_path: Path, line: str, position: str, fragment: str) -> None:
    path, zone, problems = load(tmp_path, HEAD + line)
    assert zone is not None, problems
    assert problems == [f"{path}:{position}: warning: {problems[0].split('warning: ', 1)[1]}"]
    assert fragment in problems[0]


def rrset(zone, owner: str, rtype: int):
    return zone.nodes[names.from_text(owner)].rrsets[rtype]


def test_what_a_valid_file_loads_to(tmp_path: Path) -> None:
    _, zone, problems = load(tmp_path, "policy: random\n" + HEAD + """\
  several: {MX: ['10 mx1', '10 mx2']}
  single: {A: 192.0.2.9}
  full:
    MX:
      policy: weighted
      answer: 1
      promote: true
      check: mail
      records:
        - {preference: 10, exchange: mx1, weight: 3, probe: '[::1]:2525'}
        - {preference: 10, exchange: mx2, weight: auto}
""")
    assert zone is not None and problems == [], problems
    assert rrset(zone, "several.example.test.", QTYPE.MX).balance.policy is Policy.RANDOM  # the zone's default
    assert rrset(zone, "single.example.test.", QTYPE.A).balance is None
    full = rrset(zone, "full.example.test.", QTYPE.MX).balance
    assert (full.policy, full.answer, full.promote) == (Policy.WEIGHTED, 1, True)
    assert (full.check.kind, full.check.port, full.check.interval, full.check.timeout) == (CheckKind.SMTP, 25, 2, 1)
    assert (full.check.rise, full.check.fall, full.check.ehlo, full.check.name) == (1, 2, "probe.example.test", "mail")
    assert [member.weight for member in full.members] == [3, None]
    assert full.members[0].probe == ProbeAddress("::1", 2525)
    assert (full.check.down_ttl, full.check.settle) == (DEFAULT_DOWN_TTL, DEFAULT_SETTLE)


def test_down_ttl_and_settle_are_read_and_leave_probe_identity(tmp_path: Path) -> None:
    _, zone, problems = load(tmp_path, HEAD + """\
  p: {MX: {check: {kind: smtp, down_ttl: 1m, settle: 90s}, records: ['10 mx1', '10 mx2']}}
  q: {MX: {check: {kind: smtp}, records: ['10 mx1', '10 mx2']}}
""")
    assert zone is not None and problems == [], problems
    check = rrset(zone, "p.example.test.", QTYPE.MX).balance.check
    assert (check.down_ttl, check.settle) == (60, 90.0)
    # How answers are served is not what is probed: both RRsets share one probe state.
    assert check == rrset(zone, "q.example.test.", QTYPE.MX).balance.check


def test_round_robin_by_default(tmp_path: Path) -> None:
    _, zone, problems = load(tmp_path, HEAD + "  p: {A: [192.0.2.5, 192.0.2.6]}\n")
    assert zone is not None and problems == []
    assert rrset(zone, "p.example.test.", QTYPE.A).balance.policy is Policy.ROUND_ROBIN


def test_only_members_that_are_ever_alone_are_warned_about(tmp_path: Path) -> None:
    """7:5:1:1 under answer: 3: mx1 (50 %) is alone in 1/7 of the answers; mx2 (36 %, also
    above 1/3) is always answered with mx1, never alone, so it gets no warning."""
    path, zone, problems = load(tmp_path, HEAD + "  mx3: {A: 192.0.2.13}\n" + (
        "  p: {MX: {policy: weighted, answer: 3, records: [{preference: 10, exchange: mx1, weight: 7}, "
        "{preference: 10, exchange: mx2, weight: 5}, {preference: 10, exchange: mx3, weight: 1}, "
        "{preference: 10, exchange: ns1, weight: 1}]}}\n"))
    assert zone is not None, problems
    assert len(problems) == 1 and "14 % of answers carry mx1.example.test. alone" in problems[0], problems


@pytest.mark.parametrize("agent", ["4711", "{port: 4711}", "'4711'"])
def test_an_agent_loads_beside_its_check(tmp_path: Path, agent: str) -> None:
    _, zone, problems = load(tmp_path, HEAD + f"  p: {{A: {{check: {{kind: tcp, port: 80, agent: {agent}}}, "
                                             "records: [192.0.2.5, 192.0.2.6]}}\n")
    assert problems == [], problems
    check = rrset(zone, "p.example.test.", QTYPE.A).balance.check
    assert check.agent == AgentSpec(4711) and check.port == 80
    # a check without an agent is another check: its targets do not share probe state
    assert rrset(zone, "p.example.test.", QTYPE.A).balance.check != type(check)(check.kind, check.port)
