"""The transports: UDP and TCP listeners on asyncio, thin wrappers around ``Responder``.

UDP reads the socket straight from the event loop (``add_reader`` + ``recvfrom``): in
this project's measurements asyncio's DatagramProtocol costs about five times more per
packet. TCP (RFC 7766) lives in serve/tcp.py, bounded so that it never delays UDP;
here its listeners are started beside the UDP ones, with the process's descriptor limit
raised to hold them. No DNS semantics live here.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket

from authdns.configuration.config import ServerConfig
from authdns.answering.query import Via
from authdns.engine.responder import Responder
from authdns.serve.rrl import RateLimiter, rate_limiter
from authdns.serve.tcp import TcpListener

log = logging.getLogger("authdns.server")

UDP_BATCH = 64  # datagrams read per wake-up before yielding to the loop (TCP stays served)
UDP_RECEIVE_BUFFER = 1 << 20
DESCRIPTOR_RESERVE = 128  # descriptors kept for everything but TCP connections


class BindError(Exception):
    """A listen address could not be bound; the message says which and why."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


# The address family or address does not exist on this host (IPv6 disabled, say), as
# opposed to a port taken by someone else.
UNAVAILABLE = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT})


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _reuse_port(sock: socket.socket) -> None:
    """Several sockets on one address and port, the kernel spreading clients over them
    by address hash (Linux SO_REUSEPORT): one per worker process (serve/workers.py)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def _udp_socket(host: str, port: int, shared: bool = False) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    if shared:
        _reuse_port(sock)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    except OSError:
        pass  # a smaller buffer only means earlier drops under overload
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def _tcp_socket(host: str, port: int, shared: bool = False) -> socket.socket:
    # IPPROTO_TCP explicitly: accepted sockets inherit the protocol number, and asyncio
    # turns Nagle off (TCP_NODELAY) only on sockets whose proto is IPPROTO_TCP. With
    # proto 0, a second pipelined answer waited for the client's delayed ACK (~40 ms).
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        _reuse_port(sock)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


def bind_pair(host: str, port: int, attempts: int = 20, copies: int = 1) -> list[tuple[socket.socket, socket.socket]]:
    """UDP and TCP sockets on the same address and port; ``copies`` pairs of them with
    SO_REUSEPORT when more than one. Port 0 picks a free port that is free for both
    (retrying when the kernel's UDP choice is taken for TCP)."""
    for _ in range(attempts if port == 0 else 1):
        try:
            udp = _udp_socket(host, port)
        except OSError as error:
            raise BindError(f"cannot listen on UDP {host} port {port}: {error.strerror}", error.errno) from None
        chosen = udp.getsockname()[1]
        try:
            tcp = _tcp_socket(host, chosen)
        except OSError as error:
            udp.close()
            if port != 0 or error.errno != errno.EADDRINUSE:
                raise BindError(f"cannot listen on TCP {host} port {chosen}: {error.strerror}", error.errno) from None
            continue
        if copies == 1:
            return [(udp, tcp)]
        # The pair just bound without SO_REUSEPORT proves that no other server holds the
        # port: with it, a second authdns on the same port would bind too and silently
        # take a share of the queries. Now the shared sockets, one pair per worker.
        udp.close()
        tcp.close()
        return _shared_pairs(host, chosen, copies)
    raise BindError(f"no port free for both UDP and TCP on {host}")


def _shared_pairs(host: str, port: int, copies: int) -> list[tuple[socket.socket, socket.socket]]:
    pairs: list[tuple[socket.socket, socket.socket]] = []
    try:
        for _ in range(copies):
            udp = _udp_socket(host, port, shared=True)
            try:
                pairs.append((udp, _tcp_socket(host, port, shared=True)))
            except OSError:
                udp.close()
                raise
    except OSError as error:
        close_pairs(pairs)
        raise BindError(f"cannot listen on {host} port {port} {copies} times: {error.strerror}", error.errno) from None
    return pairs


def close_pairs(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    for udp, tcp in pairs:
        udp.close()
        tcp.close()


def bind_all(config: ServerConfig, copies: int = 1) -> list[list[tuple[socket.socket, socket.socket]]]:
    """Every listen address bound before any serves: per address, ``copies`` UDP+TCP
    pairs. A default address this host lacks (no IPv6 loopback) is skipped with a
    warning; any other failure closes what was bound and raises BindError."""
    bound: list[list[tuple[socket.socket, socket.socket]]] = []
    try:
        for host, port in config.listen:
            try:
                bound.append(bind_pair(host, port, copies=copies))
            except BindError as error:
                if (host, port) not in config.optional_listen or error.errno not in UNAVAILABLE:
                    raise
                log.warning("%s; serving without it", error)
        if not bound:
            raise BindError("no listen address could be bound")
    except BindError:
        for pairs in bound:
            close_pairs(pairs)
        raise
    return bound


class UdpListener:
    def __init__(self, sock: socket.socket, responder: Responder, limiter: RateLimiter | None = None) -> None:
        self.sock = sock
        self.responder = responder
        self.limiter = limiter  # response rate limiting (serve/rrl.py); None: off
        self.send_errors = 0
        # Read into one buffer big enough for any datagram, then copy out what came:
        # recvfrom(65535) allocates 64 KiB per datagram and shrinks it, which measured
        # about a quarter slower per query than this.
        self.buffer = bytearray(65535)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.sock.fileno(), self.on_readable)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.sock.fileno() >= 0:
            loop.remove_reader(self.sock.fileno())

    def on_readable(self) -> None:
        responder = self.responder
        sock, respond, buffer, limiter = self.sock, responder.respond, self.buffer, self.limiter
        view = memoryview(buffer)
        for _ in range(UDP_BATCH):
            try:
                size, address = sock.recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. an ICMP error queued for an earlier reply: not fatal
            data = view[:size].tobytes()
            reply = respond(data, Via.UDP, address)  # the address: IXFR access rules (transfer/zonetransfer.py)
            if reply is None:
                continue
            if limiter is not None:
                limited = limiter.check(address, reply, responder.reply_key)
                if limited is not reply:
                    counters = responder.counters
                    if limited is None:
                        counters.rrl_dropped += 1
                        continue
                    counters.rrl_slipped += 1
                    reply = limited
            try:
                sock.sendto(reply, address)
            except OSError:
                self.send_errors += 1  # the socket buffer is full: UDP may drop

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stop(loop)
        self.sock.close()


def raise_descriptor_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit, as NSD does at start
    (systemd's default soft limit is 1024, its hard 524288): every TCP connection is a
    descriptor. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep what we have; connection caps are fitted to it below
    return soft


def connection_caps(config: ServerConfig, listeners: int) -> int:
    """``tcp_max_connections`` per listener, lowered when this process's descriptor limit
    cannot hold that many on every listener (with DESCRIPTOR_RESERVE left for zones,
    sockets and the control server), with a warning: past the limit accept() fails and
    the caps, the eviction of idle connections included, would not be what decides."""
    limit = raise_descriptor_limit()
    room = max(1, (limit - DESCRIPTOR_RESERVE) // max(1, listeners))
    if room < config.tcp_max_connections:
        log.warning("descriptor limit %d holds %d TCP connections per listen address, not --tcp-max-connections %d",
                    limit, room, config.tcp_max_connections)
        return room
    return config.tcp_max_connections


class DnsServer:
    """Every listen address, UDP and TCP, bound before any of them serves."""

    def __init__(self, config: ServerConfig, responder: Responder, limiter: RateLimiter | None = None) -> None:
        self.config = config
        self.responder = responder
        # Response rate limiting: a worker is handed the supervisor's (one table for all
        # workers, serve/rrl.py); a single process makes its own when it starts.
        self.limiter = limiter
        self.udp: list[UdpListener] = []
        self.tcp: list[TcpListener] = []
        self.addresses: list[tuple[str, int]] = []

    async def start(self, bound: list[tuple[socket.socket, socket.socket]] | None = None,
                    serving: bool = True) -> list[tuple[str, int]]:
        """Serve on ``bound`` (one UDP+TCP pair per address, bound by the supervisor for a
        worker), or bind every listen address first. With ``serving`` False, nothing is
        read until ``serve()``: a new worker waits so while the old one hands over."""
        if bound is None:
            bound = [pairs[0] for pairs in bind_all(self.config)]
        if self.limiter is None:
            self.limiter = rate_limiter(self.config)
        limiter = self.limiter
        caps = connection_caps(self.config, len(bound))
        for udp_sock, tcp_sock in bound:
            self.udp.append(UdpListener(udp_sock, self.responder, limiter))
            tcp = TcpListener(tcp_sock, self.responder, self.config, caps)
            await tcp.start(serving=False)
            self.tcp.append(tcp)
            host, port = udp_sock.getsockname()[:2]
            self.addresses.append((host, port))
        if serving:
            await self.serve()
        return self.addresses

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for udp in self.udp:
            udp.start(loop)
        for tcp in self.tcp:
            await tcp.serve()

    def pause(self) -> None:
        """Stop reading UDP and accepting TCP, at once: what the sockets hold now is left
        for their other readers (the next worker of the slot)."""
        loop = asyncio.get_running_loop()
        for udp in self.udp:
            udp.stop(loop)
        for tcp in self.tcp:
            tcp.stop_accepting()

    async def retire(self, grace: float) -> None:
        """After ``pause()``: finish the TCP queries under way within ``grace`` seconds."""
        self.pause()
        await asyncio.gather(*(tcp.retire(grace) for tcp in self.tcp))
        loop = asyncio.get_running_loop()
        for udp in self.udp:
            udp.close(loop)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for udp in self.udp:
            udp.close(loop)
        for tcp in self.tcp:
            await tcp.close()
