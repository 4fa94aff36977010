"""Two NIC services joined by the wire, each with the test playing its IP layer: ARP
over the wire, a datagram across, netem faults set over gRPC and counted, the packet
taps, and the control RPCs' answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from grpc_health.v1 import health

from services.core.server import CHANNEL_OPTIONS, ServingStatus
from services.core.skbuff import PACKET_HOST, PACKET_OUTGOING, SkBuff
from services.core.sysctl import Sysctl
from services.core.wire.ethernet import ETH_HLEN
from services.core.wire.ipv4 import ip_from_str
from services.nic.device import ether_dev, loopback_dev
from services.nic.layer import NicLayer
from services.nic.servicer import NicService
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
from tests.services.nicframes import ALICE, ALICE_MAC, BOB, BOB_MAC, ETH0, tx_skb, udp_packet

LOOPBACK = ip_from_str("127.0.0.1")


class IpSide:
    """One host's IP layer on the NIC's Attach stream."""

    def __init__(self, stub: nic_pb2_grpc.NicServiceStub, addr: int) -> None:
        self._out: asyncio.Queue[nic_pb2.AttachRequest | None] = asyncio.Queue()
        self._out.put_nowait(
            nic_pb2.AttachRequest(
                addrs=nic_pb2.InetAddrs(
                    addrs=[
                        nic_pb2.InetAddr(ifindex=1, address=LOOPBACK, prefixlen=8),
                        nic_pb2.InetAddr(ifindex=ETH0, address=addr, prefixlen=24),
                    ]
                )
            )
        )
        self.call = stub.Attach(self._requests())
        self.links: list[nic_pb2.Link] = []

    async def _requests(self) -> AsyncIterator[nic_pb2.AttachRequest]:
        while (req := await self._out.get()) is not None:
            yield req

    async def send(self, *skbs: SkBuff) -> None:
        await self._out.put(nic_pb2.AttachRequest(skbs=[s.to_proto() for s in skbs]))

    async def receive(self, n: int) -> list[SkBuff]:
        got: list[SkBuff] = []
        while len(got) < n:
            resp = await asyncio.wait_for(self.call.read(), 5.0)
            assert resp is not grpc.aio.EOF
            self.links.extend(resp.links)
            got.extend(SkBuff.from_proto(m) for m in resp.skbs)
        assert len(got) == n
        return got

    def close(self) -> None:
        self._out.put_nowait(None)


class Host:
    def __init__(self, service: NicService, channel: grpc.aio.Channel, addr: int) -> None:
        self.service = service
        self.layer = service.servicer.layer
        self.stub = nic_pb2_grpc.NicServiceStub(channel)
        self.ip = IpSide(self.stub, addr)


def host_layer(name: str, mac: bytes) -> NicLayer:
    sysctl = Sysctl({"net.core.netdev_budget_usecs": 10_000_000})
    return NicLayer(name, [loopback_dev(), ether_dev(ETH0, "eth0", mac)], sysctl)


@asynccontextmanager
async def wired(grpc_test_server) -> AsyncIterator[tuple[Host, Host]]:
    """alice and bob, each NIC served for real, eth0 wired to the other's eth0."""
    services = [NicService(host_layer("alice", ALICE_MAC)), NicService(host_layer("bob", BOB_MAC))]
    async with (
        grpc_test_server(services[0].register) as a_addr,
        grpc_test_server(services[1].register) as b_addr,
    ):
        services[0].wires = [("eth0", b_addr, "eth0")]
        services[1].wires = [("eth0", a_addr, "eth0")]
        channels = []
        for s in services:
            await s.start(ServingStatus(health.aio.HealthServicer(), s.service_names))
        try:
            for addr in (a_addr, b_addr):
                channels.append(grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS))
            yield Host(services[0], channels[0], ALICE), Host(services[1], channels[1], BOB)
        finally:
            for s in services:
                await s.stop()
            for c in channels:
                await c.close()


async def carrier_up(poll_until, *hosts: Host) -> None:
    await poll_until(lambda: all(h.layer.devices[ETH0].carrier for h in hosts), "carrier on both ends")


