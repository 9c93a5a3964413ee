"""The control channel end to end: ``authdns status``, ``explain`` and ``ctl`` run as
commands against a real server's unix socket, and the answers seen with dnspython.

Checks:
* status lists every balanced RRset with each member's health, last probe, weights and
  its share of first places since start (exact 75 %/25 % after 1000 answers at 3:1);
* ``explain`` predicts the next answer: its order equals the answer that follows it,
  every time, and it moves no rotor (asking twice gives the same prediction);
* drain: the member leaves the answers at once, status says so with the time until it
  is fully effective (the last answer carrying it plus TTL); the drain survives a
  restart; undrain brings it back;
* a temporary weight changes the shares exactly (3:1 → 1:1), and ``reset`` restores them;
* mistakes: an unknown member or RRset, a bad weight, no server: exit 1 or 2 with the
  reason, no traceback; garbage on the socket does not hurt the server;
* the socket is mode 0600 (this user only) and lives in --state-dir.
"""

from __future__ import annotations

import json
import socket
import stat
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import dns.message
import dns.query
import pytest

from conftest import ServerProcess, run_authdns, start_server, status_json, stop_server, wait_until
from smtp_listeners import FakeSmtp
from support import exchanges, write_zone

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out

ORIGIN = "ctl.test"
APEX = """
ttl: 60
records:
  "@": {NS: ns1}
  ns1: {A: 192.0.2.1}
"""


def zone_text(port: int) -> str:
    return f"""{APEX}  pool:
    MX:
      policy: weighted
      records:
        - {{preference: 10, exchange: mx1, weight: 3}}
        - {{preference: 10, exchange: mx2, weight: 1}}
        - "20 backup"
  checked:
    MX:
      check: {{kind: smtp, interval: 0.2, timeout: 0.5, rise: 1, fall: 1}}
      records:
        - {{preference: 10, exchange: mx1, probe: '127.0.0.1:{port}'}}
        - {{preference: 10, exchange: mx2, probe: '127.0.0.1:{port}'}}
  mx1: {{A: 192.0.2.11}}
  mx2: {{A: 192.0.2.12}}
  backup: {{A: 192.0.2.20}}
"""


@pytest.fixture
def listener():
    with FakeSmtp("ok") as fake:
        yield fake


@pytest.fixture
def server(listener: FakeSmtp, tmp_path: Path):
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, zone_text(listener.port))
    process = start_server(zone_dir, "--state-dir", str(tmp_path / "state"))
    yield process
    stop_server(process.process)


def authdns(server_or_state: ServerProcess | Path, *args: str) -> subprocess.CompletedProcess:
    state = server_or_state.state_dir if isinstance(server_or_state, ServerProcess) else server_or_state
    command = (*args, "--state-dir", state) if args[0] != "ctl" else ("ctl", "--state-dir", state, *args[1:])
    return run_authdns(*command, timeout=30)


def status(server: ServerProcess) -> dict:
    return {(entry["owner"], entry["type"]): entry for entry in status_json(server.state_dir)["rrsets"]}


def hosts(server: ServerProcess, name: str = "pool") -> list[str]:
    return exchanges(server, f"{name}.{ORIGIN}")


def test_status_shows_health_weights_and_shares(server: ServerProcess) -> None:
    for _ in range(1000):
        hosts(server)
    pool = status(server)[(f"pool.{ORIGIN}.", "MX")]
    members = {member["member"]: member for member in pool["members"]}
    assert pool["policy"] == "weighted" and pool["check"] is None
    assert members[f"mx1.{ORIGIN}."]["first"] == 750 and members[f"mx1.{ORIGIN}."]["share"] == 0.75
    assert members[f"mx2.{ORIGIN}."]["first"] == 250 and members[f"mx2.{ORIGIN}."]["share"] == 0.25
    assert members[f"backup.{ORIGIN}."]["first"] == 1000 and members[f"backup.{ORIGIN}."]["share"] == 1.0
    assert (members[f"mx1.{ORIGIN}."]["configured_weight"], members[f"mx1.{ORIGIN}."]["effective_weight"]) == (3, 3)
    checked = status(server)[(f"checked.{ORIGIN}.", "MX")]
    assert checked["check"]["kind"] == "smtp"
    for member in checked["members"]:
        assert member["status"] == "up" and member["probed"] and member["last_probe"].startswith("220")
        assert member["rtt_ms"] is not None
    text = authdns(server, "status")
    assert text.returncode == 0 and f"pool.{ORIGIN}. MX ttl 60 policy weighted" in text.stdout
    assert "75.0%" in text.stdout and "25.0%" in text.stdout


