"""gRPC adapter for the IP layer: client of the NIC's Attach, server of the UDP
layer's Attach, and the routing and statistics RPCs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc

from services.core.convert import drops_to_proto, skbs_from_proto, skbs_to_proto
from services.core.server import CHANNEL_OPTIONS, Service, ServingStatus, retry_forever
from services.core.skbuff import SkBuff
from services.core.snmp import to_flat_dict
from services.core.stream import AttachGate, BatchQueue, messages
from services.ip.control import IpControl
from services.ip.fib import InIfaddr
from services.ip.layer import IpLayer
from services.ip.route import RouteError
from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
from stackemu.skb.v1 import skb_pb2


class IpServicer(IpControl):
    def __init__(self, layer: IpLayer, addresses: list[tuple[str, int, int]]) -> None:
        self.layer = layer
        self.addresses = addresses
        self.up: BatchQueue[SkBuff] = BatchQueue()
        self.down: BatchQueue[SkBuff] = BatchQueue()
        self.links_known = asyncio.Event()
        self.gate = AttachGate("a UDP layer")

    # The NIC side.

    async def attach_nic(self, channel: grpc.aio.Channel, on_ready: Callable[[], object]) -> None:
        stub = nic_pb2_grpc.NicServiceStub(channel)
        links = await stub.ListLinks(nic_pb2.ListLinksRequest())
        if not self.links_known.is_set():
            self.layer.set_links((link.ifindex, link.mtu) for link in links.links)
            by_name = {link.name: link.ifindex for link in links.links}
            for label, address, prefixlen in self.addresses:
                if label not in by_name:
                    raise RuntimeError(f"address for {label}, which the NIC does not have")
                self.layer.add_address(InIfaddr(by_name[label], label, address, prefixlen))
            self.links_known.set()
        # A fresh queue per stream: a failed stream's request iterator may still be
        # waiting on the old one and must not take skbs meant for the new stream.
        self.down = BatchQueue()
        call = stub.Attach(self._nic_requests(self.down))
        await on_ready()  # type: ignore[misc]
        async for resp in call:
            layer = self.layer
            if resp.links:
                # The netdevice notifier (NETDEV_CHANGEMTU, UP, DOWN): routes through a
                # device take its new MTU.
                layer.set_links((link.ifindex, link.mtu) for link in resp.links)
            for skb in skbs_from_proto(resp.skbs, layer.drops, "ip_rcv"):
                layer.ip_rcv(skb)
            batch, layer.to_transport = layer.to_transport, []
            await self.up.put(batch)

    async def _nic_requests(self, down: BatchQueue[SkBuff]) -> AsyncIterator[nic_pb2.AttachRequest]:
        """The host's addresses first (ARP answers for them), then transmit batches."""
        yield nic_pb2.AttachRequest(
            addrs=nic_pb2.InetAddrs(
                addrs=[
                    nic_pb2.InetAddr(ifindex=ifa.ifindex, address=ifa.address, prefixlen=ifa.prefixlen)
                    for ifa in self.layer.fib.ifaddrs
                ]
            )
        )
        async for msg in messages(down, lambda b: nic_pb2.AttachRequest(skbs=skbs_to_proto(b))):
            yield msg

    # The UDP side.

    async def _transmit(self, req: ip_pb2.AttachRequest) -> None:
        layer = self.layer
        for skb in skbs_from_proto(req.skbs, layer.drops, "ip_send_skb"):
            layer.ip_send_skb(skb)
        batch, layer.to_device = layer.to_device, []
        await self.down.put(batch)

    async def Attach(
        self, request_iterator: AsyncIterator[ip_pb2.AttachRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ip_pb2.AttachResponse]:
        genid = self.layer.fib
        async for resp in self.gate.serve(
            context,
            request_iterator,
            self.up,
            self._transmit,
            lambda b: ip_pb2.AttachResponse(skbs=skbs_to_proto(b), fib_genid=genid.genid),
            # The first message tells the caller the FIB generation before any traffic.
            first=ip_pb2.AttachResponse(fib_genid=genid.genid),
        ):
            yield resp

    async def RouteOutput(
        self, request: ip_pb2.RouteOutputRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.RouteOutputResponse:
        for name in ("daddr", "saddr"):
            if getattr(request, name) > 0xFFFFFFFF:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name} is not an IPv4 address")
        genid = self.layer.fib.genid
        try:
            dst, saddr = self.layer.router.output(request.daddr, request.saddr, request.oif)
        except RouteError as err:
            return ip_pb2.RouteOutputResponse(errno=err.errno, fib_genid=genid)
        return ip_pb2.RouteOutputResponse(
            dst=skb_pb2.Dst(
                ifindex=dst.ifindex, nexthop=dst.nexthop, mtu=dst.mtu, rt_type=dst.rt_type, flags=dst.flags
            ),
            saddr=saddr,
            fib_genid=genid,
        )

    async def ListAddrs(
        self, request: ip_pb2.ListAddrsRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.ListAddrsResponse:
        return ip_pb2.ListAddrsResponse(
            addrs=[
                ip_pb2.InterfaceAddress(
                    ifindex=ifa.ifindex,
                    label=ifa.label,
                    address=ifa.address,
                    prefixlen=ifa.prefixlen,
                    broadcast=ifa.broadcast,
                )
                for ifa in self.layer.fib.ifaddrs
            ]
        )

    async def GetStats(
        self, request: ip_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.GetStatsResponse:
        flat = to_flat_dict(self.layer.mib)
        return ip_pb2.GetStatsResponse(
            counters=[
                skb_pb2.Counter(name=k, value=v)
                for k, v in flat.items()
                if k.startswith(("Ip", "Icmp")) and v >= 0
            ],
            drops=drops_to_proto(self.layer.drops),
        )


class IpService(Service):
    name = "ip"
    service_names = [ip_pb2.DESCRIPTOR.services_by_name["IpService"].full_name]

    def __init__(self, layer: IpLayer, addresses: list[tuple[str, int, int]], nic_addr: str) -> None:
        self.servicer = IpServicer(layer, addresses)
        self.nic_addr = nic_addr
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None

    def register(self, server: grpc.aio.Server) -> None:
        ip_pb2_grpc.add_IpServiceServicer_to_server(self.servicer, server)

    async def start(self, health: ServingStatus) -> None:
        self._channel = grpc.aio.insecure_channel(self.nic_addr, options=CHANNEL_OPTIONS)
        channel = self._channel
        self._task = asyncio.create_task(
            retry_forever(lambda: self.servicer.attach_nic(channel, health.serving), "attach to nic")
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._channel is not None:
            await self._channel.close()
