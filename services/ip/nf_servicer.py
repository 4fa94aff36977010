"""gRPC adapter for netfilter: the NetfilterService RPCs over services/ip/netfilter.py
and services/ip/nfqueue.py.

Rules cross as NfRule messages and become RuleSpecs here; a message that cannot be a
rule (a port above 65535, an enum left unspecified) is INVALID_ARGUMENT, while a rule
the kernel refuses comes back as errno and message in the response, as iptables would
print them."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, NoReturn, TypeVar

import grpc

from services.core import errno as E
from services.ip.netfilter import (
    IPT_F_FRAG,
    IPT_ICMP_ADMIN_PROHIBITED,
    IPT_ICMP_HOST_PROHIBITED,
    IPT_ICMP_HOST_UNREACHABLE,
    IPT_ICMP_INV,
    IPT_ICMP_NET_PROHIBITED,
    IPT_ICMP_NET_UNREACHABLE,
    IPT_ICMP_PORT_UNREACHABLE,
    IPT_ICMP_PROT_UNREACHABLE,
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
    NF_ACCEPT,
    NF_DROP,
    NF_QUEUE,
    NF_REPEAT,
    NF_STOP,
    NF_VERDICT_QBITS,
    NFQ_FLAG_BYPASS,
    NFQ_FLAG_CPU_FANOUT,
    XT_MULTIPORT_DESTINATION,
    XT_MULTIPORT_EITHER,
    XT_MULTIPORT_SOURCE,
    XT_TCP_INV_FLAGS,
    XT_UDP_INV_DSTPT,
    XT_UDP_INV_SRCPT,
    Chain,
    IcmpMatch,
    IpSpec,
    Jump,
    LengthMatch,
    LogTarget,
    MarkMatch,
    MarkTarget,
    Match,
    MultiportMatch,
    Netfilter,
    NfError,
    NfqueueTarget,
    RejectTarget,
    RuleSpec,
    Standard,
    Table,
    Target,
    TcpMatch,
    TosMatch,
    TosTarget,
    TraceTarget,
    TtlMatch,
    TtlTarget,
    UdpMatch,
)
from services.ip.nfqueue import (
    NFQ_QUEUE_MAXLEN_LIMIT,
    NFQA_CFG_F_FAIL_OPEN,
    NFQA_CFG_F_GSO,
    NFQNL_COPY_META,
    NFQNL_COPY_NONE,
    NFQNL_COPY_PACKET,
    NfqnlInstance,
    QueuedPacket,
    QueueError,
)
from stackemu.ip.v1 import netfilter_pb2 as pb
from stackemu.ip.v1 import netfilter_pb2_grpc

IFNAMSIZ: Final = 16
# A listener's stream holds at most this many bytes of packets not yet sent (the
# netlink socket's receive buffer in the kernel); beyond it packets count as
# queue_user_dropped, or are accepted with fail-open.
QUEUE_STREAM_BYTES: Final = 8 * 1024 * 1024
# ... and at most this many messages.
QUEUE_STREAM_MSGS: Final = NFQ_QUEUE_MAXLEN_LIMIT + 1024

_TTL_MODES: Final = {
    pb.TTL_MODE_EQ: IPT_TTL_EQ,
    pb.TTL_MODE_NE: IPT_TTL_NE,
    pb.TTL_MODE_LT: IPT_TTL_LT,
    pb.TTL_MODE_GT: IPT_TTL_GT,
}
_TTL_TARGET_MODES: Final = {
    pb.TTL_TARGET_MODE_SET: IPT_TTL_SET,
    pb.TTL_TARGET_MODE_INC: IPT_TTL_INC,
    pb.TTL_TARGET_MODE_DEC: IPT_TTL_DEC,
}
_MULTIPORT: Final = {
    pb.MULTIPORT_DIRECTION_SOURCE: XT_MULTIPORT_SOURCE,
    pb.MULTIPORT_DIRECTION_DESTINATION: XT_MULTIPORT_DESTINATION,
    pb.MULTIPORT_DIRECTION_EITHER: XT_MULTIPORT_EITHER,
}
_STANDARD: Final = {
    pb.STANDARD_TARGET_ACCEPT: "ACCEPT",
    pb.STANDARD_TARGET_DROP: "DROP",
    pb.STANDARD_TARGET_QUEUE: "QUEUE",
    pb.STANDARD_TARGET_RETURN: "RETURN",
}
_REJECT: Final = {
    pb.REJECT_WITH_UNSPECIFIED: IPT_ICMP_PORT_UNREACHABLE,
    pb.REJECT_WITH_ICMP_NET_UNREACHABLE: IPT_ICMP_NET_UNREACHABLE,
    pb.REJECT_WITH_ICMP_HOST_UNREACHABLE: IPT_ICMP_HOST_UNREACHABLE,
    pb.REJECT_WITH_ICMP_PROTO_UNREACHABLE: IPT_ICMP_PROT_UNREACHABLE,
    pb.REJECT_WITH_ICMP_PORT_UNREACHABLE: IPT_ICMP_PORT_UNREACHABLE,
    pb.REJECT_WITH_ICMP_NET_PROHIBITED: IPT_ICMP_NET_PROHIBITED,
    pb.REJECT_WITH_ICMP_HOST_PROHIBITED: IPT_ICMP_HOST_PROHIBITED,
    pb.REJECT_WITH_ICMP_ADMIN_PROHIBITED: IPT_ICMP_ADMIN_PROHIBITED,
    pb.REJECT_WITH_TCP_RESET: IPT_TCP_RESET,
}
_COPY_MODES: Final = {
    pb.COPY_MODE_UNSPECIFIED: NFQNL_COPY_PACKET,
    pb.COPY_MODE_NONE: NFQNL_COPY_NONE,
    pb.COPY_MODE_META: NFQNL_COPY_META,
    pb.COPY_MODE_PACKET: NFQNL_COPY_PACKET,
}
_VERDICTS: Final = {
    pb.NF_VERDICT_DROP: NF_DROP,
    pb.NF_VERDICT_ACCEPT: NF_ACCEPT,
    pb.NF_VERDICT_REPEAT: NF_REPEAT,
    pb.NF_VERDICT_STOP: NF_STOP,
    pb.NF_VERDICT_QUEUE: NF_QUEUE,
}


K = TypeVar("K")
V = TypeVar("V")


def _reverse(d: dict[K, V]) -> dict[V, K]:
    return {v: k for k, v in d.items()}


_TTL_MODES_PB: Final = _reverse(_TTL_MODES)
_TTL_TARGET_MODES_PB: Final = _reverse(_TTL_TARGET_MODES)
_MULTIPORT_PB: Final = _reverse(_MULTIPORT)
_STANDARD_PB: Final = {v: k for k, v in _STANDARD.items()}
_REJECT_PB: Final = {v: k for k, v in _REJECT.items() if k != pb.REJECT_WITH_UNSPECIFIED}
_COPY_MODES_PB: Final = {
    NFQNL_COPY_NONE: pb.COPY_MODE_NONE,
    NFQNL_COPY_META: pb.COPY_MODE_META,
    NFQNL_COPY_PACKET: pb.COPY_MODE_PACKET,
}


class BadRule(ValueError):
    """An NfRule that cannot be a rule: the RPC fails with INVALID_ARGUMENT."""


def _u(value: int, limit: int, what: str) -> int:
    if value > limit:
        raise BadRule(f"{what} {value} is above {limit}")
    return value


def _ports(msg: pb.UdpMatch | pb.TcpMatch, field: str, what: str) -> tuple[int, int]:
    if not msg.HasField(field):
        return (0, 0xFFFF)
    r: pb.PortRange = getattr(msg, field)
    return (_u(r.min, 0xFFFF, f"{what} port"), _u(r.max, 0xFFFF, f"{what} port"))


def _iface(name: str, what: str) -> str:
    if len(name) >= IFNAMSIZ:
        raise BadRule(f"{what} interface name {name!r} is longer than {IFNAMSIZ - 1} characters")
    if "\0" in name:
        raise BadRule(f"{what} interface name {name!r} contains a NUL")
    return name


def match_from_proto(m: pb.NfMatch) -> Match:
    kind = m.WhichOneof("match")
    if kind == "udp" or kind == "tcp":
        src: pb.UdpMatch | pb.TcpMatch = getattr(m, kind)
        inv = (XT_UDP_INV_SRCPT if src.sport_invert else 0) | (XT_UDP_INV_DSTPT if src.dport_invert else 0)
        spts, dpts = _ports(src, "sport", "source"), _ports(src, "dport", "destination")
        if isinstance(src, pb.TcpMatch):
            inv |= XT_TCP_INV_FLAGS if src.flags_invert else 0
            fmask = _u(src.flags_mask, 0xFF, "TCP flags mask")
            fcmp = _u(src.flags_compare, 0xFF, "TCP flags")
            return TcpMatch(spts, dpts, fmask, fcmp, inv)
        return UdpMatch(spts, dpts, inv)
    if kind == "icmp":
        i = m.icmp
        return IcmpMatch(
            _u(i.type, 0xFF, "ICMP type"),
            (_u(i.code_min, 0xFF, "ICMP code"), _u(i.code_max, 0xFF, "ICMP code")),
            IPT_ICMP_INV if i.invert else 0,
        )
    if kind == "mark":
        return MarkMatch(m.mark.mark, m.mark.mask, m.mark.invert)
    if kind == "tos":
        return TosMatch(_u(m.tos.value, 0xFF, "TOS"), _u(m.tos.mask, 0xFF, "TOS mask"), m.tos.invert)
    if kind == "ttl":
        if m.ttl.mode not in _TTL_MODES:
            raise BadRule("ttl match: mode is unspecified")
        return TtlMatch(_TTL_MODES[m.ttl.mode], _u(m.ttl.value, 0xFF, "TTL"))
    if kind == "length":
        ln = m.length
        return LengthMatch(_u(ln.min, 0xFFFF, "length"), _u(ln.max, 0xFFFF, "length"), ln.invert)
    if kind == "multiport":
        mp = m.multiport
        if mp.direction not in _MULTIPORT:
            raise BadRule("multiport match: direction is unspecified")
        ports = tuple((_u(p.min, 0xFFFF, "port"), _u(p.max, 0xFFFF, "port")) for p in mp.ports)
        return MultiportMatch(_MULTIPORT[mp.direction], ports, mp.invert)
    raise BadRule("a match has no extension set")


def target_from_proto(t: pb.NfTarget) -> Target | None:
    kind = t.WhichOneof("target")
    if kind is None:
        return None
    if kind == "standard":
        if t.standard not in _STANDARD:
            raise BadRule("standard target is unspecified")
        return Standard(_STANDARD[t.standard])
    if kind in ("jump", "goto_chain"):
        name = t.jump if kind == "jump" else t.goto_chain
        if not name:
            raise BadRule(f"{kind} names no chain")
        return Jump(name, kind == "goto_chain")
    if kind == "reject":
        if t.reject.reject_with not in _REJECT:
            raise BadRule(f"REJECT: unknown reject-with {t.reject.reject_with}")
        return RejectTarget(_REJECT[t.reject.reject_with])
    if kind == "nfqueue":
        q = t.nfqueue
        flags = (NFQ_FLAG_BYPASS if q.bypass else 0) | (NFQ_FLAG_CPU_FANOUT if q.cpu_fanout else 0)
        total = _u(q.queues_total, 0x10000, "NFQUEUE queues_total") or 1
        return NfqueueTarget(_u(q.queue_num, 0xFFFF, "NFQUEUE queue number"), total, flags)
    if kind == "mark":
        return MarkTarget(t.mark.mark, t.mark.mask)
    if kind == "ttl":
        if t.ttl.mode not in _TTL_TARGET_MODES:
            raise BadRule("TTL target: mode is unspecified")
        return TtlTarget(_TTL_TARGET_MODES[t.ttl.mode], _u(t.ttl.value, 0xFF, "TTL"))
    if kind == "tos":
        return TosTarget(_u(t.tos.value, 0xFF, "TOS"), _u(t.tos.mask, 0xFF, "TOS mask"))
    if kind == "trace":
        return TraceTarget()
    assert kind == "log"
    return LogTarget(t.log.level, t.log.flags, t.log.prefix)


def rule_from_proto(r: pb.NfRule) -> tuple[RuleSpec, tuple[int, int]]:
    """An NfRule as the RuleSpec iptables would send (addresses masked), and its -c."""
    if r.protocol > 0xFF:
        raise BadRule(f"protocol {r.protocol} is above 255")
    inv = 0
    for flag, on in (
        (IPT_INV_SRCIP, r.src_invert),
        (IPT_INV_DSTIP, r.dst_invert),
        (IPT_INV_VIA_IN, r.in_invert),
        (IPT_INV_VIA_OUT, r.out_invert),
        (IPT_INV_PROTO, r.protocol_invert),
    ):
        if on:
            inv |= flag
    flags = 0
    if r.fragment == pb.NF_FRAGMENT_NON_FIRST:
        flags = IPT_F_FRAG
    elif r.fragment == pb.NF_FRAGMENT_NOT_NON_FIRST:
        flags = IPT_F_FRAG
        inv |= IPT_INV_FRAG
    elif r.fragment != pb.NF_FRAGMENT_UNSPECIFIED:
        raise BadRule(f"fragment {r.fragment} is not an NfFragment")
    ip = IpSpec(
        src=r.src & r.src_mask,
        smsk=r.src_mask,
        dst=r.dst & r.dst_mask,
        dmsk=r.dst_mask,
        iniface=_iface(r.in_interface, "in"),
        outiface=_iface(r.out_interface, "out"),
        proto=r.protocol,
        flags=flags,
        invflags=inv,
    )
    matches = tuple(match_from_proto(m) for m in r.matches)
    target = target_from_proto(r.target) if r.HasField("target") else None
    return RuleSpec(ip, matches, target), (r.counters.packets, r.counters.bytes)


def _port_range(lo: int, hi: int) -> pb.PortRange | None:
    return None if (lo, hi) == (0, 0xFFFF) else pb.PortRange(min=lo, max=hi)


def match_to_proto(m: Match) -> pb.NfMatch:
    if isinstance(m, UdpMatch | TcpMatch):
        sport, dport = _port_range(*m.spts), _port_range(*m.dpts)
        sinv, dinv = bool(m.invflags & XT_UDP_INV_SRCPT), bool(m.invflags & XT_UDP_INV_DSTPT)
        if isinstance(m, TcpMatch):
            return pb.NfMatch(
                tcp=pb.TcpMatch(
                    sport=sport,
                    sport_invert=sinv,
                    dport=dport,
                    dport_invert=dinv,
                    flags_mask=m.flg_mask,
                    flags_compare=m.flg_cmp,
                    flags_invert=bool(m.invflags & XT_TCP_INV_FLAGS),
                )
            )
        return pb.NfMatch(udp=pb.UdpMatch(sport=sport, sport_invert=sinv, dport=dport, dport_invert=dinv))
    if isinstance(m, IcmpMatch):
        return pb.NfMatch(
            icmp=pb.IcmpMatch(
                type=m.type, code_min=m.code[0], code_max=m.code[1], invert=bool(m.invflags & IPT_ICMP_INV)
            )
        )
    if isinstance(m, MarkMatch):
        return pb.NfMatch(mark=pb.MarkMatch(mark=m.mark, mask=m.mask, invert=m.invert))
    if isinstance(m, TosMatch):
        return pb.NfMatch(tos=pb.TosMatch(value=m.tos_value, mask=m.tos_mask, invert=m.invert))
    if isinstance(m, TtlMatch):
        return pb.NfMatch(ttl=pb.TtlMatch(mode=_TTL_MODES_PB[m.mode], value=m.ttl))
    if isinstance(m, LengthMatch):
        return pb.NfMatch(length=pb.LengthMatch(min=m.min, max=m.max, invert=m.invert))
    return pb.NfMatch(
        multiport=pb.MultiportMatch(
            direction=_MULTIPORT_PB[m.flags],
            ports=[pb.PortRange(min=lo, max=hi) for lo, hi in m.ports],
            invert=m.invert,
        )
    )


def target_to_proto(t: Target) -> pb.NfTarget:
    if isinstance(t, Standard):
        return pb.NfTarget(standard=_STANDARD_PB[t.verdict])
    if isinstance(t, Jump):
        return pb.NfTarget(goto_chain=t.chain) if t.goto else pb.NfTarget(jump=t.chain)
    if isinstance(t, RejectTarget):
        return pb.NfTarget(reject=pb.RejectTarget(reject_with=_REJECT_PB[t.with_]))
    if isinstance(t, NfqueueTarget):
        return pb.NfTarget(
            nfqueue=pb.NfqueueTarget(
                queue_num=t.queuenum,
                queues_total=t.queues_total,
                bypass=bool(t.flags & NFQ_FLAG_BYPASS),
                cpu_fanout=bool(t.flags & NFQ_FLAG_CPU_FANOUT),
            )
        )
    if isinstance(t, MarkTarget):
        return pb.NfTarget(mark=pb.MarkTarget(mark=t.mark, mask=t.mask))
    if isinstance(t, TtlTarget):
        return pb.NfTarget(ttl=pb.TtlTarget(mode=_TTL_TARGET_MODES_PB[t.mode], value=t.ttl))
    if isinstance(t, TosTarget):
        return pb.NfTarget(tos=pb.TosTarget(value=t.tos_value, mask=t.tos_mask))
    if isinstance(t, TraceTarget):
        return pb.NfTarget(trace=pb.TraceTarget())
    return pb.NfTarget(log=pb.LogTarget(level=t.level, flags=t.logflags, prefix=t.prefix))


def rule_to_proto(spec: RuleSpec, pcnt: int = 0, bcnt: int = 0) -> pb.NfRule:
    ip = spec.ip
    inv = ip.invflags
    fragment = pb.NF_FRAGMENT_UNSPECIFIED
    if ip.flags & IPT_F_FRAG:
        fragment = pb.NF_FRAGMENT_NOT_NON_FIRST if inv & IPT_INV_FRAG else pb.NF_FRAGMENT_NON_FIRST
    r = pb.NfRule(
        src=ip.src,
        src_mask=ip.smsk,
        src_invert=bool(inv & IPT_INV_SRCIP),
        dst=ip.dst,
        dst_mask=ip.dmsk,
        dst_invert=bool(inv & IPT_INV_DSTIP),
        in_interface=ip.iniface,
        in_invert=bool(inv & IPT_INV_VIA_IN),
        out_interface=ip.outiface,
        out_invert=bool(inv & IPT_INV_VIA_OUT),
        protocol=ip.proto,
        protocol_invert=bool(inv & IPT_INV_PROTO),
        fragment=fragment,
        matches=[match_to_proto(m) for m in spec.matches],
        counters=pb.NfCounters(packets=pcnt, bytes=bcnt),
    )
    if spec.target is not None:
        r.target.CopyFrom(target_to_proto(spec.target))
    return r


def chain_to_proto(nf: Netfilter, table: Table, chain: Chain, rules: bool) -> pb.NfChain:
    c = pb.NfChain(name=chain.name, builtin=chain.builtin)
    if chain.builtin:
        c.policy = pb.NF_POLICY_ACCEPT if nf.policy_name(chain) == "ACCEPT" else pb.NF_POLICY_DROP
        c.policy_counters.CopyFrom(pb.NfCounters(packets=chain.pcnt, bytes=chain.bcnt))
    else:
        c.references = table.references(chain)
    if rules:
        c.rules.extend(rule_to_proto(r.spec, r.pcnt, r.bcnt) for r in chain.rules)
    return c


def queued_packet_to_proto(p: QueuedPacket) -> pb.QueuedPacket:
    return pb.QueuedPacket(
        id=p.id,
        hook=p.hook,
        hw_protocol=p.hw_protocol,
        indev=p.indev,
        indev_name=p.indev_name,
        outdev=p.outdev,
        outdev_name=p.outdev_name,
        mark=p.mark,
        priority=p.priority,
        tstamp_ns=p.tstamp_ns,
        payload=p.payload,
        cap_len=p.cap_len,
        skb_info=p.skb_info,
    )


class _StreamListener:
    """A Queue stream as nfnetlink_queue's peer: packet messages wait here until the
    stream sends them, within a byte budget (the netlink receive buffer)."""

    def __init__(self) -> None:
        self._out: deque[tuple[pb.QueueResponse, int]] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self.closed = False

    def deliver(self, pkt: QueuedPacket) -> bool:
        n = len(pkt.payload)
        if self.closed or len(self._out) >= QUEUE_STREAM_MSGS or self._bytes + n > QUEUE_STREAM_BYTES:
            return False
        self._out.append((pb.QueueResponse(packet=queued_packet_to_proto(pkt)), n))
        self._bytes += n
        self._ready.set()
        return True

    async def put(self, msg: pb.QueueResponse) -> None:
        """A reply to the listener's own message: waits for room rather than drop it."""
        while len(self._out) >= QUEUE_STREAM_MSGS and not self.closed:
            self._space.clear()
            await self._space.wait()
        self._out.append((msg, 0))
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()
        self._space.set()

    async def get(self) -> pb.QueueResponse | None:
        while not self._out:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        msg, n = self._out.popleft()
        self._bytes -= n
        self._space.set()
        return msg


