"""A host's UDP layer without gRPC: the socket table, udp_rcv, udp_sendmsg and
udp_recvmsg (net/ipv4/udp.c, net/ipv4/datagram.c).

The IP layer is reached through two narrow callables: `route_output` (an async
ip_route_output_key that raises OSError) and the `to_ip` list of skbs the caller ships
down as a batch. udp_rcv() takes skbs the IP layer delivered, data at the UDP header.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable

from services.core import errno
from services.core.checksum import csum_partial, csum_tcpudp_magic
from services.core.datagram import Datagram
from services.core.dropreason import DropStats, SkbDropReason
from services.core.gso import GsoError, udp_rcv_segment
from services.core.skbuff import (
    CHECKSUM_PARTIAL,
    CHECKSUM_UNNECESSARY,
    SKB_GSO_UDP_L4,
    Dst,
    IpCork,
    SkBuff,
    alloc_skb,
)
from services.core.snmp import SnmpMib
from services.core.sockaddr import AF_INET, AF_UNSPEC, SOCKADDR_IN_LEN, parse_sockaddr_in
from services.core.sysctl import Sysctl
from services.core.trace import Tracer
from services.core.wire.ipv4 import IPPROTO_UDP, Ipv4Packet, ipv4_is_lbcast, ipv4_is_multicast
from services.core.wire.udp import UDP_HLEN, UdpPacket, UdpRepr
from services.udp.sock import (
    SOCK_BINDADDR_LOCK,
    SOCK_BINDPORT_LOCK,
    TCP_CLOSE,
    TCP_ESTABLISHED,
    CachedRoute,
    UdpSock,
)
from services.udp.table import UdpTable

# include/linux/socket.h
MSG_OOB = 0x1
MSG_PEEK = 0x2
MSG_TRUNC = 0x20
MSG_DONTWAIT = 0x40

IP_PMTUDISC_DONT = 0
IP_PMTUDISC_WANT = 1
RTN_LOCAL = 2
RTN_BROADCAST = 3
RTCF_BROADCAST = 0x10000000
# MAX_HEADER: the headroom sock_alloc_send_skb leaves for link and network headers.
MAX_HEADER = 128
IPV4_HLEN = 20
IP_MAX_MTU = 0xFFFF
# include/linux/skbuff.h: datagrams up to this length get their checksum verified on
# receipt rather than when copied to the user.
CHECKSUM_BREAK = 76

RouteOutput = Callable[[int, int, int], Awaitable[tuple[Dst, int, int]]]


class UdpLayer:
    def __init__(self, hostname: str, sysctl: Sysctl, route_output: RouteOutput) -> None:
        self.sysctl = sysctl
        self.route_output = route_output
        self.table = UdpTable()
        self.socks: dict[int, UdpSock] = {}
        self.mib = SnmpMib()
        self.drops = DropStats()
        self.trace = Tracer("udp", hostname)
        self.to_ip: list[SkBuff] = []
        self._ids = itertools.count(1)
        self.fib_genid = 0

    def _port_range(self) -> tuple[int, int]:
        low, high = self.sysctl.get_tuple("net.ipv4.ip_local_port_range")
        return low, high

    def sock(self, sk: int) -> UdpSock:
        s = self.socks.get(sk)
        if s is None:
            raise errno.kernel_error(errno.EBADF, f"no socket {sk}")
        return s

    # Creation and release.

    def create(self, protocol: int, owner_pid: int, owner_fd: int) -> UdpSock:
        """inet_create() + udp_init_sock() for SOCK_DGRAM/IPPROTO_UDP."""
        if protocol != IPPROTO_UDP:
            raise errno.kernel_error(errno.EPROTONOSUPPORT, f"protocol {protocol}")
        pmtudisc = IP_PMTUDISC_DONT if self.sysctl.get_int("net.ipv4.ip_no_pmtu_disc") else IP_PMTUDISC_WANT
        s = UdpSock(
            sk=next(self._ids),
            protocol=protocol,
            rcvbuf=self.sysctl.get_int("net.core.rmem_default"),
            sndbuf=self.sysctl.get_int("net.core.wmem_default"),
            pmtudisc=pmtudisc,
            owner_pid=owner_pid,
            owner_fd=owner_fd,
        )
        self.socks[s.sk] = s
        return s

    def release(self, s: UdpSock) -> None:
        """udp_lib_close() → sk_common_release(): unhash, free the queue, wake readers."""
        self.table.unhash(s)
        self.socks.pop(s.sk, None)
        s.dead = True
        s.receive_queue.clear()
        s.rmem_alloc = 0
        s.wake_all()

    # Binding and connecting.

    async def _addr_type(self, addr: int) -> int:
        try:
            dst, _, _ = await self.route_output(addr, 0, 0)
        except OSError:
            return 0
        return dst.rt_type

    async def bind(self, s: UdpSock, addr: int, port: int) -> None:
        """__inet_bind() → udp_v4_get_port()."""
        # inet_addr_type_table(): a unicast address must be one of ours (ip_nonlocal_bind
        # is 0); multicast and the limited broadcast address may always be bound.
        special = ipv4_is_multicast(addr) or ipv4_is_lbcast(addr)
        if addr and not special and await self._addr_type(addr) not in (RTN_LOCAL, RTN_BROADCAST):
            raise errno.kernel_error(errno.EADDRNOTAVAIL)
        if s.state != TCP_CLOSE or s.num:
            raise errno.kernel_error(errno.EINVAL)
        s.rcv_saddr = s.saddr = addr
        if special:
            s.saddr = 0  # multicast and broadcast binds send from the route's source
        try:
            self.table.get_port(s, port, self._port_range())
        except OSError:
            # __inet_bind(): a failed get_port leaves the socket unbound.
            s.rcv_saddr = s.saddr = 0
            raise
        if addr:
            s.userlocks |= SOCK_BINDADDR_LOCK
        if port:
            s.userlocks |= SOCK_BINDPORT_LOCK
        s.dst_cache = None

    def autobind(self, s: UdpSock) -> None:
        """inet_autobind(): a socket that sends or connects unbound gets an ephemeral port."""
        if not s.num:
            try:
                self.table.get_port(s, 0, self._port_range())
            except OSError:
                # inet_autobind() answers a full port range with EAGAIN (bind() says
                # EADDRINUSE).
                raise errno.kernel_error(errno.EAGAIN) from None

    async def connect(self, s: UdpSock, name: bytes) -> None:
        """inet_dgram_connect() → __ip4_datagram_connect()."""
        # inet_dgram_connect() autobinds before __ip4_datagram_connect() checks the
        # sockaddr, so a connect that fails on it still leaves the socket bound.
        self.autobind(s)
        if len(name) < SOCKADDR_IN_LEN:
            raise errno.kernel_error(errno.EINVAL)
        family, daddr, dport = parse_sockaddr_in(name)
        if family != AF_INET:
            raise errno.kernel_error(errno.EAFNOSUPPORT)
        dst, saddr, genid = await self.route_output(daddr, s.saddr, 0)
        if dst.flags & RTCF_BROADCAST and not s.broadcast:
            raise errno.kernel_error(errno.EACCES)
        if not daddr:
            daddr = dst.nexthop
        if not s.saddr:
            s.saddr = saddr
        if not s.rcv_saddr:
            s.rcv_saddr = saddr  # the rehash: the socket now answers on saddr only
        s.daddr, s.dport = daddr, dport
        s.state = TCP_ESTABLISHED
        s.inet_id = random.getrandbits(16)  # get_random_u16()
        s.dst_cache = CachedRoute(dst, saddr, genid)

    def disconnect(self, s: UdpSock) -> None:
        """__udp_disconnect(): what the user did not lock with bind() is undone."""
        s.state = TCP_CLOSE
        s.daddr = s.dport = 0
        if not s.userlocks & SOCK_BINDADDR_LOCK:
            s.rcv_saddr = s.saddr = 0
        if not s.userlocks & SOCK_BINDPORT_LOCK:
            self.table.unhash(s)
            s.num = 0
        s.dst_cache = None

    # Transmit.

    async def sendmsg(self, s: UdpSock, data: bytes, name: bytes, flags: int, trace: bool) -> int:
        """udp_sendmsg() for the uncorked case, the checks in the kernel's order."""
        # inet_send_prepare(): inet_sendmsg autobinds before udp_sendmsg runs, so a send
        # that udp_sendmsg refuses still leaves the socket bound.
        self.autobind(s)
        length = len(data)
        if length > 0xFFFF:
            raise errno.kernel_error(errno.EMSGSIZE)
        if flags & MSG_OOB:
            raise errno.kernel_error(errno.EOPNOTSUPP)
        if name:
            if len(name) < SOCKADDR_IN_LEN:
                raise errno.kernel_error(errno.EINVAL)
            family, daddr, dport = parse_sockaddr_in(name)
            if family not in (AF_INET, AF_UNSPEC):
                raise errno.kernel_error(errno.EAFNOSUPPORT)
            if dport == 0:
                raise errno.kernel_error(errno.EINVAL)
            connected = False
        else:
            if s.state != TCP_ESTABLISHED:
                raise errno.kernel_error(errno.EDESTADDRREQ)
            daddr, dport = s.daddr, s.dport
            connected = True
        route = s.dst_cache if connected else None
        if route is None or route.genid != self.fib_genid:
            # ENETUNREACH propagates; OutNoRoutes is counted by the IP layer's lookup.
            dst, saddr, genid = await self.route_output(daddr, s.saddr, 0)
            if dst.flags & RTCF_BROADCAST and not s.broadcast:
                raise errno.kernel_error(errno.EACCES)
            route = CachedRoute(dst, saddr, genid)
            if connected:
                s.dst_cache = route
        if not daddr:
            daddr = route.dst.nexthop
        # __ip_append_data(): a datagram larger than an IP packet can carry.
        if UDP_HLEN + length > IP_MAX_MTU - IPV4_HLEN:
            raise errno.kernel_error(errno.EMSGSIZE)
        skb = alloc_skb(UDP_HLEN + length, MAX_HEADER)
        if trace:
            skb.trace = []
        self.trace(skb, "udp_sendmsg")
        skb.sk = s.sk
        skb.reset_transport_header()
        skb.put(UDP_HLEN)
        skb.put_data(data)
        self._udp_send_skb(skb, s, route, daddr, dport)
        return length

    def _udp_send_skb(self, skb: SkBuff, s: UdpSock, route: CachedRoute, daddr: int, dport: int) -> None:
        """udp_send_skb(): the UDP header and its software checksum (CHECKSUM_NONE)."""
        saddr = route.saddr
        UdpRepr(src_port=s.num, dst_port=dport).emit(
            skb.head, skb.data, skb.len - UDP_HLEN, saddr, daddr, checksum=True
        )
        # ip_select_ident_segs(): a socket with inet_daddr set (connected) numbers its
        # datagrams from its own inet_id, whether or not this send named a destination.
        own_id = s.state == TCP_ESTABLISHED
        if own_id:
            s.inet_id = (s.inet_id + 1) & 0xFFFF
        skb.cork = IpCork(
            saddr=saddr,
            daddr=daddr,
            protocol=IPPROTO_UDP,
            pmtudisc=s.pmtudisc,
            inet_id=s.inet_id if own_id else None,
        )
        skb.dst = route.dst
        self.mib.udp.inc("OutDatagrams")
        self.to_ip.append(skb)

    # Receive.

    def udp_rcv(self, skb: SkBuff) -> None:
        """__udp4_lib_rcv(): data at the UDP header, the IP header at network_header."""
        self.trace(skb, "udp_rcv")
        mib = self.mib.udp
        if not skb.may_pull(UDP_HLEN):
            # __udp4_lib_rcv(): "goto drop" with drop_reason still NOT_SPECIFIED; only a
            # bad length field is short_packet (PKT_TOO_SMALL).
            return self._rcv_drop(SkbDropReason.NOT_SPECIFIED)
        uh = UdpPacket(skb.linear())
        ulen = uh.length
        if ulen > skb.len or ulen < UDP_HLEN:
            return self._rcv_drop(SkbDropReason.PKT_TOO_SMALL)
        skb.trim(ulen)
        iph = Ipv4Packet(memoryview(skb.head)[skb.network_header : skb.transport_header])
        saddr, daddr = iph.src, iph.dst
        if uh.checksum == 0:
            skb.ip_summed = CHECKSUM_UNNECESSARY  # udp4_csum_init(): no checksum sent
        elif not _csum_unnecessary(skb) and skb.len <= CHECKSUM_BREAK:
            # __skb_checksum_validate_complete(): a datagram of at most CHECKSUM_BREAK
            # bytes is verified now, in udp4_csum_init, not deferred to udp_recvmsg.
            if not self._checksum_ok(skb, saddr, daddr):
                mib.inc("InCsumErrors")
                return self._rcv_drop(SkbDropReason.UDP_CSUM)
            skb.ip_summed = CHECKSUM_UNNECESSARY  # skb->csum_valid
        self.trace(skb, "__udp4_lib_lookup")
        dst = skb.dst
        if dst is not None and dst.rt_type == RTN_BROADCAST:
            return self._mcast_deliver(skb, saddr, uh.src_port, daddr, uh.dst_port)
        s = self.table.lookup(saddr, uh.src_port, daddr, uh.dst_port, skb.skb_iif)
        if s is not None:
            self._queue_rcv_skb(s, skb)
            return
        # No socket: a bad checksum is an error, a good one is NoPorts.
        if not self._checksum_ok(skb, saddr, daddr):
            mib.inc("InCsumErrors")
            return self._rcv_drop(SkbDropReason.UDP_CSUM)
        mib.inc("NoPorts")
        self.drops.drop(SkbDropReason.NO_SOCKET, "__udp4_lib_rcv")

    def _rcv_drop(self, reason: SkbDropReason) -> None:
        self.mib.udp.inc("InErrors")
        self.drops.drop(reason, "__udp4_lib_rcv")

    def _mcast_deliver(self, skb: SkBuff, saddr: int, sport: int, daddr: int, dport: int) -> None:
        """__udp4_lib_mcast_deliver(): a copy to every socket bound to the port on the
        broadcast address or the wildcard."""
        matches = [
            s
            for s in self.table
            if s.num == dport
            and s.rcv_saddr in (0, daddr)
            and (not s.daddr or s.daddr == saddr)
            and (not s.dport or s.dport == sport)
        ]
        if not matches:
            # No listener: IgnoredMulti (not NoPorts, no ICMP), and a plain kfree_skb().
            self.mib.udp.inc("IgnoredMulti")
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "__udp4_lib_mcast_deliver")
            return
        for i, s in enumerate(matches):
            self._queue_rcv_skb(s, skb if i == len(matches) - 1 else skb.clone())

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
            self.mib.udp.add("InErrors", n)
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "udp_queue_rcv_skb")
            return
        for seg in segs:
            self._queue_rcv_one_skb(s, seg)

    def _queue_rcv_one_skb(self, s: UdpSock, skb: SkBuff) -> None:
        """__udp_enqueue_schedule_skb(): charge truesize to sk_rmem_alloc; an empty queue
        takes any one skb, past sk_rcvbuf the datagram is dropped (RcvbufErrors,
        InErrors). 6.18 accepts the overshoot only into an empty queue ("if (rmem) goto
        drop"); before it, while rmem <= rcvbuf."""
        self.trace(skb, "sock_queue_rcv_skb")
        size = skb.truesize
        rmem = s.rmem_alloc
        if rmem + size > s.rcvbuf and (s.rcvbuf > 0x3FFFFFFF or rmem):
            s.drops += 1
            self.mib.udp.inc("RcvbufErrors")
            self.mib.udp.inc("InErrors")
            self.drops.drop(SkbDropReason.SOCKET_RCVBUFF, "__udp_queue_rcv_skb")
            return
        s.rmem_alloc = rmem + size
        s.receive_queue.append(skb)
        s.data_ready()

    def _checksum_ok(self, skb: SkBuff, saddr: int, daddr: int) -> bool:
        """udp_lib_checksum_complete() == 0."""
        if _csum_unnecessary(skb):
            return True
        seg = skb.linear()
        return csum_tcpudp_magic(saddr, daddr, len(seg), IPPROTO_UDP, csum_partial(seg)) == 0

    async def recvmsg(self, s: UdpSock, length: int, flags: int, timeout_ns: int) -> Datagram:
        """udp_recvmsg(): the first datagram, waiting up to timeout_ns (negative: no limit)
        unless MSG_DONTWAIT. A datagram whose checksum fails is dropped here, where the
        kernel verifies it, and the next one is taken."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_ns < 0 else loop.time() + timeout_ns / 1e9
        while True:
            while not s.receive_queue:
                if s.dead:
                    raise errno.kernel_error(errno.EBADF)
                if flags & MSG_DONTWAIT or timeout_ns == 0:
                    raise errno.kernel_error(errno.EAGAIN)
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise errno.kernel_error(errno.EAGAIN)
                w: asyncio.Future[None] = loop.create_future()
                s.waiters.append(w)
                try:
                    await asyncio.wait_for(w, remaining)
                except TimeoutError:
                    raise errno.kernel_error(errno.EAGAIN) from None
                except asyncio.CancelledError:
                    # Woken (sk_data_ready's exclusive wake-up) but abandoned: pass the
                    # wake-up on, or the next reader sleeps with a datagram queued.
                    if w.done() and not w.cancelled() and s.receive_queue:
                        s.data_ready()
                    raise
                finally:
                    if not w.done():
                        w.cancel()
            skb = s.receive_queue[0]
            iph = Ipv4Packet(memoryview(skb.head)[skb.network_header : skb.transport_header])
            if not self._checksum_ok(skb, iph.src, iph.dst):
                # csum_copy_err: __sk_queue_drop_skb() (counted in sk_drops), then
                # "goto try_again", which takes the next datagram even with MSG_DONTWAIT.
                s.receive_queue.popleft()
                s.rmem_alloc -= skb.truesize
                s.drops += 1
                self.mib.udp.inc("InCsumErrors")
                self.mib.udp.inc("InErrors")
                self.drops.drop(SkbDropReason.UDP_CSUM, "udp_recvmsg")
                continue
            peeking = bool(flags & MSG_PEEK)
            if not peeking:
                s.receive_queue.popleft()
                s.rmem_alloc -= skb.truesize
                self.mib.udp.inc("InDatagrams")
                if s.receive_queue:
                    s.data_ready()  # let the next waiting reader take the next one
            self.trace(skb, "udp_recvmsg")
            # A UDP_GRO socket gets a GRO skb whole: its payload is in frags too.
            payload = (memoryview(skb.payload()) if skb.data_len else skb.linear())[UDP_HLEN:]
            ulen = len(payload)
            copied = min(length, ulen)
            msg_flags = MSG_TRUNC if copied < ulen else 0
            uh = UdpPacket(skb.linear())
            return Datagram(
                data=bytes(payload[:copied]),
                ulen=ulen,
                msg_flags=msg_flags,
                saddr=iph.src,
                sport=uh.src_port,
                daddr=iph.dst,
                tstamp=skb.tstamp,
                ttl=iph.ttl,
                tos=iph.tos,
                mark=skb.mark,
                ifindex=skb.skb_iif,
                trace=skb.trace or [],
            )


def _csum_unnecessary(skb: SkBuff) -> bool:
    """skb_csum_unnecessary(): a CHECKSUM_PARTIAL skb (a GRO skb, or a segment split
    from one) carries a checksum GRO verified, as CHECKSUM_UNNECESSARY does."""
    return skb.ip_summed in (CHECKSUM_UNNECESSARY, CHECKSUM_PARTIAL)
