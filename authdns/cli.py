"""The ``authdns`` command: ``serve``, ``check``, ``import``, ``export``.

Exit codes: 0 success, 1 the work failed (invalid zone, cannot bind), 2 usage error
(argparse prints the usage; no traceback ever reaches the user). No DNS logic here.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

from .hostport import has_port
from . import __version__
from . import configfile, ctlcli, eventloop, logformat
from .eventloop import LOOPS
from .config import DEFAULT_LISTEN, DEFAULT_STATE_DIR, DEFAULT_UDP_PAYLOAD, ServerConfig, parse_listen, serials_path
from .serials import SerialStore
from .transferspec import parse_allow_rule, parse_notify_attempts, parse_notify_retry, parse_tsig_key, tsig_keyring
from .masterfile import export_zone, import_master
from .masterread import leading_origin
from .zonefile import master_file_origin
from .service import Service
from .loader import cross_zone_problems, load_zone_file, unserved_files, zone_files
from .workers import default_count

log = logging.getLogger("authdns")

# ServerConfig is a slots dataclass: its class attributes are slot descriptors, not the
# defaults (``ServerConfig.listen`` is not a tuple), so defaults are read from an instance.
DEFAULTS = ServerConfig()


def _listen_arg(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _http_arg(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` for the metrics server: the port must be given (no DNS default)."""
    if not has_port(text):
        raise argparse.ArgumentTypeError(f"{text!r}: give the port too, as ADDR:PORT or [V6]:PORT")
    return _listen_arg(text)


def _rate(text: str) -> int:
    if not text.isdigit() or int(text) > 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of answers per second (0 to 1000000)")
    return int(text)


def _slip(text: str) -> int:
    if not text.isdigit() or int(text) > 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to 100")
    return int(text)


def _ixfr_history(text: str) -> int:
    if not text.isdigit() or int(text) > 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of zone versions from 0 to 1000")
    return int(text)


def _mebibytes(text: str) -> float:
    """A size in MiB, above 0 (fractions allowed: 0.5 is 512 KiB), at most 64 GiB."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in MiB above 0 and at most 65536")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or not 512 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size from 512 to 65535")
    return int(text)


def _argument(parse):
    """An argparse type from a parse function that raises ValueError with its reason."""
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    convert.__name__ = parse.__name__.removeprefix("parse_").replace("_", " ")
    return convert


def _seconds(text: str) -> float:
    """A positive, finite number of seconds (at most a day)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 86400:  # also rejects nan and inf
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0 and at most 86400")
    return value


