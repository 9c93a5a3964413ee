#!/usr/bin/env python3
"""Which modules one query passes through, in order: a trace of the calls between
authdns modules while the responder answers one UDP query, in this process.

    python bench/query_path.py [NAME TYPE]...        (default: a mix of the shipped zones)

For each question it asks twice (the first time takes the slow path and fills the
cache, the second is a cache hit) and prints the modules entered, the calls that cross
from one module to another, and how many of those go *up* the dependency order of
docs/ARCHITECTURE.md's module map (a call from a module into one listed above it is a
call down; into one listed below it, up: a callback). The transport's own steps
(serve/server.py before and serve/rrl.py after the responder) are named, not traced.
Nothing is timed; this is a map, not a benchmark.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import dns.message

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:
    from authdns.answering.query import Via
    from authdns.configuration.config import ServerConfig
    from authdns.engine.responder import Responder
    from authdns.engine.state import StateHolder
    from authdns.zones.loader import load_snapshot
except ImportError:  # the flat layout before the subpackages (for before/after figures)
    from authdns.query import Via  # type: ignore[no-redef]
    from authdns.config import ServerConfig  # type: ignore[no-redef]
    from authdns.responder import Responder  # type: ignore[no-redef]
    from authdns.state import StateHolder  # type: ignore[no-redef]
    from authdns.snapshot import load_snapshot  # type: ignore[no-redef]

PACKAGE = ROOT / "authdns"
QUESTIONS = [("pool.example.test", "MX"), ("weighted.example.test", "MX"), ("www.example.test", "A"),
             ("nope.example.test", "A"), ("host.lab.example.test", "A")]


def map_order() -> list[str]:
    """Every module path in the order the module map lists it."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("\n## Module map", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Za-z0-9_/]+\.py)` \|", section, flags=re.MULTILINE)


def module_of(filename: str) -> str | None:
    path = Path(filename)
    try:
        return path.resolve().relative_to(PACKAGE).as_posix()
    except ValueError:
        return None


def trace(responder: Responder, packet: bytes) -> list[tuple[str, str]]:
    """The (caller, callee) module pairs of every call that crosses modules."""
    moves: list[tuple[str, str]] = []

    def profile(frame, event, arg):  # noqa: ANN001 - sys.setprofile's signature
        if event != "call":
            return
        callee = module_of(frame.f_code.co_filename)
        caller_frame = frame.f_back
        caller = module_of(caller_frame.f_code.co_filename) if caller_frame is not None else None
        if callee is not None and caller is not None and callee != caller:
            moves.append((caller, callee))

    sys.setprofile(profile)
    try:
        responder.respond(packet, Via.UDP, ("127.0.0.1", 5353))
    finally:
        sys.setprofile(None)
    return moves


def main(argv: list[str]) -> int:
    questions = list(zip(argv[0::2], argv[1::2])) or QUESTIONS
    holder = StateHolder()
    holder.publish(snapshot=load_snapshot(ROOT / "zones", save=False).snapshot)  # the shipped example zones
    responder = Responder(holder, ServerConfig())
    order = {path: index for index, path in enumerate(map_order())}
    transport = "serve/server.py" if (PACKAGE / "serve").is_dir() else "server.py"
    for name, rdtype in questions:
        packet = dns.message.make_query(name, rdtype, use_edns=0).to_wire()
        for label in ("slow path (first time)", "cache hit"):
            moves = trace(responder, packet)
            entered = [transport, module_of(sys.modules[Responder.__module__].__file__)]
            for _, callee in moves:
                if callee not in entered:
                    entered.append(callee)
            upward = [(a, b) for a, b in moves if order.get(b, -1) > order.get(a, -1)]
            print(f"{name} {rdtype}, {label}: {len(entered)} modules, {len(moves)} calls across modules, "
                  f"{len(upward)} up the order")
            print("  " + " -> ".join(entered) + " -> " + transport.replace("server.py", "rrl.py"))
            for a, b in dict.fromkeys(upward):
                print(f"  up: {a} -> {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
