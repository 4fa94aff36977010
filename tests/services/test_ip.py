"""The IP service for real (IpService on a grpc.aio server, connected by its own start()
to a fake NIC served in-process), the test playing the UDP layer on IP's Attach stream:
exact header bytes, /proc/net/snmp counters by name and drop reasons.

Receive cases inject the frame under test and then a good "sentinel" datagram in the
same NIC batch; IP handles a batch in order, so when the sentinel reaches UDP the frame
before it has been delivered or dropped, and what UDP got shows which.

The expectations that differ from a first guess were checked against Linux 6.18.44 in a
network namespace of our own (`ip netns add`, a veth pair, 10.0.0.1/24 on eth0):
`ip route get` for the routing cases, and frames injected on the veth peer with nstat
for the receive counters (an unroutable destination counts IpInAddrErrors, not
IpExtInNoRoutes; IpExtInOctets includes Ethernet padding; IpExtInNoECTPkts counts).
"""

from __future__ import annotations

import asyncio
import errno
import json
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.core.dropreason import SkbDropReason
from services.core.server import CHANNEL_OPTIONS, ServingStatus
from services.core.skbuff import (
    HEADER_UNSET,
    PACKET_HOST,
    PACKET_OTHERHOST,
    Dst,
    IpCork,
    SkBuff,
    alloc_skb,
)
from services.core.sysctl import Sysctl
from services.core.wire.ethernet import ETH_HLEN, ETH_P_IP, ETH_ZLEN
from services.core.wire.ipv4 import IPPROTO_UDP, ip_from_str
from services.ip.layer import IpLayer
from services.ip.servicer import IpService
from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
from stackemu.skb.v1 import skb_pb2

LO, ETH0 = 1, 2
ETH0_MAC = bytes.fromhex("02000a000001")
A = ip_from_str
LOOPBACK = A("127.0.0.1")
ALICE = A("10.0.0.1")
BOB = A("10.0.0.7")
ADDRESSES = [("lo", LOOPBACK, 8), ("eth0", ALICE, 24)]

RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST = 1, 2, 3
RTCF_BROADCAST, RTCF_LOCAL = 0x10000000, 0x80000000
IP_PMTUDISC_DONT, IP_PMTUDISC_WANT, IP_PMTUDISC_DO = 0, 1, 2


def rfc1071(data: bytes) -> int:
    """The Internet checksum, written out here so the test does not lean on the code
    under test."""
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_header(
    src: int,
    dst: int,
    payload_len: int,
    *,
    ident: int = 0,
    frag_off: int = 0,
    ttl: int = 64,
    protocol: int = IPPROTO_UDP,
    tos: int = 0,
    ver_ihl: int = 0x45,
    tot_len: int | None = None,
    csum: int | None = None,
) -> bytes:
    tot = 20 + payload_len if tot_len is None else tot_len
    h = struct.pack("!BBHHHBBHII", ver_ihl, tos, tot, ident, frag_off, ttl, protocol, 0, src, dst)
    c = rfc1071(h) if csum is None else csum
    return h[:10] + struct.pack("!H", c) + h[12:]


def udp_segment(payload: bytes, sport: int = 40000, dport: int = 9) -> bytes:
    # The checksum is UDP's business; IP carries the segment as it is.
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def frame(packet: bytes, ifindex: int = LO, pkt_type: int = PACKET_HOST, pad_to: int = 0) -> SkBuff:
    """An skb as the NIC delivers it: Ethernet header consumed, data at the IP header."""
    eth = bytes(12) + b"\x08\x00"
    raw = eth + packet
    raw += bytes(max(0, pad_to - len(raw)))
    skb = SkBuff(bytearray(raw))
    skb.tail = len(raw)
    skb.len = len(raw) - ETH_HLEN
    skb.mac_header = 0
    skb.data = skb.network_header = ETH_HLEN
    skb.protocol = ETH_P_IP
    skb.pkt_type = pkt_type
    skb.skb_iif = skb.dev_ifindex = ifindex
    skb.tstamp = 1
    if ifindex == LO and len(packet) >= 20:
        # loopback_xmit() keeps the route the packet was sent with (skb_dst), so
        # ip_rcv_finish() does no input route lookup for it.
        daddr = int.from_bytes(packet[16:20], "big")
        skb.dst = Dst(LO, daddr, 65536, RTN_LOCAL, RTCF_LOCAL)
    return skb