def explained(server: ServerProcess, *client: str) -> list[str]:
    """Who ``explain`` says is in the next answer (to ``--client ADDR`` when given)."""
    result = authdns(server, "explain", f"pool.{ORIGIN}", "MX", "--json", *client)
    assert result.returncode == 0, result.stderr
    (rrset,) = [entry for entry in json.loads(result.stdout)["rrsets"] if entry["section"] == "answer"]
    return [member["member"].split(".")[0] for member in rrset["members"] if member["included"]]


def test_explain_predicts_the_next_answer(server: ServerProcess) -> None:
    """This test's queries come from 127.0.0.1, whose /24 keeps its own rotation
    (balancing/rotors.py): ``--client 127.0.0.1`` predicts it; without ``--client``,
    explain predicts what a client new to the rotation gets (its first answer)."""
    for _ in range(8):
        prediction = explained(server, "--client", "127.0.0.1")
        assert explained(server, "--client", "127.0.0.7") == prediction, "explain moves no rotor; one /24, one rotation"
        assert hosts(server) == prediction
    for turn in range(3):
        newcomer = f"127.0.{20 + turn}.1"
        prediction = explained(server)
        query = dns.message.make_query(f"pool.{ORIGIN}", "MX")
        reply = dns.query.udp(query, server.host, port=server.port, timeout=2.0, source=newcomer)
        assert [str(rdata.exchange).split(".")[0] for rrset in reply.answer for rdata in rrset] == prediction
    text = authdns(server, "explain", f"pool.{ORIGIN}", "MX", "--client", "::ffff:127.0.0.1")
    assert "for client 127.0.0.0/24" in text.stdout, text.stdout
    assert "weighted position 1" in text.stdout and "additional:" in text.stdout
    text = authdns(server, "explain", f"pool.{ORIGIN}", "MX")
    assert "for a client new to the rotation" in text.stdout, text.stdout
    bad = authdns(server, "explain", f"pool.{ORIGIN}", "MX", "--client", "nowhere")
    assert bad.returncode == 1 and "client must be an IP address or ADDRESS/LENGTH, not 'nowhere'" in bad.stderr, bad.stderr


def test_drain_survives_restart_and_undrain(server: ServerProcess, tmp_path: Path, listener: FakeSmtp) -> None:
    hosts(server)  # mx1 handed out just now: a drain is fully effective only a TTL later
    result = authdns(server, "ctl", "drain", f"pool.{ORIGIN}", "MX", "mx1." + ORIGIN)
    assert result.returncode == 0, result.stderr
    assert "drained" in result.stdout and "fully effective in" in result.stdout
    assert all("mx1" not in hosts(server) for _ in range(20))
    member = {m["member"]: m for m in status(server)[(f"pool.{ORIGIN}.", "MX")]["members"]}[f"mx1.{ORIGIN}."]
    assert member["drained"] and 50 <= member["drain_effective_in"] <= 60
    # Restart on the same state directory: still drained.
    stop_server(server.process)
    again = start_server(server.zone_dir, "--state-dir", str(server.state_dir))
    try:
        assert all("mx1" not in hosts(again) for _ in range(20))
        assert any("overrides loaded members=1" in line for line in again.log)
        result = authdns(again, "ctl", "undrain", f"pool.{ORIGIN}", "MX", "mx1." + ORIGIN)
        assert result.returncode == 0 and "in service" in result.stdout
        assert Counter(hosts(again)[0] for _ in range(400)) == {"mx1": 300, "mx2": 100}
    finally:
        stop_server(again.process)


