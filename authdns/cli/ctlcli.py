"""The commands that talk to a running server over its control socket: ``status``,
``explain NAME TYPE`` and ``ctl drain|undrain|weight``. They format what the server
says; the decisions are the server's (``ops/control.py``). Exit 0 on success, 1 when the
server refuses or cannot be reached (with the reason), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from typing import Any

from authdns.configuration.config import control_path
from authdns.ops.control import request
from authdns.configuration.settings import CONFIG, CONTROL, STATE_DIR, add_flags


def add_parsers(commands: argparse._SubParsersAction) -> None:
    def with_control(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        # The same settings as serve's (configuration/settings.py), read from the same configuration file.
        add_flags(parser, [CONFIG, replace(STATE_DIR, help="the server's --state-dir (default: {default})"),
                           replace(CONTROL, help="the server's control socket (default: DIR/control.sock)")])
        parser.add_argument("--json", action="store_true", help="print the server's reply as JSON")
        return parser

    with_control(commands.add_parser("status", help="balanced RRsets: health, weights, shares, drains"))
    explain = with_control(commands.add_parser("explain", help="the next answer to NAME TYPE, and why"))
    explain.add_argument("name", metavar="NAME")
    explain.add_argument("type", metavar="TYPE")
    explain.add_argument("--client", metavar="ADDR[/LEN]",
                         help="the next answer to this client (its /24 or /56 keeps its own rotation), or to "
                              "the subnet ADDR/LEN an EDNS Client Subnet names (cut to /24, /56 or LEN); "
                              "default: a client new to the rotation")
    ctl = with_control(commands.add_parser("ctl", help="reload zones; drain, undrain or reweight a member"))
    actions = ctl.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (("drain", "weight 0 until undrained (survives restarts)"), ("undrain", "end a drain")):
        parser = actions.add_parser(action, help=text)
        _member_arguments(parser)
    actions.add_parser("reload", help="reload the zone directory now and say what changed")
    querylog = actions.add_parser("querylog", help="log every query (client, name, type, rcode, first answer)")
    querylog.add_argument("state", choices=["on", "off"])
    weight = actions.add_parser("weight", help="a temporary weight (0-1000), or 'reset'")
    _member_arguments(weight)
    weight.add_argument("weight", metavar="N|reset")


def _member_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("owner", metavar="OWNER", help="the RRset's name, e.g. pool.example.test")
    parser.add_argument("type", metavar="TYPE", help="MX, A or AAAA")
    parser.add_argument("member", metavar="MEMBER", help="the exchange (MX) or the address (A/AAAA)")


def run(args: argparse.Namespace) -> int:
    payload: dict[str, Any] = {"command": args.command}
    if args.command == "explain":
        payload.update(name=args.name, type=args.type)
        if args.client is not None:
            payload["client"] = args.client
    elif args.command == "ctl" and args.action == "reload":
        payload["command"] = "reload"
    elif args.command == "ctl" and args.action == "querylog":
        payload.update(command="query_log", enabled=args.state == "on")
    elif args.command == "ctl":
        payload.update(command=args.action, owner=args.owner, type=args.type, member=args.member)
        if args.action == "weight":
            if args.weight != "reset" and not args.weight.isdigit():
                print(f"authdns ctl weight: N must be a whole number from 0 to 1000 or 'reset', not {args.weight!r}",
                      file=sys.stderr)
                return 2
            payload["weight"] = "reset" if args.weight == "reset" else int(args.weight)
    path = args.control or control_path(args.state_dir)
    try:
        reply = request(path, payload)
    except (OSError, ValueError) as error:
        print(f"authdns {args.command}: cannot reach the server on {path}: {error}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"authdns {args.command}: {reply.get('error', 'refused')}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(reply, indent=2))
    else:
        FORMATTERS[payload["command"]](reply)
    return 0


def _format_reload(reply: dict[str, Any]) -> None:
    for problem in reply["problems"]:
        print(problem)
    for change in reply["changes"]:
        if change["new_serial"] is None:
            print(f"{change['origin']} removed (was serial {change['old_serial']}): REFUSED from now on")
        elif change["old_serial"] is None:
            print(f"{change['origin']} added, serial {change['new_serial']} ({change['file']})")
        else:
            print(f"{change['origin']} serial {change['old_serial']} -> {change['new_serial']}: {change['diff']}")
    for path in reply["failed"]:
        print(f"{path}: not loaded; the previous version (if any) keeps serving")
    print(f"{len(reply['changes'])} zone(s) changed, {reply['unchanged']} unchanged, {len(reply['failed'])} failed")


def _worker_text(worker: dict[str, Any]) -> str:
    """``#0 pid 123 57 queries, heartbeat 0.1 s ago (2 restarts, 1 hung)``."""
    text = f"#{worker['slot']} pid {worker['pid']} {worker['queries']} queries"
    if worker.get("heartbeat") is not None:
        text += f", heartbeat {worker['heartbeat']:.1f} s ago"
    notes = [f"{worker['restarts']} restarts"] if worker["restarts"] else []
    if worker.get("hangs"):
        notes.append(f"{worker['hangs']} hung")
    return text + (f" ({', '.join(notes)})" if notes else "")


