"""services/core/trace.py: the step recorder, the ring, the sampling counter, and the
iptables TRACE target that starts a trace mid-way."""

from __future__ import annotations

import pytest

from services.core import errno as E
from services.core.dropreason import DropStats
from services.core.skbuff import SkBuff, alloc_skb
from services.core.sysctl import Sysctl
from services.core.trace import SAMPLE_SYSCTL, TRACE_RING, Tracer, trace_headers
from services.ip.netfilter import (
    NF_INET_LOCAL_IN,
    NF_INET_PRE_ROUTING,
    IpSpec,
    Netfilter,
    NfError,
    RuleSpec,
    TraceTarget,
    UdpMatch,
)
from tests.services.test_netfilter import udp


def funcs(skb: SkBuff) -> list[str]:
    assert skb.trace is not None
    return [s.func for s in skb.trace]


def test_an_untraced_skb_gets_no_steps_and_no_ring_entry() -> None:
    t = Tracer("ip", "alice")
    skb = alloc_skb(10)
    t(skb, "ip_rcv")
    assert skb.trace is None
    assert list(t.ring) == []


def test_the_ring_holds_one_entry_per_service_visit_with_the_steps_after_it() -> None:
    udp_t, ip_t = Tracer("udp", "alice"), Tracer("ip", "alice")
    skb = alloc_skb(10)
    udp_t.begin(skb, "udp_sendmsg")
    ip_t(skb, "ip_send_skb")
    ip_t(skb, "ip_local_out")
    udp_t(skb, "udp_rcv")  # back up through lo: a second visit
    assert [[s.func for s in e.steps] for e in udp_t.ring] == [funcs(skb)] * 2
    assert [e.skb for e in ip_t.ring] == [skb]
    assert funcs(skb) == ["udp_sendmsg", "ip_send_skb", "ip_local_out", "udp_rcv"]
    # The same service on another host is another visit (the wire).
    other = Tracer("udp", "bob")
    other(skb, "udp_rcv")
    assert len(other.ring) == 1


def test_the_ring_is_bounded() -> None:
    t = Tracer("nic", "bob")
    for _ in range(TRACE_RING + 5):
        t.begin(alloc_skb(10), "napi_gro_receive")
    assert len(t.ring) == TRACE_RING
    assert len(t.last(3)) == 3
    assert t.last(3) == list(t.ring)[-3:]


@pytest.mark.parametrize(("n", "k"), [(1, 5), (3, 4), (7, 2)])
def test_sampling_picks_exactly_k_of_n_times_k(n: int, k: int) -> None:
    sysctl = Sysctl()
    t = Tracer("udp", "alice")
    t.follow(sysctl)
    assert t.sample == 0
    sysctl.set(SAMPLE_SYSCTL, str(n))
    picks = [i for i in range(n * k) if t.sample and t.sampled()]
    assert picks == [n * j + n - 1 for j in range(k)]


def test_a_new_sample_rate_restarts_the_count() -> None:
    sysctl = Sysctl()
    t = Tracer("udp", "alice")
    t.follow(sysctl)
    sysctl.set(SAMPLE_SYSCTL, "4")
    assert [t.sampled() for _ in range(3)] == [False] * 3
    sysctl.set(SAMPLE_SYSCTL, "2")
    assert [t.sampled() for _ in range(4)] == [False, True, False, True]
    sysctl.set(SAMPLE_SYSCTL, "0")
    assert t.sample == 0


def test_the_sample_sysctl_takes_what_proc_dointvec_minmax_takes() -> None:
    sysctl = Sysctl()
    assert sysctl.get_str(SAMPLE_SYSCTL) == "0"
    with pytest.raises(OSError) as e:
        sysctl.set(SAMPLE_SYSCTL, "-1")
    assert e.value.errno == E.EINVAL
    sysctl.set(SAMPLE_SYSCTL, "0x10")
    assert sysctl.get_int(SAMPLE_SYSCTL) == 16


def test_headers_are_the_ip_header_and_the_udp_header() -> None:
    skb = udp(9000, b"payload")
    hdr = trace_headers(skb)
    assert len(hdr) == 28
    assert hdr == bytes(skb.head[skb.network_header : skb.network_header + 28])
    assert trace_headers(alloc_skb(10)) == b""


def _nf() -> tuple[Netfilter, Tracer]:
    t = Tracer("ip", "bob")
    return Netfilter(DropStats(), lambda i: "eth0", lambda *a: None, t), t


def test_a_trace_rule_traces_the_packets_it_matches_from_its_hook_on() -> None:
    nf, t = _nf()
    nf.append("raw", "PREROUTING", RuleSpec(IpSpec(proto=17), (UdpMatch(dpts=(9000, 9000)),), TraceTarget()))
    hit, miss = udp(9000), udp(9001)
    out: list[SkBuff] = []
    for skb in (hit, miss):
        nf.nf_hook(NF_INET_PRE_ROUTING, skb, 2, 0, out.append)
        nf.nf_hook(NF_INET_LOCAL_IN, skb, 2, 0, out.append)
    assert out == [hit, hit, miss, miss]  # TRACE is XT_CONTINUE: both go on
    assert funcs(hit) == ["nf_hook(PRE_ROUTING)", "nf_hook(LOCAL_IN)"]
    assert miss.trace is None
    assert [e.skb for e in t.ring] == [hit]
    rule = nf.tables["raw"].chains["PREROUTING"].rules[0]
    assert (rule.pcnt, rule.bcnt) == (1, hit.len)


def test_trace_is_the_raw_tables_only() -> None:
    nf, _ = _nf()
    with pytest.raises(NfError) as e:
        nf.append("filter", "INPUT", RuleSpec(target=TraceTarget()))
    assert e.value.errno == E.EINVAL
    # As 6.18 logs it (iptables-legacy -A INPUT -j TRACE).
    assert e.value.kernel_log == "x_tables: ip_tables: TRACE target: only valid in raw table, not filter"
