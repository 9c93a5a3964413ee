"""Prometheus metrics and the status page, over HTTP on an address the operator names
(``serve --metrics 127.0.0.1:9153``; meant for loopback or a management network).

- ``/metrics``: the Prometheus text format, written by prometheus_client from a
  collector that reads one ``Observation`` per scrape (so the numbers of one scrape
  agree with each other, and with several workers they are the sum over all of them).
- ``/``: the status page (ops/statuspage.py), which polls ``/status.json`` once a second.
- ``/status.json``: zones, balanced RRsets with their members' health, weights, first
  places, the share of mail each gets and should get, and the workers.

The HTTP server is ops/httpserver.py on the event loop itself: no thread, bounded
connections and timeouts (``--metrics-timeout``, ``--metrics-max-connections``). Each
request awaits an observation (``Service.observe``), and prometheus_client writes the
text format from it in the same turn of the loop, so a scrape reads one state. Also
here: the process's descriptor shortages (base/descriptors.py) and what the HTTP server
itself did. This module changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from dnslib import QTYPE, RCODE
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from authdns.balancing.counters import LATENCY_BOUNDS, VIA_SLOTS, Observation, Totals
from authdns.base.descriptors import PLACES, SHORTAGE, Shortage
from authdns.base.hostport import format_host_port
from authdns.answering.query import Via
from authdns.ops.httpserver import HttpCounts, HttpServer, Reply
from authdns.ops.statuspage import PAGE, page_data

OBSERVE_TIMEOUT = 5.0  # seconds a request waits for an observation (workers asked for counts)
STATES = ("up", "degraded", "down")
_TEXT = "text/plain; charset=utf-8"


class _Collector:
    """One scrape's metrics (prometheus_client reads ``collect()``), from one observation."""

    def __init__(self, seen: Observation, http: HttpCounts, open_connections: int, shortage: Shortage) -> None:
        self.seen, self.http, self.open_connections, self.shortage = seen, http, open_connections, shortage

    def collect(self):
        yield from _query_metrics(self.seen.totals)
        yield from _zone_metrics(self.seen)
        yield from _member_metrics(self.seen)
        yield from _process_metrics(self.http, self.open_connections, self.shortage)


def _query_metrics(totals: Totals):
    counted = totals.queries
    answers = CounterMetricFamily("authdns_answers", "Answers sent, by transport and rcode",
                                  labels=["transport", "rcode"])
    for index, count in enumerate(counted.answers):
        if count:
            via, rcode = divmod(index, VIA_SLOTS)
            answers.add_metric([Via(via).name.lower(), RCODE.get(rcode, str(rcode))], count)
    yield answers
    by_type = CounterMetricFamily("authdns_queries_by_type", "Queries by QTYPE (those with a readable question)",
                                  labels=["type"])
    for qtype, count in sorted(counted.types.items()):
        by_type.add_metric([QTYPE.get(qtype, str(qtype))], count)
    yield by_type
    for name, documentation, value in (
            ("authdns_dropped", "Queries dropped unanswered (unreadable header, QR set)", counted.dropped),
            ("authdns_truncated", "Answers sent with TC=1", counted.truncated),
            ("authdns_internal_errors", "Queries answered SERVFAIL after an internal error", counted.internal_errors),
            ("authdns_fast_path_answers", "Answers spliced from precompiled responses", totals.fast_hits),
            ("authdns_fail_open_answers", "Balanced answers given with every member down", totals.fail_open_answers)):
        yield CounterMetricFamily(name, documentation, value=value)
    limited = CounterMetricFamily("authdns_rrl_limited", "UDP answers over the response rate limit, by what "
                                  "was done (dropped, or sent truncated: slip)", labels=["action"])
    limited.add_metric(["dropped"], counted.rrl_dropped)
    limited.add_metric(["slipped"], counted.rrl_slipped)
    yield limited
    closed = CounterMetricFamily("authdns_tcp_closed", "TCP connections the server closed, by why: refused (over "
                                 "the per-address cap), evicted (the idlest, for a new one), idle, slow_query, "
                                 "not_reading, output_full", labels=["reason"])
    for reason, count in sorted(counted.tcp_closed.items()):
        closed.add_metric([reason], count)
    yield closed
    cumulative, buckets = 0, []
    for bound, count in zip((*map(str, LATENCY_BOUNDS), "+Inf"), counted.latency):
        cumulative += count
        buckets.append((bound, cumulative))
    latency = HistogramMetricFamily("authdns_response_seconds", "Time from a query's bytes to its answer's, "
                                    "one query in 16 timed", unit="")
    latency.add_metric([], buckets, counted.latency_sum)
    yield latency


