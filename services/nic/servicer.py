"""gRPC adapter for the NIC layer: the Attach stream to IP, the links (a wire to a peer
NIC, a TAP device), the packet-tap stream, the control RPCs, and the asyncio side of
the softirq and the timers (interrupt coalescing, netem, ARP)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from services.core import dropmon
from services.core.config import ConfigError
from services.core.convert import drops_to_proto, skbs_from_proto, skbs_to_proto
from services.core.dropreason import SkbDropReason
from services.core.metrics import ETHTOOL_GAUGES, SOFTNET_GAUGES, Collector, DropCollector, TableCollector
from services.core.server import Service, ServingStatus, open_aio_channel
from services.core.skbuff import SkBuff, trace_from_proto, trace_to_proto
from services.core.stream import AttachGate, BadMessage, BatchQueue
from services.core.tap import captured, filter_from_proto
from services.core.trace import ring_to_proto
from services.nic.capture import ARPHRD_ETHER, ARPHRD_LOOPBACK, Tap
from services.nic.control import NicControl, ethtool_stats, link_to_proto
from services.nic.device import KIND_TAP, KIND_WIRE, NetDevice
from services.nic.layer import NicLayer
from services.nic.tap import TapLink
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
from stackemu.skb.v1 import skb_pb2

log = logging.getLogger(__name__)

# How long a wire waits for its peer before trying again (capped backoff).
WIRE_BACKOFF_MAX = 0.25


@dataclass(slots=True)
class TxStamp:
    skb: SkBuff
    tstype: int


@dataclass(slots=True)
class LinkChange:
    link: nic_pb2.Link


class TxDone:
    """Wakes the stream for transmit completions when nothing else is going up; every
    message carries the completions gathered by the time it is built."""


UpItem = SkBuff | TxStamp | LinkChange | TxDone


class NicServicer(NicControl):
    def __init__(self, layer: NicLayer) -> None:
        self.layer = layer
        self.up: BatchQueue[UpItem] = BatchQueue()
        self._kick = asyncio.Event()
        self.gate = AttachGate("an IP layer")
        self.taps: dict[int, TapLink] = {}
        self.wire_ready: dict[int, asyncio.Event] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0
        # A TxDone is on the up queue and has not been sent yet.
        self._tx_done_queued = False

    def _up_message(self, batch: list[UpItem]) -> nic_pb2.AttachResponse:
        resp = nic_pb2.AttachResponse(skbs=skbs_to_proto([x for x in batch if isinstance(x, SkBuff)]))
        for x in batch:
            if isinstance(x, TxStamp):
                resp.tx_timestamps.append(skb_pb2.TxTimestamp(skb=x.skb.to_proto(), tstype=x.tstype))
            elif isinstance(x, LinkChange):
                resp.links.append(x.link)
        self._tx_done_queued = False
        resp.tx_done.extend(self.layer.tx_done.drain())
        return resp

    # The softirq, timers and links: everything after an event runs through kick().

    def kick(self) -> None:
        """Act on what the last event left: raise the softirq, hand TX frames to the
        links, pass notifications up, and arm the next timer."""
        layer = self.layer
        if layer.softirq_pending():
            self._kick.set()
        for ifindex, ready in self.wire_ready.items():
            if layer.tx_ring[ifindex]:
                ready.set()
        for ifindex, link in self.taps.items():
            dev = layer.devices[ifindex]
            frames = layer.take_tx(dev)
            for f in frames:
                if not link.xmit(f):
                    dev.stats.tx_dropped += 1
                    layer.drops.drop_frame(SkbDropReason.FULL_RING, "tun write", f)
            if not link.carrier:
                layer.set_carrier(dev, False)
        self._notify()
        self._arm_timer()

    def changed(self) -> None:
        self.kick()

    def _notify(self) -> None:
        layer = self.layer
        items: list[UpItem] = []
        if layer.tx_timestamps:
            items += [TxStamp(skb, t) for skb, t in layer.tx_timestamps]
            layer.tx_timestamps = []
        if layer.link_events:
            items += [LinkChange(link_to_proto(layer, layer.devices[i])) for i in sorted(layer.link_events)]
            layer.link_events = set()
        wake = bool(layer.tx_done) and not self._tx_done_queued
        if wake:
            items.append(TxDone())
        if not items:
            return
        if not self.up.put_nowait(items):
            # IP is not reading: the notifications are lost, not queued without bound
            # (completions stay gathered for the next message that goes).
            log.warning("up queue full, %d notifications lost", len(items))
        elif wake:
            self._tx_done_queued = True

    def _arm_timer(self) -> None:
        layer = self.layer
        deadlines = [layer.next_irq_deadline(), layer.next_netem_deadline()]
        neigh = layer.neigh.next_timer()
        if neigh is not None:
            deadlines.append(int(neigh * 1e9))
        due = [t for t in deadlines if t is not None]
        if not due:
            return
        at = min(due)
        if self._timer is not None and not self._timer.cancelled() and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        delay = max(0.0, (at - layer.mono()) / 1e9)
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        layer = self.layer
        layer.check_irqs()
        for ifindex in list(layer.netem):
            layer.netem_run(layer.devices[ifindex])
        layer.neigh.run_timers()
        self.kick()

    async def softirq(self) -> None:
        """The NET_RX softirq (ksoftirqd): poll until no work is left, yielding to the
        event loop between rounds as the kernel defers to ksoftirqd after a squeeze."""
        while True:
            await self._kick.wait()
            self._kick.clear()
            more = True
            while more:
                batch, more = self.layer.poll()
                self.kick()
                await self.up.put(list(batch))
                if more:
                    await asyncio.sleep(0)

    # The IP side.

    async def _transmit(self, req: nic_pb2.AttachRequest) -> None:
        layer = self.layer
        if req.HasField("addrs"):
            try:
                layer.set_addrs([(a.ifindex, a.address, a.prefixlen) for a in req.addrs.addrs])
            except ValueError as err:
                # IP's addresses are inet_insert_ifa()'s, never a /33: a contradiction.
                raise BadMessage(str(err)) from None
        for skb in skbs_from_proto(req.skbs, layer.drops, "dev_queue_xmit"):
            layer.dev_queue_xmit(skb)
        self.kick()

    async def Attach(
        self, request_iterator: AsyncIterator[nic_pb2.AttachRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[nic_pb2.AttachResponse]:
        async for resp in self.gate.serve(
            context, request_iterator, self.up, self._transmit, self._up_message
        ):
            yield resp

    # The wire: frames from a peer NIC.

    async def Wire(
        self, request_iterator: AsyncIterator[nic_pb2.WireRequest], context: grpc.aio.ServicerContext
    ) -> nic_pb2.WireResponse:
        dev: NetDevice | None = None
        n = 0
        async for req in request_iterator:
            if dev is None:
                dev = self.layer.dev_by_name(req.device)
                if dev is None or dev.kind != KIND_WIRE:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, f"no wire device {req.device!r} on this host"
                    )
                assert dev is not None
            elif req.device and req.device != dev.name:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a wire stream carries one device")
            if req.frames:
                traces = {t.index: trace_from_proto(t.steps) for t in req.traces}
                self.layer.rx_frames(dev, req.frames, traces)
                n += len(req.frames)
                self.kick()
        return nic_pb2.WireResponse(frames=n)

    async def wire_out(self, dev: NetDevice, peer: str, peer_dev: str) -> None:
        """Our end of the wire: stream what the device transmits to the peer's Wire RPC.
        The carrier is up while the stream is; a broken stream drops the carrier and
        what was in flight is counted, then the wire reconnects with backoff."""
        ready = self.wire_ready.setdefault(dev.ifindex, asyncio.Event())
        delay = 0.05
        async with open_aio_channel(peer) as channel:
            stub = nic_pb2_grpc.NicServiceStub(channel)
            while True:
                in_flight = 0

                async def frames() -> AsyncIterator[nic_pb2.WireRequest]:
                    nonlocal in_flight
                    yield nic_pb2.WireRequest(device=peer_dev)
                    while True:
                        await ready.wait()
                        ready.clear()
                        out = self.layer.take_tx_descs(dev)
                        if out:
                            in_flight = len(out)
                            yield nic_pb2.WireRequest(
                                frames=[d.frame for d in out],
                                traces=[
                                    nic_pb2.FrameTrace(index=i, steps=trace_to_proto(d.trace))
                                    for i, d in enumerate(out)
                                    if d.trace is not None
                                ],
                            )
                            in_flight = 0
                        self.kick()

                call = stub.Wire(frames())
                try:
                    await call.wait_for_connection()
                    self.layer.set_carrier(dev, True)
                    delay = 0.05
                    self.kick()
                    await call
                except asyncio.CancelledError:
                    call.cancel()
                    raise
                except grpc.aio.AioRpcError as err:
                    log.debug("wire %s → %s: %s", dev.name, peer, err.code().name)
                finally:
                    if dev.carrier:
                        self.layer.set_carrier(dev, False)
                        stranded = self.layer.tx_ring_clear(dev) + in_flight
                        if stranded:
                            self.layer.carrier_lost(dev, stranded)
                        self.kick()
                await asyncio.sleep(delay)
                delay = min(delay * 2, WIRE_BACKOFF_MAX)

    def attach_tap(self, dev: NetDevice, fd: int) -> TapLink:
        def on_frames(frames: list[bytes]) -> None:
            self.layer.rx_frames(dev, frames)
            self.kick()

        link = TapLink(fd, on_frames)
        link.start(asyncio.get_running_loop())
        self.taps[dev.ifindex] = link
        dev.kind = KIND_TAP
        self.layer.set_carrier(dev, True)
        return link

    # Packet taps.

    async def Capture(
        self, request: nic_pb2.CaptureRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[nic_pb2.CaptureResponse]:
        ifindex = 0
        if request.device and request.device != "any":
            dev = self.layer.dev_by_name(request.device)
            if dev is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no device {request.device!r}")
            assert dev is not None
            ifindex = dev.ifindex
        try:
            prog = filter_from_proto(request.filter)
        except (OSError, ValueError) as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"filter: {e}")
        devices = self.layer.devices

        def hatype(i: int) -> int:
            dev = devices.get(i)
            return ARPHRD_LOOPBACK if dev is not None and dev.is_loopback else ARPHRD_ETHER

        wake = asyncio.Event()
        tap = Tap(ifindex, wake.set, prog=prog, hatype=hatype)
        self.layer.taps.add(tap)
        # Tell the caller the tap is in place (tcpdump says "listening on" only then).
        await context.send_initial_metadata(())
        names = {d.ifindex: d.name for d in self.layer.devices.values()}
        try:
            async for c in captured(tap, wake, request.count):
                yield nic_pb2.CaptureResponse(
                    ifindex=c.ifindex,
                    device=names.get(c.ifindex, ""),
                    tstamp=c.tstamp,
                    pkt_type=c.pkt_type,
                    frame=c.frame,
                    dropped=tap.dropped,
                )
        finally:
            self.layer.taps.remove(tap)

    # State.

    async def ListLinks(
        self, request: nic_pb2.ListLinksRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.ListLinksResponse:
        devs = sorted(self.layer.devices.values(), key=lambda d: d.ifindex)
        return nic_pb2.ListLinksResponse(links=[link_to_proto(self.layer, d) for d in devs])

    async def GetTraces(
        self, request: nic_pb2.GetTracesRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.GetTracesResponse:
        return nic_pb2.GetTracesResponse(traces=ring_to_proto(self.layer.trace, request.last))

    async def GetStats(
        self, request: nic_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.GetStatsResponse:
        return nic_pb2.GetStatsResponse(
            softnet=[
                nic_pb2.SoftnetStat(
                    cpu=sd.cpu,
                    processed=sd.processed,
                    dropped=sd.dropped,
                    time_squeeze=sd.time_squeeze,
                    received_rps=sd.received_rps,
                    flow_limit_count=sd.flow_limit_count,
                    backlog_len=len(sd.input_pkt_queue),
                )
                for sd in self.layer.softnet.cpus
            ],
            drops=drops_to_proto(self.layer.drops),
        )


class NicService(Service):
    name = "nic"
    service_names = [nic_pb2.DESCRIPTOR.services_by_name["NicService"].full_name, dropmon.SERVICE_NAME]

    def __init__(
        self,
        layer: NicLayer,
        wires: list[tuple[str, str, str]] | None = None,
        tap: tuple[str, str, str] | None = None,
    ) -> None:
        # wires: (our device, peer NIC address, peer device); tap: (our device, TAP
        # name, the kernel side's address/prefix).
        self.servicer = NicServicer(layer)
        self.wires = wires or []
        self.tap = tap
        self._tasks: list[asyncio.Task[None]] = []

    def register(self, server: grpc.aio.Server) -> None:
        nic_pb2_grpc.add_NicServiceServicer_to_server(self.servicer, server)
        dropmon.add_to_server(self.servicer.layer.drops, server)

    def collectors(self) -> list[Collector]:
        layer = self.servicer.layer

        def ethtool() -> list[tuple[list[str], list[tuple[str, int]]]]:
            devs = sorted(layer.devices.values(), key=lambda d: d.ifindex)
            return [([d.name], ethtool_stats(layer, d)) for d in devs]

        def softnet() -> list[tuple[list[str], list[tuple[str, int]]]]:
            return [
                (
                    [str(sd.cpu)],
                    [
                        ("processed", sd.processed),
                        ("dropped", sd.dropped),
                        ("time_squeeze", sd.time_squeeze),
                        ("received_rps", sd.received_rps),
                        ("flow_limit_count", sd.flow_limit_count),
                        ("backlog_len", len(sd.input_pkt_queue)),
                    ],
                )
                for sd in layer.softnet.cpus
            ]

        return [
            TableCollector("ethtool", ["device"], ethtool, ETHTOOL_GAUGES, "ethtool -S"),
            TableCollector("softnet", ["cpu"], softnet, SOFTNET_GAUGES, "/proc/net/softnet_stat"),
            DropCollector(layer.drops),
        ]

    async def start(self, health: ServingStatus) -> None:
        from services.nic.tap import netns_attach, tap_open

        layer = self.servicer.layer
        self._tasks.append(asyncio.create_task(self.servicer.softirq()))
        for ifname, peer, peer_dev in self.wires:
            dev = layer.dev_by_name(ifname)
            if dev is None:
                raise ConfigError(f"wire on {ifname}, which this host does not have")
            dev.kind = KIND_WIRE
            self._tasks.append(asyncio.create_task(self.servicer.wire_out(dev, peer, peer_dev)))
        if self.tap is not None:
            ifname, name, kernel_addr = self.tap
            dev = layer.dev_by_name(ifname)
            if dev is None:
                raise ConfigError(f"tap on {ifname}, which this host does not have")
            fd = tap_open(name)
            netns_attach(name, name, kernel_addr, dev.mtu)
            self.servicer.attach_tap(dev, fd)
        await health.serving()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for link in self.servicer.taps.values():
            link.close()
