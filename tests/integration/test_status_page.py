"""``serve --metrics ADDR:PORT``: Prometheus /metrics, /status.json and the status page,
against a server with two workers whose MX pool is probed on real SMTP listeners (one of
them stopped, so its member is down).

Checks: /metrics is valid Prometheus text (parsed by prometheus_client's parser) whose
numbers match what the test did (MX queries by type, first places summed over workers,
the serial dnspython sees, the down member's state, probe counts, the share each member
should get); /status.json gives each member the share of mail it should get (the down
one 0, the others half each) and the mail a sender got, summed over workers, exactly; a
zone file broken by a reload shows its error in /status.json while the old version keeps
serving; headless Chromium renders the page (no external assets), listing every member
with the stopped one as down and its "should get" column, and a screenshot is kept in
test-artifacts/status-page.png.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, ServerProcess, start_server, stop_server, wait_until
from smtp_listeners import FakeSmtp
from support import probed_pool_zone, write_zone

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out

ORIGIN = "page.test"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerProcess, str, list[FakeSmtp]]]:
    listeners = [FakeSmtp("ok").start() for _ in range(3)]
    zones = tmp_path / "zones"
    zones.mkdir()
    write_zone(zones, ORIGIN, probed_pool_zone([smtp.port for smtp in listeners]))
    server = start_server(zones, "--metrics", "127.0.0.1:0", workers=2)
    try:
        port = int(re.search(r"port=(\d+)", server.wait_for_log(r"metrics and status page http://")).group(1))
        listeners[0].stop()  # mx1 goes down
        wait_until(lambda: all("mx1" not in _exchanges(server) for _ in range(3)) or None)
        yield server, f"http://127.0.0.1:{port}", listeners
    finally:
        stop_server(server.process)
        for smtp in listeners:
            smtp.stop()


def _exchanges(server: ServerProcess) -> set[str]:
    reply = server.query(f"pool.{ORIGIN}", "MX")
    return {record.exchange.to_text().split(".")[0] for record in reply.answer[0]}


def fetch(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_match_what_happened(served) -> None:
    server, base, _ = served
    before = samples(fetch(base + "/metrics")[1])
    mx_before = before.get(("authdns_queries_by_type_total", (("type", "MX"),)), 0)
    firsts_before = sum(value for (name, _), value in before.items() if name == "authdns_member_first_total")
    for _ in range(30):
        _exchanges(server)
    content_type, text = fetch(base + "/metrics")
    assert content_type.startswith("text/plain; version=0.0.4")
    after = samples(text)
    assert after[("authdns_queries_by_type_total", (("type", "MX"),))] - mx_before == 30
    firsts = sum(value for (name, _), value in after.items() if name == "authdns_member_first_total")
    assert firsts - firsts_before == 30  # summed over both workers
    member = (("member", f"mx1.{ORIGIN}."), ("owner", f"pool.{ORIGIN}."), ("state", "down"), ("type", "MX"))
    assert after[("authdns_member_state", member)] == 1.0
    targets = {dict(labels)["member"]: value for (name, labels), value in after.items()
               if name == "authdns_member_target_share"}
    assert targets == {f"mx1.{ORIGIN}.": 0.0, f"mx2.{ORIGIN}.": 0.5, f"mx3.{ORIGIN}.": 0.5}
    serial = server.query(ORIGIN, "SOA").answer[0][0].serial
    assert after[("authdns_zone_serial", (("zone", f"{ORIGIN}."),))] == serial
    assert after[("authdns_workers", ())] == 2
    probes = [value for (name, labels), value in after.items() if name == "authdns_health_probes_total"]
    assert sum(probes) >= 3
    count = after[("authdns_response_seconds_count", ())]
    assert after[("authdns_response_seconds_bucket", (("le", "+Inf"),))] == count


def test_status_json_shows_what_each_member_should_get(served) -> None:
    """Round robin over three with mx1 down: mx1 should get nothing, the others half each;
    every answer carries both, so a sender gives each half of every answer's mail
    (summed over the two workers)."""
    server, base, _ = served

    def members() -> dict[str, dict]:
        (rrset,) = json.loads(fetch(base + "/status.json")[1])["rrsets"]
        return {member["member"].split(".")[0]: member for member in rrset["members"]}

    before = members()
    for _ in range(30):
        _exchanges(server)
    after = members()
    assert {name: member["target"] for name, member in after.items()} == {"mx1": 0.0, "mx2": 0.5, "mx3": 0.5}
    assert {name: after[name]["mail"] - before[name]["mail"] for name in after} == {"mx1": 0, "mx2": 15, "mx3": 15}


def test_a_failed_reload_shows_its_error(served) -> None:
    server, base, listeners = served
    path = server.zone_dir / f"{ORIGIN}.yaml"
    path.write_text(path.read_text().replace("    NS: ns1\n", "    NS: [ns1\n"))
    def problems() -> list[str] | None:
        data = json.loads(fetch(base + "/status.json")[1])
        zone = next(zone for zone in data["zones"] if zone["origin"] == f"{ORIGIN}.")
        return zone["problems"] or None
    lines = wait_until(problems, timeout=10)
    assert re.match(rf".*{ORIGIN}\.yaml:\d+:\d+: YAML syntax", lines[0]), lines
    assert server.query(ORIGIN, "SOA").answer  # the previous version keeps serving


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (Debian: chromium)")
def test_page_renders_in_a_browser(served, tmp_path: Path) -> None:
    server, base, _ = served
    for _ in range(12):
        _exchanges(server)
    _, page = fetch(base + "/")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page loads nothing from elsewhere"
    browser = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=4000"]
    stop = threading.Event()

    def ask() -> None:  # answers flowing while the page polls, so its chart has lines
        for _ in range(3000):  # bounded: the browser takes a few seconds
            if stop.is_set():
                return
            _exchanges(server)

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    try:
        dom = subprocess.run(browser + ["--dump-dom", base + "/"], capture_output=True, text=True, timeout=120,
                             check=False).stdout
    finally:
        stop.set()
        asking.join(timeout=10)
    rows = dict(re.findall(r'<tr data-member="([^"]+)">.*?<td class="status (\w+)">', dom))
    assert rows == {f"mx1.{ORIGIN}.": "down", f"mx2.{ORIGIN}.": "up", f"mx3.{ORIGIN}.": "up"}, dom[-3000:]
    assert f"<td>{ORIGIN}.</td>" in dom and "2 workers" in dom
    assert "<svg" in dom and "<polyline" in dom  # the share chart has lines once answers flow
    should_get = dict(re.findall(r'<tr data-member="([^"]+)">.*?<td class="num target">([^<]*)</td>', dom))
    assert should_get == {f"mx1.{ORIGIN}.": "0.0%", f"mx2.{ORIGIN}.": "50.0%", f"mx3.{ORIGIN}.": "50.0%"}
    assert "<th title=\"its effective weight over its group's\">should get</th>" in dom
    assert dom.split("<script>")[0].count('<line class="target"') == 3  # a dashed target line per member
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "status-page.png"
    shot.unlink(missing_ok=True)
    subprocess.run(browser + [f"--screenshot={shot}", "--window-size=1200,900", base + "/"], capture_output=True,
                   timeout=120, check=False)
    assert shot.exists() and shot.stat().st_size > 10_000