SENTINEL_UDP = udp_segment(b"sentinel")
SENTINEL = ipv4_header(LOOPBACK, LOOPBACK, len(SENTINEL_UDP)) + SENTINEL_UDP
SENTINEL_COUNTS = {"IpInReceives": 1, "IpInDelivers": 1, "IpExtInOctets": 36, "IpExtInNoECTPkts": 1}


class FakeNic(nic_pb2_grpc.NicServiceServicer):
    """A NicService-shaped neighbour: lo and eth0 in ListLinks; Attach records what IP
    transmits and delivers up whatever the test injects."""

    def __init__(self) -> None:
        self.transmitted: asyncio.Queue[SkBuff] = asyncio.Queue()
        self._inject: asyncio.Queue[list[SkBuff] | nic_pb2.AttachResponse] = asyncio.Queue()
        self.attached = asyncio.Event()

    async def ListLinks(self, request, context):
        return nic_pb2.ListLinksResponse(
            links=[
                nic_pb2.Link(ifindex=LO, name="lo", mtu=65536, flags=0x10049, carrier=True),
                nic_pb2.Link(ifindex=ETH0, name="eth0", mtu=1500, address=ETH0_MAC, flags=0x1003),
            ]
        )

    async def Attach(self, request_iterator, context):
        async def read() -> None:
            async for req in request_iterator:
                for m in req.skbs:
                    self.transmitted.put_nowait(SkBuff.from_proto(m))

        reader = asyncio.create_task(read())
        self.attached.set()
        try:
            while True:
                batch = await self._inject.get()
                if isinstance(batch, nic_pb2.AttachResponse):
                    yield batch
                else:
                    yield nic_pb2.AttachResponse(skbs=[s.to_proto() for s in batch])
        finally:
            reader.cancel()

    def inject(self, *skbs: SkBuff) -> None:
        self._inject.put_nowait(list(skbs))

    def send_response(self, resp: nic_pb2.AttachResponse) -> None:
        """Any message of the NIC's: device changes, completions, timestamps."""
        self._inject.put_nowait(resp)

    async def next_transmitted(self) -> SkBuff:
        return await asyncio.wait_for(self.transmitted.get(), 5.0)


class UdpSide:
    """The test's end of IpService.Attach."""

    def __init__(self, stub: ip_pb2_grpc.IpServiceStub) -> None:
        self._out: asyncio.Queue[ip_pb2.AttachRequest | None] = asyncio.Queue()
        self.call = stub.Attach(self._requests())

    async def _requests(self) -> AsyncIterator[ip_pb2.AttachRequest]:
        while (req := await self._out.get()) is not None:
            yield req

    async def read(self) -> ip_pb2.AttachResponse:
        resp: ip_pb2.AttachResponse = await asyncio.wait_for(self.call.read(), 5.0)
        assert resp is not grpc.aio.EOF
        return resp

    async def receive(self) -> list[SkBuff]:
        """The skbs of the next message that carries any."""
        while not (resp := await self.read()).skbs:
            pass
        return [SkBuff.from_proto(m) for m in resp.skbs]

    async def send(self, *skbs: SkBuff) -> None:
        await self._out.put(ip_pb2.AttachRequest(skbs=[s.to_proto() for s in skbs]))

    def close(self) -> None:
        self._out.put_nowait(None)


