#!/usr/bin/env python3
"""Delivered mail, not DNS answers: the share of messages each exchanger receives when
senders behave as RFC 5321 §5.1 says, behind resolvers that cache answers for their TTL.

    python bench/delivered_mail.py [--messages 300] [--gap 0.2] [--resolvers 1 4]
                                   [--ttls 0 30] [--modes none answer1 answer2 promote]
                                   [--volumes 1] [--client-rotors N]

For each mode, TTL and number of resolvers it writes a zone ``lab.test`` whose MX pool
is weighted 3:1:1 (``mode``: no ``answer:``, ``answer: 1``, ``answer: 2``, or
``promote``), starts ``authdns serve`` on it, three SMTP sinks (aiosmtpd) on 127.0.0.11,
.12 and .13, and sends ``--messages`` real SMTP messages to ``user@pool.lab.test``:
- a *resolver* here asks authdns over UDP (dnspython), each from its own /24 of
  loopback (127.0.N.1), and keeps each answer until its TTL runs out, on a virtual
  clock, like unbound with its defaults (it also hands the records out in a new order
  each time, as ``rrset-roundrobin: yes`` does);
- a *sender* takes the MX records from its resolver, shuffles those of equal preference
  (RFC 5321 §5.1, as Postfix and Exim do), tries them in order, each exchanger's
  addresses shuffled too, and delivers to the first that accepts;
- messages go out ``--gap`` virtual seconds apart, turn by turn from each resolver's
  sender, so several resolvers ask in lockstep; ``--volumes 4 2 1 1`` gives resolver n
  that many messages per turn (cyclically; default one each);
- ``--client-rotors`` is passed to ``authdns serve`` (0: one shared rotation instead of
  one per resolver, balancing/rotors.py).
The resolver and the sender are authdns/cli/senders.py (``authdns demo`` runs the same ones).
It prints delivered shares per sink (the target for 3:1:1 is 60/20/20), the spread between
resolvers, messages not delivered, and what the answers give: the shares a perfectly even
split of each answer would deliver, free of the senders' random picks. Health checks are not exercised here (no sink
dies): this measures the policies. Loopback only; every process it starts is stopped by
PID; bounded by the message count.
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout: the authdns beside this script

from authdns.cli.senders import CachingResolver, deliver  # noqa: E402

SINKS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
WEIGHTS = (3, 1, 1)  # --weights changes them
MODES = {"none": "", "answer1": "answer: 1, ", "answer2": "answer: 2, ", "promote": "promote: true, "}


def zone_text(mode: str, ttl: int, weights: tuple[int, ...] = WEIGHTS, check: str = "") -> str:
    """The lab zone; ``check`` (a YAML flow mapping) adds a health check on the pool (bench/mail_lab.py)."""
    checks, uses = (f"checks:\n  mail: {check}\n", "check: mail, ") if check else ("", "")
    members = ", ".join(f"{{preference: 10, exchange: mx{n + 1}, weight: {w}}}" for n, w in enumerate(weights))
    hosts = "".join(f"  mx{n + 1}: {{A: {address}}}\n" for n, address in enumerate(SINKS))
    return (f'{checks}records:\n  "@": {{NS: ns1}}\n  ns1: {{A: 127.0.0.1}}\n'
            f"  pool: {{MX: {{ttl: {ttl}, policy: weighted, {MODES[mode]}{uses}records: [{members}]}}}}\n{hosts}")


def free_port() -> int:
    """A port free on every sink address (they share it, as MX delivery uses one port)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((SINKS[0], 0))
            port = probe.getsockname()[1]
        try:
            for address in SINKS[1:]:
                with socket.socket() as other:
                    other.bind((address, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on all sink addresses")


class Sinks:
    """Three aiosmtpd listeners counting the messages each receives."""

    def __init__(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.received: Counter[str] = Counter()
        received = self.received

        class Count:
            def __init__(self, address: str) -> None:
                self.address = address

            async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
                received[self.address] += 1
                return "250 OK"

        self.controllers = [Controller(Count(address), hostname=address, port=port) for address in SINKS]
        for controller in self.controllers:
            controller.start()

    def stop(self) -> None:
        for controller in self.controllers:
            controller.stop()


def deliver_one(resolver: CachingResolver, port: int, rng: random.Random, given: Counter, number: int) -> str | None:
    """One message (authdns/cli/senders.py); ``given`` adds what a perfectly even split
    of this answer's best group would deliver (each member 1/size): the answers' share,
    free of the senders' coin flips."""
    delivery = deliver(resolver, "pool.lab.test.", port, rng, f"{number}@lab.test")
    for exchange in delivery.best:
        given[SINKS[int(exchange[2]) - 1]] += 1 / len(delivery.best)  # mxN.lab.test. is the Nth sink
    return delivery.accepted_by


def start_authdns(zone_dir: Path, state_dir: Path, client_rotors: int | None) -> tuple[subprocess.Popen, int]:
    rotors = ["--client-rotors", str(client_rotors)] if client_rotors is not None else []
    process = subprocess.Popen([sys.executable, "-m", "authdns", "serve", "--zones", str(zone_dir), "--listen",
                                "127.0.0.1:0", "--state-dir", str(state_dir), "--workers", "1", "--no-watch",
                                *rotors],
                               cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 20
    assert process.stderr is not None
    for line in process.stderr:
        if "ready port=" in line:
            port = int(line.split("ready port=", 1)[1].split()[0])
            return process, port
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError("authdns did not start")


def run(mode: str, ttl: int, resolvers: int, messages: int, gap: float, port: int, seed: int,
        weights: tuple[int, ...] = WEIGHTS, volumes: tuple[int, ...] = (1,), client_rotors: int | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="authdns-mail-"))
    (work / "zones").mkdir()
    (work / "zones" / "lab.test.yaml").write_text(zone_text(mode, ttl, weights))
    process, dns_port = start_authdns(work / "zones", work / "state", client_rotors)
    sinks = Sinks(port)
    try:
        now = [0.0]
        rng = random.Random(f"senders {seed}")
        # Each resolver its own random stream, apart from the senders' (one stream for both
        # would undo a resolver's shuffle with the sender's, draw for draw).
        pool = [CachingResolver(("127.0.0.1", dns_port), lambda: now[0], random.Random(f"resolver {seed} {n}"),
                                f"127.0.{n + 1}.1")
                for n in range(resolvers)]
        per_resolver = [Counter() for _ in pool]
        given: Counter[str] = Counter()
        lost = sent = 0
        while sent < messages:
            for index, resolver in enumerate(pool):
                for _ in range(min(volumes[index % len(volumes)], messages - sent)):
                    delivered = deliver_one(resolver, port, rng, given, sent)
                    sent += 1
                    if delivered is None:
                        lost += 1
                    else:
                        per_resolver[index][delivered] += 1
            now[0] += gap  # the next turn of every resolver's sender
        return {"received": Counter(sinks.received), "given": given, "per_resolver": per_resolver, "lost": lost,
                "queries": sum(resolver.asked for resolver in pool)}
    finally:
        sinks.stop()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(work, ignore_errors=True)


def shares(counts: Counter) -> str:
    total = sum(counts.values()) or 1
    return "/".join(f"{100 * counts[address] / total:.0f}" for address in SINKS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.2, help="virtual seconds between turns (default 0.2)")
    parser.add_argument("--resolvers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--ttls", type=int, nargs="+", default=[0, 30])
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["none", "answer1", "answer2", "promote"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--weights", type=int, nargs=3, default=list(WEIGHTS), metavar="W",
                        help="the three exchangers' weights (default 3 1 1)")
    parser.add_argument("--volumes", type=int, nargs="+", default=[1], metavar="V",
                        help="messages per turn of resolver n, cyclically (default 1 each)")
    parser.add_argument("--client-rotors", type=int, default=None, metavar="N",
                        help="passed to authdns serve (0: one shared rotation; default: the server's)")
    args = parser.parse_args()
    if args.resolvers and max(args.resolvers) > 254 or min(args.volumes) < 1:
        parser.error("at most 254 resolvers (one /24 of loopback each), volumes of at least 1")
    weights = tuple(args.weights)
    port = free_port()
    target = "/".join(f"{100 * w / sum(weights):.0f}" for w in weights)
    print(f"weighted {':'.join(map(str, weights))} (target {target}), {args.messages} messages, a turn every "
          f"{args.gap:g} virtual s; delivered shares mx1/mx2/mx3 in %")
    print(f"{'mode':8} {'ttl':>4} {'resolvers':>9}  {'delivered':>10}  {'per resolver':<40} {'lost':>4} {'queries':>7}"
          f"  {'answers give':>12}")
    for mode in args.modes:
        for ttl in args.ttls:
            for resolvers in args.resolvers:
                result = run(mode, ttl, resolvers, args.messages, args.gap, port, args.seed, weights,
                             tuple(args.volumes), args.client_rotors)
                each = " ".join(shares(counts) for counts in result["per_resolver"])
                print(f"{mode:8} {ttl:>4} {resolvers:>9}  {shares(result['received']):>10}  {each:<40} "
                      f"{result['lost']:>4} {result['queries']:>7}  {shares(result['given']):>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
