"""A host's devices, link layer and receive softirq, without gRPC.

Transmit: dev_queue_xmit() → the device's xmit (loopback_xmit for lo). Receive:
netif_rx() → backlog → net_rx_action() → __netif_receive_skb_core() → the IP layer.
The caller owns the asyncio side: it hands transmit batches in and runs poll() when
softirq_pending() says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from services.core.dropreason import DropStats, SkbDropReason
from services.core.skbuff import (
    CHECKSUM_PARTIAL,
    HEADER_UNSET,
    PACKET_BROADCAST,
    PACKET_MULTICAST,
    PACKET_OTHERHOST,
    SkBuff,
)
from services.core.sysctl import Sysctl
from services.core.trace import Tracer
from services.core.wire.ethernet import (
    ETH_HLEN,
    ETH_P_IP,
    EthernetFrame,
    EthernetRepr,
    is_multicast_ether_addr,
)
from services.nic.device import IFF_LOOPBACK, IFF_NOARP, NetDevice
from services.nic.softnet import Softnet, SoftnetData

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


class NicLayer:
    def __init__(self, hostname: str, devices: Iterable[NetDevice], sysctl: Sysctl, ncpus: int = 1):
        self.devices = {d.ifindex: d for d in devices}
        self.sysctl = sysctl
        self.drops = DropStats()
        self.trace = Tracer("nic", hostname)
        self.softnet = Softnet(
            ncpus,
            self.drops,
            max_backlog=lambda: sysctl.get_int("net.core.netdev_max_backlog"),
            budget=lambda: sysctl.get_int("net.core.netdev_budget"),
            budget_usecs=lambda: sysctl.get_int("net.core.netdev_budget_usecs"),
            # proc_do_dev_weight(): dev_rx_weight = dev_weight * dev_weight_rx_bias is the
            # backlog NAPI's weight (process_backlog).
            dev_weight=lambda: (
                sysctl.get_int("net.core.dev_weight") * sysctl.get_int("net.core.dev_weight_rx_bias")
            ),
        )
        self._delivered: list[SkBuff] = []

    # Transmit.

    def dev_queue_xmit(self, skb: SkBuff) -> None:
        """ip_finish_output2 → neigh_output → dev_queue_xmit for one skb from IP, data at
        the network header and the route in skb.dst."""
        self.trace(skb, "dev_queue_xmit")
        dst = skb.dst
        dev = self.devices.get(dst.ifindex) if dst is not None else None
        if dev is None or dst is None:
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "dev_queue_xmit")
            return
        skb.dev_ifindex = dev.ifindex
        if not dev.is_up:
            # __dev_queue_xmit() on a device that is down: -ENETDOWN, freed.
            dev.stats.tx_dropped += 1
            self.drops.drop(SkbDropReason.DEV_READY, "__dev_queue_xmit")
            return
        if not dev.carrier:
            # No carrier: dev_deactivate() left the noop qdisc, whose enqueue drops.
            dev.stats.tx_dropped += 1
            self.drops.drop(SkbDropReason.QDISC_DROP, "noop_enqueue")
            return
        if dev.flags & (IFF_NOARP | IFF_LOOPBACK):
            # arp_constructor(): a NOARP or loopback device's neighbour is its own address.
            dest = dev.dev_addr
        else:
            # The neighbour table (ARP) comes with the NIC's links; nothing else is
            # reachable until then.
            dev.stats.tx_dropped += 1
            self.drops.drop(SkbDropReason.NEIGH_FAILED, "neigh_resolve_output")
            return
        if skb.headroom() < ETH_HLEN:
            # ip_finish_output2(): "Be paranoid, rather than too clever": an skb whose
            # headroom cannot take the link header gets a bigger head, not a crash.
            skb_expand_head(skb, LL_RESERVED_SPACE)
        EthernetRepr(dst=dest, src=dev.dev_addr, ethertype=skb.protocol or ETH_P_IP).emit(skb.push(ETH_HLEN))
        skb.reset_mac_header()
        if dev.is_loopback:
            self.loopback_xmit(skb, dev)

    def loopback_xmit(self, skb: SkBuff, dev: NetDevice) -> None:
        """drivers/net/loopback.c: the frame goes straight back up through netif_rx."""
        self.trace(skb, "loopback_xmit")
        # skb_clear_tstamp(): do not fool net_timestamp_check() with the send time.
        skb.tstamp = 0
        skb.sk = 0  # skb_orphan()
        if not self.eth_type_trans(skb, dev):
            return
        # loopback_xmit() reads len after eth_type_trans() pulled the Ethernet header:
        # lo counts the bytes of the IP packet (a 10-byte UDP datagram is 38 bytes in
        # /sys/class/net/lo/statistics/tx_bytes on 6.18).
        length = skb.len
        if self.netif_rx(skb):
            # dev_lstats_add(): lo counts one packet as both sent and received.
            dev.stats.tx_packets += 1
            dev.stats.tx_bytes += length
            dev.stats.rx_packets += 1
            dev.stats.rx_bytes += length

    # Receive.

    def eth_type_trans(self, skb: SkBuff, dev: NetDevice) -> bool:
        """Set pkt_type and protocol from the Ethernet header and pull it."""
        try:
            frame = EthernetFrame.new_checked(skb.linear())
        except ValueError:
            dev.stats.rx_errors += 1
            self.drops.drop(SkbDropReason.PKT_TOO_SMALL, "eth_type_trans")
            return False
        skb.dev_ifindex = skb.skb_iif = dev.ifindex
        skb.reset_mac_header()
        h_dest = bytes(frame.dst)
        if h_dest != dev.dev_addr:
            if is_multicast_ether_addr(h_dest):
                skb.pkt_type = PACKET_BROADCAST if h_dest == BROADCAST else PACKET_MULTICAST
            else:
                skb.pkt_type = PACKET_OTHERHOST
        skb.protocol = frame.ethertype
        skb.pull(ETH_HLEN)
        return True

    def netif_rx(self, skb: SkBuff) -> bool:
        self.trace(skb, "netif_rx")
        # net_timestamp_check(): the receive timestamp is taken on entry to the backlog.
        if not skb.tstamp:
            skb.tstamp = time.time_ns()
        if self.softnet.enqueue_to_backlog(skb, 0) == 0:
            return True
        # enqueue_to_backlog(): a refused skb also counts in the device's rx_dropped
        # (dev_core_stats_rx_dropped_inc(skb->dev)).
        dev = self.devices.get(skb.dev_ifindex)
        if dev is not None:
            dev.stats.rx_dropped += 1
        return False

    def softirq_pending(self) -> bool:
        return self.softnet.pending()

    def poll(self) -> tuple[list[SkBuff], bool]:
        """Run net_rx_action once: the skbs for the IP layer, and whether work is left."""
        more = self.softnet.net_rx_action(self._netif_receive_skb_core)
        out, self._delivered = self._delivered, []
        return out, more

    def _netif_receive_skb_core(self, skb: SkBuff, sd: SoftnetData) -> None:
        sd.processed += 1
        self.trace(skb, "__netif_receive_skb_core")
        skb.reset_network_header()
        if skb.protocol == ETH_P_IP:
            self._delivered.append(skb)
            return
        # No packet_type handler for this EtherType: rx_nohandler, UNHANDLED_PROTO.
        dev = self.devices.get(skb.dev_ifindex)
        if dev is not None:
            dev.stats.rx_dropped += 1
        self.drops.drop(SkbDropReason.UNHANDLED_PROTO, "__netif_receive_skb_core")
