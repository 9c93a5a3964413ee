"""How log lines look: ``plain`` (time, level, message) or ``json``, one object per line
with ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, and ``error`` with
the traceback when there is one. Either way one line per event. Nothing else here."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

PLAIN = "%(asctime)s %(levelname)s %(message)s"


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self.extra: dict[str, object] = {}  # fields on every line (a worker's slot and pid)

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self.extra,
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def label_process(**fields: object) -> None:
    """Mark every line this process logs from now on (a worker: slot and pid)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonFormatter):
            handler.formatter.extra = dict(fields)
        else:
            label = " ".join(f"{key}={value}" for key, value in fields.items())
            handler.setFormatter(logging.Formatter(PLAIN.replace("%(message)s", f"{label} %(message)s")))


def configure(level: str, style: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if style == "json" else logging.Formatter(PLAIN))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