def test_temporary_weight_and_reset(server: ServerProcess) -> None:
    assert authdns(server, "ctl", "weight", f"pool.{ORIGIN}", "MX", f"mx2.{ORIGIN}", "3").returncode == 0
    assert Counter(hosts(server)[0] for _ in range(600)) == {"mx1": 300, "mx2": 300}
    assert authdns(server, "ctl", "weight", f"pool.{ORIGIN}", "MX", f"mx2.{ORIGIN}", "reset").returncode == 0
    assert Counter(hosts(server)[0] for _ in range(400)) == {"mx1": 300, "mx2": 100}


@pytest.mark.parametrize("args,code,fragment", [
    (("ctl", "drain", f"pool.{ORIGIN}", "MX", f"mx9.{ORIGIN}"), 1, "is not a member of pool.ctl.test. MX (members: "),
    (("ctl", "drain", f"nothing.{ORIGIN}", "MX", f"mx1.{ORIGIN}"), 1, "no balanced MX RRset at nothing.ctl.test."),
    (("ctl", "drain", f"pool.{ORIGIN}", "A", "192.0.2.300"), 1, "is not an IP address"),
    (("ctl", "weight", f"pool.{ORIGIN}", "MX", f"mx1.{ORIGIN}", "heavy"), 2, "N must be a whole number"),
    (("ctl", "weight", f"pool.{ORIGIN}", "MX", f"mx1.{ORIGIN}", "5000"), 1, "weight must be a whole number from 0 to 1000"),
    (("explain", f"pool.{ORIGIN}", "BOGUS"), 1, "unknown record type 'BOGUS'"),
    (("ctl", "fly"), 2, "invalid choice"),
])
def test_mistakes_are_explained(server: ServerProcess, args: tuple, code: int, fragment: str) -> None:
    result = authdns(server, *args)
    assert result.returncode == code and fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert hosts(server), "the server still answers"


def test_no_server_is_a_clear_error(tmp_path: Path) -> None:
    result = authdns(tmp_path, "status")
    assert result.returncode == 1 and "cannot reach the server" in result.stderr and "Traceback" not in result.stderr


def test_socket_is_private_and_survives_garbage(server: ServerProcess) -> None:
    path = server.state_dir / "control.sock"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for garbage in (b"not json\n", b"[1, 2]\n", b'{"command": "rm -rf"}\n', b"\xff" * 5000 + b"\n", b""):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            reply = sock.recv(65536)
        if reply:
            assert json.loads(reply)["ok"] is False
    assert status(server)


def test_counters_and_health_survive_reload(server: ServerProcess) -> None:
    import os
    import signal

    from conftest import wait_until

    for _ in range(100):
        hosts(server)
    before = status(server)
    zone_file = server.zone_dir / f"{ORIGIN}.yaml"
    zone_file.write_text(zone_file.read_text().replace("ttl: 60", "ttl: 61", 1))
    os.kill(server.process.pid, signal.SIGHUP)
    wait_until(lambda: True if server.query(f"ns1.{ORIGIN}", "A").answer[0].ttl == 61 else None, timeout=5)
    after = status(server)
    for rrset_key in ((f"pool.{ORIGIN}.", "MX"), (f"checked.{ORIGIN}.", "MX")):
        for old, new in zip(before[rrset_key]["members"], after[rrset_key]["members"]):
            assert (new["member"], new["first"], new["given"], new["since"]) == \
                (old["member"], old["first"], old["given"], old["since"])
    assert after[(f"pool.{ORIGIN}.", "MX")]["ttl"] == 61


