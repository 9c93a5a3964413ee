"""The zone file's ``transfer:`` key and the transfer flag values (zones/transferspec.py).

Checks: every malformed ``allow:``/``notify:`` entry and unknown key is an error at its
``file:line:column`` (among them rules that could never match: an IPv4-mapped IPv6
address, with the IPv4 form to write instead, and an IPv6 zone index) (several at once, so one ``check`` run lists them all); what a
valid block loads to (host and prefix rules, a key, notify ports defaulting to 53,
IPv6 brackets, a single entry without a list); ``authdns check`` prints the positions;
the flag parsers (``--allow-transfer``, ``--tsig-key``, ``--notify-retry``,
``--notify-attempts``) accept their forms and reject the rest with a clear message.
"""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import pytest

from conftest import run_authdns
from authdns.base.tsig import TsigSecret
from support import load_text
from authdns.zones.transferspec import (AllowRule, TransferSpec, parse_allow_rule, parse_notify_attempts,
                                  parse_notify_retry, parse_tsig_key, tsig_keyring)

ROOT = Path(__file__).resolve().parents[2]

RECORDS = """\
records:
  "@": {NS: ns1}
  ns1: {A: 192.0.2.1}
"""


def load(tmp_path: Path, transfer: str):
    return load_text(tmp_path, "example.test", transfer + RECORDS)


ERRORS = [
    ("not-a-mapping", "transfer: [127.0.0.1]\n", "1:11", "'transfer:' must be a mapping"),
    ("unknown-key", "transfer:\n  allow: [127.0.0.1]\n  deny: [10.0.0.1]\n", "3:3", "unknown key 'deny'"),
    ("allow-not-address", "transfer:\n  allow: [127.0.0.1, ns2.example.test]\n", "2:22", "is not an IP address or prefix"),
    ("allow-host-bits", "transfer:\n  allow: ['192.0.2.1/24']\n", "2:11", "has host bits set; the prefix is 192.0.2.0/24"),
    ("allow-bad-length", "transfer:\n  allow: ['192.0.2.0/33']\n", "2:11", "is not an IP address or prefix"),
    ("allow-ipv4-mapped", "transfer:\n  allow: ['::ffff:192.0.2.0/120']\n", "2:11",
     "is an IPv4-mapped IPv6 address, which never matches (IPv4 clients are seen as IPv4); write 192.0.2.0/24"),
    ("allow-ipv4-mapped-host", "transfer:\n  allow: ['::ffff:192.0.2.7']\n", "2:11", "write 192.0.2.7 instead"),
    ("allow-zone-index", "transfer:\n  allow: ['fe80::1%eth0']\n", "2:11",
     "a zone index (%eth0) is not supported; write fe80::1 (the rule then applies on every interface)"),
    ("allow-unknown-field", "transfer:\n  allow:\n    - {from: 10.0.0.0/8, tsig: k}\n", "3:7", "unknown field 'tsig'"),
    ("allow-missing-from", "transfer:\n  allow:\n    - {key: k}\n", "3:7", "missing field 'from'"),
    ("allow-bad-key", "transfer:\n  allow:\n    - {from: 10.0.0.0/8, key: 'a..b'}\n", "3:31", "key name 'a..b'"),
    ("allow-list-entry", "transfer:\n  allow: [[127.0.0.1]]\n", "2:11", "allow address must be a single value"),
    ("notify-hostname", "transfer:\n  notify: [ns2.example.net]\n", "2:12", "'ns2.example.net' is not an IP address"),
    ("notify-port-zero", "transfer:\n  notify: ['192.0.2.53:0']\n", "2:12", "port '0' is not a number from 1 to 65535"),
    ("notify-port-text", "transfer:\n  notify: ['[2001:db8::53]:dns']\n", "2:12", "port 'dns'"),
    ("notify-mapping", "transfer:\n  notify: [{to: 192.0.2.53}]\n", "2:12", "notify target must be a single value"),
]


@pytest.mark.parametrize("text,position,fragment", [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS])
def test_error_at_its_place(tmp_path: Path, text: str, position: str, fragment: str) -> None:
    path, zone, problems = load(tmp_path, text)
    assert zone is None, problems
    assert any(problem.startswith(f"{path}:{position}: ") and fragment in problem for problem in problems), problems


def test_every_bad_entry_is_reported(tmp_path: Path) -> None:
    path, zone, problems = load(tmp_path, "transfer:\n  allow: [nope, 127.0.0.1, 10.0.0.1/8]\n  notify: [x, 192.0.2.1]\n")
    assert zone is None
    assert [problem.split(": ")[0] for problem in problems] == [f"{path}:2:11", f"{path}:2:28", f"{path}:3:12"]


def test_valid_block(tmp_path: Path) -> None:
    text = """\
transfer:
  allow:
    - 127.0.0.1
    - "192.0.2.0/24"
    - {from: "2001:db8::/32", key: Sec1}
  notify: ["127.0.0.1:5300", 192.0.2.53, "[2001:db8::53]:5353", "2001:db8::54", 192.0.2.53]
"""
    _, zone, problems = load(tmp_path, text)
    assert zone is not None and problems == []
    assert zone.transfer == TransferSpec(
        allow=(AllowRule(ipaddress.ip_network("127.0.0.1/32")), AllowRule(ipaddress.ip_network("192.0.2.0/24")),
               AllowRule(ipaddress.ip_network("2001:db8::/32"), "sec1.")),
        notify=(("127.0.0.1", 5300), ("192.0.2.53", 53), ("2001:db8::53", 5353), ("2001:db8::54", 53)),
    )