@dataclass
class Ip:
    service: IpService
    stub: ip_pb2_grpc.IpServiceStub
    nic: FakeNic
    udp: UdpSide
    layer: IpLayer = field(init=False)

    def __post_init__(self) -> None:
        self.layer = self.service.servicer.layer

    async def counters(self) -> dict[str, int]:
        resp = await self.stub.GetStats(ip_pb2.GetStatsRequest())
        return {c.name: c.value for c in resp.counters}

    async def drops(self) -> dict[tuple[str, str], int]:
        resp = await self.stub.GetStats(ip_pb2.GetStatsRequest())
        return {(d.reason, d.location): d.count for d in resp.drops}

    async def route(self, daddr: int, saddr: int = 0, oif: int = 0) -> ip_pb2.RouteOutputResponse:
        resp: ip_pb2.RouteOutputResponse = await self.stub.RouteOutput(
            ip_pb2.RouteOutputRequest(daddr=daddr, saddr=saddr, oif=oif)
        )
        return resp


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Only the counters that changed, so an assertion also says nothing else moved."""
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def drop_key(reason: SkbDropReason, location: str) -> tuple[str, str]:
    return (reason.full_name, location)


@asynccontextmanager
async def ip_service(grpc_test_server, poll_until) -> AsyncIterator[Ip]:
    nic = FakeNic()
    async with grpc_test_server(lambda s: nic_pb2_grpc.add_NicServiceServicer_to_server(nic, s)) as nic_addr:
        service = IpService(IpLayer("alice", Sysctl()), list(ADDRESSES), nic_addr)
        health_servicer = health.aio.HealthServicer()
        status = ServingStatus(health_servicer, service.service_names)
        await status.not_serving()
        async with grpc_test_server(
            service.register, lambda s: health_pb2_grpc.add_HealthServicer_to_server(health_servicer, s)
        ) as addr:
            channel = grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS)
            health_stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=service.service_names[0])

            async def serving() -> bool:
                check = await health_stub.Check(request)
                return bool(check.status == health_pb2.HealthCheckResponse.SERVING)

            await service.start(status)
            try:
                # start() connects to the NIC in the background: ListLinks, then Attach.
                await poll_until(serving, "IP to report SERVING")
                await asyncio.wait_for(nic.attached.wait(), 5.0)
                stub = ip_pb2_grpc.IpServiceStub(channel)
                udp = UdpSide(stub)
                # IP's first message carries only the FIB generation: the stream is up.
                first = await udp.read()
                assert not first.skbs
                assert first.fib_genid == service.servicer.layer.fib.genid
                yield Ip(service, stub, nic, udp)
                udp.close()
            finally:
                await service.stop()
                await channel.close()


# The receive path.


def test_datagram_is_delivered_at_the_transport_header(run_async, grpc_test_server, poll_until) -> None:
    seg = udp_segment(b"hello")
    packet = ipv4_header(LOOPBACK, LOOPBACK, len(seg)) + seg

    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            before = await ip.counters()
            ip.nic.inject(frame(packet))
            [skb] = await ip.udp.receive()
            # ip_local_deliver_finish pulled the IP header: data at the UDP header.
            assert skb.payload() == seg
            assert skb.len == len(seg)
            assert skb.network_header == ETH_HLEN
            assert skb.transport_header == skb.data == ETH_HLEN + 20
            assert skb.mac_header == 0
            assert skb.skb_iif == LO
            assert skb.protocol == ETH_P_IP
            # The route lo kept from the send (skb_dst), which ip_rcv_finish reuses.
            assert skb.dst == Dst(LO, LOOPBACK, 65536, RTN_LOCAL, RTCF_LOCAL)
            assert delta(before, await ip.counters()) == {
                "IpInReceives": 1,
                "IpInDelivers": 1,
                "IpExtInOctets": len(packet),
                "IpExtInNoECTPkts": 1,
            }
            assert await ip.drops() == {}

    run_async(scenario())


def _udp_packet(dst: int = LOOPBACK, **kw) -> bytes:
    seg = udp_segment(b"x" * 8)
    return ipv4_header(LOOPBACK if dst == LOOPBACK else A("10.0.0.9"), dst, len(seg), **kw) + seg


def _truncated_header() -> SkBuff:
    skb = frame(_udp_packet())
    skb.trim(19)
    return skb


# (case, frame, counters changed besides the sentinel's, drop) in ip_rcv_core's order.
RECEIVE_DROPS = [
    # When the interface is in promisc. mode, drop all the crap: before InReceives.
    (
        "otherhost",
        lambda: frame(_udp_packet(), pkt_type=PACKET_OTHERHOST),
        {},
        (SkbDropReason.OTHERHOST, "ip_rcv_core"),
    ),
    (
        "shorter than a header",
        _truncated_header,
        {"IpInReceives": 1, "IpExtInOctets": 19, "IpInHdrErrors": 1},
        (SkbDropReason.IP_INHDR, "ip_rcv_core"),
    ),
    (
        "ihl below 5",
        lambda: frame(_udp_packet(ver_ihl=0x44)),
        {"IpInReceives": 1, "IpExtInOctets": 36, "IpInHdrErrors": 1},
        (SkbDropReason.IP_INHDR, "ip_rcv_core"),
    ),
    (
        "version 6",
        lambda: frame(_udp_packet(ver_ihl=0x65)),
        {"IpInReceives": 1, "IpExtInOctets": 36, "IpInHdrErrors": 1},
        (SkbDropReason.IP_INHDR, "ip_rcv_core"),
    ),
    (
        # The ECN counter comes before pskb_may_pull(ihl*4).
        "ihl past the data",
        lambda: frame(_udp_packet(ver_ihl=0x4F)),
        {"IpInReceives": 1, "IpExtInOctets": 36, "IpExtInNoECTPkts": 1, "IpInHdrErrors": 1},
        (SkbDropReason.IP_INHDR, "ip_rcv_core"),
    ),
    (
        # csum_error: falls through to inhdr_error, so both counters move.
        "bad header checksum",
        lambda: frame(_udp_packet(csum=0x1234)),
        {
            "IpInReceives": 1,
            "IpExtInOctets": 36,
            "IpExtInNoECTPkts": 1,
            "IpExtInCsumErrors": 1,
            "IpInHdrErrors": 1,
        },
        (SkbDropReason.IP_CSUM, "ip_rcv_core"),
    ),
    (
        "tot_len past the data",
        lambda: frame(_udp_packet(tot_len=37)),
        {"IpInReceives": 1, "IpExtInOctets": 36, "IpExtInNoECTPkts": 1, "IpExtInTruncatedPkts": 1},
        (SkbDropReason.PKT_TOO_SMALL, "ip_rcv_core"),
    ),
    (
        "tot_len inside the header",
        lambda: frame(_udp_packet(tot_len=19)),
        {"IpInReceives": 1, "IpExtInOctets": 36, "IpExtInNoECTPkts": 1, "IpInHdrErrors": 1},
        (SkbDropReason.IP_INHDR, "ip_rcv_core"),
    ),
    (
        # Forwarding is off: ip_error() with EHOSTUNREACH.
        "not for this host",
        lambda: frame(_udp_packet(dst=BOB), ifindex=ETH0),
        {"IpInReceives": 1, "IpExtInOctets": 36, "IpExtInNoECTPkts": 1, "IpInAddrErrors": 1},
        (SkbDropReason.IP_INADDRERRORS, "ip_error"),
    ),
    (
        # No route at all is EHOSTUNREACH too while forwarding is off (checked on 6.18).
        "no route",
        lambda: frame(_udp_packet(dst=A("198.51.100.7")), ifindex=ETH0),
        {"IpInReceives": 1, "IpExtInOctets": 36, "IpExtInNoECTPkts": 1, "IpInAddrErrors": 1},
        (SkbDropReason.IP_INADDRERRORS, "ip_error"),
    ),
    (
        # No inet_protos handler and no raw socket: not counted as delivered, and a
        # protocol unreachable (20 + 8 + the 36 bytes quoted) goes back.
        "unknown protocol",
        lambda: frame(_udp_packet(protocol=99)),
        {
            "IpInReceives": 1,
            "IpExtInOctets": 36,
            "IpExtInNoECTPkts": 1,
            "IpInUnknownProtos": 1,
            "IcmpOutMsgs": 1,
            "IcmpOutDestUnreachs": 1,
            "IcmpMsgOutType3": 1,
            "IpOutRequests": 1,
            "IpExtOutOctets": 64,
            "IpOutTransmits": 1,
        },
        (SkbDropReason.IP_NOPROTO, "ip_protocol_deliver_rcu"),
    ),
    (
        # The first fragment of a datagram waits in its reassembly queue: no drop.
        "fragment",
        lambda: frame(_udp_packet(frag_off=0x2000)),
        {"IpInReceives": 1, "IpExtInOctets": 36, "IpExtInNoECTPkts": 1, "IpReasmReqds": 1},
        None,
    ),
]


@pytest.mark.parametrize(
    ("make", "counts", "drop"), [c[1:] for c in RECEIVE_DROPS], ids=[c[0] for c in RECEIVE_DROPS]
)
def test_ip_rcv_drops(run_async, grpc_test_server, poll_until, make, counts, drop) -> None:
    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            before = await ip.counters()
            ip.nic.inject(make(), frame(SENTINEL))
            delivered = await ip.udp.receive()
            assert [s.payload() for s in delivered] == [SENTINEL_UDP]
            expected = dict(SENTINEL_COUNTS)
            for name, n in counts.items():
                expected[name] = expected.get(name, 0) + n
            assert delta(before, await ip.counters()) == expected
            assert await ip.drops() == ({drop_key(*drop): 1} if drop else {})

    run_async(scenario())


# Frames that are delivered, with the counters they add.
RECEIVE_OK = [
    (
        # pskb_trim_rcsum(): a 60-byte minimum frame carrying a 28-byte packet reaches UDP
        # with len 8. IpExtInOctets counts the padded length, as Linux does.
        "ethernet padding trimmed",
        lambda: frame(ipv4_header(BOB, ALICE, 8) + udp_segment(b""), ifindex=ETH0, pad_to=ETH_ZLEN),
        8,
        {"IpInReceives": 1, "IpInDelivers": 1, "IpExtInOctets": ETH_ZLEN - ETH_HLEN, "IpExtInNoECTPkts": 1},
    ),
    (
        "congestion experienced",
        lambda: frame(ipv4_header(LOOPBACK, LOOPBACK, 8, tos=0x03) + udp_segment(b"")),
        8,
        {"IpInReceives": 1, "IpInDelivers": 1, "IpExtInOctets": 28, "IpExtInCEPkts": 1},
    ),
    (
        "subnet broadcast",
        lambda: frame(ipv4_header(BOB, A("10.0.0.255"), 8) + udp_segment(b""), ifindex=ETH0),
        8,
        {
            "IpInReceives": 1,
            "IpInDelivers": 1,
            "IpExtInOctets": 28,
            "IpExtInNoECTPkts": 1,
            "IpExtInBcastPkts": 1,
            "IpExtInBcastOctets": 28,
        },
    ),
]


@pytest.mark.parametrize(
    ("make", "length", "counts"), [c[1:] for c in RECEIVE_OK], ids=[c[0] for c in RECEIVE_OK]
)
def test_ip_rcv_delivers(run_async, grpc_test_server, poll_until, make, length, counts) -> None:
    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            before = await ip.counters()
            ip.nic.inject(make())
            [skb] = await ip.udp.receive()
            assert skb.len == length
            assert skb.transport_header == skb.data
            assert delta(before, await ip.counters()) == counts
            assert await ip.drops() == {}

    run_async(scenario())


# The transmit path.


async def send_udp(
    ip: Ip,
    daddr: int,
    payload: bytes,
    *,
    pmtudisc: int = IP_PMTUDISC_WANT,
    inet_id: int | None = None,
    ttl: int = 0,
) -> tuple[SkBuff, bytes, ip_pb2.RouteOutputResponse]:
    """udp_sendmsg's hand-off: a UDP segment at data, its cork and its route."""
    route = await ip.route(daddr)
    assert route.errno == 0
    seg = udp_segment(payload)
    skb = alloc_skb(len(seg), 128)
    skb.put_data(seg)
    skb.reset_transport_header()
    d = route.dst
    skb.dst = Dst(d.ifindex, d.nexthop, d.mtu, d.rt_type, d.flags)
    skb.cork = IpCork(route.saddr, daddr, IPPROTO_UDP, ttl, 0, pmtudisc, b"", inet_id)
    await ip.udp.send(skb)
    return await ip.nic.next_transmitted(), seg, route