def test_control_path_that_is_not_a_socket_is_left_alone(tmp_path: Path, listener: FakeSmtp) -> None:
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, zone_text(listener.port))
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    result = run_authdns("serve", "--zones", zone_dir, "--listen", "127.0.0.1:0", "--state-dir", tmp_path / "state",
                         "--control", precious, timeout=30)
    assert result.returncode == 1 and "is not a socket" in result.stderr and "Traceback" not in result.stderr
    assert precious.read_text() == "keep me"


def test_unreadable_overrides_file_is_set_aside(tmp_path: Path, listener: FakeSmtp) -> None:
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, zone_text(listener.port))
    state = tmp_path / "state"
    state.mkdir()
    (state / "overrides.json").write_text('{"version": 1, "members": [{"owner": "pool.ctl.test.", ')
    server = start_server(zone_dir, "--state-dir", str(state))
    try:
        assert any("cannot read overrides" in line and "starting WITHOUT drains" in line for line in server.log)
        assert [p.name.startswith("overrides.json.unreadable-") for p in state.iterdir()].count(True) == 1
        assert sorted(hosts(server)) == ["backup", "mx1", "mx2"], "serving, without overrides"
        assert authdns(server, "ctl", "drain", f"pool.{ORIGIN}", "MX", f"mx1.{ORIGIN}").returncode == 0
        assert json.loads((state / "overrides.json").read_text())["members"][0]["drained"] is True
    finally:
        stop_server(server.process)


def test_override_of_a_member_no_longer_served_can_be_cleared(server: ServerProcess) -> None:
    import os
    import signal

    from conftest import wait_until

    assert authdns(server, "ctl", "drain", f"pool.{ORIGIN}", "MX", f"mx2.{ORIGIN}").returncode == 0
    serial = status_json(server.state_dir)["zones"][0]["serial"]
    zone_file = server.zone_dir / f"{ORIGIN}.yaml"
    zone_file.write_text(zone_file.read_text().replace("        - {preference: 10, exchange: mx2, weight: 1}\n", ""))
    os.kill(server.process.pid, signal.SIGHUP)
    # Drained, mx2 is out of the answers before the reload too: wait for the reload itself
    # (the zone's serial moves), then look at what it left.
    wait_until(lambda: True if status_json(server.state_dir)["zones"][0]["serial"] != serial else None, timeout=5)
    assert sorted(hosts(server)) == ["backup", "mx1"]
    orphans = status_json(server.state_dir)["overrides_not_served"]
    assert [orphan["member"] for orphan in orphans] == [f"mx2.{ORIGIN}."]
    assert authdns(server, "ctl", "drain", f"pool.{ORIGIN}", "MX", f"mx2.{ORIGIN}").returncode == 1
    result = authdns(server, "ctl", "undrain", f"pool.{ORIGIN}", "MX", f"mx2.{ORIGIN}")
    assert result.returncode == 0, result.stderr
    assert status_json(server.state_dir)["overrides_not_served"] == []


def test_over_long_request_gets_an_answer(server: ServerProcess) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(server.state_dir / "control.sock"))
        sock.sendall(b'{"command": "status", "pad": "' + b"x" * 10000 + b'"}\n')
        reply = json.loads(sock.recv(65536))
    assert reply == {"ok": False, "error": "a request is one line of at most 4096 octets"}


def test_explain_shows_only_what_the_answer_carries(tmp_path: Path, server_factory) -> None:
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, """
ttl: 60
records:
  "@": {NS: ns1}
  ns1: {A: 192.0.2.1}
  one: {MX: {answer: 1, records: ['10 mx1', '10 mx2']}}
  shuffled: {MX: {policy: random, records: ['10 mx1', '10 mx2']}}
  mx1: {A: 192.0.2.11}
  mx2: {A: 192.0.2.12}
""")
    server = server_factory(zone_dir)
    for _ in range(4):
        result = authdns(server, "explain", f"one.{ORIGIN}", "MX", "--json", "--client", "127.0.0.1")
        rrsets = json.loads(result.stdout)["rrsets"]
        (answer,) = [r for r in rrsets if r["section"] == "answer"]
        included = [m["member"] for m in answer["members"] if m["included"]]
        additional = [r["owner"] for r in rrsets if r["section"] == "additional"]
        assert additional == included, "the cut member's address is not in the additional section"
        reply = server.query(f"one.{ORIGIN}", "MX")
        assert [str(rdata.exchange) for rrset in reply.answer for rdata in rrset] == included
    text = authdns(server, "explain", f"shuffled.{ORIGIN}", "MX").stdout
    assert "random: every answer is a fresh shuffle; this is one possible order" in text