def test_datagram_crosses_the_wire_after_arp(run_async, grpc_test_server, poll_until) -> None:
    packet = udp_packet(b"hello bob", src=ALICE, dst=BOB)

    async def scenario() -> None:
        async with wired(grpc_test_server) as (alice, bob):
            await carrier_up(poll_until, alice, bob)
            await alice.ip.send(tx_skb(packet))
            [skb] = await bob.ip.receive(1)
            # The frame came padded to 60 bytes; ip_rcv_core trims to tot_len.
            assert skb.payload() == packet + bytes(60 - ETH_HLEN - len(packet))
            assert bytes(skb.head[skb.mac_header : skb.data]) == BOB_MAC + ALICE_MAC + b"\x08\x00"
            # Both learned each other: alice from the reply, bob from the request.
            a = await alice.stub.ListNeighbours(nic_pb2.ListNeighboursRequest())
            b = await bob.stub.ListNeighbours(nic_pb2.ListNeighboursRequest(device="eth0"))
            assert [(n.address, n.lladdr) for n in a.neighbours] == [(BOB, BOB_MAC)]
            assert [(n.address, n.lladdr) for n in b.neighbours] == [(ALICE, ALICE_MAC)]
            links = {lk.name: lk for lk in (await alice.stub.ListLinks(nic_pb2.ListLinksRequest())).links}
            eth = links["eth0"]
            assert (eth.kind, eth.carrier, eth.qdisc) == ("wire", True, "pfifo_fast")
            # The ARP request and the datagram, each padded to ETH_ZLEN.
            assert (eth.stats.tx_packets, eth.stats.tx_bytes) == (2, 60 + 60)
            alice.ip.close()
            bob.ip.close()

    run_async(scenario())


def test_netem_loss_over_grpc_and_counted(run_async, grpc_test_server, poll_until) -> None:
    async def scenario() -> None:
        async with wired(grpc_test_server) as (alice, bob):
            await carrier_up(poll_until, alice, bob)
            add = await alice.stub.AddNeighbour(
                nic_pb2.AddNeighbourRequest(device="eth0", address=BOB, lladdr=BOB_MAC)
            )
            assert add.errno == 0
            resp = await alice.stub.SetNetem(
                nic_pb2.SetNetemRequest(device="eth0", netem=nic_pb2.Netem(loss_pct=100.0, seed=7))
            )
            assert resp.errno == 0
            await alice.ip.send(*(tx_skb(udp_packet(bytes([i]), src=ALICE, dst=BOB)) for i in range(10)))
            await poll_until(lambda: alice.layer.netem[ETH0].stats.lost == 10, "10 lost")
            got = await alice.stub.GetNetem(nic_pb2.GetNetemRequest(device="eth0"))
            assert (got.netem.loss_pct, got.stats.lost, got.stats.sent) == (100.0, 10, 0)
            bad = await alice.stub.SetNetem(
                nic_pb2.SetNetemRequest(device="eth0", netem=nic_pb2.Netem(loss_pct=150.0))
            )
            assert bad.errno == 22
            await alice.stub.SetNetem(nic_pb2.SetNetemRequest(device="eth0"))
            after = udp_packet(b"after", src=ALICE, dst=BOB)
            await alice.ip.send(tx_skb(after))
            [skb] = await bob.ip.receive(1)
            assert skb.payload()[: len(after)] == after
            alice.ip.close()
            bob.ip.close()

    run_async(scenario())


def test_capture_sees_frames_both_ways(run_async, grpc_test_server, poll_until) -> None:
    async def scenario() -> None:
        async with wired(grpc_test_server) as (alice, bob):
            await carrier_up(poll_until, alice, bob)
            capture = alice.stub.Capture(nic_pb2.CaptureRequest(device="eth0", count=3))
            await poll_until(lambda: bool(alice.layer.taps), "tap registered")
            await alice.ip.send(tx_skb(udp_packet(b"tapped", src=ALICE, dst=BOB)))
            await bob.ip.receive(1)
            got = [c async for c in capture]
            # The ARP request out, bob's reply in, then the datagram out.
            assert [(c.pkt_type, c.device, c.frame[12:14]) for c in got] == [
                (PACKET_OUTGOING, "eth0", b"\x08\x06"),
                (PACKET_HOST, "eth0", b"\x08\x06"),
                (PACKET_OUTGOING, "eth0", b"\x08\x00"),
            ]
            tapped = udp_packet(b"tapped", src=ALICE, dst=BOB)
            assert got[2].frame[ETH_HLEN : ETH_HLEN + len(tapped)] == tapped
            assert got[0].tstamp <= got[1].tstamp <= got[2].tstamp
            alice.ip.close()
            bob.ip.close()

    run_async(scenario())


