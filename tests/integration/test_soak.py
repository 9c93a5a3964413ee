"""A short soak (bench/soak.py, CI-sized): queries from four clients, the zone rewritten
in place every second, one health-check target flapping every 2 s, two workers, all at
once for 12 s. Zero lost answers, zero SERVFAIL, every reload taking effect (the
serials seen), no traceback, no internal error, no worker death, and resident memory
flat (within 10 % + 5 MiB of the figure after warm-up). The long run is the bench script.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # the fast tier (`-m "not slow"`) leaves this module out

spec = importlib.util.spec_from_file_location("soak", ROOT / "bench" / "soak.py")
soak = importlib.util.module_from_spec(spec)
sys.modules["soak"] = soak  # dataclasses look their module up there
spec.loader.exec_module(soak)


def test_short_soak() -> None:
    result = soak.run_soak(12, workers=2, load="python")
    assert result.queries > 1000
    assert result.lost == 0 and result.servfail == 0, result
    assert result.reloads >= 8 and len(result.serials_seen) >= 8, result
    assert result.flaps >= 4
    assert not result.log_problems, result.log_problems
    assert result.rss_end_mib <= result.rss_start_mib * 1.1 + 5, result
