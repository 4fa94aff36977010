"""`stackemu tc qdisc`: tc's netem syntax and units into SetNetem, tc's show format."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackemu.nic.v1 import nic_pb2
from stackemu.tools.tc import netem_json
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
    # Without seed, this is what iproute2 6.1's print_qdisc() printed for the same
    # TCA_OPTIONS as the kernel dumps them; seed sits where later releases print it.
    assert r.stdout == (
        "qdisc netem 8001: root refcnt 2 limit 500 delay 10ms  2ms loss 5% duplicate 1% reorder 25% "
        "corrupt 0.1% rate 100Mbit seed 42 gap 5\n"
    )
    r = stack.run("tc", "qdisc", "show")
    assert r.stdout == (
        "qdisc noqueue 0: dev lo root refcnt 2 \n"
        "qdisc netem 8001: dev eth0 root refcnt 2 limit 500 delay 10ms  2ms loss 5% duplicate 1% reorder 25% "
        "corrupt 0.1% rate 100Mbit seed 42 gap 5\n"
    )


def test_show_formats_times_and_rates_as_tc(stack: Stack) -> None:
    for args, opts in [
        (("delay", "1s"), "limit 1000 delay 1s"),
        # Times go to the kernel as ticks of 64 ns, tc_core_time2tick()'s unsigned int of
        # us * 15.625, and come back through tc_core_tick2time(), also truncated: 100us
        # is 1562 ticks, 99.97us, shown as 99us; 3us is 46 ticks, 2us; 1us is 0us.
        (("delay", "12345us", "100us"), "limit 1000 delay 12.3ms  99us"),
        (("delay", "3us", "1"), "limit 1000 delay 2us  0us"),
        (("delay", "1"), "limit 1000 delay 0us"),
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


def test_netem_parse_follows_tc_for_ticks_and_seed(stack: Stack) -> None:
    # get_ticks() of tc/q_netem.c: ticks must fit in 32 bits; 274877906us is
    # 4294967281 ticks, 274877907us one too many.
    assert _netem_sent(stack, "delay", "274877906").delay_us == 274877906
    r = stack.run("tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", "274877907")
    assert (r.exit_code, r.stdout, r.stderr) == (
        1,
        "",
        'Illegal 274877907 time (too large)\nIllegal "latency"\n',
    )
    # seed is get_u64(.., 10) and is matched before slot, so "s" is seed.
    assert _netem_sent(stack, "s", "7").seed == 7
    r = stack.run("tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "seed", "0x10")
    assert (r.exit_code, r.stderr) == (1, 'Illegal "seed"\n')


# `tc -j`: every expected string below is what iproute2 6.1's print_qdisc() printed,
# byte for byte, when fed the RTM_NEWQDISC the kernel's netem_dump() makes for the same
# options (the real tc 6.1 source built here; this kernel has no sch_netem to ask).
# Where each member comes from, in iproute2 6.1:
#   kind, handle, dev, root, refcnt  tc/tc_qdisc.c:269-290 (no "dev" with `dev DEV`)
#   options {}                       tc/tc_qdisc.c:320-327, always, {} for noqueue
#   limit                            tc/q_netem.c:724
#   delay {delay, jitter, correlation}  tc/q_netem.c:726-746: seconds of the ticks
#       (tc_core_tick2time() / 1e6), jitter always, correlation always (print_corr())
#   loss-random, duplicate, reorder, corrupt  tc/q_netem.c:748-793: PRINT_PERCENT() in
#       JSON is the u32 / UINT32_MAX (1% is 0.01), "%g" (jsonw_float())
#   rate {rate, packetoverhead, cellsize, celloverhead}  tc/q_netem.c:795-806, rate in
#       bytes per second (print_color_rate() in JSON)
#   ecn, gap                         tc/q_netem.c:823-829, always
#   bytes .. qlen (-s)               tc/tc_util.c:655-731 print_tcstats2_attr()
NETEM_ALL = (
    '{"kind":"netem","handle":"8001:","root":true,"refcnt":2,"options":{"limit":500,'
    '"delay":{"delay":0.01,"jitter":0.002,"correlation":0},"loss-random":{"loss":0.05,"correlation":0},'
    '"duplicate":{"duplicate":0.01,"correlation":0},"reorder":{"reorder":0.25,"correlation":0},'
    '"corrupt":{"corrupt":0.001,"correlation":0},'
    '"rate":{"rate":12500000,"packetoverhead":0,"cellsize":0,"celloverhead":0},"ecn":false,"gap":5}}'
)
NETEM_ALL_ARGS = (
    *("limit", "500", "delay", "10ms", "2ms", "loss", "5%", "duplicate", "1%"),
    *("reorder", "25%", "gap", "5", "corrupt", "0.1%", "rate", "100mbit"),
)


def _options(stack: Stack, *args: str) -> str:
    _netem_sent(stack, *args)
    r = stack.run("tc", "-j", "qdisc", "show", "dev", "eth0")
    assert (r.exit_code, r.stderr) == (0, ""), r.output
    head = '[{"kind":"netem","handle":"8001:","root":true,"refcnt":2,"options":'
    assert r.stdout.startswith(head) and r.stdout.endswith("}]\n"), r.stdout
    return r.stdout[len(head) : -3]


def test_j_netem_with_every_option(stack: Stack) -> None:
    _netem_sent(stack, *NETEM_ALL_ARGS)
    r = stack.run("tc", "-j", "qdisc", "show", "dev", "eth0")
    assert (r.exit_code, r.stdout, r.stderr) == (0, f"[{NETEM_ALL}]\n", "")


@pytest.mark.parametrize(
    ("args", "options"),
    [
        # tc always sends limit; ecn and gap are always printed
        ((), '{"limit":1000,"ecn":false,"gap":0}'),
        (("limit", "7"), '{"limit":7,"ecn":false,"gap":0}'),
        # delay without jitter: jitter 0, a whole "%g" number
        (
            ("delay", "10ms"),
            '{"limit":1000,"delay":{"delay":0.01,"jitter":0,"correlation":0},"ecn":false,"gap":0}',
        ),
        # the ticks' round trip: 12345us is 12344us, 100us 99us, and "%g" has 6 digits
        (
            ("delay", "12345us", "100us"),
            '{"limit":1000,"delay":{"delay":0.012344,"jitter":9.9e-05,"correlation":0},"ecn":false,"gap":0}',
        ),
        # 1us is 15 ticks: a delay is there (qopt.latency != 0) and it is 0 seconds
        (("delay", "1"), '{"limit":1000,"delay":{"delay":0,"jitter":0,"correlation":0},"ecn":false,"gap":0}'),
        (
            ("delay", "1.5s"),
            '{"limit":1000,"delay":{"delay":1.5,"jitter":0,"correlation":0},"ecn":false,"gap":0}',
        ),
        # "loss random" is the same loss-random object
        (
            ("loss", "random", "0.05%"),
            '{"limit":1000,"loss-random":{"loss":0.0005,"correlation":0},"ecn":false,"gap":0}',
        ),
        # 100% is UINT32_MAX / UINT32_MAX: "%g" prints 1
        (
            ("duplicate", "100"),
            '{"limit":1000,"duplicate":{"duplicate":1,"correlation":0},"ecn":false,"gap":0}',
        ),
        # a percentage whose u32 is 0 is no loss at all: not printed
        (("loss", "0.00000001%"), '{"limit":1000,"ecn":false,"gap":0}'),
        # reorder gets gap 1 from tc when none is given
        (
            ("delay", "1ms", "reorder", "50%"),
            '{"limit":1000,"delay":{"delay":0.001,"jitter":0,"correlation":0},'
            '"reorder":{"reorder":0.5,"correlation":0},"ecn":false,"gap":1}',
        ),
        (
            ("corrupt", "33.3333%"),
            '{"limit":1000,"corrupt":{"corrupt":0.333333,"correlation":0},"ecn":false,"gap":0}',
        ),
        # rate in bytes per second: 1kbit is 125
        (
            ("rate", "1kbit"),
            '{"limit":1000,"rate":{"rate":125,"packetoverhead":0,"cellsize":0,"celloverhead":0},'
            '"ecn":false,"gap":0}',
        ),
        # iproute2 6.1 does not print the seed; later releases put it after slot, before ecn
        (("seed", "42"), '{"limit":1000,"seed":42,"ecn":false,"gap":0}'),
    ],
)
def test_j_netem_options(stack: Stack, args: tuple[str, ...], options: str) -> None:
    assert _options(stack, *args) == options


def test_j_noqueue_and_pfifo_fast(stack: Stack) -> None:
    lo = '{"kind":"noqueue","handle":"0:","dev":"lo","root":true,"refcnt":2,"options":{}}'
    eth0 = (
        '{"kind":"pfifo_fast","handle":"0:","dev":"eth0","root":true,"refcnt":2,"options":{"bands":3,'
        '"priomap":[1,2,2,2,1,2,0,0,1,1,1,1,1,1,1,1],"multiqueue":false}}'
    )
    # eth1 is down: its noop qdisc is not dumped.
    for opt in ("-j", "-json", "-js"):
        r = stack.run("tc", opt, "qdisc", "show")
        assert (r.exit_code, r.stdout, r.stderr) == (0, f"[{lo},{eth0}]\n", ""), opt
    assert stack.run("tc", "-j", "qdisc", "show", "dev", "lo").stdout == (
        '[{"kind":"noqueue","handle":"0:","root":true,"refcnt":2,"options":{}}]\n'
    )
    assert stack.run("tc", "-j", "qdisc", "show", "dev", "eth1").stdout == "[]\n"
    assert stack.run("tc", "-j", "-p", "qdisc", "show", "dev", "eth1").stdout == "[ ]\n"
    # no GetNetem without -s for the default qdisc: nothing to ask
    assert stack.alice.sent("GetNetem") == []
    r = stack.run("tc", "-j", "qdisc", "show", "dev", "nope")
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", 'Cannot find device "nope"\n')


def test_j_options_are_tcs(stack: Stack) -> None:
    # tc.c matches "-json" and "-pretty" as prefixes; unlike ip it has no "--" spelling.
    r = stack.run("tc", "--json", "qdisc", "show")
    assert (r.exit_code, r.stdout, r.stderr) == (255, "", 'Option "--json" is unknown, try "tc -help".\n')
    # -p alone does nothing to the text; "-" is a prefix of "-stats".
    assert stack.run("tc", "-p", "qdisc", "show", "dev", "lo").stdout == "qdisc noqueue 0: root refcnt 2 \n"
    assert (
        stack.run("tc", "-pretty", "qdisc", "show", "dev", "lo").stdout == "qdisc noqueue 0: root refcnt 2 \n"
    )
    assert stack.run("tc", "-", "qdisc", "show", "dev", "lo").stdout == (
        "qdisc noqueue 0: root refcnt 2 \n"
        " Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) \n"
        " backlog 0b 0p requeues 0\n"
    )


NETEM_PRETTY = """\
[ {
        "kind": "netem",
        "handle": "8001:",
        "root": true,
        "refcnt": 2,
        "options": {
            "limit": 500,
            "delay": {
                "delay": 0.01,
                "jitter": 0.002,
                "correlation": 0
            },
            "loss-random": {
                "loss": 0.05,
                "correlation": 0
            },
            "duplicate": {
                "duplicate": 0.01,
                "correlation": 0
            },
            "reorder": {
                "reorder": 0.25,
                "correlation": 0
            },
            "corrupt": {
                "corrupt": 0.001,
                "correlation": 0
            },
            "rate": {
                "rate": 12500000,
                "packetoverhead": 0,
                "cellsize": 0,
                "celloverhead": 0
            },
            "ecn": false,
            "gap": 5
        },
        "bytes": 12345678901,
        "packets": 5,
        "drops": 2,
        "overlimits": 1,
        "requeues": 0,
        "backlog": 0,
        "qlen": 0
    } ]
