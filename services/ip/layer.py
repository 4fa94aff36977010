"""A host's IPv4 layer without gRPC: ip_rcv → ip_local_deliver on receive,
ip_send_skb → ip_output on transmit, and ip_route_output_key for the layer above.

Receive and transmit take skbs one at a time and collect what they pass on in
`to_transport` (for the UDP layer) and `to_device` (for the NIC); the caller ships
those lists as one batch each.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

from services.core.dropreason import DropStats, SkbDropReason
from services.core.skbuff import (
    PACKET_OTHERHOST,
    Dst,
    IpCork,
    SkBuff,
)
from services.core.snmp import SnmpMib
from services.core.sysctl import Sysctl
from services.core.trace import Tracer
from services.core.wire.ethernet import ETH_P_IP
from services.core.wire.ipv4 import (
    IPPROTO_UDP,
    Ipv4Packet,
    Ipv4Repr,
)
from services.ip.fib import RTN_BROADCAST, RTN_LOCAL, Fib, InIfaddr
from services.ip.route import RTCF_LOCAL, Router

# include/uapi/linux/in.h
IP_PMTUDISC_DONT = 0
IP_PMTUDISC_WANT = 1
IP_PMTUDISC_DO = 2
IP_PMTUDISC_PROBE = 3

IP_IDENTS_SZ = 2048  # net/ipv4/route.c

# IPSTATS_MIB_NOECTPKTS, ECT1PKTS, ECT0PKTS, CEPKTS indexed by the ECN field
# (INET_ECN_NOT_ECT 0, INET_ECN_ECT_1 1, INET_ECN_ECT_0 2, INET_ECN_CE 3).
_ECN_COUNTERS = ("InNoECTPkts", "InECT1Pkts", "InECT0Pkts", "InCEPkts")


class IpLayer:
    def __init__(self, hostname: str, sysctl: Sysctl) -> None:
        self.sysctl = sysctl
        self.fib = Fib()
        self.mib = SnmpMib()
        self.router = Router(self.fib, self.mib)
        self.drops = DropStats()
        self.trace = Tracer("ip", hostname)
        self.to_transport: list[SkBuff] = []
        self.to_device: list[SkBuff] = []
        # ip_idents_reserve(): a table of counters and last-use times keyed by a hash
        # of (daddr, saddr, protocol) under a per-boot random key.
        self._ip_id_key = random.getrandbits(64)
        self._idents = [random.getrandbits(16) for _ in range(IP_IDENTS_SZ)]
        self._ident_ts = [0] * IP_IDENTS_SZ

    def set_links(self, links: Iterable[tuple[int, int]]) -> None:
        """The devices (ifindex, mtu) as the NIC reports them, all at attach and then
        those that changed. fib_netdev_event(NETDEV_CHANGEMTU) → rt_cache_flush():
        routes cached above carry the old MTU, so the generation moves on."""
        mtus = self.router.mtus
        changed = {i: m for i, m in links if mtus.get(i) != m}
        if changed and mtus:
            self.fib.genid += 1
        mtus.update(changed)

    def add_address(self, ifa: InIfaddr) -> None:
        self.fib.add_ifaddr(ifa, loopback=ifa.ifindex == self.fib.loopback_ifindex)

    # Receive.

    def ip_rcv(self, skb: SkBuff) -> None:
        """ip_rcv_core() checks in the kernel's order, then ip_rcv_finish()."""
        self.trace(skb, "ip_rcv")
        mib = self.mib
        if skb.pkt_type == PACKET_OTHERHOST:
            self.drops.drop(SkbDropReason.OTHERHOST, "ip_rcv_core")
            return
        mib.ip.inc("InReceives")
        mib.ipext.inc("InOctets", skb.len)
        reason = SkbDropReason.IP_INHDR
        if not skb.may_pull(20):
            return self._inhdr_error(reason)
        pkt = Ipv4Packet(skb.linear())
        ihl = pkt.ihl
        if ihl < 5 or pkt.version != 4:
            return self._inhdr_error(reason)
        # ip_rcv_core(): IPSTATS_MIB_NOECTPKTS + (tos & INET_ECN_MASK), counted before the
        # full header is pulled, per segment of a GRO skb.
        mib.ipext.add(_ECN_COUNTERS[pkt.tos & 3], max(1, skb.gso_segs))
        if not skb.may_pull(ihl * 4):
            return self._inhdr_error(reason)
        if not pkt.verify_checksum():
            mib.ipext.inc("InCsumErrors")
            return self._inhdr_error(SkbDropReason.IP_CSUM)
        tot_len = pkt.total_len
        if skb.len < tot_len:
            mib.ipext.inc("InTruncatedPkts")
            self.drops.drop(SkbDropReason.PKT_TOO_SMALL, "ip_rcv_core")
            return
        if tot_len < ihl * 4:
            return self._inhdr_error(reason)
        # pskb_trim_rcsum(): Ethernet padding past tot_len goes.
        skb.trim(tot_len)
        skb.transport_header = skb.network_header + ihl * 4
        self._ip_rcv_finish(skb, pkt)

    def _inhdr_error(self, reason: SkbDropReason) -> None:
        self.mib.ip.inc("InHdrErrors")
        self.drops.drop(reason, "ip_rcv_core")

    def _ip_rcv_finish(self, skb: SkBuff, pkt: Ipv4Packet) -> None:
        """ip_rcv_finish() → ip_route_input_noref() → dst_input()."""
        daddr = pkt.dst
        route = self.router.input(daddr)
        if route is not None and route.type in (RTN_LOCAL, RTN_BROADCAST):
            skb.dst = Dst(route.ifindex, daddr, 0, route.type, RTCF_LOCAL)
            if route.type == RTN_BROADCAST:
                # ip_rcv_finish_core(): IP_UPD_PO_STATS(IPSTATS_MIB_INBCAST, skb->len).
                self.mib.ipext.inc("InBcastPkts")
                self.mib.ipext.add("InBcastOctets", skb.len)
            self._ip_local_deliver(skb, pkt)
            return
        # Not ours: ip_route_input_slow() turns a failed lookup into -EHOSTUNREACH when
        # the device does not forward, so ip_error() counts InAddrErrors for it too;
        # only a forwarding host counts InNoRoutes (ENETUNREACH). Nothing is sent.
        if route is None and self.sysctl.get_int("net.ipv4.ip_forward"):
            self.mib.ipext.inc("InNoRoutes")
            self.drops.drop(SkbDropReason.IP_INNOROUTES, "ip_error")
        else:
            self.mib.ip.inc("InAddrErrors")
            self.drops.drop(SkbDropReason.IP_INADDRERRORS, "ip_error")

    def _ip_local_deliver(self, skb: SkBuff, pkt: Ipv4Packet) -> None:
        self.trace(skb, "ip_local_deliver")
        if pkt.more_frags or pkt.frag_offset:
            # ip_defrag() is not built yet (the IP issue): the fragment is counted as a
            # failed reassembly rather than passed up in pieces.
            self.mib.ip.inc("ReasmReqds")
            self.mib.ip.inc("ReasmFails")
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "ip_defrag")
            return
        # ip_local_deliver_finish(): data moves to the transport header.
        skb.pull(skb.transport_header - skb.data)
        protocol = pkt.protocol
        if protocol == IPPROTO_UDP:
            self.mib.ip.inc("InDelivers")
            self.to_transport.append(skb)
            return
        # ip_protocol_deliver_rcu(): no handler (ICMP comes with the IP issue).
        self.mib.ip.inc("InUnknownProtos")
        self.drops.drop(SkbDropReason.IP_NOPROTO, "ip_protocol_deliver_rcu")

    # Transmit.

    def ip_send_skb(self, skb: SkBuff) -> None:
        """__ip_make_skb() + ip_send_skb(): put the IP header in front of the transport
        segment at skb.data, using the cork from udp_sendmsg and the route in dst."""
        cork, dst = skb.cork, skb.dst
        if cork is None or dst is None:
            self.mib.ip.inc("OutDiscards")
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "ip_send_skb")
            return
        self.trace(skb, "ip_send_skb")
        total = skb.len + 20 + len(cork.options)
        mtu = dst.mtu
        # __ip_make_skb(): DF when the socket does PMTU discovery and the datagram fits.
        df = cork.pmtudisc in (IP_PMTUDISC_DO, IP_PMTUDISC_PROBE) or (
            total <= mtu and cork.pmtudisc == IP_PMTUDISC_WANT
        )
        skb.ignore_df = cork.pmtudisc < IP_PMTUDISC_DO
        ttl = cork.ttl or self.sysctl.get_int("net.ipv4.ip_default_ttl")
        ident = self._ip_select_ident(cork, df and not skb.ignore_df)
        hdr = Ipv4Repr(
            src=cork.saddr,
            dst=cork.daddr,
            protocol=cork.protocol,
            payload_len=skb.len,
            ttl=ttl,
            tos=cork.tos,
            ident=ident,
            dont_frag=df,
            options=cork.options,
        )
        hdr.emit(skb.push(hdr.header_len))
        skb.reset_network_header()
        skb.protocol = ETH_P_IP
        self._ip_local_out(skb)

    def _ip_select_ident(self, cork: IpCork, strict_df: bool, segs: int = 1) -> int:
        """ip_select_ident_segs(): a connected socket's own counter (advanced by the UDP
        layer, which owns the socket); 0 for a DF packet that may not be fragmented; else
        __ip_select_ident(): a counter picked by hashing (daddr, saddr, protocol) under a
        per-boot key, advanced by a random amount when time has passed (ip_idents_reserve)."""
        if cork.inet_id is not None:
            return cork.inet_id & 0xFFFF
        if strict_df:
            return 0
        bucket = hash((cork.daddr, cork.saddr, cork.protocol, self._ip_id_key)) % IP_IDENTS_SZ
        now = time.monotonic_ns() // 1_000_000
        old = self._ident_ts[bucket]
        delta = random.randrange(now - old) if old and now > old else 0
        self._ident_ts[bucket] = now
        ident = (self._idents[bucket] + delta) & 0xFFFF
        self._idents[bucket] = (ident + segs) & 0xFFFF
        return ident

    def _ip_local_out(self, skb: SkBuff) -> None:
        """__ip_local_out() (the header's tot_len and checksum are final) → ip_output()."""
        self.trace(skb, "ip_local_out")
        self.mib.ip.inc("OutRequests")
        self.mib.ipext.inc("OutOctets", skb.len)
        self.trace(skb, "ip_output")
        dst = skb.dst
        assert dst is not None
        if skb.len > dst.mtu:
            # ip_fragment() is not built yet (the IP issue).
            self.mib.ip.inc("FragFails")
            self.drops.drop(SkbDropReason.PKT_TOO_BIG, "ip_fragment")
            return
        # ip_finish_output2(): counted as transmitted, handed to the neighbour/device.
        if dst.rt_type == RTN_BROADCAST:
            self.mib.ipext.inc("OutBcastPkts")
            self.mib.ipext.add("OutBcastOctets", skb.len)
        self.mib.ip.inc("OutTransmits")
        self.to_device.append(skb)
