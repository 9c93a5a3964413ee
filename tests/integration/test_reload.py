"""Hot reload against a running server: every way tools write files, served within 1 s,
one reload per change; broken files keep the old zone; serials; reloads under load.

Checks:
* in place, temporary file + rename, delete + create, the directory replaced (rename),
  and ``git checkout`` of another commit: the new data is answered within 1 s of the
  write, and exactly one ``zone reloaded`` line is logged per change;
* a new file starts serving; a deleted file's zone is REFUSED once the delete grace is over;
* bad YAML, a bad record, an MX to a CNAME: the log names ``file:line:column``, status
  lists the problem, the old answers stay; the fixed file is served;
* generated serials: grow on each content change, stay for unchanged content (a touch,
  a restart), grow across a restart when the content changed; an explicit serial that
  did not grow is warned about (reload log and ``authdns check --state-dir``);
* ``authdns ctl reload`` prints what changed; SIGHUP reloads;
* under continuous UDP load, 50 reloads: no query lost, no SERVFAIL, and every answer
  wholly from one version (MX target, its address and the version agree).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from conftest import ServerProcess, run_authdns, start_server, stop_server, wait_until
from support import write_zone

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out

ORIGIN = "rl.test"
DEADLINE = 1.0  # the issue: a change is served within 1 s of the write


def zone_text(version: int, serial: int | None = None) -> str:
    soa = f"  \"@\":\n    SOA: {{serial: {serial}}}\n    NS: ns1\n" if serial is not None else '  "@": {NS: ns1}\n'
    return (f"ttl: 60\nrecords:\n{soa}  ns1: {{A: 192.0.2.1}}\n"
            f"  pool: {{MX: 10 mx{version}, TXT: v{version}}}\n  mx{version}: {{A: 192.0.2.{version % 250 + 1}}}\n")


def version_of(server: ServerProcess) -> int | None:
    reply = server.query(f"pool.{ORIGIN}", "TXT", timeout=1.0)
    if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
        return None
    return int(reply.answer[0][0].strings[0].decode()[1:])


def reload_lines(server: ServerProcess) -> int:
    return sum(f"zone reloaded origin={ORIGIN}." in line for line in list(server.log))


def served_within(server: ServerProcess, version: int, written_at: float) -> float:
    wait_until(lambda: True if version_of(server) == version else None, timeout=5.0, interval=0.01)
    return time.monotonic() - written_at


def settle() -> None:
    """Let a debounce window pass, to see whether a change caused a second reload.
    (Proving that an event does not happen takes waiting; bounded by the watcher's limits.)"""
    time.sleep(1.0)


@pytest.fixture
def server(tmp_path: Path, server_factory) -> ServerProcess:
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, zone_text(1))
    return server_factory(zone_dir)


def write_in_place(path: Path, text: str) -> None:
    with open(path, "r+", encoding="utf-8") as stream:
        stream.truncate(0)
        stream.write(text)