class NetfilterServicer(netfilter_pb2_grpc.NetfilterServiceServicer):
    """Serves one host's Netfilter. `flush` ships what reinjected packets produced (the
    layer's outgoing lists) to the neighbours; it runs after every verdict."""

    def __init__(self, nf: Netfilter, flush: Callable[[], Awaitable[None]]) -> None:
        self.nf = nf
        self._flush = flush

    async def _rule(
        self, msg: pb.NfRule, context: grpc.aio.ServicerContext
    ) -> tuple[RuleSpec, tuple[int, int]]:
        try:
            return rule_from_proto(msg)
        except BadRule as e:
            await _abort(context, str(e))

    async def ListChains(
        self, request: pb.ListChainsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListChainsResponse:
        nf = self.nf
        try:
            table = nf.table(request.table)
            if request.chain:
                chain = table.chains.get(request.chain)
                if chain is None:
                    raise NfError(E.ENOENT, "No chain/target/match by that name")
                chains = [chain]
            else:
                chains = table.ordered_chains()
        except NfError as e:
            return pb.ListChainsResponse(errno=e.errno, message=_message(e))
        resp = pb.ListChainsResponse(
            chains=[chain_to_proto(nf, table, c, not request.chains_only) for c in chains]
        )
        if request.zero:
            nf.zero(request.table, request.chain)
        return resp

    async def AppendRule(
        self, request: pb.AppendRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.AppendRuleResponse:
        spec, counters = await self._rule(request.rule, context)
        try:
            self.nf.append(request.table, request.chain, spec, counters)
        except NfError as e:
            return pb.AppendRuleResponse(errno=e.errno, message=_message(e), kernel_log=e.kernel_log)
        return pb.AppendRuleResponse()

    async def InsertRule(
        self, request: pb.InsertRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.InsertRuleResponse:
        spec, counters = await self._rule(request.rule, context)
        try:
            self.nf.insert(request.table, request.chain, request.rulenum or 1, spec, counters)
        except NfError as e:
            return pb.InsertRuleResponse(errno=e.errno, message=_message(e), kernel_log=e.kernel_log)
        return pb.InsertRuleResponse()

    async def DeleteRule(
        self, request: pb.DeleteRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteRuleResponse:
        which = request.WhichOneof("which")
        if which is None:
            await _abort(context, "DeleteRule needs a rule or a rulenum")
        try:
            if which == "rule":
                spec, _ = await self._rule(request.rule, context)
                self.nf.delete(request.table, request.chain, spec)
            else:
                self.nf.delete_num(request.table, request.chain, request.rulenum)
        except NfError as e:
            return pb.DeleteRuleResponse(errno=e.errno, message=_message(e))
        return pb.DeleteRuleResponse()

    async def ReplaceRule(
        self, request: pb.ReplaceRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplaceRuleResponse:
        spec, counters = await self._rule(request.rule, context)
        try:
            self.nf.replace(request.table, request.chain, request.rulenum, spec, counters)
        except NfError as e:
            return pb.ReplaceRuleResponse(errno=e.errno, message=_message(e), kernel_log=e.kernel_log)
        return pb.ReplaceRuleResponse()

    async def CheckRule(
        self, request: pb.CheckRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckRuleResponse:
        spec, _ = await self._rule(request.rule, context)
        try:
            self.nf.check(request.table, request.chain, spec)
        except NfError as e:
            return pb.CheckRuleResponse(errno=e.errno, message=_message(e))
        return pb.CheckRuleResponse()

    async def FlushChain(
        self, request: pb.FlushChainRequest, context: grpc.aio.ServicerContext
    ) -> pb.FlushChainResponse:
        try:
            chains = self.nf.flush(request.table, request.chain)
        except NfError as e:
            return pb.FlushChainResponse(errno=e.errno, message=_message(e))
        return pb.FlushChainResponse(chains=chains)

    async def ZeroCounters(
        self, request: pb.ZeroCountersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ZeroCountersResponse:
        if request.rulenum and not request.chain:
            await _abort(context, "a rulenum needs a chain")
        try:
            chains = self.nf.zero(request.table, request.chain, request.rulenum)
        except NfError as e:
            return pb.ZeroCountersResponse(errno=e.errno, message=_message(e))
        return pb.ZeroCountersResponse(chains=chains)

    async def SetPolicy(
        self, request: pb.SetPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetPolicyResponse:
        counters = None
        if request.HasField("counters"):
            counters = (request.counters.packets, request.counters.bytes)
        try:
            self.nf.set_policy(request.table, request.chain, request.policy, counters)
        except NfError as e:
            return pb.SetPolicyResponse(errno=e.errno, message=_message(e))
        return pb.SetPolicyResponse()

    async def NewChain(
        self, request: pb.NewChainRequest, context: grpc.aio.ServicerContext
    ) -> pb.NewChainResponse:
        try:
            self.nf.new_chain(request.table, request.name)
        except NfError as e:
            return pb.NewChainResponse(errno=e.errno, message=_message(e))
        return pb.NewChainResponse()

    async def DeleteChain(
        self, request: pb.DeleteChainRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteChainResponse:
        try:
            chains = self.nf.delete_chain(request.table, request.name)
        except NfError as e:
            return pb.DeleteChainResponse(errno=e.errno, message=_message(e))
        return pb.DeleteChainResponse(chains=chains)

    async def RenameChain(
        self, request: pb.RenameChainRequest, context: grpc.aio.ServicerContext
    ) -> pb.RenameChainResponse:
        try:
            self.nf.rename_chain(request.table, request.old_name, request.new_name)
        except NfError as e:
            return pb.RenameChainResponse(errno=e.errno, message=_message(e))
        return pb.RenameChainResponse()

    async def ListQueues(
        self, request: pb.ListQueuesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListQueuesResponse:
        q = self.nf.queue
        return pb.ListQueuesResponse(
            queues=[_queue_stats(i) for i in sorted(q.instances.values(), key=lambda i: i.queue_num)],
            proc=q.proc(),
        )

    async def ReadLog(
        self, request: pb.ReadLogRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReadLogResponse:
        records = list(self.nf.log)
        if request.max:
            records = records[-request.max :]
        return pb.ReadLogResponse(
            lines=[pb.LogLine(ts_ns=r.ts_ns, level=r.level, text=r.text) for r in records]
        )

    # nfnetlink_queue.

    async def Queue(
        self, request_iterator: AsyncIterator[pb.QueueRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.QueueResponse]:
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        if first.WhichOneof("request") != "bind":
            await _abort(context, "the first Queue message must be a bind")
        b = first.bind
        if b.queue_num > 0xFFFF:
            await _abort(context, f"queue number {b.queue_num} is not in 0-65535")
        if b.copy_mode not in _COPY_MODES:
            await _abort(context, f"copy mode {b.copy_mode} is not a CopyMode")
        listener = _StreamListener()
        try:
            inst = self.nf.queue.bind(b.queue_num, listener)
        except QueueError as e:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"{e} (EBUSY)")
            raise AssertionError("unreachable") from None
        reader: asyncio.Task[None] | None = None
        try:
            inst.set_mode(_COPY_MODES[b.copy_mode], b.copy_range)
            if b.HasField("queue_maxlen"):
                inst.set_maxlen(b.queue_maxlen)
            flags = (NFQA_CFG_F_FAIL_OPEN if b.fail_open else 0) | (NFQA_CFG_F_GSO if b.gso else 0)
            inst.set_flags(flags, NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO)
            yield pb.QueueResponse(bound=_bound(inst))
            reader = asyncio.create_task(self._verdicts(requests, inst, listener))
            while (msg := await listener.get()) is not None:
                yield msg
        finally:
            listener.close()
            if reader is not None:
                reader.cancel()
            # nfqnl_rcv_nl_event(NETLINK_URELEASE) → instance_destroy: waiting packets go.
            self.nf.queue.unbind(inst)

    async def _verdicts(
        self, requests: AsyncIterator[pb.QueueRequest], inst: NfqnlInstance, listener: _StreamListener
    ) -> None:
        try:
            async for req in requests:
                if req.WhichOneof("request") != "verdict":
                    await listener.put(_verdict_error(0, E.EBUSY, f"queue {inst.queue_num} is bound already"))
                    continue
                v = req.verdict
                err = self._verdict(inst, v)
                if err:
                    await listener.put(_verdict_error(v.id, -err, _VERDICT_ERRORS.get(-err, "")))
                await self._flush()
        finally:
            # The request stream ended: the listener is gone, as a closed socket is.
            listener.close()

    def _verdict(self, inst: NfqnlInstance, v: pb.PacketVerdict) -> int:
        if v.verdict not in _VERDICTS or v.requeue_num > 0xFFFF:
            return -E.EINVAL
        verdict = _VERDICTS[v.verdict]
        if verdict == NF_QUEUE:
            verdict |= v.requeue_num << NF_VERDICT_QBITS
        mark = v.mark if v.HasField("mark") else None
        q = self.nf.queue
        if v.batch:
            if v.HasField("payload"):
                return -E.EINVAL
            return q.verdict_batch(inst, v.id, verdict, mark)
        return q.verdict(inst, v.id, verdict, v.payload if v.HasField("payload") else None, mark)


_VERDICT_ERRORS: Final = {
    E.ENOENT: "no packet with this id is waiting for a verdict",
    E.EINVAL: "not a verdict (unspecified, a batch with a payload, or a requeue number above 65535)",
}


def _verdict_error(pkt_id: int, errno: int, message: str) -> pb.QueueResponse:
    return pb.QueueResponse(error=pb.VerdictError(id=pkt_id, errno=errno, message=message))


def _bound(inst: NfqnlInstance) -> pb.QueueBound:
    return pb.QueueBound(
        queue_num=inst.queue_num,
        queue_maxlen=inst.queue_maxlen,
        copy_mode=_COPY_MODES_PB[inst.copy_mode],
        copy_range=inst.copy_range,
        fail_open=bool(inst.flags & NFQA_CFG_F_FAIL_OPEN),
        gso=bool(inst.flags & NFQA_CFG_F_GSO),
    )


def _queue_stats(i: NfqnlInstance) -> pb.QueueStats:
    return pb.QueueStats(
        queue_num=i.queue_num,
        peer_portid=i.peer_portid,
        queue_total=i.queue_total,
        copy_mode=_COPY_MODES_PB[i.copy_mode],
        copy_range=i.copy_range,
        queue_dropped=i.queue_dropped,
        queue_user_dropped=i.queue_user_dropped,
        id_sequence=i.id_sequence,
        queue_maxlen=i.queue_maxlen,
        fail_open=bool(i.flags & NFQA_CFG_F_FAIL_OPEN),
        gso=bool(i.flags & NFQA_CFG_F_GSO),
    )


def _message(e: NfError) -> str:
    """The response's message: iptables' text; for a table that is not built, why."""
    if e.message.startswith("Table does not exist") and e.kernel_log:
        return f"{e.message}; {e.kernel_log}"
    return e.message


async def _abort(context: grpc.aio.ServicerContext, message: str) -> NoReturn:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
    raise AssertionError("unreachable")
