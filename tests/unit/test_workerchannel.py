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


def test_a_health_update_carries_what_changed() -> None:
    """A view as a change from the worker's: only members whose entry is another object,
    and the members gone; applied to the worker's view it gives the new one."""
    keys = [(KEY[0], KEY[1], f"mx{index}.example.test.") for index in range(500)]
    entries = {key: MemberHealth(Status.UP, 1.0, 0.004, None, ()) for key in keys}
    old = HealthView(MappingProxyType(dict(entries)), 1)
    entries[keys[7]] = MemberHealth(Status.DOWN, 2.0, None, None, ())
    del entries[keys[9]]
    new = HealthView(MappingProxyType(dict(entries)), 2)
    update = HealthUpdate.of(new, old)
    assert list(update.members) == [keys[7]] and update.removed == (keys[9],) and update.published == 2
    applied = update.view(old)
    assert dict(applied.members) == dict(new.members) and applied.published == 2
    assert applied.status(keys[7]) is Status.DOWN and applied.get(keys[9]) is None
