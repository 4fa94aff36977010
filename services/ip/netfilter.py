"""Netfilter for IPv4 as iptables drives it: the x_tables tables raw, mangle and filter,
their chains and rules with per-rule counters, NF_HOOK traversal (nf_hook_slow →
ipt_do_table), the verdicts, and the NFQUEUE hand-off to services/ip/nfqueue.py.

The layer above gRPC calls `Netfilter.nf_hook` at the five NF_INET_* hooks with the IP
header at skb.data; the control plane (nf_servicer.py) edits the tables through the
methods that mirror libiptc's (append, insert, delete, ...), which raise NfError with the
errno and message iptables would print. Rules are kept as immutable specs (what
`iptables -S` prints back) compiled into match closures. nat is not built: there is no
connection tracking in this stack.

A chain evaluates in rule order with exact counters, but not every rule is looked at: a
chain of more than a few rules indexes them by (protocol, exact destination port), else
by exact destination address, else by exact source address, and a packet walks only the
rules whose key it carries, merged in rule order with the rules that have no key
(Chain.candidates). A rule skipped that way is one that could not have matched.
"""

from __future__ import annotations

import heapq
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Final

from services.core import errno as E
from services.core.checksum import csum_partial, csum_tcpudp_nofold
from services.core.dropreason import DropStats, SkbDropReason
from services.core.skbuff import (
    CHECKSUM_PARTIAL,
    CHECKSUM_UNNECESSARY,
    HEADER_UNSET,
    SkBuff,
)
from services.core.trace import Tracer
from services.core.wire.icmp import ICMP_DEST_UNREACH
from services.core.wire.ipv4 import IP_CE, IP_DF, IP_MF, IP_OFFSET, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP
from services.ip.nfqueue import NfQueue, QueueEntry

# include/uapi/linux/netfilter.h: hooks and verdicts.
NF_INET_PRE_ROUTING: Final = 0
NF_INET_LOCAL_IN: Final = 1
NF_INET_FORWARD: Final = 2
NF_INET_LOCAL_OUT: Final = 3
NF_INET_POST_ROUTING: Final = 4
NF_INET_NUMHOOKS: Final = 5
HOOK_NAMES: Final = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")

NF_DROP: Final = 0
NF_ACCEPT: Final = 1
NF_STOLEN: Final = 2
NF_QUEUE: Final = 3
NF_REPEAT: Final = 4
NF_STOP: Final = 5
NF_MAX_VERDICT: Final = NF_STOP
NF_VERDICT_MASK: Final = 0x000000FF
NF_VERDICT_FLAG_QUEUE_BYPASS: Final = 0x00008000
NF_VERDICT_QBITS: Final = 16

# x_tables: a target that lets evaluation go on with the next rule, and the standard
# target's RETURN (include/uapi/linux/netfilter/x_tables.h).
XT_CONTINUE: Final = 0xFFFFFFFF
XT_RETURN: Final = -NF_REPEAT - 1

# include/uapi/linux/netfilter_ipv4/ip_tables.h struct ipt_ip flags and invflags.
IPT_F_FRAG: Final = 0x01
IPT_INV_VIA_IN: Final = 0x01
IPT_INV_VIA_OUT: Final = 0x02
IPT_INV_TOS: Final = 0x04
IPT_INV_SRCIP: Final = 0x08
IPT_INV_DSTIP: Final = 0x10
IPT_INV_FRAG: Final = 0x20
IPT_INV_PROTO: Final = 0x40
IPT_INV_MASK: Final = 0x7F

# xt_tcpudp.h, xt_multiport.h, ipt_ttl.h, ipt_REJECT.h, ipt_TTL.h, xt_LOG.h.
XT_UDP_INV_SRCPT, XT_UDP_INV_DSTPT = 0x01, 0x02
XT_TCP_INV_SRCPT, XT_TCP_INV_DSTPT, XT_TCP_INV_FLAGS = 0x01, 0x02, 0x08
IPT_ICMP_INV: Final = 0x01
XT_MULTIPORT_SOURCE, XT_MULTIPORT_DESTINATION, XT_MULTIPORT_EITHER = 0, 1, 2
XT_MULTI_PORTS: Final = 15
IPT_TTL_EQ, IPT_TTL_NE, IPT_TTL_LT, IPT_TTL_GT = 0, 1, 2, 3
IPT_TTL_SET, IPT_TTL_INC, IPT_TTL_DEC = 0, 1, 2
(
    IPT_ICMP_NET_UNREACHABLE,
    IPT_ICMP_HOST_UNREACHABLE,
    IPT_ICMP_PROT_UNREACHABLE,
    IPT_ICMP_PORT_UNREACHABLE,
    IPT_ICMP_ECHOREPLY,
    IPT_ICMP_NET_PROHIBITED,
    IPT_ICMP_HOST_PROHIBITED,
    IPT_TCP_RESET,
    IPT_ICMP_ADMIN_PROHIBITED,
) = range(9)
# ipt_REJECT.c reject_tg(): the ICMP_DEST_UNREACH code each sends.
REJECT_CODES: Final = {
    IPT_ICMP_NET_UNREACHABLE: 0,  # ICMP_NET_UNREACH
    IPT_ICMP_HOST_UNREACHABLE: 1,  # ICMP_HOST_UNREACH
    IPT_ICMP_PROT_UNREACHABLE: 2,  # ICMP_PROT_UNREACH
    IPT_ICMP_PORT_UNREACHABLE: 3,  # ICMP_PORT_UNREACH
    IPT_ICMP_NET_PROHIBITED: 9,  # ICMP_NET_ANO
    IPT_ICMP_HOST_PROHIBITED: 10,  # ICMP_HOST_ANO
    IPT_ICMP_ADMIN_PROHIBITED: 13,  # ICMP_PKT_FILTERED
}
NF_LOG_TCPSEQ, NF_LOG_TCPOPT, NF_LOG_IPOPT, NF_LOG_UID, NF_LOG_MACDECODE = 0x01, 0x02, 0x04, 0x08, 0x20
NF_LOG_MASK: Final = 0x2F
# The LOG target's prefix is char[30], NUL included.
LOG_PREFIX_MAX: Final = 29
# xt_chainlabel is char[32]; iptables refuses names of 29 characters or more.
CHAIN_NAME_MAX: Final = 28
IFNAMSIZ: Final = 16

NFQ_FLAG_BYPASS, NFQ_FLAG_CPU_FANOUT = 0x01, 0x02

# The emulator's bounds (the kernel's are memory): rules per table, user chains per
# table, and the LOG/x_tables messages kept for reading back (dmesg).
NF_MAX_RULES: Final = 100_000
NF_MAX_CHAINS: Final = 10_000
NF_LOG_MAX: Final = 1024

STANDARD_VERDICTS: Final = {"ACCEPT": NF_ACCEPT, "DROP": NF_DROP, "QUEUE": NF_QUEUE, "RETURN": XT_RETURN}
POLICIES: Final = ("ACCEPT", "DROP")

# Protocols whose ports the port matches (and the index) read: xt_multiport's list.
_PORT_PROTOS: Final = frozenset((IPPROTO_TCP, IPPROTO_UDP, 136, 132, 33))
_HDR = struct.Struct("!BBHHHBBHII")
_PORTS = struct.Struct("!HH")
# A chain this short is walked whole: the index costs more than it saves.
_INDEX_MIN_RULES: Final = 8
_MERGE_CACHE_MAX: Final = 1024


class NfError(Exception):
    """A refused table change: errno and the message iptables prints for it (libiptc's
    iptc_strerror, or strerror), plus what x_tables logged to the kernel log, if any."""

    def __init__(self, errno: int, message: str, kernel_log: str = "") -> None:
        super().__init__(f"{message} (errno {errno})")
        self.errno = errno
        self.message = message
        self.kernel_log = kernel_log