def write_by_rename(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_delete_create(path: Path, text: str) -> None:
    path.unlink()
    path.write_text(text)


def replace_directory(path: Path, text: str) -> None:
    zone_dir = path.parent
    fresh = zone_dir.with_name("zones.new")
    fresh.mkdir()
    (fresh / path.name).write_text(text)
    old = zone_dir.with_name("zones.old")
    os.rename(zone_dir, old)
    os.rename(fresh, zone_dir)
    shutil.rmtree(old)


@pytest.mark.parametrize("write", [write_in_place, write_by_rename, write_delete_create, replace_directory],
                         ids=["in-place", "temp-and-rename", "delete-and-create", "directory-replaced"])
def test_each_editing_style(server: ServerProcess, write) -> None:
    path = server.zone_dir / f"{ORIGIN}.yaml"
    assert version_of(server) == 1
    for version in (2, 3):
        before = reload_lines(server)
        written = time.monotonic()
        write(path, zone_text(version))
        elapsed = served_within(server, version, written)
        assert elapsed < DEADLINE, f"version {version} served {elapsed:.2f} s after the write"
        print(f"\n{write.__name__}: version {version} served {elapsed:.3f} s after the write")
        settle()
        assert reload_lines(server) == before + 1, "exactly one reload per change"


def test_git_checkout(tmp_path: Path, server_factory) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    zone_dir = repo / "zones"
    write_zone(zone_dir, ORIGIN, zone_text(1))
    environment = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.test",
                       GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.test")

    def run(*args: str) -> None:
        subprocess.run([git, *args], cwd=repo, check=True, capture_output=True, env=environment, timeout=30)

    run("init", "-q")
    run("add", ".")
    run("commit", "-q", "-m", "one")
    (zone_dir / f"{ORIGIN}.yaml").write_text(zone_text(2))
    write_zone(zone_dir, "extra.test", 'records:\n  "@": {NS: ns1.rl.test.}\n')
    run("add", ".")
    run("commit", "-q", "-m", "two")
    run("checkout", "-q", "HEAD~1")
    server = server_factory(zone_dir)
    assert version_of(server) == 1
    before = reload_lines(server)
    written = time.monotonic()
    run("checkout", "-q", "-")
    elapsed = served_within(server, 2, written)
    print(f"\ngit checkout: served {elapsed:.3f} s after the checkout")
    assert elapsed < DEADLINE
    wait_until(lambda: True if server.query("extra.test", "SOA").rcode() == dns.rcode.NOERROR else None, timeout=2)
    settle()
    assert reload_lines(server) == before + 1


def test_new_and_deleted_files(server: ServerProcess) -> None:
    other = write_zone(server.zone_dir, "new.test", 'records:\n  "@": {NS: ns1.rl.test.}\n')
    wait_until(lambda: True if server.query("new.test", "SOA").rcode() == dns.rcode.NOERROR else None, timeout=2)
    other.unlink()
    # Kept for the delete grace (3 s by default: delete-then-create must not drop it), then REFUSED.
    wait_until(lambda: True if server.query("new.test", "SOA").rcode() == dns.rcode.REFUSED else None, timeout=10)
    assert any("zone removed origin=new.test." in line for line in server.log)
    assert version_of(server) == 1, "the other zone is untouched"


@pytest.mark.parametrize("broken,position,message", [
    ("records:\n  pool: {MX: [10 mx1\n", r":3:\d+: ", "YAML syntax"),
    ('records:\n  "@": {NS: ns1}\n  ns1: {A: 192.0.2.300}\n', ":3:12: ", "is not an IPv4 address"),
    ('records:\n  "@": {NS: ns1}\n  ns1: {A: 192.0.2.1}\n  pool: {MX: 10 alias}\n  alias: {CNAME: ns1}\n',
     ":4:14: ", "is a CNAME"),
], ids=["bad-yaml", "bad-record", "mx-to-cname"])
def test_broken_file_keeps_the_old_zone(server: ServerProcess, broken: str, position: str, message: str) -> None:
    path = server.zone_dir / f"{ORIGIN}.yaml"
    write_by_rename(path, broken)
    pattern = re.escape(str(path)) + position + ".*" + re.escape(message)
    server.wait_for_log(pattern, timeout=3)
    server.wait_for_log(r"zone not loaded file=.*previous version keeps serving", timeout=3)
    assert version_of(server) == 1
    status = run_authdns("status", "--state-dir", server.state_dir, timeout=30)
    assert re.search(pattern, status.stdout), status.stdout
    write_by_rename(path, zone_text(4))
    wait_until(lambda: True if version_of(server) == 4 else None, timeout=3)


def serial_of(server: ServerProcess, origin: str = ORIGIN) -> int:
    return server.query(origin, "SOA").answer[0][0].serial


def test_generated_serials(tmp_path: Path) -> None:
    zone_dir = tmp_path / "zones"
    path = write_zone(zone_dir, ORIGIN, zone_text(1))
    state = tmp_path / "state"
    server = start_server(zone_dir, "--state-dir", str(state))
    try:
        first = serial_of(server)
        assert abs(first - time.time()) < 10, "new content: the time"
        os.utime(path)  # touched, same content: same serial
        write_by_rename(path, zone_text(1))
        settle()
        assert serial_of(server) == first
        write_by_rename(path, zone_text(2))
        wait_until(lambda: True if version_of(server) == 2 else None, timeout=3)
        second = serial_of(server)
        write_by_rename(path, zone_text(3))  # within the same second: still grows
        wait_until(lambda: True if version_of(server) == 3 else None, timeout=3)
        third = serial_of(server)
        assert first < second < third
    finally:
        stop_server(server.process)
    server = start_server(zone_dir, "--state-dir", str(state))
    try:
        assert serial_of(server) == third, "restart, same content: same serial"
    finally:
        stop_server(server.process)
    path.write_text(zone_text(5))
    server = start_server(zone_dir, "--state-dir", str(state))
    try:
        assert serial_of(server) > third, "restart, new content: greater"
    finally:
        stop_server(server.process)


def test_explicit_serial_not_increased_is_warned(server: ServerProcess) -> None:
    path = server.zone_dir / f"{ORIGIN}.yaml"
    write_by_rename(path, zone_text(2, serial=100))
    wait_until(lambda: True if version_of(server) == 2 else None, timeout=3)
    write_by_rename(path, zone_text(3, serial=100))
    wait_until(lambda: True if version_of(server) == 3 else None, timeout=3)
    server.wait_for_log(r"warning: .*the content changed but the SOA serial did not increase \(100 -> 100\)")
    # A change prepared outside the watched directory, checked before it goes live.
    candidate = write_zone(server.zone_dir.parent / "candidate", ORIGIN, zone_text(4, serial=100))
    check = run_authdns("check", candidate, "--state-dir", server.state_dir, timeout=30)
    assert check.returncode == 0 and "did not increase (100 -> 100)" in check.stdout, check.stdout


def test_ctl_reload_and_sighup(tmp_path: Path, server_factory) -> None:
    zone_dir = tmp_path / "zones"
    path = write_zone(zone_dir, ORIGIN, zone_text(1))
    server = server_factory(zone_dir, "--no-watch")
    path.write_text(zone_text(2))
    settle()
    assert version_of(server) == 1, "--no-watch: nothing reloads by itself"
    result = run_authdns("ctl", "--state-dir", server.state_dir, "reload", timeout=30)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"{ORIGIN}\. serial \d+ -> \d+: rrsets added=1 removed=1 changed=3", result.stdout), result.stdout
    assert "1 zone(s) changed, 0 unchanged, 0 failed" in result.stdout
    assert version_of(server) == 2
    path.write_text(zone_text(3))
    os.kill(server.process.pid, signal.SIGHUP)
    wait_until(lambda: True if version_of(server) == 3 else None, timeout=3)


