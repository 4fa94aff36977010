"""NFQUEUE: nfnetlink_queue in-process (ids, verdicts, reinjection through the right
tables, queue and listener overflow, fail-open, bypass, the listener going away) and
the NetfilterService over grpc.aio (rule RPCs, the Queue stream)."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import grpc
import pytest

from services.core import errno as E
from services.core.skbuff import CHECKSUM_NONE, CHECKSUM_PARTIAL, SkBuff
from services.core.wire.udp import udp_checksum
from services.ip.netfilter import (
    NF_ACCEPT,
    NF_DROP,
    NF_INET_LOCAL_IN,
    NF_INET_LOCAL_OUT,
    NF_INET_PRE_ROUTING,
    NF_QUEUE,
    NF_REPEAT,
    NF_STOP,
    NFQ_FLAG_BYPASS,
    NFQ_FLAG_CPU_FANOUT,
    IpSpec,
    LogTarget,
    MarkMatch,
    NfqueueTarget,
    RuleSpec,
    Standard,
    UdpMatch,
)
from services.ip.nf_servicer import NetfilterServicer
from services.ip.nfqueue import (
    NFQA_CFG_F_FAIL_OPEN,
    NFQA_CFG_F_GSO,
    NFQA_SKB_CSUMNOTREADY,
    NFQA_SKB_GSO,
    NFQNL_COPY_META,
    NFQNL_COPY_PACKET,
    NfqnlInstance,
    QueuedPacket,
    QueueError,
)
from stackemu.ip.v1 import netfilter_pb2 as pb
from stackemu.ip.v1 import netfilter_pb2_grpc
from tests.core.test_gso import gso_skb
from tests.services.test_netfilter import B, Harness, rule, udp


class Listener:
    def __init__(self, room: bool = True) -> None:
        self.got: list[QueuedPacket] = []
        self.room = room

    def deliver(self, pkt: QueuedPacket) -> bool:
        if not self.room:
            return False
        self.got.append(pkt)
        return True


def queue_rule(num: int = 0, total: int = 1, flags: int = 0, dport: int | None = None) -> RuleSpec:
    if dport is None:
        return rule(NfqueueTarget(num, total, flags))
    return RuleSpec(IpSpec(proto=17), (UdpMatch(dpts=(dport, dport)),), NfqueueTarget(num, total, flags))


def bind(
    h: Harness, num: int = 0, mode: int = NFQNL_COPY_PACKET, flags: int = 0
) -> tuple[NfqnlInstance, Listener]:
    listener = Listener()
    inst = h.nf.queue.bind(num, listener)
    inst.set_mode(mode, 0)
    inst.set_flags(flags, NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO)
    return inst, listener


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_nobody_listening_drops_in_nf_queue(h: Harness) -> None:
    h.add("INPUT", queue_rule(0))
    skb = udp()
    assert h.hook(NF_INET_LOCAL_IN, skb) == 0
    assert h.out == []
    assert h.dropped() == {("NOT_SPECIFIED", "nf_queue"): 1}
    assert h.counts("INPUT") == [(1, skb.len)]


def test_bypass_goes_on_with_the_next_table_not_the_next_rule(h: Harness) -> None:
    h.add("INPUT", queue_rule(0, flags=NFQ_FLAG_BYPASS), "mangle")
    h.add("INPUT", rule(Standard("ACCEPT")), "mangle")
    h.add("INPUT", RuleSpec(IpSpec(proto=17), (UdpMatch(dpts=(53, 53)),), Standard("DROP")))
    h.hook(NF_INET_LOCAL_IN, udp(9000))
    h.hook(NF_INET_LOCAL_IN, udp(53))
    assert len(h.out) == 1
    assert h.counts("INPUT", "mangle") == [(2, 2 * udp().len), (0, 0)]
    assert h.dropped() == {("NETFILTER_DROP", "nf_hook_slow"): 1}


def test_copy_mode_none_refuses_packets(h: Harness) -> None:
    h.add("INPUT", queue_rule(0))
    listener = Listener()
    h.nf.queue.bind(0, listener)  # the kernel's default mode: NFQNL_COPY_NONE
    h.hook(NF_INET_LOCAL_IN, udp())
    assert listener.got == []
    assert h.dropped() == {("NOT_SPECIFIED", "nf_queue"): 1}


def test_a_queued_packet_and_an_accept(h: Harness) -> None:
    h.add("INPUT", queue_rule(3))
    inst, listener = bind(h, 3)
    skb = udp(9000, b"keep")
    skb.tstamp = 1_700_000_000_123_456_789
    skb.mark = 0x11
    assert h.hook(NF_INET_LOCAL_IN, skb, indev=2) == 0
    assert h.out == []
    (pkt,) = listener.got
    assert pkt == QueuedPacket(
        queue_num=3,
        id=1,
        hook=NF_INET_LOCAL_IN,
        hw_protocol=0x0800,
        indev=2,
        indev_name="eth0",
        outdev=0,
        outdev_name="",
        mark=0x11,
        priority=0,
        tstamp_ns=skb.tstamp,
        payload=skb.payload(),
        cap_len=0,
        skb_info=0x4,  # NFQA_SKB_CSUM_NOTVERIFIED: nobody checked the UDP checksum yet
    )
    assert inst.queue_total == 1
    assert h.nf.queue.verdict(inst, 1, NF_ACCEPT) == 0
    assert h.out == [skb] and inst.queue_total == 0
    h.hook(NF_INET_LOCAL_IN, udp())
    assert listener.got[1].id == 2
    assert h.nf.queue.proc() == "    3      1     1 2 65531     0     0        2  1\n"


def test_drop_verdict_and_the_verdicts_that_are_not(h: Harness) -> None:
    h.add("INPUT", queue_rule(0))
    inst, _ = bind(h)
    h.hook(NF_INET_LOCAL_IN, udp())
    q = h.nf.queue
    assert q.verdict(inst, 7, NF_ACCEPT) == -E.ENOENT
    assert q.verdict(inst, 1, 2) == -E.EINVAL  # NF_STOLEN
    assert q.verdict(inst, 1, 6) == -E.EINVAL
    assert inst.queue_total == 1
    assert q.verdict(inst, 1, NF_DROP) == 0
    assert q.verdict(inst, 1, NF_DROP) == -E.ENOENT
    assert h.out == []
    assert h.dropped() == {("NOT_SPECIFIED", "nfqnl_reinject"): 1}


def _udp_bytes(payload: bytes, dport: int = 9000) -> bytes:
    return udp(dport, payload).payload()


def test_a_replacement_packet_and_a_mark(h: Harness) -> None:
    h.add("INPUT", queue_rule(0))
    inst, _ = bind(h)
    skb = udp(9000, b"keep")
    h.hook(NF_INET_LOCAL_IN, skb)
    new = _udp_bytes(b"a longer payload than before")
    assert h.nf.queue.verdict(inst, 1, NF_ACCEPT, new, 0x99) == 0
    (got,) = h.out
    assert got.payload() == new and got.len == len(new)
    assert got.ip_summed == CHECKSUM_NONE and got.mark == 0x99
    # Shorter than the IP header (the transport offset) or longer than 64 KiB: DROP.
    h.hook(NF_INET_LOCAL_IN, udp())
    h.hook(NF_INET_LOCAL_IN, udp())
    assert h.nf.queue.verdict(inst, 2, NF_ACCEPT, new[:19]) == 0
    assert h.nf.queue.verdict(inst, 3, NF_ACCEPT, bytes(0x10000)) == 0
    assert len(h.out) == 1
    assert h.dropped() == {("NOT_SPECIFIED", "nfqnl_reinject"): 2}
    # Shorter down to the transport header is fine.
    h.hook(NF_INET_LOCAL_IN, udp())
    assert h.nf.queue.verdict(inst, 4, NF_ACCEPT, new[:20]) == 0
    assert h.out[-1].len == 20


def test_accept_goes_through_the_later_tables_and_stop_skips_them(h: Harness) -> None:
    h.add("INPUT", queue_rule(0), "mangle")
    h.add("INPUT", rule(Standard("DROP")))
    inst, _ = bind(h)
    h.hook(NF_INET_LOCAL_IN, udp())
    h.hook(NF_INET_LOCAL_IN, udp())
    assert h.nf.queue.verdict(inst, 1, NF_ACCEPT) == 0
    assert h.out == []
    # A drop after reinjection is nf_reinject's plain kfree_skb.
    assert h.dropped() == {("NOT_SPECIFIED", "nfqnl_reinject"): 1}
    assert h.counts("INPUT") == [(1, udp().len)]
    assert h.nf.queue.verdict(inst, 2, NF_STOP) == 0
    assert len(h.out) == 1 and h.counts("INPUT") == [(1, udp().len)]


def test_repeat_runs_the_queueing_table_again(h: Harness) -> None:
    h.add("PREROUTING", RuleSpec(IpSpec(), (MarkMatch(0),), NfqueueTarget(0)), "mangle")
    h.add("PREROUTING", rule(LogTarget(prefix="again ")), "mangle")
    inst, listener = bind(h)
    skb = udp()
    h.hook(NF_INET_PRE_ROUTING, skb)
    assert h.nf.queue.verdict(inst, 1, NF_REPEAT, mark=1) == 0
    assert h.out == [skb]
    assert h.counts("PREROUTING", "mangle") == [(1, skb.len), (1, skb.len)]
    # Without the new mark, REPEAT queues it again.
    h.hook(NF_INET_PRE_ROUTING, udp())
    assert h.nf.queue.verdict(inst, 2, NF_REPEAT) == 0
    assert [p.id for p in listener.got] == [1, 2, 3]


def test_requeue_to_another_queue(h: Harness) -> None:
    h.add("INPUT", queue_rule(0))
    inst0, _ = bind(h, 0)
    _, l5 = bind(h, 5)
    h.hook(NF_INET_LOCAL_IN, udp())
    assert h.nf.queue.verdict(inst0, 1, NF_QUEUE | (5 << 16)) == 0
    assert [p.queue_num for p in l5.got] == [5]


def test_a_full_queue_drops_unless_fail_open(h: Harness) -> None:
    h.add("INPUT", queue_rule(0))
    inst, listener = bind(h)
    inst.set_maxlen(2)
    for _ in range(3):
        h.hook(NF_INET_LOCAL_IN, udp())
    assert inst.queue_total == 2 and inst.queue_dropped == 1
    assert h.dropped() == {("NOT_SPECIFIED", "nf_queue"): 1}
    inst.set_flags(NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_FAIL_OPEN)
    h.hook(NF_INET_LOCAL_IN, udp())
    assert len(h.out) == 1 and inst.queue_dropped == 1 and len(listener.got) == 2
    assert "    0      1     2 2 65531     1     0        2  1" in h.nf.queue.proc()


def test_a_full_listener_drops_unless_fail_open(h: Harness) -> None:
    h.add("INPUT", queue_rule(0))
    inst, listener = bind(h)
    listener.room = False
    h.hook(NF_INET_LOCAL_IN, udp())
    assert inst.queue_user_dropped == 1 and inst.queue_total == 0 and inst.id_sequence == 1
    assert h.dropped() == {("NOT_SPECIFIED", "nf_queue"): 1}
    inst.set_flags(NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_FAIL_OPEN)
    h.hook(NF_INET_LOCAL_IN, udp())
    assert len(h.out) == 1 and inst.queue_user_dropped == 1


def test_the_listener_going_away_drops_what_waits(h: Harness) -> None:
    h.add("INPUT", queue_rule(0, flags=NFQ_FLAG_BYPASS))
    inst, _ = bind(h)
    for _ in range(3):
        h.hook(NF_INET_LOCAL_IN, udp())
    h.nf.queue.unbind(inst)
    assert h.out == [] and h.nf.queue.instances == {}
    assert h.dropped() == {("NOT_SPECIFIED", "nfqnl_reinject"): 3}
    # With nobody bound, --queue-bypass lets packets through.
    h.hook(NF_INET_LOCAL_IN, udp())
    assert len(h.out) == 1


def test_batch_verdicts(h: Harness) -> None:
    h.add("INPUT", queue_rule(0))
    inst, _ = bind(h)
    for _ in range(3):
        h.hook(NF_INET_LOCAL_IN, udp())
    q = h.nf.queue
    assert q.verdict_batch(inst, 2, NF_ACCEPT, mark=7) == 0
    assert [s.mark for s in h.out] == [7, 7] and list(inst.entries) == [3]
    assert q.verdict_batch(inst, 2, NF_ACCEPT) == -E.ENOENT
    assert q.verdict_batch(inst, 3, NF_DROP) == 0
    assert inst.queue_total == 0


def test_copy_range_and_meta(h: Harness) -> None:
    h.add("INPUT", queue_rule(0))
    inst, listener = bind(h)
    inst.set_mode(NFQNL_COPY_PACKET, 24)
    skb = udp(payload=b"0123456789")
    h.hook(NF_INET_LOCAL_IN, skb)
    assert listener.got[0].payload == skb.payload()[:24] and listener.got[0].cap_len == skb.len
    inst.set_mode(NFQNL_COPY_META, 24)
    h.hook(NF_INET_LOCAL_IN, udp())
    assert listener.got[1].payload == b"" and inst.copy_range == 0


def test_balance_spreads_flows_and_keeps_each_on_one_queue(h: Harness) -> None:
    h.add("INPUT", queue_rule(4, 4))
    listeners = [bind(h, n)[1] for n in range(4, 8)]
    seen: dict[tuple[int, int], set[int]] = {}
    for i in range(64):
        src = 0x0B000000 + i
        for s, d in ((src, B), (B, src)):
            h.hook(NF_INET_LOCAL_IN, udp(src=s, dst=d))
    for n, lst in zip(range(4, 8), listeners, strict=True):
        for p in lst.got:
            a = struct.unpack("!I", p.payload[12:16])[0]
            b = struct.unpack("!I", p.payload[16:20])[0]
            seen.setdefault((min(a, b), max(a, b)), set()).add(n)
    assert all(len(qs) == 1 for qs in seen.values())
    assert sum(len(lst.got) for lst in listeners) == 128
    assert sum(1 for lst in listeners if lst.got) >= 3


def test_cpu_fanout_picks_cpu_0(h: Harness) -> None:
    h.add("INPUT", queue_rule(4, 4, NFQ_FLAG_CPU_FANOUT))
    _, l4 = bind(h, 4)
    for i in range(8):
        h.hook(NF_INET_LOCAL_IN, udp(src=0x0B000000 + i))
    assert len(l4.got) == 8


def _gso(mss: int = 100) -> SkBuff:
    skb = gso_skb(bytes(range(250)), mss, eth=False)
    return skb


def test_gso_packets_are_queued_as_segments_unless_the_listener_takes_gso(h: Harness) -> None:
    h.add("OUTPUT", queue_rule(0))
    inst, listener = bind(h)
    h.hook(NF_INET_LOCAL_OUT, _gso(), indev=0, outdev=2)
    assert [len(p.payload) for p in listener.got] == [128, 128, 78]
    for p in listener.got:
        seg = p.payload
        src, dst = struct.unpack("!II", seg[12:20])
        assert udp_checksum(src, dst, seg[20:]) == struct.unpack("!H", seg[26:28])[0]
    for i in (1, 2, 3):
        h.nf.queue.verdict(inst, i, NF_ACCEPT)
    assert [s.len for s in h.out] == [128, 128, 78]
    inst.set_flags(NFQA_CFG_F_GSO, NFQA_CFG_F_GSO)
    skb = _gso()
    h.hook(NF_INET_LOCAL_OUT, skb, indev=0, outdev=2)
    last = listener.got[-1]
    assert len(last.payload) == skb.len and last.skb_info == NFQA_SKB_CSUMNOTREADY | NFQA_SKB_GSO
    assert skb.ip_summed == CHECKSUM_PARTIAL


def test_device_going_down_drops_its_packets(h: Harness) -> None:
    h.add("INPUT", queue_rule(0))
    inst, _ = bind(h)
    h.hook(NF_INET_LOCAL_IN, udp(), indev=2)
    h.hook(NF_INET_LOCAL_IN, udp(), indev=3)
    h.nf.queue.dev_drop(2)
    assert list(inst.entries) == [2]
    assert h.dropped() == {("NOT_SPECIFIED", "nfqnl_reinject"): 1}


def test_bind_errors(h: Harness) -> None:
    inst, _ = bind(h)
    with pytest.raises(QueueError) as e:
        h.nf.queue.bind(0, Listener())
    assert e.value.errno == E.EBUSY
    with pytest.raises(QueueError) as e:
        h.nf.queue.bind(70000, Listener())
    assert e.value.errno == E.EINVAL
    with pytest.raises(QueueError) as e:
        inst.set_flags(2, 2)  # NFQA_CFG_F_CONNTRACK
    assert e.value.errno == E.EOPNOTSUPP
    inst.set_maxlen(10**9)
    assert inst.queue_maxlen == 65536


def test_okfn_may_run_the_next_hook(h: Harness) -> None:
    """ip_local_out's okfn goes on to POST_ROUTING from inside the reinjection."""
    h.add("OUTPUT", queue_rule(0))
    h.add("POSTROUTING", rule(Standard("DROP")), "mangle")
    inst, _ = bind(h)
    skb = udp()
    h.nf.nf_hook(NF_INET_LOCAL_OUT, skb, 0, 2, lambda s: h.hook(4, s, 0, 2))
    h.nf.queue.verdict(inst, 1, NF_ACCEPT)
    assert h.out == []
    assert h.dropped() == {("NETFILTER_DROP", "nf_hook_slow"): 1}


