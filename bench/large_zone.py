#!/usr/bin/env python3
"""Load time and resident memory of a large zone, and the cost of reloading beside it.

    python bench/large_zone.py 100000 [1000000 ...]

For each size N (a fresh process each, so memory figures do not mix): writes a YAML zone
of N A records plus an MX pool, loads the zone directory as the server does
(``load_snapshot``), answers one query from it, then changes a second, small zone and
reloads: the large zone must not be read again (its bytes are unchanged). Prints load
seconds, the process's peak resident memory, and the reload seconds. Bounded by the
sizes given; writes only under a temporary directory.

    python bench/large_zone.py --workers 2 100000

also starts ``authdns serve --workers 2`` on 127.0.0.1 on that zone and reports each
process's resident and proportional (PSS: shared pages split between the processes
sharing them) memory, once ready and again after 20,000 queries for random hosts:
what copy-on-write sharing of the zone between the supervisor and its workers saves.
"""

from __future__ import annotations

import json
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(count: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from dnslib import QTYPE

    from authdns.base import names
    from authdns.answering.answer import resolve
    from authdns.zones.loader import load_snapshot

    zones = write_zones(Path(tempfile.mkdtemp(prefix="authdns-large-")), count)
    small = zones / "small.test.yaml"
    started = time.perf_counter()
    result = load_snapshot(zones)
    load_seconds = time.perf_counter() - started
    assert not [p for p in result.problems if not p.warning], result.problems[:3]
    answer = resolve(result.snapshot, names.from_text(f"h{count - 1}.large.test."), QTYPE.A)
    assert answer.answer, "the last host answers"
    small.write_text('records:\n  "@": {NS: ns1.large.test.}\n  a: {TXT: two}\n')
    started = time.perf_counter()
    again = load_snapshot(zones, result.snapshot)
    reload_seconds = time.perf_counter() - started
    assert again.snapshot.zones[names.from_text("large.test.")] is result.snapshot.zones[names.from_text("large.test.")]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"records": count, "load_s": round(load_seconds, 1), "peak_rss_mib": round(peak_kib / 1024),
            "reload_other_zone_s": round(reload_seconds, 3), "file_mib": round((zones / "large.test.yaml").stat().st_size / 2**20, 1)}


def write_zones(work: Path, count: int) -> Path:
    """A zone of ``count`` A records plus an MX pool, and a small second zone."""
    zones = work / "zones"
    zones.mkdir()
    lines = ["ttl: 300", "records:", '  "@": {NS: ns1, MX: ["10 mx1", "10 mx2"]}', "  ns1: {A: 192.0.2.1}",
             "  mx1: {A: 192.0.2.11}", "  mx2: {A: 192.0.2.12}"]
    lines += [f"  h{index}: {{A: 10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}}}" for index in range(count)]
    (zones / "large.test.yaml").write_text("\n".join(lines) + "\n")
    small = zones / "small.test.yaml"
    small.write_text('records:\n  "@": {NS: ns1.large.test.}\n  a: {TXT: one}\n')
    return zones


def memory_of(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in MiB, from /proc/PID/smaps_rollup."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return round(fields["Rss"] / 1024), round(fields["Pss"] / 1024)


def serve_memory(count: int, workers: int) -> None:
    """Start ``authdns serve --workers N`` on a zone of ``count`` records and print every
    process's memory when ready and after queries that touch the zone."""
    import dns.message
    import dns.query

    work = Path(tempfile.mkdtemp(prefix="authdns-large-serve-"))
    zones = write_zones(work, count)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "authdns", "serve", "--zones", str(zones), "--listen",
                                f"127.0.0.1:{port}", "--state-dir", str(work / "state"), "--workers", str(workers),
                                "--no-watch", "--log-level", "warning"], cwd=ROOT)
    try:
        started, deadline = time.monotonic(), time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            try:
                dns.query.udp(dns.message.make_query("large.test.", "SOA"), "127.0.0.1", port=port, timeout=0.5)
                break
            except Exception:
                time.sleep(0.2)  # still loading: poll again until the deadline
        print(f"{count} records, {workers} workers: serving after {time.monotonic() - started:.1f} s")
        show_memory(process.pid, "when ready")
        for index in random.Random(1).sample(range(count), min(count, 20_000)):
            dns.query.udp(dns.message.make_query(f"h{index}.large.test.", "A"), "127.0.0.1", port=port, timeout=2)
        show_memory(process.pid, "after 20,000 queries")
    finally:
        process.terminate()
        process.wait(timeout=30)


def show_memory(pid: int, when: str) -> None:
    children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    rows = [("supervisor", pid)] + [(f"worker {position}", child) for position, child in enumerate(children)]
    total_pss = 0
    for name, process_id in rows:
        rss, pss = memory_of(process_id)
        total_pss += pss
        print(f"  {when}: {name:<10} RSS {rss:>6} MiB  PSS {pss:>6} MiB")
    print(f"  {when}: all processes together PSS {total_pss} MiB")


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(measure(int(sys.argv[2]))))
        return 0
    arguments = sys.argv[1:]
    workers = 0
    if arguments[:1] == ["--workers"] and len(arguments) > 1:
        workers, arguments = int(arguments[1]), arguments[2:]
    sizes = [int(arg) for arg in arguments] or [100_000]
    if workers:
        for size in sizes:
            serve_memory(size, workers)
        return 0
    for size in sizes:
        output = subprocess.run([sys.executable, __file__, "--one", str(size)], capture_output=True, text=True)
        if output.returncode != 0:
            print(f"{size} records: failed\n{output.stderr[-2000:]}")
            continue
        figures = json.loads(output.stdout)
        print(f"{figures['records']:>9} records ({figures['file_mib']} MiB YAML): load {figures['load_s']} s, "
              f"peak RSS {figures['peak_rss_mib']} MiB, reload of another zone {figures['reload_other_zone_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