def test_fifty_reloads_under_load(server: ServerProcess) -> None:
    path = server.zone_dir / f"{ORIGIN}.yaml"
    stop = threading.Event()
    tally = {"answers": 0, "lost": 0, "servfail": 0, "mixed": 0, "versions": set()}

    def client() -> None:
        deadline = time.monotonic() + 120  # bounded in time, and in count below
        for _ in range(200_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            query = dns.message.make_query(f"pool.{ORIGIN}", "MX")
            try:
                reply = dns.query.udp(query, server.host, port=server.port, timeout=2.0)
            except dns.exception.Timeout:
                tally["lost"] += 1
                continue
            tally["answers"] += 1
            if reply.rcode() == dns.rcode.SERVFAIL:
                tally["servfail"] += 1
                continue
            target = reply.answer[0][0].exchange
            version = int(target.labels[0][2:])
            glue = [rrset for rrset in reply.additional if rrset.name == target]
            if len(glue) != 1 or glue[0][0].address != f"192.0.2.{version % 250 + 1}":
                tally["mixed"] += 1
            tally["versions"].add(version)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        for version in range(2, 52):
            write_by_rename(path, zone_text(version))
            wait_until(lambda: True if version_of(server) == version else None, timeout=5, interval=0.005)
    finally:
        stop.set()
        thread.join(timeout=10)
    print(f"\n50 reloads under load: {tally['answers']} answers, {len(tally['versions'])} versions seen, "
          f"lost {tally['lost']}, SERVFAIL {tally['servfail']}, mixed {tally['mixed']}")
    assert reload_lines(server) >= 50
    assert tally["answers"] > 500
    assert (tally["lost"], tally["servfail"], tally["mixed"]) == (0, 0, 0)
    assert len(tally["versions"]) >= 10


# ---------------------------------------------------------------- review findings


def test_symlinked_zones_directory_swapped(tmp_path: Path, server_factory) -> None:
    """Releases deployed by swapping a symlink (`ln -s releases/v2 tmp && mv tmp current`)."""
    releases = tmp_path / "releases"
    write_zone(releases / "v1", ORIGIN, zone_text(1))
    write_zone(releases / "v2", ORIGIN, zone_text(2))
    current = tmp_path / "current"
    current.symlink_to(releases / "v1")
    server = server_factory(current)
    assert version_of(server) == 1
    swap = tmp_path / "current.tmp"
    swap.symlink_to(releases / "v2")
    written = time.monotonic()
    os.replace(swap, current)
    assert served_within(server, 2, written) < DEADLINE
    write_by_rename(releases / "v2" / f"{ORIGIN}.yaml", zone_text(3))  # the new target is watched
    wait_until(lambda: True if version_of(server) == 3 else None, timeout=3)


def test_configmap_style_data_link(tmp_path: Path, server_factory) -> None:
    """Kubernetes ConfigMap volumes: zone files are links into `..data`, itself a link
    swapped to a new timestamped directory on each update."""
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir / "..v1", ORIGIN, zone_text(1))
    (zone_dir / "..data").symlink_to("..v1")
    (zone_dir / f"{ORIGIN}.yaml").symlink_to(f"..data/{ORIGIN}.yaml")
    server = server_factory(zone_dir)
    assert version_of(server) == 1
    write_zone(zone_dir / "..v2", ORIGIN, zone_text(2))
    (zone_dir / "..data_tmp").symlink_to("..v2")
    written = time.monotonic()
    os.replace(zone_dir / "..data_tmp", zone_dir / "..data")
    assert served_within(server, 2, written) < DEADLINE