def test_connected_send_uses_the_socket_ident(run_async, grpc_test_server, poll_until) -> None:
    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            before = await ip.counters()
            out, seg, route = await send_udp(ip, BOB, b"payload", inet_id=0x1234)
            assert route.saddr == ALICE
            # IP_PMTUDISC_WANT and it fits the 1500 MTU: DF; a connected socket's inet_id.
            # 45 00 | tot_len 35 | id 0x1234 | DF | TTL 64, UDP | checksum | 10.0.0.1 | 10.0.0.7
            header = bytes.fromhex("45000023123440004011148f0a0000010a000007")
            assert header == ipv4_header(ALICE, BOB, len(seg), ident=0x1234, frag_off=0x4000)
            assert out.payload() == header + seg
            assert out.network_header == out.data
            assert out.transport_header == out.data + 20
            assert out.protocol == ETH_P_IP
            assert out.dst is not None and (out.dst.ifindex, out.dst.mtu) == (ETH0, 1500)
            assert out.mac_header == HEADER_UNSET
            # ip_sk_ignore_df(): pmtudisc < IP_PMTUDISC_DO may still be fragmented.
            assert out.ignore_df
            assert delta(before, await ip.counters()) == {
                "IpOutRequests": 1,
                "IpOutTransmits": 1,
                "IpExtOutOctets": len(header) + len(seg),
            }

    run_async(scenario())


