"""gRPC adapter for the NIC layer: the Attach stream to IP and the control RPCs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from services.core.convert import drops_to_proto, skbs_from_proto, skbs_to_proto
from services.core.server import Service, ServingStatus
from services.core.skbuff import SkBuff
from services.core.stream import AttachGate, BatchQueue
from services.nic.layer import NicLayer
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc


class NicServicer(nic_pb2_grpc.NicServiceServicer):
    def __init__(self, layer: NicLayer) -> None:
        self.layer = layer
        self.up: BatchQueue[SkBuff] = BatchQueue()
        self._kick = asyncio.Event()
        self.gate = AttachGate("an IP layer")

    def raise_softirq(self) -> None:
        self._kick.set()

    async def softirq(self) -> None:
        """The NET_RX softirq (ksoftirqd): poll until no work is left, yielding to the
        event loop between rounds as the kernel defers to ksoftirqd after a squeeze."""
        while True:
            await self._kick.wait()
            self._kick.clear()
            more = True
            while more:
                batch, more = self.layer.poll()
                await self.up.put(batch)
                if more:
                    await asyncio.sleep(0)

    async def _transmit(self, req: nic_pb2.AttachRequest) -> None:
        for skb in skbs_from_proto(req.skbs, self.layer.drops, "dev_queue_xmit"):
            self.layer.dev_queue_xmit(skb)
        if self.layer.softirq_pending():
            self.raise_softirq()

    async def Attach(
        self, request_iterator: AsyncIterator[nic_pb2.AttachRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[nic_pb2.AttachResponse]:
        async for resp in self.gate.serve(
            context,
            request_iterator,
            self.up,
            self._transmit,
            lambda batch: nic_pb2.AttachResponse(skbs=skbs_to_proto(batch)),
        ):
            yield resp

    async def ListLinks(
        self, request: nic_pb2.ListLinksRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.ListLinksResponse:
        links = []
        for dev in sorted(self.layer.devices.values(), key=lambda d: d.ifindex):
            s = dev.stats
            links.append(
                nic_pb2.Link(
                    ifindex=dev.ifindex,
                    name=dev.name,
                    mtu=dev.mtu,
                    # nic.proto: "empty for loopback's all-zero address".
                    address=b"" if dev.is_loopback and not any(dev.dev_addr) else dev.dev_addr,
                    flags=dev.flags,
                    carrier=dev.carrier,
                    txqueuelen=dev.txqueuelen,
                    stats=nic_pb2.LinkStats(
                        rx_packets=s.rx_packets,
                        tx_packets=s.tx_packets,
                        rx_bytes=s.rx_bytes,
                        tx_bytes=s.tx_bytes,
                        rx_errors=s.rx_errors,
                        tx_errors=s.tx_errors,
                        rx_dropped=s.rx_dropped,
                        tx_dropped=s.tx_dropped,
                        tx_carrier_errors=s.tx_carrier_errors,
                    ),
                )
            )
        return nic_pb2.ListLinksResponse(links=links)

    async def GetStats(
        self, request: nic_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.GetStatsResponse:
        return nic_pb2.GetStatsResponse(
            softnet=[
                nic_pb2.SoftnetStat(
                    cpu=sd.cpu, processed=sd.processed, dropped=sd.dropped, time_squeeze=sd.time_squeeze
                )
                for sd in self.layer.softnet.cpus
            ],
            drops=drops_to_proto(self.layer.drops),
        )


class NicService(Service):
    name = "nic"
    service_names = [nic_pb2.DESCRIPTOR.services_by_name["NicService"].full_name]

    def __init__(self, layer: NicLayer) -> None:
        self.servicer = NicServicer(layer)
        self._softirq: asyncio.Task[None] | None = None

    def register(self, server: grpc.aio.Server) -> None:
        nic_pb2_grpc.add_NicServiceServicer_to_server(self.servicer, server)

    async def start(self, health: ServingStatus) -> None:
        self._softirq = asyncio.create_task(self.servicer.softirq())
        await health.serving()

    async def stop(self) -> None:
        if self._softirq is not None:
            self._softirq.cancel()
