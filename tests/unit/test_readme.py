"""The README's complete zone example is a valid zone (the docs cannot drift from the code)."""

from __future__ import annotations

import re
from pathlib import Path

from authdns.snapshot import load_zone_file

ROOT = Path(__file__).resolve().parents[2]


def test_readme_zone_example_loads(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    assert blocks, "README has no yaml example"
    path = tmp_path / "example.test.yaml"
    path.write_text(blocks[0])
    zone, problems = load_zone_file(path)
    assert zone is not None, [str(p) for p in problems]
    assert not problems, [str(p) for p in problems]
    assert zone.serial == 2026112301
