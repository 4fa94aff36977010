"""Time NF_HOOK at LOCAL_IN over a filter INPUT chain of 1 rule and of 1,000 rules
(each `-p udp --dport N -j ACCEPT` for a different N), for a packet that hits the last
rule and for one that hits none. With the rule index, 1,000 rules should cost a small
multiple of 1 rule, not 1,000 times it. Exact sources (`-s ADDR`) are indexed too; a
last run uses 1,000 rules with no indexable key (`-s NET/24`) to show what a plain
walk of the chain costs.

    .venv/bin/python scripts/bench_netfilter.py
"""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.core.dropreason import DropStats
from services.core.skbuff import SkBuff, alloc_skb
from services.core.trace import Tracer
from services.core.wire.ipv4 import Ipv4Repr
from services.ip.netfilter import (
    NF_INET_LOCAL_IN,
    IpSpec,
    Netfilter,
    RuleSpec,
    Standard,
    UdpMatch,
)

N = 1000
ROUNDS = 20_000


def packet(dport: int) -> SkBuff:
    udp = struct.pack("!HHHH", 40000, dport, 12, 0) + b"ping"
    hdr = Ipv4Repr(src=0x0A000001, dst=0x0A000002, protocol=17, payload_len=len(udp))
    skb = alloc_skb(20 + len(udp), 64)
    skb.put_data(bytes(20) + udp)
    hdr.emit(memoryview(skb.head)[skb.data : skb.data + 20])
    skb.reset_network_header()
    skb.transport_header = skb.data + 20
    return skb


def netfilter(specs: list[RuleSpec]) -> Netfilter:
    nf = Netfilter(DropStats(), lambda i: "eth0" if i == 2 else "", lambda *a: None, Tracer("ip", "bench"))
    for spec in specs:
        nf.append("filter", "INPUT", spec)
    return nf


def per_packet(nf: Netfilter, skb: SkBuff) -> float:
    done: list[SkBuff] = []
    okfn = done.append
    hook = nf.nf_hook
    hook(NF_INET_LOCAL_IN, skb, 2, 0, okfn)  # builds the index
    t0 = time.perf_counter()
    for _ in range(ROUNDS):
        hook(NF_INET_LOCAL_IN, skb, 2, 0, okfn)
    dt = time.perf_counter() - t0
    assert len(done) == ROUNDS + 1
    return dt / ROUNDS * 1e6


def dport_rule(port: int) -> RuleSpec:
    return RuleSpec(IpSpec(proto=17), (UdpMatch(dpts=(port, port)),), Standard("ACCEPT"))


def src_rule(i: int, mask: int) -> RuleSpec:
    return RuleSpec(IpSpec(src=(0x0B000000 + (i << 8)) & mask, smsk=mask), (), Standard("ACCEPT"))


def main() -> None:
    def row(label: str, us: float, base: float | None = None) -> None:
        ratio = f" ({us / base:.1f}x one rule)" if base else ""
        print(f"{label:<46} {us:8.2f} us/packet{ratio}")

    one = per_packet(netfilter([dport_rule(10000)]), packet(10000))
    row("1 rule (--dport), packet hits it", one)
    nf = netfilter([dport_rule(10000 + i) for i in range(N)])
    row(f"{N} rules (--dport), packet hits the last", per_packet(nf, packet(10000 + N - 1)), one)
    rule = nf.tables["filter"].chains["INPUT"].rules[-1]
    assert rule.pcnt == ROUNDS + 1, rule.pcnt
    row(f"{N} rules (--dport), packet hits none", per_packet(nf, packet(9)), one)
    exact = netfilter([src_rule(i, 0xFFFFFFFF) for i in range(N)])
    row(f"{N} rules (-s ADDR), packet hits none", per_packet(exact, packet(9)), one)
    plain = netfilter([src_rule(i, 0xFFFFFF00) for i in range(N)])
    row(f"{N} rules (-s NET/24: a plain walk), hits none", per_packet(plain, packet(9)), one)


if __name__ == "__main__":
    main()