def _format_status(reply: dict[str, Any]) -> None:
    for zone in reply["zones"]:
        print(f"zone {zone['origin']} serial {zone['serial']} records {zone['records']} file {zone['file']}")
    for path, problems in sorted(reply["problems"].items()):
        for problem in problems:
            print(problem)
    workers = reply.get("workers")
    if workers:
        print(f"workers {len(workers)}: " + ", ".join(map(_worker_text, workers)))
    short = reply.get("descriptor_exhaustion")
    if short:  # health probes said "unknown" meanwhile: members kept their state
        print("descriptors exhausted: " + ", ".join(f"{where} {count}" for where, count in sorted(short.items())))
    if not reply["rrsets"]:
        print("no balanced RRsets")
    now = time.time()
    for rrset in reply["rrsets"]:
        check = rrset["check"]
        probe = "no check" if check is None else (
            f"check {check['kind']}:{check['port']} every {check['interval']:g}s "
            f"timeout {check['timeout']:g}s rise {check['rise']} fall {check['fall']}"
            + (f" agent :{check['agent_port']}" if check.get("agent_port") else "")
            + f" down_ttl {check['down_ttl']} settle {check['settle']:g}s; failover within {check['failover_bound']:g}s")
        extras = "".join([f" answer {rrset['answer']}" if rrset["answer"] else "",
                          " promote" if rrset["promote"] else "", " FAIL-OPEN" if rrset["fail_open"] else ""])
        print(f"{rrset['owner']} {rrset['type']} ttl {_ttl(rrset)} policy {rrset['policy']}{extras}; {probe}")
        print(f"  {'member':<28} {'pref':>4} {'status':<9} {'since':>9} {'rtt ms':>7} {'weight':>11} "
              f"{'first':>6} {'share':>6} {'mail':>6} {'target':>6}  last probe / override")
        for member in rrset["members"]:
            since = _age(now, member["since"]) if member["since"] else "-"
            rtt = f"{member['rtt_ms']:.1f}" if member["rtt_ms"] is not None else "-"
            weight = f"{member['configured_weight']}->{member['effective_weight']:g}"
            note = member["last_probe"] or ("not probed" if not member["probed"] else "")
            if member.get("agent"):
                note = f"{_agent_note(member['agent'])}; " + note
            if member["drained"]:
                note = f"DRAINED (fully effective in {member['drain_effective_in']:g}s); " + note
            if member["temporary_weight"] is not None:
                note = f"temporary weight {member['temporary_weight']}; " + note
            pref = member["preference"] if member["preference"] is not None else "-"
            print(f"  {member['member']:<28} {pref:>4} {member['status']:<9} {since:>9} {rtt:>7} {weight:>11} "
                  f"{member['first']:>6} {_percent(member['share'])} {_percent(member['mail_share'])} "
                  f"{_percent(member['target'])}  {note}")
    if reply["fail_open_answers"]:
        print(f"answers given fail-open (every member down): {reply['fail_open_answers']}")
    for orphan in reply["overrides_not_served"]:
        print(f"override kept for a member no zone serves now: {orphan['owner']} {orphan['type']} {orphan['member']}")


