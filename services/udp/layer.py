"""A host's UDP layer without gRPC: the socket tables, and the calls of struct proto
udp_prot / udplite_prot (net/ipv4/udp.c, net/ipv4/udplite.c, net/ipv4/datagram.c).

The work is split as udp.c's is: sending (services.udp.output), receiving (input),
udp_recvmsg (recv), ICMP errors (errors), options (sockopt). The IP layer is reached
through narrow interfaces: `route_output` (an async ip_route_output_key that raises
OSError), the `to_ip` list of skbs and the `icmp_out` list of ICMP errors to send
(icmp_send) the caller ships down as a batch. The socket's IP half (options, cmsgs,
error queue) is services.ip.sockglue, as udp.c calls ip_sockglue.c.
"""

from __future__ import annotations

import itertools
import random

from services.core import errno
from services.core.cred import CAP_NET_BIND_SERVICE, ROOT, Cred
from services.core.datagram import Datagram
from services.core.dropreason import DropStats, SkbDropReason
from services.core.skbuff import SkBuff
from services.core.snmp import SnmpMib
from services.core.sockaddr import AF_INET, SOCKADDR_IN_LEN, parse_sockaddr_in
from services.core.socket_uapi import SOL_IP, SOL_SOCKET, SOL_UDP, SOL_UDPLITE
from services.core.sysctl import Sysctl
from services.core.trace import Tracer
from services.core.wire.ipv4 import IPPROTO_UDP, IPPROTO_UDPLITE, ipv4_is_lbcast, ipv4_is_multicast
from services.ip import sockglue
from services.ip.cork import dst_mtu as route_mtu
from services.ip.fib import RTN_BROADCAST, RTN_LOCAL
from services.ip.route import RTCF_BROADCAST
from services.ip.sockglue import IP_PMTUDISC_DONT, IP_PMTUDISC_WANT, InetOpts, SockoptEffect
from services.udp import tstamp
from services.udp.errors import IcmpError, UdpErr
from services.udp.input import UdpInput
from services.udp.output import RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RouteFn, UdpOutput
from services.udp.recv import UdpRecv
from services.udp.sock import (
    SHUTDOWN_MASK,
    SOCK_BINDADDR_LOCK,
    SOCK_BINDPORT_LOCK,
    TCP_CLOSE,
    TCP_ESTABLISHED,
    CachedRoute,
    UdpSock,
)
from services.udp.sockopt import SockOpts
from services.udp.table import UdpTable

__all__ = ["IcmpError", "UdpLayer"]