def test_pmtudisc_do_sends_ident_zero(run_async, grpc_test_server, poll_until) -> None:
    """ip_select_ident_segs(): an unconnected DF packet that may not be fragmented
    (IP_PMTUDISC_DO, so not ignore_df) gets id 0."""

    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            out, seg, route = await send_udp(ip, LOOPBACK, b"to myself", pmtudisc=IP_PMTUDISC_DO)
            assert route.dst.ifindex == LO
            assert out.payload() == ipv4_header(LOOPBACK, LOOPBACK, len(seg), ident=0, frag_off=0x4000) + seg
            assert not out.ignore_df

    run_async(scenario())


@pytest.mark.parametrize(("pmtudisc", "frag_off"), [(IP_PMTUDISC_WANT, 0x4000), (IP_PMTUDISC_DONT, 0)])
def test_unconnected_send_takes_a_hashed_ident(
    run_async, grpc_test_server, poll_until, pmtudisc, frag_off
) -> None:
    """Without a socket ident, ignore_df (pmtudisc < DO) sends the id from
    __ip_select_ident's keyed counters: not predictable, but the header checksum covers it."""

    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            out, seg, _ = await send_udp(ip, BOB, b"", pmtudisc=pmtudisc)
            raw = out.payload()
            ident = int.from_bytes(raw[4:6], "big")
            assert raw == ipv4_header(ALICE, BOB, len(seg), ident=ident, frag_off=frag_off) + seg
            assert rfc1071(raw[:20]) == 0

    run_async(scenario())