def shares_zone(ports: list[int]) -> str:
    """Balanced MX RRsets whose members should get known shares of their group's mail
    (``target``), each mode a sender delivers differently from (``mail_share``)."""
    probed = "".join(f"        - {{preference: 10, exchange: mx{index + 1}, weight: {weight}, probe: '127.0.0.1:{port}'}}\n"
                     for index, (port, weight) in enumerate(zip(ports, (3, 1, 1))))
    weighted = "".join(f"        - {{preference: 10, exchange: mx{index}, weight: {weight}}}\n"
                       for index, weight in ((1, 3), (2, 1), (3, 1)))
    return f"""{APEX}  one:
    MX:
      policy: weighted
      answer: 1
      records:
{weighted}  two:
    MX:
      policy: weighted
      answer: 2
      records:
{weighted}  spread:
    MX:
      policy: weighted
      records:
{weighted}  rr: {{MX: ['10 mx1', '10 mx2', '10 mx3']}}
  groups:
    MX:
      policy: weighted
      promote: true
      records:
        - {{preference: 10, exchange: mx1, weight: 3}}
        - {{preference: 10, exchange: mx2, weight: 1}}
        - {{preference: 20, exchange: mx3, weight: 1}}
        - {{preference: 20, exchange: mx4, weight: 1}}
  checked:
    MX:
      policy: weighted
      answer: 1
      check: {{kind: smtp, interval: 0.2, timeout: 0.5, rise: 1, fall: 1}}
      records:
{probed}  mx1: {{A: 192.0.2.11}}
  mx2: {{A: 192.0.2.12}}
  mx3: {{A: 192.0.2.13}}
  mx4: {{A: 192.0.2.14}}
"""


@pytest.fixture
def shares_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, list[FakeSmtp]]]:
    """A server of ``shares_zone`` and the SMTP listeners its ``checked`` members are probed on."""
    with ExitStack() as stack:
        listeners = [stack.enter_context(FakeSmtp("ok")) for _ in range(3)]
        zone_dir = tmp_path / "zones"
        write_zone(zone_dir, ORIGIN, shares_zone([fake.port for fake in listeners]))
        process = start_server(zone_dir, "--state-dir", str(tmp_path / "state"))
        try:
            yield process, listeners
        finally:
            stop_server(process.process)


def members_of(server: ServerProcess, name: str) -> dict[str, dict]:
    """``status --json``'s members of NAME's MX RRset, by first label."""
    rrset = status(server)[(f"{name}.{ORIGIN}.", "MX")]
    return {member["member"].split(".")[0]: member for member in rrset["members"]}


def column(members: dict[str, dict], field: str) -> dict[str, float | None]:
    return {name: member[field] for name, member in members.items()}


def mail_since(before: dict[str, dict], after: dict[str, dict]) -> dict[str, float]:
    """Each member's share of the mail a sender got from the answers between two status
    replies (one preference group)."""
    got = {name: after[name]["mail"] - before[name]["mail"] for name in after}
    total = sum(got.values())
    return {name: round(value / total, 4) for name, value in got.items()}