"""


def test_j_s_netem_statistics_and_pretty(stack: Stack) -> None:
    _netem_sent(stack, *NETEM_ALL_ARGS)
    stack.alice.netem_stats.CopyFrom(nic_pb2.NetemStats(sent=5, dropped=2, overlimits=1))
    stats = '"bytes":12345678901,"packets":5,"drops":2,"overlimits":1,"requeues":0,"backlog":0,"qlen":0'
    r = stack.run("tc", "-s", "-j", "qdisc", "show", "dev", "eth0")
    assert (r.exit_code, r.stdout, r.stderr) == (0, f"[{NETEM_ALL[:-1]},{stats}}}]\n", "")
    for opts in (("-j", "-s", "-p"), ("-p", "-j", "-s"), ("-pretty", "-statistics", "-json")):
        assert stack.run("tc", *opts, "qdisc", "show", "dev", "eth0").stdout == NETEM_PRETTY, opts
    # gnet_stats_queue's drops and overlimits are __u32
    stack.alice.netem_stats.CopyFrom(nic_pb2.NetemStats(sent=5, dropped=2**32 + 3, overlimits=2**32))
    (q,) = json.loads(stack.run("tc", "-s", "-j", "qdisc", "show", "dev", "eth0").stdout)
    assert (q["drops"], q["overlimits"]) == (3, 0)


def test_j_s_noqueue_and_pfifo_fast(stack: Stack) -> None:
    stack.alice.netem_stats.CopyFrom(nic_pb2.NetemStats(sent=6, dropped=1))
    r = stack.run("tc", "-s", "-j", "qdisc", "show")
    assert (r.exit_code, r.stderr) == (0, "")
    assert r.stdout == (
        '[{"kind":"noqueue","handle":"0:","dev":"lo","root":true,"refcnt":2,"options":{},'
        '"bytes":0,"packets":0,"drops":0,"overlimits":0,"requeues":0,"backlog":0,"qlen":0},'
        '{"kind":"pfifo_fast","handle":"0:","dev":"eth0","root":true,"refcnt":2,"options":{"bands":3,'
        '"priomap":[1,2,2,2,1,2,0,0,1,1,1,1,1,1,1,1],"multiqueue":false},'
        '"bytes":12345678901,"packets":6,"drops":1,"overlimits":0,"requeues":0,"backlog":0,"qlen":0}]\n'
    )
    # Packets queued: "backlog" is their bytes, which NetemStats does not carry, so it is
    # left out (as the text leaves out the "Nb"); qlen is the packets.
    stack.alice.netem_stats.CopyFrom(nic_pb2.NetemStats(sent=6, backlog=3))
    (q,) = json.loads(stack.run("tc", "-s", "-j", "qdisc", "show", "dev", "eth0").stdout)
    assert list(q)[-5:] == ["packets", "drops", "overlimits", "requeues", "qlen"]
    assert q["qlen"] == 3


def test_netem_json_alone() -> None:
    assert netem_json(nic_pb2.Netem(limit=1000, delay_us=2500000, jitter_us=3)) == {
        "limit": 1000,
        "delay": {"delay": 2.5, "jitter": 2e-06, "correlation": 0},
        "ecn": False,
        "gap": 0,
    }
    # rate64: above 2**32 bytes per second the kernel sends TCA_NETEM_RATE64, and tc
    # prints the 64-bit value
    assert netem_json(nic_pb2.Netem(limit=1, rate_bps=8 * 2**33))["rate"] == {
        "rate": 2**33,
        "packetoverhead": 0,
        "cellsize": 0,
        "celloverhead": 0,
    }


# The same devices in a network namespace of our own, asked live: lo (noqueue), eth0 a
# TAP device (single TX queue, no IFF_NO_QUEUE: the default qdisc, pfifo_fast 0:, as on
# the emulated eth0), eth1 a veth that is down.

TC, IP = shutil.which("tc"), shutil.which("ip")


def _default_qdisc() -> str:
    try:
        return Path("/proc/sys/net/core/default_qdisc").read_text().strip()
    except OSError:
        return ""


@pytest.fixture
def tcns() -> Iterator[str]:
    assert IP is not None
    ns = f"se-tc-{secrets.token_hex(3)}"
    subprocess.run([IP, "netns", "add", ns], check=True, timeout=10)
    try:
        for args in (
            ("link", "set", "lo", "up"),
            ("tuntap", "add", "mode", "tap", "name", "eth0"),
            ("link", "set", "eth0", "up"),
            ("link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"),
        ):
            subprocess.run([IP, "-n", ns, *args], check=True, timeout=10)
        yield ns
    finally:
        subprocess.run([IP, "netns", "del", ns], timeout=10)


@pytest.mark.skipif(
    os.geteuid() != 0 or TC is None or IP is None or _default_qdisc() != "pfifo_fast",
    reason="needs root, iproute2 and net.core.default_qdisc pfifo_fast",
)
def test_j_matches_the_kernel(stack: Stack, tcns: str) -> None:
    assert TC is not None
    # A TAP device nobody has opened has no carrier and sends nothing: all counters 0.
    stack.alice.links[1].stats.tx_bytes = 0
    for args in (
        ("-j", "qdisc", "show"),
        ("-j", "qdisc"),
        ("-json", "qdisc", "show", "dev", "eth0"),
        ("-j", "qdisc", "show", "dev", "lo"),
        ("-j", "qdisc", "show", "dev", "eth1"),
        ("-j", "-p", "qdisc", "show", "dev", "eth1"),
        ("-j", "-p", "qdisc", "show"),
        ("-j", "-s", "qdisc", "show"),
        ("-p", "-s", "-j", "qdisc", "show", "dev", "eth0"),
        ("-s", "qdisc", "show"),
        ("qdisc", "show", "dev", "eth0"),
        ("-p", "qdisc", "show"),
        ("-j", "qdisc", "show", "dev", "nope"),
        ("--json", "qdisc", "show"),
        ("-", "qdisc", "show", "dev", "lo"),
    ):
        kernel = subprocess.run([TC, "-n", tcns, *args], capture_output=True, text=True, timeout=10)
        r = stack.run("tc", *args)
        assert (r.exit_code, r.stdout, r.stderr) == (kernel.returncode, kernel.stdout, kernel.stderr), args
