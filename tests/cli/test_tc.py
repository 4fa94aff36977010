"""`stackemu tc qdisc`: tc's netem syntax and units into SetNetem, tc's show format."""

from __future__ import annotations

import pytest

from stackemu.nic.v1 import nic_pb2
from tests.cli.conftest import Stack


def _netem_sent(stack: Stack, *args: str) -> nic_pb2.Netem:
    r = stack.run("tc", "qdisc", "replace", "dev", "eth0", "root", "netem", *args)
    assert (r.exit_code, r.output) == (0, ""), r.output
    req: nic_pb2.SetNetemRequest = stack.alice.sent("SetNetem")[-1]
    assert req.device == "eth0"
    return req.netem


def test_replace_sends_the_netem_tc_would(stack: Stack) -> None:
    r = stack.run(
        "tc",
        "qdisc",
        "replace",
        "dev",
        "eth0",
        "root",
        "netem",
        "delay",
        "10ms",
        "2ms",
        "loss",
        "5%",
        "rate",
        "100mbit",
    )
    assert (r.exit_code, r.output) == (0, "")
    # tc's netem_parse_opt() always sends limit, 1000 unless given
    assert stack.alice.sent("SetNetem") == [
        nic_pb2.SetNetemRequest(
            device="eth0",
            netem=nic_pb2.Netem(
                limit=1000, delay_us=10000, jitter_us=2000, loss_pct=5.0, rate_bps=100_000_000
            ),
        )
    ]
    assert stack.alice.sent("GetNetem") == [nic_pb2.GetNetemRequest(device="eth0")]


@pytest.mark.parametrize(
    ("args", "want"),
    [
        # TIME: s, ms, us, and a bare number is microseconds
        (("delay", "1s"), nic_pb2.Netem(limit=1000, delay_us=1_000_000)),
        (("delay", "100us", "10"), nic_pb2.Netem(limit=1000, delay_us=100, jitter_us=10)),
        (("delay", "1.5ms"), nic_pb2.Netem(limit=1000, delay_us=1500)),
        # PCT: with or without %, and 0.05 is 0.05 percent
        (("loss", "0.05"), nic_pb2.Netem(limit=1000, loss_pct=0.05)),
        (("loss", "random", "1%"), nic_pb2.Netem(limit=1000, loss_pct=1.0)),
        (
            ("duplicate", "1%", "corrupt", "0.1%"),
            nic_pb2.Netem(limit=1000, duplicate_pct=1.0, corrupt_pct=0.1),
        ),
        # RATE: bit/kbit/mbit/gbit are bits per second, Bps is BYTES per second
        (("rate", "500kbit"), nic_pb2.Netem(limit=1000, rate_bps=500_000)),
        (("rate", "1gbit"), nic_pb2.Netem(limit=1000, rate_bps=1_000_000_000)),
        (("rate", "1000bps"), nic_pb2.Netem(limit=1000, rate_bps=8000)),
        (("rate", "2MBps"), nic_pb2.Netem(limit=1000, rate_bps=16_000_000)),
        (("rate", "1Kibit"), nic_pb2.Netem(limit=1000, rate_bps=1024)),
        # tc keeps bytes per second: 100bit is 12 bytes/s
        (("rate", "100bit"), nic_pb2.Netem(limit=1000, rate_bps=96)),
        # reorder needs a delay, and gets gap 1 when none is given
        (
            ("delay", "10ms", "reorder", "25%"),
            nic_pb2.Netem(limit=1000, delay_us=10000, reorder_pct=25.0, gap=1),
        ),
        (
            ("delay", "10ms", "reorder", "25%", "gap", "5"),
            nic_pb2.Netem(limit=1000, delay_us=10000, reorder_pct=25.0, gap=5),
        ),
        (("limit", "50", "seed", "42"), nic_pb2.Netem(limit=50, seed=42)),
        # tc's prefix matching of keywords
        (("lim", "7", "del", "2ms", "dup", "3"), nic_pb2.Netem(limit=7, delay_us=2000, duplicate_pct=3.0)),
    ],
)
def test_netem_units_follow_tc(stack: Stack, args: tuple[str, ...], want: nic_pb2.Netem) -> None:
    assert _netem_sent(stack, *args) == want