# Rule specifications: what iptables hands the kernel, one dataclass per extension.


@dataclass(frozen=True, slots=True)
class IpSpec:
    """struct ipt_ip. Addresses are host-order ints; src/dst are already masked (as
    iptables stores them). An interface name ending in "+" matches every name that
    starts with what precedes it."""

    src: int = 0
    smsk: int = 0
    dst: int = 0
    dmsk: int = 0
    iniface: str = ""
    outiface: str = ""
    proto: int = 0
    flags: int = 0
    invflags: int = 0


@dataclass(frozen=True, slots=True)
class UdpMatch:
    """xt_udp: port ranges, inclusive."""

    spts: tuple[int, int] = (0, 0xFFFF)
    dpts: tuple[int, int] = (0, 0xFFFF)
    invflags: int = 0


@dataclass(frozen=True, slots=True)
class TcpMatch:
    """xt_tcp without options: port ranges and (flags & flg_mask) == flg_cmp."""

    spts: tuple[int, int] = (0, 0xFFFF)
    dpts: tuple[int, int] = (0, 0xFFFF)
    flg_mask: int = 0
    flg_cmp: int = 0
    invflags: int = 0


@dataclass(frozen=True, slots=True)
class IcmpMatch:
    """ipt_icmp: type 0xFF matches any type."""

    type: int = 0xFF
    code: tuple[int, int] = (0, 0xFF)
    invflags: int = 0


@dataclass(frozen=True, slots=True)
class MarkMatch:
    """xt_mark_mtinfo1: (skb->mark & mask) == mark."""

    mark: int
    mask: int = 0xFFFFFFFF
    invert: bool = False


@dataclass(frozen=True, slots=True)
class TosMatch:
    """xt_tos_match_info: (tos & tos_mask) == tos_value."""

    tos_value: int
    tos_mask: int = 0xFF
    invert: bool = False


@dataclass(frozen=True, slots=True)
class TtlMatch:
    """ipt_ttl_info: mode is IPT_TTL_EQ/NE/LT/GT."""

    mode: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LengthMatch:
    """xt_length_info over iph->tot_len."""

    min: int
    max: int
    invert: bool = False


@dataclass(frozen=True, slots=True)
class MultiportMatch:
    """xt_multiport_v1: up to XT_MULTI_PORTS ports, a range counting as two."""

    flags: int
    ports: tuple[tuple[int, int], ...]
    invert: bool = False


Match = UdpMatch | TcpMatch | IcmpMatch | MarkMatch | TosMatch | TtlMatch | LengthMatch | MultiportMatch


@dataclass(frozen=True, slots=True)
class Standard:
    """The standard target: ACCEPT, DROP, QUEUE (to queue 0) or RETURN."""

    verdict: str


@dataclass(frozen=True, slots=True)
class Jump:
    """A jump to a user-defined chain; goto (-g, IPT_F_GOTO) does not come back."""

    chain: str
    goto: bool = False


@dataclass(frozen=True, slots=True)
class RejectTarget:
    with_: int = IPT_ICMP_PORT_UNREACHABLE


@dataclass(frozen=True, slots=True)
class NfqueueTarget:
    """xt_NFQ_info_v3."""

    queuenum: int = 0
    queues_total: int = 1
    flags: int = 0


@dataclass(frozen=True, slots=True)
class MarkTarget:
    """xt_mark_tginfo2: skb->mark = (skb->mark & ~mask) ^ mark."""

    mark: int
    mask: int


@dataclass(frozen=True, slots=True)
class TtlTarget:
    mode: int
    ttl: int


@dataclass(frozen=True, slots=True)
class TosTarget:
    """xt_tos_target_info: tos = (tos & ~tos_mask) ^ tos_value."""

    tos_value: int
    tos_mask: int


@dataclass(frozen=True, slots=True)
class LogTarget:
    level: int = 4
    logflags: int = 0
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class TraceTarget:
    """xt_TRACE: skb->nf_trace = 1, here the emulator's per-skb trace from this hook on."""


Target = (
    Standard
    | Jump
    | RejectTarget
    | NfqueueTarget
    | MarkTarget
    | TtlTarget
    | TosTarget
    | LogTarget
    | TraceTarget
)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One rule as iptables -S shows it; two specs are the same rule (for -D and -C)
    when they compare equal."""

    ip: IpSpec = IpSpec()
    matches: tuple[Match, ...] = ()
    target: Target | None = None


@dataclass(frozen=True, slots=True)
class NfLogRecord:
    """One kernel log line: a LOG target's packet dump or an x_tables complaint."""

    ts_ns: int
    level: int
    text: str


# The packet as the matches see it.


class _Pkt:
    """The IPv4 header fields ipt_do_table reads, parsed once per hook traversal, and
    the first bytes of the transport header (what skb_header_pointer would copy)."""

    __slots__ = (
        "daddr",
        "dport",
        "frag_off",
        "fragoff",
        "hotdrop",
        "indev",
        "l4",
        "outdev",
        "ports_ok",
        "proto",
        "saddr",
        "sport",
        "thoff",
        "tos",
        "tot_len",
        "ttl",
    )

    def __init__(self, skb: SkBuff, indev: str, outdev: str) -> None:
        head = skb.head
        d = skb.data
        if skb.tail - d >= 20:
            ver_ihl, tos, tot_len, _, frag_off, ttl, proto, _, saddr, daddr = _HDR.unpack_from(head, d)
        else:
            ver_ihl, tos, tot_len, _, frag_off, ttl, proto, _, saddr, daddr = _HDR.unpack(
                skb.payload()[:20].ljust(20, b"\0")
            )
        self.saddr = saddr
        self.daddr = daddr
        self.proto = proto
        self.tos = tos
        self.ttl = ttl
        self.tot_len = tot_len
        self.frag_off = frag_off
        self.fragoff = frag_off & IP_OFFSET
        thoff = (ver_ihl & 0x0F) << 2
        self.thoff = thoff
        self.indev = indev
        self.outdev = outdev
        self.hotdrop = False
        # What a 20-byte skb_header_pointer at the transport header would find.
        self.l4 = skb_bytes(skb, thoff, 20) if not self.fragoff else b""
        n = 20 if proto == IPPROTO_TCP else 8
        self.ports_ok = len(self.l4) >= n
        if len(self.l4) >= 4:
            self.sport, self.dport = _PORTS.unpack_from(self.l4)
        else:
            self.sport = self.dport = -1


def skb_bytes(skb: SkBuff, offset: int, n: int) -> bytes:
    """Up to n bytes at offset from skb.data (fewer when the packet ends first)."""
    if offset + n <= skb.tail - skb.data:
        start = skb.data + offset
        return bytes(skb.head[start : start + n])
    return skb.payload()[offset : offset + n]


# Compiled matches: each takes the packet and says whether the rule may still match.

Check = Callable[[_Pkt], bool]


def _ifname_check(name: str, invert: bool, incoming: bool) -> Check:
    # ifname_compare_aligned() under the mask iptables builds: "eth+" compares "eth".
    if name.endswith("+"):
        prefix = name[:-1]
        if incoming:
            return lambda p: p.indev.startswith(prefix) != invert
        return lambda p: p.outdev.startswith(prefix) != invert
    if incoming:
        return lambda p: (p.indev == name) != invert
    return lambda p: (p.outdev == name) != invert


