"""The supervisor–worker channel (serve/workerchannel.py) over a real socketpair: every
message type arrives as it was sent, in order, its fields intact (a health view and
overrides as the worker rebuilds them, a Totals with counts); a peer that closes
reads as None, also mid-message."""

from __future__ import annotations

import asyncio
import socket
from types import MappingProxyType

from dnslib import QTYPE

from authdns.base import names
from authdns.balancing.counters import MemberCounters, Totals
from authdns.health.monitor import HealthView, MemberHealth, Status
from authdns.balancing.overrides import Override, Overrides
from authdns.serve.workerchannel import (Count, Counted, HealthUpdate, Heartbeat, OverridesUpdate, Paused, Ready, Serve,
                                         SetQueryLog, Stop, Switched, receive, send)

KEY = (names.from_text("pool.example.test."), QTYPE.MX, "mx1.example.test.")


def test_every_message_arrives_as_sent() -> None:
    health = HealthView(MappingProxyType({KEY: MemberHealth(Status.DEGRADED, 12.5, 0.004, None, ())}))
    overrides = Overrides(MappingProxyType({KEY: Override(drained=True, weight=None, since=1.0)}))
    totals = Totals()
    totals.queries.dropped = 7
    totals.members[KEY] = MemberCounters(first=3, given=5)
    sent = [Ready(), Serve(), HealthUpdate.of(health), OverridesUpdate.of(overrides), SetQueryLog(True),
            Switched(), Count(), Counted(totals), Stop(), Paused(), Heartbeat()]

    async def main() -> list:
        ours, theirs = socket.socketpair()
        _, writer = await asyncio.open_unix_connection(sock=ours)
        reader, their_writer = await asyncio.open_unix_connection(sock=theirs)
        for message in sent:
            await send(writer, message)
        received = [await receive(reader) for _ in sent]
        writer.write(b"\x00\x00\x01\x00partial")  # a length prefix, then the peer goes
        writer.close()
        received.append(await receive(reader))
        their_writer.close()
        return received

    received = asyncio.run(main())
    assert received[:-1] == sent
    assert received[-1] is None
    assert received[2].view().status(KEY) is Status.DEGRADED and received[2].view().get(KEY).rtt == 0.004
    assert received[3].overrides().get(KEY).drained
    assert received[7].totals.queries.dropped == 7 and received[7].totals.members[KEY].first == 3
