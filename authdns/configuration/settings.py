"""Every ``serve`` setting in one table, ``SETTINGS``: its flag, how its text is read,
its default, its help and the ``ServerConfig`` field it fills. The command-line flags
(``add_flags``), the configuration file's keys (configuration/configfile.py reads the parser these
flags make: the key is the flag without dashes, with underscores) and the
``ServerConfig`` (``server_config``) all come from it, so a new setting is one entry
here and a field in ``ServerConfig``. The client commands (``status``, ``explain``,
``ctl``, ``check``, ``export``) take their ``--state-dir`` and ``--control`` entries
from the same table and read the same configuration file.

A value that cannot be used is a usage error naming the setting, from the flag or from
the file (``file:line:column``). Nothing here starts anything.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authdns.configuration import configfile

from authdns.base import eventloop
from authdns.configuration.config import DEFAULT_LISTEN, ServerConfig, parse_listen
from authdns.base.hostport import has_port
from authdns.zones.transferspec import parse_allow_rule, parse_notify_attempts, parse_notify_retry, parse_tsig_key, tsig_keyring

# ServerConfig is a slots dataclass: its class attributes are slot descriptors, not the
# defaults (``ServerConfig.listen`` is not a tuple), so defaults are read from an instance.
DEFAULTS = ServerConfig()
MAX_WORKERS = 256
MEBIBYTE = 1 << 20


class SettingError(ValueError):
    """A setting's value that parsed but cannot be used (uvloop missing, a duplicate key)."""


# -- readers of one value: text → value, or argparse.ArgumentTypeError with the reason ----

def _reason(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parse function that raises ValueError with its reason."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    convert.__name__ = parse.__name__.removeprefix("parse_").replace("_", " ")
    return convert


def whole(low: int, high: int, what: str = "a whole number") -> Callable[[str], int]:
    def read(text: str) -> int:
        if not text.strip().isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} from {low} to {high}")
        return int(text)
    read.__name__ = what
    return read


def number(low: float, high: float, what: str) -> Callable[[str], float]:
    """A number above ``low`` and at most ``high`` (nan and inf never are)."""
    def read(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low < value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} above {low:g} and at most {high:g}")
        return value
    read.__name__ = what
    return read


seconds = number(0, 86400, "a number of seconds")


share = number(0, 1, "a share of the records")


