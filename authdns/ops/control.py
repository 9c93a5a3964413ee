"""The local control channel: ``status``, ``explain``, ``drain``/``undrain`` and
temporary ``weight`` over a unix socket, so nothing off this host can reach it (the
socket is created mode 0600: only the server's user).

Protocol: the client connects, writes one JSON object on one line
(``{"command": "drain", "owner": ..., "type": "MX", "member": ...}``), reads one JSON
line back (``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``); the server then
closes. Requests run on the event-loop thread, like queries, so they see and change
state between queries, never during one. This module must not be reachable off-host.

The accept loop is its own, with a spare descriptor (base/descriptors.py): when the
process has none left, the spare is given up to accept one client, so ``status`` still
answers (and says how often descriptors ran out) instead of leaving the operator
waiting; the client's own timeout says so in words if even that fails.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import socket
import stat
import struct
import time
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from dnslib import QTYPE, RCODE

from authdns.base import names
from authdns.base.descriptors import ACCEPT_RETRY, SHORTAGE, Spare, accept
from authdns.base.hostport import CLIENT_PREFIX, client_key
from authdns.answering.answer import resolve
from authdns.zones.balancespec import MemberKey, failover_bound
from authdns.balancing.counters import MemberCounters, Totals
from authdns.health.monitor import HealthView, MemberAgent
from authdns.balancing.ordering import Balancer, MemberPlan, Plan
from authdns.balancing.overrides import Override, Overrides, save_overrides
from authdns.engine.state import StateHolder
from authdns.zones.zone import RRset, member_key, member_text
from authdns.zones.loader import ZoneDirError
from authdns.base.rrtypes import type_name

if TYPE_CHECKING:
    from authdns.zones.loader import LoadResult

log = logging.getLogger("authdns.control")

REQUEST_LIMIT = 4096  # octets in one request line
CLIENT_TIMEOUT = 5.0  # seconds a client may take to send its request


class ControlError(Exception):
    """A request that cannot be carried out; the message goes back to the client."""


class Controlled(Protocol):
    """What the control server asks of the server it controls (``service.Service``)."""

    async def count(self) -> Totals:
        """What the processes that answer have counted: this one's, or summed over the workers."""

    async def reload(self, trigger: str) -> "LoadResult": ...

    async def set_query_log(self, enabled: bool) -> None: ...

    def zone_problems(self) -> dict[str, list[str]]: ...

    def workers(self) -> list[dict[str, Any]] | None:
        """The worker processes, or None when the server answers in one process."""

    def probed(self) -> HealthView:
        """The health monitor's latest outcomes, newer than the published view: a view
        is published only when answers would change (health/monitor.py), so what a
        probe or an agent last said comes from here."""


