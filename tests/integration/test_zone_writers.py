"""Zone files are never served half-written, whatever the writer does (issue 15, items 2,
3, 4, 5 and 12), against a real server queried continuously while the writer runs.

Checks, with the counts printed (-s): for each writer pattern, every answer for a name
present in every complete version is right (0 NXDOMAIN or wrong data) and none is
REFUSED:
* half the file written, closed, the rest appended 0.3 s later (the settle time);
* the file deleted, 0.3 s without it, written again (the delete grace);
* a case variant (``ZW.test.yaml``) and a trailing-dot variant (``zw.test..yaml``)
  added beside the served file: refused with an error naming both files, the served
  zone unchanged; at start-up the plainly named file serves and the error names both;
* a load that fails (the server out of descriptors) is tried again, with no further
  file event, and the new version served once descriptors are free;
* a change that removes most of the zone, followed 1 s later by the complete file: the
  cut version is held and never served; a real large removal is served after the hold;
* item 12: an unreadable zones directory is a one-line error at start-up (exit 1, no
  traceback) and, while running, a logged error, SIGHUP without "Task exception", and
  ``ctl reload`` exiting 1 with the reason; remembered serials that cannot be saved
  make ``ctl reload`` exit 1 with the reason while the new zone is served; a NUL byte
  is reported at its line and column; the parent of the zones directory is not watched.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from conftest import ServerProcess, authdns_command, fresh_state_dir, run_authdns, start_server, stop_server, wait_until
from support import write_zone

pytestmark = pytest.mark.slow  # writers that pause on purpose: seconds per test

ORIGIN = "zw.test"
HOSTS = 120
QUERY_LIMIT = 40_000  # every query loop is bounded in count and in time
QUERY_SECONDS = 60.0


def zone_text(version: int, hosts: int = HOSTS) -> str:
    """A zone whose hosts h0..h{hosts-1} have the same address in every version; only
    ``ver`` says which version is served."""
    lines = ["ttl: 60", "records:", '  "@": {NS: ns1}', "  ns1: {A: 192.0.2.1}", f"  ver: {{TXT: v{version}}}"]
    lines += [f"  h{index}: {{A: 10.0.{index // 250}.{index % 250 + 1}}}" for index in range(hosts)]
    return "\n".join(lines) + "\n"


def address(index: int) -> str:
    return f"10.0.{index // 250}.{index % 250 + 1}"


def version_of(server: ServerProcess) -> int | None:
    reply = server.query(f"ver.{ORIGIN}", "TXT", timeout=1.0)
    if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
        return None
    return int(reply.answer[0][0].strings[0].decode()[1:])


def wait_for_version(server: ServerProcess, version: int, timeout: float = 10.0) -> None:
    wait_until(lambda: True if version_of(server) == version else None, timeout=timeout)


class Tally:
    def __init__(self) -> None:
        self.answers = self.wrong = self.refused = self.lost = 0

    def __str__(self) -> str:
        return f"{self.answers} answers, {self.wrong} wrong, {self.refused} REFUSED, {self.lost} lost"


@contextmanager
def querying(server: ServerProcess, hosts: int = HOSTS) -> Iterator[Tally]:
    """Ask for h0..h{hosts-1} in turn (the last ones first: a cut file lacks them) from
    another thread until the block ends; count wrong and REFUSED answers."""
    tally = Tally()
    stop = threading.Event()

    def run() -> None:
        deadline = time.monotonic() + QUERY_SECONDS
        for count in range(QUERY_LIMIT):
            if stop.is_set() or time.monotonic() > deadline:
                return
            index = hosts - 1 - count % hosts
            query = dns.message.make_query(f"h{index}.{ORIGIN}", "A")
            try:
                reply = dns.query.udp(query, server.host, port=server.port, timeout=2.0)
            except dns.exception.Timeout:
                tally.lost += 1
                continue
            tally.answers += 1
            if reply.rcode() == dns.rcode.REFUSED:
                tally.refused += 1
            elif reply.rcode() != dns.rcode.NOERROR or [r.address for rrset in reply.answer for r in rrset] != [
                    address(index)]:
                tally.wrong += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield tally
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.fixture
def server(tmp_path: Path, server_factory) -> ServerProcess:
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, zone_text(1))
    return server_factory(zone_dir)


def write_by_rename(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def assert_clean(tally: Tally, what: str) -> None:
    print(f"\n{what}: {tally}")
    assert tally.answers > 50, "the client must have been asking throughout"
    assert (tally.wrong, tally.refused) == (0, 0), str(tally)


# ---------------------------------------------------------------- writer patterns


def test_half_written_then_appended(server: ServerProcess) -> None:
    path = server.zone_dir / f"{ORIGIN}.yaml"
    with querying(server) as tally:
        for version in (2, 3, 4):
            text = zone_text(version)
            # Half the lines (a valid zone with half the hosts), or half the octets (the
            # last value cut: it may still read as a valid, wrong address).
            half = text.rindex("\n", 0, len(text) // 2) + 1 if version < 4 else len(text) // 2
            with open(path, "w") as stream:
                stream.write(text[:half])
            time.sleep(0.3)  # the writer's own pause (the pattern under test), not a synchronisation
            with open(path, "a") as stream:
                stream.write(text[half:])
            wait_for_version(server, version)
    assert_clean(tally, "half written, rest appended 0.3 s later")


def test_deleted_then_recreated(server: ServerProcess) -> None:
    path = server.zone_dir / f"{ORIGIN}.yaml"
    with querying(server) as tally:
        for version in (2, 3, 4):
            path.unlink()
            time.sleep(0.3)  # the gap a checkout or deploy tool leaves
            path.write_text(zone_text(version))
            wait_for_version(server, version)
    assert_clean(tally, "deleted, 0.3 s gap, recreated")


def test_variant_spellings_are_refused(server: ServerProcess) -> None:
    served = server.zone_dir / f"{ORIGIN}.yaml"
    with querying(server) as tally:
        for variant in (server.zone_dir / "ZW.test.yaml", server.zone_dir / f"{ORIGIN}..yaml"):
            write_by_rename(variant, zone_text(99, hosts=1))  # one host: 119 names would go
            server.wait_for_log(re.escape(f"{variant}:1:1: zone {ORIGIN}. is already named by {served} (served)"))
            assert version_of(server) == 1
        write_by_rename(served, zone_text(2))  # the served file still takes changes
        wait_for_version(server, 2)
    assert_clean(tally, "case and trailing-dot variants added")
    status = run_authdns("status", "--state-dir", server.state_dir, timeout=30)
    assert "ZW.test.yaml:1:1: zone zw.test. is already named by" in status.stdout, status.stdout


def test_variant_at_start_up(tmp_path: Path, server_factory) -> None:
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, zone_text(1))
    (zone_dir / "ZW.test.yaml").write_text(zone_text(99, hosts=1))  # sorts first: it used to win
    server = server_factory(zone_dir)
    assert version_of(server) == 1, "the plainly named file serves"
    line = server.wait_for_log(r"zone error: .*ZW\.test\.yaml:1:1: zone zw\.test\. is already named by")
    assert str(zone_dir / f"{ORIGIN}.yaml") in line, line


def lowest_free_descriptor(pid: int) -> int:
    used = {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    return next(number for number in range(len(used) + 1) if number not in used)


def test_failed_load_is_retried(server: ServerProcess) -> None:
    """The server out of descriptors while a change arrives ("Too many open files"),
    then descriptors free again: the change is served with no further file event."""
    pid = server.process.pid
    limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    path = server.zone_dir / f"{ORIGIN}.yaml"
    with querying(server) as tally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_descriptor(pid), limits[1]))
        try:
            write_by_rename(path, zone_text(2))
            server.wait_for_log(r"reload (failed|incomplete).*Too many open files|Too many open files", timeout=10)
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
        assert version_of(server) == 1, "the old version serves meanwhile"
        wait_for_version(server, 2, timeout=15)
    assert_clean(tally, "failed load, descriptors freed, retried")
    server.wait_for_log(r"trying again in")


def test_large_removal_is_held(tmp_path: Path, server_factory) -> None:
    zone_dir = tmp_path / "zones"
    path = write_zone(zone_dir, ORIGIN, zone_text(1))
    server = server_factory(zone_dir)  # the default hold, 3 s
    cut = "\n".join(zone_text(2).splitlines()[: 5 + HOSTS * 3 // 10]) + "\n"  # a valid zone with 30% of the hosts
    with querying(server) as tally:
        write_by_rename(path, cut)
        time.sleep(1.0)  # the writer pauses past the settle time before the rest
        write_by_rename(path, zone_text(3))
        wait_for_version(server, 3)
    assert_clean(tally, "cut to 30%, complete 1 s later")
    server.wait_for_log(r"zone change held origin=zw\.test\. .*removes \d+% of the zone's records")
    # A real removal is served once it has stayed the same through the hold.
    write_by_rename(path, cut.replace("v2", "v4"))
    server.wait_for_log(r"zone change taken after \d+\.\d s unchanged origin=zw\.test\.", timeout=15)
    wait_for_version(server, 4)
    assert server.query(f"h{HOSTS - 1}.{ORIGIN}", "A").rcode() == dns.rcode.NXDOMAIN


# ---------------------------------------------------------------- item 12: clean errors


def without_file_permission_override() -> tuple[str, ...]:
    """A prefix that runs the server without root's power to read any file, so that a
    directory's mode bits hold for it too; none needed for another user."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a directory cannot be made unreadable")
    drop = "-dac_override,-dac_read_search"
    return (setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}")