def _count(text: str) -> int:
    """A whole number from 1 to 65535."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 65535")
    return int(text)


MAX_WORKERS = 256


def _workers(text: str) -> int:
    """A number of worker processes, or ``auto`` (one per core)."""
    if text == "auto":
        return default_count()
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto' or a whole number from 1 to {MAX_WORKERS}")
    return int(text)


def _run_demo(args: argparse.Namespace) -> int:
    from . import demo  # imports dnspython's async client only when asked

    return demo.main(args.seconds)


def _read_config(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Settings from the configuration file where no flag gave them (configfile.py)."""
    path = args.config
    if path is None:
        if not configfile.DEFAULT_PATH.exists():
            return
        path = configfile.DEFAULT_PATH
    serve = parser.serve_parser  # type: ignore[attr-defined]
    values = configfile.load(path, serve)
    given = configfile.given_on_command_line(serve, argv[argv.index("serve") + 1:])
    configfile.apply(args, values, given)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authdns", description="Authoritative DNS server for YAML zones with load-aware MX and A/AAAA ordering."
    )
    parser.add_argument("--version", action="version", version=f"authdns {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="answer queries for the zones in a directory")
    serve.add_argument("--config", type=Path, metavar="FILE",
                       help=f"settings file (YAML; keys are these flags with underscores; flags win; "
                       f"default: {configfile.DEFAULT_PATH} when it exists)")
    serve.add_argument("--zones", type=Path, default=Path("zones"), metavar="DIR", help="zone directory (default: zones)")
    serve.add_argument(
        "--listen", type=_listen_arg, action="append", metavar="ADDR:PORT",
        help="address to serve UDP and TCP on; repeat for more (default: 127.0.0.1:5353 and [::1]:5353)",
    )
    serve.add_argument(
        "--udp-payload", type=_positive, default=DEFAULT_UDP_PAYLOAD, metavar="OCTETS",
        help=f"largest EDNS UDP response (default: {DEFAULT_UDP_PAYLOAD})",
    )
    serve.add_argument(
        "--tcp-idle-timeout", type=_seconds, default=DEFAULTS.tcp_idle_timeout, metavar="SECONDS",
        help="close a TCP connection idle this long between queries "
        f"(RFC 7766 §6.2.3; default: {DEFAULTS.tcp_idle_timeout:g})",
    )
    serve.add_argument(
        "--tcp-max-connections", type=_count, default=DEFAULTS.tcp_max_connections, metavar="N",
        help="most concurrent TCP connections per worker process (as NSD's tcp-count); one more is closed at once "
        f"(RFC 7766 §6.2.2; default: {DEFAULTS.tcp_max_connections})",
    )
    serve.add_argument(
        "--tcp-max-per-client", type=_count, default=DEFAULTS.tcp_max_per_client, metavar="N",
        help=f"most concurrent TCP connections from one address, per worker (default: {DEFAULTS.tcp_max_per_client})",
    )
    serve.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, metavar="DIR",
                       help=f"where drains are kept and the control socket lives (default: {DEFAULT_STATE_DIR})")
    serve.add_argument("--control", type=Path, metavar="SOCKET",
                       help="the control socket for status/explain/ctl (default: DIR/control.sock)")
    serve.add_argument("--allow-transfer", type=_argument(parse_allow_rule), action="append", default=[],
                       metavar="PREFIX[,key=NAME]",
                       help="let this address or prefix transfer every zone (AXFR/IXFR; repeatable; "
                       "a zone's own `transfer: allow:` adds to it)")
    serve.add_argument("--tsig-key", type=_argument(parse_tsig_key), action="append", default=[],
                       metavar="[ALGORITHM:]NAME:BASE64",
                       help="a TSIG key (RFC 8945): requests signed with it are answered signed; ALGORITHM "
                            "hmac-sha1|hmac-sha224|hmac-sha256 (default)|hmac-sha384|hmac-sha512; repeatable")
    serve.add_argument("--notify-retry", type=_argument(parse_notify_retry), default=DEFAULTS.notify_retry,
                       metavar="SECONDS", help=f"first NOTIFY retry after this long, doubling "
                       f"(default: {DEFAULTS.notify_retry:g})")
    serve.add_argument("--notify-attempts", type=_argument(parse_notify_attempts), default=DEFAULTS.notify_attempts,
                       metavar="N", help=f"NOTIFY messages per secondary and change (default: {DEFAULTS.notify_attempts})")
    serve.add_argument("--workers", type=_workers, default=default_count(), metavar="N",
                       help="processes answering queries on shared sockets (SO_REUSEPORT); zones, health "
                       "checks and the control socket stay in one supervisor. 1: a single process "
                       f"(default: auto, one per core: {default_count()} here)")
    serve.add_argument("--loop", choices=LOOPS, default="auto",
                       help="event loop: uvloop answers faster when installed (pip install 'authdns[fast]'); "
                       "auto takes it when it is there (default: auto)")
    serve.add_argument("--metrics", type=_http_arg, metavar="ADDR:PORT",
                       help="serve Prometheus /metrics and the status page / over HTTP here "
                       "(e.g. 127.0.0.1:9153; port 0 picks one; default: off)")
    serve.add_argument("--rrl-rate", type=_rate, default=0, metavar="N",
                       help="response rate limiting: UDP answers per second per client /24 (/56) and per "
                       "answer, per worker; 0: off (default: 0)")
    serve.add_argument("--rrl-slip", type=_slip, default=DEFAULTS.rrl_slip, metavar="N",
                       help="over the rate, every Nth answer goes out truncated so real clients retry over TCP; "
                       f"0: drop all (default: {DEFAULTS.rrl_slip})")
    serve.add_argument("--max-zone-size", type=_mebibytes, default=DEFAULTS.max_zone_bytes >> 20, metavar="MIB",
                       help="refuse zone files larger than this, in MiB (default: "
                       f"{DEFAULTS.max_zone_bytes >> 20})")
    serve.add_argument("--ixfr-history", type=_ixfr_history, default=DEFAULTS.ixfr_history, metavar="N",
                       help="changes of each zone kept in memory for IXFR (RFC 1995): a secondary at one of "
                       f"the last N serials gets only the differences; 0: always the whole zone "
                       f"(default: {DEFAULTS.ixfr_history})")
    serve.add_argument("--query-log", action="store_true",
                       help="log every query from the start (`authdns ctl querylog on|off` switches it at runtime)")
    serve.add_argument("--log-format", choices=["plain", "json"], default="plain",
                       help="plain lines, or one JSON object per line (default: plain)")
    serve.add_argument("--no-watch", dest="watch", action="store_false",
                       help="do not reload zone files when they change (SIGHUP and `ctl reload` still do)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    parser.serve_parser = serve  # type: ignore[attr-defined]  # read again for the configuration file

    demo = commands.add_parser("demo", help="show DNS-side mail load balancing live, on loopback (needs aiosmtpd)")
    demo.add_argument("--seconds", type=_seconds, default=45.0, metavar="S",
                      help="how long it runs; mx2 stops at a third, returns at two thirds (default: 45)")

    check = commands.add_parser("check", help="validate zone files; exit 1 if any is invalid")
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="zone files or directories")
    check.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, metavar="DIR",
                       help="the server's state dir: warn when an explicit serial did not grow "
                       f"since the version served (default: {DEFAULT_STATE_DIR})")
    check.add_argument("--strict", action="store_true",
                       help="fail (exit 1) on warnings too: what BIND and NSD would load with a warning")

    importer = commands.add_parser("import", help="convert an RFC 1035 master file (BIND, NSD) to YAML")
    importer.add_argument("file", type=Path, metavar="FILE", help="the master file, or - for standard input")
    importer.add_argument("--origin", metavar="NAME",
                          help="the zone's origin, e.g. example.test (default: a $ORIGIN before the first record, "
                          "else the file name: example.com.zone, example.com.db, db.example.com, example.com)")
    importer.add_argument("-o", "--output", type=Path, metavar="FILE.yaml",
                          help="write the zone here, atomically (default: standard output)")
    importer.add_argument("--strict", action="store_true", help="fail (exit 1, nothing written) on warnings too")

    exporter = commands.add_parser("export", help="write a YAML zone as an RFC 1035 master file (stdout)")
    exporter.add_argument("file", type=Path, metavar="FILE.yaml")
    exporter.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, metavar="DIR",
                          help="for content the server with this state dir has served, its SOA serial; "
                          f"read only (default: {DEFAULT_STATE_DIR})")
    ctlcli.add_parsers(commands)
    return parser