def test_show_prints_the_netem_line_in_tc_order(stack: Stack) -> None:
    _netem_sent(
        stack,
        "limit",
        "500",
        "delay",
        "10ms",
        "2ms",
        "loss",
        "5%",
        "duplicate",
        "1%",
        "reorder",
        "25%",
        "gap",
        "5",
        "corrupt",
        "0.1%",
        "rate",
        "100mbit",
        "seed",
        "42",
    )
    r = stack.run("tc", "qdisc", "show", "dev", "eth0")
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "qdisc netem 8001: root refcnt 2 limit 500 delay 10ms  2ms loss 5% duplicate 1% reorder 25% "
        "corrupt 0.1% seed 42 rate 100Mbit gap 5\n"
    )
    r = stack.run("tc", "qdisc", "show")
    assert r.stdout == (
        "qdisc noqueue 0: dev lo root refcnt 2 \n"
        "qdisc netem 8001: dev eth0 root refcnt 2 limit 500 delay 10ms  2ms loss 5% duplicate 1% reorder 25% "
        "corrupt 0.1% seed 42 rate 100Mbit gap 5\n"
    )


def test_show_formats_times_and_rates_as_tc(stack: Stack) -> None:
    for args, opts in [
        (("delay", "1s"), "limit 1000 delay 1s"),
        (("delay", "12345us", "100us"), "limit 1000 delay 12.3ms  100us"),
        (("rate", "1000bps"), "limit 1000 rate 8Kbit"),
        (("rate", "1500kbit"), "limit 1000 rate 1500Kbit"),
        (("rate", "1gbit"), "limit 1000 rate 1Gbit"),
    ]:
        _netem_sent(stack, *args)
        r = stack.run("tc", "qdisc", "show", "dev", "eth0")
        assert r.stdout == f"qdisc netem 8001: root refcnt 2 {opts}\n", args


def test_s_adds_the_statistics(stack: Stack) -> None:
    _netem_sent(stack, "delay", "10ms")
    stack.alice.netem_stats.CopyFrom(nic_pb2.NetemStats(sent=7, dropped=2, overlimits=1))
    r = stack.run("tc", "-s", "qdisc", "show", "dev", "eth0")
    assert r.stdout == (
        "qdisc netem 8001: root refcnt 2 limit 1000 delay 10ms\n"
        # Sent bytes: the device's tx_bytes (NetemStats has no byte count)
        " Sent 12345678901 bytes 7 pkt (dropped 2, overlimits 1 requeues 0) \n"
        " backlog 0b 0p requeues 0\n"
    )
    r = stack.run("tc", "-s", "qdisc", "show", "dev", "lo")
    assert r.stdout == (
        "qdisc noqueue 0: root refcnt 2 \n"
        " Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n"
        " backlog 0b 0p requeues 0\n"
    )


def test_s_on_the_default_qdisc_uses_its_counters(stack: Stack) -> None:
    stack.alice.netem_stats.CopyFrom(nic_pb2.NetemStats(sent=6, dropped=1, backlog=3))
    r = stack.run("tc", "-s", "qdisc", "show", "dev", "eth0")
    assert r.stdout == (
        "qdisc pfifo_fast 0: root refcnt 2 bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1\n"
        " Sent 12345678901 bytes 6 pkt (dropped 1, overlimits 0 requeues 0) \n"
        # NetemStats.backlog is packets; the bytes they hold are not in the contract
        " backlog 3p requeues 0\n"
    )
    assert stack.alice.sent("GetNetem") == [nic_pb2.GetNetemRequest(device="eth0")]


def test_del_sends_setnetem_without_netem(stack: Stack) -> None:
    _netem_sent(stack, "delay", "10ms")
    r = stack.run("tc", "qdisc", "del", "dev", "eth0", "root")
    assert (r.exit_code, r.output) == (0, "")
    assert stack.alice.sent("SetNetem")[-1] == nic_pb2.SetNetemRequest(device="eth0")
    assert not stack.alice.sent("SetNetem")[-1].HasField("netem")
    r = stack.run("tc", "qdisc", "show", "dev", "eth0")
    assert r.stdout == "qdisc pfifo_fast 0: root refcnt 2 bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1\n"


