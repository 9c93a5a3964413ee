"""The query log: one line per answered query (client, transport, name, type, rcode, the
kind of reply, the first answer record), when switched on (``serve --query-log``, or
``authdns ctl querylog on|off`` at runtime). The kind comes from the responder
(``Answer.key``'s first octet: answer, nodata, nxdomain, referral, refused, error); the
name and the first record are read from the bytes by dnslib only while the log is on,
so a server with it off pays one attribute check per query. Logged at INFO to the
``authdns.queries`` logger, so it follows ``--log-format``.
"""

from __future__ import annotations

import logging

from dnslib import QTYPE, RCODE, DNSError, DNSRecord

from authdns.answering.answer import AnswerKind
from authdns.base.protocol import BYTE_TC
from authdns.answering.query import Via

log = logging.getLogger("authdns.queries")


def log_query(packet: bytes, reply: bytes | None, via: Via, peer: tuple | None, answer_key: bytes) -> None:
    client = f"{peer[0]}#{peer[1]}" if peer else "-"
    try:
        question = DNSRecord.parse(packet).questions[0]
        name, qtype = str(question.qname), QTYPE.get(question.qtype, str(question.qtype))
    except (DNSError, IndexError, ValueError):
        name, qtype = "-", "-"
    if reply is None:
        log.info("query client=%s via=%s name=%s type=%s dropped", client, via.name, name, qtype)
        return
    try:
        answer = DNSRecord.parse(reply)
        rcode = RCODE.get(answer.header.rcode, str(answer.header.rcode))
        first = f"{QTYPE.get(answer.rr[0].rtype)} {answer.rr[0].rdata}" if answer.rr else "-"
    except (DNSError, ValueError):
        rcode, first = str(reply[3] & 0xF) if len(reply) > 3 else "-", "-"
    truncated = " truncated" if len(reply) > 2 and reply[2] & BYTE_TC else ""
    kind = AnswerKind(answer_key[0]).name.lower() if answer_key else "-"
    log.info("query client=%s via=%s name=%s type=%s rcode=%s kind=%s first=%s%s", client, via.name, name, qtype,
             rcode, kind, first, truncated)
