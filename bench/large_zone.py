#!/usr/bin/env python3
"""Load time and resident memory of a large zone, and the cost of reloading beside it.

    python bench/large_zone.py 100000 [1000000 ...]

For each size N (a fresh process each, so memory figures do not mix): writes a YAML zone
of N A records plus an MX pool, loads the zone directory as the server does
(``load_snapshot``), answers one query from it, then changes a second, small zone and
reloads: the large zone must not be read again (its bytes are unchanged). Prints load
seconds, the process's peak resident memory, and the reload seconds. Bounded by the
sizes given; writes only under a temporary directory.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(count: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from dnslib import QTYPE

    from authdns import names
    from authdns.answer import resolve
    from authdns.snapshot import load_snapshot

    work = Path(tempfile.mkdtemp(prefix="authdns-large-"))
    zones = work / "zones"
    zones.mkdir()
    lines = ["ttl: 300", "records:", '  "@": {NS: ns1, MX: ["10 mx1", "10 mx2"]}', "  ns1: {A: 192.0.2.1}",
             "  mx1: {A: 192.0.2.11}", "  mx2: {A: 192.0.2.12}"]
    lines += [f"  h{index}: {{A: 10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}}}" for index in range(count)]
    (zones / "large.test.yaml").write_text("\n".join(lines) + "\n")
    small = zones / "small.test.yaml"
    small.write_text('records:\n  "@": {NS: ns1.large.test.}\n  a: {TXT: one}\n')
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


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(measure(int(sys.argv[2]))))
        return 0
    sizes = [int(arg) for arg in sys.argv[1:]] or [100_000]
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