def _compile_ip(ip: IpSpec) -> list[Check]:
    """ip_packet_match(), one check per field that constrains anything."""
    checks: list[Check] = []
    inv = ip.invflags
    if ip.smsk or inv & IPT_INV_SRCIP:
        src, smsk, sinv = ip.src, ip.smsk, bool(inv & IPT_INV_SRCIP)
        checks.append(lambda p: ((p.saddr & smsk) == src) != sinv)
    if ip.dmsk or inv & IPT_INV_DSTIP:
        dst, dmsk, dinv = ip.dst, ip.dmsk, bool(inv & IPT_INV_DSTIP)
        checks.append(lambda p: ((p.daddr & dmsk) == dst) != dinv)
    if (ip.iniface and ip.iniface != "+") or inv & IPT_INV_VIA_IN:
        checks.append(_ifname_check(ip.iniface, bool(inv & IPT_INV_VIA_IN), True))
    if (ip.outiface and ip.outiface != "+") or inv & IPT_INV_VIA_OUT:
        checks.append(_ifname_check(ip.outiface, bool(inv & IPT_INV_VIA_OUT), False))
    if ip.proto:
        proto, pinv = ip.proto, bool(inv & IPT_INV_PROTO)
        checks.append(lambda p: (p.proto == proto) != pinv)
    finv = bool(inv & IPT_INV_FRAG)
    if ip.flags & IPT_F_FRAG:
        # A fragment rule matches only non-first fragments; "! -f" only the others.
        checks.append(lambda p: bool(p.fragoff) != finv)
    elif finv:
        checks.append(lambda p: False)
    return checks


def _port_check(lo: int, hi: int, invert: bool, src: bool) -> Check:
    if src:
        return lambda p: (lo <= p.sport <= hi) != invert
    return lambda p: (lo <= p.dport <= hi) != invert


def _l4_check(need: int, checks: list[Check]) -> Check:
    """The skeleton of udp_mt/tcp_mt/icmp_match: non-first fragments never match, a
    transport header shorter than `need` bytes drops the packet (hotdrop)."""

    def check(p: _Pkt) -> bool:
        if p.fragoff:
            return False
        if len(p.l4) < need:
            p.hotdrop = True
            return False
        return all(c(p) for c in checks)

    return check


def _compile_match(m: Match) -> Check:
    if isinstance(m, UdpMatch | TcpMatch):
        checks: list[Check] = []
        sinv = bool(m.invflags & XT_UDP_INV_SRCPT)
        dinv = bool(m.invflags & XT_UDP_INV_DSTPT)
        if m.spts != (0, 0xFFFF) or sinv:
            checks.append(_port_check(m.spts[0], m.spts[1], sinv, True))
        if m.dpts != (0, 0xFFFF) or dinv:
            checks.append(_port_check(m.dpts[0], m.dpts[1], dinv, False))
        if isinstance(m, TcpMatch):
            fmask, fcmp, finv = m.flg_mask, m.flg_cmp, bool(m.invflags & XT_TCP_INV_FLAGS)
            if fmask or finv:
                checks.append(lambda p: ((p.l4[13] & fmask) == fcmp) != finv)
            return _l4_check(20, checks)
        return _l4_check(8, checks)
    if isinstance(m, IcmpMatch):
        # icmp_type_code_match(): type 0xFF is any; the packet's code must fall in range.
        t, lo, hi, inv = m.type, m.code[0], m.code[1], bool(m.invflags & IPT_ICMP_INV)

        def icmp(p: _Pkt) -> bool:
            return ((t == 0xFF or p.l4[0] == t) and lo <= p.l4[1] <= hi) != inv

        return _l4_check(8, [icmp])
    if isinstance(m, MultiportMatch):
        ranges, flags, inv = m.ports, m.flags, m.invert

        def multiport(p: _Pkt) -> bool:
            # ports_match_v1(): either port, the source, or the destination in a range.
            for lo, hi in ranges:
                if flags != XT_MULTIPORT_DESTINATION and lo <= p.sport <= hi:
                    return not inv
                if flags != XT_MULTIPORT_SOURCE and lo <= p.dport <= hi:
                    return not inv
            return inv

        return _l4_check(4, [multiport])
    if isinstance(m, LengthMatch):
        lmin, lmax, linv = m.min, m.max, m.invert
        return lambda p: (lmin <= p.tot_len <= lmax) != linv
    if isinstance(m, TtlMatch):
        v = m.ttl
        if m.mode == IPT_TTL_EQ:
            return lambda p: p.ttl == v
        if m.mode == IPT_TTL_NE:
            return lambda p: p.ttl != v
        if m.mode == IPT_TTL_LT:
            return lambda p: p.ttl < v
        return lambda p: p.ttl > v
    if isinstance(m, TosMatch):
        tv, tm, tinv = m.tos_value, m.tos_mask, m.invert
        return lambda p: ((p.tos & tm) == tv) != tinv
    # MarkMatch reads skb->mark, which targets change: the rule's skb is bound at
    # evaluation (Rule.match), so this is never called.
    raise TypeError(f"no compiler for {m!r}")


class Rule:
    """A rule in a chain: its spec, its counters, and the compiled form."""

    __slots__ = ("bcnt", "checks", "index_key", "jump", "marks", "pcnt", "pos", "spec")

    def __init__(self, spec: RuleSpec, pcnt: int = 0, bcnt: int = 0) -> None:
        self.spec = spec
        self.pcnt = pcnt
        self.bcnt = bcnt
        self.pos = 0
        self.jump: Chain | None = None
        checks = _compile_ip(spec.ip)
        marks: list[tuple[int, int, bool]] = []
        for m in spec.matches:
            if isinstance(m, MarkMatch):
                marks.append((m.mark, m.mask, m.invert))
            else:
                checks.append(_compile_match(m))
        self.checks = tuple(checks)
        self.marks = tuple(marks)
        self.index_key = _index_key(spec)

    def match(self, p: _Pkt, mark: int) -> bool:
        for c in self.checks:
            if not c(p):
                return False
        # mark_mt(): ((skb->mark & mask) == mark) ^ invert.
        return all(((mark & mask) == value) != invert for value, mask, invert in self.marks)


def _index_key(spec: RuleSpec) -> tuple[int, int] | tuple[str, int] | None:
    """What a packet must carry for the rule to be able to match: (protocol, exact
    destination port) for a non-inverted -p with a single --dport, else an exact
    non-inverted destination address ("d", addr), else such a source ("s", addr), else
    nothing."""
    ip = spec.ip
    if ip.proto in (IPPROTO_UDP, IPPROTO_TCP) and not ip.invflags & IPT_INV_PROTO:
        for m in spec.matches:
            if (
                isinstance(m, UdpMatch | TcpMatch)
                and m.dpts[0] == m.dpts[1]
                and not m.invflags & XT_UDP_INV_DSTPT
            ):
                return (ip.proto, m.dpts[0])
    if ip.dmsk == 0xFFFFFFFF and not ip.invflags & IPT_INV_DSTIP:
        return ("d", ip.dst)
    if ip.smsk == 0xFFFFFFFF and not ip.invflags & IPT_INV_SRCIP:
        return ("s", ip.src)
    return None


_by_pos = attrgetter("pos")


