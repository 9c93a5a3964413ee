"""What the mail lab reads from the senders' own logs (pure parsing, no I/O beyond the text given).

Postfix (maillog_file, one line per event) and Exim (mainlog with ``+millisec``) each log
a connection refused by an exchanger even when the message then goes to another one,
a deferral (Postfix ``status=deferred``, Exim ``==``) and a delivery (Postfix
``status=sent``, Exim ``=>``). The lab counts deferrals and refused connection attempts
per address from these lines; delivered shares come from the sinks, not from the logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

# Postfix 3.7 maillog_file: "Dec  3 09:58:01.123456 host postfix/smtp[1]: ..." (microseconds
# since postlogd, 3.4); syslog style without them is accepted too.
_POSTFIX_TIME = re.compile(r"^(\w{3}\s+\d+ \d\d:\d\d:\d\d(?:\.\d+)?) ")
_POSTFIX_REFUSED = re.compile(r"connect to [^\[]*\[([0-9.]+)\]:\d+: (Connection refused|.*timed out)")
_POSTFIX_STATUS = re.compile(r": ([0-9A-F]+): to=<[^>]*>.*, delay=([0-9.]+),.* status=(sent|deferred|bounced)")
# Exim 4.96 mainlog with log_selector +millisec: "2026-12-03 09:58:01.123 1tI... == ..."
_EXIM_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) ")
_EXIM_ID = r"([0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}|[0-9A-Za-z]{6}-[0-9A-Za-z]{11}-[0-9A-Za-z]{4})"
_EXIM_REFUSED = re.compile(r"\[([0-9.]+)\](?::\d+)?:? Connection refused")
_EXIM_EVENT = re.compile(_EXIM_ID + r" (==|=>|\*\*) ")
_EXIM_QT = re.compile(r" QT=([0-9.]+)(ms|s)")


@dataclass
class SenderLog:
    """Events of one run: refused connection attempts (time, address), deferrals per message,
    and the longest queue time of a message that was deferred at least once."""

    refused: list[tuple[float, str]] = field(default_factory=list)
    deferred: dict[str, int] = field(default_factory=dict)  # queue id -> deferrals
    delivered_after_deferral: dict[str, float] = field(default_factory=dict)  # queue id -> seconds queued
    bounced: int = 0

    @property
    def deferrals(self) -> int:
        return sum(self.deferred.values())


def _postfix_time(stamp: str, year: int) -> float:
    fmt = "%Y %b %d %H:%M:%S.%f" if "." in stamp else "%Y %b %d %H:%M:%S"
    return datetime.strptime(f"{year} {' '.join(stamp.split())}", fmt).replace(tzinfo=timezone.utc).timestamp()


def parse_postfix(text: str, year: int) -> SenderLog:
    """Postfix logs no year; ``year`` supplies it (the lab's clock, UTC)."""
    log = SenderLog()
    for line in text.splitlines():
        stamp = _POSTFIX_TIME.match(line)
        if stamp is None:
            continue
        if (refused := _POSTFIX_REFUSED.search(line)) is not None:
            log.refused.append((_postfix_time(stamp.group(1), year), refused.group(1)))
        elif (status := _POSTFIX_STATUS.search(line)) is not None:
            queue_id, delay, outcome = status.groups()
            if outcome == "deferred":
                log.deferred[queue_id] = log.deferred.get(queue_id, 0) + 1
            elif outcome == "bounced":
                log.bounced += 1
            elif queue_id in log.deferred:
                log.delivered_after_deferral[queue_id] = float(delay)
    return log


def parse_exim(text: str) -> SenderLog:
    log = SenderLog()
    for line in text.splitlines():
        stamp = _EXIM_TIME.match(line)
        if stamp is None:
            continue
        when = datetime.fromisoformat(stamp.group(1)).replace(tzinfo=timezone.utc).timestamp()
        if (refused := _EXIM_REFUSED.search(line)) is not None:
            log.refused.append((when, refused.group(1)))
        if (event := _EXIM_EVENT.search(line)) is not None:
            message, kind = event.groups()
            if kind == "==":
                log.deferred[message] = log.deferred.get(message, 0) + 1
            elif kind == "**":
                log.bounced += 1
            elif message in log.deferred and (queued := _EXIM_QT.search(line)) is not None:
                seconds = float(queued.group(1)) / (1000 if queued.group(2) == "ms" else 1)
                log.delivered_after_deferral[message] = seconds
    return log