def test_status_shows_the_share_each_member_should_get_beside_what_it_got(shares_server) -> None:
    """``target`` is the member's effective weight over its group's; ``mail_share`` what a
    conforming sender (RFC 5321 §5.1: uniform among the equal-preference members it is
    given) delivers from the answers given. After whole cycles they agree in every mode
    that steers (answer: 1, answer: 2, promote, round robin), and weights without
    ``answer``/``promote`` show the gap README warns of (a sender splits evenly)."""
    server, _ = shares_server
    cycles = {"one": 50, "two": 100, "spread": 25, "rr": 30, "groups": 20}  # whole cycles: 5, 10, 5, 3, 4
    for name, count in cycles.items():
        for _ in range(count):
            hosts(server, name)
    weighted = {"mx1": 0.6, "mx2": 0.2, "mx3": 0.2}
    for name in ("one", "two"):
        members = members_of(server, name)
        assert column(members, "target") == weighted, name
        assert column(members, "mail_share") == weighted, name
    members = members_of(server, "two")
    assert column(members, "mail") == {"mx1": 60.0, "mx2": 20.0, "mx3": 20.0}  # 1/2 per answer of 2, 1 alone
    spread = members_of(server, "spread")
    assert column(spread, "target") == weighted
    assert column(spread, "share") == weighted, "first positions follow the weights ..."
    assert column(spread, "mail_share") == {"mx1": 0.3333, "mx2": 0.3333, "mx3": 0.3333}, "... the mail does not"
    third = {"mx1": 0.3333, "mx2": 0.3333, "mx3": 0.3333}
    rr = members_of(server, "rr")
    assert column(rr, "target") == third and column(rr, "mail_share") == third
    groups = members_of(server, "groups")
    per_group = {"mx1": 0.75, "mx2": 0.25, "mx3": 0.5, "mx4": 0.5}
    assert column(groups, "target") == per_group and column(groups, "mail_share") == per_group
    text = authdns(server, "status")
    assert text.returncode == 0 and "first  share   mail target" in text.stdout, text.stdout
    # Each row ends: first, share, mail, target, then "not probed".
    spread_rows = text.stdout.split(f"spread.{ORIGIN}. MX")[1].splitlines()[2:5]
    assert [row.split()[-5:-2] for row in spread_rows] == [["60.0%", "33.3%", "60.0%"],
                                                          ["20.0%", "33.3%", "20.0%"],
                                                          ["20.0%", "33.3%", "20.0%"]], text.stdout
    explained = json.loads(authdns(server, "explain", f"one.{ORIGIN}", "MX", "--json").stdout)
    (answer,) = [rrset for rrset in explained["rrsets"] if rrset["section"] == "answer"]
    assert {member["member"].split(".")[0]: member["target"] for member in answer["members"]} == weighted


def test_drained_or_down_member_should_get_nothing(shares_server) -> None:
    """A drained member (``ctl drain``) and one whose health check fails should get 0; the
    others share its part by their weights, and get exactly that from then on."""
    server, listeners = shares_server
    for _ in range(10):
        hosts(server, "one")
    assert authdns(server, "ctl", "drain", f"one.{ORIGIN}", "MX", f"mx3.{ORIGIN}").returncode == 0
    before = members_of(server, "one")
    assert column(before, "target") == {"mx1": 0.75, "mx2": 0.25, "mx3": 0.0}
    for _ in range(40):  # ten cycles of 3:1
        hosts(server, "one")
    assert mail_since(before, members_of(server, "one")) == {"mx1": 0.75, "mx2": 0.25, "mx3": 0.0}
    wait_until(lambda: all(m["status"] == "up" for m in members_of(server, "checked").values()) or None,
               timeout=10)
    listeners[0].stop()  # mx1 of `checked` goes down
    before = wait_until(lambda: (found := members_of(server, "checked"))["mx1"]["status"] == "down" and found
                        or None, timeout=10)
    assert column(before, "target") == {"mx1": 0.0, "mx2": 0.5, "mx3": 0.5}
    for _ in range(20):
        hosts(server, "checked")
    assert mail_since(before, members_of(server, "checked")) == {"mx1": 0.0, "mx2": 0.5, "mx3": 0.5}