class Chain:
    """A chain's rules in order, and their index (rebuilt lazily after a change)."""

    __slots__ = (
        "_by_daddr",
        "_by_port",
        "_by_saddr",
        "_dirty",
        "_indexed",
        "_merged",
        "_unindexed",
        "bcnt",
        "builtin",
        "name",
        "pcnt",
        "policy",
        "rules",
    )

    def __init__(self, name: str, builtin: bool) -> None:
        self.name = name
        self.builtin = builtin
        self.policy = NF_ACCEPT
        self.pcnt = 0
        self.bcnt = 0
        self.rules: list[Rule] = []
        self._dirty = True
        self._indexed = False
        self._by_port: dict[tuple[int, int], list[Rule]] = {}
        self._by_daddr: dict[int, list[Rule]] = {}
        self._by_saddr: dict[int, list[Rule]] = {}
        self._unindexed: list[Rule] = []
        self._merged: dict[tuple[int, int, int], list[Rule]] = {}

    def changed(self) -> None:
        self._dirty = True

    def underflow(self, skb: SkBuff) -> int:
        """ipt_do_table()'s underflow rule of a built-in chain: its counters, its policy."""
        self.pcnt += 1
        self.bcnt += skb.len
        return self.policy

    def _reindex(self) -> None:
        by_port: dict[tuple[int, int], list[Rule]] = {}
        by_addr: dict[str, dict[int, list[Rule]]] = {"d": {}, "s": {}}
        unindexed: list[Rule] = []
        for pos, r in enumerate(self.rules):
            r.pos = pos
            key = r.index_key
            if key is None:
                unindexed.append(r)
            elif isinstance(key[0], str):
                by_addr[key[0]].setdefault(key[1], []).append(r)
            else:
                by_port.setdefault((key[0], key[1]), []).append(r)
        self._by_port, self._unindexed = by_port, unindexed
        self._by_daddr, self._by_saddr = by_addr["d"], by_addr["s"]
        self._indexed = len(self.rules) > _INDEX_MIN_RULES and len(unindexed) < len(self.rules)
        self._merged = {}
        self._dirty = False

    def candidates(self, p: _Pkt) -> Sequence[Rule]:
        """The rules that could match p, in rule order. A packet whose ports cannot be
        read (a transport header cut short) walks every rule, since a port match on it
        must drop it (hotdrop) at the first such rule."""
        if self._dirty:
            self._reindex()
        if not self._indexed:
            return self.rules
        if p.proto in _PORT_PROTOS and not p.fragoff and not p.ports_ok:
            return self.rules
        a = self._by_port.get((p.proto, p.dport)) if p.ports_ok else None
        b = self._by_daddr.get(p.daddr)
        s = self._by_saddr.get(p.saddr)
        c = self._unindexed
        lists = [x for x in (a, b, s, c) if x]
        if len(lists) <= 1:
            return lists[0] if lists else c
        key = (id(a), id(b), id(s))
        merged = self._merged.get(key)
        if merged is None:
            if len(self._merged) >= _MERGE_CACHE_MAX:
                self._merged.clear()
            merged = list(heapq.merge(*lists, key=_by_pos))
            self._merged[key] = merged
        return merged


@dataclass(slots=True)
class Table:
    """An x_tables table: its hooks, priority and chains (builtins first, in hook order)."""

    name: str
    priority: int
    hooks: tuple[int, ...]
    chains: dict[str, Chain] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for h in self.hooks:
            self.chains[HOOK_NAMES[h]] = Chain(HOOK_NAMES[h], True)

    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains.values())

    def user_chains(self) -> list[Chain]:
        """User-defined chains in libiptc's order (strcmp)."""
        return sorted((c for c in self.chains.values() if not c.builtin), key=lambda c: c.name)

    def ordered_chains(self) -> list[Chain]:
        return [c for c in self.chains.values() if c.builtin] + self.user_chains()

    def references(self, chain: Chain) -> int:
        return sum(1 for c in self.chains.values() for r in c.rules if r.jump is chain)


# The tables this stack has, with their NF_IP_PRI_* priorities (include/uapi/linux/
# netfilter_ipv4.h) and hooks (iptable_raw.c, iptable_mangle.c, iptable_filter.c).
_TABLES: Final = (
    ("raw", -300, (NF_INET_PRE_ROUTING, NF_INET_LOCAL_OUT)),
    ("mangle", -150, tuple(range(NF_INET_NUMHOOKS))),
    ("filter", 0, (NF_INET_LOCAL_IN, NF_INET_FORWARD, NF_INET_LOCAL_OUT)),
)
NOT_BUILT_TABLES: Final = {
    "nat": "the nat table is not built: stackemu has no connection tracking or NAT",
    "security": "the security table is not built: stackemu has no LSM",
}

# ipt_REJECT and the mangle-only targets (ipt_TTL, xt_DSCP's TOS), as x_tables checks
# them in xt_check_target(): the table a target is limited to.
# xt_TRACE is the raw table's (.table = "raw"; 6.18 answers a TRACE rule in filter with
# EINVAL and "TRACE target: only valid in raw table, not filter" in dmesg).
_TARGET_TABLE: Final = {RejectTarget: "filter", TtlTarget: "mangle", TosTarget: "mangle", TraceTarget: "raw"}
_TARGET_NAME: Final = {RejectTarget: "REJECT", TtlTarget: "TTL", TosTarget: "TOS", TraceTarget: "TRACE"}
_MATCH_PROTO: Final = {UdpMatch: ("udp", IPPROTO_UDP), TcpMatch: ("tcp", IPPROTO_TCP), IcmpMatch: ("icmp", 1)}


@dataclass(slots=True)
class _HookState:
    """struct nf_hook_state, plus the parsed header shared by the tables of one walk."""

    hook: int
    indev: int
    outdev: int
    okfn: Callable[[SkBuff], object]
    in_name: str
    out_name: str
    pkt: _Pkt | None = None


# What the per-packet trace records at each hook.
_HOOK_TRACE = (
    "nf_hook(PRE_ROUTING)",
    "nf_hook(LOCAL_IN)",
    "nf_hook(FORWARD)",
    "nf_hook(LOCAL_OUT)",
    "nf_hook(POST_ROUTING)",
)


