"""Server settings that do not belong in zone files, as one frozen ``ServerConfig``.
It reads no zones."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

from authdns.base.hostport import parse_host_port
from authdns.zones.loader import DEFAULT_MAX_ZONE_BYTES

if TYPE_CHECKING:
    from authdns.zones.transferspec import AllowRule
    from authdns.base.tsig import TsigSecret

DEFAULT_PORT = 5353
# Unprivileged by default, so `authdns serve` runs out of the box without root.
DEFAULT_LISTEN = (("127.0.0.1", DEFAULT_PORT), ("::1", DEFAULT_PORT))
# RFC 6891 §6.2.5 and DNS Flag Day 2020: 1232 octets avoids IP fragmentation.
DEFAULT_UDP_PAYLOAD = 1232
# (client prefix, preference group) rotors: ~410 bytes each (measured, a three-member
# weighted group with its own credit), 27 MB full, per worker process
DEFAULT_CLIENT_ROTORS = 65_536
# Operator overrides (drains) and the control socket live here; systemd sets
# /var/lib/authdns (StateDirectory=). Relative to the working directory by default.
DEFAULT_STATE_DIR = Path(".authdns")


def control_path(state_dir: Path) -> Path:
    return state_dir / "control.sock"


def overrides_path(state_dir: Path) -> Path:
    return state_dir / "overrides.json"


def serials_path(state_dir: Path) -> Path:
    return state_dir / "serials.json"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    zone_dir: Path = Path("zones")
    listen: tuple[tuple[str, int], ...] = DEFAULT_LISTEN
    # Addresses skipped with a warning when the host lacks them (the default [::1] on a
    # host without IPv6); any other address that cannot be bound stops the server.
    optional_listen: frozenset[tuple[str, int]] = frozenset()
    udp_payload: int = DEFAULT_UDP_PAYLOAD
    # TCP (serve/tcp.py). NSD: tcp-count 100 per process, tcp-timeout 120 s; Knot:
    # tcp-max-clients half the descriptor limit, tcp-idle-timeout 10 s, tcp-io-timeout 0.5 s.
    tcp_idle_timeout: float = 10.0  # RFC 7766 §6.2.3: seconds, not minutes
    tcp_max_connections: int = 1024  # per listener and process; over it the idlest is closed
    tcp_max_per_client: int = 32  # connections from one address at once (slowloris)
    tcp_io_timeout: float = 2.0  # a query must finish arriving, and answers start being read, within this
    tcp_max_backlog: int = 32 * 1024  # answer bytes queued for one client before it must read them
    tcp_max_output: int = 16 << 20  # answer bytes queued for clients that do not read, in all, per listener
    state_dir: Path = DEFAULT_STATE_DIR
    control: Path | None = None  # the control socket; None: state_dir/control.sock
    watch: bool = True  # reload zone files when they change (watchdog); SIGHUP always does
    version: str = field(default="authdns")
    identity: str | None = None  # CH TXT id.server; None refuses it
    # Zone transfers (transfer/access.py decides). Who may AXFR/IXFR every zone, beside each zone's own
    # `transfer: allow:`; nobody by default (RFC 5936 §5: transfers are a policy matter).
    allow_transfer: tuple[AllowRule, ...] = ()
    # TSIG keys (RFC 8945): absolute lowercase key name -> algorithm and secret (base/tsig.py).
    tsig_keys: Mapping[str, TsigSecret] = field(default_factory=lambda: MappingProxyType({}))
    notify_retry: float = 5.0  # seconds before the first NOTIFY retry, doubling (RFC 1996 §3.6)
    notify_attempts: int = 5  # NOTIFY messages per secondary and change before giving up
    # Processes answering queries (serve/workers.py); 1: this process answers, no supervisor.
    workers: int = 1
    # Seconds a worker's event loop may stay silent on its channel before it counts as
    # hung and is killed and forked again (serve/workers.py); 0: never.
    heartbeat_timeout: float = 1.0
    event_loop: str = "asyncio"  # or "uvloop" (base/eventloop.py)
    query_log: bool = False  # a line per query from the start (engine/querylog.py)
    rrl_rate: int = 0  # answers per second per prefix and answer over UDP; 0: no rate limiting (serve/rrl.py)
    rrl_slip: int = 2  # over the limit, every slip-th answer goes out truncated, the rest dropped
    # Balanced answers' rotors kept per client /24 (/56) and group; 0: one sequence for all (balancing/rotors.py).
    client_rotors: int = DEFAULT_CLIENT_ROTORS
    # EDNS Client Subnet (RFC 7871): the subnet a resolver names is the client whose
    # rotation moves, and is echoed; False ignores the option (answering/ecs.py).
    ecs: bool = True
    # Steps of each zone's history kept for IXFR (loader.with_history); NSD's
    # ixfr-number defaults to 5 too.
    ixfr_history: int = 5
    max_zone_bytes: int = DEFAULT_MAX_ZONE_BYTES  # a larger zone file is refused with file:line (zones/loader.py)
    metrics: tuple[str, int] | None = None  # HTTP address of /metrics and the status page (ops/metrics.py)
    # What a watched reload waits for before it takes a change (zones/loader.py ReloadPolicy;
    # README "Reloading zones"): a file quiet this long; a change removing more than this
    # share of a zone's records (or a file not ending in a line break) held this long; a
    # deleted file's zone kept this long.
    settle: float = 0.5
    removal_share: float = 0.5
    removal_hold: float = 3.0
    delete_grace: float = 3.0
    # ops/httpserver.py: seconds for a request head (from the connect or the last answer),
    # and the connections open at once (one more closes the longest idle).
    metrics_timeout: float = 10.0
    metrics_max_connections: int = 64


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``[v6]:PORT``, ``ADDR`` (default port) or ``:PORT`` (127.0.0.1);
    port 0 lets the kernel choose. Raises ValueError (``hostport``'s messages)."""
    host, port = parse_host_port(text, DEFAULT_PORT, min_port=0, empty_host="127.0.0.1")
    return host, DEFAULT_PORT if port is None else port
