"""A stand-in exchanger for agent-check tests: on one loopback address, a TCP port that
accepts (the health check's) and an agent port that writes ``reply`` and closes, both
served by asyncio in a thread of the test. The test changes ``reply`` or stops the
agent while the server under test keeps asking."""

from __future__ import annotations

import asyncio
import socket
import threading


def free_pair(hosts: list[str]) -> tuple[int, int]:
    """Two TCP ports free on every one of ``hosts`` at the time of asking."""
    for _ in range(100):
        ports = []
        for _ in range(2):
            with socket.socket() as probe:
                probe.bind((hosts[0], 0))
                ports.append(probe.getsockname()[1])
        try:
            for host in hosts[1:]:
                for port in ports:
                    with socket.socket() as probe:
                        probe.bind((host, port))
        except OSError:
            continue
        return ports[0], ports[1]
    raise RuntimeError("no free port pair on " + ", ".join(hosts))


class AgentHost:
    def __init__(self, host: str, check_port: int, agent_port: int, reply: bytes = b"up\n") -> None:
        self.host, self.check_port, self.agent_port = host, check_port, agent_port
        self.reply = reply
        self.asked = 0  # replies written, for tests that wait for the next probe
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"agent {host}", daemon=True)
        self._check: asyncio.Server | None = None
        self._agent: asyncio.Server | None = None

    def start(self) -> "AgentHost":
        self._thread.start()
        self._check = self._call(asyncio.start_server(self._accept, self.host, self.check_port))
        self.start_agent()
        return self

    def start_agent(self) -> None:
        self._agent = self._call(asyncio.start_server(self._answer, self.host, self.agent_port, reuse_address=True))

    def stop_agent(self) -> None:
        """The agent goes away (connection refused); the check's port stays."""
        if self._agent is not None:
            server, self._agent = self._agent, None
            server.close()
            self._call(server.wait_closed())

    def stop(self) -> None:
        self.stop_agent()
        if self._check is not None:
            self._check.close()
            self._call(self._check.wait_closed())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.reply)
        self.asked += 1
        try:
            await writer.drain()
        except OSError:
            pass
        writer.close()