# ---------------------------------------------------------------- check


def run_check(paths: list[Path], state_dir: Path, strict: bool = False) -> int:
    """Every problem of every file; exit 1 on an error (on a warning too with ``strict``,
    for CI: what BIND and NSD load with a warning fails the check)."""
    missing = [path for path in paths if not path.exists()]
    for path in missing:
        print(f"{path}: no such file or directory")
    files = zone_files([path for path in paths if path.exists()])
    zones = {}
    errors = warnings = 0
    serials = SerialStore.load(serials_path(state_dir), set_aside=False)  # read only: check changes nothing
    for problem in (problem for path in paths if path.is_dir() for problem in unserved_files(path)):
        print(problem)
        warnings += 1
    for path in files:
        zone, problems = load_zone_file(path, serials)
        for problem in problems:
            print(problem)
        errors += sum(not p.warning for p in problems)
        warnings += sum(p.warning for p in problems)
        if zone is not None:
            zones[zone.origin] = zone
    for problem in cross_zone_problems(zones):
        print(problem)
        errors += not problem.warning
        warnings += problem.warning
    summary = f"{len(files)} file(s) checked: {errors} error(s), {warnings} warning(s)"
    if strict and warnings:
        summary += " (--strict: warnings fail the check)"
    print(summary, file=sys.stderr)
    return 1 if errors or missing or not files or (strict and warnings) else 0


# ---------------------------------------------------------------- serve


async def _serve(config: ServerConfig) -> int:
    return await Service(config).run()


