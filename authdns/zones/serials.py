"""SOA serials for zone files that name none, and the memory that keeps them stable.

A generated serial must grow with every content change, also across restarts, and stay
the same while the content does (a secondary transfers the zone when the serial grows,
RFC 1996 §4.7). So the serial of a file's content is remembered in
``STATE_DIR/serials.json`` as (content hash, serial); a new content gets the current time
in seconds, or the previous serial plus one when that is not greater in RFC 1982
serial-number arithmetic (several changes within a second). Nothing here parses zones.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

SERIAL_BITS = 32
HALF = 1 << (SERIAL_BITS - 1)
MODULUS = 1 << SERIAL_BITS


def serial_gt(a: int, b: int) -> bool:
    """``a`` is greater than ``b`` in serial number arithmetic (RFC 1982 §3.2)."""
    return a != b and ((a < b and b - a > HALF) or (a > b and a - b < HALF))


def next_serial(previous: int | None, now: int) -> int:
    """The serial for new content: the time, unless that does not exceed the previous
    serial; then previous + 1 (RFC 1982 §3.1 addition)."""
    now %= MODULUS
    if previous is None or serial_gt(now, previous):
        return now
    return (previous + 1) % MODULUS


@dataclass(slots=True)
class SerialStore:
    """origin (text) → (content hash, serial), as last served. Loader thread only."""

    path: Path | None = None  # None: remember in memory only (`check`, tests)
    entries: dict[str, tuple[str, int]] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    dirty: bool = False
    warning: str | None = None  # what went wrong reading the file, for the caller to log

    @classmethod
    def load(cls, path: Path | None, set_aside: bool = True) -> "SerialStore":
        """The remembered serials. An unreadable file is moved aside (by the server;
        ``set_aside=False`` for read-only commands such as check and export)."""
        store = cls(path)
        if path is None:
            return store
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            store.entries = {origin: (str(entry[0]), int(entry[1]) % MODULUS) for origin, entry in data.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, IndexError, AttributeError) as error:
            # Unreadable memory: generated serials restart from the time. Keep the file for
            # the operator and say so: if a zone once had a larger (date-style) serial,
            # secondaries will not take changes until the serial passes it again.
            aside = path.with_name(f"{path.name}.unreadable-{int(store.clock())}")
            moved = "left in place"
            if set_aside:
                try:
                    os.replace(path, aside)
                    moved = f"moved to {aside}"
                except OSError:
                    pass
            store.warning = (f"{path}: cannot read remembered serials ({error}); {moved}; generated serials "
                             "start again from the time")
        return store

    def serial_for(self, origin: str, content_hash: str, previous: int | None) -> int:
        """The serial a file without one gets: the remembered one for this exact content,
        else a new one above both the remembered and the served serial."""
        remembered = self.entries.get(origin)
        if remembered is not None and remembered[0] == content_hash:
            return remembered[1]
        base = previous
        if remembered is not None and (base is None or serial_gt(remembered[1], base)):
            base = remembered[1]
        return next_serial(base, int(self.clock()))

    def copy(self) -> "SerialStore":
        """A store to load with: kept only when the load's result is published."""
        return SerialStore(self.path, dict(self.entries), self.clock, self.dirty)

    def remembered(self, origin: str) -> tuple[str, int] | None:
        return self.entries.get(origin)

    def remember(self, origin: str, content_hash: str, serial: int) -> None:
        if self.entries.get(origin) != (content_hash, serial):
            self.entries[origin] = (content_hash, serial)
            self.dirty = True

    def save(self) -> None:
        """Write atomically (temporary file renamed over the old one)."""
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".serials-", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump({origin: list(entry) for origin, entry in sorted(self.entries.items())}, stream, indent=1)
                stream.write("\n")
            os.replace(temporary, self.path)
            self.dirty = False
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
