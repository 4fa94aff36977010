"""A host's devices and link layer, without gRPC.

Receive: a link's frames are DMA'd into a device's RX ring → hard IRQ → NAPI on a
CPU's poll list → net_rx_action() → the driver's poll (build_skb, eth_type_trans,
napi_gro_receive) → netif_receive_skb (RPS: enqueue_to_backlog) →
__netif_receive_skb_core → the IP layer, or arp_rcv. Loopback transmit enters at
netif_rx() and the backlog.
Transmit: dev_queue_xmit() → the neighbour (ARP) → the qdisc → validate_xmit_skb() →
the driver's start_xmit → the TX ring, which the link drains (loopback_xmit for lo).
The caller owns the asyncio side: it feeds frames and transmit batches in, runs poll()
while softirq_pending(), drains the TX rings and fires the timers it is told about.

Transmit completions: an skb a socket was charged for (skb.wmem) gives the charge back
in `tx_done` where the kernel's sock_wfree would run: when its frame leaves the TX ring
(the link took it), in loopback_xmit's skb_orphan, or where it is dropped. On the way
the charge rides on the skb, then on its last frame (in netem, on the ring), so a
socket's memory stays charged while its datagrams wait in the arp_queue, the qdisc or
the ring: that is the backpressure sk_sndbuf works with. A datagram the qdisc refuses
(NET_XMIT_DROP) or that no neighbour entry could be made for also counts as the
-ENOBUFS ip_send_skb would return; the noop qdisc of a device without carrier or down
answers NET_XMIT_CN, and netem's loss NET_XMIT_SUCCESS, which the sender never sees.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from functools import partial

from services.core.dropreason import DropStats, SkbDropReason
from services.core.errno import EINVAL, EOPNOTSUPP, ERANGE
from services.core.skbuff import (
    CHECKSUM_PARTIAL,
    HEADER_UNSET,
    NET_SKB_PAD,
    PACKET_BROADCAST,
    PACKET_HOST,
    PACKET_MULTICAST,
    PACKET_OTHERHOST,
    PACKET_OUTGOING,
    SKBTX_IN_PROGRESS,
    SKBTX_SCHED_TSTAMP,
    SKBTX_SW_TSTAMP,
    SkBuff,
    TraceStep,
    alloc_skb,
)
from services.core.socket_uapi import SCM_TSTAMP_SCHED, SCM_TSTAMP_SND
from services.core.sysctl import Sysctl
from services.core.trace import Tracer
from services.core.wire.ethernet import (
    ETH_HLEN,
    ETH_P_ARP,
    ETH_P_IP,
    EthernetRepr,
    is_multicast_ether_addr,
)
from services.core.wire.ipv4 import IPPROTO_UDP
from services.core.wmem import TxCompletions, take_charge
from services.nic.capture import Taps
from services.nic.device import (
    ETH_MAX_MTU,
    ETH_MIN_MTU,
    HWTSTAMP_FILTER_ALL,
    HWTSTAMP_FILTER_NONE,
    HWTSTAMP_TX_OFF,
    HWTSTAMP_TX_ON,
    IFF_LOOPBACK,
    IFF_NOARP,
    IFF_PROMISC,
    IFF_UP,
    LOOPBACK_MTU,
    NetDevice,
)
from services.nic.features import RX_GRO
from services.nic.gro import Gro
from services.nic.napi import NAPI_MAX_WEIGHT, RX_RING_MAX, TX_RING_MAX, RxDesc
from services.nic.neigh import NeighTable
from services.nic.netem import Netem, NetemConfig
from services.nic.softnet import BacklogNapi, PollTarget, Softnet
from services.nic.xmit import (
    PfifoFast,
    TxDesc,
    hard_start_xmit,
    validate_xmit_skb,
    wants_hw_tstamp,
)

BROADCAST = b"\xff" * 6
# LL_RESERVED_SPACE() of an Ethernet device: ETH_HLEN rounded up to HH_DATA_MOD (16).
LL_RESERVED_SPACE = 16


def skb_expand_head(skb: SkBuff, headroom: int) -> None:
    """skb_expand_head() → pskb_expand_head(): a new buffer with `headroom` bytes in
    front of data; every offset into the old one moves (skb_headers_offset_update)."""
    off = headroom - skb.headroom()
    if off <= 0:
        return
    skb.head = bytearray(off) + skb.head
    skb.data += off
    skb.tail += off
    for name in ("mac_header", "network_header", "transport_header"):
        if getattr(skb, name) != HEADER_UNSET:
            setattr(skb, name, getattr(skb, name) + off)
    if skb.ip_summed == CHECKSUM_PARTIAL:
        skb.csum_start += off


def flow_hash(skb: SkBuff) -> int:
    """skb_get_hash(): a hash of the flow (addresses, protocol, and ports when the
    packet is not a fragment), never 0. The kernel uses jhash with a boot-time seed;
    the emulator a fixed CRC, so steering is repeatable."""
    data = skb.linear()
    if len(data) < 20 or data[0] >> 4 != 4:
        return 1
    ihl = (data[0] & 0x0F) * 4
    key = bytes(data[12:20]) + bytes((data[9],))
    frag = int.from_bytes(data[6:8], "big") & 0x3FFF
    if data[9] == IPPROTO_UDP and not frag and len(data) >= ihl + 4:
        key += bytes(data[ihl : ihl + 4])
    return zlib.crc32(key) or 1


class NicLayer:
    def __init__(
        self,
        hostname: str,
        devices: Iterable[NetDevice],
        sysctl: Sysctl,
        ncpus: int = 1,
        realtime: Callable[[], int] = time.time_ns,
        mono: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.devices = {d.ifindex: d for d in devices}
        self.sysctl = sysctl
        self.ncpus = ncpus
        self.realtime = realtime
        self.mono = mono
        self.drops = DropStats()
        self.trace = Tracer("nic", hostname)
        self.trace.follow(sysctl)
        self.softnet = Softnet(
            ncpus,
            self.drops,
            max_backlog=lambda: sysctl.get_int("net.core.netdev_max_backlog"),
            budget=lambda: sysctl.get_int("net.core.netdev_budget"),
            budget_usecs=lambda: sysctl.get_int("net.core.netdev_budget_usecs"),
            clock=mono,
        )
        self.gro = {d.ifindex: Gro(self.drops) for d in self.devices.values() if d.napi is not None}
        self.qdiscs = {d.ifindex: PfifoFast() for d in self.devices.values() if not d.is_loopback}
        self.netem: dict[int, Netem] = {}
        self.tx_ring: dict[int, deque[TxDesc]] = {d.ifindex: deque() for d in self.devices.values()}
        # sock_wfree() of every skb freed here, for the owning sockets.
        self.tx_done = TxCompletions()
        self.neigh = NeighTable(
            self.drops,
            clock=lambda: mono() / 1e9,
            send_frame=self._xmit_frame,
            xmit_resolved=self._neigh_resolved,
            free=self.tx_done.add,
        )
        self.taps = Taps()
        # Filled during a call, drained by the caller: skbs for IP, transmit timestamps
        # for the owning sockets, devices whose state changed (the netdev notifier).
        self._delivered: list[SkBuff] = []
        self.tx_timestamps: list[tuple[SkBuff, int]] = []
        self.link_events: set[int] = set()
        # The datagram (sk, id, saddr, daddr, protocol) whose fragment a qdisc last
        # refused: its other fragments add no -ENOBUFS (see _enobufs).
        self._refused_frag: tuple[int, bytes] | None = None

    def dev_by_name(self, name: str) -> NetDevice | None:
        for dev in self.devices.values():
            if dev.name == name:
                return dev
        return None

    def set_addrs(self, addrs: list[tuple[int, int, int]]) -> None:
        self.neigh.set_addrs(addrs)

    # Receive: from a link into the ring, the IRQ, NAPI.

    def rx_frames(
        self, dev: NetDevice, frames: Iterable[bytes], traces: Mapping[int, list[TraceStep]] | None = None
    ) -> None:
        """The "hardware" receives frames from the link: DMA into the RX ring, then the
        interrupt if the coalescing thresholds are met. `traces` are the emulator's
        traces of the peer's skbs, by the index of their frame."""
        napi = dev.napi
        if napi is None:
            return
        now = self.realtime()
        for i, frame in enumerate(frames):
            if not dev.is_up:
                # A device that is down has its receiver off (ndo_stop).
                dev.stats.rx_dropped += 1
                self.drops.drop_frame(SkbDropReason.DEV_READY, "rx (device down)", frame)
                continue
            if not napi.dma(RxDesc(frame, self.mono(), now, traces.get(i) if traces else None)):
                dev.stats.rx_missed_errors += 1
                self.drops.drop_frame(SkbDropReason.FULL_RING, "rx ring full", frame)
        self.check_irqs()

    def check_irqs(self) -> None:
        """Fire every interrupt that is due (arrivals, or a coalescing timer)."""
        now = self.mono()
        for dev in self.devices.values():
            napi = dev.napi
            if napi is not None and napi.irq_due(now):
                self._hard_irq(dev)

    def next_irq_deadline(self) -> int | None:
        deadlines = [d.napi.irq_deadline() for d in self.devices.values() if d.napi is not None]
        due = [t for t in deadlines if t is not None]
        return min(due) if due else None

    def _hard_irq(self, dev: NetDevice) -> None:
        napi = dev.napi
        assert napi is not None
        dev.driver.rx_irqs += 1
        if napi.hard_irq():
            self.softnet.napi_schedule(dev.irq_cpu, napi)

    def softirq_pending(self) -> bool:
        return self.softnet.pending()

    def poll(self) -> tuple[list[SkBuff], bool]:
        """Run net_rx_action once on every CPU: the skbs for the IP layer, and whether
        work is left."""
        more = False
        for cpu in range(self.ncpus):
            if self.softnet.cpus[cpu].poll_list:
                more |= self.softnet.net_rx_action(cpu, partial(self._napi_poll, cpu=cpu))
        out, self._delivered = self._delivered, []
        return out, more

    def _napi_poll(self, n: PollTarget, cpu: int) -> int:
        if isinstance(n, BacklogNapi):
            return self._process_backlog(n)
        dev = self.devices[n.ifindex]  # type: ignore[attr-defined]
        return self._driver_poll(dev, cpu)

    def _driver_poll(self, dev: NetDevice, cpu: int) -> int:
        """The driver's NAPI poll: up to `weight` descriptors, each built into an skb and
        handed to GRO; then napi_complete_done() if the ring ran dry first."""
        napi = dev.napi
        assert napi is not None
        dev.driver.rx_napi_polls += 1
        gro = self.gro[dev.ifindex]
        use_gro = RX_GRO in dev.features
        work = 0
        while work < napi.weight and napi.ring:
            desc = napi.ring.popleft()
            work += 1
            skb = self._build_skb(dev, desc)
            if skb is None:
                continue
            if desc.trace is not None:
                skb.trace = desc.trace
            elif self.trace.sample and self.trace.sampled():
                skb.trace = []
            self.trace(skb, "napi_gro_receive")
            for s in gro.receive(skb) if use_gro else (skb,):
                self._netif_receive_skb(s, cpu)
        # napi_poll(): with HZ < 1000 every poll flushes all that GRO holds, and so does
        # napi_complete_done().
        for s in gro.flush():
            self._netif_receive_skb(s, cpu)
        if work < napi.weight:
            napi.complete_done(self.mono())
            dev.driver.rx_napi_complete += 1
            if napi.irq_due(self.mono()):
                self._hard_irq(dev)
        return work

    def _build_skb(self, dev: NetDevice, desc: RxDesc) -> SkBuff | None:
        """napi_alloc_skb + copy from the descriptor, the MAC's filter, eth_type_trans."""
        frame = desc.frame
        if len(frame) < ETH_HLEN:
            dev.stats.rx_errors += 1
            self.drops.drop(SkbDropReason.PKT_TOO_SMALL, "eth_type_trans")
            return None
        if len(frame) > dev.mtu + ETH_HLEN:
            # The MAC refuses frames longer than its maximum (rx_length_errors).
            dev.stats.rx_errors += 1
            self.drops.drop(SkbDropReason.PKT_TOO_BIG, "rx frame longer than mtu")
            return None
        h_dest = frame[:6]
        multicast = is_multicast_ether_addr(h_dest)
        if h_dest != dev.dev_addr and not multicast and not dev.promisc:
            # The MAC's unicast filter: the frame never reaches the host's memory.
            dev.driver.rx_mac_filtered += 1
            self.drops.drop(SkbDropReason.OTHERHOST, "rx mac filter")
            return None
        skb = alloc_skb(len(frame), NET_SKB_PAD)
        skb.put_data(frame)
        dev.stats.rx_packets += 1
        dev.stats.rx_bytes += len(frame)
        if multicast and h_dest != BROADCAST:
            dev.stats.multicast += 1
        if dev.hwtstamp.rx_filter == HWTSTAMP_FILTER_ALL:
            skb.hwtstamp = desc.hwtstamp
        self.eth_type_trans(skb, dev)
        if self.taps:
            # The driver's copy of the frame as it arrived, before GRO touches it.
            self.taps.deliver(dev.ifindex, self.realtime(), skb.pkt_type, frame)
        return skb

    def eth_type_trans(self, skb: SkBuff, dev: NetDevice) -> None:
        """Set pkt_type and protocol from the Ethernet header and pull it (the caller
        made sure the header is there)."""
        skb.dev_ifindex = skb.skb_iif = dev.ifindex
        skb.reset_mac_header()
        lin = skb.linear()
        skb.pkt_type = _rx_pkt_type(lin, dev)
        skb.protocol = int.from_bytes(lin[12:14], "big")
        skb.pull(ETH_HLEN)

    def _netif_receive_skb(self, skb: SkBuff, this_cpu: int) -> None:
        """netif_receive_skb_internal(): the timestamp, then RPS or straight up."""
        # net_timestamp_check() with netdev_tstamp_prequeue: stamped before RPS.
        if not skb.tstamp:
            skb.tstamp = self.realtime()
        dev = self.devices[skb.dev_ifindex]
        cpu = self._get_rps_cpu(dev, skb)
        if cpu < 0:
            self._receive_core(skb, this_cpu)
            return
        self._enqueue_to_backlog(skb, dev, cpu, this_cpu)

    def _get_rps_cpu(self, dev: NetDevice, skb: SkBuff) -> int:
        """get_rps_cpu(): the rps_map of the RX queue indexed by the flow hash."""
        if not dev.rps_cpus:
            return -1
        cpus = [c for c in range(self.ncpus) if dev.rps_cpus >> c & 1]
        if not cpus:
            return -1
        if not skb.hash:
            skb.hash = flow_hash(skb)
        # reciprocal_scale(hash, map->len)
        return cpus[(skb.hash * len(cpus)) >> 32]

    def _enqueue_to_backlog(self, skb: SkBuff, dev: NetDevice, cpu: int, this_cpu: int) -> bool:
        self.trace(skb, "enqueue_to_backlog")
        if self.softnet.enqueue_to_backlog(skb, cpu, this_cpu) == 0:
            return True
        # enqueue_to_backlog(): a refused skb also counts in the device's rx_dropped
        # (dev_core_stats_rx_dropped_inc(skb->dev)).
        dev.stats.rx_dropped += 1
        return False

    def _process_backlog(self, n: BacklogNapi) -> int:
        """process_backlog(): up to dev_rx_weight skbs from input_pkt_queue."""
        sd = self.softnet.cpus[n.cpu]
        # proc_do_dev_weight(): dev_rx_weight = dev_weight * dev_weight_rx_bias.
        quota = self.sysctl.get_int("net.core.dev_weight") * self.sysctl.get_int(
            "net.core.dev_weight_rx_bias"
        )
        q = sd.input_pkt_queue
        work = 0
        while q:
            self._receive_core(q.popleft(), n.cpu)
            work += 1
            if work >= quota:
                # Returns at its quota before looking whether the queue is empty: it
                # stays scheduled and completes on the next poll.
                return work
        n.scheduled = False
        return work

    def _receive_core(self, skb: SkBuff, cpu: int) -> None:
        """__netif_receive_skb_core(): the taps, then the protocol handler."""
        self.softnet.cpus[cpu].processed += 1
        self.trace(skb, "__netif_receive_skb_core")
        dev = self.devices.get(skb.dev_ifindex)
        if dev is not None and dev.is_loopback and self.taps:
            # lo has no driver tap: the capture is taken here, as ptype_all sees it.
            self.taps.deliver(dev.ifindex, self.realtime(), skb.pkt_type, _frame_of(skb))
        skb.reset_network_header()
        if skb.protocol == ETH_P_IP:
            self._delivered.append(skb)
            return
        if skb.protocol == ETH_P_ARP and dev is not None and not dev.flags & (IFF_NOARP | IFF_LOOPBACK):
            self.neigh.arp_rcv(dev, _frame_of(skb), skb.pkt_type)
            return
        # No packet_type handler for this EtherType: without an rx_handler asking for
        # exact delivery the kernel counts rx_dropped (rx_nohandler only for bonding
        # slaves and the like), and frees it as UNHANDLED_PROTO.
        if dev is not None:
            dev.stats.rx_dropped += 1
        self.drops.drop(SkbDropReason.UNHANDLED_PROTO, "__netif_receive_skb_core", skb=skb)

    # Transmit.

    def dev_queue_xmit(self, skb: SkBuff) -> None:
        """ip_finish_output2 → neigh_output → dev_queue_xmit for one skb from IP, data at
        the network header and the route in skb.dst."""
        self.trace(skb, "dev_queue_xmit")
        dst = skb.dst
        dev = self.devices.get(dst.ifindex) if dst is not None else None
        if dev is None or dst is None:
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "dev_queue_xmit", skb=skb)
            self.tx_done.add(skb)
            return
        skb.dev_ifindex = dev.ifindex
        if not dev.is_up:
            # __dev_queue_xmit() on a device that is down: its queue has the noop qdisc
            # (dev_deactivate), whose enqueue frees the skb and answers NET_XMIT_CN.
            dev.stats.tx_dropped += 1
            self.drops.drop(SkbDropReason.DEV_READY, "__dev_queue_xmit", skb=skb)
            self.tx_done.add(skb)
            return
        if dev.flags & (IFF_NOARP | IFF_LOOPBACK):
            # arp_constructor(): a NOARP or loopback device's neighbour is its own address.
            self._neigh_resolved(dev, skb, dev.dev_addr)
            return
        if not dev.carrier:
            # No carrier: dev_deactivate() left the noop qdisc, whose enqueue drops
            # and answers NET_XMIT_CN (net_xmit_errno() 0: the sender sees success).
            dev.stats.tx_dropped += 1
            self.drops.drop(SkbDropReason.QDISC_DROP, "noop_enqueue", skb=skb)
            self.tx_done.add(skb)
            return
        lladdr = self.neigh.output(dev, dst.nexthop, skb)
        if lladdr is not None:
            self._neigh_resolved(dev, skb, lladdr)

    def _neigh_resolved(self, dev: NetDevice, skb: SkBuff, lladdr: bytes) -> None:
        """neigh_hh_output / neigh_resolve_output: the link header, then the device."""
        if skb.headroom() < ETH_HLEN:
            # ip_finish_output2(): "Be paranoid, rather than too clever": an skb whose
            # headroom cannot take the link header gets a bigger head, not a crash.
            skb_expand_head(skb, LL_RESERVED_SPACE)
        EthernetRepr(dst=lladdr, src=dev.dev_addr, ethertype=skb.protocol or ETH_P_IP).emit(
            skb.push(ETH_HLEN)
        )
        skb.reset_mac_header()
        self._dev_xmit(dev, skb)

    def _xmit_frame(self, dev: NetDevice, frame: bytes) -> None:
        """A frame the neighbour layer built (an ARP request or reply), sent like
        arp_xmit → dev_queue_xmit."""
        skb = alloc_skb(len(frame), NET_SKB_PAD)
        skb.put_data(frame)
        skb.reset_mac_header()
        skb.protocol = ETH_P_ARP
        skb.dev_ifindex = dev.ifindex
        self._dev_xmit(dev, skb)

    def _dev_xmit(self, dev: NetDevice, skb: SkBuff) -> None:
        """__dev_queue_xmit(): the SCHED timestamp, then the qdisc (lo: noqueue)."""
        if not dev.is_up:
            dev.stats.tx_dropped += 1
            self.drops.drop(SkbDropReason.DEV_READY, "__dev_queue_xmit", skb=skb)
            self.tx_done.add(skb)
            return
        if skb.tx_flags & SKBTX_SCHED_TSTAMP and skb.sk:
            self._tstamp_tx(skb, SCM_TSTAMP_SCHED, 0)
        if dev.is_loopback:
            # lo segments nothing (every offload is on) and has no queue: each piece
            # goes straight to loopback_xmit, which orphans it.
            for seg in validate_xmit_skb(skb, dev):
                self.loopback_xmit(seg, dev)
            self.tx_done.add(skb)
            return
        if not dev.carrier:
            dev.stats.tx_dropped += 1
            self.drops.drop(SkbDropReason.QDISC_DROP, "noop_enqueue", skb=skb)
            self.tx_done.add(skb)
            return
        netem = self.netem.get(dev.ifindex)
        if netem is not None:
            now = self.mono()
            refused = False
            for desc in self._driver_xmit(dev, skb):
                before = netem.stats.lost
                if not netem.enqueue(desc.frame, now, desc.charge):
                    # netem_enqueue(): a lost frame is NET_XMIT_SUCCESS | __NET_XMIT_BYPASS,
                    # a full queue qdisc_drop_all()'s NET_XMIT_DROP.
                    lost = netem.stats.lost > before
                    # Per frame: a GSO skb's segments are each their own datagram.
                    self.drops.drop_frame(
                        SkbDropReason.QDISC_DROP if lost else SkbDropReason.QDISC_OVERLIMIT,
                        "netem_enqueue",
                        desc.frame,
                    )
                    refused = refused or not lost
                    self.tx_done.release_charge(desc.charge)
            if refused and self._enobufs(skb):
                self.tx_done.release(skb.sk, 0, 1)
            self.netem_run(dev)
            return
        if not self.qdiscs[dev.ifindex].enqueue(skb, dev.txqueuelen):
            # pfifo_fast_enqueue() → qdisc_drop_cpu(): NET_XMIT_DROP, -ENOBUFS for the
            # sender (net_xmit_errno).
            self.drops.drop(SkbDropReason.QDISC_DROP, "pfifo_fast_enqueue", skb=skb)
            self.tx_done.add(skb, enobufs=self._enobufs(skb))
            return
        self.qdisc_run(dev)

    def _enobufs(self, skb: SkBuff) -> bool:
        """Is this refusal the -ENOBUFS of a datagram not yet counted? ip_do_fragment()
        stops at the first fragment the device refuses and returns its error, so a
        datagram fails once however many of its fragments the qdisc turns away here
        (where they all arrive, the IP layer having cut them in another process)."""
        nh = skb.network_header
        if not skb.sk or nh == HEADER_UNSET or nh + 20 > skb.tail:
            return bool(skb.sk)
        hdr = bytes(skb.head[nh : nh + 20])
        if not int.from_bytes(hdr[6:8], "big") & 0x3FFF:
            return True
        key = (skb.sk, hdr[4:6] + hdr[9:10] + hdr[12:20])
        if key == self._refused_frag:
            return False
        self._refused_frag = key
        return True

    def qdisc_run(self, dev: NetDevice) -> None:
        """__qdisc_run(): move skbs from the qdisc to the driver while the TX ring has
        room (netif_xmit_stopped otherwise)."""
        napi = dev.napi
        ring = self.tx_ring[dev.ifindex]
        limit = napi.tx_pending if napi is not None else TX_RING_MAX
        qdisc = self.qdiscs.get(dev.ifindex)
        if qdisc is None:
            return
        while len(ring) < limit:
            skb = qdisc.dequeue()
            if skb is None:
                return
            ring.extend(self._driver_xmit(dev, skb))
        if qdisc.q:
            dev.driver.tx_ring_full += 1

    def netem_run(self, dev: NetDevice) -> None:
        """netem_dequeue(): the frames whose time has come go onto the TX ring."""
        netem = self.netem.get(dev.ifindex)
        if netem is not None:
            self.tx_ring[dev.ifindex].extend(TxDesc(f, c) for f, c in netem.dequeue_charged(self.mono()))

    def next_netem_deadline(self) -> int | None:
        due = [t for t in (n.next_deadline() for n in self.netem.values()) if t is not None]
        return min(due) if due else None

    def _driver_xmit(self, dev: NetDevice, skb: SkBuff) -> list[TxDesc]:
        """dev_hard_start_xmit(): validate, then per piece the taps
        (dev_queue_xmit_nit(), which see it as the driver gets it: a GSO skb whole, a
        checksum the hardware will finish still partial) and the driver: frames,
        stats and the transmit timestamps (skb_tx_timestamp and the hardware's). The
        skb's charge rides on its last frame until the link takes it."""
        charge = take_charge(skb)
        self.trace(skb, "dev_hard_start_xmit")
        frames: list[bytes] = []
        traces: list[list[TraceStep] | None] = []
        for seg in validate_xmit_skb(skb, dev):
            hw = wants_hw_tstamp(seg, dev)
            if hw:
                seg.tx_flags |= SKBTX_IN_PROGRESS
            if self.taps:
                self.taps.deliver(dev.ifindex, self.realtime(), PACKET_OUTGOING, _frame_of(seg))
            out = hard_start_xmit(seg, dev)
            if seg.sk and seg.tx_flags & SKBTX_SW_TSTAMP:
                self._tstamp_tx(seg, SCM_TSTAMP_SND, 0)
            if seg.sk and hw:
                dev.driver.tx_hwtstamps += 1
                self._tstamp_tx(seg, SCM_TSTAMP_SND, self.realtime())
            dev.stats.tx_packets += len(out)
            dev.stats.tx_bytes += sum(map(len, out))
            frames.extend(out)
            traces.extend([seg.trace] * len(out))
        if not frames:
            self.tx_done.release_charge(charge)
            return []
        descs = [TxDesc(f, None, t) for f, t in zip(frames, traces, strict=True)]
        descs[-1] = TxDesc(frames[-1], charge, traces[-1])
        return descs

    def take_tx(self, dev: NetDevice) -> list[bytes]:
        """The link takes every frame on the TX ring; their completion frees the ring
        (and the skbs: sock_wfree), which the qdisc refills for the next take."""
        return [d.frame for d in self.take_tx_descs(dev)]

    def take_tx_descs(self, dev: NetDevice) -> list[TxDesc]:
        """take_tx() with the descriptors, for a link that carries the traces too."""
        ring = self.tx_ring[dev.ifindex]
        out = list(ring)
        self._free_ring(ring)
        self.qdisc_run(dev)
        return out

    def _free_ring(self, ring: deque[TxDesc]) -> None:
        for desc in ring:
            self.tx_done.release_charge(desc.charge)
        ring.clear()

    def tx_ring_clear(self, dev: NetDevice) -> int:
        """The link went away with frames still on the ring: they are freed. Returns
        how many."""
        ring = self.tx_ring[dev.ifindex]
        n = len(ring)
        self._free_ring(ring)
        return n

    def carrier_lost(self, dev: NetDevice, frames: int) -> None:
        """Frames the link could not deliver because it went away."""
        dev.stats.tx_errors += frames
        dev.stats.tx_carrier_errors += frames
        self.drops.drop(SkbDropReason.NOT_SPECIFIED, "link down in flight", frames)

    def _tstamp_tx(self, skb: SkBuff, tstype: int, hwtstamp: int) -> None:
        """__skb_tstamp_tx(): a clone for the owning socket's error queue, stamped in
        software (tstamp) or by the hardware (hwtstamp)."""
        c = skb.clone()
        c.tstamp = 0 if hwtstamp else self.realtime()
        c.hwtstamp = hwtstamp
        c.trace = None
        self.tx_timestamps.append((c, tstype))

    def loopback_xmit(self, skb: SkBuff, dev: NetDevice) -> None:
        """drivers/net/loopback.c: the frame goes straight back up through netif_rx."""
        self.trace(skb, "loopback_xmit")
        if skb.sk and skb.tx_flags & SKBTX_SW_TSTAMP:
            self._tstamp_tx(skb, SCM_TSTAMP_SND, 0)  # skb_tx_timestamp()
        if self.taps:
            self.taps.deliver(dev.ifindex, self.realtime(), PACKET_OUTGOING, _frame_of(skb))
        # skb_clear_tstamp(): do not fool net_timestamp_check() with the send time.
        skb.tstamp = 0
        # skb_orphan(): sock_wfree now; the skb goes up owing nothing.
        self.tx_done.add(skb)
        skb.sk = 0
        if skb.len < ETH_HLEN:
            dev.stats.rx_errors += 1
            self.drops.drop(SkbDropReason.PKT_TOO_SMALL, "eth_type_trans")
            return
        self.eth_type_trans(skb, dev)
        # loopback_xmit() reads len after eth_type_trans() pulled the Ethernet header:
        # lo counts the bytes of the IP packet (a 10-byte UDP datagram is 38 bytes in
        # /sys/class/net/lo/statistics/tx_bytes on 6.18).
        length = skb.len
        if self.netif_rx(skb, dev):
            # dev_lstats_add(): lo counts one packet as both sent and received.
            dev.stats.tx_packets += 1
            dev.stats.tx_bytes += length
            dev.stats.rx_packets += 1
            dev.stats.rx_bytes += length

    def netif_rx(self, skb: SkBuff, dev: NetDevice) -> bool:
        self.trace(skb, "netif_rx")
        # net_timestamp_check(): the receive timestamp is taken on entry to the backlog.
        if not skb.tstamp:
            skb.tstamp = self.realtime()
        cpu = self._get_rps_cpu(dev, skb)
        # The sender runs on CPU 0 of the emulated host.
        return self._enqueue_to_backlog(skb, dev, cpu if cpu >= 0 else 0, 0)

    # Control: ip link set, ethtool -G/-C/-K, SIOCSHWTSTAMP, tc netem.

    def set_link(
        self,
        dev: NetDevice,
        up: bool | None = None,
        mtu: int | None = None,
        promisc: bool | None = None,
        txqueuelen: int | None = None,
        rps_cpus: int | None = None,
        napi_weight: int | None = None,
    ) -> tuple[int, str]:
        """do_setlink(): validate everything first, then apply (rtnetlink does not apply
        half a request that fails)."""
        if mtu is not None:
            lo, hi = (ETH_MIN_MTU, LOOPBACK_MTU) if dev.is_loopback else (ETH_MIN_MTU, ETH_MAX_MTU)
            if not lo <= mtu <= hi:
                # dev_validate_mtu(): "mtu less than device minimum" / "greater than maximum".
                return EINVAL, f"mtu {mtu} outside {lo}..{hi}"
        if rps_cpus is not None and rps_cpus >> self.ncpus:
            return EINVAL, f"rps_cpus {rps_cpus:x} names CPUs beyond the {self.ncpus} this host has"
        if napi_weight is not None:
            if dev.napi is None:
                return EOPNOTSUPP, f"{dev.name} has no NAPI instance"
            if not 1 <= napi_weight <= NAPI_MAX_WEIGHT:
                return EINVAL, f"napi weight {napi_weight} outside 1..{NAPI_MAX_WEIGHT}"
        if txqueuelen is not None and txqueuelen > 0xFFFFFFFF:
            return ERANGE, "txqueuelen out of range"
        changed = False
        if mtu is not None and mtu != dev.mtu:
            dev.mtu = mtu
            changed = True
        if txqueuelen is not None:
            dev.txqueuelen = txqueuelen
        if rps_cpus is not None:
            dev.rps_cpus = rps_cpus
        if napi_weight is not None and dev.napi is not None:
            dev.napi.weight = napi_weight
        if promisc is not None:
            dev.flags = dev.flags | IFF_PROMISC if promisc else dev.flags & ~IFF_PROMISC
        if up is not None and up != dev.is_up:
            if up:
                dev.flags |= IFF_UP
            else:
                self._dev_close(dev)
            changed = True
        if changed:
            self.link_events.add(dev.ifindex)
        return 0, ""

    def _dev_close(self, dev: NetDevice) -> None:
        """__dev_close(): down, the qdisc reset and the rings freed; what they held is
        dropped and counted."""
        dev.flags &= ~IFF_UP
        qdisc = self.qdiscs.get(dev.ifindex)
        if qdisc is not None:
            lost = qdisc.reset()
            if lost:
                self.drops.drop(SkbDropReason.QDISC_DROP, "qdisc_reset", len(lost))
            for skb in lost:
                self.tx_done.add(skb)
        netem = self.netem.get(dev.ifindex)
        if netem is not None:
            self._netem_reset(netem)
        ring = self.tx_ring[dev.ifindex]
        if ring:
            self.drops.drop(SkbDropReason.DEV_READY, "tx ring freed", len(ring))
            self._free_ring(ring)
        if dev.napi is not None and dev.napi.ring:
            self.drops.drop(SkbDropReason.DEV_READY, "rx ring freed", len(dev.napi.ring))
            dev.napi.ring.clear()
        self.neigh.ifdown(dev)

    def _netem_reset(self, netem: Netem) -> None:
        """netem_reset(): what the qdisc held is freed and counted."""
        lost = netem.drain_charged()
        if lost:
            self.drops.drop(SkbDropReason.QDISC_DROP, "qdisc_reset", len(lost))
        for _, charge in lost:
            self.tx_done.release_charge(charge)

    def set_carrier(self, dev: NetDevice, on: bool) -> None:
        """netif_carrier_on/off from the link."""
        if dev.carrier != on:
            dev.carrier = on
            self.link_events.add(dev.ifindex)
            if not on:
                self.neigh.carrier_down(dev)

    def set_ring(self, dev: NetDevice, rx: int | None, tx: int | None) -> tuple[int, str]:
        """ethtool_set_ringparam(): EINVAL above the pre-set maximums."""
        napi = dev.napi
        if napi is None:
            return EOPNOTSUPP, f"{dev.name} has no rings"
        for name, value, hi in (("rx", rx, RX_RING_MAX), ("tx", tx, TX_RING_MAX)):
            if value is not None and not 1 <= value <= hi:
                return EINVAL, f"{name} ring size {value} outside 1..{hi}"
        napi.resize(rx, tx)
        lost = napi.trim_ring()
        if lost:
            dev.stats.rx_missed_errors += len(lost)
            self.drops.drop(SkbDropReason.FULL_RING, "rx ring resized", len(lost))
        return 0, ""

    def set_coalesce(self, dev: NetDevice, rx_usecs: int | None, rx_frames: int | None) -> tuple[int, str]:
        napi = dev.napi
        if napi is None:
            return EOPNOTSUPP, f"{dev.name} does not coalesce interrupts"
        for name, value in (("rx-usecs", rx_usecs), ("rx-frames", rx_frames)):
            if value is not None and not 0 <= value <= 1_000_000:
                return EINVAL, f"{name} {value} out of range"
        if rx_usecs is not None:
            napi.rx_usecs = rx_usecs
        if rx_frames is not None:
            napi.rx_max_frames = rx_frames
        return 0, ""

    def set_features(self, dev: NetDevice, changes: dict[str, bool]) -> str | None:
        """ethtool -K (ethnl_set_features → netdev_update_features): None or the
        message of a refused change. A change of the active set is NETDEV_FEAT_CHANGE:
        the device goes up to IP like any other change."""
        before = dev.features.mask()
        msg = dev.features.set(changes)
        if dev.features.mask() != before:
            self.link_events.add(dev.ifindex)
        return msg

    def set_hwtstamp(self, dev: NetDevice, tx_type: int, rx_filter: int) -> tuple[int, str]:
        """The driver's SIOCSHWTSTAMP: ERANGE for a type it does not do."""
        if dev.napi is None:
            return EOPNOTSUPP, f"{dev.name} has no hardware clock"
        if tx_type not in (HWTSTAMP_TX_OFF, HWTSTAMP_TX_ON):
            return ERANGE, f"tx_type {tx_type} not supported"
        if rx_filter not in (HWTSTAMP_FILTER_NONE, HWTSTAMP_FILTER_ALL):
            # Drivers may widen a filter; this one timestamps all or nothing.
            rx_filter = HWTSTAMP_FILTER_ALL
        dev.hwtstamp.tx_type = tx_type
        dev.hwtstamp.rx_filter = rx_filter
        return 0, ""

    def set_netem(self, dev: NetDevice, config: NetemConfig | None) -> tuple[int, str]:
        """tc qdisc replace dev DEV root netem ... / tc qdisc del dev DEV root."""
        if dev.is_loopback:
            return EOPNOTSUPP, "lo has no qdisc here (noqueue)"
        old = self.netem.pop(dev.ifindex, None)
        if old is not None:
            # The replaced qdisc's backlog is dropped (qdisc_put → qdisc_reset).
            self._netem_reset(old)
        if config is not None:
            err = config.validate()
            if err is not None:
                return EINVAL, err
            self.netem[dev.ifindex] = Netem(config)
        return 0, ""


def _rx_pkt_type(frame: bytes | memoryview, dev: NetDevice) -> int:
    """eth_type_trans(): the packet type from the destination address."""
    h_dest = bytes(frame[:6])
    if h_dest == dev.dev_addr:
        return PACKET_HOST
    if is_multicast_ether_addr(h_dest):
        return PACKET_BROADCAST if h_dest == BROADCAST else PACKET_MULTICAST
    return PACKET_OTHERHOST


def _frame_of(skb: SkBuff) -> bytes:
    """The frame from the MAC header to the end, as a packet tap copies it."""
    start = skb.mac_header if skb.mac_header != HEADER_UNSET else skb.data
    return bytes(skb.head[start : skb.data]) + skb.payload()
