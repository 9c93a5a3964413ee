"""bench/mail_logs.py, the mail lab's reading of the senders' own logs, on lines Postfix
3.7.11 (maillog_file) and Exim 4.96 (mainlog, +millisec) wrote in bench/mail_lab.py runs:
refused connection attempts per address and when, deferrals per message, how long a
deferred message was queued before it went out, and nothing else counted."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))  # bench/ is scripts, not a package
from mail_logs import parse_exim, parse_postfix  # noqa: E402


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


POSTFIX = """\
Dec 03 11:31:18 postfix postfix/smtp[22483]: 9D83120E6ED: to=<user@pool.lab.test>, relay=mx1.lab.test[127.0.0.11]:25, \
delay=0.02, delays=0.01/0.01/0/0, dsn=2.0.0, status=sent (250 OK)
Dec 03 11:31:49 postfix postfix/smtp[22486]: connect to mx2.lab.test[127.0.0.12]:25: Connection refused
Dec 03 11:31:50 postfix postfix/smtp[22486]: connect to mx2.lab.test[127.0.0.12]:25: Connection refused
Dec 03 11:21:05 postfix postfix/master[12209]: daemon started -- version 3.7.11, configuration /tmp/pf/etc
Dec 03 11:21:07 postfix postfix/smtp[12220]: 2162120C4EC: to=<u@pool.lab.test>, relay=none, delay=0.01, \
delays=0.01/0.01/0/0, dsn=4.4.3, status=deferred (Host or domain name not found. Name service error for \
name=pool.lab.test type=MX: Host not found, try again)
"""

EXIM = """\
2026-12-03 11:24:46.923 exim 4.96 daemon started: pid=15432, -q10s, listening for SMTP on [127.0.0.21]:25
2026-12-03 11:33:24.323 1xZ540-0005yc-12 <= lab@sender.test H=([127.0.0.1]) [127.0.0.21] P=esmtp S=391 id=5.150@lab
2026-12-03 11:33:24.329 1xZ540-0005yc-12 H=mx2.lab.test [127.0.0.12]:25 Connection refused
2026-12-03 11:33:24.332 1xZ540-0005yc-12 => user@pool.lab.test R=dnslookup T=remote_smtp H=mx1.lab.test \
[127.0.0.11]:25 C="250 OK" QT=0.010s DT=0.001s
2026-12-03 11:33:24.333 1xZ540-0005yc-12 Completed
"""


def test_postfix_refused_attempts_carry_address_and_time() -> None:
    log = parse_postfix(POSTFIX, 2026)
    assert log.refused == [(epoch("2026-12-03 11:31:49"), "127.0.0.12"), (epoch("2026-12-03 11:31:50"), "127.0.0.12")]


def test_postfix_deferral_counted_per_queue_id_and_sent_mail_is_not() -> None:
    log = parse_postfix(POSTFIX, 2026)
    assert log.deferred == {"2162120C4EC": 1}
    assert log.deferrals == 1 and log.bounced == 0
    assert log.delivered_after_deferral == {}  # 9D83120E6ED went out at once


def test_exim_refused_attempt_before_the_fallback_delivery() -> None:
    log = parse_exim(EXIM)
    assert log.refused == [(epoch("2026-12-03 11:33:24.329"), "127.0.0.12")]
    assert log.deferred == {} and log.bounced == 0  # the fallback delivered it: no deferral


def test_lines_that_are_not_events_count_for_nothing() -> None:
    noise = "postfix/postfix-script: starting the Postfix mail system\n\n2026-12-03 garbage\n"
    for log in (parse_postfix(noise, 2026), parse_exim(noise)):
        assert (log.refused, log.deferred, log.bounced) == ([], {}, 0)
