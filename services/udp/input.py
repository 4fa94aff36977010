"""udp_rcv() and the way to a socket's receive queue (net/ipv4/udp.c __udp4_lib_rcv,
udp4_csum_init, __udp4_lib_mcast_deliver, udp_queue_rcv_skb, udp_queue_rcv_one_skb,
__udp_queue_rcv_skb, __udp_enqueue_schedule_skb; net/core/filter.c
sk_filter_trim_cap; net/core/sock.c __sk_mem_raise_allocated): header and length
checks, checksums (UDP's and UDP-Lite's coverage), the lookup, the socket filter, and
the receive buffer and udp_mem accounting, every drop counted where the kernel
counts it."""

from __future__ import annotations

import struct

from services.core.checksum import csum_partial, csum_tcpudp_magic
from services.core.dropreason import DropStats, SkbDropReason
from services.core.gso import GsoError, udp_rcv_segment
from services.core.ipcb import ipcb
from services.core.netdev import LOOPBACK_IFINDEX
from services.core.skbuff import (
    CHECKSUM_COMPLETE,
    CHECKSUM_NONE,
    CHECKSUM_PARTIAL,
    CHECKSUM_UNNECESSARY,
    HEADER_UNSET,
    SKB_GSO_UDP_L4,
    SkBuff,
)
from services.core.snmp import MibGroup, SnmpMib
from services.core.sysctl import Sysctl
from services.core.trace import Tracer
from services.core.wire.icmp import ICMP_DEST_UNREACH, ICMP_PORT_UNREACH
from services.core.wire.ipv4 import IPPROTO_UDPLITE, Ipv4Packet
from services.core.wire.udp import UDP_HLEN, UdpPacket
from services.ip.fib import RTN_BROADCAST, RTN_MULTICAST
from services.ip.sockglue import IP_CMSG_PKTINFO
from services.udp.errors import IcmpError
from services.udp.sock import UDPLITE_RECV_CC, UdpSock
from services.udp.sockfilter import sk_filter_trim_cap
from services.udp.table import UdpTable
from services.udp.udplite import set_udp_skb_cb, udp_skb_cb, udplite_checksum_init

# include/linux/skbuff.h: datagrams up to this length get their checksum verified on
# receipt rather than when copied to the user.
CHECKSUM_BREAK = 76
PAGE_SIZE = 4096
# struct sock_skb_cb sits at the end of skb->cb: SOCK_SKB_CB(skb)->dropcount.
SOCK_SKB_CB_OFF = 44
_U32 = struct.Struct("=I")


def sock_skb_dropcount(skb: SkBuff) -> int:
    """SOCK_SKB_CB(skb)->dropcount, as sock_skb_set_dropcount() left it."""
    v: int = _U32.unpack_from(skb.cb, SOCK_SKB_CB_OFF)[0]
    return v


def csum_unnecessary(skb: SkBuff) -> bool:
    """skb_csum_unnecessary(): a CHECKSUM_PARTIAL skb (sent from this host over lo, a GRO
    skb, or a segment split from one) carries a checksum nobody corrupted, as
    CHECKSUM_UNNECESSARY does."""
    return skb.ip_summed in (CHECKSUM_UNNECESSARY, CHECKSUM_PARTIAL)


def udp_lib_checksum_complete(skb: SkBuff) -> bool:
    """udp_lib_checksum_complete() == 0: the datagram (data at its UDP header) checks
    out over what its checksum covers: all of it, or UDP-Lite's partial coverage."""
    if csum_unnecessary(skb):
        return True
    nh = skb.network_header
    iph = Ipv4Packet(memoryview(skb.head)[nh : skb.transport_header])
    seg = skb.linear()
    cscov, partial = udp_skb_cb(skb.cb)
    covered = seg[:cscov] if partial else seg
    return csum_tcpudp_magic(iph.src, iph.dst, len(seg), iph.protocol, csum_partial(covered)) == 0


