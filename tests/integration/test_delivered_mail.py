"""bench/delivered_mail.py, CI-sized: simulated RFC 5321 senders behind TTL-honouring
resolvers deliver real SMTP to three aiosmtpd sinks from a weighted 3:1:1 pool.

Checks that the lab measures what it claims (issue 14's starting point, not its goal):
``promote`` at TTL 0 delivers exactly 60/20/20 (a whole number of weighted cycles);
``answer: 2`` at TTL 0 delivers 3:1:1 too (60 % is above 1/2, so one answer in five is mx1
alone: base/answershares.py) and 2:1:1 with two members in every answer
(balancing/subsets.py); nothing is lost."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def lab(*args: str) -> list[list[str]]:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "delivered_mail.py"), *args], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return [line.split() for line in result.stdout.splitlines()[2:]]


def test_the_lab_tells_delivered_shares_apart() -> None:
    rows = lab("--messages", "50", "--modes", "promote", "answer2", "--ttls", "0", "--resolvers", "1")
    by_mode = {row[0]: row for row in rows}
    promote, answer2 = by_mode["promote"], by_mode["answer2"]
    assert promote[3] == "60/20/20" and promote[5] == "0", promote  # delivered, lost
    assert answer2[-1] == "60/20/20", answer2  # what the answers give an even split: the weights
    first_share = int(answer2[3].split("/")[0])  # the senders' random picks: near it (40 answers of 2 at 50 %)
    assert 46 <= first_share <= 74 and answer2[5] == "0", answer2


def test_answer_2_delivers_weights_two_members_can_carry() -> None:
    """What the answers give a sender's even split is the weights exactly (the last
    column); what the senders' random picks delivered is near it, and nothing is lost."""
    rows = lab("--messages", "200", "--modes", "answer2", "--ttls", "0", "--resolvers", "1", "--weights", "2", "1", "1")
    assert rows[0][-1] == "50/25/25", rows
    delivered = [int(share) for share in rows[0][3].split("/")]
    assert abs(delivered[0] - 50) <= 10 and all(abs(share - 25) <= 10 for share in delivered[1:]), rows
    assert rows[0][5] == "0", rows


def test_each_resolver_gets_the_weights_whatever_its_volume() -> None:
    """Five resolvers in lockstep (TTL 30, each asking again as its answer expires) with
    unequal mail volumes (4:2:1:1:1): with one rotation per resolver each one's mail is
    60/20/20, so the whole is too; one shared rotation (``--client-rotors 0``) pins each
    resolver to one exchanger, and the heavy resolver's one gets too much."""
    args = ("--messages", "450", "--modes", "answer1", "--ttls", "30", "--resolvers", "5", "--gap", "6",
            "--volumes", "4", "2", "1", "1", "1")
    row = lab(*args)[0]
    assert row[3] == "60/20/20" and row[4:9] == ["60/20/20"] * 5 and row[9] == "0", row
    shared = lab(*args, "--client-rotors", "0")[0]
    assert all(share in ("100/0/0", "0/100/0", "0/0/100") for share in shared[4:9]), shared
    assert shared[3] != "60/20/20", shared
