"""The README's ``dig`` example is what the server answers (section by section, in order)."""

from __future__ import annotations

import re

import dns.flags
import dns.message

from conftest import ROOT, ServerProcess


def _readme_dig_example() -> tuple[str, str, list[str], list[str]]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```console\n\$ dig @127\.0\.0\.1 -p 5353 (\S+) (\S+) \+norec\n(.*?)```", readme, re.S)
    assert block, "README has no dig example"
    qname, qtype, body = block.groups()
    answer, additional = body.split(";; ADDITIONAL SECTION:\n")
    answer = answer.split(";; ANSWER SECTION:\n")[1]
    return qname, qtype, answer.split("\n")[:-1], additional.split("\n")[:-1]


def _records(rrsets) -> list[str]:
    """One whitespace-normalised line per record, in wire order."""
    return [" ".join(line.split()) for rrset in rrsets for line in rrset.to_text().split("\n")]


def test_readme_dig_example_matches(shipped_server: ServerProcess) -> None:
    qname, qtype, answer, additional = _readme_dig_example()
    reply = shipped_server.query(qname, qtype, use_edns=0)
    assert reply.flags & dns.flags.AA
    assert _records(reply.answer) == [" ".join(line.split()) for line in answer]
    assert _records(reply.additional) == [" ".join(line.split()) for line in additional]
