"""The NIC's control RPCs: `ip link`, `ethtool`, SIOCSHWTSTAMP, `tc netem`, `ip neigh`
and the net.core sysctls, as thin adapters over NicLayer. Failures are answered the
way the kernel answers them: an errno and a message in the response."""

from __future__ import annotations

from typing import TypedDict

import grpc

from services.core import errno
from services.core.sysctl import get_sysctls, set_sysctl
from services.core.tstamp import (
    SOF_TIMESTAMPING_RAW_HARDWARE,
    SOF_TIMESTAMPING_RX_HARDWARE,
    SOF_TIMESTAMPING_RX_SOFTWARE,
    SOF_TIMESTAMPING_SOFTWARE,
    SOF_TIMESTAMPING_TX_HARDWARE,
    SOF_TIMESTAMPING_TX_SOFTWARE,
)
from services.nic.device import IFF_NOARP, NetDevice
from services.nic.layer import NicLayer
from services.nic.napi import RX_RING_MAX, TX_RING_MAX
from services.nic.neigh import NUD_PERMANENT
from services.nic.netem import NetemConfig
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
from stackemu.skb.v1 import skb_pb2

# What every device gets from the core (ethtool_op_get_ts_info / net_hwtstamp default).
SW_TS = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE
HW_TS = SOF_TIMESTAMPING_TX_HARDWARE | SOF_TIMESTAMPING_RX_HARDWARE | SOF_TIMESTAMPING_RAW_HARDWARE

# The sysctls the NIC layer reads.
NIC_SYSCTL_PREFIX = "net.core."


def _nic_sysctl(name: str) -> bool:
    return name.startswith(NIC_SYSCTL_PREFIX)


def link_to_proto(layer: NicLayer, dev: NetDevice) -> nic_pb2.Link:
    s = dev.stats
    qdisc = "noqueue" if dev.is_loopback else ("netem" if dev.ifindex in layer.netem else "pfifo_fast")
    return nic_pb2.Link(
        ifindex=dev.ifindex,
        name=dev.name,
        mtu=dev.mtu,
        # nic.proto: "empty for loopback's all-zero address".
        address=b"" if dev.is_loopback and not any(dev.dev_addr) else dev.dev_addr,
        flags=dev.oper_flags(),
        carrier=dev.carrier,
        txqueuelen=dev.txqueuelen,
        kind=dev.kind,
        qdisc=qdisc,
        rps_cpus=dev.rps_cpus,
        napi_weight=dev.napi.weight if dev.napi is not None else 0,
        features=dev.features.mask(),
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
            rx_missed_errors=s.rx_missed_errors,
            multicast=s.multicast,
            rx_nohandler=s.rx_nohandler,
        ),
    )


def ethtool_stats(layer: NicLayer, dev: NetDevice) -> list[tuple[str, int]]:
    """`ethtool -S`: the link counters, then the driver's own."""
    s, d = dev.stats, dev.driver
    out = [
        ("rx_packets", s.rx_packets),
        ("tx_packets", s.tx_packets),
        ("rx_bytes", s.rx_bytes),
        ("tx_bytes", s.tx_bytes),
        ("rx_errors", s.rx_errors),
        ("tx_errors", s.tx_errors),
        ("rx_dropped", s.rx_dropped),
        ("tx_dropped", s.tx_dropped),
        ("rx_missed_errors", s.rx_missed_errors),
        ("tx_carrier_errors", s.tx_carrier_errors),
        ("multicast", s.multicast),
        ("rx_nohandler", s.rx_nohandler),
    ]
    out += [(name, getattr(d, name)) for name in d.__slots__]
    gro = layer.gro.get(dev.ifindex)
    if gro is not None:
        # Segments merged into a held skb, and merged skbs handed up.
        out += [("rx_gro_merged", gro.merged), ("rx_gro_packets", gro.flushed)]
    if dev.napi is not None:
        out += [("rx_ring_used", len(dev.napi.ring)), ("tx_ring_used", len(layer.tx_ring[dev.ifindex]))]
    qdisc = layer.qdiscs.get(dev.ifindex)
    if qdisc is not None:
        out.append(("qdisc_backlog", len(qdisc.q)))
    return out


