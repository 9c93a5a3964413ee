"""DNS over TCP (RFC 7766) that cannot be turned against UDP or against other TCP clients.

One ``TcpConnection`` (an asyncio ``BufferedProtocol``) per client, owned by the
``TcpListener`` of its listening socket. Framing is RFC 1035 §4.2.2 / RFC 7766 §8 (two
octets of length); pipelined queries are answered in order (§6.2.1.1). What bounds it:

* **The loop's time.** Queries are not answered in the read callback. A connection with a
  whole message queues itself; ``_serve_ready`` answers at most ``TURN`` queries per
  connection in turn and ``BATCH`` in all, then yields to the loop, so the UDP reader
  (serve/server.py, 64 datagrams per wake-up) gets its turn between every TCP batch
  whatever the number of connections or pipelined queries (§6.2.1.1 allows any order of
  work; the answers of one connection stay in order).
* **Memory per connection.** Reads go into one shared chunk (``READ_CHUNK``) and are copied
  into the connection's own buffer, which stops being read once it holds ``READ_CHUNK``
  bytes or one whole message. Answers wait in the transport: past ``tcp_max_backlog``
  queued bytes the transport pauses writing, and the connection then neither answers nor
  reads (the client's own TCP window pushes back on it) until the client reads.
* **Memory in all.** The bytes held by connections whose writing is paused are summed;
  past ``tcp_max_output`` the one paused longest is reset (its queued answers dropped).
* **Time.** A connection is closed when idle between queries for ``tcp_idle_timeout``
  (§6.2.3), when a message that has started does not finish arriving within
  ``tcp_io_timeout``, and when its answers wait that long for the client to read any
  (Knot's tcp-io-timeout does both). One sweep per listener checks them, not a timer per
  connection.
* **Slots.** At most ``tcp_max_connections`` per listener; a new connection over it closes
  the idlest one (the longest since it last got an answer) rather than being refused
  (§6.2.3: a server may close idle connections under pressure; §7: so that new clients
  are not locked out). At most ``tcp_max_per_client`` from one address: over that the new
  one is closed at once.

No DNS semantics live here: every message goes to ``Responder.respond(packet, Via.TCP,
peer)``; a ``Stream`` (a zone transfer) is written message by message as the client reads.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import OrderedDict, deque

from authdns.answering.query import Via
from authdns.configuration.config import ServerConfig
from authdns.engine.responder import Responder, Stream

log = logging.getLogger("authdns.server")

TURN = 16  # queries one connection gets answered before the next connection's turn
BATCH = 64  # TCP queries answered per loop iteration in all, as UDP_BATCH datagrams are read
READ_CHUNK = 16 * 1024  # one read, and what a connection buffers of pipelined queries before it stops reading
LOW_WATER_SHARE = 4  # writing resumes once the queued answers are under a quarter of the backlog

# Why a connection was closed by the server: the labels of authdns_tcp_closed_total.
REFUSED = "refused"  # over tcp_max_per_client, or no slot could be freed
EVICTED = "evicted"  # the idlest, closed for a new connection
IDLE = "idle"  # nothing asked for tcp_idle_timeout
SLOW_QUERY = "slow_query"  # a message that did not finish arriving within tcp_io_timeout
NOT_READING = "not_reading"  # answers not read by the client within tcp_io_timeout
OUTPUT_FULL = "output_full"  # over tcp_max_output in all: the longest-stalled connection
REASONS = (REFUSED, EVICTED, IDLE, SLOW_QUERY, NOT_READING, OUTPUT_FULL)


class TcpConnection(asyncio.BufferedProtocol):
    __slots__ = ("listener", "transport", "peer", "client", "inbuf", "started", "active", "queued",
                 "paused_at", "held", "reading", "eof", "streaming", "closing", "resumed")

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.peer: tuple | None = None
        self.client = ""
        self.inbuf = bytearray()
        self.started = 0.0  # when the first byte of the message now arriving came; 0: none under way
        self.active = 0.0  # when it connected or last got an answer: its place in the idle order
        self.queued = False  # in the listener's ready queue
        self.paused_at = 0.0  # when the transport paused writing (0: not paused)
        self.held = 0  # queued answer bytes when last seen paused
        self.reading = True
        self.eof = False  # the client half-closed: answer what came, then close
        self.streaming = False  # a zone transfer is being written: later queries wait (in order)
        self.closing = False
        self.resumed: asyncio.Future | None = None  # a transfer waiting for the client to read

    # -- the transport's callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  (uvloop's is no asyncio.Transport subclass)
        self.peer = transport.get_extra_info("peername")
        self.client = self.peer[0] if self.peer else ""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # answers are whole messages written at once: no Nagle wait (asyncio may have set it)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # the peer is already gone; connection_lost follows
        backlog = self.listener.config.tcp_max_backlog
        transport.set_write_buffer_limits(high=backlog, low=backlog // LOW_WATER_SHARE)
        self.listener.admit(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.listener.chunk  # shared: buffer_updated copies out before any other read

    def buffer_updated(self, nbytes: int) -> None:
        if self.closing:
            return
        inbuf = self.inbuf
        if not inbuf:
            self.started = self.listener.now()
        inbuf += self.listener.chunk[:nbytes]
        self._settle()

    def eof_received(self) -> bool:
        self.eof = True
        if not self._has_query() and not self.streaming and not self.queued:
            return False  # nothing to answer: asyncio closes the transport
        return True  # half-closed: the answers still go out, then _settle closes

    def pause_writing(self) -> None:
        self.paused_at = self.listener.now()
        self.listener.stalled(self, self.transport.get_write_buffer_size() if self.transport else 0)

    def resume_writing(self) -> None:
        self.paused_at = 0.0
        self.listener.unstalled(self)
        self.active = self.listener.now()
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)
        self._settle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)
        self.listener.forget(self)

    # -- answering ----------------------------------------------------------------------

    def _has_query(self) -> bool:
        """A whole message is buffered."""
        inbuf = self.inbuf
        return len(inbuf) >= 2 and len(inbuf) >= 2 + ((inbuf[0] << 8) | inbuf[1])

    def _blocked(self) -> bool:
        return self.closing or self.streaming or self.paused_at != 0.0

    def _settle(self) -> None:
        """After any change: queue for answering when a message is whole and nothing
        blocks it; close after a half-close or a retire once all is answered; read on,
        or stop reading while a chunk (or one whole large message) waits or the client
        does not read its answers."""
        transport = self.transport
        if self.closing or transport is None:
            return
        if not self._blocked():
            if self._has_query():
                self.listener.ready(self)
            elif not self.queued and (self.eof or (self.listener.retiring and not self.inbuf)):
                self.shut()
                return
        if self.eof:
            return  # nothing more will be read
        inbuf = self.inbuf
        wanted = READ_CHUNK
        if len(inbuf) >= 2:
            wanted = max(wanted, 2 + ((inbuf[0] << 8) | inbuf[1]))  # one large message may come whole
        if self.reading and (len(inbuf) >= wanted or self.paused_at):
            self.reading = False
            transport.pause_reading()  # the client's window fills: it is the one that waits
        elif not self.reading and len(inbuf) < wanted and not self.paused_at:
            self.reading = True
            transport.resume_reading()

    def serve(self, most: int) -> int:
        """Answer up to ``most`` buffered queries in order; how many were taken."""
        transport, inbuf, respond = self.transport, self.inbuf, self.listener.responder.respond
        taken = 0
        while taken < most and not self._blocked() and self._has_query():
            length = (inbuf[0] << 8) | inbuf[1]
            if length == 0:
                self.shut()  # a zero length: no message can follow (RFC 7766 §8)
                return taken + 1
            packet = bytes(inbuf[2:2 + length])
            del inbuf[:2 + length]
            taken += 1
            now = self.listener.now()
            self.started = now if inbuf else 0.0
            reply = respond(packet, Via.TCP, self.peer)
            if reply is None:
                continue
            if reply.__class__ is not bytes and isinstance(reply, Stream):  # a transfer; bytes most often
                self.streaming = True
                asyncio.get_running_loop().create_task(self._stream(reply))
                break
            transport.write(struct.pack("!H", len(reply)) + reply)
            self.active = now
        self._settle()
        return taken

    async def _stream(self, stream: Stream) -> None:
        """A zone transfer: several messages (RFC 5936 §2.2), built in a thread so other
        queries keep flowing, each written once the client has read the ones before."""
        try:
            messages = await stream.messages()
            for message in messages:
                while self.paused_at and not self.closing:
                    self.resumed = asyncio.get_running_loop().create_future()
                    await self.resumed
                if self.closing:
                    return
                self.transport.write(struct.pack("!H", len(message)) + message)
                self.active = self.listener.now()
        except Exception:
            log.exception("zone transfer to %s failed", self.client)
            self.abort()
            return
        finally:
            self.streaming = False
            self.resumed = None
        self._settle()

    # -- closing ------------------------------------------------------------------------

    def shut(self) -> None:
        """Close after the queued answers are sent (a FIN)."""
        if not self.closing and self.transport is not None:
            self.closing = True
            self.transport.close()

    def abort(self) -> None:
        """Close now, dropping what is queued (a RST): frees its memory at once."""
        if self.transport is not None:
            self.closing = True
            self.transport.abort()

    def idle(self) -> bool:
        """Nothing under way: between queries, no answer waiting to be read."""
        return not self.inbuf and not self.streaming and not self.paused_at and not self.queued


class TcpListener:
    """One listening socket's connections, their caps, their timeouts, and the turn-taking
    of their queries on the loop."""

    def __init__(self, sock: socket.socket, responder: Responder, config: ServerConfig,
                 max_connections: int | None = None) -> None:
        self.sock = sock
        self.responder = responder  # answers transfers too, as a TransferStream
        self.config = config
        self.max_connections = max_connections or config.tcp_max_connections
        # Every open connection, the idlest first (least recently connected or answered).
        self.connections: OrderedDict[TcpConnection, None] = OrderedDict()
        self.per_client: dict[str, int] = {}  # open connections per client address
        self.queue: deque[TcpConnection] = deque()  # connections with a whole query, in turn
        self.scheduled = False
        self.paused: dict[TcpConnection, None] = {}  # writing paused, the longest first
        self.held = 0  # their queued bytes, as last seen
        self.chunk = memoryview(bytearray(READ_CHUNK))
        self.server: asyncio.base_events.Server | None = None
        self.retiring = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sweeper: asyncio.TimerHandle | None = None
        self.gone: asyncio.Event | None = None

    @property
    def active(self) -> int:
        return len(self.connections)

    def now(self) -> float:
        return self.loop.time()  # type: ignore[union-attr]

    def count(self, reason: str) -> None:
        closed = self.responder.counters.tcp_closed
        closed[reason] = closed.get(reason, 0) + 1

    async def start(self, serving: bool = True) -> None:
        self.loop = asyncio.get_running_loop()
        self.gone = asyncio.Event()
        self.server = await self.loop.create_server(lambda: TcpConnection(self), sock=self.sock,
                                                    start_serving=serving)
        self._sweep_later()

    async def serve(self) -> None:
        if self.server is not None:
            await self.server.start_serving()

    # -- slots --------------------------------------------------------------------------

    def admit(self, connection: TcpConnection) -> None:
        client = connection.client
        if self.retiring or self.per_client.get(client, 0) >= self.config.tcp_max_per_client:
            # The cap per address keeps one client's idle or trickling connections from
            # taking every slot; over it, the new one goes (RFC 7766 §6.2.2).
            self.count(REFUSED)
            connection.closing = True
            connection.transport.abort()
            return
        if len(self.connections) >= self.max_connections and not self._evict():
            self.count(REFUSED)
            connection.closing = True
            connection.transport.abort()
            return
        connection.active = self.now()
        self.connections[connection] = None
        self.per_client[client] = self.per_client.get(client, 0) + 1

    def _evict(self) -> bool:
        """Close the idlest connection that is not in the middle of answering (RFC 7766
        §6.2.3); a paused or trickling one counts as idle. False when every one is busy."""
        for candidate in self.connections:
            if candidate.paused_at or not (candidate.streaming or candidate._has_query()):
                self.count(EVICTED)
                self._drop(candidate)
                candidate.abort()
                return True
        return False

    def _drop(self, connection: TcpConnection) -> None:
        """Free its slot now (its connection_lost comes on a later loop turn)."""
        if self.connections.pop(connection, False) is not False:
            left = self.per_client[connection.client] - 1
            if left:
                self.per_client[connection.client] = left
            else:
                del self.per_client[connection.client]
        self.unstalled(connection)

    def forget(self, connection: TcpConnection) -> None:
        self._drop(connection)
        if not self.connections and self.gone is not None:
            self.gone.set()

    # -- turns --------------------------------------------------------------------------

    def ready(self, connection: TcpConnection) -> None:
        if not connection.queued:
            connection.queued = True
            self.queue.append(connection)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._serve_ready)  # type: ignore[union-attr]

    def _serve_ready(self) -> None:
        """Answer queued queries, TURN per connection and BATCH in all, then give the loop
        back (UDP reads in between); what is left goes on the next loop iteration."""
        self.scheduled = False
        queue, budget = self.queue, BATCH
        while queue and budget > 0:
            connection = queue.popleft()
            connection.queued = False
            budget -= connection.serve(min(TURN, budget))  # a connection with more queues itself again
        if queue and not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._serve_ready)  # type: ignore[union-attr]

    # -- output -------------------------------------------------------------------------

    def stalled(self, connection: TcpConnection, size: int) -> None:
        """Its writing paused: count what it holds against tcp_max_output; over it, reset
        the connections stalled longest (their answers were not being read anyway)."""
        if connection in self.paused:
            self.held -= connection.held
        else:
            self.paused[connection] = None
        connection.held = size
        self.held += size
        while self.held > self.config.tcp_max_output and self.paused:
            oldest = next(iter(self.paused))
            self.count(OUTPUT_FULL)
            self._drop(oldest)
            oldest.abort()

    def unstalled(self, connection: TcpConnection) -> None:
        if connection in self.paused:
            del self.paused[connection]
            self.held -= connection.held
            connection.held = 0

    # -- time ---------------------------------------------------------------------------

    def _sweep_later(self) -> None:
        config = self.config
        interval = min(max(min(config.tcp_idle_timeout, config.tcp_io_timeout) / 4, 0.05), 1.0)
        self.sweeper = self.loop.call_later(interval, self._sweep)  # type: ignore[union-attr]

    def _sweep(self) -> None:
        """Close what has waited too long: idle between queries (tcp_idle_timeout), a
        message arriving too slowly or answers not read (tcp_io_timeout)."""
        now, config = self.now(), self.config
        idle_since, io_since = now - config.tcp_idle_timeout, now - config.tcp_io_timeout
        for connection in list(self.connections):
            if connection.closing:
                continue
            if connection.paused_at:
                size = connection.transport.get_write_buffer_size()
                if size < connection.held:  # the client reads, slowly: not stalled
                    self.held -= connection.held - size
                    connection.held, connection.paused_at = size, now
                elif connection.paused_at < io_since:
                    self._close(connection, NOT_READING)
                continue
            if connection.started and connection.started < io_since and not connection._has_query():
                self._close(connection, SLOW_QUERY)
            elif connection.idle() and connection.active < idle_since:
                self._close(connection, IDLE)
        self._sweep_later()

    def _close(self, connection: TcpConnection, reason: str) -> None:
        self.count(reason)
        self._drop(connection)
        if reason == IDLE:
            connection.shut()
        else:
            connection.abort()

    # -- stopping -----------------------------------------------------------------------

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()  # this process's listening descriptor; others keep theirs

    async def retire(self, grace: float) -> None:
        """Stop accepting; close connections waiting for a query; let those with a query
        under way answer it (RFC 7766 §6.2.3 lets a server close between queries, and
        clients retry), for at most ``grace`` seconds; then end the rest."""
        self.retiring = True
        self.stop_accepting()
        for connection in list(self.connections):
            if connection.idle():
                connection.shut()
        if self.connections and self.gone is not None:
            self.gone.clear()
            try:
                await asyncio.wait_for(self.gone.wait(), grace)
            except asyncio.TimeoutError:
                pass
        await self.close()

    async def close(self) -> None:
        """Stop accepting, end every open connection, and wait until they have closed."""
        if self.server is not None:
            self.server.close()
        if self.sweeper is not None:
            self.sweeper.cancel()
        for connection in list(self.connections):
            connection.abort()
        if self.connections and self.gone is not None:
            self.gone.clear()
            try:
                await asyncio.wait_for(self.gone.wait(), 5.0)
            except asyncio.TimeoutError:
                pass
        if self.server is not None:
            await self.server.wait_closed()
