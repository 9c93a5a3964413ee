"""The settings table (configuration/settings.py) in-process: the flags it makes parse into the
``ServerConfig`` fields they name (defaults equal to ServerConfig's own, values changed
in shape where the table says so), every key is one flag and one config-file key, and
the client commands treat an unusable host configuration file as a warning while an
explicit ``--config`` stays an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from authdns.cli import commands as cli

from authdns.configuration import configfile

from authdns.configuration import settings
from authdns.configuration.config import DEFAULT_LISTEN, ServerConfig
from conftest import SHIPPED_ZONES


def parse_serve(*flags: str):
    return cli.build_parser().parse_args(["serve", *flags])


def test_no_flags_give_serverconfigs_defaults() -> None:
    config = settings.server_config(parse_serve("--loop", "asyncio", "--workers", "1"))
    assert config == ServerConfig(listen=DEFAULT_LISTEN, optional_listen=frozenset(a for a in DEFAULT_LISTEN
                                                                                    if ":" in a[0]))


def test_flags_fill_their_fields() -> None:
    config = settings.server_config(parse_serve(
        "--zones", "z", "--listen", "127.0.0.1:5300", "--max-zone-size", "0.5", "--no-watch", "--query-log",
        "--loop", "asyncio", "--workers", "3", "--tsig-key", "k:c2VjcmV0c2VjcmV0", "--rrl-rate", "10",
        "--allow-transfer", "192.0.2.0/24"))
    assert (config.zone_dir, config.listen, config.optional_listen) == (Path("z"), (("127.0.0.1", 5300),), frozenset())
    assert (config.max_zone_bytes, config.watch, config.query_log, config.event_loop, config.workers) == \
        (512 << 10, False, True, "asyncio", 3)
    assert list(config.tsig_keys) == ["k."] and config.rrl_rate == 10 and len(config.allow_transfer) == 1


def test_a_value_that_parses_but_cannot_be_used_is_a_setting_error() -> None:
    with pytest.raises(settings.SettingError, match="given twice"):
        settings.server_config(parse_serve("--tsig-key", "k:c2VjcmV0c2VjcmV0", "--tsig-key", "k:c2VjcmV0c2VjcmV0"))


def test_every_setting_is_one_flag_and_one_key() -> None:
    keys = [setting.key for setting in settings.SETTINGS]
    assert len(keys) == len(set(keys))
    serve = cli.build_parser().serve_parser
    assert set(configfile.settings(serve)) == set(keys) - {"config"}
    fields = set(ServerConfig.__dataclass_fields__)
    assert {s.field_name for s in settings.SETTINGS if s.field != ""} <= fields


def test_client_commands_warn_about_an_unusable_host_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    host_file = tmp_path / "authdns.yaml"
    host_file.write_text("workers: lots\n")
    monkeypatch.setattr(configfile, "DEFAULT_PATH", host_file)
    assert cli.main(["check", str(SHIPPED_ZONES)]) == 0
    warning = capsys.readouterr().err
    assert "authdns.yaml:1:10: workers: 'lots'" in warning and "ignored" in warning
    assert cli.main(["check", "--config", str(host_file), str(SHIPPED_ZONES)]) == 1
    assert "authdns check: " in capsys.readouterr().err
