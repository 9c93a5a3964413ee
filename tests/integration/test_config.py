"""``authdns serve --config FILE``: settings from YAML, flags winning, mistakes with
``file:line:column``.

Checks: a file alone runs the server (zones and state dir relative to the file, listen
address, workers, no watcher); its values are those the server uses (EDNS payload, TCP
idle timeout); flags given on the command line win over it, lists replaced not merged;
each kind of mistake exits 1 with the exact place and no traceback; ``status`` and
``ctl`` given the same file find the server it configures, a flag still winning.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import dns.message
import dns.query
import pytest

from conftest import SHIPPED_ZONES, authdns_command, run_authdns, start_server, stop_server, wait_until
from support import closed_by_peer, free_port, tcp_connect


def test_a_config_file_alone_runs_the_server(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(SHIPPED_ZONES, site / "zones")
    port = free_port()
    config = site / "authdns.yaml"
    config.write_text(f"""# what /etc/authdns/authdns.yaml holds on a host
zones: zones            # relative: beside this file
state_dir: state
listen:
  - 127.0.0.1:{port}
workers: 1
loop: asyncio
watch: false
udp_payload: 1400
""")
    process = subprocess.Popen(authdns_command("serve", "--config", config), cwd=tmp_path,
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True).start()
    try:
        wait_until(lambda: any(f"ready port={port}" in line for line in list(lines)) or None, timeout=15)
        query = dns.message.make_query("example.test", "SOA", use_edns=0, payload=4096)
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
        assert reply.answer and reply.payload == 1400
        assert (site / "state" / "control.sock").is_socket()
        assert not any("watching zone directory" in line for line in list(lines))
        # The client commands read the same file: they find this server's control socket
        # (state_dir relative to the file) from another directory, with no --state-dir.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        status = run_authdns("status", "--config", config, "--json", cwd=elsewhere, timeout=15)
        assert status.returncode == 0, status.stderr
        assert "example.test." in status.stdout
        reload = run_authdns("ctl", "--config", config, "reload", cwd=elsewhere, timeout=15)
        assert reload.returncode == 0, reload.stderr
        wrong = run_authdns("status", "--config", config, "--state-dir", "nowhere", cwd=elsewhere, timeout=15)
        assert wrong.returncode == 1 and "nowhere/control.sock" in wrong.stderr  # a flag still wins
    finally:
        stop_server(process)


@pytest.mark.slow
def test_flags_win_over_the_file(zone_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "authdns.yaml"
    # Every value here is overridden by start_server's flags, or the server could not
    # start: 192.0.2.1 is not this host's; zones/ does not exist beside the file.
    config.write_text("listen: ['192.0.2.1:53']\nzones: nowhere\nworkers: 2\ntcp_idle_timeout: 1\n")
    server = start_server(zone_dir, "--config", str(config))
    try:
        assert server.wait_for_log(r"ready port=\d+ zones=3 workers=1")
        with tcp_connect(server.host, server.port, timeout=3.0) as sock:  # the file's idle timeout applies
            wait_until(lambda: closed_by_peer(sock) or None, timeout=4)
    finally:
        stop_server(server.process)


@pytest.mark.parametrize("text, message", [
    ("workers: lots\n", "authdns.yaml:1:10: workers: 'lots' is not 'auto' or a whole number from 1 to 256"),
    ("zonez: zones\n", "authdns.yaml:1:1: unknown setting 'zonez'; settings: allow_transfer, client_rotors, control"),
    ("listen: [127.0.0.1:53, nowhere]\n", "authdns.yaml:1:24: listen: 'nowhere' is not an IP address"),
    ("watch: sometimes\n", "authdns.yaml:1:8: watch is true or false"),
    ("loop: fastest\n", "authdns.yaml:1:7: loop is one of auto, asyncio, uvloop, not 'fastest'"),
    ("- zones\n", "authdns.yaml:1:1: the configuration is a mapping of settings"),
    ("zones: [a\n", "authdns.yaml:2:1: YAML syntax"),
    ("workers: 1\nworkers: 2\n", "authdns.yaml:2:1: "),
    ("udp_payload: 100\n", "authdns.yaml:1:14: udp_payload: '100' is not a size from 512 to 65535"),
])
def test_mistakes_name_the_place(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "authdns.yaml"
    config.write_text(text)
    result = run_authdns("serve", "--config", config, timeout=30)
    assert result.returncode == 1, result.stderr
    assert f"authdns serve: {config.parent}/{message}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    result = run_authdns("serve", "--config", tmp_path / "none.yaml", timeout=30)
    assert result.returncode == 1
    assert "none.yaml: cannot read the configuration: No such file or directory" in result.stderr