class _Errno(TypedDict):
    errno: int
    message: str


def _enodev(name: str) -> _Errno:
    """What rtnetlink and ethtool answer for a device that is not there."""
    return {"errno": errno.ENODEV, "message": f"no device {name!r}"}


class NicControl(nic_pb2_grpc.NicServiceServicer):
    layer: NicLayer

    async def _dev(self, name: str, context: grpc.aio.ServicerContext) -> NetDevice | None:
        if not name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "device is required")
        return self.layer.dev_by_name(name)

    def changed(self) -> None:
        """Hook: a setting changed that the service must act on (timers, notifier)."""

    async def SetLink(
        self, request: nic_pb2.SetLinkRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.SetLinkResponse:
        dev = await self._dev(request.device, context)
        if dev is None:
            return nic_pb2.SetLinkResponse(**_enodev(request.device))
        err, msg = self.layer.set_link(
            dev,
            up=request.up if request.HasField("up") else None,
            mtu=request.mtu if request.HasField("mtu") else None,
            promisc=request.promisc if request.HasField("promisc") else None,
            txqueuelen=request.txqueuelen if request.HasField("txqueuelen") else None,
            rps_cpus=request.rps_cpus if request.HasField("rps_cpus") else None,
            napi_weight=request.napi_weight if request.HasField("napi_weight") else None,
        )
        self.changed()
        return nic_pb2.SetLinkResponse(errno=err, message=msg, link=link_to_proto(self.layer, dev))

    async def GetRingParam(
        self, request: nic_pb2.GetRingParamRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.GetRingParamResponse:
        dev = await self._dev(request.device, context)
        if dev is None:
            return nic_pb2.GetRingParamResponse(**_enodev(request.device))
        if dev.napi is None:
            return nic_pb2.GetRingParamResponse(errno=errno.EOPNOTSUPP, message=f"{dev.name} has no rings")
        return nic_pb2.GetRingParamResponse(
            rx_max_pending=RX_RING_MAX,
            tx_max_pending=TX_RING_MAX,
            rx_pending=dev.napi.rx_pending,
            tx_pending=dev.napi.tx_pending,
        )

    async def SetRingParam(
        self, request: nic_pb2.SetRingParamRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.SetRingParamResponse:
        dev = await self._dev(request.device, context)
        if dev is None:
            return nic_pb2.SetRingParamResponse(**_enodev(request.device))
        err, msg = self.layer.set_ring(
            dev,
            request.rx_pending if request.HasField("rx_pending") else None,
            request.tx_pending if request.HasField("tx_pending") else None,
        )
        self.changed()
        return nic_pb2.SetRingParamResponse(errno=err, message=msg)

    async def GetCoalesce(
        self, request: nic_pb2.GetCoalesceRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.GetCoalesceResponse:
        dev = await self._dev(request.device, context)
        if dev is None:
            return nic_pb2.GetCoalesceResponse(**_enodev(request.device))
        if dev.napi is None:
            return nic_pb2.GetCoalesceResponse(
                errno=errno.EOPNOTSUPP, message=f"{dev.name} does not coalesce interrupts"
            )
        return nic_pb2.GetCoalesceResponse(rx_usecs=dev.napi.rx_usecs, rx_max_frames=dev.napi.rx_max_frames)

    async def SetCoalesce(
        self, request: nic_pb2.SetCoalesceRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.SetCoalesceResponse:
        dev = await self._dev(request.device, context)
        if dev is None:
            return nic_pb2.SetCoalesceResponse(**_enodev(request.device))
        err, msg = self.layer.set_coalesce(
            dev,
            request.rx_usecs if request.HasField("rx_usecs") else None,
            request.rx_max_frames if request.HasField("rx_max_frames") else None,
        )
        self.changed()
        return nic_pb2.SetCoalesceResponse(errno=err, message=msg)

    def _features(self, dev: NetDevice) -> list[nic_pb2.Feature]:
        return [
            nic_pb2.Feature(name=f.name, active=f.active, changeable=f.changeable)
            for f in dev.features.show()
        ]

    async def GetFeatures(
        self, request: nic_pb2.GetFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.GetFeaturesResponse:
        dev = await self._dev(request.device, context)
        if dev is None:
            return nic_pb2.GetFeaturesResponse(**_enodev(request.device))
        return nic_pb2.GetFeaturesResponse(features=self._features(dev))

    async def SetFeatures(
        self, request: nic_pb2.SetFeaturesRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.SetFeaturesResponse:
        dev = await self._dev(request.device, context)
        if dev is None:
            return nic_pb2.SetFeaturesResponse(**_enodev(request.device))
        msg = self.layer.set_features(dev, dict(request.features))
        # netdev_features_change(): NETDEV_FEAT_CHANGE goes up like any device change.
        self.changed()
        if msg is not None:
            return nic_pb2.SetFeaturesResponse(
                errno=errno.EOPNOTSUPP, message=msg, features=self._features(dev)
            )
        return nic_pb2.SetFeaturesResponse(features=self._features(dev))

    async def GetTsInfo(
        self, request: nic_pb2.GetTsInfoRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.GetTsInfoResponse:
        dev = await self._dev(request.device, context)
        if dev is None:
            return nic_pb2.GetTsInfoResponse(**_enodev(request.device))
        if dev.napi is None:
            return nic_pb2.GetTsInfoResponse(so_timestamping=SW_TS, phc_index=-1)
        return nic_pb2.GetTsInfoResponse(
            so_timestamping=SW_TS | HW_TS,
            phc_index=0,
            tx_types=(1 << 0) | (1 << 1),
            rx_filters=(1 << 0) | (1 << 1),
            tx_type=dev.hwtstamp.tx_type,
            rx_filter=dev.hwtstamp.rx_filter,
        )

    async def SetHwTstamp(
        self, request: nic_pb2.SetHwTstampRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.SetHwTstampResponse:
        dev = await self._dev(request.device, context)
        if dev is None:
            return nic_pb2.SetHwTstampResponse(**_enodev(request.device))
        err, msg = self.layer.set_hwtstamp(dev, request.tx_type, request.rx_filter)
        return nic_pb2.SetHwTstampResponse(
            errno=err, message=msg, tx_type=dev.hwtstamp.tx_type, rx_filter=dev.hwtstamp.rx_filter
        )

    async def GetEthtoolStats(
        self, request: nic_pb2.GetEthtoolStatsRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.GetEthtoolStatsResponse:
        dev = await self._dev(request.device, context)
        if dev is None:
            return nic_pb2.GetEthtoolStatsResponse(
                errno=errno.ENODEV, message=f"no device {request.device!r}"
            )
        return nic_pb2.GetEthtoolStatsResponse(
            stats=[skb_pb2.Counter(name=n, value=v) for n, v in ethtool_stats(self.layer, dev)]
        )

    async def GetNetem(
        self, request: nic_pb2.GetNetemRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.GetNetemResponse:
        dev = await self._dev(request.device, context)
        if dev is None:
            return nic_pb2.GetNetemResponse(**_enodev(request.device))
        netem = self.layer.netem.get(dev.ifindex)
        if netem is None:
            q = self.layer.qdiscs.get(dev.ifindex)
            if q is None:
                return nic_pb2.GetNetemResponse()
            return nic_pb2.GetNetemResponse(
                stats=nic_pb2.NetemStats(
                    sent=q.stats.packets,
                    dropped=q.stats.drops,
                    overlimits=q.stats.overlimits,
                    backlog=len(q.q),
                )
            )
        c, st = netem.config, netem.stats
        return nic_pb2.GetNetemResponse(
            netem=nic_pb2.Netem(
                limit=c.limit,
                delay_us=c.delay_us,
                jitter_us=c.jitter_us,
                loss_pct=c.loss_pct,
                duplicate_pct=c.duplicate_pct,
                reorder_pct=c.reorder_pct,
                gap=c.gap,
                corrupt_pct=c.corrupt_pct,
                rate_bps=c.rate_bps,
                seed=c.seed,
            ),
            stats=nic_pb2.NetemStats(
                sent=st.sent,
                dropped=st.dropped,
                overlimits=st.overlimits,
                lost=st.lost,
                duplicated=st.duplicated,
                reordered=st.reordered,
                corrupted=st.corrupted,
                backlog=st.backlog,
            ),
        )

    async def SetNetem(
        self, request: nic_pb2.SetNetemRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.SetNetemResponse:
        dev = await self._dev(request.device, context)
        if dev is None:
            return nic_pb2.SetNetemResponse(**_enodev(request.device))
        config = None
        if request.HasField("netem"):
            n = request.netem
            config = NetemConfig(
                limit=n.limit or 1000,
                delay_us=n.delay_us,
                jitter_us=n.jitter_us,
                loss_pct=n.loss_pct,
                duplicate_pct=n.duplicate_pct,
                reorder_pct=n.reorder_pct,
                gap=n.gap,
                corrupt_pct=n.corrupt_pct,
                rate_bps=n.rate_bps,
                seed=n.seed,
            )
        err, msg = self.layer.set_netem(dev, config)
        self.changed()
        return nic_pb2.SetNetemResponse(errno=err, message=msg)

    async def ListNeighbours(
        self, request: nic_pb2.ListNeighboursRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.ListNeighboursResponse:
        out = []
        for n in self.layer.neigh.entries():
            dev = self.layer.devices.get(n.ifindex)
            if dev is None or (request.device and dev.name != request.device):
                continue
            out.append(
                nic_pb2.Neighbour(
                    ifindex=n.ifindex,
                    device=dev.name,
                    address=n.address,
                    lladdr=n.lladdr or b"",
                    state=n.state,
                    queued=n.queued,
                    probes=n.probes,
                )
            )
        return nic_pb2.ListNeighboursResponse(neighbours=out)

    async def _neigh_dev(self, name: str, context: grpc.aio.ServicerContext) -> NetDevice | tuple[int, str]:
        dev = await self._dev(name, context)
        if dev is None:
            return errno.ENODEV, f"no device {name!r}"
        if dev.flags & IFF_NOARP or dev.is_loopback:
            return errno.EINVAL, f"{dev.name} does not use ARP"
        return dev

    async def AddNeighbour(
        self, request: nic_pb2.AddNeighbourRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.AddNeighbourResponse:
        dev = await self._neigh_dev(request.device, context)
        if isinstance(dev, tuple):
            return nic_pb2.AddNeighbourResponse(errno=dev[0], message=dev[1])
        err = self.layer.neigh.add(
            dev, request.address, bytes(request.lladdr), request.state or NUD_PERMANENT
        )
        self.changed()
        return nic_pb2.AddNeighbourResponse(errno=err, message=errno.strerror(err) if err else "")

    async def DeleteNeighbour(
        self, request: nic_pb2.DeleteNeighbourRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.DeleteNeighbourResponse:
        dev = await self._neigh_dev(request.device, context)
        if isinstance(dev, tuple):
            return nic_pb2.DeleteNeighbourResponse(errno=dev[0], message=dev[1])
        err = self.layer.neigh.delete(dev, request.address)
        return nic_pb2.DeleteNeighbourResponse(errno=err, message=errno.strerror(err) if err else "")

    async def FlushNeighbours(
        self, request: nic_pb2.FlushNeighboursRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.FlushNeighboursResponse:
        dev = None
        if request.device:
            dev = self.layer.dev_by_name(request.device)
            if dev is None:
                return nic_pb2.FlushNeighboursResponse()
        return nic_pb2.FlushNeighboursResponse(flushed=self.layer.neigh.flush(dev))

    async def GetSysctl(
        self, request: nic_pb2.GetSysctlRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.GetSysctlResponse:
        sysctl = self.layer.sysctl
        code, message, values = get_sysctls(
            sysctl, request.names, _nic_sysctl, sysctl.names(NIC_SYSCTL_PREFIX), "the NIC"
        )
        return nic_pb2.GetSysctlResponse(errno=code, message=message, values=values)

    async def SetSysctl(
        self, request: nic_pb2.SetSysctlRequest, context: grpc.aio.ServicerContext
    ) -> nic_pb2.SetSysctlResponse:
        code, message = set_sysctl(self.layer.sysctl, request.name, request.value, _nic_sysctl, "the NIC")
        if not code:
            self.changed()
        return nic_pb2.SetSysctlResponse(errno=code, message=message)
