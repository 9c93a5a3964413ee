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


def package_order() -> list[str]:
    """The subpackages in the order the map lists them (its ``### `name/`:`` headings)."""
    text = MAP.read_text(encoding="utf-8")
    section = text.split("\n## Module map", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^### `(\w+)/`", section, flags=re.MULTILINE)


def test_nothing_imports_from_a_package_below_it() -> None:
    """Dependency order, as the map states it: a module of package N imports from
    packages 0..N only (type-only imports count too), so the layout shows what depends
    on what."""
    import ast

    order = package_order()
    package = ROOT / "authdns"
    assert sorted(order) == sorted(p.name for p in package.iterdir() if (p / "__init__.py").exists())
    upward = []
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).parts
        if len(parts) < 2:
            continue  # __init__.py, __main__.py of the package itself
        level = order.index(parts[0])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("authdns."):
                imported = node.module.split(".")[1]
                if imported in order and order.index(imported) > level:
                    upward.append(f"{path.relative_to(package)}:{node.lineno} imports {node.module}")
            assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path}: relative import"
    assert not upward, upward


def test_the_query_path_trace_runs_and_calls_nothing_upward_across_packages() -> None:
    """bench/query_path.py, which the map quotes: it runs on this layout, a cache hit
    passes through three modules, and no call goes from a package up to one listed
    below it (the only calls up the order are inside balancing/: Balancer and Orders)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "bench" / "query_path.py")], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "www.example.test A, cache hit: 3 modules" in result.stdout, result.stdout
    ups = [line.split("up: ", 1)[1] for line in result.stdout.splitlines() if line.startswith("  up: ")]
    assert ups and all(a.split("/")[0] == b.split("/")[0] == "balancing" for a, b in
                       (up.split(" -> ") for up in ups)), ups
