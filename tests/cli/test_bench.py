"""`stackemu bench`: the statistics it prints (exact numbers), its table, and a smoke
run with tiny counts against a stack of its own and the kernel of this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stackemu.bench.runner import SCENARIO_KEYS, table
from stackemu.bench.sample import RoundTrips, Transfer
from stackemu.bench.stats import Summary, meets, percentile, ratio, summarize
from tests.e2e.stackrun import cli, stack_env


def test_summarize_odd_count_median_minmax_and_inclusive_quartiles() -> None:
    # Sorted: 1 2 3 4 100; inclusive quartiles at ranks 1 and 3 (0-based): 2 and 4.
    assert summarize([4, 1, 100, 3, 2]) == Summary(n=5, median=3, min=1, max=100, q1=2, q3=4)


def test_summarize_even_count_interpolates() -> None:
    # 10 20 30 40: median 25; q1 at 0.75 between 10 and 20, q3 at 2.25 between 30 and 40.
    assert summarize([40, 10, 30, 20]) == Summary(n=4, median=25, min=10, max=40, q1=17.5, q3=32.5)


def test_summarize_one_sample_is_its_own_spread() -> None:
    assert summarize([7.5]) == Summary(n=1, median=7.5, min=7.5, max=7.5, q1=7.5, q3=7.5)


def test_summarize_refuses_no_samples() -> None:
    with pytest.raises(ValueError, match="no samples"):
        summarize([])


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    # Ten samples: p99's rank is ceil(9.9) = 10, the largest; p50's is 5.
    ten = [3.0, 1.0, 2.0, 10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0]
    assert percentile(ten, 99) == 10
    assert percentile(ten, 50) == 5
    assert percentile([42.0], 99) == 42
    with pytest.raises(ValueError):
        percentile(ten, 0)


def test_ratio_and_targets() -> None:
    assert ratio(1_000, 400_000) == 0.0025
    assert ratio(5_000, 50) == 100
    assert ratio(1, 0) is None
    assert meets(0.25, ">=", 0.25) is True
    assert meets(0.0025, ">=", 0.25) is False
    assert meets(20.0, "<=", 20) is True
    assert meets(100.0, "<=", 20) is False
    assert meets(None, "<=", 20) is None


def test_sample_figures() -> None:
    t = Transfer(sent=128, received=100, sent_bytes=128 * 64, received_bytes=100 * 64, seconds=0.5)
    assert t.figures() == {"rate": 200.0, "goodput": 0.0128}
    assert t.lost == 28 * 64
    rt = RoundTrips(rtts_us=[float(v) for v in range(1, 101)], lost=1)
    assert rt.figures() == {"p50": 50.0, "p99": 99.0}
    assert rt.raw()["pings"] == 101


def _figure(name: str, unit: str, emu: float, ker: float, target: dict[str, Any] | None) -> dict[str, Any]:
    def side(v: float) -> dict[str, float]:
        return {"n": 1, "median": v, "min": v, "max": v, "q1": v, "q3": v}

    return {
        "figure": name,
        "unit": unit,
        "emulated": side(emu),
        "kernel": side(ker),
        "ratio": emu / ker,
        "target": target,
    }


def test_table_rows() -> None:
    doc = {
        "scenarios": [
            {
                "scenario": "a",
                "figures": [
                    _figure("rate", "datagrams/s", 1000, 400_000, {"op": ">=", "ratio": 0.25, "met": False})
                ],
            },
            {
                "scenario": "d-lo",
                "figures": [
                    _figure("p50", "µs", 500, 50, {"op": "<=", "ratio": 20.0, "met": True}),
                    _figure("p99", "µs", 900, 100, None),
                ],
            },
        ]
    }
    head = "SCENARIO  FIGURE  UNIT         EMULATOR median (min-max)  KERNEL median (min-max)    RATIO   "
    assert table(doc) == [
        head + "TARGET",
        "a         rate    datagrams/s  1,000 (1,000-1,000)        400,000 (400,000-400,000)  0.0025  "
        ">= 0.25  missed",
        "d-lo      p50     µs           500.0 (500.0-500.0)        50.0 (50.0-50.0)           10      "
        "<= 20    met",
        "d-lo      p99     µs           900.0 (900.0-900.0)        100.0 (100.0-100.0)        9",
    ]


def test_bench_quick_smoke(tmp_path: Path) -> None:
    """Every scenario once with tiny counts: a row per figure, and the JSON's keys."""
    out = tmp_path / "bench.json"
    env = stack_env(str(tmp_path / "state"))
    env["NO_COLOR"] = "1"
    run = cli(env, "bench", "--quick", "--json", str(out), timeout=60)
    assert run.returncode == 0, run.stderr + run.stdout
    lines = run.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("SCENARIO"))
    rows = [line.split()[:2] for line in lines[header + 1 : header + 8]]
    assert rows == [
        ["a", "rate"],
        ["b", "rate"],
        ["c", "goodput"],
        ["d-lo", "p50"],
        ["d-lo", "p99"],
        ["d-wire", "p50"],
        ["d-wire", "p99"],
    ]
    doc = json.loads(out.read_text())
    assert set(doc) == {"command", "started", "machine", "repeat", "quick", "scenarios"}
    assert doc["repeat"] == 1 and doc["quick"] is True
    assert [s["scenario"] for s in doc["scenarios"]] == list(SCENARIO_KEYS)
    a = doc["scenarios"][0]
    assert set(a) == {"scenario", "title", "budget", "figures", "samples"}
    assert a["budget"] == {"count": 256, "seconds": 1.0, "timeout": 2.0}
    (rate,) = a["figures"]
    assert set(rate) == {"figure", "unit", "emulated", "kernel", "ratio", "target"}
    assert set(rate["emulated"]) == {"n", "median", "min", "max", "q1", "q3"}
    assert rate["target"]["op"] == ">=" and rate["target"]["ratio"] == 0.25
    # Each side's one sample: all 256 datagrams of 64 bytes sent and read back.
    for side in ("emulated", "kernel"):
        (sample,) = a["samples"][side]
        assert (sample["sent"], sample["received"], sample["lost_bytes"]) == (256, 256, 0)
    c = doc["scenarios"][2]
    for side in ("emulated", "kernel"):
        (sample,) = c["samples"][side]
        assert (sample["sent"], sample["sent_bytes"], sample["lost_bytes"]) == (4, 4 * 46 * 1400, 0)
    d = doc["scenarios"][3]
    for side in ("emulated", "kernel"):
        (sample,) = d["samples"][side]
        assert (sample["pings"], sample["lost"], len(sample["rtts_us"])) == (20, 0, 20)
    # The stack it started is gone with its state directory.
    assert not (tmp_path / "state" / "stack.json").exists()
