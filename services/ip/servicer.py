"""gRPC adapter for the IP layer: client of the NIC's Attach, server of the UDP
layer's Attach, and the routing and statistics RPCs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable

import grpc

from services.core import dropmon
from services.core.convert import drops_to_proto, skbs_from_proto
from services.core.dropreason import SkbDropReason
from services.core.metrics import Collector, DropCollector, SnmpCollector
from services.core.server import Service, ServingStatus, open_aio_channel, retry_forever
from services.core.skbuff import SkbError, SkBuff, dst_to_proto
from services.core.snmp import to_flat_dict
from services.core.stream import AttachGate, BadMessage, BatchQueue, messages
from services.core.trace import ring_to_proto
from services.core.wire.icmp import NR_ICMP_TYPES
from services.ip.capture import boundary_capture
from services.ip.control import IpControl
from services.ip.cork import IPV4_MIN_MTU
from services.ip.fib import RT_SCOPE_NOWHERE, InIfaddr
from services.ip.layer import IpLayer
from services.ip.nf_servicer import NetfilterServicer
from services.ip.route import DeviceSpec, RouteError
from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc, netfilter_pb2, netfilter_pb2_grpc
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
from stackemu.skb.v1 import skb_pb2

IFF_UP = 0x1  # include/uapi/linux/if.h

# What goes down to the NIC: skbs to transmit, or word that the addresses changed.
ADDRS_CHANGED = object()
Down = SkBuff | object


class DevicesChanged:
    """The message this rides in carries the whole device list."""


class TxDone:
    """Wakes the stream for transmit completions when nothing else is going up; every
    message carries the completions gathered by the time it is built."""


# What goes up the Attach stream: a delivered datagram, an ICMP error about one the
# transport sent (skb, type, code, info), a transmit timestamp from the NIC (relayed
# as it came), or a wake-up for devices or completions.
Up = SkBuff | tuple[SkBuff, int, int, int] | skb_pb2.TxTimestamp | DevicesChanged | TxDone


def _device_specs(links: Iterable[nic_pb2.Link]) -> list[DeviceSpec]:
    return [(lk.ifindex, lk.name, lk.mtu, lk.features, lk.flags) for lk in links]


class IpServicer(IpControl):
    def __init__(self, layer: IpLayer, addresses: list[tuple[str, int, int]]) -> None:
        self.layer = layer
        self.addresses = addresses
        self.up: BatchQueue[Up] = BatchQueue()
        self.down: BatchQueue[Down] = BatchQueue()
        self.links_known = asyncio.Event()
        self.gate = AttachGate("a UDP layer")
        self._frag_timer: asyncio.Task[None] | None = None
        self._addrs_dirty = False
        # A TxDone is on the up queue and has not been sent yet.
        self._tx_done_queued = False

    def _devices(self) -> list[ip_pb2.Device]:
        r = self.layer.router
        return [
            ip_pb2.Device(
                ifindex=i,
                name=r.names[i],
                mtu=r.mtus.get(i, 0),
                features=r.features.get(i, 0),
                flags=r.flags.get(i, 0),
            )
            for i in sorted(r.names)
        ]

    def _attach_response(self, batch: list[Up]) -> ip_pb2.AttachResponse:
        resp = ip_pb2.AttachResponse(fib_genid=self.layer.fib.genid)
        devices = False
        for item in batch:
            if isinstance(item, SkBuff):
                resp.skbs.append(item.to_proto())
            elif isinstance(item, tuple):
                skb, icmp_type, code, info = item
                resp.errors.append(ip_pb2.IcmpError(skb=skb.to_proto(), type=icmp_type, code=code, info=info))
            elif isinstance(item, skb_pb2.TxTimestamp):
                resp.tx_timestamps.append(item)
            elif isinstance(item, DevicesChanged):
                devices = True
        if devices:
            resp.devices.extend(self._devices())
        self._tx_done_queued = False
        resp.tx_done.extend(self.layer.tx_done.drain())
        return resp

    # The NIC side.

    async def attach_nic(self, channel: grpc.aio.Channel, on_ready: Callable[[], object]) -> None:
        stub = nic_pb2_grpc.NicServiceStub(channel)
        links = await stub.ListLinks(nic_pb2.ListLinksRequest())
        changed = self.layer.router.set_devices(_device_specs(links.links))
        if not self.links_known.is_set():
            by_name = {link.name: link.ifindex for link in links.links}
            for label, address, prefixlen in self.addresses:
                if label not in by_name:
                    raise RuntimeError(f"address for {label}, which the NIC does not have")
                self.layer.add_address(InIfaddr(by_name[label], label, address, prefixlen))
            self.links_known.set()
        if changed and self.gate.busy:
            # The transport attached before the devices were known (its first message
            # had none), or a NIC that came back changed them: it hears of them now.
            await self.up.put([DevicesChanged()])
        # A fresh queue per stream: a failed stream's request iterator may still be
        # waiting on the old one and must not take skbs meant for the new stream.
        down: BatchQueue[Down] = BatchQueue()
        self.down = down
        try:
            await self._nic_stream(stub, down, on_ready)
        finally:
            down.close(self._nic_lost)

    def _nic_lost(self, batch: list[Down]) -> None:
        """What was queued for a NIC whose stream broke, or is put before it is back:
        dev_queue_xmit() to a device that is gone (DEV_READY)."""
        for x in batch:
            if isinstance(x, SkBuff):
                self.layer.drops.drop(SkbDropReason.DEV_READY, "attach_nic (the NIC went away)", skb=x)
                # kfree_skb's destructor: the sender's socket memory comes back.
                self.layer.tx_done.add(x)

    async def _nic_stream(
        self, stub: nic_pb2_grpc.NicServiceStub, down: BatchQueue[Down], on_ready: Callable[[], object]
    ) -> None:
        call = stub.Attach(self._nic_requests(down))
        await on_ready()  # type: ignore[misc]
        async for resp in call:
            layer = self.layer
            up: list[Up] = []
            if resp.links:
                # The netdevice notifier (NETDEV_CHANGEMTU, UP, DOWN, FEAT_CHANGE):
                # routes through a device take its new MTU and features, and the
                # transport hears of the change.
                if layer.router.set_devices(_device_specs(resp.links)):
                    up.append(DevicesChanged())
                for link in resp.links:
                    if not link.flags & IFF_UP:
                        # nfqnl_rcv_dev_event(NETDEV_DOWN): queued packets through it go.
                        layer.nf.queue.dev_drop(link.ifindex)
            if resp.tx_done:
                layer.tx_completed(resp.tx_done)
            up.extend(resp.tx_timestamps)
            for skb in skbs_from_proto(resp.skbs, layer.drops, "ip_rcv"):
                layer.ip_rcv(skb)
            await self.flush(up)

    async def flush(self, extra: list[Up] | None = None) -> None:
        """Ship what the layer produced: deliveries, ICMP errors, transmit completions
        (and `extra`: what the NIC sent for the transport) up, forwarded packets and
        ICMP replies down. After every batch from either side and every NFQUEUE
        verdict."""
        layer = self.layer
        up: list[Up] = [*(extra or ()), *layer.to_transport, *layer.to_transport_err]
        down: list[Down] = [*layer.to_device]
        layer.to_transport, layer.to_transport_err, layer.to_device = [], [], []
        if layer.tx_done and not self._tx_done_queued:
            up.append(TxDone())
            self._tx_done_queued = True
        if up:
            await self.up.put(up)
        if down:
            await self.down.put(down)
        self._arm_frag_timer()

    def _arm_frag_timer(self) -> None:
        """The reassembly queues' timer (ip_expire): armed for the earliest expiry."""
        when = self.layer.defrag.next_expiry()
        if when is None or (self._frag_timer is not None and not self._frag_timer.done()):
            return
        delay = max(0.0, (when - time.monotonic_ns()) / 1e9)
        self._frag_timer = asyncio.get_running_loop().create_task(self._frag_expire(delay))

    async def _frag_expire(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.layer.expire_frags()
        self._frag_timer = None
        await self.flush()

    async def _nic_requests(self, down: BatchQueue[Down]) -> AsyncIterator[nic_pb2.AttachRequest]:
        """The host's addresses first (ARP answers for them), then transmit batches, and
        the addresses again whenever `ip addr` changes them."""
        yield nic_pb2.AttachRequest(addrs=self._inet_addrs())
        async for msg in messages(down, self._nic_request):
            yield msg

    def _inet_addrs(self) -> nic_pb2.InetAddrs:
        return nic_pb2.InetAddrs(
            addrs=[
                nic_pb2.InetAddr(ifindex=ifa.ifindex, address=ifa.address, prefixlen=ifa.prefixlen)
                for ifa in self.layer.fib.ifaddrs
            ]
        )

    def _nic_request(self, batch: list[Down]) -> nic_pb2.AttachRequest:
        req = nic_pb2.AttachRequest(skbs=[s.to_proto() for s in batch if isinstance(s, SkBuff)])
        if self._addrs_dirty:
            self._addrs_dirty = False
            req.addrs.CopyFrom(self._inet_addrs())
        return req

    def addresses_changed(self) -> None:
        """inetaddr_chain: the NIC answers ARP for the new address list. The marker
        wakes the stream; if the queue is full the next batch carries the list."""
        self._addrs_dirty = True
        self.down.put_nowait([ADDRS_CHANGED])

    # The UDP side.

    async def _transmit(self, req: ip_pb2.AttachRequest) -> None:
        layer = self.layer
        for skb in skbs_from_proto(req.skbs, layer.drops, "ip_send_skb"):
            # A route's MTU is never below IPV4_MIN_MTU, and udp_send_skb leaves the
            # IPv4 header its headroom (ip_make_skb's reserve): a neighbour's skb that
            # says otherwise contradicts itself.
            if skb.dst is not None and skb.dst.mtu < IPV4_MIN_MTU:
                raise BadMessage(f"ip_send_skb: dst mtu {skb.dst.mtu} below {IPV4_MIN_MTU}")
            try:
                layer.ip_send_skb(skb)
            except SkbError as e:
                raise BadMessage(f"ip_send_skb: {e}") from None
        for err in req.icmp_send:
            # icmp_send() is asked for an error type with a u8 code, never more.
            if err.type > NR_ICMP_TYPES or err.code > 0xFF:
                raise BadMessage(f"icmp_send: type {err.type} code {err.code} is no ICMP error")
            for skb in skbs_from_proto([err.skb], layer.drops, "icmp_send"):
                layer.icmp_send(skb, err.type, err.code, err.info)
        await self.flush()

    async def Attach(
        self, request_iterator: AsyncIterator[ip_pb2.AttachRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ip_pb2.AttachResponse]:
        async for resp in self.gate.serve(
            context,
            request_iterator,
            self.up,
            self._transmit,
            self._attach_response,
            # The first message tells the caller the FIB generation and the devices
            # before any traffic.
            first=ip_pb2.AttachResponse(fib_genid=self.layer.fib.genid, devices=self._devices()),
        ):
            yield resp

    async def RouteOutput(
        self, request: ip_pb2.RouteOutputRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.RouteOutputResponse:
        for name in ("daddr", "saddr"):
            if getattr(request, name) > 0xFFFFFFFF:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name} is not an IPv4 address")
        if request.scope > RT_SCOPE_NOWHERE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"scope {request.scope} is not a u8")
        genid = self.layer.fib.genid
        try:
            dst, saddr = self.layer.router.output(
                request.daddr,
                request.saddr,
                request.oif,
                tos=request.tos,
                mark=request.mark,
                scope=request.scope,
            )
        except RouteError as err:
            return ip_pb2.RouteOutputResponse(errno=err.errno, fib_genid=genid)
        return ip_pb2.RouteOutputResponse(dst=dst_to_proto(dst), saddr=saddr, fib_genid=genid)

    async def Capture(
        self, request: ip_pb2.CaptureRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ip_pb2.CaptureResponse]:
        async for resp in boundary_capture(self.layer.taps, request, context):
            yield resp

    async def GetTraces(
        self, request: ip_pb2.GetTracesRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.GetTracesResponse:
        return ip_pb2.GetTracesResponse(traces=ring_to_proto(self.layer.trace, request.last))

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
    service_names = [
        ip_pb2.DESCRIPTOR.services_by_name["IpService"].full_name,
        netfilter_pb2.DESCRIPTOR.services_by_name["NetfilterService"].full_name,
        dropmon.SERVICE_NAME,
    ]

    def __init__(self, layer: IpLayer, addresses: list[tuple[str, int, int]], nic_addr: str) -> None:
        self.servicer = IpServicer(layer, addresses)
        self.nf_servicer = NetfilterServicer(layer.nf, self.servicer.flush)
        self.nic_addr = nic_addr
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None

    def register(self, server: grpc.aio.Server) -> None:
        ip_pb2_grpc.add_IpServiceServicer_to_server(self.servicer, server)
        netfilter_pb2_grpc.add_NetfilterServiceServicer_to_server(self.nf_servicer, server)
        dropmon.add_to_server(self.servicer.layer.drops, server)

    def collectors(self) -> list[Collector]:
        # What GetStats reports: the Ip, Icmp, IcmpMsg and IpExt groups.
        layer = self.servicer.layer
        return [SnmpCollector(layer.mib, lambda k: k.startswith(("Ip", "Icmp"))), DropCollector(layer.drops)]

    async def start(self, health: ServingStatus) -> None:
        self._channel = open_aio_channel(self.nic_addr, internal=True)
        channel = self._channel
        self._task = asyncio.create_task(
            retry_forever(lambda: self.servicer.attach_nic(channel, health.serving), "attach to nic")
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._channel is not None:
            await self._channel.close()