def run_serve(args: argparse.Namespace) -> int:
    logformat.configure(args.log_level, args.log_format)
    if not args.zones.is_dir():
        log.error("zone directory %s does not exist", args.zones)
        return 1
    listen = tuple(args.listen) if args.listen else DEFAULT_LISTEN
    # Only the default IPv6 loopback may be missing; an address the user named may not.
    optional = frozenset() if args.listen else frozenset(a for a in DEFAULT_LISTEN if ":" in a[0])
    event_loop = eventloop.resolve(args.loop)
    if event_loop == "uvloop" and not eventloop.uvloop_available():
        build_parser().error("--loop uvloop: uvloop is not installed (pip install uvloop)")
    try:
        keys = tsig_keyring(args.tsig_key)
    except ValueError as error:
        build_parser().error(str(error))
    config = ServerConfig(
        zone_dir=args.zones, listen=listen, optional_listen=optional, udp_payload=args.udp_payload,
        tcp_idle_timeout=args.tcp_idle_timeout, tcp_max_connections=args.tcp_max_connections,
        tcp_max_per_client=args.tcp_max_per_client,
        state_dir=args.state_dir, control=args.control, watch=args.watch,
        allow_transfer=tuple(args.allow_transfer), tsig_keys=keys, notify_retry=args.notify_retry,
        notify_attempts=args.notify_attempts, workers=args.workers, event_loop=event_loop, query_log=args.query_log, metrics=args.metrics,
        max_zone_bytes=int(args.max_zone_size * (1 << 20)), ixfr_history=args.ixfr_history, rrl_rate=args.rrl_rate, rrl_slip=args.rrl_slip,
        version=f"authdns {__version__}", identity=socket.gethostname(),
    )
    try:
        return eventloop.run(_serve(config), config.event_loop)
    except KeyboardInterrupt:
        return 0


# ---------------------------------------------------------------- import / export


def _import_origin(args: argparse.Namespace, text: str) -> str | None:
    """``--origin``, else a ``$ORIGIN`` before the first record, else the file's name."""
    if args.origin:
        return args.origin
    origin = leading_origin(text)
    if origin is None and str(args.file) != "-":
        origin = master_file_origin(args.file.name)
    return origin


def run_import(args: argparse.Namespace) -> int:
    from_stdin = str(args.file) == "-"
    shown = "<stdin>" if from_stdin else str(args.file)
    try:
        data = sys.stdin.buffer.read() if from_stdin else args.file.read_bytes()
        text = data.decode("utf-8")
    except OSError as error:
        print(f"{shown}: cannot read: {error.strerror}", file=sys.stderr)
        return 1
    except UnicodeDecodeError as error:
        print(f"{shown}: not UTF-8 text (byte {error.start})", file=sys.stderr)
        return 1
    origin = _import_origin(args, text)
    if origin is None:
        build_parser().error("import -: the zone's origin is unknown: pass --origin NAME (or start the input "
                             "with $ORIGIN)")
    base = Path.cwd() if from_stdin else args.file.parent
    imported = import_master(text, origin, shown, base)
    for problem in imported.problems:
        print(problem, file=sys.stderr)
    if imported.yaml is None or (args.strict and imported.problems):
        errors = sum(not p.warning for p in imported.problems)
        why = f"{errors} error(s)" if errors else f"{len(imported.problems)} warning(s) (--strict)"
        print(f"{shown}: not imported: {why}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(imported.yaml)
        return 0
    try:
        write_atomically(args.output, imported.yaml)
    except OSError as error:
        print(f"{args.output}: cannot write: {error.strerror}", file=sys.stderr)
        return 1
    return 0


def write_atomically(path: Path, text: str) -> None:
    """The whole file or nothing: a hidden temporary beside it (the zones watcher ignores
    hidden files), flushed to disk, then renamed over ``path``."""
    temporary = path.with_name(f".{path.name}.import-{os.getpid()}")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def run_export(args: argparse.Namespace) -> int:
    serials = SerialStore.load(serials_path(args.state_dir), set_aside=False)
    zone, problems = load_zone_file(args.file, serials)
    for problem in problems:
        print(problem, file=sys.stderr)
    if zone is None:
        return 1
    # Read only: content the server has served keeps its serial; new content gets a
    # generated one now, which the server will not reuse (it generates its own at load).
    sys.stdout.write(export_zone(zone))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            _read_config(args, parser, argv)
        except configfile.ConfigError as error:
            print(f"authdns serve: {error}", file=sys.stderr)
            return 1
    runners = {"serve": run_serve, "check": lambda a: run_check(a.paths, a.state_dir, a.strict), "import": run_import, "export": run_export,
               "status": ctlcli.run, "explain": ctlcli.run, "ctl": ctlcli.run, "demo": _run_demo}
    try:
        return runners[args.command](args)
    except BrokenPipeError:
        return 1  # `authdns export ... | head`: the reader left; nothing to report


if __name__ == "__main__":
    sys.exit(main())
