"""udp_sendmsg() and what it calls on the way down (net/ipv4/udp.c udp_sendmsg,
udp_send_skb, udp_push_pending_frames; net/ipv4/ip_output.c ip_make_skb,
__ip_append_data, sock_alloc_send_skb from net/core/sock.c): the checks in the
kernel's order, the route, corking, the send buffer, the checksum modes and GSO.

The datagram leaves as one skb with the UDP header at data; IP fragments it and the NIC
segments a GSO skb. Its truesize is charged to the socket's sk_wmem_alloc until the
layers below report it freed (TX completions, sock_wfree)."""

from __future__ import annotations

import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from services.core import errno
from services.core.checksum import csum_partial, csum_tcpudp_magic, csum_tcpudp_nofold
from services.core.dropreason import DropStats
from services.core.flowledger import datagrams, flow_of
from services.core.netdev import NETIF_F_HW_CSUM, NETIF_F_IP_CSUM, NETIF_F_SG
from services.core.skbuff import (
    CHECKSUM_NONE,
    CHECKSUM_PARTIAL,
    SKB_GSO_UDP_L4,
    Dst,
    IpCork,
    SkBuff,
    alloc_skb,
)
from services.core.snmp import MibGroup, SnmpMib
from services.core.sockaddr import AF_INET, AF_UNSPEC, SOCKADDR_IN_LEN, parse_sockaddr_in
from services.core.socket_uapi import (
    MSG_CONFIRM,
    MSG_DONTROUTE,
    MSG_DONTWAIT,
    MSG_MORE,
    MSG_OOB,
    MSG_PROBE,
    SOL_UDP,
    UDP_SEGMENT,
)
from services.core.sysctl import Sysctl
from services.core.trace import Tracer
from services.core.tstamp import SOCKCM_FLAG_TS_OPT_ID
from services.core.wire.ipv4 import (
    IPPROTO_UDP,
    IPPROTO_UDPLITE,
    ipv4_is_lbcast,
    ipv4_is_multicast,
    ipv4_is_zeronet,
)
from services.core.wire.udp import CSUM_MANGLED_0, UDP_HLEN
from services.ip import sockglue
from services.ip.cork import (
    IP_MAX_MTU,
    IPV4_HLEN,
    InetCork,
    ip_append_check,
    ip_append_truesize,
    ip_cork_fragsize,
)
from services.ip.fib import RTN_MULTICAST
from services.ip.options import ip_options_undo_bytes
from services.ip.route import RTCF_BROADCAST
from services.ip.sockglue import Ipcm, for_each_cmsghdr
from services.udp.sock import SEND_SHUTDOWN, TCP_ESTABLISHED, CachedRoute, UdpSock, sk_wait
from services.udp.tstamp import ip_append_tskey, sock_tx_timestamp
from services.udp.udplite import udplite_send_coverage

# MAX_HEADER: the headroom sock_alloc_send_skb leaves for link and network headers.
MAX_HEADER = 128
# include/net/udp.h
UDP_MAX_SEGMENTS = 128
# include/uapi/linux/rtnetlink.h: flowi4_scope of a send that must not be routed.
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
# ____sys_sendmsg(): a control buffer larger than this on-stack one is sock_kmalloc'ed,
# which net.core.optmem_max bounds.
CTL_STACK_BYTES = 16 + 20
# inet->mc_ttl's default: multicast datagrams go one hop unless told otherwise.
MC_TTL_DEFAULT = 1

_HDR = struct.Struct("!HHHH")


RouteFn = Callable[..., Awaitable[tuple[Dst, int, int]]]


class MmsgSend(NamedTuple):
    """One message of a sendmmsg vector: msg_iov's bytes, msg_name, msg_control, the
    call's flags and its send buffer wait (sock_sndtimeo)."""

    data: bytes
    name: bytes
    control: bytes
    flags: int
    timeout_ns: int


@dataclass(slots=True)
class SendParams:
    """What udp_sendmsg() decided before the datagram is built: the flow's destination
    and the route's lookup keys."""

    daddr: int
    dport: int
    connected: bool


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


def _csum_offload(dst: Dst) -> bool:
    """The route's device checksums IPv4 transport headers (NETIF_F_HW_CSUM or
    NETIF_F_IP_CSUM)."""
    return bool(dst.dev_features & (NETIF_F_HW_CSUM | NETIF_F_IP_CSUM))