class ControlServer:
    def __init__(self, path: Path, holder: StateHolder, balancer: Balancer, overrides_path: Path,
                 controlled: Controlled, clock: Callable[[], float] = time.time) -> None:
        """``balancer`` predicts next answers (``explain``, ``status``); ``controlled``
        counts, reloads and switches the query log."""
        self.path = path
        self.holder = holder
        self.balancer = balancer
        self.controlled = controlled
        self.overrides_path = overrides_path
        self.clock = clock
        self.listener: socket.socket | None = None
        self.spare: Spare | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise ControlError(f"{self.path} exists and is not a socket; it is left alone: "
                                   "give another --control path")
            if _answering(self.path):
                raise ControlError(f"another server answers on the control socket {self.path}; "
                                   "give this one another --state-dir or --control")
            self.path.unlink()  # left by a server that died
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is created 0600: this user only
        try:
            listener.bind(str(self.path))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        finally:
            os.umask(old_umask)
        listener.setblocking(False)
        self.listener, self.spare = listener, Spare()
        self._accepting = asyncio.get_running_loop().create_task(self._accept_loop(listener),
                                                                 name="control accept")

    async def close(self) -> None:
        if self.listener is None:
            return
        tasks = [task for task in (self._accepting, *self._clients) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.listener.close()
        self.listener = None
        if self.spare is not None:
            self.spare.close()
        if self.path.is_socket():
            self.path.unlink(missing_ok=True)

    async def _accept_loop(self, listener: socket.socket) -> None:
        """Accept clients; at the descriptor limit, one at a time on the spare's descriptor."""
        loop = asyncio.get_running_loop()
        assert self.spare is not None
        while True:
            self.spare.take()  # again, if a shortage kept it from being taken back
            try:
                connection, spent = await accept(listener, "control socket", self.spare)
            except OSError as error:
                log.error("control socket accept failed: %s", error)
                await asyncio.sleep(ACCEPT_RETRY)
                continue
            task = loop.create_task(self._accepted(connection, spent))
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)
            if spent:
                await task  # one client at a time while living on the spare

    async def _accepted(self, connection: socket.socket, spent: bool) -> None:
        """One client on the bare socket (no transport: it closes when we say, so the spare
        is taken back in the same step, before anything else can take the descriptor)."""
        connection.setblocking(False)
        try:
            await self._client(connection)
        except (asyncio.TimeoutError, OSError, asyncio.CancelledError):
            pass  # a client that sends nothing, or leaves, gets nothing; close() ends it quietly
        finally:
            connection.close()
            if spent and self.spare is not None:
                self.spare.take()

    async def _client(self, connection: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        uid = _peer_uid(connection)
        if uid is not None and uid not in (os.geteuid(), 0):
            # The socket is mode 0600, so only our user (or root) can connect at all; the
            # kernel's word on who connected is checked too, in case the mode was widened.
            log.warning("control connection from uid %d refused: only uid %d and root may control this server",
                        uid, os.geteuid())
            reply: dict[str, Any] = {"ok": False, "error": "not the server's owner"}
        else:
            async with asyncio.timeout(CLIENT_TIMEOUT):
                line = await _read_line(loop, connection)
            if line is None:
                reply = {"ok": False, "error": f"a request is one line of at most {REQUEST_LIMIT} octets"}
            else:
                reply = await self.handle(line)
        async with asyncio.timeout(CLIENT_TIMEOUT):
            await loop.sock_sendall(connection, json.dumps(reply).encode() + b"\n")

    async def handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ControlError("a request is a JSON object")
            command = request.get("command")
            handler = COMMANDS.get(command) if isinstance(command, str) else None
            if handler is None:
                raise ControlError(f"unknown command {command!r} (commands: {', '.join(COMMANDS)})")
            reply = handler(self, request)
            if asyncio.iscoroutine(reply):
                reply = await reply
            return {"ok": True, **reply}
        except ControlError as error:
            return {"ok": False, "error": str(error)}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"ok": False, "error": "a request is one line of JSON"}
        except Exception:  # a bug must not cost the operator the answer, nor the server its life
            log.exception("internal error in a control request")
            return {"ok": False, "error": "internal error; the server log has the details"}

    # -- commands -------------------------------------------------------------------

    async def status(self, request: dict) -> dict[str, Any]:
        return self.status_of(await self.controlled.count())

    def status_of(self, totals: Totals) -> dict[str, Any]:
        """The ``status`` reply with these counters (also the page's and /metrics' input)."""
        state = self.holder.current
        probed = self.controlled.probed()
        rrsets = [self._rrset_status(rrset, state.health, probed, state.overrides, totals.members)
                  for zone in state.snapshot.zones.values() for rrset in zone.rrsets() if rrset.balance is not None]
        rrsets.sort(key=lambda entry: (entry["owner"], entry["type"]))
        served = {key for rrset in _balanced(state.snapshot) for key in _member_keys(rrset)}
        orphans = [_override_entry(key, override) for key, override in state.overrides.members.items()
                   if key not in served]
        zones = [{"origin": names.to_text(zone.origin), "serial": zone.serial, "file": zone.path,
                  "records": zone.record_count} for zone in state.snapshot.zones.values()]
        zones.sort(key=lambda entry: entry["origin"])
        return {"zones": zones, "problems": self.controlled.zone_problems(), "generation": state.generation,
                "rrsets": rrsets, "fail_open_answers": totals.fail_open_answers,
                "health_publishes": state.health.published,
                "overrides_not_served": orphans, "workers": self.controlled.workers(),
                "descriptor_exhaustion": dict(SHORTAGE.counts)}

    async def query_log(self, request: dict) -> dict[str, Any]:
        """Switch the query log (engine/querylog.py) on or off."""
        enabled = request.get("enabled")
        if not isinstance(enabled, bool):
            raise ControlError("query_log needs \"enabled\": true or false")
        await self.controlled.set_query_log(enabled)
        return {"query_log": enabled}

    async def reload(self, request: dict) -> dict[str, Any]:
        """Reload the zone directory now; say per zone what changed."""
        try:
            result = await self.controlled.reload("ctl")
        except ZoneDirError as error:
            raise ControlError(f"{error}; the zones served keep serving, and the load is tried again") from None
        if result.save_error is not None:
            # The new zones are served (a generated serial is only less stable across a
            # restart), but the operator must hear that the state directory is failing.
            raise ControlError(f"{result.save_error}; the zones are served ({len(result.changes)} changed) and "
                               "saving is tried again")
        changes = [{"origin": names.to_text(change.origin), "file": change.path, "old_serial": change.old_serial,
                    "new_serial": change.new_serial, "diff": str(change.diff) if change.diff else None}
                   for change in result.changes]
        return {"changes": changes, "unchanged": result.unchanged, "failed": result.failed,
                "problems": [str(problem) for problem in result.problems]}

    def _rrset_status(self, rrset: RRset, health: HealthView, probed: HealthView, overrides: Overrides,
                      counted: dict[MemberKey, MemberCounters]) -> dict[str, Any]:
        """One balanced RRset: its next plan and statuses from the served ``health``; the
        last probe, rtt and agent reply from ``probed`` (Controlled.probed)."""
        balance = rrset.balance
        assert balance is not None
        plan = self.balancer.peek(rrset, health, overrides)
        by_index = {member.index: member for member in plan.members}
        firsts_by_group: dict[int | None, int] = {}
        mail_by_group: dict[int | None, Fraction] = {}
        counters = []
        for index, rdata in enumerate(rrset.rdatas):
            found = counted.get(member_key(rrset, rdata))
            counters.append(found)
            group = by_index[index].preference
            firsts_by_group[group] = firsts_by_group.get(group, 0) + (found.first if found else 0)
            mail_by_group[group] = mail_by_group.get(group, Fraction(0)) + (found.mail if found else 0)
        members = []
        now = self.clock()
        for index, rdata in enumerate(rrset.rdatas):
            key = member_key(rrset, rdata)
            member, found = by_index[index], counters[index]
            seen = health.get(key)
            latest = probed.get(key) or seen  # the latest probe and agent reply, for display
            override = overrides.get(key)
            group_firsts, group_mail = firsts_by_group[member.preference], mail_by_group[member.preference]
            mail = found.mail if found else Fraction(0)
            members.append({
                "member": member.text, "preference": member.preference,
                "status": member.status.value, "since": seen.since if seen else None,
                "probed": seen is not None,
                "last_probe": latest.last.detail if latest and latest.last else None,
                "rtt_ms": round(latest.rtt * 1000, 2) if latest and latest.rtt is not None else None,
                "agent": _agent_entry(latest.agent if latest else None),
                "configured_weight": "auto" if member.configured is None else member.configured,
                "base_weight": member.base, "effective_weight": _shown_weight(member),
                "in_next_answer": member.included, "reason": member.reason,
                "first": found.first if found else 0, "given": found.given if found else 0,
                "share": round(found.first / group_firsts, 4) if found and group_firsts else 0.0,
                # What the member gets and should get, of its group's mail (README, "status"):
                # a conforming sender's even split of the answers given, and its weight's share.
                "mail": round(float(mail), 4),
                "mail_share": _shown_share(mail / group_mail) if group_mail else 0.0,
                "target": _shown_share(member.target),
                "drained": bool(override and override.drained),
                "temporary_weight": override.weight if override else None,
                "drain_effective_in": _effective_in(found, now) if override else None,
            })
        check = balance.check
        return {
            "owner": names.to_text(rrset.name), "type": type_name(rrset.rtype), "ttl": rrset.ttl,
            # what answers carry now: the down TTL while a member is unsettled (served_ttl)
            "served_ttl": plan.ttl, "short_ttl": plan.short_ttl or None,
            "policy": balance.policy.value, "answer": balance.answer, "promote": balance.promote,
            "check": None if check is None else {
                "kind": check.kind.value, "port": check.port, "interval": check.interval,
                "timeout": check.timeout, "rise": check.rise, "fall": check.fall, "name": check.name,
                "down_ttl": check.down_ttl, "settle": check.settle,
                "failover_bound": failover_bound(check, rrset.ttl),
                "agent_port": None if check.agent is None else check.agent.port},
            "fail_open": plan.fail_open, "members": members,
        }

    def explain(self, request: dict) -> dict[str, Any]:
        """The next answer to NAME TYPE, without giving it: the engine's answer ordered
        exactly as the next query's would be (``Balancer.peek_answer``), with each
        balanced RRset's plan: who is in, in what order, and why. Rotations are kept per
        client prefix (balancing/rotors.py): ``client`` (an address) asks for that
        client's next answer; without it, a client new to the rotation's."""
        qname, qtype = _name(request.get("name")), _qtype(request.get("type"))
        client, prefix = _client(request.get("client"))
        state = self.holder.current
        answer, plans = self.balancer.peek_answer(resolve(state.snapshot, qname, qtype), state.health, state.overrides,
                                                  prefix)
        sections = []
        for section, placed_list in (("answer", answer.answer), ("additional", answer.additional)):
            for placed in placed_list:
                rrset = placed.rrset
                entry = {"section": section, "owner": names.to_text(placed.owner), "type": type_name(rrset.rtype)}
                plan = plans.get((section, placed.owner, rrset.rtype))
                if plan is None:
                    sections.append({**entry, "balanced": False, "records": [str(rdata) for rdata in rrset.rdatas]})
                else:
                    sections.append({**entry, "balanced": True, **_plan_entry(plan)})
        workers = self.controlled.workers()
        return {"name": names.to_text(qname), "type": type_name(qtype), "rcode": RCODE[answer.rcode],
                "client": client, "rrsets": sections,
                # Under workers each keeps its own rotors; these are the supervisor's, which
                # answers nothing: the order is what a newly started worker would give.
                "workers": len(workers) if workers else None}

    async def drain(self, request: dict) -> dict[str, Any]:
        return await self._override(request, lambda old: Override(True, old.weight if old else None, self.clock()))

    async def undrain(self, request: dict) -> dict[str, Any]:
        def undrained(old: Override | None) -> Override | None:
            if old is None or old.weight is None:
                return None
            return Override(False, old.weight, old.since)
        return await self._override(request, undrained, clearing=True)

    async def weight(self, request: dict) -> dict[str, Any]:
        value = request.get("weight")
        if value is None or value == "reset":
            def reset(old: Override | None) -> Override | None:
                return Override(True, None, old.since) if old and old.drained else None
            return await self._override(request, reset, clearing=True)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1000:
            raise ControlError(f"weight must be a whole number from 0 to 1000 or 'reset', not {value!r}")
        return await self._override(request, lambda old: Override(bool(old and old.drained), value, self.clock()))

    async def _override(self, request: dict, change: Callable[[Override | None], Override | None],
                        clearing: bool = False) -> dict[str, Any]:
        """Change one member's override, save the file (in a thread: it syncs to disk),
        then publish. Clearing also works for a member no zone serves any more."""
        key, rrset = self._find_member(request, self.holder.current, clearing)
        overrides = self.holder.current.overrides.with_member(key, change(self.holder.current.overrides.get(key)))
        try:
            await asyncio.to_thread(save_overrides, self.overrides_path, overrides)
        except OSError as error:
            raise ControlError(f"cannot save overrides to {self.overrides_path}: {error.strerror}") from None
        # Published from the latest state: others may have changed it while the file was written.
        overrides = self.holder.current.overrides.with_member(key, overrides.get(key))
        self.holder.publish(overrides=overrides)
        override = overrides.get(key)
        log.info("override owner=%s type=%s member=%s drained=%s weight=%s", names.to_text(key[0]),
                 type_name(key[1]), key[2], bool(override and override.drained), override.weight if override else None)
        found = (await self.controlled.count()).members.get(key)
        return {"owner": names.to_text(key[0]), "type": type_name(key[1]), "member": key[2],
                "drained": bool(override and override.drained),
                "temporary_weight": override.weight if override else None,
                "effective_in": _effective_in(found, self.clock()), "ttl": rrset.ttl if rrset else None}

    def _find_member(self, request: dict, state, clearing: bool = False) -> tuple[MemberKey, RRset | None]:
        owner, rtype = _name(request.get("owner")), _qtype(request.get("type"))
        member = _member(rtype, request.get("member"))
        zone = state.snapshot.find_zone(owner)
        node = zone.nodes.get(owner) if zone is not None else None
        rrset = node.rrsets.get(rtype) if node is not None else None
        if clearing and state.overrides.get((owner, rtype, member)) is not None and (
                rrset is None or rrset.balance is None):
            return (owner, rtype, member), None  # an override left from a member no longer served
        if rrset is None or rrset.balance is None:
            raise ControlError(f"no balanced {type_name(rtype)} RRset at {names.to_text(owner)}")
        texts = [member_text(rtype, rdata) for rdata in rrset.rdatas]
        if member not in texts:
            if clearing and state.overrides.get((owner, rtype, member)) is not None:
                return (owner, rtype, member), rrset
            raise ControlError(f"{member} is not a member of {names.to_text(owner)} {type_name(rtype)} "
                               f"(members: {', '.join(texts)})")
        return (owner, rtype, member), rrset


