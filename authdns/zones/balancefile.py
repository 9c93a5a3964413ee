"""The balancing part of a YAML zone file → ``balancespec`` values, with positions.

Zone-level keys: ``policy:`` (the default for balanced RRsets) and ``checks:`` (named
health checks). A check may carry ``agent: PORT`` or ``agent: {port: PORT}``. RRset options (next to ``ttl:`` and ``records:``): ``policy``,
``answer``, ``promote``, ``check``. Member fields (in a record's mapping form, MX, A
and AAAA only): ``weight`` and ``probe``. README.md, "Load balancing", documents them.

Errors are ``FieldError`` with the position of the offending value; ``zones/zonefile.py``
collects them. Nothing here knows about answers or sockets.
"""

from __future__ import annotations


from authdns.base.hostport import BadAddress, BadPort, parse_host_port, split_host_port
from authdns.zones.balancespec import POLICY_NAMES, AgentSpec, CheckKind, CheckSpec, MemberSpec, Policy, ProbeAddress
from authdns.zones.records import parse_ttl
from authdns.zones.yamlfields import FieldError, integer, scalar as _scalar
from authdns.zones.yamltree import Mapping, Scalar, Value

BALANCE_OPTION_KEYS = ("policy", "answer", "promote", "check")
CHECK_KEYS = ("kind", "port", "interval", "timeout", "rise", "fall", "ehlo", "agent", "down_ttl", "settle")
AGENT_KEYS = ("port",)
MEMBER_KEYS = ("weight", "probe")
MAX_WEIGHT = 1000
DEFAULT_PORTS = {CheckKind.SMTP: 25}  # a tcp check must say which port


def _seconds(value: Value, what: str, low: float, high: float) -> float:
    scalar = _scalar(value, what)
    text = scalar.text.strip().lower().removesuffix("s")
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not low <= seconds <= high:  # also rejects nan
        raise FieldError(scalar.where, f"{what} must be seconds from {low:g} to {high:g}, not {scalar.text!r}")
    return seconds


def parse_policy(value: Value) -> Policy:
    text = _scalar(value, "policy").text.strip().lower()
    if text not in POLICY_NAMES:
        raise FieldError(value.where, f"unknown policy {text!r} (policies: {', '.join(POLICY_NAMES)})")
    return Policy(text)


def parse_bool(value: Value, what: str) -> bool:
    scalar = _scalar(value, what)
    text = scalar.text.strip().lower()
    if text in ("true", "yes", "on"):
        return True
    if text in ("false", "no", "off"):
        return False
    raise FieldError(scalar.where, f"{what} must be true or false, not {scalar.text!r}")


def _only_fields(value: Mapping, known: tuple[str, ...], what: str) -> None:
    unknown = [key for key in value.keys() if key not in known]
    if unknown:
        raise FieldError(value.where, f"{what}: unknown field {unknown[0]!r} (fields: {', '.join(known)})")


def parse_check(value: Value, name: str | None = None) -> CheckSpec:
    """A check's mapping: ``{kind: smtp|tcp, port, interval, timeout, rise, fall, ehlo,
    agent, down_ttl, settle}``."""
    if not isinstance(value, Mapping):
        raise FieldError(value.where, "a check is a mapping like {kind: smtp, port: 25}")
    _only_fields(value, CHECK_KEYS, "check")
    kind_value = value.get("kind")
    if kind_value is None:
        raise FieldError(value.where, "check: missing field 'kind' (smtp or tcp)")
    kind_text = _scalar(kind_value, "check kind").text.strip().lower()
    if kind_text not in ("smtp", "tcp"):
        raise FieldError(kind_value.where, f"check kind must be smtp or tcp, not {kind_text!r}")
    kind = CheckKind(kind_text)
    port_value = value.get("port")
    if port_value is None and kind not in DEFAULT_PORTS:
        raise FieldError(value.where, f"check: a {kind_text} check needs a port")
    port = DEFAULT_PORTS[kind] if port_value is None else integer(port_value, "check port", 1, 65535)
    fields = {}
    for key, low, high in (("interval", 0.05, 3600.0), ("timeout", 0.05, 60.0), ("settle", 0.0, 86400.0)):
        if value.get(key) is not None:
            fields[key] = _seconds(value.get(key), f"check {key}", low, high)  # type: ignore[arg-type]
    for key in ("rise", "fall"):
        if value.get(key) is not None:
            fields[key] = integer(value.get(key), f"check {key}", 1, 100)  # type: ignore[arg-type]
    if value.get("down_ttl") is not None:
        fields["down_ttl"] = parse_ttl(value.get("down_ttl"), "check down_ttl")  # type: ignore[arg-type]
    ehlo_value = value.get("ehlo")
    if ehlo_value is not None:
        if kind is not CheckKind.SMTP:
            raise FieldError(ehlo_value.where, "check: ehlo applies to smtp checks only")
        fields["ehlo"] = _scalar(ehlo_value, "check ehlo").text.strip()
    agent_value = value.get("agent")
    if agent_value is not None:
        fields["agent"] = parse_agent(agent_value)
    return CheckSpec(kind, port, name=name, where=value.where, **fields)