class Netfilter:
    """The hooks, the tables and the queue of one host's IPv4 layer."""

    def __init__(
        self,
        drops: DropStats,
        ifname: Callable[[int], str],
        icmp_send: Callable[[SkBuff, int, int, int], None],
        trace: Tracer,
    ) -> None:
        self.drops = drops
        self.ifname = ifname
        self.icmp_send = icmp_send
        self.trace = trace
        # kfree_skb's destructor: the layer gives a dropped skb's socket memory back.
        self.free: Callable[[SkBuff], None] = _no_free
        self.tables: dict[str, Table] = {name: Table(name, prio, hooks) for name, prio, hooks in _TABLES}
        # nf_hook_entries per hook, in priority order.
        self._hooks: list[list[Table]] = [
            sorted((t for t in self.tables.values() if h in t.hooks), key=lambda t: t.priority)
            for h in range(NF_INET_NUMHOOKS)
        ]
        self.queue = NfQueue(self._reinject, self._name)
        self.log: deque[NfLogRecord] = deque(maxlen=NF_LOG_MAX)

    def _name(self, ifindex: int) -> str:
        return self.ifname(ifindex) if ifindex else ""

    # The data path.

    def nf_hook(
        self, hook: int, skb: SkBuff, indev: int, outdev: int, okfn: Callable[[SkBuff], object]
    ) -> int:
        """NF_HOOK(): run the tables at `hook` over skb (IP header at skb.data). ACCEPT
        calls okfn(skb) before returning; DROP frees skb under NETFILTER_DROP; NFQUEUE
        hands skb and okfn to the queue, to go on when a verdict comes (or now, with
        --queue-bypass and no listener, or fail-open on a full queue).

        Returns what nf_hook() returns once okfn has run: okfn's int result (0 for
        anything else), or -EPERM when the packet was dropped (ip_local_out hands that
        to udp_sendmsg, which fails with EPERM).
        Whoever calls gives up skb: it belongs to okfn, the queue, or nobody."""
        self.trace(skb, _HOOK_TRACE[hook])
        chain = HOOK_NAMES[hook]
        bases = [t.chains[chain] for t in self._hooks[hook]]
        if all(not b.rules and b.policy == NF_ACCEPT for b in bases):
            # Every table's chain is empty and accepts: ipt_do_table() would only
            # count its policy (the kernel's cost here is as small).
            for b in bases:
                b.underflow(skb)
            ret = okfn(skb)
            return ret if isinstance(ret, int) else 0
        state = _HookState(hook, indev, outdev, okfn, self._name(indev), self._name(outdev))
        return self._nf_hook_slow(skb, state, 0)

    def _nf_hook_slow(self, skb: SkBuff, state: _HookState, s: int) -> int:
        tables = self._hooks[state.hook]
        n = len(tables)
        while s < n:
            verdict = self._do_table(tables[s], skb, state)
            v = verdict & NF_VERDICT_MASK
            if v == NF_ACCEPT:
                s += 1
                continue
            if v == NF_QUEUE:
                if self._nf_queue(skb, state, s, verdict) == 1:
                    s += 1
                    continue
                return 0
            self.drops.drop(SkbDropReason.NETFILTER_DROP, "nf_hook_slow", skb=skb)
            self.free(skb)
            return -E.EPERM
        # NF_HOOK() returns what okfn returned (dst_output's -EPERM from the next hook,
        # ip_fragment's -EMSGSIZE), for ip_send_skb.
        ret = state.okfn(skb)
        return ret if isinstance(ret, int) else 0

    def _do_table(self, table: Table, skb: SkBuff, state: _HookState) -> int:
        """ipt_do_table(): the hook's chain, jumps with a return stack, per-rule
        counters for every rule that matched, the policy when the chain runs out."""
        base = table.chains[HOOK_NAMES[state.hook]]
        if not base.rules:
            return base.underflow(skb)
        p = state.pkt
        if p is None:
            p = state.pkt = _Pkt(skb, state.in_name, state.out_name)
        stack: list[tuple[Sequence[Rule], int]] = []
        rules = base.candidates(p)
        i = 0
        while True:
            if i == len(rules):
                if not stack:
                    return base.underflow(skb)
                rules, i = stack.pop()
                continue
            rule = rules[i]
            i += 1
            if not rule.match(p, skb.mark):
                if p.hotdrop:
                    return NF_DROP
                continue
            rule.pcnt += 1
            rule.bcnt += skb.len
            t = rule.spec.target
            if t is None:
                continue
            if isinstance(t, Standard):
                v = STANDARD_VERDICTS[t.verdict]
                if v != XT_RETURN:
                    return v
                if not stack:
                    return base.underflow(skb)
                rules, i = stack.pop()
                continue
            if isinstance(t, Jump):
                assert rule.jump is not None
                if not t.goto:
                    stack.append((rules, i))
                rules = rule.jump.candidates(p)
                i = 0
                continue
            verdict = self._target(t, skb, p, state, table)
            if verdict != XT_CONTINUE:
                return verdict

    def _target(self, t: Target, skb: SkBuff, p: _Pkt, state: _HookState, table: Table) -> int:
        if isinstance(t, MarkTarget):
            # mark_tg()
            skb.mark = ((skb.mark & ~t.mask) ^ t.mark) & 0xFFFFFFFF
            return XT_CONTINUE
        if isinstance(t, NfqueueTarget):
            return _nfqueue_verdict(t, p)
        if isinstance(t, RejectTarget):
            self._reject(t, skb, p, state.hook)
            return NF_DROP
        if isinstance(t, LogTarget):
            self._log_packet(t, skb, state)
            return XT_CONTINUE
        if isinstance(t, TtlTarget):
            return _ttl_tg(t, skb, p)
        if isinstance(t, TosTarget):
            return _tos_tg(t, skb, p)
        if isinstance(t, TraceTarget):
            # trace_tg(): the packet is traced from the hook it is at; XT_CONTINUE.
            if skb.trace is None:
                self.trace.begin(skb, _HOOK_TRACE[state.hook])
            return XT_CONTINUE
        raise TypeError(f"no target {t!r}")

    def _reject(self, t: RejectTarget, skb: SkBuff, p: _Pkt, hook: int) -> None:
        """reject_tg() → nf_send_unreach(): no error about a non-first fragment, nor
        about a packet whose transport checksum is wrong."""
        if p.fragoff:
            return
        if skb.ip_summed not in (CHECKSUM_UNNECESSARY, CHECKSUM_PARTIAL) and not _transport_csum_ok(skb, p):
            return
        self.icmp_send(skb, ICMP_DEST_UNREACH, REJECT_CODES[t.with_], 0)

    def _nf_queue(self, skb: SkBuff, state: _HookState, index: int, verdict: int) -> int:
        """nf_queue(): 1 to go on with the next table (--queue-bypass and nobody
        listening), else 0; the packet was queued, reinjected, or dropped here."""
        self.trace(skb, "nf_queue")
        ret = self.queue.enqueue(QueueEntry(skb, state, index), verdict >> NF_VERDICT_QBITS)
        if ret < 0:
            if ret == -E.ESRCH and verdict & NF_VERDICT_FLAG_QUEUE_BYPASS:
                return 1
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "nf_queue")
            self.free(skb)
        return 0

    def _reinject(self, entry: QueueEntry, verdict: int) -> None:
        """nf_reinject() (called from nfqnl_reinject): REPEAT runs the table that queued
        the packet again, ACCEPT goes on with the next ones; a drop here is a plain
        kfree_skb (NOT_SPECIFIED), as the kernel's is."""
        skb, state = entry.skb, entry.state
        assert isinstance(state, _HookState)
        self.trace(skb, "nf_reinject")
        # The listener may have rewritten the packet: the tables parse it afresh.
        state.pkt = None
        tables = self._hooks[state.hook]
        i = entry.hook_index
        if verdict == NF_REPEAT:
            verdict = self._do_table(tables[i], skb, state)
        if verdict == NF_ACCEPT:
            verdict, i = self._nf_iterate(skb, state, i + 1)
        while True:
            v = verdict & NF_VERDICT_MASK
            if v in (NF_ACCEPT, NF_STOP):
                state.okfn(skb)
                return
            if v == NF_QUEUE:
                if self._nf_queue(skb, state, i, verdict) == 1:
                    verdict, i = self._nf_iterate(skb, state, i + 1)
                    continue
                return
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "nfqnl_reinject")
            self.free(skb)
            return

    def _nf_iterate(self, skb: SkBuff, state: _HookState, i: int) -> tuple[int, int]:
        tables = self._hooks[state.hook]
        while i < len(tables):
            verdict = self._do_table(tables[i], skb, state)
            if verdict != NF_ACCEPT:
                return verdict, i
            i += 1
        return NF_ACCEPT, i

    def _log_packet(self, t: LogTarget, skb: SkBuff, state: _HookState) -> None:
        """log_tg() → nf_log_ip_packet(): the line syslog gets, into self.log."""
        line = format_log_line(t, skb, state.in_name, state.out_name, bool(state.indev))
        self.log.append(NfLogRecord(time.time_ns(), t.level, line))
        if skb.trace is not None:
            self.trace(skb, f"nf_log_packet {line.strip()}")

    def _klog(self, text: str) -> str:
        """An x_tables complaint (pr_info, level 6) in the kernel log; returns text."""
        self.log.append(NfLogRecord(time.time_ns(), 6, text))
        return text

    # The control plane: libiptc's operations on a table.

    def table(self, name: str) -> Table:
        t = self.tables.get(name or "filter")
        if t is None:
            extra = NOT_BUILT_TABLES.get(name, "")
            raise NfError(E.ENOENT, "Table does not exist (do you need to insmod?)", extra)
        return t

    def _chain(self, table: Table, name: str) -> Chain:
        c = table.chains.get(name)
        if c is None:
            raise NfError(E.ENOENT, "No chain/target/match by that name")
        return c

    def _new_rule(self, table: Table, chain: Chain, spec: RuleSpec, counters: tuple[int, int]) -> Rule:
        """translate_table()'s per-entry checks (check_entry, xt_check_match,
        xt_check_target) for one rule going into chain."""
        if table.rule_count() >= NF_MAX_RULES:
            raise NfError(E.ENOMEM, "Memory allocation problem")
        ip = spec.ip
        if ip.invflags & ~IPT_INV_MASK or ip.flags & ~IPT_F_FRAG:
            raise NfError(E.EINVAL, "Invalid argument")
        for m in spec.matches:
            self._check_match(m, ip)
        t = spec.target
        rule = Rule(spec, *counters)
        if isinstance(t, Jump):
            target = table.chains.get(t.chain)
            if target is None:
                raise NfError(E.ENOENT, "No chain/target/match by that name")
            if target.builtin:
                # A jump into a builtin chain is not a valid verdict (check_underflow /
                # mark_source_chains refuse it).
                raise NfError(E.EINVAL, "Invalid argument")
            rule.jump = target
        elif t is not None:
            self._check_target(t, table, ip)
        return rule

    def _check_match(self, m: Match, ip: IpSpec) -> None:
        inv_proto = bool(ip.invflags & IPT_INV_PROTO)
        need = _MATCH_PROTO.get(type(m))
        if need is not None and (ip.proto != need[1] or inv_proto):
            raise NfError(
                E.EINVAL,
                "Invalid argument",
                self._klog(f"x_tables: ip_tables: {need[0]} match: only valid for protocol {need[1]}"),
            )
        if isinstance(m, MultiportMatch):
            # multiport_mt_check() → check(): a protocol with ports, not inverted.
            count = sum(1 if lo == hi else 2 for lo, hi in m.ports)
            if ip.proto not in _PORT_PROTOS or inv_proto or count > XT_MULTI_PORTS or not m.ports:
                raise NfError(E.EINVAL, "Invalid argument")
        if isinstance(m, UdpMatch) and m.invflags & ~(XT_UDP_INV_SRCPT | XT_UDP_INV_DSTPT):
            raise NfError(E.EINVAL, "Invalid argument")
        if isinstance(m, TcpMatch) and m.invflags & ~(XT_TCP_INV_SRCPT | XT_TCP_INV_DSTPT | XT_TCP_INV_FLAGS):
            raise NfError(E.EINVAL, "Invalid argument")
        if isinstance(m, IcmpMatch) and m.invflags & ~IPT_ICMP_INV:
            raise NfError(E.EINVAL, "Invalid argument")
        if isinstance(m, TtlMatch) and m.mode > IPT_TTL_GT:
            raise NfError(E.EINVAL, "Invalid argument")

    def _check_target(self, t: Target, table: Table, ip: IpSpec) -> None:
        only = _TARGET_TABLE.get(type(t))
        if only is not None and only != table.name:
            name = _TARGET_NAME[type(t)]
            raise NfError(
                E.EINVAL,
                "Invalid argument",
                self._klog(
                    f"x_tables: ip_tables: {name} target: only valid in {only} table, not {table.name}"
                ),
            )
        if isinstance(t, RejectTarget):
            # reject_tg_check()
            if t.with_ == IPT_ICMP_ECHOREPLY:
                raise NfError(E.EINVAL, "Invalid argument", self._klog("ECHOREPLY no longer supported."))
            if t.with_ == IPT_TCP_RESET:
                if ip.proto != IPPROTO_TCP or ip.invflags & IPT_INV_PROTO:
                    raise NfError(E.EINVAL, "Invalid argument", self._klog("TCP_RESET invalid for non-tcp"))
                raise NfError(
                    E.EOPNOTSUPP,
                    "REJECT --reject-with tcp-reset is not built: stackemu has no TCP",
                )
            if t.with_ not in REJECT_CODES:
                raise NfError(E.EINVAL, "Invalid argument")
        elif isinstance(t, NfqueueTarget):
            # nfqueue_tg_check()
            if t.queues_total == 0:
                raise NfError(
                    E.EINVAL, "Invalid argument", self._klog("NFQUEUE: number of total queues is 0")
                )
            maxid = t.queues_total - 1 + t.queuenum
            if maxid > 0xFFFF:
                raise NfError(
                    E.ERANGE,
                    "Numerical result out of range",
                    self._klog(f"NFQUEUE: number of queues ({t.queues_total}) out of range (got {maxid})"),
                )
            if t.flags & ~(NFQ_FLAG_BYPASS | NFQ_FLAG_CPU_FANOUT):
                raise NfError(E.EINVAL, "Invalid argument")
        elif isinstance(t, TtlTarget):
            # ttl_tg_check()
            if t.mode > IPT_TTL_DEC or (t.mode != IPT_TTL_SET and t.ttl == 0):
                raise NfError(E.EINVAL, "Invalid argument")
        elif isinstance(t, LogTarget):
            # log_tg_check()
            if t.level >= 8:
                raise NfError(E.EINVAL, "Invalid argument", self._klog(f"level {t.level} invalid"))
            if len(t.prefix.encode()) > LOG_PREFIX_MAX:
                raise NfError(E.EINVAL, "Invalid argument", self._klog("prefix is not null-terminated"))
            if t.logflags & ~NF_LOG_MASK:
                raise NfError(E.EINVAL, "Invalid argument")

    def _check_loops(self, table: Table) -> None:
        """mark_source_chains(): no chain reachable from a hook may reach itself."""
        state: dict[str, int] = {}  # 1 on the path, 2 done

        def visit(chain: Chain) -> bool:
            state[chain.name] = 1
            for r in chain.rules:
                j = r.jump
                if j is None:
                    continue
                s = state.get(j.name, 0)
                if s == 1 or (s == 0 and not visit(j)):
                    return False
            state[chain.name] = 2
            return True

        for c in table.chains.values():
            if c.builtin and not visit(c):
                raise NfError(E.ELOOP, "Too many levels of symbolic links")

    def _commit(
        self, table: Table, chain: Chain, rule: Rule, edit: Callable[[], object], undo: Callable[[], object]
    ) -> None:
        edit()
        if rule.jump is not None:
            try:
                self._check_loops(table)
            except NfError:
                undo()
                raise
        chain.changed()

    def append(self, table: str, chain: str, spec: RuleSpec, counters: tuple[int, int] = (0, 0)) -> None:
        """iptables -A."""
        t = self.table(table)
        c = self._chain(t, chain)
        rule = self._new_rule(t, c, spec, counters)
        self._commit(t, c, rule, lambda: c.rules.append(rule), c.rules.pop)

    def insert(
        self, table: str, chain: str, rulenum: int, spec: RuleSpec, counters: tuple[int, int] = (0, 0)
    ) -> None:
        """iptables -I chain [rulenum]: 1 is the first position."""
        t = self.table(table)
        c = self._chain(t, chain)
        if not 1 <= rulenum <= len(c.rules) + 1:
            raise NfError(E.E2BIG, "Index of insertion too big")
        rule = self._new_rule(t, c, spec, counters)
        self._commit(t, c, rule, lambda: c.rules.insert(rulenum - 1, rule), lambda: c.rules.pop(rulenum - 1))

    def replace(
        self, table: str, chain: str, rulenum: int, spec: RuleSpec, counters: tuple[int, int] = (0, 0)
    ) -> None:
        """iptables -R chain rulenum."""
        t = self.table(table)
        c = self._chain(t, chain)
        if not 1 <= rulenum <= len(c.rules):
            raise NfError(E.E2BIG, "Index of replacement too big")
        old = c.rules[rulenum - 1]
        rule = self._new_rule(t, c, spec, counters)

        def put(r: Rule) -> None:
            c.rules[rulenum - 1] = r

        self._commit(t, c, rule, lambda: put(rule), lambda: put(old))

    def _find(self, c: Chain, spec: RuleSpec) -> int:
        for i, r in enumerate(c.rules):
            if r.spec == spec:
                return i
        return -1

    def delete(self, table: str, chain: str, spec: RuleSpec) -> None:
        """iptables -D chain rule-specification: the first rule that is the same."""
        t = self.table(table)
        c = self._chain(t, chain)
        i = self._find(c, spec)
        if i < 0:
            raise NfError(E.ENOENT, "Bad rule (does a matching rule exist in that chain?)")
        del c.rules[i]
        c.changed()

    def delete_num(self, table: str, chain: str, rulenum: int) -> None:
        """iptables -D chain rulenum."""
        t = self.table(table)
        c = self._chain(t, chain)
        if not 1 <= rulenum <= len(c.rules):
            raise NfError(E.E2BIG, "Index of deletion too big")
        del c.rules[rulenum - 1]
        c.changed()

    def check(self, table: str, chain: str, spec: RuleSpec) -> None:
        """iptables -C: raises unless the chain holds the same rule."""
        t = self.table(table)
        if self._find(self._chain(t, chain), spec) < 0:
            raise NfError(E.ENOENT, "Bad rule (does a matching rule exist in that chain?)")

    def flush(self, table: str, chain: str = "") -> list[str]:
        """iptables -F [chain]; returns the chains flushed."""
        t = self.table(table)
        chains = [self._chain(t, chain)] if chain else t.ordered_chains()
        for c in chains:
            c.rules.clear()
            c.changed()
        return [c.name for c in chains]

    def zero(self, table: str, chain: str = "", rulenum: int = 0) -> list[str]:
        """iptables -Z [chain [rulenum]]: rule counters, and the policy's for a chain."""
        t = self.table(table)
        if rulenum:
            c = self._chain(t, chain)
            if not 1 <= rulenum <= len(c.rules):
                raise NfError(E.E2BIG, "Index of counter too big")
            r = c.rules[rulenum - 1]
            r.pcnt = r.bcnt = 0
            return [c.name]
        chains = [self._chain(t, chain)] if chain else t.ordered_chains()
        for c in chains:
            c.pcnt = c.bcnt = 0
            for r in c.rules:
                r.pcnt = r.bcnt = 0
        return [c.name for c in chains]

    def set_policy(
        self, table: str, chain: str, policy: str, counters: tuple[int, int] | None = None
    ) -> None:
        """iptables -P: builtin chains only, ACCEPT or DROP."""
        t = self.table(table)
        c = t.chains.get(chain)
        if c is None or not c.builtin:
            raise NfError(E.ENOENT, "Bad built-in chain name")
        if policy not in POLICIES:
            raise NfError(E.EINVAL, "Bad policy name")
        c.policy = STANDARD_VERDICTS[policy]
        if counters is not None:
            c.pcnt, c.bcnt = counters

    def new_chain(self, table: str, name: str) -> None:
        """iptables -N."""
        t = self.table(table)
        if name in t.chains or name in STANDARD_VERDICTS:
            raise NfError(E.EEXIST, "Chain already exists")
        if not name or len(name) > CHAIN_NAME_MAX:
            raise NfError(E.EINVAL, "Invalid argument")
        if len(t.chains) - len(t.hooks) >= NF_MAX_CHAINS:
            raise NfError(E.ENOMEM, "Memory allocation problem")
        t.chains[name] = Chain(name, False)

    def delete_chain(self, table: str, name: str = "") -> list[str]:
        """iptables -X [chain]. Without a name every user chain goes, or none does (the
        whole change is committed only if each deletion succeeded)."""
        t = self.table(table)
        if name:
            c = self._chain(t, name)
            self._deletable(t, c)
            del t.chains[name]
            return [name]
        chains = t.user_chains()
        err: NfError | None = None
        for c in chains:
            try:
                self._deletable(t, c)
            except NfError as e:
                err = e
        if err is not None:
            raise err
        for c in chains:
            del t.chains[c.name]
        return [c.name for c in chains]

    def _deletable(self, t: Table, c: Chain) -> None:
        if c.builtin:
            raise NfError(E.EINVAL, "Invalid argument")
        if t.references(c):
            raise NfError(E.EMLINK, "Too many links")
        if c.rules:
            raise NfError(E.ENOTEMPTY, "Directory not empty")

    def rename_chain(self, table: str, old: str, new: str) -> None:
        """iptables -E: the rules that jump to the chain follow it."""
        t = self.table(table)
        if new in t.chains or new in STANDARD_VERDICTS:
            raise NfError(E.EEXIST, "File exists")
        c = t.chains.get(old)
        if c is None or c.builtin:
            raise NfError(E.ENOENT, "No chain/target/match by that name")
        if not new or len(new) > CHAIN_NAME_MAX:
            raise NfError(E.EINVAL, "Invalid argument")
        t.chains = {(new if k == old else k): v for k, v in t.chains.items()}
        c.name = new
        for ch in t.chains.values():
            for r in ch.rules:
                if r.jump is c:
                    assert isinstance(r.spec.target, Jump)
                    r.spec = replace(r.spec, target=replace(r.spec.target, chain=new))

    def policy_name(self, chain: Chain) -> str:
        return "ACCEPT" if chain.policy == NF_ACCEPT else "DROP"


