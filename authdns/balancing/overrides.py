"""Operator overrides of balanced members: drains (weight 0 without editing the zone)
and temporary weights, as one immutable ``Overrides`` value, and their file.

The file survives restarts: a member drained for maintenance stays drained until the
operator undrains it. It is JSON, written atomically (a temporary file renamed over the
old one), so a crash mid-write leaves the previous version. Overrides of members the
zones no longer have are kept (a zone may come back) and shown by ``status``.
Nothing here knows about answers or sockets.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from dnslib import QTYPE

from authdns.base import names
from authdns.zones.balancespec import MemberKey
from authdns.base.rrtypes import type_name

FILE_VERSION = 1
MAX_WEIGHT = 1000  # as in zone files (balancefile.MAX_WEIGHT)


@dataclass(frozen=True, slots=True)
class Override:
    drained: bool = False
    weight: int | None = None  # a temporary weight replacing the configured one
    since: float = 0.0  # wall time it was set


@dataclass(frozen=True, slots=True)
class Overrides:
    members: Mapping[MemberKey, Override]

    def get(self, key: MemberKey) -> Override | None:
        return self.members.get(key)

    def with_member(self, key: MemberKey, override: Override | None) -> "Overrides":
        """A copy with ``key`` set (or cleared when ``override`` is None)."""
        members = dict(self.members)
        if override is None:
            members.pop(key, None)
        else:
            members[key] = override
        return Overrides(MappingProxyType(members))


EMPTY_OVERRIDES = Overrides(MappingProxyType({}))


class OverridesFileError(Exception):
    """The overrides file cannot be read; the message names the file and the problem."""


def set_aside(path: Path, now: float) -> Path:
    """Move an unreadable overrides file out of the way (kept for the operator to read),
    so the server can start and new drains can be saved."""
    target = path.with_name(f"{path.name}.unreadable-{int(now)}")
    os.replace(path, target)
    return target


def load_overrides(path: Path) -> Overrides:
    """The saved overrides; none when the file does not exist yet."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return EMPTY_OVERRIDES
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OverridesFileError(f"{path}: cannot read overrides: {error}") from None
    members: dict[MemberKey, Override] = {}
    try:
        if data.get("version") != FILE_VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        for entry in data["members"]:
            key = (names.from_text(entry["owner"]), getattr(QTYPE, entry["type"]), entry["member"])
            weight = entry.get("weight")
            if weight is not None and (not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT):
                raise ValueError(f"weight {weight!r} of {entry['member']} is not a whole number from 0 to {MAX_WEIGHT}")
            members[key] = Override(bool(entry.get("drained")), weight, float(entry.get("since", 0.0)))
    except (AttributeError, KeyError, TypeError, ValueError, names.BadName) as error:
        raise OverridesFileError(f"{path}: malformed overrides file: {error}") from None
    return Overrides(MappingProxyType(members))


def save_overrides(path: Path, overrides: Overrides) -> None:
    """Write atomically: a reader (or a crash) sees the old file or the new, never half."""
    entries = [
        {"owner": names.to_text(owner), "type": type_name(rtype), "member": member,
         "drained": override.drained, "weight": override.weight, "since": override.since}
        for (owner, rtype, member), override in sorted(overrides.members.items(), key=lambda item: repr(item[0]))
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".overrides-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump({"version": FILE_VERSION, "members": entries}, stream, indent=2)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
