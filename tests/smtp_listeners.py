"""A fake SMTP listener for health tests (a helper, not a test module).

``FakeSmtp`` listens on 127.0.0.1, port 0 (or the port it had, after ``restart()``), in
its own daemon thread with its own event loop, so plain synchronous tests, asyncio tests
and a server subprocess can all probe it. It speaks just enough SMTP for a probe:

- ``ok``: greets ``220 fake ESMTP``, answers EHLO/HELO with ``250-fake`` ``250 OK``,
  QUIT with ``221 bye``;
- ``busy``: greets ``421 too busy`` and closes (RFC 5321 §3.8);
- ``reject``: greets ``554 no service here``, then answers only QUIT (RFC 5321 §3.1);
- ``silent``: accepts and never writes;
- ``slow``: greets like ``ok`` after ``delay`` seconds.

``mode`` may be changed while running; it applies to the next connection. ``commands``
lists the command lines received. ``stop()``
closes the listener and every open connection, so the port refuses. Every wait is
bounded, and stop() joins the thread.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Self

MODES = ("ok", "busy", "reject", "silent", "slow")
_IDLE = 10.0  # seconds a connection may sit without a command before we hang up
_THREAD_WAIT = 5.0  # seconds to wait for the thread to start or stop


class FakeSmtp:
    def __init__(self, mode: str = "ok", *, delay: float = 0.0, port: int = 0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.delay = delay
        self.port = port  # 0 until start() binds; then kept across restart()
        self.host = "127.0.0.1"
        self._lock = threading.Lock()
        self._connections = 0
        self.commands: list[str] = []  # every command line received, in order, without CRLF
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def connections(self) -> int:
        """Connections accepted since construction."""
        with self._lock:
            return self._connections

    def start(self) -> Self:
        """Listen (on the previous port if there was one) and return once accepting."""
        if self._thread is not None:
            raise RuntimeError("FakeSmtp already running")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"fake-smtp-{self.mode}", daemon=True)
        self._thread.start()
        if not self._ready.wait(_THREAD_WAIT) or self._error is not None:
            self.stop()
            raise RuntimeError(f"FakeSmtp did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then join the thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass  # the loop already ended (it failed to start)
        thread.join(_THREAD_WAIT)
        if thread.is_alive():
            raise RuntimeError("FakeSmtp thread did not stop")
        self._thread = self._loop = self._stopping = None

    def restart(self) -> Self:
        """Stop, then listen again on the same port."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self if self._thread is not None else self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # noqa: BLE001 - reported to start(); the thread must end quietly
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        handlers: set[asyncio.Task[None]] = set()
        writers: set[asyncio.StreamWriter] = set()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with self._lock:
                self._connections += 1
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            writers.add(writer)
            try:
                await self._converse(reader, writer)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                pass  # the prober hung up or went quiet: nothing to do
            except asyncio.CancelledError:
                # stop() cancels us. Ending normally keeps Python 3.11's stream callback
                # from logging "Exception in callback" for a cancelled connection task.
                pass
            finally:
                writers.discard(writer)
                handlers.discard(task)
                writer.close()  # FIN after what we wrote, so a 421 is read before the end of stream

        server = await asyncio.start_server(accept, self.host, self.port, reuse_address=True)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for writer in list(writers):
                writer.transport.abort()  # RST: the peer sees the listener gone at once
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await server.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        if mode == "silent":
            async with asyncio.timeout(_IDLE):
                await reader.read()  # until the prober hangs up
            return
        if mode == "slow":
            await asyncio.sleep(self.delay)
        greeting = {"busy": b"421 too busy\r\n", "reject": b"554 no service here\r\n"}.get(mode, b"220 fake ESMTP\r\n")
        writer.write(greeting)
        await writer.drain()
        if mode == "busy":
            return  # RFC 5321 §3.8: after 421 the server closes
        await self._commands(reader, writer, accepting=mode != "reject")

    async def _commands(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, accepting: bool) -> None:
        """Answer commands until QUIT, end of stream or idle timeout."""
        while True:
            async with asyncio.timeout(_IDLE):
                line = await reader.readline()
            if not line:
                return
            self.commands.append(line.rstrip(b"\r\n").decode("ascii", "replace"))  # list.append is atomic
            verb = line.split(maxsplit=1)[0].upper() if line.strip() else b""
            if verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            if not accepting:
                writer.write(b"503 bad sequence of commands\r\n")
            elif verb in (b"EHLO", b"HELO"):
                writer.write(b"250-fake\r\n250 OK\r\n")
            else:
                writer.write(b"502 command not implemented\r\n")
            await writer.drain()