class UdpLayer(UdpOutput, UdpInput, UdpRecv, UdpErr):
    def __init__(self, hostname: str, sysctl: Sysctl, route_output: RouteFn) -> None:
        self.sysctl = sysctl
        self.route_output = route_output
        # udp_table and udplite_table: the two protocols' ports are apart.
        self.tables = {IPPROTO_UDP: UdpTable(), IPPROTO_UDPLITE: UdpTable()}
        self.socks: dict[int, UdpSock] = {}
        # Released sockets with datagrams still below: the kernel frees a struct sock
        # only when sk_wmem_alloc drops to 0 (sock_wfree → __sk_free), and until then
        # udp_send_skb's SndbufErrors for them still count.
        self.dying: dict[int, UdpSock] = {}
        self.mib = SnmpMib()
        self.drops = DropStats()
        self.trace = Tracer("udp", hostname)
        self.trace.follow(sysctl)
        self.to_ip: list[SkBuff] = []
        # icmp_send() requests for IP: port unreachable for datagrams no socket took.
        self.icmp_out: list[IcmpError] = []
        self._ids = itertools.count(1)
        self.fib_genid = 0
        self.memory_allocated = 0
        # ifindex → name of the host's devices, as IP last reported them.
        self.devices: dict[int, str] = {}
        self.opts = SockOpts(
            sysctl,
            lambda: self.devices,
            self._rehash,
            lambda s: self.udp_push_pending_frames(s, ("udp_push_pending_frames",)),
        )

    @property
    def table(self) -> UdpTable:
        """udp_table (UDP-Lite's is tables[IPPROTO_UDPLITE])."""
        return self.tables[IPPROTO_UDP]

    def _port_range(self, s: UdpSock) -> tuple[int, int]:
        """inet_sk_get_local_port_range(): ip_local_port_range narrowed by the socket's
        IP_LOCAL_PORT_RANGE."""
        low, high = self.sysctl.get_tuple("net.ipv4.ip_local_port_range")
        return sockglue.inet_sk_get_local_port_range(s.inet, low, high)

    def sock(self, sk: int) -> UdpSock:
        s = self.socks.get(sk)
        if s is None:
            raise errno.kernel_error(errno.EBADF, f"no socket {sk}")
        return s

    def _rehash(self, s: UdpSock) -> None:
        """sk_prot->rehash (udp_v4_rehash), when sk_bound_dev_if or the address changed."""
        if s.num:
            self.tables[s.protocol].rehash(s, s.rcv_saddr)

    # Creation and release.

    def create(self, protocol: int, owner_pid: int, owner_fd: int, cred: Cred = ROOT) -> UdpSock:
        """inet_create() + udp_init_sock()/udplite_sk_init() for SOCK_DGRAM; sk_uid is
        the creator's."""
        if protocol not in (IPPROTO_UDP, IPPROTO_UDPLITE):
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
            uid=cred.uid,
            cred=cred,
        )
        self.socks[s.sk] = s
        return s

    def release(self, s: UdpSock) -> None:
        """udp_lib_close() → sk_common_release(): udp_destroy_sock() throws a corked
        datagram away (udp_flush_pending_frames), then unhash, free the queues and their
        memory (udp_destruct_common), wake readers and senders."""
        self.udp_flush_pending_frames(s)
        self.tables[s.protocol].unhash(s)
        self.socks.pop(s.sk, None)
        s.dead = True
        total = sum(skb.truesize for skb in s.receive_queue)
        for skb in s.receive_queue:
            # udp_destruct_common(): kfree_skb() of each queued datagram (6.18's
            # tracepoint shows NOT_SPECIFIED there).
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "udp_destruct_common", skb=skb, queued=True)
        s.receive_queue.clear()
        self.udp_rmem_release(s, total, partial=0)
        s.purge_error_queue()
        s.wake_all()
        if s.wmem_alloc:
            self.dying[s.sk] = s

    def shutdown(self, s: UdpSock, how: int) -> None:
        """inet_shutdown(): how + 1 is the sk_shutdown bits (SHUT_RD → RCV_SHUTDOWN,
        SHUT_WR → SEND_SHUTDOWN, SHUT_RDWR → both), anything else EINVAL. An unconnected
        socket (TCP_CLOSE) is shut down all the same but answers ENOTCONN ("hack to wake
        up other listeners, who can poll for EPOLLHUP"); udp_prot has no ->shutdown.
        sk_state_change() then wakes everyone on the wait queue."""
        how += 1
        if how & ~SHUTDOWN_MASK or not how:
            raise errno.kernel_error(errno.EINVAL)
        s.shutdown |= how
        s.wake_all()
        if s.state == TCP_CLOSE:
            raise errno.kernel_error(errno.ENOTCONN)

    def skb_tstamp_tx(self, skb: SkBuff, tstype: int) -> None:
        """__skb_tstamp_tx() reaching the socket that sent the stamped skb (skb->sk; gone
        when it was closed meanwhile): its error queue entry, charged to sk_rmem_alloc
        and refused when that is full (sock_queue_err_skb)."""
        s = self.socks.get(skb.sk)
        if s is None:
            return
        allow_data = bool(self.sysctl.get_int("net.core.tstamp_allow_data"))
        serr = tstamp.skb_tstamp_tx(s, skb, tstype, allow_data)
        if serr is not None:
            s.queue_err_skb(serr)

    # Binding and connecting.

    async def _addr_type(self, addr: int) -> int:
        try:
            dst, _, _ = await self.route_output(addr, 0, 0)
        except OSError:
            return 0
        return dst.rt_type

    async def bind(self, s: UdpSock, addr: int, port: int) -> None:
        """__inet_bind() → udp_v4_get_port(): EADDRNOTAVAIL, then EACCES, then EINVAL
        for a socket bound already."""
        # inet_addr_valid_or_nonlocal(): a unicast address must be one of ours
        # (inet_addr_type_table) unless the socket may bind any (inet_can_nonlocal_bind:
        # ip_nonlocal_bind, IP_FREEBIND, IP_TRANSPARENT); multicast and the limited
        # broadcast address may always be bound.
        special = ipv4_is_multicast(addr) or ipv4_is_lbcast(addr)
        chk_addr_ret = await self._addr_type(addr) if addr and not special else 0
        nonlocal_ok = (
            bool(self.sysctl.get_int("net.ipv4.ip_nonlocal_bind")) or s.inet.freebind or s.inet.transparent
        )
        if addr and not special and not nonlocal_ok and chk_addr_ret not in (RTN_LOCAL, RTN_BROADCAST):
            raise errno.kernel_error(errno.EADDRNOTAVAIL)
        # inet_port_requires_bind_service(): a port below ip_unprivileged_port_start
        # takes CAP_NET_BIND_SERVICE (port 0 picks an ephemeral one: never).
        unprivileged = self.sysctl.get_int("net.ipv4.ip_unprivileged_port_start")
        if port and port < unprivileged and not s.cred.capable(CAP_NET_BIND_SERVICE):
            raise errno.kernel_error(errno.EACCES)
        if s.state != TCP_CLOSE or s.num:
            raise errno.kernel_error(errno.EINVAL)
        s.rcv_saddr = s.saddr = addr
        if special or chk_addr_ret == RTN_BROADCAST:
            s.saddr = 0  # multicast and broadcast binds send from the route's source
        # IP_BIND_ADDRESS_NO_PORT: port 0 takes no port now; the socket keeps the
        # address and inet_autobind() picks the port on the first send or connect (a
        # second bind() is then still allowed: inet_num is 0).
        if port or not s.inet.bind_address_no_port:
            try:
                self.tables[s.protocol].get_port(s, port, self._port_range(s))
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
                self.tables[s.protocol].get_port(s, 0, self._port_range(s))
            except OSError:
                # inet_autobind() answers a full port range with EAGAIN (bind() says
                # EADDRINUSE).
                raise errno.kernel_error(errno.EAGAIN) from None

    async def connect(self, s: UdpSock, name: bytes) -> None:
        """inet_dgram_connect() → __ip4_datagram_connect(): the route (ip_route_connect
        with sk_bound_dev_if, the socket's TOS, SO_DONTROUTE's scope and sk_mark)."""
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
        scope = RT_SCOPE_LINK if s.localroute else RT_SCOPE_UNIVERSE
        # A unicast peer without a device of the socket's own goes by IP_UNICAST_IF's.
        oif = s.bound_dev_if or (0 if ipv4_is_multicast(daddr) else s.inet.uc_index)
        dst, saddr, genid = await self.route_output(
            daddr, s.saddr, oif, tos=s.inet.tos & 0xFC, scope=scope, mark=s.mark
        )
        if not daddr:
            daddr = dst.nexthop
        if cork is not None:
            cork.daddr, cork.saddr = daddr, saddr
        if dst.flags & RTCF_BROADCAST and not s.broadcast:
            raise errno.kernel_error(errno.EACCES)
        if not s.saddr:
            s.saddr = saddr
        if not s.rcv_saddr:
            # The rehash: the socket now answers on saddr only.
            s.rcv_saddr = saddr
            self._rehash(s)
        s.daddr, s.dport = daddr, dport
        s.state = TCP_ESTABLISHED
        self.tables[s.protocol].connected(s)
        s.inet_id = random.getrandbits(16)  # get_random_u16()
        s.dst_cache = CachedRoute(dst, saddr, genid)

    def disconnect(self, s: UdpSock) -> None:
        """__udp_disconnect(): the peer and the device binding go; what the user did not
        lock with bind() is undone. A corked datagram stays pending with the flow it had
        (pushed later with inet_sport, which may now be 0)."""
        table = self.tables[s.protocol]
        s.state = TCP_CLOSE
        s.daddr = s.dport = 0
        s.bound_dev_if = 0
        table.connected(s)
        if not s.userlocks & SOCK_BINDADDR_LOCK:
            s.rcv_saddr = s.saddr = 0
            if s.userlocks & SOCK_BINDPORT_LOCK:
                self._rehash(s)
        if not s.userlocks & SOCK_BINDPORT_LOCK:
            table.unhash(s)
            s.num = 0
        s.dst_cache = None

    def getname(self, s: UdpSock, peer: bool) -> tuple[int, int]:
        """inet_getname(): the bound address and port, or the peer's; ENOTCONN for a
        peer when not connected or connected to port 0."""
        if not peer:
            return s.rcv_saddr, s.num
        if s.state != TCP_ESTABLISHED or not s.dport:
            raise errno.kernel_error(errno.ENOTCONN)
        return s.daddr, s.dport

    # Socket options.

    async def setsockopt(self, s: UdpSock, level: int, optname: int, optval: bytes) -> None:
        """udp_setsockopt(): SOL_SOCKET (6.18 sends it through udp_lib_setsockopt to
        sk_setsockopt), SOL_UDP and SOL_UDPLITE to udp_lib_setsockopt(), any other level
        to ip_setsockopt()."""
        if level == SOL_SOCKET:
            self.opts.sk_setsockopt(s, optname, optval)
            return
        if level in (SOL_UDP, SOL_UDPLITE):
            self.opts.udp_lib_setsockopt(s, optname, optval, s.protocol == IPPROTO_UDPLITE)
            return
        if level != SOL_IP:
            raise errno.kernel_error(errno.ENOPROTOOPT)
        effect = sockglue.do_ip_setsockopt(
            s.inet,
            optname,
            optval,
            cred=s.cred,
            dev_exists=lambda ifindex: ifindex in self.devices,
            bound_dev_if=s.bound_dev_if,
        )
        if effect & SockoptEffect.PURGE_ERRQUEUE:
            s.purge_error_queue()
        if effect & SockoptEffect.TOS_CHANGED:
            s.priority = sockglue.rt_tos2priority(s.inet.tos)
            s.dst_cache = None

    async def getsockopt(self, s: UdpSock, level: int, optname: int, optlen: int) -> tuple[bytes, int]:
        """sk_getsockopt() for SOL_SOCKET, udp_getsockopt() (SOL_UDP, SOL_UDPLITE, else
        do_ip_getsockopt()): the bytes written and the optlen returned."""
        if level == SOL_SOCKET:
            return self.opts.sk_getsockopt(s, optname, optlen)
        if level in (SOL_UDP, SOL_UDPLITE):
            return self.opts.udp_lib_getsockopt(s, optname, optlen)
        if level != SOL_IP:
            raise errno.kernel_error(errno.EOPNOTSUPP)
        mtu = await self._sk_dst_mtu(s) if optname == sockglue.IP_MTU else 0
        val = sockglue.do_ip_getsockopt(
            s.inet,
            optname,
            optlen,
            default_ttl=self.sysctl.get_int("net.ipv4.ip_default_ttl"),
            dst_mtu=mtu,
            inet_num=s.num,
        )
        return val, len(val)

    async def _sk_dst_mtu(self, s: UdpSock) -> int:
        """dst_mtu(sk_dst_get(sk)): 0 without a cached route (never connected, or the route
        reset since). ipv4_mtu() reads the device's MTU live, so a route the FIB has
        moved past is looked up again for it."""
        route = s.dst_cache
        if route is None:
            return 0
        if route.genid != self.fib_genid:
            try:
                dst, _, _ = await self.route_output(s.daddr, s.saddr, s.bound_dev_if, mark=s.mark)
            except OSError:
                return route_mtu(route.dst)
            return route_mtu(dst)
        return route_mtu(route.dst)

    async def recvmsg(self, s: UdpSock, length: int, flags: int, timeout_ns: int) -> Datagram:
        """udp_recvmsg() for a caller that wants the datagram alone (no cmsg room)."""
        return await self.udp_recvmsg(s, length, flags, timeout_ns)