def test_ttl_comes_from_the_sysctl_or_the_cork(run_async, grpc_test_server, poll_until) -> None:
    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            out, seg, _ = await send_udp(ip, BOB, b"a", inet_id=1)
            assert out.payload()[8] == 64  # net.ipv4.ip_default_ttl
            ip.layer.sysctl.set("net.ipv4.ip_default_ttl", 17)
            out, seg, _ = await send_udp(ip, BOB, b"b", inet_id=2)
            assert out.payload() == ipv4_header(ALICE, BOB, len(seg), ident=2, frag_off=0x4000, ttl=17) + seg
            out, seg, _ = await send_udp(ip, BOB, b"c", inet_id=3, ttl=5)  # IP_TTL
            assert out.payload()[8] == 5

    run_async(scenario())


def test_broadcast_send_counts_out_bcast(run_async, grpc_test_server, poll_until) -> None:
    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            before = await ip.counters()
            out, seg, route = await send_udp(ip, A("10.0.0.255"), b"all", inet_id=7)
            assert route.dst.flags == RTCF_BROADCAST | RTCF_LOCAL
            assert (
                out.payload() == ipv4_header(ALICE, A("10.0.0.255"), len(seg), ident=7, frag_off=0x4000) + seg
            )
            n = 20 + len(seg)
            assert delta(before, await ip.counters()) == {
                "IpOutRequests": 1,
                "IpOutTransmits": 1,
                "IpExtOutOctets": n,
                "IpExtOutBcastPkts": 1,
                "IpExtOutBcastOctets": n,
            }

    run_async(scenario())