def _zone_metrics(seen: Observation):
    serial = GaugeMetricFamily("authdns_zone_serial", "SOA serial served", labels=["zone"])
    records = GaugeMetricFamily("authdns_zone_records", "Records served", labels=["zone"])
    loaded = GaugeMetricFamily("authdns_zone_loaded_timestamp_seconds", "When the served version was loaded",
                               labels=["zone"])
    for zone in seen.status["zones"]:
        serial.add_metric([zone["origin"]], zone["serial"])
        records.add_metric([zone["origin"]], zone["records"])
        if zone["origin"] in seen.zones_loaded_at:
            loaded.add_metric([zone["origin"]], seen.zones_loaded_at[zone["origin"]])
    yield from (serial, records, loaded)
    reloads = CounterMetricFamily("authdns_reloads", "Zone reloads, by result (failed: a file kept its "
                                  "previous version or was not loaded)", labels=["result"])
    reloads.add_metric(["ok"], seen.reloads - seen.failed_reloads)
    reloads.add_metric(["failed"], seen.failed_reloads)
    yield reloads
    workers = seen.status.get("workers")
    yield GaugeMetricFamily("authdns_workers", "Processes answering queries", value=len(workers) if workers else 1)
    if workers:
        yield CounterMetricFamily("authdns_worker_hangs", "Workers killed for sending no heartbeat within "
                                  "--heartbeat-timeout (then forked again)",
                                  value=sum(worker["hangs"] for worker in workers))
        beat = GaugeMetricFamily("authdns_worker_heartbeat_age_seconds", "Seconds since the worker's last "
                                 "heartbeat was read", labels=["slot"])
        for worker in workers:
            if worker["heartbeat"] is not None:
                beat.add_metric([str(worker["slot"])], worker["heartbeat"])
        yield beat


def _member_metrics(seen: Observation):
    labels = ["owner", "type", "member"]
    state = GaugeMetricFamily("authdns_member_state", "1 for the member's health state", labels=labels + ["state"])
    weight = GaugeMetricFamily("authdns_member_effective_weight", "Weight the policy uses now (0: left out)",
                               labels=labels)
    first = CounterMetricFamily("authdns_member_first", "Answers in which the member came first in its group",
                                labels=labels)
    given = CounterMetricFamily("authdns_member_answers", "Answers that carried the member", labels=labels)
    mail = CounterMetricFamily("authdns_member_mail", "Answers' worth of its group's mail a conforming sender "
                               "delivers to the member (1/k of each answer in which it is one of k)", labels=labels)
    target = GaugeMetricFamily("authdns_member_target_share", "Share of its group's mail the member should get "
                               "(effective weight over the group's)", labels=labels)
    for rrset in seen.status["rrsets"]:
        for member in rrset["members"]:
            key = [rrset["owner"], rrset["type"], member["member"]]
            for name in STATES:
                state.add_metric(key + [name], 1.0 if member["status"] == name else 0.0)
            weight.add_metric(key, float(member["effective_weight"]))
            first.add_metric(key, member["first"])
            given.add_metric(key, member["given"])
            mail.add_metric(key, member["mail"])
            if member["target"] is not None:  # fixed, or a group with no usable member: no share is meant
                target.add_metric(key, member["target"])
    yield from (state, weight, first, given, mail, target)
    probes = CounterMetricFamily("authdns_health_probes", "Health probes, by target and result",
                                 labels=["target", "result"])
    rtt = GaugeMetricFamily("authdns_health_probe_rtt_seconds", "Smoothed probe round-trip time", labels=["target"])
    for host, port, count, failures, smoothed in seen.probes:
        target = format_host_port(host, port)
        probes.add_metric([target, "ok"], count - failures)
        probes.add_metric([target, "failed"], failures)
        if smoothed is not None:
            rtt.add_metric([target], smoothed)
    yield from (probes, rtt)


def _process_metrics(http: HttpCounts, open_connections: int, shortage: Shortage):
    short = CounterMetricFamily("authdns_descriptor_exhaustion", "Times this process found no file descriptor "
                                "(EMFILE, ENFILE, ENOBUFS), by what wanted one: a health probe (its result: "
                                "unknown), an accept", labels=["where"])
    for where, count in sorted({**dict.fromkeys(PLACES, 0), **shortage.counts}.items()):
        short.add_metric([where], count)  # every place from the start: rate() needs the zero
    yield short
    yield GaugeMetricFamily("authdns_http_connections", "Open connections to this HTTP server", value=open_connections)
    closed = CounterMetricFamily("authdns_http_connections_closed", "HTTP connections this server closed itself, "
                                 "by reason (timeout: no request head or the answer not taken in time; evicted: "
                                 "the longest idle, to make room; refused: 503 at the cap)", labels=["reason"])
    closed.add_metric(["timeout"], http.timed_out)
    closed.add_metric(["evicted"], http.evicted)
    closed.add_metric(["refused"], http.refused)
    yield closed


class StatusHttpServer:
    """/metrics, /status.json and the page, served on the event loop."""

    def __init__(self, address: tuple[str, int], observe: Callable[[], Awaitable[Observation]], *,
                 timeout: float = 10.0, max_connections: int = 64, shortage: Shortage = SHORTAGE) -> None:
        self.observe = observe
        self.shortage = shortage
        self.http = HttpServer(address, self.answer, timeout=timeout, max_connections=max_connections)

    async def start(self) -> tuple[str, int]:
        """Bind (OSError when it cannot) and serve; the bound address."""
        return await self.http.start()

    async def close(self) -> None:
        await self.http.close()

    async def answer(self, path: str) -> Reply:
        if path in ("/", "/index.html"):
            return 200, "text/html; charset=utf-8", PAGE.encode()
        if path not in ("/metrics", "/status.json"):
            return 404, _TEXT, b"not found: /, /status.json, /metrics\n"
        try:
            async with asyncio.timeout(OBSERVE_TIMEOUT):
                seen = await self.observe()
        except (TimeoutError, RuntimeError):
            return 503, _TEXT, b"the server is busy or stopping\n"
        if path == "/status.json":
            return 200, "application/json", json.dumps(page_data(seen)).encode()
        collector = _Collector(seen, self.http.counts, self.http.open_connections, self.shortage)
        return 200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(collector)  # type: ignore[arg-type]
