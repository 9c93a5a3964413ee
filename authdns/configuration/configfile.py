"""The server's configuration file: what does not belong in zones, as YAML.

``/etc/authdns/authdns.yaml`` when it exists, or the file ``--config`` names (``serve``
reads every key; the client commands take the keys they have flags for). Its
keys are the ``serve`` flags with underscores (``tcp_idle_timeout: 5`` means
``--tcp-idle-timeout 5``; ``watch: false`` means ``--no-watch``; ``listen``,
``allow_transfer`` and ``tsig_key`` take a list). Every value goes through the same check
as its flag; a mistake is ``file:line:column: message``. A flag on the command line wins
over the file (for a list: replaces it). Relative paths are taken from the file's
directory. Reads no zones.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from authdns.zones.yamltree import Mapping, Scalar, Sequence, TreeError, Value, parse_tree

DEFAULT_PATH = Path("/etc/authdns/authdns.yaml")
NOT_SETTINGS = frozenset({"help", "config"})


class ConfigError(Exception):
    """The configuration file cannot be used; the message names the file and the place."""


def settings(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Configurable settings of a subcommand's parser: its options, by destination."""
    return {action.dest: action for action in parser._actions
            if action.option_strings and action.dest not in NOT_SETTINGS}


def load(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The file's settings as the flags' values (converted and checked like them)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the configuration: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the configuration is not UTF-8 text") from None
    try:
        tree, problems = parse_tree(text, str(path))
    except TreeError as error:
        raise ConfigError(str(error)) from None
    if problems:
        raise ConfigError(str(problems[0]))
    if tree is None:
        return {}
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{tree.where}: the configuration is a mapping of settings (key: value)")
    known = settings(parser)
    values: dict[str, Any] = {}
    for key, value in tree.items:
        action = known.get(key.text)
        if action is None:
            raise ConfigError(f"{key.where}: unknown setting {key.text!r}; settings: {', '.join(sorted(known))}")
        values[action.dest] = _convert(action, key.text, value, path.parent)
    return values


def _convert(action: argparse.Action, key: str, value: Value, base: Path) -> Any:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, Scalar) or value.tag != "tag:yaml.org,2002:bool":
            raise ConfigError(f"{value.where}: {key} is true or false")
        return value.text.lower() in ("true", "yes", "on")  # the setting's value: `watch: false` = --no-watch
    if isinstance(action, argparse._AppendAction):
        items = value.items if isinstance(value, Sequence) else (value,)
        return [_one(action, key, item, base) for item in items]
    return _one(action, key, value, base)


def _one(action: argparse.Action, key: str, value: Value, base: Path) -> Any:
    if not isinstance(value, Scalar) or value.is_null:
        raise ConfigError(f"{value.where}: {key} must be a single value")
    text = value.text.strip()
    try:
        converted = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
        raise ConfigError(f"{value.where}: {key}: {error}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"{value.where}: {key} is one of {', '.join(map(str, action.choices))}, not {text!r}")
    if isinstance(converted, Path) and not converted.is_absolute():
        converted = base / converted
    return converted


def apply(args: argparse.Namespace, values: dict[str, Any], given: set[str]) -> None:
    """Put the file's values into ``args`` where the command line gave no flag (``given``:
    the destinations the command line set)."""
    for dest, value in values.items():
        if dest not in given:
            setattr(args, dest, value)


def given_on_command_line(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations the command line sets: parsed again with every default removed."""
    bare = argparse.Namespace()
    saved = {action.dest: action.default for action in parser._actions}
    try:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
        parser.parse_known_args(argv, namespace=bare)
    finally:
        for action in parser._actions:
            action.default = saved[action.dest]
    return set(vars(bare))