def test_send_without_cork_is_an_out_discard(run_async, grpc_test_server, poll_until) -> None:
    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            before = await ip.counters()
            skb = alloc_skb(8, 64)
            skb.put_data(udp_segment(b""))
            skb.dst = Dst(LO, LOOPBACK, 65536, RTN_LOCAL, RTCF_LOCAL)
            await ip.udp.send(skb)
            await poll_until(lambda: ip.layer.mib.ip.get("OutDiscards") == 1, "OutDiscards")
            assert delta(before, await ip.counters()) == {"IpOutDiscards": 1}
            assert await ip.drops() == {drop_key(SkbDropReason.NOT_SPECIFIED, "ip_send_skb"): 1}
            assert ip.nic.transmitted.empty()

    run_async(scenario())


# Routing: ip_route_output_key through the RouteOutput RPC.


def _dst(ifindex: int, nexthop: int, mtu: int, rt_type: int, flags: int) -> skb_pb2.Dst:
    return skb_pb2.Dst(ifindex=ifindex, nexthop=nexthop, mtu=mtu, rt_type=rt_type, flags=flags)


# (daddr, saddr, expected errno, expected dst, expected saddr); `ip route get` in a
# namespace with lo 127.0.0.1/8 and eth0 10.0.0.1/24 (brd +) on 6.18.44 gives the same.
ROUTES = [
    # local 127.0.0.5 dev lo src 127.0.0.1
    ("127.0.0.5", "0.0.0.0", 0, _dst(LO, A("127.0.0.5"), 65536, RTN_LOCAL, RTCF_LOCAL), "127.0.0.1"),
    # local 10.0.0.1 dev lo src 10.0.0.1
    ("10.0.0.1", "0.0.0.0", 0, _dst(LO, ALICE, 65536, RTN_LOCAL, RTCF_LOCAL), "10.0.0.1"),
    # 10.0.0.7 dev eth0 src 10.0.0.1
    ("10.0.0.7", "0.0.0.0", 0, _dst(ETH0, BOB, 1500, RTN_UNICAST, 0), "10.0.0.1"),
    # broadcast 10.0.0.255 dev eth0 src 10.0.0.1 (cache <local,brd>)
    (
        "10.0.0.255",
        "0.0.0.0",
        0,
        _dst(ETH0, A("10.0.0.255"), 1500, RTN_BROADCAST, RTCF_BROADCAST | RTCF_LOCAL),
        "10.0.0.1",
    ),
    # local 0.0.0.0 dev lo src 127.0.0.1
    ("0.0.0.0", "0.0.0.0", 0, _dst(LO, LOOPBACK, 65536, RTN_LOCAL, RTCF_LOCAL), "127.0.0.1"),
    # local 127.0.0.5 from 127.0.0.9 dev lo: any address of a local route is ours
    ("127.0.0.5", "127.0.0.9", 0, _dst(LO, A("127.0.0.5"), 65536, RTN_LOCAL, RTCF_LOCAL), "127.0.0.9"),
    # RTNETLINK answers: Network is unreachable (no default route)
    ("8.8.8.8", "0.0.0.0", errno.ENETUNREACH, None, "0.0.0.0"),
    # from an address that is not ours: Network is unreachable, not Invalid argument
    ("10.0.0.7", "10.0.0.99", errno.ENETUNREACH, None, "0.0.0.0"),
    # from a multicast or the limited broadcast address: Invalid argument
    ("10.0.0.7", "224.0.0.1", errno.EINVAL, None, "0.0.0.0"),
    ("10.0.0.7", "255.255.255.255", errno.EINVAL, None, "0.0.0.0"),
    # a loopback source may not leave on eth0: Invalid argument
    ("10.0.0.7", "127.0.0.1", errno.EINVAL, None, "0.0.0.0"),
]


