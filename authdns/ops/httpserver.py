"""A small HTTP/1.1 server on the event loop, bounded in time and in connections, for
/metrics and the status page (ops/metrics.py says what it serves).

A connection is a task on the loop, not a thread; it holds one descriptor, and only
while it is useful:

- ``timeout`` seconds for a request head (request line and headers, RFC 9112 §2-§5),
  counted from the connection's start or the end of the previous response: this is
  both the header read timeout (a client that trickles its head, slowloris, is
  closed) and the keep-alive idle timeout (RFC 9112 §9.8 lets a server close an idle
  persistent connection at any time). A response must also be taken within it.
- at most ``max_connections`` open: one more closes the connection that has waited
  longest for its next request head; when every one is busy answering, the new one
  gets 503 and is closed.
- GET and HEAD only, no request bodies (one announced closes the connection after the
  answer), heads of at most ``HEAD_LINES`` lines of ``LINE_LIMIT`` octets.

Accepting with no descriptor left (EMFILE) is counted by base/descriptors.py and tried
again a second later (the client waits in the listen backlog). ``Handler`` gives the status, content type and body
of a path; this module knows nothing of what it serves.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from authdns.base.descriptors import ACCEPT_RETRY, accept

log = logging.getLogger("authdns.http")

BACKLOG = 128  # connections the kernel holds for us until accepted
LINE_LIMIT = 8192  # octets in one head line (the request line or a header); longer: 431
HEAD_LINES = 100  # header lines in one request; more: 431
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 431: "Request Header Fields Too Large", 503: "Service Unavailable",
            505: "HTTP Version Not Supported"}

# What a handler returns: status code, Content-Type, body.
Reply = tuple[int, str, bytes]
Handler = Callable[[str], Awaitable[Reply]]


class _BadHead(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without the query string
    keep_alive: bool  # the client lets the connection persist (RFC 9112 §9.3)


@dataclass(eq=False, slots=True)
class _Connection:
    writer: asyncio.StreamWriter
    waiting_since: float  # loop time it began waiting for a request head
    busy: bool = False  # answering a request: not closed to make room


@dataclass(slots=True)
class HttpCounts:
    """What the server did, for /metrics."""

    accepted: int = 0
    refused: int = 0  # at the cap with every connection busy: 503
    evicted: int = 0  # closed to make room for a new connection
    timed_out: int = 0  # no complete request head (or the response not taken) in time
    requests: int = 0


@dataclass(eq=False)
class HttpServer:
    address: tuple[str, int]
    handle: Handler
    timeout: float = 10.0
    max_connections: int = 64
    counts: HttpCounts = field(default_factory=HttpCounts)

    def __post_init__(self) -> None:
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._open: dict[asyncio.Task[None], _Connection] = {}

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def start(self) -> tuple[str, int]:
        """Bind (OSError when it cannot) and serve on the running loop; the bound address."""
        host, port = self.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=BACKLOG)
        listener.setblocking(False)
        self._listener = listener
        self._accepting = asyncio.get_running_loop().create_task(self._accept_loop(listener), name="http accept")
        return listener.getsockname()[:2]

    async def close(self) -> None:
        tasks = [task for task in (self._accepting, *self._open) if task is not None]
        for connection in self._open.values():
            connection.writer.transport.abort()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._open.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    async def _accept_loop(self, listener: socket.socket) -> None:
        """One connection at a time, so the count is right at each accept: room is made
        (or 503 given) before the next one is taken, and a burst of connects cannot hold
        more than the cap (asyncio's own server accepts a backlog's worth at once)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await accept(listener, "accept")
            except OSError as error:
                log.error("http accept failed: %s", error)
                await asyncio.sleep(ACCEPT_RETRY)
                continue
            sock.setblocking(False)
            if len(self._open) >= self.max_connections and not self._make_room():
                self.counts.refused += 1
                try:  # a few octets: the socket buffer takes them at once
                    sock.send(_response(503, "text/plain; charset=utf-8", b"too many connections\n", keep=False))
                except OSError:
                    pass
                sock.close()
                await asyncio.sleep(0)  # a flood of refusals must not keep the loop to itself
                continue
            try:
                # Its own turn of the loop: connections closed to make room are gone after it.
                reader, writer = await asyncio.open_connection(sock=sock, limit=LINE_LIMIT)
            except OSError:
                sock.close()
                continue
            self.counts.accepted += 1
            # drain() returns only once the kernel has every octet: what a client does not
            # read stays bounded by the timeout, not by our buffer.
            writer.transport.set_write_buffer_limits(high=0)
            connection = _Connection(writer, loop.time())
            task = loop.create_task(self._connection(reader, writer, connection))
            self._open[task] = connection
            task.add_done_callback(self._gone)

    def _gone(self, task: asyncio.Task[None]) -> None:
        self._open.pop(task, None)  # already gone if it was closed to make room

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          connection: _Connection) -> None:
        try:
            await self._serve(reader, writer, connection)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client left, or was closed to make room, or close()
        finally:
            writer.transport.abort()  # whatever is unsent is for a client that did not take it

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            connection.busy, connection.waiting_since = False, loop.time()
            try:
                async with asyncio.timeout(self.timeout):
                    request = await _read_head(reader)
            except TimeoutError:
                self.counts.timed_out += 1
                return
            except _BadHead as bad:
                writer.write(_response(bad.code, "text/plain; charset=utf-8", f"{bad}\n".encode(), keep=False))
                await self._drain(writer)
                return
            if request is None:
                return  # the client closed
            connection.busy = True
            self.counts.requests += 1
            if request.method not in ("GET", "HEAD"):
                code, kind, body = 405, "text/plain; charset=utf-8", b"only GET and HEAD\n"
            else:
                code, kind, body = await self._answer(request.path)
            writer.write(_response(code, kind, body, keep=request.keep_alive, head=request.method == "HEAD"))
            if not await self._drain(writer) or not request.keep_alive:
                return

    async def _answer(self, path: str) -> Reply:
        try:
            return await self.handle(path)
        except Exception:  # noqa: BLE001 - a bug must cost one answer, not the connection's task
            log.exception("internal error answering http %s", path[:200])
            return 500, "text/plain; charset=utf-8", b"internal error; the server log has the details\n"

    async def _drain(self, writer: asyncio.StreamWriter) -> bool:
        """Until the response is handed to the kernel, within the timeout: a client that
        does not read its answer holds nothing for long."""
        try:
            async with asyncio.timeout(self.timeout):
                await writer.drain()
        except TimeoutError:
            self.counts.timed_out += 1
            return False
        return True

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request; False if all are busy."""
        waiting = [(connection.waiting_since, task) for task, connection in self._open.items() if not connection.busy]
        if not waiting:
            return False
        _, task = min(waiting, key=lambda pair: pair[0])
        # Out of the count now: its socket closes on the loop's next turn, its task ends with it.
        self._open.pop(task).writer.transport.abort()
        task.cancel()
        self.counts.evicted += 1
        return True


async def _read_head(reader: asyncio.StreamReader) -> Request | None:
    """The request line and headers (RFC 9112 §3, §5; a bare LF ends a line too, §2.2);
    None when the client closed before sending one."""
    line = await _line(reader)
    while line == b"":  # §2.2: empty lines before the request line are ignored
        line = await _line(reader)
        if line is None:
            return None
    if line is None:
        return None
    parts = line.split(b" ")
    if len(parts) != 3:
        raise _BadHead(400, "a request line is METHOD TARGET HTTP/1.x")
    method, target, version = (part.decode("ascii", "replace") for part in parts)
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadHead(505, "HTTP/1.0 and HTTP/1.1 only")
    tokens: set[str] = set()
    body = False
    for _ in range(HEAD_LINES):
        header = await _line(reader)
        if header is None:
            return None
        if header == b"":
            break
        name, _, value = header.partition(b":")
        name = name.strip().lower()
        if name == b"connection":
            tokens |= {token.strip().lower() for token in value.decode("ascii", "replace").split(",")}
        elif name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
            body = True
    else:
        raise _BadHead(431, f"at most {HEAD_LINES} header lines")
    persistent = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
    # A body we do not read would be taken for the next request: answer, then close.
    return Request(method, target.split("?", 1)[0], persistent and not body)


async def _line(reader: asyncio.StreamReader) -> bytes | None:
    try:
        line = await reader.readline()
    except ValueError:  # over the stream's limit (LINE_LIMIT)
        raise _BadHead(431, f"a head line is at most {LINE_LIMIT} octets") from None
    if not line.endswith(b"\n"):
        return None  # end of stream
    return line.rstrip(b"\r\n")


def _response(code: int, content_type: str, body: bytes, *, keep: bool, head: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {code} {_REASONS.get(code, 'Status')}", "Server: authdns",
             f"Content-Type: {content_type}", f"Content-Length: {len(body)}", "Cache-Control: no-store"]
    if code == 405:
        lines.append("Allow: GET, HEAD")
    if not keep:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body)
