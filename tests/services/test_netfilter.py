"""Netfilter in-process: NF_HOOK traversal over raw/mangle/filter, every match and
target, exact per-rule and policy counters, the drop reasons, the table operations'
errno and messages, and the rule index against a plain walk of the same chain."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core import errno as E
from services.core.checksum import csum_partial, ip_fast_csum
from services.core.dropreason import DropStats, SkbDropReason
from services.core.skbuff import CHECKSUM_NONE, CHECKSUM_UNNECESSARY, SkBuff, TraceStep
from services.core.trace import Tracer
from services.core.wire.ipv4 import IP_MF, Ipv4Packet, Ipv4Repr
from services.core.wire.udp import udp_checksum
from services.ip import netfilter as nfmod
from services.ip.netfilter import (
    IPT_F_FRAG,
    IPT_ICMP_ADMIN_PROHIBITED,
    IPT_ICMP_ECHOREPLY,
    IPT_ICMP_HOST_PROHIBITED,
    IPT_ICMP_NET_UNREACHABLE,
    IPT_INV_DSTIP,
    IPT_INV_FRAG,
    IPT_INV_PROTO,
    IPT_INV_SRCIP,
    IPT_INV_VIA_IN,
    IPT_INV_VIA_OUT,
    IPT_TCP_RESET,
    IPT_TTL_DEC,
    IPT_TTL_EQ,
    IPT_TTL_GT,
    IPT_TTL_INC,
    IPT_TTL_LT,
    IPT_TTL_NE,
    IPT_TTL_SET,
    NF_INET_FORWARD,
    NF_INET_LOCAL_IN,
    NF_INET_LOCAL_OUT,
    NF_INET_POST_ROUTING,
    NF_INET_PRE_ROUTING,
    XT_MULTIPORT_DESTINATION,
    XT_MULTIPORT_EITHER,
    XT_MULTIPORT_SOURCE,
    XT_UDP_INV_DSTPT,
    XT_UDP_INV_SRCPT,
    IcmpMatch,
    IpSpec,
    Jump,
    LengthMatch,
    LogTarget,
    MarkMatch,
    MarkTarget,
    MultiportMatch,
    Netfilter,
    NfError,
    NfqueueTarget,
    RejectTarget,
    RuleSpec,
    Standard,
    TcpMatch,
    TosMatch,
    TosTarget,
    TtlMatch,
    TtlTarget,
    UdpMatch,
    csum_replace2,
)

A = 0x0A000001  # 10.0.0.1
B = 0x0A000002  # 10.0.0.2
IFNAMES = {1: "lo", 2: "eth0", 3: "eth1", 4: "veth0"}
MAC = bytes.fromhex("02000a00000202000a0000010800")


def ip_packet(
    protocol: int,
    l4: bytes,
    *,
    src: int = A,
    dst: int = B,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 7,
    frag_off: int = 0,
    options: bytes = b"",
    mac: bool = True,
) -> SkBuff:
    """An skb as ip_rcv leaves it for the hooks: IP header at data, transport header
    set, the Ethernet header in front when mac."""
    hdr = Ipv4Repr(src=src, dst=dst, protocol=protocol, payload_len=len(l4), ttl=ttl, tos=tos, ident=ident)
    if options:
        hdr = Ipv4Repr(
            src=src,
            dst=dst,
            protocol=protocol,
            payload_len=len(l4),
            ttl=ttl,
            tos=tos,
            ident=ident,
            options=options,
        )
    buf = bytearray(hdr.header_len)
    hdr.emit(buf)
    if frag_off:
        pkt = Ipv4Packet(buf)
        pkt.set_frag_off(frag_off)
        pkt.fill_checksum()
    head = bytearray(64) + (MAC if mac else b"") + buf + l4
    skb = SkBuff(head)
    skb.data = 64 + (len(MAC) if mac else 0)
    skb.tail = len(head)
    skb.len = skb.tail - skb.data
    if mac:
        skb.mac_header = 64
    skb.network_header = skb.data
    skb.transport_header = skb.data + hdr.header_len
    skb.protocol = 0x0800
    return skb


def udp(
    dport: int = 9000, payload: bytes = b"keep", *, sport: int = 40000, csum: bool = True, **kw: int
) -> SkBuff:
    src, dst = kw.get("src", A), kw.get("dst", B)
    seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)
    if csum:
        struct.pack_into("!H", seg, 6, udp_checksum(src, dst, seg))
    return ip_packet(17, bytes(seg), **kw)  # type: ignore[arg-type]


def icmp(itype: int, code: int = 0, rest: bytes = b"\0\x01\0\x02", **kw: int) -> SkBuff:
    msg = bytearray(bytes([itype, code, 0, 0]) + rest)
    struct.pack_into("!H", msg, 2, ~csum_partial(msg) & 0xFFFF)
    return ip_packet(1, bytes(msg), **kw)  # type: ignore[arg-type]


def tcp(dport: int, flags: int) -> SkBuff:
    seg = struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    return ip_packet(6, seg)


class Harness:
    def __init__(self) -> None:
        self.drops = DropStats()
        self.icmp: list[tuple[bytes, int, int, int]] = []
        self.out: list[SkBuff] = []
        self.nf = Netfilter(self.drops, lambda i: IFNAMES.get(i, ""), self._icmp_send, Tracer("ip", "alice"))

    def _icmp_send(self, skb: SkBuff, itype: int, code: int, info: int) -> None:
        self.icmp.append((skb.payload(), itype, code, info))

    def hook(self, hook: int, skb: SkBuff, indev: int = 2, outdev: int = 0) -> int:
        return self.nf.nf_hook(hook, skb, indev, outdev, self.out.append)

    def add(self, chain: str, spec: RuleSpec, table: str = "filter") -> None:
        self.nf.append(table, chain, spec)

    def counts(self, chain: str, table: str = "filter") -> list[tuple[int, int]]:
        return [(r.pcnt, r.bcnt) for r in self.nf.tables[table].chains[chain].rules]

    def policy(self, chain: str, table: str = "filter") -> tuple[int, int]:
        c = self.nf.tables[table].chains[chain]
        return (c.pcnt, c.bcnt)

    def dropped(self) -> dict[tuple[str, str], int]:
        return {(r.name, loc): n for (r, loc), n in self.drops.items()}


def udp_rule(dport: int, verdict: str = "ACCEPT") -> RuleSpec:
    return RuleSpec(IpSpec(proto=17), (UdpMatch(dpts=(dport, dport)),), Standard(verdict))


def rule(target: object = None, *matches: object, **ip: object) -> RuleSpec:
    return RuleSpec(IpSpec(**ip), tuple(matches), target)  # type: ignore[arg-type]


@pytest.fixture
def h() -> Harness:
    return Harness()


# Traversal, verdicts, counters.


def test_no_rules_accepts_and_counts_every_policy_on_the_way(h: Harness) -> None:
    skb = udp()
    n = skb.len
    assert h.hook(NF_INET_LOCAL_IN, skb) == 0
    assert h.out == [skb]
    assert h.policy("INPUT") == (1, n)
    assert h.policy("INPUT", "mangle") == (1, n)
    assert h.policy("OUTPUT") == (0, 0)
    assert h.drops.total() == 0
    h.hook(NF_INET_PRE_ROUTING, udp())
    assert h.policy("PREROUTING", "raw") == (1, n)
    assert h.policy("PREROUTING", "mangle") == (1, n)


def test_drop_frees_the_skb_under_netfilter_drop_and_returns_eperm(h: Harness) -> None:
    h.add("INPUT", udp_rule(9000, "DROP"))
    skb = udp(9000)
    assert h.hook(NF_INET_LOCAL_IN, skb) == -E.EPERM
    assert h.out == []
    assert h.dropped() == {("NETFILTER_DROP", "nf_hook_slow"): 1}
    assert h.counts("INPUT") == [(1, skb.len)]
    assert h.policy("INPUT") == (0, 0)
    # The mangle table ran first and let it through.
    assert h.policy("INPUT", "mangle") == (1, skb.len)


def test_first_match_wins_and_only_matching_rules_count(h: Harness) -> None:
    h.add("INPUT", udp_rule(9000, "ACCEPT"))
    h.add("INPUT", rule(Standard("DROP"), proto=17))
    h.add("INPUT", rule(Standard("ACCEPT")))
    a, b = udp(9000), udp(9001, b"dropped!")
    h.hook(NF_INET_LOCAL_IN, a)
    h.hook(NF_INET_LOCAL_IN, b)
    h.hook(NF_INET_LOCAL_IN, icmp(8))
    assert h.out[0] is a and len(h.out) == 2
    assert h.counts("INPUT") == [(1, a.len), (1, b.len), (1, 28)]
    assert h.policy("INPUT") == (0, 0)


def test_policy_drop(h: Harness) -> None:
    h.nf.set_policy("filter", "INPUT", "DROP")
    h.add("INPUT", udp_rule(9000))
    h.hook(NF_INET_LOCAL_IN, udp(9000))
    assert h.hook(NF_INET_LOCAL_IN, udp(53)) == -E.EPERM
    assert len(h.out) == 1
    assert h.policy("INPUT")[0] == 1
    assert h.dropped() == {("NETFILTER_DROP", "nf_hook_slow"): 1}


def test_a_rule_without_target_only_counts(h: Harness) -> None:
    h.add("OUTPUT", rule(None))
    h.add("OUTPUT", rule(None))
    skb = udp()
    h.hook(NF_INET_LOCAL_OUT, skb, indev=0, outdev=2)
    assert h.counts("OUTPUT") == [(1, skb.len), (1, skb.len)]
    assert h.policy("OUTPUT") == (1, skb.len)
    assert h.out == [skb]


def test_tables_run_in_priority_order_raw_mangle_filter(h: Harness) -> None:
    # mangle marks, filter matches the mark; raw (earlier) drops port 7.
    h.add("PREROUTING", udp_rule(7, "DROP"), "raw")
    h.add("PREROUTING", rule(MarkTarget(0x5, 0xFFFFFFFF)), "mangle")
    h.add("INPUT", rule(Standard("DROP"), MarkMatch(0x5)))
    skb = udp(7)
    h.hook(NF_INET_PRE_ROUTING, skb)
    assert h.counts("PREROUTING", "mangle") == [(0, 0)]
    assert skb.mark == 0
    skb = udp(8)
    h.hook(NF_INET_PRE_ROUTING, skb)
    assert skb.mark == 5 and h.out == [skb]
    h.out.clear()
    h.hook(NF_INET_LOCAL_IN, skb)
    assert h.out == [] and h.counts("INPUT") == [(1, skb.len)]


def test_user_chains_jump_return_and_fall_off_the_end(h: Harness) -> None:
    nf = h.nf
    nf.new_chain("filter", "udp-in")
    nf.new_chain("filter", "deep")
    h.add("INPUT", rule(Jump("udp-in"), proto=17))
    h.add("INPUT", rule(Standard("DROP")))
    h.add("udp-in", udp_rule(53, "RETURN"))
    h.add("udp-in", rule(Jump("deep")))
    h.add("udp-in", udp_rule(9000, "ACCEPT"))
    h.add("deep", udp_rule(9001, "ACCEPT"))
    # 53: RETURN to INPUT, then DROP. 9000: through deep, back, ACCEPT. 9001: in deep.
    # 9002: off the end of deep and of udp-in, then INPUT's DROP.
    for port in (53, 9000, 9001, 9002):
        h.hook(NF_INET_LOCAL_IN, udp(port))
    n = udp().len
    assert [s.payload()[22] << 8 | s.payload()[23] for s in h.out] == [9000, 9001]
    assert h.counts("INPUT") == [(4, 4 * n), (2, 2 * n)]
    assert h.counts("udp-in") == [(1, n), (3, 3 * n), (1, n)]
    assert h.counts("deep") == [(1, n)]
    assert nf.tables["filter"].references(nf.tables["filter"].chains["udp-in"]) == 1


def test_goto_does_not_come_back_and_return_from_the_base_chain_is_the_policy(h: Harness) -> None:
    nf = h.nf
    nf.new_chain("filter", "g")
    h.add("INPUT", rule(Jump("g", goto=True)))
    h.add("INPUT", rule(Standard("DROP")))
    h.add("g", udp_rule(1, "RETURN"))
    skb = udp(1)
    h.hook(NF_INET_LOCAL_IN, skb)
    h.hook(NF_INET_LOCAL_IN, udp(2))
    # RETURN (and falling off g) ends at INPUT's policy, never at the DROP after -g.
    assert len(h.out) == 2
    assert h.counts("INPUT") == [(2, 2 * skb.len), (0, 0)]
    assert h.policy("INPUT") == (2, 2 * skb.len)
    nf.flush("filter", "INPUT")
    h.add("INPUT", rule(Standard("RETURN")))
    h.add("INPUT", rule(Standard("DROP")))
    h.hook(NF_INET_LOCAL_IN, udp(3))
    assert len(h.out) == 3 and h.policy("INPUT")[0] == 3


# Matches.


@pytest.mark.parametrize(
    ("spec", "hits"),
    [
        (IpSpec(src=A, smsk=0xFFFFFFFF), [True, False]),
        (IpSpec(src=0x0A000000, smsk=0xFFFFFF00), [True, False]),
        (IpSpec(src=A, smsk=0xFFFFFFFF, invflags=IPT_INV_SRCIP), [False, True]),
        (IpSpec(dst=B, dmsk=0xFFFFFFFF), [True, True]),
        (IpSpec(dst=B, dmsk=0xFFFFFFFF, invflags=IPT_INV_DSTIP), [False, False]),
        (IpSpec(proto=17), [True, True]),
        (IpSpec(proto=17, invflags=IPT_INV_PROTO), [False, False]),
        (IpSpec(iniface="eth0"), [True, False]),
        (IpSpec(iniface="eth+"), [True, True]),
        (IpSpec(iniface="eth+", invflags=IPT_INV_VIA_IN), [False, False]),
        (IpSpec(iniface="+"), [True, True]),
        (IpSpec(iniface="eth"), [False, False]),
        (IpSpec(outiface="eth0"), [False, False]),
        (IpSpec(outiface="eth0", invflags=IPT_INV_VIA_OUT), [True, True]),
    ],
)
def test_ip_part(spec: IpSpec, hits: list[bool]) -> None:
    # Packet 1 from 10.0.0.1 in on eth0, packet 2 from 10.9.9.9 in on eth1.
    h = Harness()
    h.add("INPUT", RuleSpec(spec, (), Standard("DROP")))
    h.hook(NF_INET_LOCAL_IN, udp(), indev=2)
    h.hook(NF_INET_LOCAL_IN, udp(src=0x0A090909), indev=3)
    assert h.counts("INPUT")[0][0] == sum(hits)
    assert len(h.out) == 2 - sum(hits)


def test_fragment_flag_and_port_matches_on_fragments(h: Harness) -> None:
    first = udp(9000, frag_off=IP_MF)
    later = udp(9000, frag_off=185)  # offset 1480
    h.add("INPUT", RuleSpec(IpSpec(flags=IPT_F_FRAG), (), None))
    h.add("INPUT", RuleSpec(IpSpec(flags=IPT_F_FRAG, invflags=IPT_INV_FRAG), (), None))
    h.add("INPUT", udp_rule(9000, "ACCEPT"))
    for skb in (first, later):
        h.hook(NF_INET_LOCAL_IN, skb)
    # -f sees only the non-first fragment, ! -f the first; udp never matches a later
    # fragment (no header to read), so the policy takes it.
    assert [c[0] for c in h.counts("INPUT")] == [1, 1, 1]
    assert h.policy("INPUT")[0] == 1


def test_a_truncated_transport_header_drops_the_packet_at_the_port_match(h: Harness) -> None:
    h.add("INPUT", rule(None))
    h.add("INPUT", udp_rule(9000))
    short = ip_packet(17, b"\x9c\x40\x23")  # 3 bytes of UDP header
    assert h.hook(NF_INET_LOCAL_IN, short) == -E.EPERM
    assert h.counts("INPUT") == [(1, short.len), (0, 0)]
    assert h.dropped() == {("NETFILTER_DROP", "nf_hook_slow"): 1}


def test_port_ranges_and_inversion(h: Harness) -> None:
    h.add("INPUT", RuleSpec(IpSpec(proto=17), (UdpMatch(dpts=(1000, 2000)),), None))
    h.add("INPUT", RuleSpec(IpSpec(proto=17), (UdpMatch(spts=(53, 54), invflags=XT_UDP_INV_SRCPT),), None))
    h.add(
        "INPUT", RuleSpec(IpSpec(proto=17), (UdpMatch(dpts=(1000, 1000), invflags=XT_UDP_INV_DSTPT),), None)
    )
    for sport, dport in ((53, 1000), (40000, 999), (54, 2000), (55, 2001)):
        h.hook(NF_INET_LOCAL_IN, udp(dport, sport=sport))
    assert [c[0] for c in h.counts("INPUT")] == [2, 2, 3]


def test_tcp_flags_and_icmp_types(h: Harness) -> None:
    h.add("INPUT", RuleSpec(IpSpec(proto=6), (TcpMatch(dpts=(80, 80), flg_mask=0x17, flg_cmp=0x02),), None))
    h.add("INPUT", RuleSpec(IpSpec(proto=1), (IcmpMatch(8, (0, 0xFF)),), None))
    h.add("INPUT", RuleSpec(IpSpec(proto=1), (IcmpMatch(3, (4, 4)),), None))
    h.add("INPUT", RuleSpec(IpSpec(proto=1), (IcmpMatch(0xFF, (0, 0xFF)),), None))
    h.add("INPUT", RuleSpec(IpSpec(proto=1), (IcmpMatch(8, (0, 0xFF), invflags=1),), None))
    for skb in (tcp(80, 0x02), tcp(80, 0x12), tcp(81, 0x02), icmp(8), icmp(3, 4), icmp(3, 3)):
        h.hook(NF_INET_LOCAL_IN, skb)
    assert [c[0] for c in h.counts("INPUT")] == [1, 1, 1, 3, 2]


def test_multiport(h: Harness) -> None:
    ranges = ((53, 53), (1000, 1002))
    h.add("INPUT", RuleSpec(IpSpec(proto=17), (MultiportMatch(XT_MULTIPORT_DESTINATION, ranges),), None))
    h.add("INPUT", RuleSpec(IpSpec(proto=17), (MultiportMatch(XT_MULTIPORT_SOURCE, ranges),), None))
    h.add("INPUT", RuleSpec(IpSpec(proto=17), (MultiportMatch(XT_MULTIPORT_EITHER, ranges, True),), None))
    for sport, dport in ((53, 1001), (1000, 9), (9, 9)):
        h.hook(NF_INET_LOCAL_IN, udp(dport, sport=sport))
    assert [c[0] for c in h.counts("INPUT")] == [1, 2, 1]


def test_mark_tos_ttl_length(h: Harness) -> None:
    h.add("INPUT", rule(None, MarkMatch(0x1, 0xFF)))
    h.add("INPUT", rule(None, MarkMatch(0x1, 0xFF, True)))
    h.add("INPUT", rule(None, TosMatch(0x10, 0x3F)))
    h.add("INPUT", rule(None, TtlMatch(IPT_TTL_EQ, 64)))
    h.add("INPUT", rule(None, TtlMatch(IPT_TTL_NE, 64)))
    h.add("INPUT", rule(None, TtlMatch(IPT_TTL_LT, 10)))
    h.add("INPUT", rule(None, TtlMatch(IPT_TTL_GT, 10)))
    h.add("INPUT", rule(None, LengthMatch(0, 40)))
    h.add("INPUT", rule(None, LengthMatch(0, 40, True)))
    a = udp(tos=0x10)
    a.mark = 0x301
    b = udp(payload=b"x" * 100, ttl=5, tos=0x50)
    h.hook(NF_INET_LOCAL_IN, a)
    h.hook(NF_INET_LOCAL_IN, b)
    assert [c[0] for c in h.counts("INPUT")] == [1, 1, 2, 1, 1, 1, 1, 1, 1]


# Targets.


def test_mark_target_is_and_not_mask_xor_mark(h: Harness) -> None:
    h.add("PREROUTING", rule(MarkTarget(0x5, 0xFF)), "mangle")
    skb = udp()
    skb.mark = 0x1234
    h.hook(NF_INET_PRE_ROUTING, skb)
    assert skb.mark == 0x1205
    h.nf.replace("mangle", "PREROUTING", 1, rule(MarkTarget(0, ~0xF0 & 0xFFFFFFFF)))  # --and-mark 0xf0
    h.hook(NF_INET_PRE_ROUTING, skb)
    assert skb.mark == 0x0000
    h.nf.replace("mangle", "PREROUTING", 1, rule(MarkTarget(0x3, 0)))  # --xor-mark 3
    skb.mark = 0x5
    h.hook(NF_INET_PRE_ROUTING, skb)
    assert skb.mark == 0x6


@pytest.mark.parametrize(
    ("mode", "value", "before", "after"),
    [
        (IPT_TTL_SET, 5, 64, 5),
        (IPT_TTL_INC, 10, 250, 255),
        (IPT_TTL_DEC, 10, 5, 0),
        (IPT_TTL_DEC, 1, 64, 63),
        (IPT_TTL_SET, 64, 64, 64),
    ],
)
def test_ttl_target_keeps_the_header_checksum_right(mode: int, value: int, before: int, after: int) -> None:
    h = Harness()
    h.add("FORWARD", rule(TtlTarget(mode, value)), "mangle")
    skb = udp(ttl=before)
    old = bytes(skb.linear()[:20])
    h.hook(NF_INET_FORWARD, skb, indev=2, outdev=3)
    hdr = bytes(skb.linear()[:20])
    assert hdr[8] == after
    assert ip_fast_csum(hdr) == 0
    assert hdr[:8] + hdr[9:10] + hdr[12:] == old[:8] + old[9:10] + old[12:]


def test_csum_replace2_agrees_with_a_full_recompute() -> None:
    skb = udp(ttl=64)
    hdr = bytearray(skb.linear()[:20])
    check = hdr[10] << 8 | hdr[11]
    new = csum_replace2(check, 64 << 8 | 17, 1 << 8 | 17)
    hdr[8], hdr[10], hdr[11] = 1, 0, 0
    assert new == ip_fast_csum(hdr)


def test_tos_target_and_checksum(h: Harness) -> None:
    h.add("OUTPUT", rule(TosTarget(0x10, 0x3F)), "mangle")
    skb = udp(tos=0xE3)
    h.hook(NF_INET_LOCAL_OUT, skb, indev=0, outdev=2)
    hdr = bytes(skb.linear()[:20])
    assert hdr[1] == (0xE3 & ~0x3F & 0xFF) ^ 0x10
    assert ip_fast_csum(hdr) == 0


def test_ttl_and_tos_targets_belong_to_mangle(h: Harness) -> None:
    with pytest.raises(NfError) as e:
        h.add("INPUT", rule(TtlTarget(IPT_TTL_SET, 3)))
    assert (e.value.errno, e.value.message) == (E.EINVAL, "Invalid argument")
    assert e.value.kernel_log == "x_tables: ip_tables: TTL target: only valid in mangle table, not filter"
    assert h.nf.log[-1].text == e.value.kernel_log and h.nf.log[-1].level == 6
    with pytest.raises(NfError):
        h.add("INPUT", rule(TosTarget(0, 0xFF)))
    with pytest.raises(NfError) as e:
        h.add("INPUT", rule(RejectTarget()), "mangle")
    assert e.value.kernel_log == "x_tables: ip_tables: REJECT target: only valid in filter table, not mangle"
    with pytest.raises(NfError):
        h.add("OUTPUT", rule(TtlTarget(IPT_TTL_DEC, 0)), "mangle")


def test_log_target_writes_the_kernels_line_and_continues(h: Harness) -> None:
    h.add("INPUT", rule(LogTarget(4, 0, "in: ")))
    h.add("INPUT", rule(LogTarget(7, 0x20, "")))
    skb = udp(9000, b"keep", ident=0x1234)
    skb.mark = 0x2A
    skb.trace = []
    h.hook(NF_INET_LOCAL_IN, skb)
    assert h.out == [skb]
    first, second = h.nf.log
    assert first.level == 4
    assert first.text == (
        "in: IN=eth0 OUT= MAC=02:00:0a:00:00:02:02:00:0a:00:00:01:08:00 SRC=10.0.0.1 DST=10.0.0.2 "
        "LEN=32 TOS=0x00 PREC=0x00 TTL=64 ID=4660 PROTO=UDP SPT=40000 DPT=9000 LEN=12 MARK=0x2a "
    )
    assert second.text.startswith(
        "IN=eth0 OUT= MACSRC=02:00:0a:00:00:01 MACDST=02:00:0a:00:00:02 MACPROTO=0800 SRC="
    )
    assert [t.func for t in skb.trace][:2] == ["nf_hook(LOCAL_IN)", "nf_log_packet " + first.text.strip()]


def test_log_line_for_output_fragments_and_icmp(h: Harness) -> None:
    h.add("OUTPUT", rule(LogTarget()))
    h.hook(NF_INET_LOCAL_OUT, udp(frag_off=IP_MF | 0x4000 | 3, ttl=1), indev=0, outdev=3)
    h.hook(NF_INET_LOCAL_OUT, icmp(8, rest=b"\x00\x2a\x00\x01"), indev=0, outdev=3)
    assert h.nf.log[0].text == (
        "IN= OUT=eth1 SRC=10.0.0.1 DST=10.0.0.2 LEN=32 TOS=0x00 PREC=0x00 TTL=1 ID=7 DF MF FRAG:3 PROTO=UDP "
    )
    assert h.nf.log[1].text.endswith("PROTO=ICMP TYPE=8 CODE=0 ID=42 SEQ=1 ")


def test_the_log_is_bounded(h: Harness) -> None:
    h.add("INPUT", rule(LogTarget()))
    for _ in range(nfmod.NF_LOG_MAX + 5):
        h.hook(NF_INET_LOCAL_IN, udp())
    assert len(h.nf.log) == nfmod.NF_LOG_MAX


@pytest.mark.parametrize(
    ("with_", "code"),
    [
        (nfmod.IPT_ICMP_PORT_UNREACHABLE, 3),
        (IPT_ICMP_NET_UNREACHABLE, 0),
        (nfmod.IPT_ICMP_HOST_UNREACHABLE, 1),
        (nfmod.IPT_ICMP_PROT_UNREACHABLE, 2),
        (nfmod.IPT_ICMP_NET_PROHIBITED, 9),
        (IPT_ICMP_HOST_PROHIBITED, 10),
        (IPT_ICMP_ADMIN_PROHIBITED, 13),
    ],
)
def test_reject_sends_the_icmp_error_then_drops(with_: int, code: int) -> None:
    h = Harness()
    h.add("INPUT", udp_rule(9000, "ACCEPT"))
    h.add("INPUT", RuleSpec(IpSpec(proto=17), (), RejectTarget(with_)))
    skb = udp(9001)
    original = skb.payload()
    assert h.hook(NF_INET_LOCAL_IN, skb) == -E.EPERM
    assert h.icmp == [(original, 3, code, 0)]
    assert h.out == []
    assert h.dropped() == {("NETFILTER_DROP", "nf_hook_slow"): 1}


def test_reject_is_silent_about_bad_checksums_and_later_fragments(h: Harness) -> None:
    h.add("INPUT", rule(RejectTarget()))
    bad = udp(9000)
    bad.head[-1] ^= 0xFF  # the payload no longer sums to the checksum
    h.hook(NF_INET_LOCAL_IN, bad)
    h.hook(NF_INET_LOCAL_IN, udp(9000, frag_off=100))
    assert h.icmp == []
    # Checked by the NIC already, or no UDP checksum at all: the error goes.
    ok = udp(9000)
    ok.head[-1] ^= 0xFF
    ok.ip_summed = CHECKSUM_UNNECESSARY
    h.hook(NF_INET_LOCAL_IN, ok)
    h.hook(NF_INET_LOCAL_IN, udp(9000, csum=False))
    assert len(h.icmp) == 2
    assert h.drops.get(SkbDropReason.NETFILTER_DROP) == 4


def test_reject_options_the_kernel_refuses(h: Harness) -> None:
    with pytest.raises(NfError) as e:
        h.add("INPUT", rule(RejectTarget(IPT_ICMP_ECHOREPLY)))
    assert e.value.errno == E.EINVAL
    with pytest.raises(NfError) as e:
        h.add("INPUT", rule(RejectTarget(IPT_TCP_RESET), proto=17))
    assert e.value.kernel_log == "TCP_RESET invalid for non-tcp"
    with pytest.raises(NfError) as e:
        h.add("INPUT", rule(RejectTarget(IPT_TCP_RESET), proto=6))
    assert e.value.errno == E.EOPNOTSUPP and "no TCP" in e.value.message


def test_trace_steps_name_the_hook(h: Harness) -> None:
    skb = udp()
    skb.trace = []
    h.hook(NF_INET_POST_ROUTING, skb, indev=0, outdev=2)
    assert [t.func for t in skb.trace] == ["nf_hook(POST_ROUTING)"]
    assert isinstance(skb.trace[0], TraceStep)


# The table operations: what libiptc and the kernel answer.


def err(f: Callable[[], object]) -> tuple[int, str]:
    with pytest.raises(NfError) as e:
        f()
    return e.value.errno, e.value.message


def test_rule_operations_and_their_errors(h: Harness) -> None:
    nf = h.nf
    a, b, c = udp_rule(1), udp_rule(2), udp_rule(3)
    nf.append("", "INPUT", a)
    nf.insert("filter", "INPUT", 1, b)
    nf.insert("filter", "INPUT", 3, c)
    assert [r.spec for r in nf.tables["filter"].chains["INPUT"].rules] == [b, a, c]
    assert err(lambda: nf.insert("filter", "INPUT", 5, c)) == (E.E2BIG, "Index of insertion too big")
    assert err(lambda: nf.replace("filter", "INPUT", 4, c)) == (E.E2BIG, "Index of replacement too big")
    assert err(lambda: nf.delete_num("filter", "INPUT", 4)) == (E.E2BIG, "Index of deletion too big")
    assert err(lambda: nf.zero("filter", "INPUT", 4)) == (E.E2BIG, "Index of counter too big")
    missing = (E.ENOENT, "Bad rule (does a matching rule exist in that chain?)")
    assert err(lambda: nf.delete("filter", "INPUT", udp_rule(4))) == missing
    assert err(lambda: nf.check("filter", "INPUT", udp_rule(4))) == missing
    nf.check("filter", "INPUT", a)
    nf.delete("filter", "INPUT", a)
    nf.delete_num("filter", "INPUT", 1)
    nf.replace("filter", "INPUT", 1, a, (7, 700))
    assert h.counts("INPUT") == [(7, 700)]
    assert err(lambda: nf.append("filter", "nope", a)) == (E.ENOENT, "No chain/target/match by that name")
    assert err(lambda: nf.append("nat", "INPUT", a))[0] == E.ENOENT
    with pytest.raises(NfError) as e:
        nf.table("nat")
    assert e.value.message == "Table does not exist (do you need to insmod?)"
    assert "nat table is not built" in e.value.kernel_log


def test_chain_operations_and_their_errors(h: Harness) -> None:
    nf = h.nf
    nf.new_chain("filter", "b")
    nf.new_chain("filter", "a")
    assert err(lambda: nf.new_chain("filter", "a")) == (E.EEXIST, "Chain already exists")
    assert err(lambda: nf.new_chain("filter", "INPUT")) == (E.EEXIST, "Chain already exists")
    assert err(lambda: nf.new_chain("filter", "ACCEPT")) == (E.EEXIST, "Chain already exists")
    assert [c.name for c in nf.tables["filter"].ordered_chains()] == ["INPUT", "FORWARD", "OUTPUT", "a", "b"]
    h.add("INPUT", rule(Jump("a")))
    h.add("b", rule(Standard("ACCEPT")))
    assert err(lambda: nf.delete_chain("filter", "a")) == (E.EMLINK, "Too many links")
    assert err(lambda: nf.delete_chain("filter", "b")) == (E.ENOTEMPTY, "Directory not empty")
    assert err(lambda: nf.delete_chain("filter", "INPUT")) == (E.EINVAL, "Invalid argument")
    assert err(lambda: nf.delete_chain("filter", "zz")) == (E.ENOENT, "No chain/target/match by that name")
    # -X without a chain: all or nothing.
    assert err(lambda: nf.delete_chain("filter"))[0] in (E.EMLINK, E.ENOTEMPTY)
    assert set(nf.tables["filter"].chains) == {"INPUT", "FORWARD", "OUTPUT", "a", "b"}
    nf.rename_chain("filter", "a", "c")
    assert nf.tables["filter"].chains["INPUT"].rules[0].spec.target == Jump("c")
    assert err(lambda: nf.rename_chain("filter", "c", "b")) == (E.EEXIST, "File exists")
    assert err(lambda: nf.rename_chain("filter", "INPUT", "x")) == (
        E.ENOENT,
        "No chain/target/match by that name",
    )
    h.hook(NF_INET_LOCAL_IN, udp())
    assert h.counts("INPUT") == [(1, udp().len)]
    assert nf.flush("filter") == ["INPUT", "FORWARD", "OUTPUT", "b", "c"]
    assert nf.delete_chain("filter") == ["b", "c"]
    assert err(lambda: nf.set_policy("filter", "nope", "DROP")) == (E.ENOENT, "Bad built-in chain name")
    assert err(lambda: nf.set_policy("filter", "INPUT", "RETURN")) == (E.EINVAL, "Bad policy name")


def test_jumps_the_kernel_refuses(h: Harness) -> None:
    nf = h.nf
    nf.new_chain("filter", "x")
    nf.new_chain("filter", "y")
    assert err(lambda: h.add("x", rule(Jump("INPUT")))) == (E.EINVAL, "Invalid argument")
    assert err(lambda: h.add("x", rule(Jump("nope"))))[0] == E.ENOENT
    # A loop no hook reaches is accepted (mark_source_chains starts at the hooks)...
    h.add("x", rule(Jump("y")))
    h.add("y", rule(Jump("x")))
    # ... and refused, with nothing changed, once a hook reaches it.
    assert err(lambda: h.add("INPUT", rule(Jump("x")))) == (E.ELOOP, "Too many levels of symbolic links")
    assert nf.tables["filter"].chains["INPUT"].rules == []
    nf.flush("filter", "y")
    h.add("INPUT", rule(Jump("x")))
    assert err(lambda: nf.insert("filter", "y", 1, rule(Jump("x", goto=True))))[0] == E.ELOOP
    assert nf.tables["filter"].chains["y"].rules == []


def test_match_protocol_checks(h: Harness) -> None:
    with pytest.raises(NfError) as e:
        h.add("INPUT", RuleSpec(IpSpec(), (UdpMatch(dpts=(5, 5)),), None))
    assert e.value.kernel_log == "x_tables: ip_tables: udp match: only valid for protocol 17"
    with pytest.raises(NfError):
        h.add("INPUT", RuleSpec(IpSpec(proto=17, invflags=IPT_INV_PROTO), (UdpMatch(),), None))
    with pytest.raises(NfError):
        h.add("INPUT", RuleSpec(IpSpec(proto=1), (MultiportMatch(0, ((1, 1),)),), None))
    with pytest.raises(NfError):
        ports = tuple((i, i + 1) for i in range(8))  # 16 ports
        h.add("INPUT", RuleSpec(IpSpec(proto=17), (MultiportMatch(0, ports),), None))
    with pytest.raises(NfError) as e:
        h.add("INPUT", rule(NfqueueTarget(65535, 2)))
    assert e.value.errno == E.ERANGE
    with pytest.raises(NfError):
        h.add("INPUT", rule(LogTarget(level=8)))
    with pytest.raises(NfError):
        h.add("INPUT", rule(LogTarget(prefix="x" * 30)))


def test_zero_and_policy_counters(h: Harness) -> None:
    h.add("INPUT", rule(None))
    for _ in range(3):
        h.hook(NF_INET_LOCAL_IN, udp())
    h.nf.zero("filter", "INPUT", 1)
    assert h.counts("INPUT") == [(0, 0)] and h.policy("INPUT")[0] == 3
    h.hook(NF_INET_LOCAL_IN, udp())
    h.nf.zero("filter")
    assert h.counts("INPUT") == [(0, 0)] and h.policy("INPUT") == (0, 0)
    assert h.policy("INPUT", "mangle") == (4, 4 * udp().len)
    h.nf.set_policy("filter", "INPUT", "ACCEPT", (5, 6))
    assert h.policy("INPUT") == (5, 6)


def test_the_rule_limit(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nfmod, "NF_MAX_RULES", 3)
    for _ in range(3):
        h.add("INPUT", rule(None))
    assert err(lambda: h.add("OUTPUT", rule(None))) == (E.ENOMEM, "Memory allocation problem")


# The index: the same verdicts and counters as a walk of every rule.

_PORTS = st.integers(9000, 9003)
_ADDRS = st.sampled_from([A, B, 0x0A000003])


@st.composite
def _rules(draw: st.DrawFn) -> RuleSpec:
    kind = draw(st.sampled_from(["dport", "ndport", "daddr", "saddr", "plain", "proto", "mark"]))
    target = draw(st.sampled_from([Standard("ACCEPT"), Standard("DROP"), None, MarkTarget(1, 0xFFFFFFFF)]))
    if kind == "dport":
        return RuleSpec(IpSpec(proto=17), (UdpMatch(dpts=(draw(_PORTS),) * 2),), target)
    if kind == "ndport":
        return RuleSpec(
            IpSpec(proto=17), (UdpMatch(dpts=(draw(_PORTS),) * 2, invflags=XT_UDP_INV_DSTPT),), target
        )
    if kind == "daddr":
        return RuleSpec(IpSpec(dst=draw(_ADDRS), dmsk=0xFFFFFFFF), (), target)
    if kind == "saddr":
        return RuleSpec(IpSpec(src=draw(_ADDRS), smsk=0xFFFFFFFF, proto=17), (UdpMatch(),), target)
    if kind == "proto":
        return RuleSpec(IpSpec(proto=draw(st.sampled_from([1, 17]))), (), target)
    if kind == "mark":
        return RuleSpec(IpSpec(), (MarkMatch(1),), target)
    return RuleSpec(IpSpec(), (), target)


@settings(max_examples=60, deadline=None)
@given(
    specs=st.lists(_rules(), min_size=9, max_size=40),
    packets=st.lists(st.tuples(_PORTS, _ADDRS, _ADDRS, st.booleans()), min_size=1, max_size=20),
)
def test_the_index_gives_the_same_answers_as_walking_every_rule(
    specs: list[RuleSpec], packets: list[tuple[int, int, int, bool]]
) -> None:
    indexed, plain = Harness(), Harness()
    for spec in specs:
        indexed.add("INPUT", spec)
        plain.add("INPUT", spec)
    plain.nf.tables["filter"].chains["INPUT"]._reindex()
    plain.nf.tables["filter"].chains["INPUT"]._indexed = False
    for dport, src, dst, is_icmp in packets:
        for hx in (indexed, plain):
            skb = icmp(8, src=src, dst=dst) if is_icmp else udp(dport, src=src, dst=dst)
            hx.hook(NF_INET_LOCAL_IN, skb)
    chain = indexed.nf.tables["filter"].chains["INPUT"]
    assert chain._indexed == any(r.index_key is not None for r in chain.rules)
    assert indexed.counts("INPUT") == plain.counts("INPUT")
    assert indexed.policy("INPUT") == plain.policy("INPUT")
    assert [s.mark for s in indexed.out] == [s.mark for s in plain.out]
    assert indexed.drops.total() == plain.drops.total()


def test_an_edit_reindexes(h: Harness) -> None:
    for port in range(20):
        h.add("INPUT", udp_rule(port, "DROP"))
    h.hook(NF_INET_LOCAL_IN, udp(5))
    h.nf.insert("filter", "INPUT", 1, udp_rule(5, "ACCEPT"))
    h.hook(NF_INET_LOCAL_IN, udp(5))
    assert len(h.out) == 1
    counts = h.counts("INPUT")
    assert counts[0][0] == 1 and counts[6][0] == 1
    h.nf.delete_num("filter", "INPUT", 1)
    h.hook(NF_INET_LOCAL_IN, udp(5))
    assert h.counts("INPUT")[5][0] == 2


def test_skb_without_a_whole_header_does_not_crash(h: Harness) -> None:
    h.add("INPUT", rule(None, proto=17))
    skb = SkBuff(bytearray(10))
    skb.tail = skb.len = 10
    skb.ip_summed = CHECKSUM_NONE
    h.hook(NF_INET_LOCAL_IN, skb)
    assert h.policy("INPUT")[0] == 1