# The NetfilterService over gRPC.


class Service:
    def __init__(self) -> None:
        self.h = Harness()
        self.flushes = 0
        self.servicer = NetfilterServicer(self.h.nf, self._flush)

    async def _flush(self) -> None:
        self.flushes += 1

    def register(self, server: grpc.aio.Server) -> None:
        netfilter_pb2_grpc.add_NetfilterServiceServicer_to_server(self.servicer, server)


def _udp_rule_pb(dport: int, **target: Any) -> pb.NfRule:
    return pb.NfRule(
        protocol=17,
        matches=[pb.NfMatch(udp=pb.UdpMatch(dport=pb.PortRange(min=dport, max=dport)))],
        target=pb.NfTarget(**target),
    )


def test_rule_rpcs_round_trip_and_answer_with_errno(run_async, grpc_test_server) -> None:
    svc = Service()

    async def go() -> None:
        async with grpc_test_server(svc.register) as addr, grpc.aio.insecure_channel(addr) as ch:
            stub = netfilter_pb2_grpc.NetfilterServiceStub(ch)
            full = pb.NfRule(
                src=0x0A000000,
                src_mask=0xFFFFFF00,
                src_invert=True,
                dst=B,
                dst_mask=0xFFFFFFFF,
                in_interface="eth+",
                protocol=17,
                fragment=pb.NF_FRAGMENT_NOT_NON_FIRST,
                matches=[
                    pb.NfMatch(udp=pb.UdpMatch(sport=pb.PortRange(min=1, max=1024), dport_invert=True)),
                    pb.NfMatch(mark=pb.MarkMatch(mark=1, mask=0xFF, invert=True)),
                    pb.NfMatch(ttl=pb.TtlMatch(mode=pb.TTL_MODE_LT, value=9)),
                    pb.NfMatch(length=pb.LengthMatch(min=10, max=20)),
                    pb.NfMatch(tos=pb.TosMatch(value=0x10, mask=0x3F)),
                    pb.NfMatch(
                        multiport=pb.MultiportMatch(
                            direction=pb.MULTIPORT_DIRECTION_EITHER,
                            ports=[pb.PortRange(min=5, max=5), pb.PortRange(min=7, max=9)],
                        )
                    ),
                ],
                target=pb.NfTarget(nfqueue=pb.NfqueueTarget(queue_num=2, queues_total=3, bypass=True)),
                counters=pb.NfCounters(packets=5, bytes=500),
            )
            r = await stub.AppendRule(pb.AppendRuleRequest(table="filter", chain="INPUT", rule=full))
            assert r.errno == 0
            listing = await stub.ListChains(pb.ListChainsRequest())
            assert [c.name for c in listing.chains] == ["INPUT", "FORWARD", "OUTPUT"]
            got = listing.chains[0].rules[0]
            expected = pb.NfRule()
            expected.CopyFrom(full)
            assert got == expected
            assert listing.chains[0].policy == pb.NF_POLICY_ACCEPT

            r2 = await stub.AppendRule(
                pb.AppendRuleRequest(
                    chain="INPUT",
                    rule=_udp_rule_pb(9, ttl=pb.TtlTarget(mode=pb.TTL_TARGET_MODE_SET, value=3)),
                )
            )
            assert (r2.errno, r2.message) == (E.EINVAL, "Invalid argument")
            assert r2.kernel_log == "x_tables: ip_tables: TTL target: only valid in mangle table, not filter"
            d = await stub.DeleteRule(pb.DeleteRuleRequest(chain="INPUT", rule=_udp_rule_pb(9, jump="x")))
            assert (d.errno, d.message) == (E.ENOENT, "Bad rule (does a matching rule exist in that chain?)")
            d = await stub.DeleteRule(pb.DeleteRuleRequest(chain="INPUT", rulenum=2))
            assert d.errno == E.E2BIG
            nat = await stub.ListChains(pb.ListChainsRequest(table="nat"))
            assert nat.errno == E.ENOENT and nat.message.startswith("Table does not exist")
            assert "nat table is not built" in nat.message

            assert (await stub.NewChain(pb.NewChainRequest(name="udp-in"))).errno == 0
            await stub.InsertRule(
                pb.InsertRuleRequest(chain="INPUT", rule=pb.NfRule(target=pb.NfTarget(jump="udp-in")))
            )
            chains = await stub.ListChains(pb.ListChainsRequest(chains_only=True))
            assert [(c.name, c.references, len(c.rules)) for c in chains.chains][3] == ("udp-in", 1, 0)
            dc = await stub.DeleteChain(pb.DeleteChainRequest(name="udp-in"))
            assert (dc.errno, dc.message) == (E.EMLINK, "Too many links")
            sp = await stub.SetPolicy(pb.SetPolicyRequest(chain="INPUT", policy="RETURN"))
            assert (sp.errno, sp.message) == (E.EINVAL, "Bad policy name")
            fl = await stub.FlushChain(pb.FlushChainRequest())
            assert list(fl.chains) == ["INPUT", "FORWARD", "OUTPUT", "udp-in"]
            ren = await stub.RenameChain(pb.RenameChainRequest(old_name="udp-in", new_name="in"))
            assert ren.errno == 0
            z = await stub.ZeroCounters(pb.ZeroCountersRequest(chain="INPUT", rulenum=1))
            assert z.errno == E.E2BIG
            ck = await stub.CheckRule(pb.CheckRuleRequest(chain="INPUT", rule=_udp_rule_pb(1)))
            assert ck.errno == E.ENOENT

            for bad in (
                pb.NfRule(protocol=17, matches=[pb.NfMatch(udp=pb.UdpMatch(dport=pb.PortRange(max=70000)))]),
                pb.NfRule(matches=[pb.NfMatch()]),
                pb.NfRule(target=pb.NfTarget(ttl=pb.TtlTarget(value=1))),
                pb.NfRule(in_interface="x" * 16),
                pb.NfRule(protocol=256),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await stub.AppendRule(pb.AppendRuleRequest(chain="INPUT", rule=bad))
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    run_async(go())


async def _next(call: Any) -> pb.QueueResponse:
    msg = await asyncio.wait_for(call.read(), 5)
    assert msg is not grpc.aio.EOF
    return msg  # type: ignore[no-any-return]


def test_queue_stream_binds_delivers_and_reinjects(run_async, grpc_test_server, poll_until) -> None:
    svc = Service()
    h = svc.h
    # Queued in mangle; after an ACCEPT the filter table's LOG sees the packet.
    h.add("INPUT", RuleSpec(IpSpec(proto=17), (UdpMatch(dpts=(9000, 9000)),), NfqueueTarget(0)), "mangle")
    h.add("INPUT", rule(LogTarget(prefix="after ")))

    async def go() -> None:
        async with grpc_test_server(svc.register) as addr, grpc.aio.insecure_channel(addr) as ch:
            stub = netfilter_pb2_grpc.NetfilterServiceStub(ch)
            call = stub.Queue()
            await call.write(pb.QueueRequest(bind=pb.QueueBind(queue_num=0)))
            bound = await _next(call)
            assert bound.bound == pb.QueueBound(
                queue_num=0, queue_maxlen=1024, copy_mode=pb.COPY_MODE_PACKET, copy_range=65531
            )
            keep, drop = udp(9000, b"keep"), udp(9000, b"drop")
            h.hook(NF_INET_LOCAL_IN, keep)
            h.hook(NF_INET_LOCAL_IN, drop)
            first, second = (await _next(call)).packet, (await _next(call)).packet
            assert (first.id, first.hook, first.indev_name, first.payload) == (1, 1, "eth0", keep.payload())
            assert second.id == 2
            await call.write(pb.QueueRequest(verdict=pb.PacketVerdict(id=2, verdict=pb.NF_VERDICT_DROP)))
            await call.write(
                pb.QueueRequest(verdict=pb.PacketVerdict(id=1, verdict=pb.NF_VERDICT_ACCEPT, mark=0x42))
            )
            await poll_until(lambda: len(h.out) == 1, "the accepted packet")
            assert h.out[0].mark == 0x42
            assert h.dropped() == {("NOT_SPECIFIED", "nfqnl_reinject"): 1}
            assert svc.flushes >= 2
            assert h.nf.log[-1].text.startswith("after IN=eth0")
            await call.write(pb.QueueRequest(verdict=pb.PacketVerdict(id=9, verdict=pb.NF_VERDICT_ACCEPT)))
            e = (await _next(call)).error
            assert (e.id, e.errno) == (9, E.ENOENT)
            await call.write(pb.QueueRequest(verdict=pb.PacketVerdict(id=1)))
            assert (await _next(call)).error.errno == E.EINVAL

            queues = await stub.ListQueues(pb.ListQueuesRequest())
            (stats,) = queues.queues
            assert (stats.queue_num, stats.queue_total, stats.id_sequence) == (0, 0, 2)
            assert queues.proc.startswith("    0 ")
            log = await stub.ReadLog(pb.ReadLogRequest(max=1))
            assert [line.text for line in log.lines] == [h.nf.log[-1].text]

            # A second listener for the same queue is refused.
            other = stub.Queue()
            await other.write(pb.QueueRequest(bind=pb.QueueBind(queue_num=0)))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await other.read()
            assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS

            # The listener goes: what waits is dropped, the queue is free again.
            h.hook(NF_INET_LOCAL_IN, udp(9000))
            await _next(call)
            call.cancel()
            await poll_until(lambda: not h.nf.queue.instances, "the unbind")
            assert h.dropped() == {("NOT_SPECIFIED", "nfqnl_reinject"): 2}

    run_async(go())


def test_queue_stream_settings_and_half_close(run_async, grpc_test_server, poll_until) -> None:
    svc = Service()
    h = svc.h
    h.add("INPUT", queue_rule(7))

    async def go() -> None:
        async with grpc_test_server(svc.register) as addr, grpc.aio.insecure_channel(addr) as ch:
            stub = netfilter_pb2_grpc.NetfilterServiceStub(ch)
            bad = stub.Queue()
            await bad.write(pb.QueueRequest(verdict=pb.PacketVerdict(id=1)))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await bad.read()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

            call = stub.Queue()
            bind_msg = pb.QueueBind(
                queue_num=7, queue_maxlen=1, copy_mode=pb.COPY_MODE_PACKET, copy_range=20, fail_open=True
            )
            await call.write(pb.QueueRequest(bind=bind_msg))
            bound = (await _next(call)).bound
            assert (bound.queue_maxlen, bound.copy_range, bound.fail_open) == (1, 20, True)
            h.hook(NF_INET_LOCAL_IN, udp())
            h.hook(NF_INET_LOCAL_IN, udp())  # the queue is full: fail-open accepts it
            pkt = (await _next(call)).packet
            assert len(pkt.payload) == 20 and pkt.cap_len == udp().len
            assert len(h.out) == 1
            await call.write(
                pb.QueueRequest(verdict=pb.PacketVerdict(id=1, verdict=pb.NF_VERDICT_ACCEPT, batch=True))
            )
            await poll_until(lambda: len(h.out) == 2, "the batch verdict")
            h.hook(NF_INET_LOCAL_IN, udp())
            await _next(call)
            await call.done_writing()
            assert await asyncio.wait_for(call.read(), 5) is grpc.aio.EOF
            await poll_until(lambda: not h.nf.queue.instances, "the unbind")
            assert h.dropped() == {("NOT_SPECIFIED", "nfqnl_reinject"): 1}

    run_async(go())


def test_the_stream_buffer_is_bounded(run_async, grpc_test_server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listener that does not read: beyond the stream's byte budget packets count
    as queue_user_dropped."""
    from services.ip import nf_servicer

    monkeypatch.setattr(nf_servicer, "QUEUE_STREAM_BYTES", 100)
    svc = Service()
    h = svc.h
    h.add("INPUT", queue_rule(0))

    async def go() -> None:
        async with grpc_test_server(svc.register) as addr, grpc.aio.insecure_channel(addr) as ch:
            stub = netfilter_pb2_grpc.NetfilterServiceStub(ch)
            call = stub.Queue()
            await call.write(pb.QueueRequest(bind=pb.QueueBind(queue_num=0)))
            await _next(call)
            inst = h.nf.queue.instances[0]
            sent = 0
            while inst.queue_user_dropped == 0:
                h.hook(NF_INET_LOCAL_IN, udp())
                sent += 1
                assert sent < 20
            assert sent - 1 <= 100 // udp().len + 1
            call.cancel()

    run_async(go())