def test_add_change_del_follow_the_kernel_flags(stack: Stack) -> None:
    r = stack.run("tc", "qdisc", "change", "dev", "eth0", "root", "netem", "delay", "1ms")
    assert (r.exit_code, r.stderr) == (2, "Error: Qdisc not found. To create specify NLM_F_CREATE flag.\n")
    r = stack.run("tc", "qdisc", "del", "dev", "eth0", "root")
    assert (r.exit_code, r.stderr) == (2, "Error: Cannot delete qdisc with handle of zero.\n")
    r = stack.run("tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "1ms")
    assert r.exit_code == 0, r.output
    r = stack.run("tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "2ms")
    assert (r.exit_code, r.stderr) == (2, "Error: Exclusivity flag on, cannot modify.\n")
    r = stack.run("tc", "qdisc", "change", "dev", "eth0", "root", "netem", "delay", "3ms")
    assert r.exit_code == 0, r.output
    assert [req.netem.delay_us for req in stack.alice.sent("SetNetem")] == [1000, 3000]


def test_tc_errors(stack: Stack) -> None:
    usage_head = "Usage: ... netem [ limit PACKETS ]\n"
    cases = [
        (("dev", "eth0", "root", "netem", "loss", "200%"), 1, 'Illegal "loss percent"\n'),
        (("dev", "eth0", "root", "netem", "loss", "5x"), 1, 'Illegal "loss percent"\n'),
        (("dev", "eth0", "root", "netem", "delay", "abc"), 1, 'Illegal "latency"\n'),
        (("dev", "eth0", "root", "netem", "rate", "100foo"), 1, 'Illegal "rate"\n'),
        (("dev", "eth0", "root", "netem", "limit", "abc"), 1, 'Illegal "limit"\n'),
        (("dev", "eth0", "root", "netem", "delay"), 255, 'Command line is not complete. Try option "help"\n'),
        (
            ("dev", "eth0", "root", "netem", "reorder", "25%"),
            1,
            "reordering not possible without specifying some delay\n" + usage_head,
        ),
        (
            ("dev", "eth0", "root", "netem", "gap", "5"),
            1,
            "gap specified without reorder probability\n" + usage_head,
        ),
        (("dev", "eth0", "root", "netem", "bogus"), 1, 'What is "bogus"?\n' + usage_head),
        (
            ("dev", "eth0", "root", "netem", "delay", "10ms", "2ms", "25%"),
            1,
            "stackemu tc: netem delay correlation is not emulated\n",
        ),
        (
            ("dev", "eth0", "root", "netem", "loss", "state", "5%"),
            1,
            "stackemu tc: netem loss state is not emulated\n",
        ),
        (("dev", "eth0", "root", "pfifo"), 2, "Error: Specified qdisc kind is unknown.\n"),
        (("dev", "eth0", "netem", "delay", "1ms"), 2, "Error: Handle cannot be zero.\n"),
        (("root", "netem", "delay", "1ms"), 2, "RTNETLINK answers: No such device\n"),
        (("dev", "nope", "root", "netem", "delay", "1ms"), 1, 'Cannot find device "nope"\n'),
        (("dev", "lo", "root", "netem", "delay", "1ms"), 2, "RTNETLINK answers: Operation not supported\n"),
    ]
    for args, code, stderr in cases:
        r = stack.run("tc", "qdisc", "replace", *args)
        assert r.exit_code == code, (args, r.output)
        assert r.stderr.startswith(stderr), (args, r.stderr)
        assert r.stdout == "", args
    assert [r.device for r in stack.alice.sent("SetNetem")] == ["lo"]
    r = stack.run("tc", "qdisc", "show", "dev", "nope")
    assert (r.exit_code, r.stderr) == (1, 'Cannot find device "nope"\n')
    r = stack.run("tc", "qdisc", "frob")
    assert (r.exit_code, r.stderr) == (255, 'Command "frob" is unknown, try "tc qdisc help".\n')


def test_tc_on_another_host(stack: Stack) -> None:
    r = stack.run("tc", "qdisc", "replace", "dev", "bob:eth0", "root", "netem", "loss", "1%")
    assert r.exit_code == 0, r.output
    assert stack.bob.sent("SetNetem") == [
        nic_pb2.SetNetemRequest(device="eth0", netem=nic_pb2.Netem(limit=1000, loss_pct=1.0))
    ]
    assert stack.alice.requests == []
