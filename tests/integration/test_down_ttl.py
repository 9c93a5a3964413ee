"""The short TTL of a balanced RRset while a member is unsettled, against a real server
probing real SMTP listeners on loopback, watched with dnspython (README, "Health checks").

* every member up and settled since start: the RRset's own TTL (the first result at
  start is no flip), in the answer section over UDP and TCP;
* a member down: answers carry ``down_ttl``; back up: still ``down_ttl`` while it
  settles, then the own TTL again without any further probe result changing (the
  monitor's settle timer republishes);
* a degraded member (421 greeting) keeps the RRset at ``down_ttl``;
* ``status`` says which TTL is served and why; the MX answer's additional addresses
  keep their own TTL (only the balanced RRset is shortened);
* all of it with ``--workers 2`` too.
"""

from __future__ import annotations

import dns.message
import dns.query
import dns.rdatatype
import pytest

from conftest import ServerProcess, status_json, wait_until
from smtp_listeners import FakeSmtp
from support import write_zone

INTERVAL, TIMEOUT, RISE, FALL = 0.2, 0.5, 2, 2
DOWN_TTL, SETTLE, TTL = 7, 2.0, 120
BOUND = INTERVAL * max(RISE, FALL) + TIMEOUT + 3.0  # detection plus slack on a loaded machine
ORIGIN = "downttl.test"


def zone_text(ports: dict[str, int]) -> str:
    def member(name: str) -> str:
        return f"        - {{preference: 10, exchange: {name}, probe: '127.0.0.1:{ports[name]}'}}\n"

    return f"""
ttl: 3600
checks:
  smtp: {{kind: smtp, interval: {INTERVAL}, timeout: {TIMEOUT}, rise: {RISE}, fall: {FALL},
          down_ttl: {DOWN_TTL}, settle: {SETTLE}}}
records:
  "@":
    NS: ns1
  ns1: {{A: 192.0.2.1}}
  pool:
    MX:
      ttl: {TTL}
      check: smtp
      records:
{member("mx1")}{member("mx2")}
  busy:
    MX:
      ttl: {TTL}
      check: smtp
      records:
{member("mx1")}{member("slow")}
  mx1: {{A: 192.0.2.11}}
  mx2: {{A: 192.0.2.12}}
  slow: {{A: 192.0.2.13}}
"""


@pytest.fixture
def listeners():
    started = {"mx1": FakeSmtp("ok"), "mx2": FakeSmtp("ok"), "slow": FakeSmtp("busy")}
    for listener in started.values():
        listener.start()
    yield started
    for listener in started.values():
        listener.stop()


@pytest.fixture(params=[(), ("--workers", "2")], ids=["single", "workers"])
def server(request, listeners, tmp_path, server_factory) -> ServerProcess:
    """One process, and workers: the supervisor's monitor sends each view (the settle
    timer's too) to the workers that answer."""
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, zone_text({name: listener.port for name, listener in listeners.items()}))
    return server_factory(zone_dir, *request.param)


def mx_ttls(server: ServerProcess, name: str, tcp: bool = False) -> tuple[int, set[str], dict[str, int]]:
    """The MX RRset's TTL, its exchanges, and the additional A records' TTLs."""
    query = dns.message.make_query(f"{name}.{ORIGIN}", "MX")
    send = dns.query.tcp if tcp else dns.query.udp
    reply = send(query, server.host, port=server.port, timeout=2)
    (mx,) = [rrset for rrset in reply.answer if rrset.rdtype == dns.rdatatype.MX]
    additional = {rrset.name.labels[0].decode(): rrset.ttl for rrset in reply.additional}
    return mx.ttl, {rdata.exchange.labels[0].decode() for rdata in mx}, additional


def served(server: ServerProcess, owner: str) -> dict:
    (rrset,) = [entry for entry in status_json(server.state_dir)["rrsets"] if entry["owner"] == f"{owner}.{ORIGIN}."]
    return rrset


def test_settled_members_get_the_full_ttl(server: ServerProcess) -> None:
    for tcp in (False, True):
        ttl, members, additional = mx_ttls(server, "pool", tcp)
        assert (ttl, members) == (TTL, {"mx1", "mx2"})
        assert additional == {"mx1": 3600, "mx2": 3600}
    entry = served(server, "pool")
    assert entry["served_ttl"] == TTL and entry["short_ttl"] is None
    # the timeout is above the interval: failing probes start timeout + close wait + 0.05 s apart
    period = max(INTERVAL, TIMEOUT + 0.1 + 0.05)
    assert entry["check"]["failover_bound"] == pytest.approx(INTERVAL + (FALL - 1) * period + TIMEOUT + 0.1 + TTL)


def test_down_then_settling_then_full_ttl(server: ServerProcess, listeners: dict[str, FakeSmtp]) -> None:
    listeners["mx2"].stop()
    wait_until(lambda: mx_ttls(server, "pool")[:2] == (DOWN_TTL, {"mx1"}) or None, timeout=BOUND, interval=0.05)
    ttl, members, additional = mx_ttls(server, "pool", tcp=True)
    assert (ttl, members, additional) == (DOWN_TTL, {"mx1"}, {"mx1": 3600})
    assert "mx2" in served(server, "pool")["short_ttl"] and "down" in served(server, "pool")["short_ttl"]

    listeners["mx2"].restart()
    wait_until(lambda: mx_ttls(server, "pool")[1] == {"mx1", "mx2"} or None, timeout=BOUND, interval=0.05)
    ttl, _, _ = mx_ttls(server, "pool")
    entry = served(server, "pool")
    # Back up, but within `settle` of its flip: still short, and status says why.
    assert ttl == DOWN_TTL and entry["served_ttl"] == DOWN_TTL and "settling" in entry["short_ttl"]
    # Nothing else changes; the settle timer alone brings the full TTL back.
    wait_until(lambda: mx_ttls(server, "pool")[0] == TTL or None, timeout=SETTLE + 3.0, interval=0.05)
    assert served(server, "pool")["short_ttl"] is None


def test_degraded_member_keeps_the_down_ttl(server: ServerProcess) -> None:
    ttl, members, _ = mx_ttls(server, "busy")
    assert (ttl, members) == (DOWN_TTL, {"mx1", "slow"})  # degraded stays in, at a quarter of its weight
    assert f"slow.{ORIGIN}. degraded" in served(server, "busy")["short_ttl"]
