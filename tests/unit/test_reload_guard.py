"""The reload guard in process (zones/loader.py ``Guard``, ``ReloadPolicy``): a file not
yet quiet, a large removal, a file without a final line break and a deleted file keep
the served version until their time is up; two spellings of one origin; the directory
that cannot be listed; a NUL byte's position (zones/yamltree.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from authdns.base import names
from authdns.zones.loader import Guard, ReloadPolicy, ZoneDirError, canonical_name, load_snapshot
from authdns.zones.snapshot import EMPTY
from authdns.zones.yamltree import TreeError, parse_tree

ORIGIN = names.from_text("g.test.")
POLICY = ReloadPolicy(settle=0.5, removal_share=0.5, removal_hold=3.0, delete_grace=3.0)


def zone_text(hosts: int, version: int = 1) -> str:
    return ('records:\n  "@": {NS: ns1}\n  ns1: {A: 192.0.2.1}\n' + f"  ver: {{TXT: v{version}}}\n"
            + "".join(f"  h{index}: {{A: 10.0.0.{index + 1}}}\n" for index in range(hosts)))


def guard_at(now: float, base: Guard | None = None, written: dict[str, float] | None = None) -> Guard:
    guard = base if base is not None else Guard(POLICY, now)
    return guard.copy(now, written or {})


@pytest.fixture
def served(tmp_path: Path):
    zone_dir = tmp_path / "zones"
    zone_dir.mkdir()
    (zone_dir / "g.test.yaml").write_text(zone_text(10))
    return zone_dir, load_snapshot(zone_dir, save=False).snapshot


def settled_guard(now: float, base: Guard | None = None) -> Guard:
    guard = guard_at(now, base)
    guard.policy = ReloadPolicy(0.0, POLICY.removal_share, POLICY.removal_hold, POLICY.delete_grace)
    return guard


def test_a_file_written_a_moment_ago_waits(served) -> None:
    zone_dir, snapshot = served
    (zone_dir / "g.test.yaml").write_text(zone_text(10, 2))
    guard = guard_at(100.0, written={"g.test.yaml": 0.1})
    result = load_snapshot(zone_dir, snapshot, save=False, guard=guard)
    assert result.snapshot.zones[ORIGIN] is snapshot.zones[ORIGIN] and not result.changes
    assert 100.39 <= guard.wake <= 100.51  # 0.5 s after the later of the write seen and the change time


def test_a_large_removal_is_held_then_taken(served) -> None:
    zone_dir, snapshot = served
    (zone_dir / "g.test.yaml").write_text(zone_text(2, 2))
    guard = settled_guard(100.0)
    result = load_snapshot(zone_dir, snapshot, save=False, guard=guard)
    assert result.snapshot.zones[ORIGIN] is snapshot.zones[ORIGIN]
    assert any("removes" in note and "held" in note for note in result.notes), result.notes
    assert guard.wake == pytest.approx(103.0)
    later = settled_guard(103.5, guard)
    result = load_snapshot(zone_dir, snapshot, save=False, guard=later)
    assert result.snapshot.zones[ORIGIN].record_count < snapshot.zones[ORIGIN].record_count
    assert any("taken after" in note for note in result.notes)


def test_a_file_without_a_final_line_break_is_held(served) -> None:
    zone_dir, snapshot = served
    (zone_dir / "g.test.yaml").write_text(zone_text(10, 2).rstrip("\n"))
    result = load_snapshot(zone_dir, snapshot, save=False, guard=settled_guard(100.0))
    assert result.snapshot.zones[ORIGIN] is snapshot.zones[ORIGIN]
    assert any("line break" in note for note in result.notes)
    # Unguarded (SIGHUP, ctl reload): taken at once.
    assert load_snapshot(zone_dir, snapshot, save=False).changes


def test_a_deleted_file_keeps_its_zone_for_the_grace(served) -> None:
    zone_dir, snapshot = served
    (zone_dir / "g.test.yaml").unlink()
    guard = settled_guard(100.0)
    result = load_snapshot(zone_dir, snapshot, save=False, guard=guard)
    assert ORIGIN in result.snapshot.zones and not result.changes
    result = load_snapshot(zone_dir, snapshot, save=False, guard=settled_guard(103.1, guard))
    assert ORIGIN not in result.snapshot.zones and result.changes[0].new_serial is None


def test_two_spellings_of_one_origin(served) -> None:
    zone_dir, snapshot = served
    (zone_dir / "G.test.yaml").write_text(zone_text(1, 9))
    (zone_dir / "g.test..yaml").write_text(zone_text(1, 9))
    result = load_snapshot(zone_dir, snapshot, save=False)
    assert result.snapshot.zones[ORIGIN] is snapshot.zones[ORIGIN]
    refused = sorted(Path(problem.where.path).name for problem in result.problems if "already named by" in problem.message)
    assert refused == ["G.test.yaml", "g.test..yaml"]
    fresh = load_snapshot(zone_dir, EMPTY, save=False)  # at start: the plainly named file
    assert fresh.snapshot.zones[ORIGIN].path.endswith("/g.test.yaml")
    assert canonical_name(names.ROOT) == "root.yaml" and canonical_name(names.from_text("root.")) == "root..yaml"


def test_a_directory_that_cannot_be_listed(tmp_path: Path, monkeypatch) -> None:
    zone_dir = tmp_path / "zones"
    zone_dir.mkdir()

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(ZoneDirError, match=r"cannot read zone directory .*: Permission denied"):
        load_snapshot(zone_dir, save=False)


@pytest.mark.parametrize("text,where", [
    ("a: 1\nb: x\x00y\n", (2, 5)),
    ("a: 1\r\nb: 2\r\n  c\x01\n", (3, 4)),
    ("\x00", (1, 1)),
])
def test_a_refused_character_is_reported_where_it_is(text: str, where: tuple[int, int]) -> None:
    with pytest.raises(TreeError) as raised:
        parse_tree(text, "f.yaml")
    assert (raised.value.where.line, raised.value.where.column) == where
    assert "#x000" in raised.value.message
