"""A host's UDP layer without gRPC: the socket table, udp_rcv, udp_sendmsg and
udp_recvmsg (net/ipv4/udp.c, net/ipv4/datagram.c).

The IP layer is reached through narrow interfaces: `route_output` (an async
ip_route_output_key that raises OSError), the `to_ip` list of skbs and the `icmp_out`
list of ICMP errors to send (icmp_send) the caller ships down as a batch. udp_rcv()
takes skbs the IP layer delivered, data at the UDP header; udp_err() takes the ICMP
errors IP received about datagrams sent from here. The socket's IP half (options,
cmsgs, error queue) is services.ip.sockglue, as udp.c calls ip_sockglue.c.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.core import errno
from services.core.checksum import csum_partial, csum_tcpudp_magic
from services.core.datagram import Datagram
from services.core.dropreason import DropStats, SkbDropReason
from services.core.gso import GsoError, udp_rcv_segment
from services.core.ipcb import ipcb
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
from services.core.wire.icmp import (
    ICMP_DEST_UNREACH,
    ICMP_ERR_CONVERT,
    ICMP_FRAG_NEEDED,
    ICMP_PARAMETERPROB,
    ICMP_PORT_UNREACH,
    ICMP_REDIRECT,
    ICMP_SOURCE_QUENCH,
    NR_ICMP_UNREACH,
)
from services.core.wire.ipv4 import IPPROTO_UDP, Ipv4Packet, ipv4_is_lbcast, ipv4_is_multicast
from services.core.wire.udp import UDP_HLEN, UdpPacket, UdpRepr
from services.ip import sockglue
from services.ip.cork import InetCork, ip_append_check, ip_cork_fragsize
from services.ip.cork import dst_mtu as route_mtu
from services.ip.fib import RTN_BROADCAST, RTN_LOCAL, RTN_MULTICAST
from services.ip.options import ip_options_undo_bytes
from services.ip.route import RTCF_BROADCAST
from services.ip.sockglue import (
    IP_CMSG_PKTINFO,
    SOL_IP,
    SOL_SOCKET,
    SOL_UDP,
    InetOpts,
    Ipcm,
    MsgControl,
    RecvMsg,
    SockoptEffect,
    for_each_cmsghdr,
)
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
MSG_PROBE = 0x10
MSG_TRUNC = 0x20
MSG_DONTWAIT = 0x40
MSG_ERRQUEUE = 0x2000
MSG_MORE = 0x8000

IP_PMTUDISC_DONT = 0
IP_PMTUDISC_WANT = 1
# MAX_HEADER: the headroom sock_alloc_send_skb leaves for link and network headers.
MAX_HEADER = 128
IPV4_HLEN = 20
# include/linux/skbuff.h: datagrams up to this length get their checksum verified on
# receipt rather than when copied to the user.
CHECKSUM_BREAK = 76
# include/uapi/linux/netdevice.h: ipv4_pktinfo_prepare() reports the device a looped
# back packet was sent from instead.
LOOPBACK_IFINDEX = 1
# include/uapi/asm-generic/socket.h, include/uapi/linux/udp.h
SO_ERROR = 4
SOL_UDPLITE = 136
UDP_CORK = 1
UDP_SEGMENT = 103
UDP_GRO = 104
# ____sys_sendmsg(): a control buffer larger than this on-stack one is sock_kmalloc'ed,
# which net.core.optmem_max bounds.
CTL_STACK_BYTES = 16 + 20
# inet->mc_ttl's default: multicast datagrams go one hop unless told otherwise.
MC_TTL_DEFAULT = 1


RouteOutput = Callable[[int, int, int], Awaitable[tuple[Dst, int, int]]]


@dataclass(slots=True)
class IcmpError:
    """An ICMP error and the packet it is about, as ip.v1.IcmpError carries it.

    Towards IP (icmp_send): the received datagram, its IP header at network_header,
    data at the UDP header as udp_rcv had it. From IP (the err_handler, udp_err): the
    ICMP message, its outer IP header at network_header, the ICMP header at
    transport_header, data at the quoted IP header, IPCB in cb."""

    skb: SkBuff
    type: int
    code: int
    info: int = 0


def udp_cmsg_send(control: bytes, ipc: Ipcm) -> bool:
    """udp_cmsg_send(): the SOL_UDP messages (UDP_SEGMENT); True when others are left for
    ip_cmsg_send()."""
    need_ip = False
    for c in for_each_cmsghdr(control):
        if c.level != SOL_UDP:
            need_ip = True
            continue
        # __udp_cmsg_send(): UDP_SEGMENT, a u16, is the only one.
        if c.type != UDP_SEGMENT or len(c.data) != 2:
            raise errno.kernel_error(errno.EINVAL)
        ipc.gso_size = struct.unpack("=H", c.data)[0]
    return need_ip


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
        # icmp_send() requests for IP: port unreachable for datagrams no socket took.
        self.icmp_out: list[IcmpError] = []
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
            inet=InetOpts(pmtudisc=pmtudisc),
            owner_pid=owner_pid,
            owner_fd=owner_fd,
        )
        self.socks[s.sk] = s
        return s

    def release(self, s: UdpSock) -> None:
        """udp_lib_close() → sk_common_release(): udp_destroy_sock() throws a corked
        datagram away (udp_flush_pending_frames), then unhash, free the queues, wake
        readers."""
        self.udp_flush_pending_frames(s)
        self.table.unhash(s)
        self.socks.pop(s.sk, None)
        s.dead = True
        s.receive_queue.clear()
        s.error_queue.clear()
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
        # ip_route_connect() looks the route up in inet->cork.fl: a corked datagram's flow
        # takes the new destination (flowi4_init_output) and the route's source, so the
        # pending data is pushed to where the socket is connected now.
        cork = s.pending
        if cork is not None:
            cork.daddr, cork.saddr, cork.dport = daddr, s.saddr, dport
        dst, saddr, genid = await self.route_output(daddr, s.saddr, 0)
        if not daddr:
            daddr = dst.nexthop
        if cork is not None:
            cork.daddr, cork.saddr = daddr, saddr
        if dst.flags & RTCF_BROADCAST and not s.broadcast:
            raise errno.kernel_error(errno.EACCES)
        if not s.saddr:
            s.saddr = saddr
        if not s.rcv_saddr:
            s.rcv_saddr = saddr  # the rehash: the socket now answers on saddr only
        s.daddr, s.dport = daddr, dport
        s.state = TCP_ESTABLISHED
        s.inet_id = random.getrandbits(16)  # get_random_u16()
        s.dst_cache = CachedRoute(dst, saddr, genid)

    def disconnect(self, s: UdpSock) -> None:
        """__udp_disconnect(): what the user did not lock with bind() is undone. A corked
        datagram stays pending with the flow it had (pushed later with inet_sport, which
        may now be 0)."""
        s.state = TCP_CLOSE
        s.daddr = s.dport = 0
        if not s.userlocks & SOCK_BINDADDR_LOCK:
            s.rcv_saddr = s.saddr = 0
        if not s.userlocks & SOCK_BINDPORT_LOCK:
            self.table.unhash(s)
            s.num = 0
        s.dst_cache = None

    # Transmit.

    async def _route(self, s: UdpSock, daddr: int, saddr: int, oif: int, connected: bool) -> CachedRoute:
        """The route of one send: a connected socket's cached one while the FIB generation
        it was looked up under is current (sk_dst_check), else ip_route_output_flow()."""
        route = s.dst_cache if connected else None
        if route is None or route.genid != self.fib_genid:
            # ENETUNREACH propagates; OutNoRoutes is counted by the IP layer's lookup.
            dst, src, genid = await self.route_output(daddr, saddr, oif)
            if dst.flags & RTCF_BROADCAST and not s.broadcast:
                raise errno.kernel_error(errno.EACCES)
            route = CachedRoute(dst, src, genid)
            if connected:
                s.dst_cache = route
        return route

    async def sendmsg(
        self, s: UdpSock, data: bytes, name: bytes, flags: int, trace: bool, control: bytes = b""
    ) -> int:
        """udp_sendmsg(), the checks in the kernel's order. A corked send (UDP_CORK on, or
        MSG_MORE) starts a datagram or appends to the one pending instead of sending; the
        first send that is neither pushes what is pending out as one datagram. Each call
        returns its own length."""
        # ____sys_sendmsg(): a control buffer is copied in (sock_kmalloc, bounded by
        # net.core.optmem_max) before inet_sendmsg runs, so this refusal autobinds nothing.
        if len(control) > CTL_STACK_BYTES and len(control) >= self.sysctl.get_int("net.core.optmem_max"):
            raise errno.kernel_error(errno.ENOBUFS)
        # inet_send_prepare(): inet_sendmsg autobinds before udp_sendmsg runs, so a send
        # that udp_sendmsg refuses still leaves the socket bound.
        self.autobind(s)
        length = len(data)
        if length > 0xFFFF:
            raise errno.kernel_error(errno.EMSGSIZE)
        if flags & MSG_OOB:
            raise errno.kernel_error(errno.EOPNOTSUPP)
        corkreq = s.corkflag or bool(flags & MSG_MORE)
        if s.pending is not None:
            # "if (up->pending) goto do_append_data": the datagram keeps the destination,
            # route and options of the send that started it; this one's msg_name and
            # control messages are not even looked at.
            self._do_append_data(s, s.pending, data, 0, flags, corkreq, trace)
            return length
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
        # ipcm_init_sk(), then the control messages: any disables the connected fast path.
        ipc = Ipcm(addr=s.saddr, priority=s.priority)
        if control:
            if udp_cmsg_send(control, ipc):
                sockglue.ip_cmsg_send(control, ipc)
            connected = False
        if ipc.gso_size:
            raise errno.kernel_error(errno.EOPNOTSUPP, "UDP GSO (UDP_SEGMENT) is not built yet")
        opt = ipc.opt if ipc.opt is not None else s.inet.opt
        saddr, faddr = ipc.addr, daddr
        if opt is not None and opt.srr:
            # A source route: the route is to its first hop.
            if not daddr:
                raise errno.kernel_error(errno.EINVAL)
            faddr = opt.faddr
            connected = False
        if ipv4_is_multicast(daddr):
            connected = False
        route = await self._route(s, faddr, saddr, ipc.oif, connected)
        # fl4_stack->daddr: where the header goes (the first hop of a source route; with
        # no destination at all, the loopback address the lookup chose).
        fl4_daddr = faddr or route.dst.nexthop
        if not daddr:
            daddr = fl4_daddr
        if flags & MSG_PROBE:
            # ip_make_skb() (corked: ip_append_data(), and then the empty sk_write_queue
            # uncorks the socket again) returns before ip_setup_cork(): nothing is built.
            return length
        # ip_setup_cork(): the route and fragsize, and the ipcm_cookie's TTL, TOS (6.18's
        # ipcm_init_sk() takes the socket's IP_TOS in, so a corked datagram keeps the
        # TOS of its first send), priority and mark. A corked datagram's flow is
        # inet->cork.fl, whose daddr is the final destination; the fast path's is
        # fl4_stack.
        cork = InetCork(
            dst=route.dst,
            fragsize=ip_cork_fragsize(s.inet.pmtudisc, route.dst),
            saddr=route.saddr,
            daddr=daddr if corkreq else fl4_daddr,
            dport=dport,
            addr=daddr,
            opt=opt if opt is not None and opt.optlen else None,
            ttl=ipc.ttl,
            tos=ipc.tos if ipc.tos != -1 else s.inet.tos,
            priority=ipc.priority,
            mark=ipc.mark,
            trace=trace,
        )
        if not corkreq:
            # The lockless fast path: ip_make_skb() on a cork of its own, then udp_send_skb().
            self._ip_append_data(s, cork, data, UDP_HLEN)
            self._udp_send_skb(s, cork, ("udp_sendmsg",))
            return length
        # "Now cork the socket to pend data."
        s.pending = cork
        self._do_append_data(s, cork, data, UDP_HLEN, flags, corkreq, trace)
        return length

    def _do_append_data(
        self,
        s: UdpSock,
        cork: InetCork,
        data: bytes,
        transhdrlen: int,
        flags: int,
        corkreq: bool,
        trace: bool,
    ) -> None:
        """udp_sendmsg()'s do_append_data: ip_append_data() onto the pending datagram (the
        UDP header's room first when it starts it). Any error throws away all that is
        pending (udp_flush_pending_frames); a send that is not corked pushes it."""
        cork.trace = cork.trace or trace
        # ip_append_data(): MSG_PROBE appends nothing and succeeds.
        if not flags & MSG_PROBE:
            try:
                self._ip_append_data(s, cork, data, transhdrlen)
            except OSError:
                self.udp_flush_pending_frames(s)
                raise
        if not corkreq:
            self.udp_push_pending_frames(s, ("udp_sendmsg", "udp_push_pending_frames"))
        # The kernel's third case, a corked send that left sk_write_queue empty (up->pending
        # = 0), is a first send with MSG_PROBE, which returned before corking.

    def _ip_append_data(self, s: UdpSock, cork: InetCork, data: bytes, transhdrlen: int) -> None:
        """__ip_append_data(): EMSGSIZE when the datagram would outgrow what its cork
        allows (with IP_RECVERR, a local error naming the flow's destination and
        inet_dport, whose ee_info is the MTU less the options); the first append (it has
        the transport header) allocates with sock_alloc_send_skb(), whose sock_error()
        returns an error ICMP left, once, instead. Later appends go into the skb's page
        frags or a plain alloc_skb(): no sock_error() there."""
        length = transhdrlen + len(data)
        mtu = ip_append_check(cork, length, s.inet.pmtudisc)
        if mtu is not None:
            if s.inet.recverr:
                s.queue_err_skb(sockglue.ip_local_error(errno.EMSGSIZE, cork.daddr, s.dport, mtu))
            raise errno.kernel_error(errno.EMSGSIZE)
        if transhdrlen:
            err = s.sock_error()
            if err:
                raise errno.kernel_error(err)
        cork.length += length
        cork.queue += data

    def udp_flush_pending_frames(self, s: UdpSock) -> None:
        """udp_flush_pending_frames() → ip_flush_pending_frames(): the pending datagram is
        thrown away (nothing is counted) and the socket uncorked."""
        s.pending = None

    def udp_push_pending_frames(self, s: UdpSock, steps: tuple[str, ...]) -> None:
        """udp_push_pending_frames(): ip_finish_skb() makes the pending data one datagram
        and udp_send_skb() sends it; with nothing pending, nothing is sent."""
        cork, s.pending = s.pending, None
        if cork is not None:
            self._udp_send_skb(s, cork, steps)

    def _udp_send_skb(self, s: UdpSock, cork: InetCork, steps: tuple[str, ...]) -> None:
        """__ip_make_skb() + udp_send_skb(): one skb of the UDP header and all the data
        appended, the header's source port the socket's now (inet_sport: 0 if a corked
        socket was disconnected meanwhile), its destination port and the software
        checksum (CHECKSUM_NONE) from the flow (whose daddr is, on the fast path, a
        source route's first hop). What __ip_make_skb reads from the socket when it runs
        (IP_TTL unless the cork has a TTL, IP_MTU_DISCOVER for DF, whether it is
        connected for the IP ID) is read here, at push time.

        A corked datagram with a source route differs from the kernel: its flow's daddr
        is the final destination, which ip_copy_addrs() puts in 6.18's header (a capture
        on lo shows it), while the IP layer here puts the first hop there, as for an
        uncorked one. The checksum is the kernel's either way."""
        skb = alloc_skb(UDP_HLEN + len(cork.queue), MAX_HEADER)
        if cork.trace:
            skb.trace = []
        for step in steps:
            self.trace(skb, step)
        skb.sk = s.sk
        skb.mark = cork.mark
        skb.priority = cork.priority
        skb.reset_transport_header()
        skb.put(UDP_HLEN)
        skb.put_data(bytes(cork.queue))
        UdpRepr(src_port=s.num, dst_port=cork.dport).emit(
            skb.head, skb.data, skb.len - UDP_HLEN, cork.saddr, cork.daddr, checksum=True
        )
        ttl = cork.ttl
        if not ttl:
            # __ip_make_skb(): a multicast route takes mc_ttl, any other the socket's
            # IP_TTL (ip_select_ttl); 0 leaves the route's hop limit to IP.
            if cork.dst.rt_type == RTN_MULTICAST:
                ttl = MC_TTL_DEFAULT
            elif s.inet.uc_ttl >= 0:
                ttl = s.inet.uc_ttl
        # The options go down in the form setsockopt takes, IPCB left empty: IP compiles
        # and builds them (ip_options_from_cork, ip_options_build), putting the final
        # destination (cork->addr) in a source route's last slot and the first hop in the
        # header.
        opt = cork.opt
        options = ip_options_undo_bytes(opt) if opt is not None else b""
        # ip_select_ident_segs(): a socket with inet_daddr set (connected) numbers its
        # datagrams from its own inet_id, whether or not this send named a destination.
        own_id = s.state == TCP_ESTABLISHED
        if own_id:
            s.inet_id = (s.inet_id + 1) & 0xFFFF
        skb.cork = IpCork(
            saddr=cork.saddr,
            daddr=cork.addr if opt is not None and opt.srr else cork.daddr,
            protocol=IPPROTO_UDP,
            ttl=ttl,
            tos=cork.tos,
            pmtudisc=s.inet.pmtudisc,
            options=options,
            inet_id=s.inet_id if own_id else None,
        )
        skb.dst = cork.dst
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
        # icmp_send(skb, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0): IP builds and sends it.
        # (Broadcasts took the _mcast_deliver path above and never get here.)
        self.icmp_out.append(IcmpError(skb, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0))
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
        _ipv4_pktinfo_prepare(s, skb)
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
        """udp_recvmsg() for a caller that wants the datagram alone (no cmsg room)."""
        return await self.udp_recvmsg(s, length, flags, timeout_ns)

    async def udp_recvmsg(
        self, s: UdpSock, length: int, flags: int, timeout_ns: int, controllen: int = 0
    ) -> RecvMsg:
        """udp_recvmsg(): the first datagram, waiting up to timeout_ns (negative: no limit)
        unless MSG_DONTWAIT, with the cmsgs that fit in `controllen` bytes. A pending
        socket error is returned first, once (__skb_recv_udp's sock_error). A datagram
        whose checksum fails is dropped here, where the kernel verifies it, and the next
        one is taken. MSG_ERRQUEUE reads the error queue instead (ip_recv_error)."""
        if flags & MSG_ERRQUEUE:
            return self._recv_error(s, length, controllen)
        loop = asyncio.get_running_loop()
        deadline = None if timeout_ns < 0 else loop.time() + timeout_ns / 1e9
        while True:
            while True:
                err = s.sock_error()
                if err:
                    raise errno.kernel_error(err)
                if s.receive_queue:
                    break
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
                    # Woken (sk_data_ready's or sk_error_report's exclusive wake-up) but
                    # abandoned: pass the wake-up on, or the next reader sleeps with a
                    # datagram or an error waiting.
                    if w.done() and not w.cancelled() and (s.receive_queue or s.sk_err):
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
            msg = MsgControl(controllen)
            # sock_recv_cmsgs() (timestamps, SO_MARK...) comes first; then udp_cmsg_recv()
            # for a UDP_GRO socket, then ip_cmsg_recv_offset().
            if s.gro_enabled and skb.gso_type & SKB_GSO_UDP_L4:
                msg.put(SOL_UDP, UDP_GRO, struct.pack("=i", skb.gso_size))
            if s.inet.cmsg_flags:
                nh = skb.network_header
                sockglue.ip_cmsg_recv_offset(
                    msg,
                    s.inet.cmsg_flags,
                    skb.cb,
                    skb.head[nh : skb.transport_header],
                    skb.head[skb.transport_header : skb.transport_header + 4],
                    sockglue.ip_retopts(skb.head[nh : skb.transport_header], skb.cb),
                )
            return RecvMsg(
                data=bytes(payload[:copied]),
                ulen=ulen,
                msg_flags=msg_flags | msg.flags,
                saddr=iph.src,
                sport=uh.src_port,
                daddr=iph.dst,
                tstamp=skb.tstamp,
                ttl=iph.ttl,
                tos=iph.tos,
                mark=skb.mark,
                ifindex=skb.skb_iif,
                trace=skb.trace or [],
                control=msg.control(),
            )

    def _recv_error(self, s: UdpSock, length: int, controllen: int) -> RecvMsg:
        """ip_recv_error(): EAGAIN when the error queue is empty; never waits."""
        serr = s.dequeue_err_skb()
        if serr is None:
            raise errno.kernel_error(errno.EAGAIN)
        return sockglue.ip_recv_error(serr, length, controllen, s.inet.cmsg_flags)

    # ICMP errors.

    def udp_err(self, err: IcmpError) -> None:
        """__udp4_lib_err(): an ICMP error about a datagram sent from here reaches the
        socket that sent it (looked up by the quoted headers, reversed): its sk_err, and
        with IP_RECVERR an entry on its error queue."""
        skb = err.skb
        quoted = skb.linear()
        if len(quoted) < IPV4_HLEN or len(quoted) < (quoted[0] & 0x0F) * 4 + UDP_HLEN:
            # icmp_socket_deliver() pulls the quoted headers before calling us.
            return
        iph = Ipv4Packet(quoted)
        uh = UdpPacket(quoted[iph.ihl * 4 :])
        s = self.table.lookup(iph.dst, uh.dst_port, iph.src, uh.src_port, skb.skb_iif)
        if s is None:
            # No socket: the kernel counts ICMP_MIB_INERRORS (IcmpInErrors, IP's MIB).
            self.mib.icmp.inc("InErrors")
            return
        harderr = False
        if err.type == ICMP_SOURCE_QUENCH or err.type == ICMP_REDIRECT:
            # Ignored (a redirect updates the route, which is IP's).
            return
        if err.type == ICMP_PARAMETERPROB:
            eno, harderr = errno.EPROTO, True
        elif err.type == ICMP_DEST_UNREACH:
            if err.code == ICMP_FRAG_NEEDED:
                # Path MTU discovery: the route's new MTU is IP's to learn
                # (ipv4_sk_update_pmtu); the socket hears of it unless it never sets DF.
                if s.inet.pmtudisc == IP_PMTUDISC_DONT:
                    return
                eno, harderr = errno.EMSGSIZE, True
            elif err.code <= NR_ICMP_UNREACH:
                eno, harderr = ICMP_ERR_CONVERT[err.code]
            else:
                eno = errno.EHOSTUNREACH
        else:
            # ICMP_TIME_EXCEEDED and any other type.
            eno = errno.EHOSTUNREACH
        # RFC 1122 4.1.3.3: errors are passed back to the application.
        if not s.inet.recverr:
            if not harderr or s.state != TCP_ESTABLISHED:
                return
        else:
            serr = sockglue.ip_icmp_error(
                skb, eno, err.type, err.code, uh.dst_port, err.info, s.inet.recverr_rfc4884
            )
            if serr is not None:
                s.queue_err_skb(serr)
        s.sk_err = eno
        s.error_report()

    # Socket options.

    async def setsockopt(self, s: UdpSock, level: int, optname: int, optval: bytes) -> None:
        """udp_setsockopt(): SOL_UDP to udp_lib_setsockopt(), any other level to
        ip_setsockopt() (SOL_SOCKET is the socket layer's, sock_setsockopt())."""
        if level in (SOL_UDP, SOL_UDPLITE):
            if len(optval) < 4:
                raise errno.kernel_error(errno.EINVAL)
            val = struct.unpack_from("=i", optval)[0]
            if optname == UDP_CORK:
                # Any value but 0 corks; 0 uncorks and pushes what is pending, whether
                # UDP_CORK or MSG_MORE started it.
                s.corkflag = val != 0
                if not val:
                    self.udp_push_pending_frames(s, ("udp_push_pending_frames",))
                return
            # The other UDP options (UDP_SEGMENT, UDP_GRO, UDP_ENCAP...) are not built yet.
            raise errno.kernel_error(errno.ENOPROTOOPT)
        if level != SOL_IP:
            raise errno.kernel_error(errno.ENOPROTOOPT)
        effect = sockglue.do_ip_setsockopt(s.inet, optname, optval)
        if effect & SockoptEffect.PURGE_ERRQUEUE:
            s.purge_error_queue()
        if effect & SockoptEffect.TOS_CHANGED:
            s.priority = sockglue.rt_tos2priority(s.inet.tos)
            s.dst_cache = None

    async def getsockopt(self, s: UdpSock, level: int, optname: int, optlen: int) -> bytes:
        """udp_getsockopt() (SOL_UDP, else do_ip_getsockopt()), and the SOL_SOCKET option
        that reads this layer's state: SO_ERROR, which takes sk_err (sock_error())."""
        if level == SOL_SOCKET:
            if optname != SO_ERROR:
                raise errno.kernel_error(errno.ENOPROTOOPT)
            if optlen < 0:
                raise errno.kernel_error(errno.EINVAL)
            # sk_getsockopt(): -sock_error(), else sk_err_soft (which UDP never sets).
            return struct.pack("=i", s.sock_error())[: min(optlen, 4)]
        if level in (SOL_UDP, SOL_UDPLITE):
            # udp_lib_getsockopt(): min(optlen, sizeof(int)) bytes of the int.
            if optlen < 0:
                raise errno.kernel_error(errno.EINVAL)
            if optname != UDP_CORK:
                raise errno.kernel_error(errno.ENOPROTOOPT)
            return struct.pack("=i", int(s.corkflag))[: min(optlen, 4)]
        if level != SOL_IP:
            raise errno.kernel_error(errno.EOPNOTSUPP)
        mtu = await self._sk_dst_mtu(s) if optname == sockglue.IP_MTU else 0
        return sockglue.do_ip_getsockopt(
            s.inet,
            optname,
            optlen,
            default_ttl=self.sysctl.get_int("net.ipv4.ip_default_ttl"),
            dst_mtu=mtu,
            inet_num=s.num,
        )

    async def _sk_dst_mtu(self, s: UdpSock) -> int:
        """dst_mtu(sk_dst_get(sk)): 0 without a cached route (never connected, or the route
        reset since). ipv4_mtu() reads the device's MTU live, so a route the FIB has
        moved past is looked up again for it."""
        route = s.dst_cache
        if route is None:
            return 0
        if route.genid != self.fib_genid:
            try:
                dst, _, _ = await self.route_output(s.daddr, s.saddr, 0)
            except OSError:
                return route_mtu(route.dst)
            return route_mtu(dst)
        return route_mtu(route.dst)


