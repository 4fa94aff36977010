"""`stackemu bench`: the statistics it prints (exact numbers), its table, and a smoke
run with tiny counts against a stack of its own and the kernel of this machine."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stackemu.bench import command, flame, memory, profiler, report, runner, scaling
from stackemu.bench.report import table
from stackemu.bench.runner import SCENARIO_KEYS
from stackemu.bench.sample import Budget, RoundTrips, Transfer
from stackemu.bench.stats import Summary, meets, percentile, ratio, ratio_summary, summarize
from tests.e2e.stackrun import cli, launched, service_addr, stack_env


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


def _side(v: float, lo: float | None = None, hi: float | None = None) -> dict[str, float]:
    return {
        "n": 1,
        "median": v,
        "min": v if lo is None else lo,
        "max": v if hi is None else hi,
        "q1": v,
        "q3": v,
    }


def _figure(name: str, unit: str, emu: float, ker: float, target: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "figure": name,
        "unit": unit,
        "emulated": _side(emu),
        "kernel": _side(ker),
        "ratio": emu / ker,
        "target": target,
    }


def test_ratio_summary_spans_both_spreads() -> None:
    loaded = Summary(n=3, median=90, min=80, max=100, q1=85, q3=95)
    base = Summary(n=5, median=100, min=50, max=200, q1=80, q3=125)
    assert ratio_summary(loaded, base) == Summary(n=3, median=0.9, min=0.4, max=2.0, q1=0.68, q3=95 / 80)
    assert ratio_summary(loaded, Summary(n=1, median=0, min=0, max=0, q1=0, q3=0)) is None


def test_table_rows() -> None:
    doc = {
        "scenarios": [
            {
                "scenario": "a",
                "figures": [
                    _figure(
                        "rate",
                        "datagrams/s",
                        1000,
                        400_000,
                        {"of": "ratio", "op": ">=", "bound": 0.25, "met": False},
                    )
                ],
            },
            {
                "scenario": "d-lo",
                "figures": [
                    {
                        **_figure(
                            "p50", "µs", 500, 50, {"of": "ratio", "op": "<=", "bound": 20.0, "met": True}
                        ),
                        "emulated": _side(500, 400, 700),
                    },
                    _figure("p99", "µs", 900, 100, None),
                ],
            },
            {
                "scenario": "e-a",
                "figures": [
                    {
                        "figure": "netfilter/none",
                        "unit": "ratio",
                        "emulated": _side(0.4567, 0.4, 0.5),
                        "kernel": None,
                        "ratio": None,
                        "target": {"of": "emulated", "op": ">=", "bound": 0.5, "met": False},
                    }
                ],
            },
        ]
    }
    head = (
        "SCENARIO  FIGURE          UNIT         EMULATOR median (min-max)  KERNEL median (min-max)  RATIO   "
    )
    assert table(doc) == [
        head + "TARGET",
        "a         rate            datagrams/s  1,000                      400,000                  0.0025  "
        ">= 0.25     missed",
        "d-lo      p50             µs           500.0 (400.0-700.0)        50.0                     10      "
        "<= 20       met",
        "d-lo      p99             µs           900.0                      100.0                    9",
        "e-a       netfilter/none  ratio        0.457 (0.4-0.5)            -                        -       "
        "emu >= 0.5  missed",
    ]


def test_memory_and_soak_tables() -> None:
    mem = {
        "target": {"op": "<=", "bound": 200.0, "met": False},
        "services": [
            {"service": "alice.nic", "pid": 11, "vm_hwm_mb": 51.25, "vm_rss_mb": 50.0, "met": True},
            {"service": "bob.udp", "pid": 222, "vm_hwm_mb": 250.0, "vm_rss_mb": 120.5, "met": False},
            {"service": "bob.socket", "pid": 3, "error": "/proc/3/status: gone"},
        ],
    }
    assert report.memory_table(mem) == [
        "f: peak RSS (VmHWM) of each service after the scenarios; target: each <= 200 MB",
        "SERVICE     PID  PEAK MB  NOW MB",
        "alice.nic   11   51.2     50.0                  met",
        "bob.udp     222  250.0    120.5                 missed",
        "bob.socket  3    -        /proc/3/status: gone  missed",
    ]
    soak = {
        "seconds": 300.2,
        "interval": 5.0,
        "runs": 290,
        "sent": 1000,
        "received": 990,
        "target": {"op": "<", "bound": 1.0, "of": "rise_mb", "met": False},
        "services": [
            {
                "service": "alice.ip",
                "pid": 12,
                "first_mb": 52.0,
                "last_mb": 52.5,
                "slope_mb_per_min": 0.1,
                "rise_mb": 0.5,
                "met": True,
            },
            {
                "service": "bob.ip",
                "pid": 13,
                "first_mb": 52.0,
                "last_mb": 60.0,
                "slope_mb_per_min": 1.6,
                "rise_mb": 8.0,
                "met": False,
            },
        ],
    }
    assert report.soak_table(soak) == [
        "soak: scenario a over and over for 300 s (290 runs, 990 of 1,000 datagrams read), VmRSS every 5 s; "
        "target: no growth (the least-squares line rises < 1 MB over the run)",
        "SERVICE   PID  FIRST MB  LAST MB  SLOPE MB/min  RISE MB",
        "alice.ip  12   52.0      52.5     +0.100        +0.50    met",
        "bob.ip    13   52.0      60.0     +1.600        +8.00    missed",
    ]


def test_slope_is_least_squares() -> None:
    # y = 2x + 1 exactly, then noise symmetric about the line y = 3.
    assert memory.slope([(0, 1), (1, 3), (2, 5), (3, 7)]) == 2
    assert memory.slope([(0, 3), (1, 4), (2, 2), (3, 3)]) == -0.2
    assert memory.slope([(5, 1)]) == 0
    assert memory.slope([(1, 1), (1, 2)]) == 0


def test_services_in_topology_order_without_pidless_ones() -> None:
    hosts = {
        "bob": {
            layer: {"addr": "x", "pid": 200 + i} for i, layer in enumerate(("nic", "ip", "udp", "socket"))
        },
        "alice": {
            "nic": {"addr": "x", "pid": 100},
            "ip": {"addr": "x"},
            "socket": {"pid": 103, "restarts": 2},
        },
    }
    assert memory.services(hosts) == [
        memory.Service("alice.nic", 100),
        memory.Service("alice.socket", 103, restarts=2),
        memory.Service("bob.nic", 200),
        memory.Service("bob.ip", 201),
        memory.Service("bob.udp", 202),
        memory.Service("bob.socket", 203),
    ]


def test_status_kb_reads_proc() -> None:
    kb = memory.status_kb(os.getpid(), ("VmHWM", "VmRSS"))
    assert set(kb) == {"VmHWM", "VmRSS"}
    # The high-water mark is never below the resident set it tracks.
    assert kb["VmHWM"] >= kb["VmRSS"] > 0
    assert memory.mb(1000) == 1.024
    with pytest.raises(OSError, match="has no VmNothing"):
        memory.status_kb(os.getpid(), ("VmNothing",))


def test_soak_samples_between_runs() -> None:
    me = memory.Service("me", os.getpid())
    lefts: list[float] = []

    def once(left: float) -> Transfer:
        lefts.append(left)
        return Transfer(sent=2, received=1, sent_bytes=128, received_bytes=64, seconds=0.001)

    doc = memory.soak([me], 0.05, once)
    assert doc["runs"] == len(lefts) >= 1
    assert (doc["sent"], doc["received"], doc["lost_bytes"]) == (
        2 * doc["runs"],
        doc["runs"],
        64 * doc["runs"],
    )
    assert doc["interval"] == 0.005
    assert all(0 < left <= 0.05 for left in lefts)
    (row,) = doc["services"]
    assert row["first_mb"] == row["rss_mb"][0] and row["last_mb"] == row["rss_mb"][-1]
    assert len(row["t_s"]) == len(row["rss_mb"]) >= 2
    assert row["t_s"] == sorted(row["t_s"]) and row["t_s"][-1] >= 0.05


COLLAPSED = """\
main (app.py:10);loop (app.py:20);work (app.py:30) 5
main (app.py:10);loop (app.py:20);work (app.py:31) 3
main (app.py:10);loop (app.py:21) 2
main (app.py:10);other (lib.py) 1
not a stack line
"""


def test_flame_parse_own_and_svg() -> None:
    stacks = flame.parse(COLLAPSED)
    assert stacks[0] == (("main (app.py:10)", "loop (app.py:20)", "work (app.py:30)"), 5)
    assert len(stacks) == 4
    # work's two lines add up; loop's own samples are those where it is innermost.
    assert flame.own(stacks, 2) == [("work (app.py)", 8), ("loop (app.py)", 2)]
    assert flame.own(stacks, 15) == [("work (app.py)", 8), ("loop (app.py)", 2), ("other (lib.py)", 1)]
    svg = flame.svg(stacks, "t <&>")
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="112"')
    assert "<title>t &lt;&amp;&gt;</title>" not in svg and ">t &lt;&amp;&gt;</text>" in svg
    assert "<title>all (11 samples, 100.00%)</title>" in svg
    assert "<title>loop (app.py:20) (8 samples, 72.73%)</title>" in svg
    # Four levels (all, main, loop, work) and three rows of margin; work (app.py:31) is
    # 3/11 of 1200 pixels wide, after work (app.py:30)'s 5/11, on the fourth row from the bottom.
    assert '<rect x="545.45" y="48" width="327.27"' in svg


def test_profile_service_names() -> None:
    assert profiler.parse_service("bob.socket") == ("bob", "socket")
    for bad in ("alice", "carol.udp", "alice.tcp", "alice.udp.x"):
        with pytest.raises(ValueError, match=r"is not HOST\.SERVICE with HOST one of alice, bob and SERVICE"):
            profiler.parse_service(bad)


def test_bench_command_refuses_a_bad_profile_name() -> None:
    assert command._CHOICES == runner.CHOICES
    result = CliRunner().invoke(command.bench, ["--profile", "alice.tcp"])
    assert result.exit_code == 2
    assert "Invalid value for '--profile': 'alice.tcp' is not HOST.SERVICE" in result.output
    result = CliRunner().invoke(command.bench, ["--profile-out", "x.svg"])
    assert result.exit_code == 2
    assert "--profile-out without --profile" in result.output


def test_scaling_loads() -> None:
    assert scaling.rule_chains(3) == [("INPUT", 0xC6120000), ("OUTPUT", 0xC6120001), ("INPUT", 0xC6120002)]
    assert scaling.nf_rule("INPUT", 0xC6120002).src_mask == 0xFFFFFFFF
    assert scaling.nf_rule("OUTPUT", 0xC6120001).dst == 0xC6120001
    assert scaling.route_prefix(257) == 0x64400000 + (257 << 8)  # 100.65.1.0
    assert [load.key for load in scaling.LOADS] == ["none", "netfilter", "all", "sock+route"]
    with pytest.raises(ValueError, match="12769 sockets: scenario e has room for 0 to 12768"):
        scaling.Counts(12_769, 0, 0)


@pytest.mark.skipif(scaling.kernel_unavailable() is not None, reason="needs root, ip and iptables-restore")
def test_kernel_loads_in_a_namespace_of_their_own() -> None:
    def ns_out(*cmd: str) -> list[str]:
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=10).stdout.splitlines()

    with scaling.KernelLoads(scaling.Counts(sockets=3, routes=2, rules=3)) as k:
        k.apply(scaling.LOADS[2])  # all
        assert ns_out("ip", "-n", k.ns, "route", "show") == [
            "100.64.0.0/24 dev lo scope link ",
            "100.64.1.0/24 dev lo scope link ",
        ]
        rules = ns_out("ip", "netns", "exec", k.ns, "iptables", "-S")
        assert rules[3:] == [
            "-A INPUT -s 198.18.0.0/32 -j DROP",
            "-A INPUT -s 198.18.0.2/32 -j DROP",
            "-A OUTPUT -d 198.18.0.1/32 -j DROP",
        ]
        got = k.throughput(Budget(64, 1.0, 2.0))
        assert (got.sent, got.received, got.lost) == (64, 64, 0)
        k.apply(scaling.LOADS[3])  # sock+route: the rules go
        assert len(ns_out("ip", "netns", "exec", k.ns, "iptables", "-S")) == 3
        k.apply(scaling.NONE)
        assert ns_out("ip", "-n", k.ns, "route", "show") == []
    assert k.ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield from launched(str(tmp_path_factory.mktemp("state")))


def test_emulated_loads_go_in_and_out_through_the_rpcs(stack: dict[str, str]) -> None:
    hosts = [
        scaling.Host(h, service_addr(stack, h, "socket"), service_addr(stack, h, "ip"))
        for h in ("alice", "bob")
    ]
    loads = scaling.EmulatedLoads(hosts, scaling.Counts(sockets=3, routes=2, rules=3))

    def lines(*args: str) -> list[str]:
        run = cli(stack, *args)
        assert run.returncode == 0, run.stderr
        return run.stdout.splitlines()

    loads.apply(scaling.LOADS[2])  # all
    for host in ("alice", "bob"):
        routes = [r.strip() for r in lines("ip", "--host", host, "route") if r.startswith("100.64.")]
        assert routes == ["100.64.0.0/24 dev eth0 scope link", "100.64.1.0/24 dev eth0 scope link"]
        # The rules went in concurrently: their order in a chain is not fixed.
        rules = sorted(r for r in lines("iptables", "--host", host, "-S") if r.startswith("-A"))
        assert rules == [
            "-A INPUT -s 198.18.0.0/32 -j DROP",
            "-A INPUT -s 198.18.0.2/32 -j DROP",
            "-A OUTPUT -d 198.18.0.1/32 -j DROP",
        ]
        ports = sorted(line.split()[3] for line in lines("ss", "--host", host, "-uan")[1:])
        assert ports == ["0.0.0.0:20000", "0.0.0.0:20001", "0.0.0.0:20002"]
    loads.apply(scaling.LOADS[3])  # sock+route
    assert [r for r in lines("iptables", "-S") if r.startswith("-A")] == []
    loads.apply(scaling.NONE)
    for host in ("alice", "bob"):
        assert [r for r in lines("ip", "--host", host, "route") if r.startswith("100.64.")] == []
        assert lines("ss", "--host", host, "-uan")[1:] == []
    # Removing what is not there is an error, unless told it may be missing.
    only_routes = scaling.Load("routes", sockets=False, routes=True, rules=False, bound=None)
    loads.now = only_routes
    with pytest.raises(OSError, match=r"(alice|bob): ip route del 100\.64\.[01]\.0/24"):
        loads.apply(scaling.NONE)
    loads.now = only_routes
    loads.apply(scaling.NONE, tolerant=True)
    assert loads.now == scaling.NONE


def test_bench_quick_smoke(tmp_path: Path) -> None:
    """Every scenario once with tiny counts, a short soak, a chart and a profile of
    alice's UDP: a row per figure, and the JSON's keys."""
    out, png, svg = tmp_path / "bench.json", tmp_path / "bench.png", tmp_path / "udp.svg"
    env = stack_env(str(tmp_path / "state"))
    env["NO_COLOR"] = "1"
    args = ["--quick", "--json", str(out), "--plot", str(png), "--soak", "1"]
    run = cli(env, "bench", *args, "--profile", "alice.udp", "--profile-out", str(svg), timeout=90)
    assert run.returncode == 0, run.stderr + run.stdout
    lines = run.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("SCENARIO"))
    rows = [line.split()[:2] for line in lines[header + 1 : header + 16]]
    assert rows == [
        ["a", "rate"],
        ["b", "rate"],
        ["c", "goodput"],
        ["d-lo", "p50"],
        ["d-lo", "p99"],
        ["d-wire", "p50"],
        ["d-wire", "p99"],
        ["e-a", "rate"],
        ["e-a", "sock+route/none"],
        ["e-a", "netfilter/none"],
        ["e-a", "all/none"],
        ["e-b", "rate"],
        ["e-b", "sock+route/none"],
        ["e-b", "netfilter/none"],
        ["e-b", "all/none"],
    ]
    doc = json.loads(out.read_text())
    assert set(doc) == {
        "command",
        "started",
        "machine",
        "repeat",
        "quick",
        "scenarios",
        "memory",
        "soak",
        "profile",
    }
    assert doc["repeat"] == 1 and doc["quick"] is True
    assert [s["scenario"] for s in doc["scenarios"]] == [*SCENARIO_KEYS, "e-a", "e-b"]
    a = doc["scenarios"][0]
    assert set(a) == {"scenario", "title", "budget", "figures", "samples"}
    assert a["budget"] == {"count": 256, "seconds": 1.0, "timeout": 2.0}
    (rate,) = a["figures"]
    assert set(rate) == {"figure", "unit", "emulated", "kernel", "ratio", "target"}
    assert set(rate["emulated"]) == {"n", "median", "min", "max", "q1", "q3"}
    assert {k: rate["target"][k] for k in ("of", "op", "bound")} == {"of": "ratio", "op": ">=", "bound": 0.25}
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

    for e in doc["scenarios"][5:]:
        assert e["loads"] == {
            "sockets": 100,
            "routes": 100,
            "rules": 10,
            "order": ["none", "netfilter", "all", "sock+route"],
        }
        assert e["kernel_note"] is None
        assert [(f["figure"], f["unit"]) for f in e["figures"]] == [
            ("rate", "datagrams/s"),
            ("sock+route/none", "ratio"),
            ("netfilter/none", "ratio"),
            ("all/none", "ratio"),
        ]
        assert [f["target"] and (f["target"]["of"], f["target"]["bound"]) for f in e["figures"]] == [
            None,
            ("emulated", 0.9),
            ("emulated", 0.5),
            ("emulated", 0.5),
        ]
        for f in e["figures"][1:]:
            loaded, none = f["rate"]["emulated"]["median"], e["figures"][0]["emulated"]["median"]
            assert f["emulated"]["median"] == pytest.approx(loaded / none)
        for load in ("none", "netfilter", "all", "sock+route"):
            for side in ("emulated", "kernel"):
                (sample,) = e["samples"][load][side]
                assert (sample["sent"], sample["received"], sample["lost_bytes"]) == (256, 256, 0)

    mem = doc["memory"]
    assert mem["unit"] == "MB" and mem["target"]["bound"] == 200.0
    assert [r["service"] for r in mem["services"]] == [
        f"{h}.{s}" for h in ("alice", "bob") for s in ("nic", "ip", "udp", "socket")
    ]
    for r in mem["services"]:
        assert set(r) == {"service", "pid", "restarts", "vm_hwm_mb", "vm_rss_mb", "met"}
        assert r["vm_hwm_mb"] >= r["vm_rss_mb"] > 0
        assert r["met"] == (r["vm_hwm_mb"] <= 200)
    f_head = lines.index("f: peak RSS (VmHWM) of each service after the scenarios; target: each <= 200 MB")
    assert lines[f_head + 1].split() == ["SERVICE", "PID", "PEAK", "MB", "NOW", "MB"]
    assert [line.split()[0] for line in lines[f_head + 2 : f_head + 10]] == [
        r["service"] for r in mem["services"]
    ]

    soak = doc["soak"]
    assert soak["runs"] >= 1 and soak["received"] == soak["sent"] > 0 and soak["lost_bytes"] == 0
    assert soak["interval"] == 0.1 and soak["seconds"] >= 1
    assert [r["service"] for r in soak["services"]] == [r["service"] for r in mem["services"]]
    for r in soak["services"]:
        assert r["first_mb"] == r["rss_mb"][0] and len(r["t_s"]) == len(r["rss_mb"]) >= 2

    prof = doc["profile"]
    assert (prof["service"], prof["pid"], prof["svg"]) == ("alice.udp", mem["services"][2]["pid"], str(svg))
    assert prof["samples"] > 0 and 1 <= len(prof["top"]) <= 15
    assert svg.read_text().startswith("<svg") and Path(prof["collapsed"]).read_text()
    top_head = lines.index("OWN %  SAMPLES  FUNCTION (file)")
    assert lines[top_head + 1].split()[2:] == prof["top"][0]["function"].split()

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The stack it started is gone with its state directory.
    assert not (tmp_path / "state" / "stack.json").exists()