def _nfqueue_verdict(t: NfqueueTarget, p: _Pkt) -> int:
    """nfqueue_tg_v3(): one queue, or one of queues_total picked by a hash of the
    addresses and protocol, the same both ways (nfqueue_hash); with cpu-fanout by the
    CPU, which for this single-threaded IP service is always CPU 0."""
    queue = t.queuenum
    if t.queues_total > 1 and not t.flags & NFQ_FLAG_CPU_FANOUT:
        a, b = (p.saddr, p.daddr) if p.saddr < p.daddr else (p.daddr, p.saddr)
        h = hash((a, b, p.proto)) & 0xFFFFFFFF
        queue += (h * t.queues_total) >> 32
    verdict = NF_QUEUE | (queue << NF_VERDICT_QBITS)
    if t.flags & NFQ_FLAG_BYPASS:
        verdict |= NF_VERDICT_FLAG_QUEUE_BYPASS
    return verdict


def csum_replace2(check: int, old: int, new: int) -> int:
    """csum_replace2(): the header checksum after one 16-bit word went from old to new
    (RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'))."""
    s = (~check & 0xFFFF) + (~old & 0xFFFF) + new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _header_writable(skb: SkBuff) -> bool:
    """skb_ensure_writable(skb, sizeof(struct iphdr)): the header in the linear part."""
    if skb.tail - skb.data < 20:
        skb.linearize()
    return skb.tail - skb.data >= 20


