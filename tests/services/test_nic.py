"""The NIC service for real (NicService on a grpc.aio server), the test playing the IP
layer on the Attach stream: exact bytes, link statistics, softnet_stat and drop reasons.

A stream processes one request after another, so a loopback "sentinel" sent after a
batch that is dropped proves, when it comes back up, that the batch was handled: no
waiting on time anywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.core.dropreason import SkbDropReason
from services.core.server import CHANNEL_OPTIONS, ServingStatus
from services.core.skbuff import HEADER_UNSET, PACKET_HOST, Dst, SkBuff, alloc_skb
from services.core.sysctl import Sysctl
from services.core.wire.ethernet import ETH_HLEN, ETH_P_IP, ETH_P_IPV6
from services.core.wire.ipv4 import IPPROTO_UDP, Ipv4Repr, ip_from_str
from services.nic.device import (
    IFF_BROADCAST,
    IFF_LOOPBACK,
    IFF_LOWER_UP,
    IFF_MULTICAST,
    IFF_RUNNING,
    IFF_UP,
    ether_dev,
    loopback_dev,
)
from services.nic.layer import NicLayer
from services.nic.servicer import NicService
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
from stackemu.skb.v1 import skb_pb2

LO = 1
ETH0 = 2
ETH0_MAC = bytes.fromhex("02000a000001")
LOOPBACK = ip_from_str("127.0.0.1")
RTN_LOCAL = 2
RTCF_LOCAL = 0x80000000
# net.core.netdev_budget_usecs is a time limit; raise it far above what a test takes so
# that no count below can depend on how fast this machine runs.
NO_TIME_LIMIT = 10_000_000


def new_layer(**sysctls: int) -> NicLayer:
    sysctl = Sysctl({"net.core.netdev_budget_usecs": NO_TIME_LIMIT})
    for name, value in sysctls.items():
        sysctl.set(f"net.core.{name}", value)
    return NicLayer("alice", [loopback_dev(), ether_dev(ETH0, "eth0", ETH0_MAC)], sysctl)


def ip_packet(payload: bytes, src: int = LOOPBACK, dst: int = LOOPBACK) -> bytes:
    hdr = Ipv4Repr(src=src, dst=dst, protocol=IPPROTO_UDP, payload_len=len(payload))
    buf = bytearray(hdr.total_len)
    hdr.emit(buf)
    buf[hdr.header_len :] = payload
    return bytes(buf)


def ip_skb(packet: bytes, ifindex: int = LO, headroom: int = 64) -> SkBuff:
    """What ip_finish_output2 hands dev_queue_xmit: data at the IP header, the route in dst."""
    skb = alloc_skb(len(packet), headroom)
    skb.put_data(packet)
    skb.reset_network_header()
    skb.protocol = ETH_P_IP
    skb.dst = Dst(ifindex=ifindex, nexthop=LOOPBACK, mtu=65536, rt_type=RTN_LOCAL, flags=RTCF_LOCAL)
    return skb


class IpSide:
    """The test's end of NicService.Attach: it sends transmit batches and reads what the
    NIC delivers up."""

    def __init__(self, stub: nic_pb2_grpc.NicServiceStub) -> None:
        self._out: asyncio.Queue[nic_pb2.AttachRequest | None] = asyncio.Queue()
        self.call = stub.Attach(self._requests())

    async def _requests(self) -> AsyncIterator[nic_pb2.AttachRequest]:
        while (req := await self._out.get()) is not None:
            yield req

    async def send(self, *skbs: SkBuff | skb_pb2.SkBuff) -> None:
        msgs = [s if isinstance(s, skb_pb2.SkBuff) else s.to_proto() for s in skbs]
        await self._out.put(nic_pb2.AttachRequest(skbs=msgs))

    async def receive(self, n: int) -> list[SkBuff]:
        """The next n skbs delivered up, however the NIC split them into messages."""
        got: list[SkBuff] = []
        while len(got) < n:
            resp = await asyncio.wait_for(self.call.read(), 5.0)
            assert resp is not grpc.aio.EOF, f"stream ended after {len(got)} of {n} skbs"
            got.extend(SkBuff.from_proto(m) for m in resp.skbs)
        assert len(got) == n, f"expected {n} skbs, got {len(got)}"
        return got

    async def sentinel(self) -> None:
        """Send one lo packet and wait for it: everything sent before it was handled."""
        await self.send(ip_skb(ip_packet(b"sentinel")))
        [back] = await self.receive(1)
        assert back.payload().endswith(b"sentinel")

    def close(self) -> None:
        self._out.put_nowait(None)


class Nic:
    def __init__(self, service: NicService, stub: nic_pb2_grpc.NicServiceStub) -> None:
        self.service = service
        self.layer = service.servicer.layer
        self.stub = stub

    async def links(self) -> dict[str, nic_pb2.Link]:
        resp = await self.stub.ListLinks(nic_pb2.ListLinksRequest())
        return {link.name: link for link in resp.links}

    async def stats(self) -> tuple[list[nic_pb2.SoftnetStat], dict[tuple[str, str], int]]:
        resp = await self.stub.GetStats(nic_pb2.GetStatsRequest())
        return list(resp.softnet), {(d.reason, d.location): d.count for d in resp.drops}


@asynccontextmanager
async def nic_service(grpc_test_server, layer: NicLayer | None = None) -> AsyncIterator[Nic]:
    """NicService as services.core.server._serve runs it: registered, health NOT_SERVING
    until start() has run, then SERVING."""
    service = NicService(layer or new_layer())
    health_servicer = health.aio.HealthServicer()
    status = ServingStatus(health_servicer, service.service_names)
    await status.not_serving()
    async with grpc_test_server(
        service.register, lambda s: health_pb2_grpc.add_HealthServicer_to_server(health_servicer, s)
    ) as addr:
        await service.start(status)
        channel = grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS)
        try:
            check = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service.service_names[0])
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            yield Nic(service, nic_pb2_grpc.NicServiceStub(channel))
        finally:
            await service.stop()
            await channel.close()


def drop_key(reason: SkbDropReason, location: str) -> tuple[str, str]:
    return (reason.full_name, location)


def test_loopback_batch_comes_back_up_as_ip(run_async, grpc_test_server) -> None:
    packets = [ip_packet(bytes([i]) * n) for i, n in enumerate((0, 1, 1472))]

    async def scenario() -> None:
        async with nic_service(grpc_test_server) as nic:
            ip = IpSide(nic.stub)
            before = time.time_ns()
            await ip.send(*(ip_skb(p) for p in packets))
            up = await ip.receive(len(packets))
            after = time.time_ns()
            for skb, packet in zip(up, packets, strict=True):
                # __netif_receive_skb_core hands ip_rcv the packet, data at the IP header.
                assert skb.payload() == packet
                assert skb.len == len(packet)
                assert skb.protocol == ETH_P_IP
                assert skb.pkt_type == PACKET_HOST
                assert skb.network_header == skb.data
                assert skb.mac_header == skb.data - ETH_HLEN
                assert skb.transport_header == HEADER_UNSET
                # loopback_xmit's header: lo's all-zero address both ways, ETH_P_IP.
                assert bytes(skb.head[skb.mac_header : skb.data]) == bytes(12) + b"\x08\x00"
                assert skb.skb_iif == LO
                assert skb.dev_ifindex == LO
                # loopback_xmit cleared the send time; netif_rx stamped the arrival.
                assert before <= skb.tstamp <= after
                assert skb.sk == 0
            ip.close()

            links = await nic.links()
            s = links["lo"].stats
            # Linux lo counts the IP packet, without the Ethernet header: a 10-byte UDP
            # datagram adds 38 to /sys/class/net/lo/statistics/tx_bytes (6.18.44).
            total = sum(len(p) for p in packets)
            assert (s.tx_packets, s.rx_packets, s.tx_bytes, s.rx_bytes) == (3, 3, total, total)
            assert (s.rx_dropped, s.tx_dropped, s.rx_errors, s.tx_errors) == (0, 0, 0, 0)
            assert links["eth0"].stats == nic_pb2.LinkStats()
            softnet, drops = await nic.stats()
            assert [(r.cpu, r.processed, r.dropped, r.time_squeeze) for r in softnet] == [(0, 3, 0, 0)]
            assert drops == {}

    run_async(scenario())


def test_short_headroom_gets_a_bigger_head(run_async, grpc_test_server) -> None:
    packet = ip_packet(b"no room for a link header")

    async def scenario() -> None:
        async with nic_service(grpc_test_server) as nic:
            ip = IpSide(nic.stub)
            await ip.send(ip_skb(packet, headroom=0))
            [skb] = await ip.receive(1)
            assert skb.payload() == packet
            assert skb.mac_header == skb.data - ETH_HLEN
            assert skb.network_header == skb.data
            ip.close()

    run_async(scenario())


def test_transmit_drops_are_counted(run_async, grpc_test_server) -> None:
    async def scenario() -> None:
        async with nic_service(grpc_test_server) as nic:
            ip = IpSide(nic.stub)
            # eth0 has no carrier until a link is attached: the noop qdisc drops.
            await ip.send(ip_skb(ip_packet(b"to eth0"), ifindex=ETH0))
            # An ifindex no device has.
            await ip.send(ip_skb(ip_packet(b"to nowhere"), ifindex=9))
            # No route attached at all.
            no_dst = ip_skb(ip_packet(b"no dst"))
            no_dst.dst = None
            await ip.send(no_dst)
            # A frame lo carries but no packet_type handler takes (IPv6 is not built).
            v6 = ip_skb(ip_packet(b"ipv6"))
            v6.protocol = ETH_P_IPV6
            await ip.send(v6)
            await ip.sentinel()

            nic.layer.set_carrier(nic.layer.devices[ETH0], True)
            # With carrier, the packet waits for ARP: a request (60 bytes) goes out.
            await ip.send(ip_skb(ip_packet(b"to eth0 again"), ifindex=ETH0))
            await ip.sentinel()
            ip.close()

            links = await nic.links()
            assert links["eth0"].stats == nic_pb2.LinkStats(tx_dropped=1, tx_packets=1, tx_bytes=60)
            lo = links["lo"].stats
            assert (lo.tx_packets, lo.rx_packets, lo.rx_dropped) == (3, 3, 1)
            softnet, drops = await nic.stats()
            assert drops == {
                drop_key(SkbDropReason.QDISC_DROP, "noop_enqueue"): 1,
                drop_key(SkbDropReason.NOT_SPECIFIED, "dev_queue_xmit"): 2,
                drop_key(SkbDropReason.UNHANDLED_PROTO, "__netif_receive_skb_core"): 1,
            }
            # processed counts every skb __netif_receive_skb_core saw, IPv6 included.
            assert [(r.processed, r.dropped) for r in softnet] == [(3, 0)]

    run_async(scenario())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("data", 200, "data <= tail <= end"),  # data past tail
        ("len", 3, "len 3 != linear"),  # len contradicts tail - data
    ],
)
def test_malformed_skb_fails_the_stream(run_async, grpc_test_server, field, value, message) -> None:
    async def scenario() -> None:
        async with nic_service(grpc_test_server) as nic:
            ip = IpSide(nic.stub)
            bad = ip_skb(ip_packet(b"bad")).to_proto()
            setattr(bad, field, value)
            # The whole batch is refused, the good skb before the bad one included.
            await ip.send(ip_skb(ip_packet(b"good")), bad)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ip.receive(1)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in (err.value.details() or "")
            _, drops = await nic.stats()
            assert drops == {drop_key(SkbDropReason.NOT_SPECIFIED, "dev_queue_xmit"): 2}
            assert (await nic.links())["lo"].stats.tx_packets == 0

            # The failed stream detached: a new IP layer may attach and is served.
            ip2 = IpSide(nic.stub)
            await ip2.sentinel()
            ip2.close()

    run_async(scenario())


def test_second_attach_is_refused(run_async, grpc_test_server) -> None:
    async def scenario() -> None:
        async with nic_service(grpc_test_server) as nic:
            first = IpSide(nic.stub)
            await first.sentinel()  # the first stream is being served
            second = IpSide(nic.stub)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await second.receive(1)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            await first.sentinel()  # and the first one is unaffected
            first.close()

    run_async(scenario())


def test_list_links_and_initial_stats(run_async, grpc_test_server) -> None:
    async def scenario() -> None:
        async with nic_service(grpc_test_server) as nic:
            resp = await nic.stub.ListLinks(nic_pb2.ListLinksRequest())
            assert list(resp.links) == [
                nic_pb2.Link(
                    ifindex=1,
                    name="lo",
                    mtu=65536,
                    address=b"",  # nic.proto: empty for loopback's all-zero address
                    # What rtnetlink's ifi_flags show for lo: LOOPBACK,UP,LOWER_UP (+RUNNING).
                    flags=IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_LOWER_UP,
                    carrier=True,
                    txqueuelen=1000,
                    stats=nic_pb2.LinkStats(),
                    kind="loopback",
                    qdisc="noqueue",
                    # Every offload [fixed] on, as `ethtool -k lo` shows them:
                    # SG, HW_CSUM, GSO, GSO_UDP_L4, RXCSUM, LOOPBACK.
                    features=(1 << 0) | (1 << 3) | (1 << 11) | (1 << 33) | (1 << 40) | (1 << 42),
                ),
                nic_pb2.Link(
                    ifindex=2,
                    name="eth0",
                    mtu=1500,
                    address=ETH0_MAC,
                    flags=IFF_UP | IFF_BROADCAST | IFF_MULTICAST,  # NO-CARRIER,BROADCAST,MULTICAST,UP
                    carrier=False,
                    txqueuelen=1000,
                    stats=nic_pb2.LinkStats(),
                    kind="none",
                    qdisc="pfifo_fast",
                    napi_weight=64,
                    # SG, HW_CSUM, GSO, GRO, GSO_UDP_L4.
                    features=(1 << 0) | (1 << 3) | (1 << 11) | (1 << 14) | (1 << 33),
                ),
            ]
            stats = await nic.stub.GetStats(nic_pb2.GetStatsRequest())
            assert stats == nic_pb2.GetStatsResponse(softnet=[nic_pb2.SoftnetStat(cpu=0)])

    run_async(scenario())


def test_backlog_overflow_over_the_stream(run_async, grpc_test_server) -> None:
    """enqueue_to_backlog() (net/core/dev.c, 6.18) admits while `qlen <= max_backlog`,
    qlen being the queue length before the skb goes in: max_backlog + 1 skbs fit. Every
    refused skb counts in softnet `dropped` and the device's rx_dropped, and is freed
    with SKB_DROP_REASON_CPU_BACKLOG. One Attach message is transmitted whole before the
    softirq runs, so one batch larger than the backlog overfills it."""
    max_backlog, sent = 3, 10
    admitted = max_backlog + 1
    packets = [ip_packet(bytes([i])) for i in range(sent)]

    async def scenario() -> None:
        async with nic_service(grpc_test_server, new_layer(netdev_max_backlog=max_backlog)) as nic:
            ip = IpSide(nic.stub)
            await ip.send(*(ip_skb(p) for p in packets))
            up = await ip.receive(admitted)
            assert [s.payload() for s in up] == packets[:admitted]
            await ip.sentinel()
            ip.close()
            softnet, drops = await nic.stats()
            assert [(r.processed, r.dropped) for r in softnet] == [(admitted + 1, sent - admitted)]
            assert drops == {drop_key(SkbDropReason.CPU_BACKLOG, "enqueue_to_backlog"): sent - admitted}
            lo = (await nic.links())["lo"].stats
            # loopback_xmit counts only what __netif_rx accepted; the rest is rx_dropped.
            assert (lo.tx_packets, lo.rx_packets, lo.rx_dropped) == (
                admitted + 1,
                admitted + 1,
                sent - admitted,
            )
            # sent = delivered + dropped
            assert sent == len(up) + sum(drops.values())

    run_async(scenario())


def queue_lo_frames(layer: NicLayer, n: int) -> None:
    for i in range(n):
        layer.dev_queue_xmit(ip_skb(ip_packet(i.to_bytes(2, "big"))))


def test_budget_exhaustion_counts_time_squeeze() -> None:
    """net_rx_action() polls each scheduled NAPI once per softirq (one that used its
    whole weight goes on the repoll list for the next one) and counts time_squeeze when
    netdev_budget is spent."""
    layer = new_layer(netdev_budget=4, dev_weight=4)
    queue_lo_frames(layer, 10)
    sd = layer.softnet.cpus[0]

    up, more = layer.poll()
    assert (len(up), more, sd.processed, sd.time_squeeze) == (4, True, 4, 1)
    assert [int.from_bytes(s.payload()[-2:], "big") for s in up] == [0, 1, 2, 3]
    up, more = layer.poll()
    assert (len(up), more, sd.processed, sd.time_squeeze) == (4, True, 8, 2)
    # Two left: the poll returns below its weight with budget to spare, no squeeze.
    up, more = layer.poll()
    assert (len(up), more, sd.processed, sd.time_squeeze) == (2, False, 10, 2)
    assert layer.drops.total() == 0


def test_weight_below_budget_polls_once_per_softirq() -> None:
    """With weight 2 and budget 4 a softirq takes 2: the backlog NAPI is not polled
    twice in one net_rx_action, and no squeeze is counted."""
    layer = new_layer(netdev_budget=4, dev_weight=2)
    queue_lo_frames(layer, 5)
    sd = layer.softnet.cpus[0]
    assert [len(layer.poll()[0]) for _ in range(3)] == [2, 2, 1]
    assert (sd.processed, sd.time_squeeze) == (5, 0)


def test_budget_spent_exactly_still_counts_time_squeeze() -> None:
    """net_rx_action() checks `budget <= 0` after each napi_poll and counts the squeeze
    even when that poll emptied the queue; process_backlog() returned at its quota
    before seeing the queue empty, so it stays scheduled and completes on the next
    softirq with no work."""
    layer = new_layer(netdev_budget=4, dev_weight=4)
    queue_lo_frames(layer, 4)
    up, more = layer.poll()
    sd = layer.softnet.cpus[0]
    assert (len(up), more, sd.time_squeeze) == (4, True, 1)
    up, more = layer.poll()
    assert (len(up), more, sd.time_squeeze) == (0, False, 1)


def test_backlog_weight_is_dev_weight_times_rx_bias() -> None:
    """process_backlog() runs with dev_rx_weight = dev_weight * dev_weight_rx_bias
    (proc_do_dev_weight), and a NAPI poll is never cut short by the remaining budget:
    with budget 3 and weight 2*3 the first poll takes 6 packets."""
    layer = new_layer(netdev_budget=3, dev_weight=2, dev_weight_rx_bias=3)
    queue_lo_frames(layer, 10)
    up, more = layer.poll()
    sd = layer.softnet.cpus[0]
    assert (len(up), more, sd.time_squeeze) == (6, True, 1)