def _ttl(rrset: dict[str, Any]) -> str:
    """``60``, or ``60 (serving 5: down_ttl 5 while mx2 down)`` while it is short."""
    if rrset["short_ttl"] is None:
        return str(rrset["ttl"])
    return f"{rrset['ttl']} (serving {rrset['served_ttl']}: {rrset['short_ttl']})"


def _agent_note(agent: dict[str, Any]) -> str:
    """``agent "75%" 80%``: the agent's last reply (or why none) and what the balancer
    took from it (README, "Agent checks")."""
    taken = "maint" if agent["maint"] else "drain" if agent["drained"] else f"{agent['percent']}%"
    return f"agent \"{agent['reply']}\" {taken}" if agent["ok"] else f"agent failed ({agent['reply']}), kept {taken}"


def _percent(share: float | None) -> str:
    """A share as a six-column percentage; "-" where none is meant (a target of ``fixed``)."""
    return f"{share * 100:>5.1f}%" if share is not None else f"{'-':>6}"


def _age(now: float, since: float) -> str:
    seconds = max(0, int(now - since))
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


def _format_explain(reply: dict[str, Any]) -> None:
    client = reply.get("client")
    whom = f"for client {client}" if client else "for a client new to the rotation"
    print(f"next answer to {reply['name']} {reply['type']} {whom} (rcode {reply['rcode']}):")
    if reply.get("workers"):
        print(f"(with {reply['workers']} workers each keeps its own rotations, and a query reaches one of them by "
              "its source port: this is the order a newly started worker would give; members, health and reasons "
              "hold for all)")
    for rrset in reply["rrsets"]:
        head = f"{rrset['section']}: {rrset['owner']} {rrset['type']}"
        if not rrset["balanced"]:
            print(f"{head} (not balanced): {', '.join(rrset['records'])}")
            continue
        short = f" ({rrset['short_ttl']})" if rrset["short_ttl"] else ""
        print(f"{head} ttl {rrset['ttl']}{short} policy {rrset['policy']}{' FAIL-OPEN' if rrset['fail_open'] else ''}")
        if not rrset["predictable"]:
            print("  (random: every answer is a fresh shuffle; this is one possible order)")
        for position, member in enumerate(rrset["members"], 1):
            mark = f"{position:>2}." if member["included"] else " --"
            pref = "" if member["preference"] is None else f"pref {member['answered_preference']} "
            print(f"  {mark} {member['member']:<28} {pref}{member['status']:<8} "
                  f"weight {member['configured_weight']}->{member['effective_weight']:g}"
                  f"{_should_get(member['target'])}: {member['reason']}")


def _should_get(target: float | None) -> str:
    return "" if target is None else f", should get {target * 100:.1f}%"


def _format_override(reply: dict[str, Any]) -> None:
    state = "drained" if reply["drained"] else "in service"
    weight = "" if reply["temporary_weight"] is None else f", temporary weight {reply['temporary_weight']}"
    print(f"{reply['owner']} {reply['type']} {reply['member']}: {state}{weight}")
    if reply["drained"]:
        print(f"fully effective in {reply['effective_in']:g}s (the last answer carrying it, plus TTL {reply['ttl']})")


def _format_query_log(reply: dict[str, Any]) -> None:
    print(f"query log {'on' if reply['query_log'] else 'off'}")


FORMATTERS = {"query_log": _format_query_log, "status": _format_status, "reload": _format_reload, "explain": _format_explain, "drain": _format_override,
              "undrain": _format_override, "weight": _format_override}