def _ttl_tg(t: TtlTarget, skb: SkBuff, p: _Pkt) -> int:
    """ttl_tg(): set, raise or lower the TTL (saturating), patching the checksum."""
    old = p.ttl
    if t.mode == IPT_TTL_SET:
        new = t.ttl
    elif t.mode == IPT_TTL_INC:
        new = min(old + t.ttl, 255)
    else:
        new = max(old - t.ttl, 0)
    if new == old:
        return XT_CONTINUE
    if not _header_writable(skb):
        return NF_DROP
    h, d = skb.head, skb.data
    proto = h[d + 9]
    check = (h[d + 10] << 8) | h[d + 11]
    check = csum_replace2(check, old << 8 | proto, new << 8 | proto)
    h[d + 8] = new
    h[d + 10], h[d + 11] = check >> 8, check & 0xFF
    p.ttl = new
    return XT_CONTINUE


def _tos_tg(t: TosTarget, skb: SkBuff, p: _Pkt) -> int:
    """tos_tg() → ipv4_change_dsfield(): the new TOS and the checksum, adjusted in place."""
    orig = p.tos
    nv = (orig & ~t.tos_mask & 0xFF) ^ t.tos_value
    if nv == orig:
        return XT_CONTINUE
    if not _header_writable(skb):
        return NF_DROP
    h, d = skb.head, skb.data
    check = (h[d + 10] << 8) | h[d + 11]
    check += orig
    if (check + 1) >> 16:
        check = (check + 1) & 0xFFFF
    check -= nv
    check += check >> 16
    check &= 0xFFFF
    h[d + 1] = nv
    h[d + 10], h[d + 11] = check >> 8, check & 0xFF
    p.tos = nv
    return XT_CONTINUE