def parse_agent(value: Value) -> AgentSpec:
    """A check's ``agent:``: ``PORT`` or ``{port: PORT}`` (HAProxy's ``agent-port``)."""
    if isinstance(value, Mapping):
        _only_fields(value, AGENT_KEYS, "agent")
        port_value = value.get("port")
        if port_value is None:
            raise FieldError(value.where, "agent: missing field 'port'")
        value = port_value
    if not isinstance(value, Scalar) or value.is_null:
        raise FieldError(value.where, "agent must be a port like 4711 or a mapping like {port: 4711}")
    return AgentSpec(integer(value, "agent port", 1, 65535))


def parse_checks(value: Value) -> tuple[dict[str, CheckSpec], list[FieldError]]:
    """The zone's ``checks:`` mapping of name → check; every bad entry is reported."""
    if not isinstance(value, Mapping):
        return {}, [FieldError(value.where, "'checks:' must map check names to checks")]
    checks: dict[str, CheckSpec] = {}
    errors: list[FieldError] = []
    for key, body in value.items:
        try:
            checks[key.text] = parse_check(body, key.text)
        except FieldError as error:
            errors.append(error)
    return checks, errors


def parse_check_reference(value: Value, named: dict[str, CheckSpec]) -> CheckSpec:
    """An RRset's ``check:``: the name of a zone check, or a check mapping inline."""
    if isinstance(value, Mapping):
        return parse_check(value)
    text = _scalar(value, "check").text.strip()
    if text not in named:
        known = ", ".join(sorted(named)) or "none declared under 'checks:'"
        raise FieldError(value.where, f"unknown check {text!r} (checks: {known})")
    return named[text]


def parse_probe(value: Value) -> ProbeAddress:
    """``ADDR``, ``ADDR:PORT`` or ``[V6]:PORT``: where to probe instead of the served address."""
    text = _scalar(value, "probe").text.strip()
    try:
        if split_host_port(text)[1] == "":  # "ADDR:" names no port: say so rather than probe the default
            raise BadPort(text)
        host, port = parse_host_port(text, None)
    except BadPort:
        raise FieldError(value.where, f"probe port must be from 1 to 65535, not {text!r}") from None
    except BadAddress:
        raise FieldError(value.where, f"probe must be an IP address, optionally with :PORT, not {text!r}") from None
    return ProbeAddress(host) if port is None else ProbeAddress(host, port)


def split_member(item: Value) -> tuple[Value, MemberSpec]:
    """Take ``weight`` and ``probe`` out of a record's mapping form; the rest is the record."""
    if not isinstance(item, Mapping) or not any(key in MEMBER_KEYS for key in item.keys()):
        return item, MemberSpec(where=item.where)
    weight: int | None = 1
    probe = None
    rest = []
    for key, value in item.items:
        if key.text == "weight":
            text = _scalar(value, "weight").text.strip().lower()
            weight = None if text == "auto" else integer(value, "weight", 0, MAX_WEIGHT)
        elif key.text == "probe":
            probe = parse_probe(value)
        else:
            rest.append((key, value))
    record: Value = Mapping(tuple(rest), item.where)
    if len(rest) == 1 and rest[0][0].text == "address":
        record = rest[0][1]  # {address: ..., weight: ...}: the address alone is the record
    return record, MemberSpec(weight, probe, item.where)
