"""The server's pieces run in this test process: an asyncio loop in a daemon thread, and
a ``DnsServer`` with a ``TransferResponder`` on 127.0.0.1 port 0, for scenarios that
need settings the command line does not (yet) offer. The test thread stays blocking
(dnspython's client); everything asyncio runs on the loop thread."""

from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

from authdns.serve.answerer import build_answerer
from authdns.configuration.config import ServerConfig
from authdns.serve.server import DnsServer
from authdns.zones.loader import load_snapshot
from authdns.engine.state import StateHolder

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread until ``close()``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, awaitable: Awaitable[T], timeout: float = 10.0) -> T:
        """Run a coroutine on the loop and wait for its result (bounded)."""
        return asyncio.run_coroutine_threadsafe(awaitable, self.loop).result(timeout)  # type: ignore[arg-type]

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call a plain function on the loop thread (what must run there: publish, notify)."""

        async def call() -> T:
            return function(*args, **kwargs)

        return self.run(call())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@dataclass
class InProcessServer:
    loop: LoopThread
    server: DnsServer
    holder: StateHolder
    config: ServerConfig
    host: str
    port: int

    def reload(self) -> None:
        """Load the zone directory again and publish it, as a SIGHUP does."""
        result = load_snapshot(self.config.zone_dir, self.holder.current.snapshot,
                               ixfr_history=self.config.ixfr_history)
        self.loop.call(self.holder.publish, snapshot=result.snapshot)


@contextmanager
def serve_in_process(zone_dir: Path, **config_fields: Any) -> Iterator[InProcessServer]:
    """A DnsServer with transfers enabled on 127.0.0.1 port 0, closed afterwards."""
    config = ServerConfig(zone_dir=zone_dir, listen=(("127.0.0.1", 0),), **config_fields)
    holder = StateHolder()
    result = load_snapshot(zone_dir)
    assert not [problem for problem in result.problems if not problem.warning], result.problems
    loop = LoopThread()
    try:
        loop.call(holder.publish, snapshot=result.snapshot)
        server = build_answerer(config, holder).dns  # as the server wires it, transfers included
        (host, port), *_ = loop.run(server.start())
        try:
            yield InProcessServer(loop, server, holder, config, host, port)
        finally:
            loop.run(server.close())
    finally:
        loop.close()
