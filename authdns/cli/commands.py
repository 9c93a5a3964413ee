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

from dataclasses import replace

from authdns import __version__
from authdns.configuration import configfile
from authdns.cli import ctlcli
from authdns.base import eventloop
from authdns.base import logformat
from authdns.configuration import settings
from authdns.configuration.config import ServerConfig, serials_path
from authdns.zones.serials import SerialStore
from authdns.zones.masterfile import export_zone, import_master
from authdns.zones.masterread import leading_origin
from authdns.zones.zonefile import master_file_origin
from authdns.serve.service import Service
from authdns.zones.loader import (cross_zone_problems, duplicate_origin_problems, load_zone_file, unserved_files,
                                  zone_files)

log = logging.getLogger("authdns")

def _run_demo(args: argparse.Namespace) -> int:
    from authdns.cli import demo  # imports the senders and aiosmtpd only when asked

    return demo.main(args.seconds, args.ttl)


def _read_config(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Settings from the configuration file where no flag gave them (configuration/configfile.py). The
    file holds ``serve``'s settings; a client command (status, ctl, check ...) takes
    those it has flags for (the state directory, the control socket), so it finds the
    server that file configures."""
    path = args.config
    if path is None:
        if not configfile.DEFAULT_PATH.exists():
            return
        path = configfile.DEFAULT_PATH
    try:
        values = configfile.load(path, parser.serve_parser)  # type: ignore[attr-defined]
    except configfile.ConfigError as error:
        if args.command == "serve" or args.config is not None:
            raise
        # A client command only looks for the server: a host file this user may not read
        # (TSIG secrets, mode 0640) or that serve would refuse must not stop `check`.
        print(f"authdns {args.command}: {error}; ignored (give --state-dir, or --config)", file=sys.stderr)
        return
    command = parser.command_parsers[args.command]  # type: ignore[attr-defined]
    ours = set(configfile.settings(command))
    given = configfile.given_on_command_line(command, argv[argv.index(args.command) + 1:])
    configfile.apply(args, {dest: value for dest, value in values.items() if dest in ours}, given)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authdns", description="Authoritative DNS server for YAML zones with load-aware MX and A/AAAA ordering."
    )
    parser.add_argument("--version", action="version", version=f"authdns {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="answer queries for the zones in a directory")
    settings.add_flags(serve)  # configuration/settings.py: the one table of serve's settings
    parser.serve_parser = serve  # type: ignore[attr-defined]  # read again for the configuration file

    demo = commands.add_parser("demo", help="show mail delivered by DNS-side load balancing, live on loopback (needs aiosmtpd)")
    demo.add_argument("--seconds", type=settings.seconds, default=45.0, metavar="S",
                      help="how long it runs; mx2 stops at a third, returns at two thirds (default: 45)")
    demo.add_argument("--ttl", type=settings.whole(0, 300, "a TTL in seconds"), default=1, metavar="SECONDS",
                      help="the pool's TTL: how long each sender's resolver keeps one answer (default: 1)")

    check = commands.add_parser("check", help="validate zone files; exit 1 if any is invalid")
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="zone files or directories")
    settings.add_flags(check, [settings.CONFIG, replace(
        settings.STATE_DIR, help="the server's state dir: warn when an explicit serial did not grow since the "
                                 "version served (default: {default})")])
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
    settings.add_flags(exporter, [settings.CONFIG, replace(
        settings.STATE_DIR, help="for content the server with this state dir has served, its SOA serial; read "
                                 "only (default: {default})")])
    ctlcli.add_parsers(commands)
    parser.command_parsers = commands.choices  # type: ignore[attr-defined]  # name -> its parser
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
    ignored = set()
    for problem in duplicate_origin_problems(files):  # serve ignores these files: so does the rest of the check
        print(problem)
        errors += 1
        ignored.add(problem.where.path)
    for path in files:
        if str(path) in ignored:
            continue
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
    try:
        config = settings.server_config(args, version=f"authdns {__version__}", identity=socket.gethostname())
    except settings.SettingError as error:
        build_parser().serve_parser.error(str(error))  # type: ignore[attr-defined]  # exit 2 with serve's usage
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
    if "config" in vars(args):
        try:
            _read_config(args, parser, argv)
        except configfile.ConfigError as error:
            print(f"authdns {args.command}: {error}", file=sys.stderr)
            return 1
    runners = {"serve": run_serve, "check": lambda a: run_check(a.paths, a.state_dir, a.strict), "import": run_import, "export": run_export,
               "status": ctlcli.run, "explain": ctlcli.run, "ctl": ctlcli.run, "demo": _run_demo}
    try:
        return runners[args.command](args)
    except BrokenPipeError:
        return 1  # `authdns export ... | head`: the reader left; nothing to report


if __name__ == "__main__":
    sys.exit(main())