def test_single_entries_and_absence(tmp_path: Path) -> None:
    _, zone, problems = load(tmp_path, "transfer:\n  allow: 10.1.0.0/16\n  notify: 10.1.0.53\n")
    assert problems == [] and zone is not None
    assert zone.transfer == TransferSpec((AllowRule(ipaddress.ip_network("10.1.0.0/16")),), (("10.1.0.53", 53),))
    _, zone, _ = load(tmp_path, "")
    assert zone is not None and zone.transfer is None


def test_rule_matches_its_family_only() -> None:
    rule = AllowRule(ipaddress.ip_network("0.0.0.0/0"))
    assert rule.matches(ipaddress.ip_address("198.51.100.7"))
    assert not rule.matches(ipaddress.ip_address("::1"))


def test_ipv6_rules_that_do_match_are_kept() -> None:
    """Only prefixes inside ::ffff:0:0/96 are refused; ones that merely contain it, and
    link-local prefixes without a zone index, load."""
    for text in ("::/0", "::/64", "fe80::/10", "fe80::1", "2001:db8::ffff:0:0/96"):
        assert parse_allow_rule(text).network == ipaddress.ip_network(text)


def test_check_command_prints_positions(tmp_path: Path) -> None:
    path, _, _ = load(tmp_path, "transfer:\n  allow: [127.0.0.300]\n")
    result = run_authdns("check", path, timeout=30)
    assert result.returncode == 1
    assert f"{path}:2:11: allow: '127.0.0.300' is not an IP address or prefix" in result.stdout + result.stderr


# ---------------------------------------------------------------- flags

SECRET = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1", AllowRule(ipaddress.ip_network("127.0.0.1/32"))),
    ("10.0.0.0/8,key=sec1", AllowRule(ipaddress.ip_network("10.0.0.0/8"), "sec1.")),
    ("2001:db8::/32,key=xfr.example.", AllowRule(ipaddress.ip_network("2001:db8::/32"), "xfr.example.")),
    ("::/0", AllowRule(ipaddress.ip_network("::/0"))),
])
def test_allow_flag(text: str, expected: AllowRule) -> None:
    assert parse_allow_rule(text) == expected


@pytest.mark.parametrize("text,fragment", [
    ("10.0.0.1/8", "host bits set; the prefix is 10.0.0.0/8"),
    ("example.test", "is not an IP address or prefix"),
    ("10.0.0.0/8,sec1", "expected PREFIX or PREFIX,key=NAME"),
    ("10.0.0.0/8,key=", "expected PREFIX or PREFIX,key=NAME"),
    ("10.0.0.0/8:sec1", "is not an IP address or prefix"),
    ("::ffff:10.0.0.0/104,key=sec1", "IPv4-mapped IPv6 address, which never matches .* write 10.0.0.0/8 instead"),
    ("fe80::%eth0/64", "zone index .%eth0. is not supported; write fe80::/64"),
])
def test_allow_flag_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_allow_rule(text)


def test_tsig_key_flag() -> None:
    assert parse_tsig_key(f"sec1:{SECRET}") == ("sec1.", TsigSecret("hmac-sha256", bytes(range(32))))
    assert parse_tsig_key(f"hmac-sha256:Sec1.Example.:{SECRET}") == ("sec1.example.",
                                                                      TsigSecret("hmac-sha256", bytes(range(32))))
    for algorithm in ("hmac-sha1", "hmac-sha224", "HMAC-SHA384", "hmac-sha512"):
        assert parse_tsig_key(f"{algorithm}:k:{SECRET}") == ("k.", TsigSecret(algorithm.lower(), bytes(range(32))))


@pytest.mark.parametrize("text,fragment", [
    (f"hmac-md5:sec1:{SECRET}", "hmac-md5 must not be used \\(RFC 8945 §6\\)"),
    (f"hmac-sha3:sec1:{SECRET}", "algorithm 'hmac-sha3' is not supported; use one of hmac-sha1, hmac-sha224"),
    ("sec1", "expected \\[ALGORITHM:\\]NAME:BASE64SECRET"),
    (f":{SECRET}", "expected"),
    ("sec1:not*base64", "the secret is not base64"),
    ("sec1:====", "not base64"),
])
def test_tsig_key_flag_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_tsig_key(text)


def test_keyring_rejects_a_name_given_twice() -> None:
    keys = tsig_keyring([parse_tsig_key(f"a:{SECRET}"), parse_tsig_key(f"b:{SECRET}")])
    assert dict(keys) == {"a.": TsigSecret("hmac-sha256", bytes(range(32))),
                          "b.": TsigSecret("hmac-sha256", bytes(range(32)))}
    with pytest.raises(ValueError, match="TSIG key a. is given twice"):
        tsig_keyring([parse_tsig_key(f"a:{SECRET}"), parse_tsig_key(f"A.:{SECRET}")])


def test_notify_timing_flags() -> None:
    assert parse_notify_retry("0.5") == 0.5 and parse_notify_attempts("3") == 3
    for bad in ("0", "-1", "nan", "soon"):
        with pytest.raises(ValueError, match="seconds from 0.01 to 3600"):
            parse_notify_retry(bad)
    for bad in ("0", "101", "2.5", "x"):
        with pytest.raises(ValueError, match="from 1 to 100"):
            parse_notify_attempts(bad)
