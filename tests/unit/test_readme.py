"""The README's complete zone example is a valid zone (the docs cannot drift from the code)."""

from __future__ import annotations

import re
from pathlib import Path

from authdns.zones.loader import load_zone_file

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


def test_readme_balancing_example_loads(tmp_path: Path) -> None:
    """The "Load balancing" syntax example, completed with the hosts it names, loads
    without a problem and means what the README says."""
    from dnslib import QTYPE

    from authdns.base import names
    from authdns.zones.balancespec import Policy

    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "checks:" in b)
    hosts = "".join(f"  {host}: {{A: 192.0.2.{index + 1}}}\n"
                    for index, host in enumerate(["ns1", "mx1", "mx2", "mx3", "mx4", "backup"]))
    path = tmp_path / "example.test.yaml"
    path.write_text(block + '  "@": {NS: ns1}\n' + hosts)
    zone, problems = load_zone_file(path)
    assert zone is not None and not problems, [str(p) for p in problems]
    balance = zone.nodes[names.from_text("pool.example.test.")].rrsets[QTYPE.MX].balance
    assert (balance.policy, balance.answer, balance.check.name) == (Policy.WEIGHTED, 2, "mail")
    assert [member.weight for member in balance.members] == [3, 1, 0, None, 1]


def test_readme_transfer_example_loads(tmp_path: Path) -> None:
    """The "Secondaries" example block is a valid `transfer:` section."""
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if b.startswith("transfer:"))
    path = tmp_path / "example.test.yaml"
    path.write_text(block + 'records:\n  "@": {NS: ns1}\n  ns1: {A: 192.0.2.1}\n')
    zone, problems = load_zone_file(path)
    assert zone is not None and not problems, [str(p) for p in problems]
    assert [rule.key for rule in zone.transfer.allow] == [None, None, "sec1."]
    assert zone.transfer.notify == (("192.0.2.53", 53), ("127.0.0.1", 5300))


def test_the_configuration_table_lists_every_setting() -> None:
    """README's "Configuration file" table names each key of settings.SETTINGS once,
    with its flag: a setting added to the table without the README fails here."""
    from authdns.configuration.settings import CONFIG, SETTINGS

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration file", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| `(--[\w-]+)` \|", section, re.M))
    assert rows == {setting.key: setting.flag for setting in SETTINGS if setting is not CONFIG}