@pytest.mark.parametrize(
    ("daddr", "saddr", "err", "dst", "src"), ROUTES, ids=[f"{r[1]}->{r[0]}" for r in ROUTES]
)
def test_route_output(run_async, grpc_test_server, poll_until, daddr, saddr, err, dst, src) -> None:
    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            before = await ip.counters()
            resp = await ip.route(A(daddr), A(saddr))
            assert resp.errno == err
            assert resp.fib_genid == ip.layer.fib.genid
            if dst is None:
                assert not resp.HasField("dst")
            else:
                assert resp.dst == dst
            assert resp.saddr == A(src)
            # udp_sendmsg and connect count IPSTATS_MIB_OUTNOROUTES for -ENETUNREACH.
            expected = {"IpOutNoRoutes": 1} if err == errno.ENETUNREACH else {}
            assert delta(before, await ip.counters()) == expected

    run_async(scenario())


def _kernel_route(daddr: str) -> dict[str, object] | None:
    ip_cmd = shutil.which("ip")
    if ip_cmd is None:
        return None
    out = subprocess.run([ip_cmd, "-j", "route", "get", daddr], capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        return None
    routes = json.loads(out.stdout)
    return routes[0] if routes else None


@pytest.mark.parametrize("daddr", ["127.0.0.1", "127.0.0.5", "127.255.255.254"])
def test_route_output_matches_this_kernel_for_loopback(
    run_async, grpc_test_server, poll_until, daddr
) -> None:
    """A read-only `ip route get` on this machine for 127.x (no traffic is sent)."""
    kernel = _kernel_route(daddr)
    if kernel is None:
        pytest.skip("`ip route get` is not available here")

    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            resp = await ip.route(A(daddr))
            assert resp.errno == 0
            assert kernel["type"] == "local" and resp.dst.rt_type == RTN_LOCAL
            assert kernel["dev"] == "lo" and resp.dst.ifindex == LO
            assert resp.saddr == A(str(kernel["prefsrc"]))

    run_async(scenario())


def test_list_addrs(run_async, grpc_test_server, poll_until) -> None:
    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            resp = await ip.stub.ListAddrs(ip_pb2.ListAddrsRequest())
            assert list(resp.addrs) == [
                # scope host (254) for lo's, IFA_F_PERMANENT (0x80) for both.
                ip_pb2.InterfaceAddress(
                    ifindex=LO,
                    label="lo",
                    address=LOOPBACK,
                    prefixlen=8,
                    broadcast=A("127.255.255.255"),
                    scope=254,
                    flags=0x80,
                ),
                ip_pb2.InterfaceAddress(
                    ifindex=ETH0,
                    label="eth0",
                    address=ALICE,
                    prefixlen=24,
                    broadcast=A("10.0.0.255"),
                    flags=0x80,
                ),
            ]

    run_async(scenario())


class SlowNic(FakeNic):
    """A NIC whose ListLinks answers only when the test lets it: IP cannot know its
    devices until then."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def ListLinks(
        self, request: nic_pb2.ListLinksRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.ListLinksResponse:
        await self.release.wait()
        resp: nic_pb2.ListLinksResponse = await super().ListLinks(request, context)  # type: ignore[no-untyped-call]
        return resp


def test_a_transport_attached_before_the_links_hears_of_the_devices(run_async, grpc_test_server) -> None:
    """The UDP layer may attach to IP before IP has asked the NIC for its links (at
    start-up the services come up in any order): IP's first message then names no
    device, and the devices must follow once IP knows them (SO_BINDTODEVICE resolves
    names against them; a stack once answered ENODEV for "lo" this way)."""

    async def scenario() -> None:
        nic = SlowNic()
        add_nic = lambda s: nic_pb2_grpc.add_NicServiceServicer_to_server(nic, s)  # noqa: E731
        async with grpc_test_server(add_nic) as nic_addr:
            service = IpService(IpLayer("alice", Sysctl()), list(ADDRESSES), nic_addr)
            status = ServingStatus(health.aio.HealthServicer(), service.service_names)
            async with grpc_test_server(service.register) as addr:
                channel = grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS)
                await service.start(status)
                try:
                    udp = UdpSide(ip_pb2_grpc.IpServiceStub(channel))
                    first = await udp.read()
                    assert list(first.devices) == []
                    nic.release.set()
                    resp = await udp.read()
                    assert [(d.ifindex, d.name) for d in resp.devices] == [(LO, "lo"), (ETH0, "eth0")]
                    udp.close()
                finally:
                    await service.stop()
                    await channel.close()

    run_async(scenario())
