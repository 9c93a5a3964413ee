"""docs/ARCHITECTURE.md is the team's map of the code: its module table must name every
module of the package, and only modules that exist, so the map cannot fall behind the
code unnoticed. The heading's count is checked too."""

from __future__ import annotations

import re

from conftest import ROOT

MAP = ROOT / "docs" / "ARCHITECTURE.md"


def module_table() -> tuple[str, set[str]]:
    """The module map's heading and the modules its table rows name (first column)."""
    text = MAP.read_text(encoding="utf-8")
    section = text.split("\n## Module map", 1)[1].split("\n## ", 1)[0]
    heading = section.splitlines()[0]
    named = set(re.findall(r"^\| `([A-Za-z0-9_/]+\.py)` \|", section, flags=re.MULTILINE))
    return heading, named


def package_modules() -> set[str]:
    package = ROOT / "authdns"
    return {path.relative_to(package).as_posix() for path in package.rglob("*.py")
            if "__pycache__" not in path.parts}


def test_every_module_is_on_the_map() -> None:
    _, named = module_table()
    missing = sorted(package_modules() - named)
    assert not missing, f"modules docs/ARCHITECTURE.md does not map: {missing}"


def test_the_map_names_no_module_that_is_gone() -> None:
    _, named = module_table()
    gone = sorted(named - package_modules())
    assert not gone, f"docs/ARCHITECTURE.md maps modules that do not exist: {gone}"


def test_the_module_count_in_the_heading_is_true() -> None:
    heading, _ = module_table()
    count = re.search(r"(\d+) modules", heading)
    assert count is not None, heading
    assert int(count.group(1)) == len(package_modules()), heading
