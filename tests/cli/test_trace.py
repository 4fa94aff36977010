"""`stackemu iptables ... -j TRACE` as iptables-legacy 1.8.9 prints it (recorded on
6.18 in a network namespace), and the pure parts of `stackemu trace`: merging ring
entries into journeys, the packet line, the Chrome trace-event document."""

from __future__ import annotations

from services.core.skbuff import TraceStep
from services.ip.netfilter import NF_INET_PRE_ROUTING
from stackemu.tools.trace import chrome_trace, describe, merge, timeline
from tests.cli.test_iptables import NetfilterServer, ipt, iptables  # noqa: F401  (the fixture)
from tests.services.test_netfilter import udp


def test_a_trace_rule_as_iptables_legacy_shows_it(ipt: NetfilterServer) -> None:  # noqa: F811
    r = iptables("-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", "9000", "-j", "TRACE")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    assert iptables("-t", "raw", "-S").stdout.splitlines() == [
        "-P PREROUTING ACCEPT",
        "-P OUTPUT ACCEPT",
        "-A PREROUTING -p udp -m udp --dport 9000 -j TRACE",
    ]
    assert iptables("-t", "raw", "-L", "PREROUTING", "-n").stdout.splitlines() == [
        "Chain PREROUTING (policy ACCEPT)",
        "target     prot opt source               destination         ",
        "TRACE      17   --  0.0.0.0/0            0.0.0.0/0            udp dpt:9000",
    ]
    hit = udp(9000)
    ipt.call(ipt.nf.nf_hook, NF_INET_PRE_ROUTING, hit, 2, 0, lambda s: None)
    assert hit.trace is not None and [s.func for s in hit.trace] == ["nf_hook(PRE_ROUTING)"]
    r = iptables("-A", "INPUT", "-j", "TRACE")
    assert (r.exit_code, r.stderr) == (
        1,
        "iptables: Invalid argument. Run `dmesg' for more information.\n"
        "stackemu: the kernel logged: "
        "x_tables: ip_tables: TRACE target: only valid in raw table, not filter\n",
    )
    r = iptables("-t", "raw", "-A", "PREROUTING", "-j", "TRACE", "--foo")
    assert r.exit_code == 2


def _step(func: str, service: str, host: str, ts: int) -> TraceStep:
    return TraceStep(func, service, host, ts)


UDP_HDRS = bytes.fromhex("4500002800070000401100000a0000010a0000029c409c4000140000")


def test_entries_with_the_same_first_step_are_one_journey_the_longest() -> None:
    a = [_step("udp_sendmsg", "udp", "alice", 1000), _step("ip_send_skb", "ip", "alice", 3000)]
    b = [*a, _step("dev_queue_xmit", "nic", "alice", 4500)]
    other = [_step("napi_gro_receive", "nic", "bob", 500)]
    js = merge([(a[:1], b""), (b, UDP_HDRS), (a, UDP_HDRS), (other, b"")])
    assert [(j.steps, j.headers) for j in js] == [(other, b""), (b, UDP_HDRS)]
    assert timeline(js[1]) == [
        "        +0.0 us  alice  udp  udp_sendmsg",
        "        +2.0 us  alice  ip   ip_send_skb",
        "        +3.5 us  alice  nic  dev_queue_xmit",
    ]
    assert describe(UDP_HDRS) == "UDP 10.0.0.1.40000 > 10.0.0.2.40000, length 12"
    assert describe(b"") == "(headers not seen)"


def test_the_chrome_document() -> None:
    steps = [
        _step("dev_hard_start_xmit", "nic", "alice", 2_000),
        _step("napi_gro_receive", "nic", "bob", 5_000),
        _step("ip_rcv", "ip", "bob", 6_500),
    ]
    (j,) = merge([(steps, UDP_HDRS)])
    flow = "UDP 10.0.0.1.40000 > 10.0.0.2.40000, length 12"
    assert chrome_trace([j]) == {
        "traceEvents": [
            {"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "alice"}},
            {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "nic"}},
            {"name": "process_name", "ph": "M", "pid": 2, "tid": 0, "args": {"name": "bob"}},
            {"name": "thread_name", "ph": "M", "pid": 2, "tid": 1, "args": {"name": "nic"}},
            {"name": "thread_name", "ph": "M", "pid": 2, "tid": 2, "args": {"name": "ip"}},
            {
                "name": "dev_hard_start_xmit",
                "cat": "packet",
                "ts": 0.0,
                "pid": 1,
                "tid": 1,
                "args": {"packet": 1, "flow": flow},
                "ph": "X",
                "dur": 3.0,
            },
            {
                "name": "napi_gro_receive",
                "cat": "packet",
                "ts": 3.0,
                "pid": 2,
                "tid": 1,
                "args": {"packet": 1, "flow": flow},
                "ph": "X",
                "dur": 1.5,
            },
            {
                "name": "ip_rcv",
                "cat": "packet",
                "ts": 4.5,
                "pid": 2,
                "tid": 2,
                "args": {"packet": 1, "flow": flow},
                "ph": "i",
                "s": "t",
            },
        ],
        "displayTimeUnit": "ns",
    }
