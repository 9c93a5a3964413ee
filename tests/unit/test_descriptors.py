"""Descriptor shortages (base/descriptors.py) and what they mean to health: EMFILE is
recognised, counted per place and logged once per LOG_EVERY however often it comes; a
probe that cannot open its socket is UNKNOWN, which moves no rise/fall streak and no
probe count, and an agent not asked keeps its maint; the spare descriptor is given and
taken back; ``accept`` takes a waiting connection in the spare's place at the limit.
(tests/integration/test_metrics_http.py runs a real server out of descriptors.)"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket

import pytest

from authdns.base import descriptors
from authdns.base.descriptors import Shortage, Spare, exhausted
from authdns.health import probes
from authdns.health.agent import Admin, AgentOutcome, AgentReply
from authdns.health.monitor import AgentState, Status, TargetState
from authdns.health.probes import ProbeOutcome, ProbeResult


def test_exhaustion_errors_are_told_apart() -> None:
    for code in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
        assert exhausted(OSError(code, os.strerror(code)))
    assert not exhausted(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert not exhausted(ValueError("x"))


def test_one_log_line_per_period_counts_every_place(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    shortage = Shortage(clock=lambda: now[0])
    error = OSError(errno.EMFILE, "Too many open files")
    with caplog.at_level(logging.ERROR, logger="authdns.descriptors"):
        for _ in range(50):
            shortage.note("health probe", error)
        shortage.note("accept", error)
        now[0] += descriptors.LOG_EVERY
        shortage.note("health probe", error)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2
    assert "where=health probe" in lines[0] and "suppressed=0" in lines[0]
    assert "suppressed=50" in lines[1]  # 49 probes and the accept left out of the first period
    assert shortage.counts == {"health probe": 51, "accept": 1} and shortage.total == 52


def test_unknown_probe_moves_nothing() -> None:
    state = TargetState()
    up = ProbeOutcome(ProbeResult.UP, 0.001, "220")
    down = ProbeOutcome(ProbeResult.DOWN, None, "refused")
    unknown = ProbeOutcome(ProbeResult.UNKNOWN, None, "no socket for the probe: Too many open files")
    state.observe(up, rise=2, fall=2, now=1.0)
    state.observe(down, rise=2, fall=2, now=2.0)  # one failure of the two fall needs
    for moment in range(3, 20):
        assert not state.observe(unknown, rise=2, fall=2, now=float(moment))
    assert (state.status, state.streak, state.probes, state.failures) == (Status.UP, 1, 2, 1)
    assert state.last is unknown  # shown as the last probe
    assert state.observe(down, rise=2, fall=2, now=30.0)  # the second real failure: down


def test_agent_not_asked_keeps_maint() -> None:
    state = AgentState()
    state.observe(AgentOutcome(AgentReply(percent=50, admin=Admin.MAINT), "maint 50%"))
    state.observe(AgentOutcome(None, "agent not asked: no socket", unknown=True))
    assert (state.admin, state.percent, state.failures) == (Admin.MAINT, 50, 0)
    state.observe(AgentOutcome(None, "agent connection refused"))  # a real failure lapses maint
    assert state.admin is Admin.READY and state.failures == 1


def test_probe_without_a_socket_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_descriptor(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    counted = Shortage()
    monkeypatch.setattr(probes, "SHORTAGE", counted)
    monkeypatch.setattr(asyncio, "open_connection", no_descriptor)

    async def run() -> tuple[ProbeOutcome, ProbeOutcome, AgentOutcome]:
        return (await probes.smtp_banner("127.0.0.1", 25, 1.0), await probes.tcp_connect("127.0.0.1", 25, 1.0),
                await probes.agent_reply("127.0.0.1", 26, 1.0))

    smtp, tcp, agent = asyncio.run(run())
    assert smtp.result is ProbeResult.UNKNOWN and tcp.result is ProbeResult.UNKNOWN
    assert "Too many open files" in smtp.detail
    assert agent.unknown and agent.reply is None
    assert counted.counts == {"health probe": 3}


def test_spare_is_given_and_taken() -> None:
    spare = Spare()
    try:
        held = spare.fd
        assert held is not None and os.path.samefile(f"/proc/self/fd/{held}", os.devnull)
        assert spare.give() and spare.fd is None and not spare.give()
        assert spare.take() and spare.fd is not None
    finally:
        spare.close()


def test_accept_at_the_limit_uses_the_spare() -> None:
    """In a child process (its own descriptor limit): a waiting client is accepted in
    the spare's place, and without a spare accept keeps waiting instead of failing."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            code = _accept_at_limit()
        finally:
            os.write(write_end, bytes([code]))
            os._exit(0)
    os.close(write_end)
    result = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(child, 0)
    assert result == b"\x00", f"child step {result[0] if result else '?'} failed"


def _accept_at_limit() -> int:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    spare = Spare()
    client = socket.create_connection(listener.getsockname())
    filler = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    try:
        while True:
            filler.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass  # every descriptor taken

    async def run() -> int:
        counted = descriptors.SHORTAGE
        try:
            await asyncio.wait_for(descriptors.accept(listener, "test"), 0.3)
            return 2  # accepted with no descriptor: impossible
        except asyncio.TimeoutError:
            pass
        if counted.counts.get("test", 0) < 1:
            return 3
        connection, spent = await asyncio.wait_for(descriptors.accept(listener, "test", spare), 2.0)
        if not spent or spare.fd is not None:
            return 4
        connection.close()
        return 0 if spare.take() else 5

    # The loop's own selector and self-pipe need descriptors: free a few for it first.
    for fd in filler[-4:]:
        os.close(fd)
    del filler[-4:]
    try:
        return asyncio.run(_fill_then(run, filler))
    finally:
        client.close()


async def _fill_then(run, filler: list[int]) -> int:
    try:
        while True:
            filler.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    return await run()