class UdpInput:
    """The receive half of UdpLayer (which provides these attributes)."""

    sysctl: Sysctl
    mib: SnmpMib
    drops: DropStats
    trace: Tracer
    tables: dict[int, UdpTable]
    icmp_out: list[IcmpError]
    # udp_memory_allocated: pages charged to all of this host's UDP sockets.
    memory_allocated: int

    def _proto_mib(self, proto: int) -> MibGroup:
        return self.mib.udplite if proto == IPPROTO_UDPLITE else self.mib.udp

    def udp_rcv(self, skb: SkBuff) -> None:
        """__udp4_lib_rcv() for IPPROTO_UDP and IPPROTO_UDPLITE (udplite_rcv): data at
        the UDP header, the IP header at network_header."""
        self.trace(skb, "udp_rcv")
        nh, th = skb.network_header, skb.transport_header
        if HEADER_UNSET in (nh, th) or th - nh < 20 or th != skb.data:
            # ip_local_deliver_finish() hands over an skb with both headers set and data
            # at the transport one: an IP layer that says otherwise contradicts itself.
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "udp_rcv (no IPv4 header before data)", skb=skb)
            return
        iph = Ipv4Packet(memoryview(skb.head)[nh:th])
        proto = iph.protocol
        mib = self._proto_mib(proto)
        if not skb.may_pull(UDP_HLEN):
            # "goto drop" with drop_reason still NOT_SPECIFIED; only a bad length field
            # is short_packet (PKT_TOO_SMALL).
            return self._rcv_drop(mib, SkbDropReason.NOT_SPECIFIED, skb)
        uh = UdpPacket(skb.linear())
        ulen = uh.length
        if ulen > skb.len:
            return self._rcv_drop(mib, SkbDropReason.PKT_TOO_SMALL, skb)
        if proto != IPPROTO_UDPLITE:
            # UDP validates ulen; UDP-Lite's is its checksum coverage.
            if ulen < UDP_HLEN:
                return self._rcv_drop(mib, SkbDropReason.PKT_TOO_SMALL, skb)
            skb.trim(ulen)
        saddr, daddr = iph.src, iph.dst
        if not self._udp4_csum_init(skb, uh.checksum, ulen, proto):
            mib.inc("InCsumErrors")
            return self._rcv_drop(mib, SkbDropReason.UDP_CSUM, skb)
        self.trace(skb, "__udp4_lib_lookup")
        table = self.tables[proto]
        dst = skb.dst
        if dst is not None and dst.rt_type in (RTN_BROADCAST, RTN_MULTICAST):
            return self._mcast_deliver(table, skb, saddr, uh.src_port, daddr, uh.dst_port, proto)
        s = table.lookup(saddr, uh.src_port, daddr, uh.dst_port, skb.skb_iif)
        if s is not None:
            self._queue_rcv_skb(s, skb)
            return
        # No socket: a bad checksum is an error, a good one is NoPorts.
        if not udp_lib_checksum_complete(skb):
            mib.inc("InCsumErrors")
            return self._rcv_drop(mib, SkbDropReason.UDP_CSUM, skb)
        mib.inc("NoPorts")
        # icmp_send(skb, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0): IP builds and sends it.
        self.icmp_out.append(IcmpError(skb, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0))
        self.drops.drop(SkbDropReason.NO_SOCKET, "__udp4_lib_rcv", skb=skb)

    def _udp4_csum_init(self, skb: SkBuff, check: int, ulen: int, proto: int) -> bool:
        """udp4_csum_init(): False when the datagram is already known bad. UDP-Lite's
        coverage is checked (udplite_checksum_init) and a partial one left for later; a
        zero UDP checksum means none was sent (IPv4 allows it); a short datagram is
        verified now (CHECKSUM_BREAK), a longer one when it is copied to the user."""
        set_udp_skb_cb(skb.cb, skb.len, False)
        if proto == IPPROTO_UDPLITE:
            bad, cscov = udplite_checksum_init(check, ulen, skb.len)
            if bad:
                return False
            if cscov < skb.len:
                set_udp_skb_cb(skb.cb, cscov, True)
                if skb.ip_summed == CHECKSUM_COMPLETE:
                    skb.ip_summed = CHECKSUM_NONE
                return True
        elif check == 0:
            skb.ip_summed = CHECKSUM_UNNECESSARY
            return True
        if not csum_unnecessary(skb) and skb.len <= CHECKSUM_BREAK:
            # __skb_checksum_validate_complete(): verified now; skb->csum_valid.
            if not udp_lib_checksum_complete(skb):
                return False
            skb.ip_summed = CHECKSUM_UNNECESSARY
        return True

    def _rcv_drop(self, mib: MibGroup, reason: SkbDropReason, skb: SkBuff) -> None:
        mib.inc("InErrors")
        self.drops.drop(reason, "__udp4_lib_rcv", skb=skb)

    def _mcast_deliver(
        self, table: UdpTable, skb: SkBuff, saddr: int, sport: int, daddr: int, dport: int, proto: int
    ) -> None:
        """__udp4_lib_mcast_deliver(): a copy to every socket bound to the port on the
        destination or the wildcard (the first found gets the original, last)."""
        socks = table.mcast_sockets(saddr, sport, daddr, dport, skb.skb_iif)
        if not socks:
            # No listener: IgnoredMulti (not NoPorts, no ICMP), and a plain kfree_skb().
            self._proto_mib(proto).inc("IgnoredMulti")
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "__udp4_lib_mcast_deliver", skb=skb)
            return
        for s in socks[1:]:
            self._queue_rcv_skb(s, skb.clone())
        self._queue_rcv_skb(socks[0], skb)

    def _queue_rcv_skb(self, s: UdpSock, skb: SkBuff) -> None:
        """udp_queue_rcv_skb(): a GRO skb for a socket that did not ask for UDP_GRO
        (udp_unexpected_gso) is split back into its datagrams, each queued on its own."""
        if not (skb.gso_size and skb.gso_type & SKB_GSO_UDP_L4 and not s.gro_enabled):
            self._queue_rcv_one_skb(s, skb)
            return
        try:
            segs = udp_rcv_segment(skb)
        except GsoError:
            # udp_rcv_segment(): every segment counts as a drop of the socket.
            n = skb.gso_segs
            s.drops += n
            self._sk_mib(s).add("InErrors", n)
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "udp_queue_rcv_skb", skb=skb)
            return
        for seg in segs:
            self._queue_rcv_one_skb(s, seg)

    def _sk_mib(self, s: UdpSock) -> MibGroup:
        return self._proto_mib(s.protocol)

    def _sk_drop(self, s: UdpSock, reason: SkbDropReason, where: str, skb: SkBuff) -> None:
        """udp_queue_rcv_one_skb()'s drop: InErrors and sk_drops."""
        self._sk_mib(s).inc("InErrors")
        s.drops += 1
        self.drops.drop(reason, where, skb=skb)

    def _queue_rcv_one_skb(self, s: UdpSock, skb: SkBuff) -> None:
        """udp_queue_rcv_one_skb(): UDP-Lite's coverage demands (UDPLITE_RECV_CSCOV), the
        checksum verified first when a filter will read the data, the socket filter
        (which may trim), ipv4_pktinfo_prepare(), then __udp_queue_rcv_skb()."""
        if s.pcflag & UDPLITE_RECV_CC:
            cscov, partial = udp_skb_cb(skb.cb)
            # RFC 3828 3.3: a receiver may refuse coverage below what it asked for; 0
            # asked for full coverage.
            if partial and (s.pcrlen == 0 or cscov < s.pcrlen):
                return self._sk_drop(s, SkbDropReason.NOT_SPECIFIED, "udp_queue_rcv_one_skb", skb)
        f = s.sk_filter
        if f is not None:
            if not udp_lib_checksum_complete(skb):
                self._sk_mib(s).inc("InCsumErrors")
                return self._sk_drop(s, SkbDropReason.UDP_CSUM, "udp_queue_rcv_one_skb", skb)
            # __skb_checksum_complete() sets skb->csum_valid: a trimmed datagram is not
            # checked again when it is copied out.
            skb.ip_summed = CHECKSUM_UNNECESSARY
            if not sk_filter_trim_cap(f, skb, UDP_HLEN):
                return self._sk_drop(s, SkbDropReason.SOCKET_FILTER, "sk_filter_trim_cap", skb)
        self.trace(skb, "sock_queue_rcv_skb")
        _ipv4_pktinfo_prepare(s, skb)
        self._enqueue_schedule_skb(s, skb)

    def _enqueue_schedule_skb(self, s: UdpSock, skb: SkBuff) -> None:
        """__udp_enqueue_schedule_skb(): charge truesize to sk_rmem_alloc; past sk_rcvbuf
        the datagram is dropped (RcvbufErrors, InErrors), but an empty queue takes any
        one skb (6.18's "if (rmem) goto drop"; before it, while rmem <= rcvbuf). Then
        udp_rmem_schedule(): the pages for it from udp_mem, else MemErrors. Queued, the
        skb records sk_drops for SO_RXQ_OVFL and wakes a reader."""
        size = skb.truesize
        rmem = s.rmem_alloc
        if rmem + size > s.rcvbuf and (s.rcvbuf > 0x3FFFFFFF or rmem):
            self._sk_mib(s).inc("RcvbufErrors")
            return self._sk_drop(s, SkbDropReason.SOCKET_RCVBUFF, "__udp_queue_rcv_skb", skb)
        if not self._rmem_schedule(s, size):
            self._sk_mib(s).inc("MemErrors")
            return self._sk_drop(s, SkbDropReason.PROTO_MEM, "__udp_queue_rcv_skb", skb)
        s.forward_alloc -= size
        s.rmem_alloc = rmem + size
        # sock_skb_set_dropcount()
        _U32.pack_into(skb.cb, SOCK_SKB_CB_OFF, s.drops & 0xFFFFFFFF if s.rxq_ovfl else 0)
        s.receive_queue.append(skb)
        if (ledger := self.drops.flows) is not None:
            ledger.delivered(skb)
        if not s.dead:
            s.data_ready()

    def _rmem_schedule(self, s: UdpSock, size: int) -> bool:
        """udp_rmem_schedule() → __sk_mem_schedule(SK_MEM_RECV): whole pages from udp_mem
        for what sk_forward_alloc lacks. Within udp_mem[0] always; past udp_mem[2]
        never; between them only while the socket holds less than udp_rmem_min (UDP has
        no memory-pressure state to ask further)."""
        delta = size - s.forward_alloc
        if delta <= 0:
            return True
        pages = -(-delta // PAGE_SIZE)
        low, _pressure, high = self.sysctl.get_tuple("net.ipv4.udp_mem")
        allocated = self.memory_allocated + pages
        if allocated > low and (
            allocated > high or s.rmem_alloc >= self.sysctl.get_int("net.ipv4.udp_rmem_min")
        ):
            return False
        self.memory_allocated = allocated
        s.forward_alloc += pages * PAGE_SIZE
        return True

    def udp_rmem_release(self, s: UdpSock, size: int, partial: int = 1) -> None:
        """udp_rmem_release(): the skb's truesize leaves sk_rmem_alloc and goes back to
        sk_forward_alloc, whose whole pages (but the last, while partial) return to
        udp_mem."""
        s.rmem_alloc -= size
        s.forward_alloc += size
        amt = (s.forward_alloc - partial) & ~(PAGE_SIZE - 1) if s.forward_alloc >= partial else 0
        s.forward_alloc -= amt
        self.memory_allocated -= amt // PAGE_SIZE


def _ipv4_pktinfo_prepare(s: UdpSock, skb: SkBuff) -> None:
    """ipv4_pktinfo_prepare(), when a datagram is queued: for a socket with IP_PKTINFO on
    then, PKTINFO_SKB_CB (over IPCB's first 8 bytes) gets the arrival interface (for a
    packet looped back through lo, the device it was sent from: inet_iif) and fib_compute_spec_dst(), which
    IP left in IPCB; otherwise zeros. A later IP_PKTINFO cmsg reads what is here."""
    cb = skb.cb
    if s.inet.cmsg_flags & IP_CMSG_PKTINFO and skb.dst is not None:
        parm = ipcb(cb)
        ifindex = skb.skb_iif if parm.iif == LOOPBACK_IFINDEX else parm.iif
        cb[0:8] = struct.pack("=i", ifindex) + parm.spec_dst.to_bytes(4, "big")
    else:
        cb[0:8] = bytes(8)