def _anysrc(daddr: int, saddr: int, oif: int) -> bool:
    """Whether FLOWI_FLAG_ANYSRC (an IP_TRANSPARENT socket's, inet_sk_flowi_flags)
    changes ip_route_output_key_hash_rcu()'s answer for this flow: it skips the check
    that a given source is one of ours (__ip_dev_find), and nothing else. A source the
    lookup refuses anyway (multicast, limited broadcast, 0.x.x.x: EINVAL), and a
    multicast or broadcast destination without an oif (the device is the source's),
    are left to the lookup; otherwise the route is looked up as for no source and the
    source kept (only a policy rule matching on the source, or a destination of
    0.0.0.0, which the kernel then sends to the source itself, could see the difference)."""
    if not saddr or ipv4_is_multicast(saddr) or ipv4_is_lbcast(saddr) or ipv4_is_zeronet(saddr):
        return False
    return bool(oif) or not (ipv4_is_multicast(daddr) or ipv4_is_lbcast(daddr))


class UdpOutput:
    """The send half of UdpLayer (which provides these attributes)."""

    sysctl: Sysctl
    route_output: RouteFn
    mib: SnmpMib
    drops: DropStats
    trace: Tracer
    to_ip: list[SkBuff]
    fib_genid: int
    socks: dict[int, UdpSock]
    dying: dict[int, UdpSock]

    def autobind(self, s: UdpSock) -> None:
        raise NotImplementedError

    # UdpInput's: the Udp or UdpLite MIB of the socket's protocol. Declared, not
    # defined, so that UdpInput's comes first in UdpLayer's MRO.
    _sk_mib: Callable[[UdpSock], MibGroup]

    async def _route(
        self, s: UdpSock, daddr: int, saddr: int, ipc: Ipcm, tos: int, scope: int, connected: bool
    ) -> CachedRoute:
        """The route of one send: a connected socket's cached one while the FIB generation
        it was looked up under is current (sk_dst_check), else ip_route_output_flow()."""
        route = s.dst_cache if connected else None
        if route is None or route.genid != self.fib_genid:
            # ENETUNREACH propagates; OutNoRoutes is counted by the IP layer's lookup.
            if s.inet.transparent and _anysrc(daddr, saddr, ipc.oif):
                dst, _, genid = await self.route_output(
                    daddr, 0, ipc.oif, tos=tos, scope=scope, mark=ipc.mark
                )
                src = saddr
            else:
                dst, src, genid = await self.route_output(
                    daddr, saddr, ipc.oif, tos=tos, scope=scope, mark=ipc.mark
                )
            if dst.flags & RTCF_BROADCAST and not s.broadcast:
                raise errno.kernel_error(errno.EACCES)
            route = CachedRoute(dst, src, genid)
            if connected:
                s.dst_cache = route
        return route

    async def sendmmsg(self, s: UdpSock, msgs: Sequence[MmsgSend]) -> list[int]:
        """__sys_sendmmsg()'s loop over udp_sendmsg(): each message in order, stopping
        at the first that fails. Its error is raised when it is the first message, and
        lost otherwise, as the kernel loses it. The datagrams go down as one batch."""
        sent: list[int] = []
        for m in msgs:
            try:
                sent.append(await self.sendmsg(s, m.data, m.name, m.flags, False, m.control, m.timeout_ns))
            except OSError:
                if not sent:
                    raise
                break
        return sent

    async def sendmsg(
        self,
        s: UdpSock,
        data: bytes,
        name: bytes,
        flags: int,
        trace: bool,
        control: bytes = b"",
        timeout_ns: int = -1,
    ) -> int:
        """udp_sendmsg(), the checks in the kernel's order. A corked send (UDP_CORK on, or
        MSG_MORE) starts a datagram or appends to the one pending instead of sending; the
        first send that is neither pushes what is pending out as one datagram. Each call
        returns its own length. `timeout_ns` is sock_sndtimeo(): how long to wait for
        send buffer room (0: EAGAIN at once, negative: no limit)."""
        # ____sys_sendmsg(): a control buffer is copied in (sock_kmalloc, bounded by
        # net.core.optmem_max) before inet_sendmsg runs, so this refusal autobinds nothing.
        if len(control) > CTL_STACK_BYTES and len(control) >= self.sysctl.get_int("net.core.optmem_max"):
            raise errno.kernel_error(errno.ENOBUFS)
        # sock_sndtimeo(): MSG_DONTWAIT never waits.
        if flags & MSG_DONTWAIT:
            timeout_ns = 0
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
            await self._counted(
                s, self._do_append_data(s, s.pending, data, 0, flags, corkreq, trace, timeout_ns)
            )
            return length
        params = self._sendmsg_address(s, name)
        # ipcm_init_sk(): the socket's source, device, priority and mark, UDP_SEGMENT;
        # then the control messages: any disables the connected fast path.
        ipc = Ipcm(
            addr=s.saddr,
            oif=s.bound_dev_if,
            priority=s.priority,
            mark=s.mark,
            gso_size=s.gso_size,
            cred=s.cred,
        )
        # sockcm_init(): sk_tsflags, which a SO_TIMESTAMPING message changes for this
        # send; SCM_TXTIME needs SO_TXTIME.
        ipc.tsflags, ipc.txtime = s.tsflags, s.txtime
        if control:
            if udp_cmsg_send(control, ipc):
                sockglue.ip_cmsg_send(control, ipc)
            params.connected = False
        if not ipc.oif and not ipv4_is_multicast(params.daddr):
            # A unicast send without a device (SO_BINDTODEVICE, IP_PKTINFO) leaves by
            # IP_UNICAST_IF's (inet->uc_index).
            ipc.oif = s.inet.uc_index
        await self._counted(s, self._sendmsg_route(s, data, params, ipc, flags, corkreq, trace, timeout_ns))
        return length

    async def _counted(self, s: UdpSock, work: Awaitable[None]) -> None:
        """udp_sendmsg()'s "out:": an error that gets there is counted in SndbufErrors
        when it is ENOBUFS or the socket ever ran out of send buffer (SOCK_NOSPACE, which
        stays set on a UDP socket)."""
        try:
            await work
        except OSError as err:
            if err.errno == errno.ENOBUFS or s.nospace:
                self._sk_mib(s).inc("SndbufErrors")
            raise

    def _sendmsg_address(self, s: UdpSock, name: bytes) -> SendParams:
        """msg_name checked, or the connected peer (the fast path's candidate)."""
        if name:
            if len(name) < SOCKADDR_IN_LEN:
                raise errno.kernel_error(errno.EINVAL)
            family, daddr, dport = parse_sockaddr_in(name)
            if family not in (AF_INET, AF_UNSPEC):
                raise errno.kernel_error(errno.EAFNOSUPPORT)
            if dport == 0:
                raise errno.kernel_error(errno.EINVAL)
            return SendParams(daddr, dport, connected=False)
        if s.state != TCP_ESTABLISHED:
            raise errno.kernel_error(errno.EDESTADDRREQ)
        return SendParams(s.daddr, s.dport, connected=True)

    async def _sendmsg_route(
        self,
        s: UdpSock,
        data: bytes,
        p: SendParams,
        ipc: Ipcm,
        flags: int,
        corkreq: bool,
        trace: bool,
        timeout_ns: int,
    ) -> None:
        """From the options to the route to the datagram: the part of udp_sendmsg() whose
        errors go through "out:"."""
        daddr, connected = p.daddr, p.connected
        opt = ipc.opt if ipc.opt is not None else s.inet.opt
        saddr, faddr = ipc.addr, daddr
        if opt is not None and opt.srr:
            # A source route: the route is to its first hop.
            if not daddr:
                raise errno.kernel_error(errno.EINVAL)
            faddr = opt.faddr
            connected = False
        # get_rttos(), ip_sendmsg_scope(): SO_DONTROUTE, MSG_DONTROUTE and a strict source
        # route keep the lookup to directly connected destinations.
        tos = (ipc.tos if ipc.tos != -1 else s.inet.tos) & 0xFC
        scope = RT_SCOPE_UNIVERSE
        if s.localroute or flags & MSG_DONTROUTE or (opt is not None and opt.is_strictroute):
            scope = RT_SCOPE_LINK
            connected = False
        if ipv4_is_multicast(daddr):
            connected = False
        route = await self._route(s, faddr, saddr, ipc, tos, scope, connected)
        # fl4_stack->daddr: where the header goes (the first hop of a source route; with
        # no destination at all, the loopback address the lookup chose).
        fl4_daddr = faddr or route.dst.nexthop
        if not daddr:
            daddr = fl4_daddr
        if flags & MSG_PROBE:
            # ip_make_skb() returns before ip_setup_cork(): nothing is built. (With
            # MSG_CONFIRM the kernel confirms the neighbour here, dst_confirm_neigh;
            # nothing goes down to the NIC to do that: a difference.)
            return
        # ip_setup_cork(): the route and fragsize, and the ipcm_cookie's TTL, TOS (6.18's
        # ipcm_init_sk() takes the socket's IP_TOS in, so a corked datagram keeps the
        # TOS of its first send), priority, mark and gso_size. A corked datagram's flow
        # is inet->cork.fl, whose daddr is the final destination; the fast path's is
        # fl4_stack.
        cork = InetCork(
            dst=route.dst,
            fragsize=ip_cork_fragsize(s.inet.pmtudisc, route.dst),
            saddr=route.saddr,
            daddr=daddr if corkreq else fl4_daddr,
            dport=p.dport,
            addr=daddr,
            opt=opt if opt is not None and opt.optlen else None,
            ttl=ipc.ttl,
            tos=ipc.tos if ipc.tos != -1 else s.inet.tos,
            priority=ipc.priority,
            mark=ipc.mark,
            gso_size=ipc.gso_size,
            # sock_tx_timestamp() of this send's flags; SCM_TS_OPT_ID's key, SCM_TXTIME.
            tx_flags=sock_tx_timestamp(ipc.tsflags),
            ts_opt_id=ipc.ts_opt_id if ipc.tsflags & SOCKCM_FLAG_TS_OPT_ID else None,
            transmit_time=ipc.transmit_time,
            trace=trace or s.emu_trace,
        )
        if not corkreq:
            # The lockless fast path: ip_make_skb() on a cork of its own, then udp_send_skb().
            await self._ip_append_data(s, cork, data, UDP_HLEN, flags, timeout_ns)
            self._udp_send_skb(s, cork, ("udp_sendmsg",))
            return
        # "Now cork the socket to pend data."
        s.pending = cork
        await self._do_append_data(s, cork, data, UDP_HLEN, flags, corkreq, trace, timeout_ns)

    async def _do_append_data(
        self,
        s: UdpSock,
        cork: InetCork,
        data: bytes,
        transhdrlen: int,
        flags: int,
        corkreq: bool,
        trace: bool,
        timeout_ns: int,
    ) -> None:
        """udp_sendmsg()'s do_append_data: ip_append_data() onto the pending datagram (the
        UDP header's room first when it starts it), with MSG_MORE when corked. Any error
        throws away all that is pending (udp_flush_pending_frames); a send that is not
        corked pushes it."""
        cork.trace = cork.trace or trace or s.emu_trace
        # ip_append_data(): MSG_PROBE appends nothing and succeeds.
        if not flags & MSG_PROBE:
            try:
                await self._ip_append_data(
                    s, cork, data, transhdrlen, flags | (MSG_MORE if corkreq else 0), timeout_ns
                )
            except OSError:
                self.udp_flush_pending_frames(s)
                raise
        if not corkreq:
            self.udp_push_pending_frames(s, ("udp_sendmsg", "udp_push_pending_frames"))
        # The kernel's third case, a corked send that left sk_write_queue empty (up->pending
        # = 0), is a first send with MSG_PROBE, which returned before corking.

    async def _ip_append_data(
        self, s: UdpSock, cork: InetCork, data: bytes, transhdrlen: int, flags: int, timeout_ns: int
    ) -> None:
        """__ip_append_data(): EMSGSIZE when the datagram would outgrow what its cork
        allows (with IP_RECVERR, a local error naming the flow's destination and
        inet_dport, whose ee_info is the MTU less the options). The first append (it has
        the transport header) decides the checksum mode and allocates with
        sock_alloc_send_skb(): sock_error() first, then room in the send buffer, waiting
        for it. Later appends go into the skb's page frags: no such checks there."""
        length = transhdrlen + len(data)
        mtu = ip_append_check(cork, length, s.inet.pmtudisc)
        if mtu is not None:
            if s.inet.recverr:
                s.queue_err_skb(sockglue.ip_local_error(errno.EMSGSIZE, cork.daddr, s.dport, mtu))
            raise errno.kernel_error(errno.EMSGSIZE)
        if transhdrlen:
            # CHECKSUM_PARTIAL when the datagram fits what the device takes at once, the
            # device checksums, and the send is not corked (unless it is GSO).
            fits = length + IPV4_HLEN + cork.optlen <= (IP_MAX_MTU if cork.gso_size else cork.fragsize)
            cork.csum_partial = (
                fits and _csum_offload(cork.dst) and (not flags & MSG_MORE or bool(cork.gso_size))
            )
            # The datagram's first skb carries the timestamp request and its OPT_ID key;
            # a key taken from sk_tskey is given back if the allocation fails.
            tskey, hold_tskey = ip_append_tskey(s, cork.tx_flags, cork.ts_opt_id)
            try:
                await self._sock_alloc_send_skb(s, timeout_ns)
            except OSError:
                if hold_tskey:
                    s.tskey = (s.tskey - 1) & 0xFFFFFFFF
                raise
            cork.tskey = tskey
            cork.confirm = bool(flags & MSG_CONFIRM)
        cork.length += length
        cork.queue += data

    async def _sock_alloc_send_skb(self, s: UdpSock, timeout_ns: int) -> None:
        """sock_alloc_send_pskb()'s wait: a pending error is returned first; then the
        skb may be allocated while sk_wmem_alloc is below sk_sndbuf (so one datagram may
        take it past); else SOCK_NOSPACE and EAGAIN at once, or a wait (up to
        timeout_ns) for sock_def_write_space() to say there is room again."""
        # time.monotonic(), the clock asyncio's timers run on: no get_running_loop()
        # (a getpid() each) on this per-datagram path.
        deadline = None if timeout_ns < 0 else time.monotonic() + timeout_ns / 1e9
        while True:
            err = s.sock_error()
            if err:
                raise errno.kernel_error(err)
            if s.dead:
                raise errno.kernel_error(errno.EBADF)
            # Shut down for sending: EPIPE here, not at udp_sendmsg's entry (6.18 has no
            # check there: MSG_PROBE still succeeds, and the socket is autobound).
            if s.shutdown & SEND_SHUTDOWN:
                raise errno.kernel_error(errno.EPIPE)
            if not s.wmem_full():
                return
            s.nospace = True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise errno.kernel_error(errno.EAGAIN)
            # sock_def_write_space() wakes every sender: nothing to pass on.
            await sk_wait(s.write_waiters, remaining)

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
        socket was disconnected meanwhile), its destination port from the flow (whose
        daddr is, on the fast path, a source route's first hop), then the GSO checks and
        the checksum: UDP-Lite's over its coverage, none with SO_NO_CHECK, the
        pseudo-header sum for the device to finish (CHECKSUM_PARTIAL, always for GSO),
        else in software. What __ip_make_skb reads from the socket when it runs (IP_TTL
        unless the cork has a TTL, IP_MTU_DISCOVER for DF, whether it is connected for
        the IP ID) is read here, at push time.

        A corked datagram with a source route differs from the kernel: its flow's daddr
        is the final destination, which ip_copy_addrs() puts in 6.18's header (a capture
        on lo shows it), while the IP layer here puts the first hop there, as for an
        uncorked one. The checksum is the kernel's either way."""
        datalen = len(cork.queue)
        ulen = UDP_HLEN + datalen
        is_udplite = s.protocol == IPPROTO_UDPLITE
        gso_segs = 0
        if cork.gso_size:
            gso = cork.gso_size
            hlen = IPV4_HLEN + cork.optlen + UDP_HLEN
            if hlen + min(datalen, gso) > cork.fragsize:
                raise errno.kernel_error(errno.EMSGSIZE)
            if datalen > gso * UDP_MAX_SEGMENTS:
                raise errno.kernel_error(errno.EINVAL)
            if s.no_check_tx:
                raise errno.kernel_error(errno.EINVAL)
            if is_udplite:
                raise errno.kernel_error(errno.EIO)
            if datalen > gso:
                gso_segs = -(-datalen // gso)
        skb = alloc_skb(ulen, MAX_HEADER)
        # Where a datagram's skb enters the stack: traced when its sender asked, or
        # when it is the one in net.core.emu_trace_sample (sample is 0 when off).
        if cork.trace or (self.trace.sample and self.trace.sampled()):
            skb.trace = []
        for step in steps:
            self.trace(skb, step)
        skb.sk = s.sk
        skb.mark = cork.mark
        skb.priority = cork.priority
        # Only the first skb of a datagram is timestamped (the emulator's one skb is);
        # SCM_TXTIME's time is the skb's tstamp (skb_set_delivery_type_by_clockid).
        skb.tx_flags, skb.tskey = cork.tx_flags, cork.tskey
        skb.tstamp = cork.transmit_time
        skb.dst_pending_confirm = cork.confirm
        skb.reset_transport_header()
        th = skb.data
        skb.put(UDP_HLEN)
        skb.put_data(bytes(cork.queue))
        head = skb.head
        length_field, covered = (
            udplite_send_coverage(s.pcflag, s.pcslen, ulen) if is_udplite else (ulen, ulen)
        )
        _HDR.pack_into(head, th, s.num, cork.dport, length_field, 0)
        if gso_segs:
            skb.gso_size, skb.gso_segs, skb.gso_type = cork.gso_size, gso_segs, SKB_GSO_UDP_L4
        if is_udplite:
            # udplite_csum(): no hardware help, the coverage summed in software.
            check = csum_tcpudp_magic(
                cork.saddr,
                cork.daddr,
                ulen,
                IPPROTO_UDPLITE,
                csum_partial(memoryview(head)[th : th + covered]),
            )
            struct.pack_into("!H", head, th + 6, check or CSUM_MANGLED_0)
            skb.ip_summed = CHECKSUM_NONE
        elif s.no_check_tx and not cork.gso_size:
            skb.ip_summed = CHECKSUM_NONE
        elif cork.gso_size or cork.csum_partial:
            # udp4_hwcsum(): the pseudo-header sum, for the device (or the software
            # fallback below, skb_checksum_help) to finish.
            struct.pack_into(
                "!H", head, th + 6, csum_tcpudp_nofold(cork.saddr, cork.daddr, ulen, IPPROTO_UDP)
            )
            skb.ip_summed = CHECKSUM_PARTIAL
            skb.csum_start = th
            skb.csum_offset = 6
        else:
            check = csum_tcpudp_magic(
                cork.saddr, cork.daddr, ulen, IPPROTO_UDP, csum_partial(memoryview(head)[th : th + ulen])
            )
            struct.pack_into("!H", head, th + 6, check or CSUM_MANGLED_0)
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
        # datagrams from its own inet_id, whether or not this send named a destination;
        # a GSO datagram advances it by its segment count.
        inet_id = None
        if s.state == TCP_ESTABLISHED:
            # atomic_add_return(segs, &inet->inet_id) for UDP: the header takes the sum.
            s.inet_id = (s.inet_id + max(gso_segs, 1)) & 0xFFFF
            inet_id = s.inet_id
        skb.cork = IpCork(
            saddr=cork.saddr,
            daddr=cork.addr if opt is not None and opt.srr else cork.daddr,
            protocol=s.protocol,
            ttl=ttl,
            tos=cork.tos,
            pmtudisc=s.inet.pmtudisc,
            options=options,
            inet_id=inet_id,
        )
        skb.dst = cork.dst
        # The truesize __ip_append_data() built the datagram with; sock_wfree's charge,
        # given back when the layers below free the skb.
        skb.truesize = ip_append_truesize(
            ulen, cork.optlen, cork.fragsize, bool(cork.dst.dev_features & NETIF_F_SG), bool(cork.gso_size)
        )
        skb.wmem = skb.truesize
        s.wmem_alloc += skb.truesize
        self._sk_mib(s).inc("OutDatagrams")
        if (ledger := self.drops.flows) is not None and (key := flow_of(skb)) is not None:
            # Named as a drop of this skb before ip_send_skb would name it: by its cork
            # and UDP header (the IPv4 header is IP's to build).
            ledger.sent(key, datagrams(skb))
        self.to_ip.append(skb)

    def forget_tx_charges(self) -> None:
        """A new stream to IP: what was charged for datagrams sent over the old one can
        no longer be reported freed, so every socket's sk_wmem_alloc starts again from
        nothing (and its waiting senders wake)."""
        for s in self.socks.values():
            s.wmem_alloc = 0
            s.write_space()
        self.dying.clear()

    def tx_done(self, sk: int, wmem: int, enobufs: int) -> None:
        """TX completions from below for socket sk, open or released with datagrams in
        flight: sock_wfree() gives back the truesize of freed skbs
        (sock_def_write_space() wakes waiting senders), and each datagram the qdisc
        refused (ip_send_skb's -ENOBUFS) is a SndbufErrors, counted whether or not
        IP_RECVERR would have returned it."""
        s = self.socks.get(sk) or self.dying.get(sk)
        if s is None:
            return
        s.wmem_alloc = max(s.wmem_alloc - wmem, 0)
        if enobufs:
            self._sk_mib(s).add("SndbufErrors", enobufs)
        if s.dead:
            if not s.wmem_alloc:
                del self.dying[sk]
            return
        s.write_space()