COMMANDS: dict[str, Callable[[ControlServer, dict], Any]] = {
    "status": ControlServer.status,
    "explain": ControlServer.explain,
    "drain": ControlServer.drain,
    "undrain": ControlServer.undrain,
    "weight": ControlServer.weight,
    "reload": ControlServer.reload,
    "query_log": ControlServer.query_log,
}


async def _read_line(loop: asyncio.AbstractEventLoop, connection: socket.socket) -> bytes | None:
    """The request: up to the first newline or the client's end of sending; None when it
    runs over REQUEST_LIMIT."""
    data = b""
    while b"\n" not in data:
        chunk = await loop.sock_recv(connection, REQUEST_LIMIT + 1 - len(data))
        if not chunk:
            break
        data += chunk
        if len(data) > REQUEST_LIMIT and b"\n" not in data:
            return None
    return data.split(b"\n", 1)[0]


def _peer_uid(sock: socket.socket) -> int | None:
    """The connecting process's uid (SO_PEERCRED, Linux), or None where unknown."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    except OSError:
        return None
    return uid


def _balanced(snapshot) -> list[RRset]:
    return [rrset for zone in snapshot.zones.values() for rrset in zone.rrsets() if rrset.balance is not None]


def _member_keys(rrset: RRset) -> list[MemberKey]:
    return [member_key(rrset, rdata) for rdata in rrset.rdatas]


def _override_entry(key: MemberKey, override: Override) -> dict[str, Any]:
    return {"owner": names.to_text(key[0]), "type": type_name(key[1]), "member": key[2],
            "drained": override.drained, "temporary_weight": override.weight}


def _effective_in(counters, now: float) -> float:
    """Seconds until no resolver can still hold an answer with this member: the latest
    time plus TTL of the answers that carried it (``MemberCounters.expires``; 0 when that
    has passed or it was never given)."""
    if counters is None:
        return 0.0
    return round(max(0.0, counters.expires - now), 1)


def _shown_share(share: Fraction | None) -> float | None:
    """A share as JSON shows it: a fraction 0..1 to four places; None where no share is meant."""
    return None if share is None else round(float(share), 4)


def _shown_weight(member: MemberPlan) -> float:
    """The weight the policy used, in the zone file's units: equal to the configured
    weight while up, a quarter of it while degraded (ordering.UP_FACTOR), its agent's
    percent of it under an agent (``MemberPlan.scale``)."""
    return round(float(member.effective * member.scale), 2)


def _agent_entry(agent: MemberAgent | None) -> dict[str, Any] | None:
    """A member's agent as status and explain show it: the last reply (or why none) and
    the weight, drain and maint the balancer took from it."""
    if agent is None:
        return None
    return {"reply": agent.detail, "ok": agent.ok, "percent": agent.percent, "drained": agent.drained,
            "maint": agent.maint}


def _plan_entry(plan: Plan) -> dict[str, Any]:
    return {
        "policy": plan.policy.value, "fail_open": plan.fail_open, "predictable": plan.predictable,
        "ttl": plan.ttl, "short_ttl": plan.short_ttl or None,
        "members": [{"member": member.text, "preference": member.preference,
                     "answered_preference": (member.preference - 1 if member.index in plan.promoted
                                             else member.preference),
                     "included": member.included, "status": member.status.value,
                     "configured_weight": "auto" if member.configured is None else member.configured,
                     "effective_weight": _shown_weight(member), "target": _shown_share(member.target),
                     "agent": _agent_entry(member.agent), "reason": member.reason}
                    for member in plan.members],
    }


def _name(value: Any) -> names.Name:
    if not isinstance(value, str) or not value:
        raise ControlError("a name is required")
    try:
        return names.from_text(value if value.endswith(".") else value + ".")
    except names.BadName as error:
        raise ControlError(f"bad name {value!r}: {error}") from None


def _client(value: Any) -> tuple[str | None, bytes | None]:
    """An explain request's client: the prefix its rotation is kept under, as text
    (``192.0.2.0/24``) and as the key (``hostport.client_key``); (None, None): none given.
    ``ADDR`` is a resolver asking for itself (its /24, /56); ``ADDR/LEN`` is a subnet as
    an EDNS Client Subnet names it (answering/ecs.py): cut to min(LEN, /24 or /56), host
    bits beyond LEN ignored."""
    if value is None:
        return None, None
    address = length = None
    if isinstance(value, str):
        text, slash, length_text = value.partition("/")
        try:
            address = ipaddress.ip_address(text)
            length = int(length_text) if slash else None
        except ValueError:
            address = None
    if address is None or (length is not None and not 0 < length <= address.max_prefixlen):
        raise ControlError(f"client must be an IP address or ADDRESS/LENGTH, not {value!r}")
    if length is None and isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    cut = min(CLIENT_PREFIX[len(address.packed)], length if length is not None else address.max_prefixlen)
    return str(ipaddress.ip_network(f"{address}/{cut}", strict=False)), client_key(address.packed, length)


def _qtype(value: Any) -> int:
    text = value.upper() if isinstance(value, str) else ""
    try:
        code = QTYPE.reverse[text] if text.isalnum() else None  # dnslib's name → number table
    except KeyError:
        code = None
    if code is None and text.startswith("TYPE") and text[4:].isdigit() and int(text[4:]) < 65536:
        code = int(text[4:])  # RFC 3597 §5 generic form, TYPE65280
    if code is None:
        raise ControlError(f"unknown record type {value!r}")
    return code


def _member(rtype: int, value: Any) -> str:
    """A member as status names it: an absolute exchange name, a canonical address."""
    if not isinstance(value, str) or not value:
        raise ControlError("a member is required (the exchange name or the address)")
    if rtype == QTYPE.MX:
        return names.to_text(_name(value))
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ControlError(f"{value!r} is not an IP address") from None


def _answering(path: Path) -> bool:
    """Whether a live server already listens on ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def request(path: Path, payload: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """The client side: one request, one reply (``authdns status``/``explain``/``ctl``),
    the whole exchange within ``timeout`` seconds. Raises OSError (TimeoutError with
    words an operator can act on) or ValueError."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(payload).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise TimeoutError(f"no reply within {timeout:g} s: the server is stuck or out of file descriptors "
                               "(see its log: 'descriptors exhausted')") from None
    if not data:
        raise ConnectionError("the server closed the connection without a reply (see its log)")
    return json.loads(data)