def test_control_rpcs_answer_like_the_kernel(run_async, grpc_test_server) -> None:
    async def scenario() -> None:
        async with wired(grpc_test_server) as (alice, _):
            s = alice.stub
            ring = await s.GetRingParam(nic_pb2.GetRingParamRequest(device="eth0"))
            assert (ring.rx_max_pending, ring.rx_pending, ring.tx_pending) == (4096, 256, 256)
            assert (await s.GetRingParam(nic_pb2.GetRingParamRequest(device="lo"))).errno == 95
            assert (await s.GetRingParam(nic_pb2.GetRingParamRequest(device="eth9"))).errno == 19
            r = await s.SetRingParam(nic_pb2.SetRingParamRequest(device="eth0", rx_pending=5000))
            assert r.errno == 22
            c = await s.SetCoalesce(nic_pb2.SetCoalesceRequest(device="eth0", rx_usecs=50))
            assert c.errno == 0
            got = await s.GetCoalesce(nic_pb2.GetCoalesceRequest(device="eth0"))
            assert (got.rx_usecs, got.rx_max_frames) == (50, 0)
            f = await s.SetFeatures(nic_pb2.SetFeaturesRequest(device="eth0", features={"gro": False}))
            assert {x.name: x.active for x in f.features}["generic-receive-offload"] is False
            link = await s.SetLink(nic_pb2.SetLinkRequest(device="eth0", mtu=9000, promisc=True))
            assert (link.errno, link.link.mtu, link.link.flags & 0x100) == (0, 9000, 0x100)
            sysctl = await s.SetSysctl(nic_pb2.SetSysctlRequest(name="net.core.netdev_budget", value="50"))
            assert sysctl.errno == 0
            vals = await s.GetSysctl(nic_pb2.GetSysctlRequest(names=["net.core.netdev_budget"]))
            assert dict(vals.values) == {"net.core.netdev_budget": "50"}
            bad = await s.SetSysctl(nic_pb2.SetSysctlRequest(name="net.core.netdev_budget", value="x"))
            assert bad.errno == 22
            missing = await s.GetSysctl(nic_pb2.GetSysctlRequest(names=["net.core.nope"]))
            assert missing.errno == 2
            ts = await s.GetTsInfo(nic_pb2.GetTsInfoRequest(device="eth0"))
            assert (ts.phc_index, ts.so_timestamping) == (0, 0x5F)
            stats = await s.GetEthtoolStats(nic_pb2.GetEthtoolStatsRequest(device="eth0"))
            names = [c.name for c in stats.stats]
            assert names[:4] == ["rx_packets", "tx_packets", "rx_bytes", "tx_bytes"]
            assert "rx_missed_errors" in names and "rx_irqs" in names

    run_async(scenario())


def test_wire_and_capture_refuse_what_makes_no_sense(run_async, grpc_test_server) -> None:
    async def scenario() -> None:
        async with wired(grpc_test_server) as (alice, _):

            async def frames(device: str) -> AsyncIterator[nic_pb2.WireRequest]:
                yield nic_pb2.WireRequest(device=device, frames=[b"\x00" * 60])

            for device in ("", "eth7", "lo"):
                try:
                    await alice.stub.Wire(frames(device))
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
                    assert f"no wire device {device!r}" in (err.details() or "")
                else:
                    raise AssertionError(f"Wire to {device!r} was accepted")
            capture = alice.stub.Capture(nic_pb2.CaptureRequest(device="eth7"))
            try:
                await capture.read()
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            else:
                raise AssertionError("Capture on eth7 was accepted")
            # Nothing reached a ring.
            assert alice.layer.devices[ETH0].stats.rx_packets == 0

    run_async(scenario())