def _ipv4_pktinfo_prepare(s: UdpSock, skb: SkBuff) -> None:
    """ipv4_pktinfo_prepare(), when a datagram is queued: for a socket with IP_PKTINFO on
    then, PKTINFO_SKB_CB (over IPCB's first 8 bytes) gets the arrival interface (the
    sending one for a looped back packet: inet_iif) and fib_compute_spec_dst(), which
    IP left in IPCB; otherwise zeros. A later IP_PKTINFO cmsg reads what is here."""
    cb = skb.cb
    if s.inet.cmsg_flags & IP_CMSG_PKTINFO and skb.dst is not None:
        parm = ipcb(cb)
        ifindex = skb.skb_iif if parm.iif == LOOPBACK_IFINDEX else parm.iif
        cb[0:8] = struct.pack("=i", ifindex) + parm.spec_dst.to_bytes(4, "big")
    else:
        cb[0:8] = bytes(8)


def _csum_unnecessary(skb: SkBuff) -> bool:
    """skb_csum_unnecessary(): a CHECKSUM_PARTIAL skb (a GRO skb, or a segment split
    from one) carries a checksum GRO verified, as CHECKSUM_UNNECESSARY does."""
    return skb.ip_summed in (CHECKSUM_UNNECESSARY, CHECKSUM_PARTIAL)