def _no_free(skb: SkBuff) -> None:
    return None


def _transport_csum_ok(skb: SkBuff, p: _Pkt) -> bool:
    """nf_reject_verify_csum() and nf_ip_checksum(): whether the transport checksum
    holds (or is not one nf_send_unreach checks)."""
    proto = p.proto
    if proto in (136, 33, 51, 50, 132):  # UDPLITE, DCCP, AH, ESP, SCTP
        return True
    if proto == IPPROTO_UDP:
        if len(p.l4) < 8:
            return False
        if not (p.l4[6] or p.l4[7]):
            return True
    seg = skb.payload()[p.thoff : p.tot_len]
    s = csum_partial(seg)
    if proto in (IPPROTO_UDP, IPPROTO_TCP):
        s = csum_tcpudp_nofold(p.saddr, p.daddr, len(seg), proto, s)
    return s == 0xFFFF


# nf_log_syslog.c: the packet dump a LOG rule writes.

_TCP_FLAG_NAMES: Final = (
    (0x20, "URG"),
    (0x10, "ACK"),
    (0x08, "PSH"),
    (0x04, "RST"),
    (0x02, "SYN"),
    (0x01, "FIN"),
)


def format_log_line(t: LogTarget, skb: SkBuff, in_name: str, out_name: str, has_in: bool) -> str:
    """nf_log_ip_packet(): prefix, IN=/OUT=, the MAC header of a received packet, then
    dump_ipv4_packet(); a MARK= when the skb has one. Fields end in a space, as in the
    kernel's line."""
    parts = [f"{t.prefix}IN={in_name} OUT={out_name} "]
    if has_in:
        parts.append(_dump_mac_header(t, skb))
    data = skb.payload()
    parts.append(_dump_ipv4_packet(t, data, 0))
    if skb.mark:
        parts.append(f"MARK=0x{skb.mark:x} ")
    return "".join(parts)


def _dump_mac_header(t: LogTarget, skb: SkBuff) -> str:
    mh, nh = skb.mac_header, skb.network_header
    if mh in (HEADER_UNSET, nh) or mh + 14 > len(skb.head):
        return "MAC= "
    mac = bytes(skb.head[mh : mh + 14])
    if t.logflags & NF_LOG_MACDECODE:
        return (
            f"MACSRC={mac[6:12].hex(':')} MACDST={mac[0:6].hex(':')} MACPROTO={mac[12] << 8 | mac[13]:04x} "
        )
    return f"MAC={mac.hex(':')} "


def _ip(addr: int) -> str:
    return f"{addr >> 24}.{(addr >> 16) & 0xFF}.{(addr >> 8) & 0xFF}.{addr & 0xFF}"


def _dump_ipv4_packet(t: LogTarget, data: bytes, iphoff: int) -> str:
    if len(data) < iphoff + 20:
        return f"TRUNCATED={len(data) - iphoff} "
    ver_ihl, tos, tot_len, ident, frag_off, ttl, proto, _, saddr, daddr = _HDR.unpack_from(data, iphoff)
    out = [
        f"SRC={_ip(saddr)} DST={_ip(daddr)} ",
        f"LEN={tot_len} TOS=0x{tos & 0x1E:02X} PREC=0x{tos & 0xE0:02X} TTL={ttl} ID={ident} ",
    ]
    if frag_off & IP_CE:
        out.append("CE ")
    if frag_off & IP_DF:
        out.append("DF ")
    if frag_off & IP_MF:
        out.append("MF ")
    if frag_off & IP_OFFSET:
        out.append(f"FRAG:{frag_off & IP_OFFSET} ")
    ihl = (ver_ihl & 0x0F) << 2
    if t.logflags & NF_LOG_IPOPT and ihl > 20:
        out.append(f"OPT ({data[iphoff + 20 : iphoff + ihl].hex().upper()}) ")
    th = iphoff + ihl
    fragment = frag_off & IP_OFFSET
    if proto == IPPROTO_UDP or proto == 136:
        out.append("PROTO=UDP " if proto == IPPROTO_UDP else "PROTO=UDPLITE ")
        if not fragment:
            if len(data) < th + 8:
                out.append(f"INCOMPLETE [{len(data) - th} bytes] ")
                return "".join(out)
            sp, dp, ulen = struct.unpack_from("!HHH", data, th)
            out.append(f"SPT={sp} DPT={dp} LEN={ulen} ")
    elif proto == IPPROTO_TCP:
        out.append("PROTO=TCP ")
        if not fragment:
            if len(data) < th + 20:
                out.append(f"INCOMPLETE [{len(data) - th} bytes] ")
                return "".join(out)
            sp, dp, seq, ack, off_res, flags, window, _, urg = struct.unpack_from("!HHIIBBHHH", data, th)
            out.append(f"SPT={sp} DPT={dp} ")
            if t.logflags & NF_LOG_TCPSEQ:
                out.append(f"SEQ={seq} ACK={ack} ")
            out.append(f"WINDOW={window} RES=0x{off_res & 0x0E:02x} ")
            out.extend(f"{name} " for bit, name in _TCP_FLAG_NAMES if flags & bit)
            out.append(f"URGP={urg} ")
    elif proto == IPPROTO_ICMP:
        out.append("PROTO=ICMP ")
        if not fragment:
            if len(data) < th + 4:
                out.append(f"INCOMPLETE [{len(data) - th} bytes] ")
                return "".join(out)
            itype, code = data[th], data[th + 1]
            out.append(f"TYPE={itype} CODE={code} ")
            if itype in (0, 8) and len(data) >= th + 8:  # echo reply / request
                iid, seq = struct.unpack_from("!HH", data, th + 4)
                out.append(f"ID={iid} SEQ={seq} ")
            elif itype in (3, 4, 5, 11, 12) and not iphoff:
                # Errors quote the offending header: dumped once, in brackets.
                if itype == 12 and len(data) >= th + 5:
                    out.append(f"PARAMETER={data[th + 4]} ")
                elif itype == 5 and len(data) >= th + 8:
                    out.append(f"GATEWAY={_ip(struct.unpack_from('!I', data, th + 4)[0])} ")
                out.append("[")
                out.append(_dump_ipv4_packet(t, data, th + 8))
                out.append("] ")
                if itype == 3 and code == 4 and len(data) >= th + 8:
                    out.append(f"MTU={struct.unpack_from('!H', data, th + 6)[0]} ")
    else:
        out.append(f"PROTO={proto} ")
    return "".join(out)