def test_unreadable_zone_directory_at_start_up(tmp_path: Path) -> None:
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, zone_text(1))
    zone_dir.chmod(0)
    try:
        result = subprocess.run([*without_file_permission_override(),
                                 *authdns_command("serve", "--zones", zone_dir, "--listen", "127.0.0.1:0",
                                                  "--state-dir", fresh_state_dir(zone_dir))],
                                capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    finally:
        zone_dir.chmod(0o755)
    print(f"\nstart-up with an unreadable zones directory: exit {result.returncode}: {result.stderr.strip()}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "cannot read zone directory" in line]
    assert len(errors) == 1 and "Permission denied" in errors[0], result.stderr


def test_unreadable_zone_directory_while_running(tmp_path: Path) -> None:
    zone_dir = tmp_path / "zones"
    write_zone(zone_dir, ORIGIN, zone_text(1))
    server = start_server(zone_dir, prefix=without_file_permission_override())
    try:
        with querying(server) as tally:
            zone_dir.chmod(0)
            try:
                os.kill(server.process.pid, signal.SIGHUP)
                server.wait_for_log(r"reload failed trigger=SIGHUP: cannot read zone directory .*: Permission denied")
                reload = run_authdns("ctl", "--state-dir", server.state_dir, "reload", timeout=30)
            finally:
                zone_dir.chmod(0o755)
            write_by_rename(zone_dir / f"{ORIGIN}.yaml", zone_text(2))
            wait_for_version(server, 2)
        print(f"\nctl reload on an unreadable directory: exit {reload.returncode}: {reload.stderr.strip()}")
        assert reload.returncode == 1
        assert "cannot read zone directory" in reload.stderr and "Permission denied" in reload.stderr
        assert "internal error" not in reload.stderr
        assert not any("Task exception was never retrieved" in line or "Traceback" in line for line in server.log)
        assert_clean(tally, "zones directory unreadable for a while")
    finally:
        stop_server(server.process)


def test_serials_that_cannot_be_saved(tmp_path: Path, server_factory) -> None:
    """A state directory that takes no more data (here: a file-size limit of 0 on the
    server, which fails the write as a full disk does): ``ctl reload`` exits 1 with the
    reason; the new zone is served (its serial is still greater); saving is tried again."""
    zone_dir = tmp_path / "zones"
    path = write_zone(zone_dir, ORIGIN, zone_text(1))
    server = server_factory(zone_dir, "--no-watch")
    serials = server.state_dir / "serials.json"
    before = serials.read_text()
    pid = server.process.pid
    limits = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, limits[1]))
    try:
        path.write_text(zone_text(2))
        reload = run_authdns("ctl", "--state-dir", server.state_dir, "reload", timeout=30)
        assert version_of(server) == 2
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, limits)
    print(f"\nctl reload with serials that cannot be saved: exit {reload.returncode}: {reload.stderr.strip()}")
    assert reload.returncode == 1
    assert "cannot save remembered serials" in reload.stderr and "File too large" in reload.stderr
    wait_until(lambda: True if serials.read_text() != before else None, timeout=15)  # saved by a retry


def test_nul_byte_position(server: ServerProcess) -> None:
    path = server.zone_dir / f"{ORIGIN}.yaml"
    line = '  "@": {NS: ns1, TXT: "a\x00b"}'
    write_by_rename(path, f"ttl: 60\nrecords:\n{line}\n")
    server.wait_for_log(re.escape(f"{path}:3:{line.index(chr(0)) + 1}: YAML:") + ".*#x0000")
    assert version_of(server) == 1


def watched_inodes(pid: int) -> set[int]:
    """The inodes the process's inotify descriptors watch (/proc/PID/fdinfo)."""
    found: set[int] = set()
    for name in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            text = Path(f"/proc/{pid}/fdinfo/{name}").read_text()
        except OSError:
            continue
        found.update(int(match, 16) for match in re.findall(r"^inotify wd:\S+ ino:([0-9a-f]+)", text, re.M))
    return found


def test_parent_directory_is_not_watched(server: ServerProcess) -> None:
    inodes = wait_until(lambda: watched_inodes(server.process.pid) or None)
    assert server.zone_dir.stat().st_ino in inodes
    assert server.zone_dir.parent.stat().st_ino not in inodes, "the parent's writes would all reach the server"