def test_symlinked_zone_file_target_edited_elsewhere(tmp_path: Path, server_factory) -> None:
    elsewhere = write_zone(tmp_path / "src", ORIGIN, zone_text(1))
    zone_dir = tmp_path / "zones"
    zone_dir.mkdir()
    (zone_dir / f"{ORIGIN}.yaml").symlink_to(elsewhere)
    server = server_factory(zone_dir)
    written = time.monotonic()
    write_in_place(elsewhere, zone_text(2))
    assert served_within(server, 2, written) < DEADLINE


def test_write_during_a_load_is_not_served_half_written(server: ServerProcess) -> None:
    """A big zone's change triggers a load; meanwhile another file is written in place:
    a first part that alone is a valid, smaller zone, the file held open past the end of
    that load, then the rest. The first part alone must never be served."""
    big = "".join(f"  h{index}: {{A: 10.0.{index // 256}.{index % 256}}}\n" for index in range(20000))
    other = write_zone(server.zone_dir, "b.test", 'records:\n  "@": {NS: ns1.rl.test.}\n  x: {TXT: one}\n'
                       '  y: {TXT: one}\n')
    wait_until(lambda: True if server.query("y.b.test", "TXT").answer else None, timeout=5)
    path = server.zone_dir / f"{ORIGIN}.yaml"
    stop = threading.Event()
    seen = []

    def watch() -> None:
        while not stop.is_set():
            x, y = server.query("x.b.test", "TXT"), server.query("y.b.test", "TXT")
            seen.append((x.answer[0][0].strings[0] if x.answer else None,
                         y.answer[0][0].strings[0] if y.answer else None))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        with open(other, "w") as stream:
            stream.write('records:\n  "@": {NS: ns1.rl.test.}\n  x: {TXT: two}\n')
            stream.flush()
            write_by_rename(path, zone_text(2) + big)  # the load starts while b.test is half written
            server.wait_for_log(r"reload done trigger=watch.*rl\.test\.yaml", timeout=60)
            stream.write("  y: {TXT: two}\n")
        wait_until(lambda: True if seen and seen[-1] == (b"two", b"two") else None, timeout=30)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert version_of(server) == 2
    assert (b"two", None) not in seen, "the half-written file was served"


def test_two_files_for_one_origin(server: ServerProcess) -> None:
    broken = server.zone_dir / f"{ORIGIN}.yml"  # sorts after .yaml: .yaml serves
    broken.write_text("records: [")
    path = server.zone_dir / f"{ORIGIN}.yaml"
    write_by_rename(path, zone_text(2))
    wait_until(lambda: True if version_of(server) == 2 else None, timeout=3)


def test_zones_directory_briefly_missing(server: ServerProcess) -> None:
    source = server.zone_dir.parent / "source"
    write_zone(source, ORIGIN, zone_text(2))
    shutil.rmtree(server.zone_dir)
    server.wait_for_log("zone directory is missing", timeout=3)
    assert version_of(server) == 1, "still served while the directory is gone"
    shutil.copytree(source, server.zone_dir)
    wait_until(lambda: True if version_of(server) == 2 else None, timeout=3)


def test_unreadable_serials_file_is_set_aside(tmp_path: Path) -> None:
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, zone_text(1))
    state = tmp_path / "state"
    state.mkdir()
    (state / "serials.json").write_text('{"rl.test.": ["abc", 12')
    server = start_server(zone_dir, "--state-dir", str(state))
    try:
        assert any("cannot read remembered serials" in line for line in server.log)
        assert any(p.name.startswith("serials.json.unreadable-") for p in state.iterdir())
        assert abs(serial_of(server) - time.time()) < 10
    finally:
        stop_server(server.process)


def test_export_is_read_only(server: ServerProcess) -> None:
    before = (server.state_dir / "serials.json").read_bytes()
    served = serial_of(server)
    candidate = write_zone(server.zone_dir.parent / "candidate", ORIGIN, zone_text(9))
    for path in (server.zone_dir / f"{ORIGIN}.yaml", candidate):
        result = run_authdns("export", path, "--state-dir", server.state_dir, timeout=30)
        assert result.returncode == 0
    exported = run_authdns("export", server.zone_dir / f"{ORIGIN}.yaml", "--state-dir", server.state_dir,
                           timeout=30).stdout
    assert f" {served} " in exported, "served content: the served serial"
    assert (server.state_dir / "serials.json").read_bytes() == before