def listen_address(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def http_address(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` for the metrics server: the port must be given (no DNS default)."""
    if not has_port(text):
        raise argparse.ArgumentTypeError(f"{text!r}: give the port too, as ADDR:PORT or [V6]:PORT")
    return listen_address(text)


def workers(text: str) -> int:
    """A number of worker processes, or ``auto`` (one per core)."""
    if text == "auto":
        return default_workers()
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto' or a whole number from 1 to {MAX_WORKERS}")
    return int(text)


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def seconds_or_off(low: float, high: float) -> Callable[[str], float]:
    """0 (off), or seconds from ``low`` to ``high``."""
    def read(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (value == 0 or low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text!r} is not 0 (off) or a number of seconds from {low:g} to {high:g}")
        return value
    read.__name__ = "a number of seconds"
    return read


def event_loop(name: str) -> str:
    """``--loop``: auto → uvloop when installed; uvloop asked for must be there."""
    resolved = eventloop.resolve(name)
    if resolved == "uvloop" and not eventloop.uvloop_available():
        raise SettingError("--loop uvloop: uvloop is not installed (pip install uvloop)")
    return resolved


def keyring(keys: list) -> Any:
    try:
        return tsig_keyring(keys)
    except ValueError as error:
        raise SettingError(str(error)) from None


# -- the table ------------------------------------------------------------------------------

FROM_CONFIG = object()  # the default is ServerConfig's own


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting. ``shape``: "value"; "list" (the flag repeats, the file takes a list);
    "switch" (a flag without a value: true when given); "negated" (``--no-X`` turns X off).
    ``field``: the ServerConfig field it fills ("" for none: the command line's own);
    ``to_config``: the parsed value → the field's value. ``help`` may name
    ``{default}``."""

    flag: str
    read: Callable[[str], Any] | None
    help: str
    default: Any = FROM_CONFIG
    metavar: str | None = None
    field: str | None = None
    shape: str = "value"
    choices: tuple[str, ...] | None = None
    to_config: Callable[[Any], Any] | None = None

    @property
    def key(self) -> str:
        """The argparse destination and the configuration file's key."""
        return self.flag.removeprefix("--").removeprefix("no-").replace("-", "_")

    @property
    def field_name(self) -> str:
        return self.key if self.field is None else self.field

    def default_value(self) -> Any:
        if self.default is FROM_CONFIG:
            return getattr(DEFAULTS, self.field_name)
        return self.default() if callable(self.default) else self.default


CONFIG = Setting("--config", Path, metavar="FILE", field="", default=None,
                 help=f"settings file (YAML; keys are the serve flags with underscores; flags win; "
                      f"default: {configfile.DEFAULT_PATH} when it exists)")
STATE_DIR = Setting("--state-dir", Path, metavar="DIR",
                    help="where drains are kept and the control socket lives (default: {default})")
CONTROL = Setting("--control", Path, metavar="SOCKET",
                  help="the control socket for status/explain/ctl (default: DIR/control.sock)")

SETTINGS: tuple[Setting, ...] = (
    CONFIG,
    Setting("--zones", Path, metavar="DIR", field="zone_dir", help="zone directory (default: {default})"),
    Setting("--listen", listen_address, metavar="ADDR:PORT", shape="list", field="", default=None,
            help="address to serve UDP and TCP on; repeat for more (default: 127.0.0.1:5353 and [::1]:5353)"),
    Setting("--udp-payload", whole(512, 65535, "a size"), metavar="OCTETS",
            help="largest EDNS UDP response (default: {default})"),
    Setting("--tcp-idle-timeout", seconds, metavar="SECONDS",
            help="close a TCP connection idle this long between queries (RFC 7766 §6.2.3; default: {default:g})"),
    Setting("--tcp-max-connections", whole(1, 1_000_000), metavar="N",
            help="most concurrent TCP connections per listen address and worker process (as NSD's tcp-count); "
                 "a new one over it closes the idlest (RFC 7766 §6.2.3; lowered to fit the descriptor limit; "
                 "default: {default})"),
    Setting("--tcp-max-per-client", whole(1, 65535), metavar="N",
            help="most concurrent TCP connections from one address, per worker; one more is closed at once "
                 "(RFC 7766 §6.2.2; default: {default})"),
    Setting("--tcp-io-timeout", seconds, metavar="SECONDS",
            help="close a TCP connection whose query takes longer than this to arrive once begun, or whose "
                 "answers wait this long for the client to read any (as Knot's tcp-io-timeout; default: {default:g})"),
    Setting("--tcp-max-backlog", whole(1, 65536, "a size in KiB"), metavar="KIB",
            default=DEFAULTS.tcp_max_backlog // 1024, to_config=lambda kib: kib * 1024,
            help="answers queued for one TCP client, in KiB, before its connection stops reading and answering "
                 "until the client reads (default: {default})"),
    Setting("--tcp-max-output", number(0, 65536, "a size in MiB"), metavar="MIB",
            default=DEFAULTS.tcp_max_output // MEBIBYTE, to_config=lambda mib: int(mib * MEBIBYTE),
            help="answers queued for TCP clients that do not read, in MiB, in all per listen address and worker; "
                 "over it the connection stalled longest is reset (default: {default})"),
    STATE_DIR,
    CONTROL,
    Setting("--allow-transfer", _reason(parse_allow_rule), metavar="PREFIX[,key=NAME]", shape="list", default=[],
            to_config=tuple, help="let this address or prefix transfer every zone (AXFR/IXFR; repeatable; "
                                  "a zone's own `transfer: allow:` adds to it)"),
    Setting("--tsig-key", _reason(parse_tsig_key), metavar="[ALGORITHM:]NAME:BASE64", shape="list", default=[],
            field="tsig_keys", to_config=keyring,
            help="a TSIG key (RFC 8945): requests signed with it are answered signed; ALGORITHM "
                 "hmac-sha1|hmac-sha224|hmac-sha256 (default)|hmac-sha384|hmac-sha512; repeatable"),
    Setting("--notify-retry", _reason(parse_notify_retry), metavar="SECONDS",
            help="first NOTIFY retry after this long, doubling (default: {default:g})"),
    Setting("--notify-attempts", _reason(parse_notify_attempts), metavar="N",
            help="NOTIFY messages per secondary and change (default: {default})"),
    Setting("--workers", workers, metavar="N", default=default_workers,
            help="processes answering queries on shared sockets (SO_REUSEPORT); zones, health checks and the "
                 "control socket stay in one supervisor. 1: a single process (default: auto, one per core: "
                 "{default} here)"),
    Setting("--heartbeat-timeout", seconds_or_off(0.1, 3600), metavar="SECONDS",
            help="with workers: a worker whose event loop sends no heartbeat for this long is hung; it is killed "
                 "(SIGKILL) and forked again on its slot, whose sockets kept what was queued; 0: never "
                 "(default: {default:g})"),
    Setting("--loop", None, choices=eventloop.LOOPS, default="auto", field="event_loop", to_config=event_loop,
            help="event loop: uvloop answers faster when installed (pip install 'authdns[fast]'); auto takes it "
                 "when it is there (default: auto)"),
    Setting("--metrics", http_address, metavar="ADDR:PORT",
            help="serve Prometheus /metrics and the status page / over HTTP here (e.g. 127.0.0.1:9153; port 0 "
                 "picks one; default: off)"),
    Setting("--metrics-timeout", seconds, metavar="SECONDS",
            help="close a metrics/status connection that has not sent a whole request head within this long of "
                 "its start or of its last answer (header read and keep-alive idle timeout; default: {default:g})"),
    Setting("--metrics-max-connections", whole(1, 65535), metavar="N",
            help="most metrics/status connections open at once; one more closes the one idle longest, or gets "
                 "503 when all are busy (default: {default})"),
    Setting("--rrl-rate", whole(0, 1_000_000, "a whole number of answers per second"), metavar="N",
            help="response rate limiting: UDP answers per second per client /24 (/56) and per response, for "
                 "the whole server (the workers share the buckets); 0: off (default: {default})"),
    Setting("--rrl-slip", whole(0, 100), metavar="N",
            help="over the rate, every Nth answer goes out truncated so real clients retry over TCP; 0: drop all "
                 "(default: {default})"),
    Setting("--client-rotors", whole(0, 10_000_000, "a whole number of rotors"), metavar="N",
            help="balanced answers keep one rotation per client /24 (/56), so each resolver is walked through "
                 "the whole weighted cycle: at most N (client, group) rotors, the oldest dropped; 0: one rotation "
                 "for all clients, per worker (default: {default})"),
    Setting("--ecs", None, choices=("on", "off"), default="on", to_config=lambda value: value == "on",
            help="EDNS Client Subnet (RFC 7871): on, a balanced answer moves the rotation of the subnet a resolver "
                 "names (cut to /24, /56) and the option is echoed with its scope; off: the option is ignored and "
                 "none is sent back (default: {default})"),
    Setting("--max-zone-size", number(0, 65536, "a size in MiB"), metavar="MIB", field="max_zone_bytes",
            default=DEFAULTS.max_zone_bytes // MEBIBYTE, to_config=lambda mib: int(mib * MEBIBYTE),
            help="refuse zone files larger than this, in MiB (default: {default})"),
    Setting("--ixfr-history", whole(0, 1000, "a whole number of zone versions"), metavar="N",
            help="changes of each zone kept in memory for IXFR (RFC 1995): a secondary at one of the last N "
                 "serials gets only the differences; 0: always the whole zone (default: {default})"),
    Setting("--query-log", None, shape="switch",
            help="log every query from the start (`authdns ctl querylog on|off` switches it at runtime)"),
    Setting("--log-format", None, choices=("plain", "json"), default="plain", field="",
            help="plain lines, or one JSON object per line (default: {default})"),
    Setting("--settle", seconds_or_off(0.001, 86400), metavar="SECONDS",
            help="a changed zone file is read once it has been quiet this long (no write seen, and its change "
                 "time this old), so a file written in steps is never served half-written (default: {default:g})"),
    Setting("--removal-share", share, metavar="FRACTION",
            help="a change that removes more than this share of a zone's records (and a file that does not end "
                 "with a line break) is held for --removal-hold and logged, then taken if unchanged "
                 "(default: {default:g}; 1: never held)"),
    Setting("--removal-hold", seconds_or_off(0.001, 86400), metavar="SECONDS",
            help="how long such a change must stay unchanged before it is served; `authdns ctl reload` takes it "
                 "at once (default: {default:g})"),
    Setting("--delete-grace", seconds_or_off(0.001, 86400), metavar="SECONDS",
            help="a deleted zone file's zone keeps serving this long, so delete-then-create (git, rsync, deploy "
                 "tools) never drops it (default: {default:g})"),
    Setting("--no-watch", None, shape="negated",
            help="do not reload zone files when they change (SIGHUP and `ctl reload` still do)"),
    Setting("--log-level", None, choices=("debug", "info", "warning", "error"), default="info", field="",
            help="how much to log (default: {default})"),
)


def add_flags(parser: argparse.ArgumentParser, settings: Iterable[Setting] = SETTINGS) -> None:
    """One flag per setting, its default filled in (and named in its help)."""
    for setting in settings:
        default = setting.default_value()
        text = setting.help.format(default=default)
        if setting.shape == "switch":
            parser.add_argument(setting.flag, dest=setting.key, action="store_true", default=default, help=text)
        elif setting.shape == "negated":
            parser.add_argument(setting.flag, dest=setting.key, action="store_false", default=default, help=text)
        else:
            parser.add_argument(setting.flag, dest=setting.key, type=setting.read, default=default,
                                metavar=setting.metavar, choices=setting.choices, help=text,
                                action="append" if setting.shape == "list" else "store")


def server_config(args: argparse.Namespace, **computed: Any) -> ServerConfig:
    """The ``ServerConfig`` the parsed settings describe; ``computed``: the fields no flag
    gives (version, identity). Raises SettingError for a value that cannot be used."""
    fields: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.field == "":
            continue
        value = getattr(args, setting.key)
        fields[setting.field_name] = setting.to_config(value) if setting.to_config is not None else value
    listen = tuple(args.listen) if args.listen else DEFAULT_LISTEN
    # Only the default IPv6 loopback may be missing; an address the user named may not.
    optional = frozenset() if args.listen else frozenset(a for a in DEFAULT_LISTEN if ":" in a[0])
    return ServerConfig(listen=listen, optional_listen=optional, **fields, **computed)
