"""The IP layer's half of a socket (net/ipv4/ip_sockglue.c): the SOL_IP socket options
over struct inet_sock's fields, the control messages of sendmsg (ip_cmsg_send) and
recvmsg (ip_cmsg_recv_offset), and the error queue entries that ICMP errors and local
errors leave (ip_icmp_error, ip_local_error, ip_recv_error).

Pure functions over plain data: the UDP layer owns the sockets and calls these, as
udp.c calls ip_sockglue.c in the kernel. Control messages are bytes laid out as Linux
on x86_64 lays them out: struct cmsghdr {size_t cmsg_len; int cmsg_level; int
cmsg_type} (16 bytes), each message's data padded to 8 bytes (CMSG_ALIGN).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from services.core import errno
from services.core.checksum import csum_fold, csum_partial, csum_sub
from services.core.cred import CAP_NET_ADMIN, CAP_NET_RAW, ROOT, Cred
from services.core.datagram import Datagram
from services.core.ipcb import IpOptions, ipcb
from services.core.skbuff import SkBuff, alloc_skb
from services.core.sockaddr import make_sockaddr_in
from services.core.socket_uapi import (
    MSG_CTRUNC,
    MSG_ERRQUEUE,
    MSG_TRUNC,
    SCM_CREDENTIALS,
    SCM_RIGHTS,
    SCM_TS_OPT_ID,
    SCM_TXTIME,
    SO_EE_ORIGIN_ICMP,
    SO_EE_ORIGIN_LOCAL,
    SO_MARK,
    SO_PRIORITY,
    SO_TIMESTAMPING_NEW,
    SO_TIMESTAMPING_OLD,
    SOCK_DGRAM,
    SOCK_RAW,
    SOCK_STREAM,
    SOL_IP,
    SOL_SOCKET,
)
from services.core.tstamp import (
    SOCKCM_FLAG_TS_OPT_ID,
    SOF_TIMESTAMPING_OPT_CMSG,
    SOF_TIMESTAMPING_OPT_ID,
    SOF_TIMESTAMPING_TX_RECORD_MASK,
    TstampSock,
    sock_recv_timestamp,
)
from services.core.wire.icmp import ICMP_DEST_UNREACH, ICMP_HLEN, ICMP_PARAMETERPROB, ICMP_TIME_EXCEEDED
from services.ip.options import ip_options_echo, ip_options_get, ip_options_undo_bytes

# include/uapi/linux/in.h
IP_TOS = 1
IP_TTL = 2
IP_HDRINCL = 3
IP_OPTIONS = 4
IP_ROUTER_ALERT = 5
IP_RECVOPTS = 6
IP_RETOPTS = 7
IP_PKTINFO = 8
IP_PKTOPTIONS = 9
IP_MTU_DISCOVER = 10
IP_RECVERR = 11
IP_RECVTTL = 12
IP_RECVTOS = 13
IP_MTU = 14
IP_FREEBIND = 15
IP_PASSSEC = 18
IP_TRANSPARENT = 19
IP_RECVORIGDSTADDR = 20
IP_ORIGDSTADDR = IP_RECVORIGDSTADDR
IP_MINTTL = 21
IP_NODEFRAG = 22
IP_CHECKSUM = 23
IP_BIND_ADDRESS_NO_PORT = 24
IP_RECVFRAGSIZE = 25
IP_RECVERR_RFC4884 = 26
IP_UNICAST_IF = 50
IP_LOCAL_PORT_RANGE = 51
IP_PROTOCOL = 52
# include/uapi/asm-generic/socket.h: IP_PASSSEC's cmsg type, at SOL_IP.
SCM_SECURITY = 0x03
# include/uapi/linux/mroute.h: MRT_INIT .. MRT_FLUSH, the multicast routing daemon's.
MRT_BASE = 200
MRT_MAX = MRT_BASE + 12

IP_PMTUDISC_DONT = 0
IP_PMTUDISC_WANT = 1
IP_PMTUDISC_DO = 2
IP_PMTUDISC_PROBE = 3
IP_PMTUDISC_INTERFACE = 4
IP_PMTUDISC_OMIT = 5

# include/net/inet_sock.h: the INET_FLAGS_* bits that ask for receive cmsgs (inet->
# cmsg_flags, the IP_CMSG_* masks), in ip_cmsg_recv_offset()'s order.
IP_CMSG_PKTINFO = 1 << 0
IP_CMSG_TTL = 1 << 1
IP_CMSG_TOS = 1 << 2
IP_CMSG_RECVOPTS = 1 << 3
IP_CMSG_RETOPTS = 1 << 4
IP_CMSG_PASSSEC = 1 << 5
IP_CMSG_ORIGDSTADDR = 1 << 6
IP_CMSG_CHECKSUM = 1 << 7
IP_CMSG_RECVFRAGSIZE = 1 << 8

_CMSG_OPTION_BITS = {
    IP_PKTINFO: IP_CMSG_PKTINFO,
    IP_RECVTTL: IP_CMSG_TTL,
    IP_RECVTOS: IP_CMSG_TOS,
    IP_RECVOPTS: IP_CMSG_RECVOPTS,
    IP_RETOPTS: IP_CMSG_RETOPTS,
    IP_PASSSEC: IP_CMSG_PASSSEC,
    IP_RECVORIGDSTADDR: IP_CMSG_ORIGDSTADDR,
    # IP_CHECKSUM also counts in inet->convert_csum (inet_inc_convert_csum() when the
    # bit goes on, inet_dec_convert_csum() when it goes off): for an IPv4 socket the
    # count is the bit, so the bit stands for both.
    IP_CHECKSUM: IP_CMSG_CHECKSUM,
    IP_RECVFRAGSIZE: IP_CMSG_RECVFRAGSIZE,
}

# do_ip_setsockopt(): the options whose value is read as an int (optlen >= 4) or as
# one unsigned byte (optlen 1..3) before anything else looks at them.
_INT_OPTIONS = frozenset(
    {IP_PKTINFO, IP_RECVTTL, IP_RECVOPTS, IP_RECVTOS, IP_RETOPTS, IP_TOS, IP_TTL, IP_HDRINCL}
    | {IP_MTU_DISCOVER, IP_RECVERR, IP_ROUTER_ALERT, IP_NODEFRAG, IP_RECVORIGDSTADDR}
    | {IP_RECVFRAGSIZE, IP_RECVERR_RFC4884, IP_FREEBIND, IP_PASSSEC, IP_TRANSPARENT, IP_MINTTL}
    | {IP_CHECKSUM, IP_BIND_ADDRESS_NO_PORT, IP_LOCAL_PORT_RANGE, IP_UNICAST_IF}
)

# include/uapi/linux/errqueue.h
SO_EE_RFC4884_FLAG_INVALID = 1

IPV4_HLEN = 20
UDP_HLEN = 8
MAX_IPOPTLEN = 40

CMSG_HDR_LEN = 16
_CMSGHDR = struct.Struct("=Qii")
_INT = struct.Struct("=i")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_EE = struct.Struct("=IBBBBII")

# ip_tos2prio[] (net/ipv4/route.c): the TC_PRIO_* band of each IPTOS_TOS() value.
_IP_TOS2PRIO = (0, 0, 0, 0, 2, 2, 2, 2, 6, 6, 6, 6, 4, 4, 4, 4)


def cmsg_align(n: int) -> int:
    return (n + 7) & ~7


def cmsg_len(n: int) -> int:
    return CMSG_HDR_LEN + n


def cmsg_space(n: int) -> int:
    return CMSG_HDR_LEN + cmsg_align(n)


def rt_tos2priority(tos: int) -> int:
    return _IP_TOS2PRIO[(tos & 0x1E) >> 1]


@dataclass(frozen=True, slots=True)
class Cmsg:
    level: int
    type: int
    # CMSG_DATA() up to cmsg_len: its length is cmsg_len - sizeof(struct cmsghdr).
    data: bytes


def for_each_cmsghdr(control: bytes) -> Iterator[Cmsg]:
    """for_each_cmsghdr() with the CMSG_OK() check every user of it makes: EINVAL for a
    header whose cmsg_len is shorter than the header or runs past msg_controllen. What
    is left after the last message, if too short for another header, is ignored
    (CMSG_FIRSTHDR, __cmsg_nxthdr)."""
    size = len(control)
    off = 0
    while off + CMSG_HDR_LEN <= size:
        length, level, type_ = _CMSGHDR.unpack_from(control, off)
        if length < CMSG_HDR_LEN or length > size - off:
            raise errno.kernel_error(errno.EINVAL)
        yield Cmsg(level, type_, bytes(control[off + CMSG_HDR_LEN : off + length]))
        off += cmsg_align(length)


def build_cmsgs(cmsgs: list[tuple[int, int, bytes]]) -> bytes:
    """msg_control as a program lays it out: each message CMSG_SPACE() long."""
    out = bytearray()
    for level, type_, data in cmsgs:
        out += _CMSGHDR.pack(cmsg_len(len(data)), level, type_) + data
        out += bytes(cmsg_space(len(data)) - cmsg_len(len(data)))
    return bytes(out)


class MsgControl:
    """A recvmsg's msg_control being filled by put_cmsg() (net/core/scm.c): a message
    that does not fit in what is left is cut to it, cmsg_len saying so, and msg_flags
    gets MSG_CTRUNC; with less than a header left nothing is written."""

    def __init__(self, controllen: int) -> None:
        self.room = controllen
        self.buf = bytearray()
        self.flags = 0

    def put(self, level: int, type_: int, data: bytes) -> None:
        length = cmsg_len(len(data))
        if self.room < CMSG_HDR_LEN:
            self.flags |= MSG_CTRUNC
            return
        if self.room < length:
            self.flags |= MSG_CTRUNC
            length = self.room
        msg = _CMSGHDR.pack(length, level, type_) + data[: length - CMSG_HDR_LEN]
        space = min(cmsg_space(len(data)), self.room)
        self.buf += msg + bytes(space - len(msg))
        self.room -= space

    def control(self) -> bytes:
        return bytes(self.buf)


@dataclass(slots=True)
class InetOpts:
    """The parts of struct inet_sock the SOL_IP options set."""

    pmtudisc: int = IP_PMTUDISC_WANT
    # -1: the route's hop limit (net.ipv4.ip_default_ttl).
    uc_ttl: int = -1
    tos: int = 0
    cmsg_flags: int = 0
    recverr: bool = False
    recverr_rfc4884: bool = False
    # inet_opt: the options every datagram carries (IP_OPTIONS).
    opt: IpOptions | None = None
    # INET_FLAGS_FREEBIND and INET_FLAGS_TRANSPARENT: bind() may take an address that is
    # not ours (inet_can_nonlocal_bind); a transparent socket also sends from one
    # (inet_sk_flowi_flags: FLOWI_FLAG_ANYSRC).
    freebind: bool = False
    transparent: bool = False
    # INET_FLAGS_BIND_ADDRESS_NO_PORT: bind() to port 0 leaves the port to the first
    # send or connect (__inet_bind does not call get_port).
    bind_address_no_port: bool = False
    # IP_MINTTL: only TCP's receive path (tcp_v4_rcv) drops below it; UDP keeps it.
    min_ttl: int = 0
    # IP_LOCAL_PORT_RANGE: hi << 16 | lo, 0 for the netns range alone.
    local_port_range: int = 0
    # IP_UNICAST_IF (inet->uc_index): the device a unicast send or connect without one
    # of its own leaves by.
    uc_index: int = 0


class SockoptEffect(enum.Flag):
    """What do_ip_setsockopt() also does to the socket beyond its inet_sock fields."""

    NONE = 0
    # IP_RECVERR off: skb_errqueue_purge(&sk->sk_error_queue).
    PURGE_ERRQUEUE = enum.auto()
    # IP_TOS changed: sk_priority = rt_tos2priority(tos), sk_dst_reset().
    TOS_CHANGED = enum.auto()


def _ip_options_get(data: bytes) -> IpOptions:
    """ip_options_get() for a socket's own options; the emulated processes hold
    CAP_NET_RAW, as root does, so a source route is allowed."""
    return ip_options_get(data, cap_net_raw=True)


def do_ip_setsockopt(
    inet: InetOpts,
    optname: int,
    optval: bytes,
    sock_type: int = SOCK_DGRAM,
    *,
    cred: Cred = ROOT,
    dev_exists: Callable[[int], bool] = lambda ifindex: False,
    bound_dev_if: int = 0,
) -> SockoptEffect:
    """do_ip_setsockopt() for the options of a UDP socket; raises OSError with the
    kernel's errno. `cred` is the caller's (sockopt_ns_capable(): the calling task);
    `dev_exists` is dev_get_by_index() of the host's devices and `bound_dev_if` the
    socket's SO_BINDTODEVICE, for IP_UNICAST_IF."""
    optlen = len(optval)
    val = 0
    if optname in _INT_OPTIONS:
        if optlen >= 4:
            val = _INT.unpack_from(optval)[0]
        elif optlen >= 1:
            val = optval[0]
    # If optlen == 0, it is the same as val == 0.
    if optname == IP_ROUTER_ALERT:
        # ip_ra_control(): only a raw socket may ask for router alert packets.
        raise errno.kernel_error(errno.EINVAL)
    if MRT_BASE <= optname <= MRT_MAX:
        # ip_mroute_setsockopt(): only the raw IGMP socket of a multicast routing daemon.
        raise errno.kernel_error(errno.EOPNOTSUPP)
    bit = _CMSG_OPTION_BITS.get(optname)
    if bit is not None:
        if optname == IP_RECVFRAGSIZE and sock_type not in (SOCK_RAW, SOCK_DGRAM):
            raise errno.kernel_error(errno.EINVAL)
        inet.cmsg_flags = inet.cmsg_flags | bit if val else inet.cmsg_flags & ~bit
        return SockoptEffect.NONE
    if optname == IP_RECVERR:
        inet.recverr = bool(val)
        return SockoptEffect.NONE if val else SockoptEffect.PURGE_ERRQUEUE
    if optname == IP_RECVERR_RFC4884:
        if val < 0 or val > 1:
            raise errno.kernel_error(errno.EINVAL)
        inet.recverr_rfc4884 = bool(val)
        return SockoptEffect.NONE
    if optname in (IP_HDRINCL, IP_NODEFRAG):
        # Raw sockets' options.
        raise errno.kernel_error(errno.ENOPROTOOPT)
    if optname == IP_FREEBIND:
        if optlen < 1:
            raise errno.kernel_error(errno.EINVAL)
        inet.freebind = bool(val)
        return SockoptEffect.NONE
    if optname == IP_TRANSPARENT:
        # The capability before the length (optlen 0 is val 0, which needs none).
        if val and not (cred.capable(CAP_NET_RAW) or cred.capable(CAP_NET_ADMIN)):
            raise errno.kernel_error(errno.EPERM)
        if optlen < 1:
            raise errno.kernel_error(errno.EINVAL)
        inet.transparent = bool(val)
        return SockoptEffect.NONE
    if optname == IP_BIND_ADDRESS_NO_PORT:
        inet.bind_address_no_port = bool(val)
        return SockoptEffect.NONE
    if optname == IP_MINTTL:
        if optlen < 1 or not 0 <= val <= 255:
            raise errno.kernel_error(errno.EINVAL)
        inet.min_ttl = val
        return SockoptEffect.NONE
    if optname == IP_UNICAST_IF:
        # Exactly an int, the ifindex in network order; 0 clears it. A device that does
        # not exist is EADDRNOTAVAIL; on a socket bound to a device, only a device whose
        # L3 master (VRF) is that one is taken: none here, so EINVAL.
        if optlen != 4:
            raise errno.kernel_error(errno.EINVAL)
        ifindex = _INT.unpack(optval[:4][::-1])[0]
        if ifindex == 0:
            inet.uc_index = 0
            return SockoptEffect.NONE
        if not dev_exists(ifindex):
            raise errno.kernel_error(errno.EADDRNOTAVAIL)
        if bound_dev_if:
            raise errno.kernel_error(errno.EINVAL)
        inet.uc_index = ifindex
        return SockoptEffect.NONE
    if optname == IP_LOCAL_PORT_RANGE:
        # Exactly a u32: lo in the low 16 bits, hi in the high; either may be 0 (no
        # bound on that side), else lo <= hi.
        lo, hi = val & 0xFFFF, (val >> 16) & 0xFFFF
        if optlen != 4 or (lo and hi and lo > hi):
            raise errno.kernel_error(errno.EINVAL)
        inet.local_port_range = val & 0xFFFFFFFF
        return SockoptEffect.NONE
    if optname == IP_TTL:
        if optlen < 1 or (val != -1 and not 1 <= val <= 255):
            raise errno.kernel_error(errno.EINVAL)
        inet.uc_ttl = val
        return SockoptEffect.NONE
    if optname == IP_MTU_DISCOVER:
        # ip_sock_set_mtu_discover()
        if not IP_PMTUDISC_DONT <= val <= IP_PMTUDISC_OMIT:
            raise errno.kernel_error(errno.EINVAL)
        inet.pmtudisc = val
        return SockoptEffect.NONE
    if optname == IP_TOS:
        # __ip_sock_set_tos(): a stream socket keeps its ECN bits; a datagram socket's
        # value is taken whole (inet->tos is a u8, the comparison is with the int).
        old = inet.tos
        if sock_type == SOCK_STREAM:
            val = (val & ~3) | (old & 3)
        if old != val:
            inet.tos = val & 0xFF
            return SockoptEffect.TOS_CHANGED
        return SockoptEffect.NONE
    if optname == IP_OPTIONS:
        if optlen > MAX_IPOPTLEN:
            raise errno.kernel_error(errno.EINVAL)
        inet.opt = _ip_options_get(optval)
        return SockoptEffect.NONE
    raise errno.kernel_error(errno.ENOPROTOOPT)


def do_ip_getsockopt(
    inet: InetOpts, optname: int, optlen: int, *, default_ttl: int, dst_mtu: int, inet_num: int
) -> bytes:
    """do_ip_getsockopt() for the options of a UDP socket: the bytes copied out (their
    length is the optlen returned). `dst_mtu` is dst_mtu(sk_dst_get(sk)), 0 without a
    cached route; `inet_num` is the local port."""
    if MRT_BASE <= optname <= MRT_MAX:
        raise errno.kernel_error(errno.EOPNOTSUPP)
    if optlen < 0:
        raise errno.kernel_error(errno.EINVAL)
    bit = _CMSG_OPTION_BITS.get(optname)
    if bit is not None:
        val = int(bool(inet.cmsg_flags & bit))
    elif optname == IP_OPTIONS:
        if inet.opt is None or not inet.opt.optlen:
            return b""
        return ip_options_undo_bytes(inet.opt)[:optlen]
    elif optname == IP_MTU:
        if not dst_mtu:
            raise errno.kernel_error(errno.ENOTCONN)
        val = dst_mtu
    elif optname == IP_RECVERR:
        val = int(inet.recverr)
    elif optname == IP_RECVERR_RFC4884:
        val = int(inet.recverr_rfc4884)
    elif optname == IP_TTL:
        val = inet.uc_ttl if inet.uc_ttl >= 0 else default_ttl
    elif optname == IP_TOS:
        val = inet.tos
    elif optname == IP_MTU_DISCOVER:
        val = inet.pmtudisc
    elif optname in (IP_ROUTER_ALERT, IP_HDRINCL, IP_NODEFRAG):
        val = 0
    elif optname == IP_FREEBIND:
        val = int(inet.freebind)
    elif optname == IP_TRANSPARENT:
        val = int(inet.transparent)
    elif optname == IP_BIND_ADDRESS_NO_PORT:
        val = int(inet.bind_address_no_port)
    elif optname == IP_MINTTL:
        val = inet.min_ttl
    elif optname == IP_LOCAL_PORT_RANGE:
        # The u32 read back as the int it was given.
        val = _INT.unpack(_U32.pack(inet.local_port_range))[0]
    elif optname == IP_UNICAST_IF:
        # htonl(uc_index), read as the int it is.
        val = _INT.unpack(inet.uc_index.to_bytes(4, "big"))[0]
    elif optname == IP_PROTOCOL:
        val = inet_num
    else:
        raise errno.kernel_error(errno.ENOPROTOOPT)
    # copyval: a short buffer gets a char when the value fits in one.
    if 0 < optlen < 4 and 0 <= val <= 255:
        return bytes([val])
    return _INT.pack(val)[: min(4, optlen)]


@dataclass(slots=True)
class Ipcm:
    """struct ipcm_cookie and its sockcm_cookie: what one sendmsg's control messages
    (and the socket) decide for its datagram."""

    # Source address and output interface (IP_PKTINFO), 0 for none.
    addr: int = 0
    oif: int = 0
    # 0: the socket's (IP_TTL); -1: the socket's tos (IP_TOS).
    ttl: int = 0
    tos: int = -1
    priority: int = 0
    mark: int = 0
    # sockcm_cookie: sk_tsflags with a SO_TIMESTAMPING message's TX_RECORD bits in their
    # place (and SOCKCM_FLAG_TS_OPT_ID when SCM_TS_OPT_ID gave ts_opt_id), SCM_TXTIME's
    # transmit_time (ns on the SO_TXTIME clock), and whether the socket has SO_TXTIME
    # (SOCK_TXTIME, without which SCM_TXTIME is refused).
    tsflags: int = 0
    ts_opt_id: int = 0
    transmit_time: int = 0
    txtime: bool = False
    opt: IpOptions | None = None
    gso_size: int = 0
    # The sender's credentials, which SO_MARK and SO_PRIORITY messages are checked
    # against (ns_capable(): the calling task).
    cred: Cred = ROOT


# include/uapi/linux/pkt_sched.h: the priorities anyone may set (TC_PRIO_BESTEFFORT 0
# to TC_PRIO_INTERACTIVE 6).
TC_PRIO_INTERACTIVE = 6


def sk_set_prio_allowed(cred: Cred, val: int) -> bool:
    """sk_set_prio_allowed() (net/core/sock.c), for SO_PRIORITY and its cmsg: 0 to 6
    for anyone, anything with CAP_NET_RAW or CAP_NET_ADMIN."""
    return 0 <= val <= TC_PRIO_INTERACTIVE or cred.capable(CAP_NET_RAW) or cred.capable(CAP_NET_ADMIN)


def may_set_mark(cred: Cred) -> bool:
    """SO_MARK's check (sk_setsockopt, __sock_cmsg_send): CAP_NET_RAW or CAP_NET_ADMIN."""
    return cred.capable(CAP_NET_RAW) or cred.capable(CAP_NET_ADMIN)


def sock_cmsg_send(c: Cmsg, ipc: Ipcm) -> None:
    """__sock_cmsg_send() (net/core/sock.c) for a UDP socket, its capability checks
    against the sender's ipc.cred."""
    t = c.type
    if t == SO_MARK:
        # The capability before the length: any SO_MARK message is EPERM without it.
        if not may_set_mark(ipc.cred):
            raise errno.kernel_error(errno.EPERM)
        if len(c.data) != 4:
            raise errno.kernel_error(errno.EINVAL)
        ipc.mark = _U32.unpack(c.data)[0]
    elif t in (SO_TIMESTAMPING_OLD, SO_TIMESTAMPING_NEW):
        if len(c.data) != 4:
            raise errno.kernel_error(errno.EINVAL)
        tsflags = _U32.unpack(c.data)[0]
        if tsflags & ~SOF_TIMESTAMPING_TX_RECORD_MASK:
            raise errno.kernel_error(errno.EINVAL)
        # Only the flags that ask for a TX timestamp are this send's; the socket's
        # others (OPT_ID, OPT_TSONLY, ...) stay.
        ipc.tsflags = ipc.tsflags & ~SOF_TIMESTAMPING_TX_RECORD_MASK | tsflags
    elif t == SCM_TXTIME:
        if not ipc.txtime or len(c.data) != 8:
            raise errno.kernel_error(errno.EINVAL)
        ipc.transmit_time = _U64.unpack(c.data)[0]
    elif t == SCM_TS_OPT_ID:
        # 6.13: this send's OPT_ID key, instead of the next of sk_tskey (which it does
        # not advance); 0 is a key like any other. ipc.tsflags has the socket's OPT_ID.
        if not ipc.tsflags & SOF_TIMESTAMPING_OPT_ID or len(c.data) != 4:
            raise errno.kernel_error(errno.EINVAL)
        ipc.ts_opt_id = _U32.unpack(c.data)[0]
        ipc.tsflags |= SOCKCM_FLAG_TS_OPT_ID
    elif t == SO_PRIORITY:
        # The length before the capability (sk_set_prio_allowed() on the u32).
        if len(c.data) != 4:
            raise errno.kernel_error(errno.EINVAL)
        priority = _U32.unpack(c.data)[0]
        if not sk_set_prio_allowed(ipc.cred, priority):
            raise errno.kernel_error(errno.EPERM)
        ipc.priority = priority
    elif t not in (SCM_RIGHTS, SCM_CREDENTIALS):
        # SCM_RIGHTS and SCM_CREDENTIALS are SOL_UNIX's in meaning, and let through.
        raise errno.kernel_error(errno.EINVAL)


def ip_cmsg_send(control: bytes, ipc: Ipcm) -> None:
    """ip_cmsg_send(): the SOL_IP and SOL_SOCKET messages; other levels are skipped."""
    for c in for_each_cmsghdr(control):
        if c.level == SOL_SOCKET:
            sock_cmsg_send(c, ipc)
            continue
        if c.level != SOL_IP:
            continue
        n = len(c.data)
        if c.type == IP_RETOPTS:
            # At most 40 bytes are taken, whatever cmsg_len says.
            ipc.opt = _ip_options_get(c.data[:MAX_IPOPTLEN])
        elif c.type == IP_PKTINFO:
            if n != 12:
                raise errno.kernel_error(errno.EINVAL)
            ifindex = _INT.unpack_from(c.data)[0]
            if ifindex:
                ipc.oif = ifindex
            ipc.addr = int.from_bytes(c.data[4:8], "big")
        elif c.type == IP_TTL:
            if n != 4:
                raise errno.kernel_error(errno.EINVAL)
            val = _INT.unpack(c.data)[0]
            if not 1 <= val <= 255:
                raise errno.kernel_error(errno.EINVAL)
            ipc.ttl = val
        elif c.type == IP_TOS:
            if n == 4:
                val = _INT.unpack(c.data)[0]
            elif n == 1:
                val = c.data[0]
            else:
                raise errno.kernel_error(errno.EINVAL)
            if not 0 <= val <= 255:
                raise errno.kernel_error(errno.EINVAL)
            ipc.tos = val
            ipc.priority = rt_tos2priority(val)
        elif c.type == IP_PROTOCOL:
            # Only raw sockets use the protocol; a UDP datagram stays UDP.
            if n != 4 or not 1 <= _INT.unpack(c.data)[0] <= 255:
                raise errno.kernel_error(errno.EINVAL)
        else:
            raise errno.kernel_error(errno.EINVAL)


RetOpts = Callable[[], bytes | None]


def ip_retopts(header: bytes | bytearray | memoryview, cb: bytes | bytearray) -> RetOpts:
    """ip_cmsg_recv_retopts()'s options: ip_options_echo() of the received header's
    options (IPCB(skb)->opt), undone into the form setsockopt takes; None when the echo
    fails (the caller sets MSG_CTRUNC)."""

    def echo() -> bytes | None:
        try:
            dopt = ip_options_echo(header, ipcb(cb).opt)
        except OSError:
            return None
        return ip_options_undo_bytes(dopt)

    return echo


def ip_cmsg_recv_offset(
    msg: MsgControl,
    cmsg_flags: int,
    cb: bytes | bytearray,
    iph: bytes | bytearray | memoryview,
    ports: bytes | bytearray | memoryview,
    retopts: RetOpts | None = None,
    csum: int | None = None,
) -> None:
    """ip_cmsg_recv_offset(): the cmsgs the socket asked for, in the kernel's order.
    `cb` is skb->cb (PKTINFO_SKB_CB over IPCB), `iph` the IP header with its options,
    `ports` the first bytes at the transport header. `retopts` is ip_options_echo()
    of the packet's options (None when the echo fails). `csum` is what IP_CHECKSUM
    reports (ip_cmsg_checksum()) for a CHECKSUM_COMPLETE skb, None for any other
    ip_summed."""
    if cmsg_flags & IP_CMSG_PKTINFO:
        # struct in_pktinfo: ipi_ifindex and ipi_spec_dst as ipv4_pktinfo_prepare() left
        # them in cb, ipi_addr the header's destination.
        msg.put(SOL_IP, IP_PKTINFO, bytes(cb[0:8]) + bytes(iph[16:20]))
    if cmsg_flags & IP_CMSG_TTL:
        msg.put(SOL_IP, IP_TTL, _INT.pack(iph[8]))
    if cmsg_flags & IP_CMSG_TOS:
        msg.put(SOL_IP, IP_TOS, bytes(iph[1:2]))
    optlen = ipcb(cb).opt.optlen
    if cmsg_flags & IP_CMSG_RECVOPTS and optlen:
        msg.put(SOL_IP, IP_RECVOPTS, bytes(iph[IPV4_HLEN : IPV4_HLEN + optlen]))
    if cmsg_flags & IP_CMSG_RETOPTS and optlen and retopts is not None:
        echoed = retopts()
        if echoed is None:
            msg.flags |= MSG_CTRUNC
        else:
            msg.put(SOL_IP, IP_RETOPTS, echoed)
    # IP_CMSG_PASSSEC: ip_cmsg_recv_security() puts SCM_SECURITY only when an LSM
    # gives the skb a secid (security_socket_getpeersec_dgram); the emulated host runs
    # none, as a kernel without SELinux or Smack labels none, so nothing is put.
    if cmsg_flags & IP_CMSG_ORIGDSTADDR and len(ports) >= 4:
        port = int.from_bytes(ports[2:4], "big")
        msg.put(SOL_IP, IP_ORIGDSTADDR, make_sockaddr_in(int.from_bytes(iph[16:20], "big"), port))
    if cmsg_flags & IP_CMSG_CHECKSUM and csum is not None:
        msg.put(SOL_IP, IP_CHECKSUM, _U32.pack(csum))
    if cmsg_flags & IP_CMSG_RECVFRAGSIZE:
        frag_max_size = ipcb(cb).frag_max_size
        if frag_max_size:
            msg.put(SOL_IP, IP_RECVFRAGSIZE, _INT.pack(frag_max_size))


def ip_cmsg_checksum(csum: int, peeked: bytes | bytearray | memoryview = b"") -> int:
    """ip_cmsg_recv_checksum()'s value: skb->csum of a CHECKSUM_COMPLETE skb (the
    payload's sum once the UDP header is pulled, skb_pull_rcsum), less the sum of the
    `peeked` bytes a peek offset skips (csum_sub(csum, skb_checksum(skb, tend_off,
    offset, 0)))."""
    if peeked:
        csum = csum_sub(csum, csum_partial(peeked))
    return csum & 0xFFFFFFFF


def inet_sk_get_local_port_range(inet: InetOpts, low: int, high: int) -> tuple[int, int]:
    """inet_sk_get_local_port_range() (net/ipv4/inet_connection_sock.c): the netns
    range [low, high] (ip_local_port_range) narrowed by the socket's
    IP_LOCAL_PORT_RANGE, each bound taken only where it falls inside the range so far."""
    sk_range = inet.local_port_range
    if sk_range:
        sk_lo, sk_hi = sk_range & 0xFFFF, sk_range >> 16
        if low <= sk_lo <= high:
            low = sk_lo
        if low <= sk_hi <= high:
            high = sk_hi
    return low, high


@dataclass(slots=True)
class SockExtendedErr:
    """struct sock_extended_err (include/uapi/linux/errqueue.h)."""

    ee_errno: int
    ee_origin: int
    ee_type: int = 0
    ee_code: int = 0
    ee_pad: int = 0
    ee_info: int = 0
    # ee_data, or struct sock_ee_data_rfc4884 {u16 len; u8 flags; u8 reserved}.
    ee_data: int = 0

    def pack(self) -> bytes:
        return _EE.pack(
            self.ee_errno, self.ee_origin, self.ee_type, self.ee_code, self.ee_pad, self.ee_info, self.ee_data
        )


@dataclass(slots=True)
class SockExterrSkb:
    """An skb on sk_error_queue with its SKB_EXT_ERR(skb): data at what recvmsg copies
    out, the network header at the header the error came in (for ICMP: the outer IP
    header, whose source is the offender, and whose cb holds IPCB); `addr` and `port`
    are what msg_name gets (*(network header + addr_offset), serr->port)."""

    skb: SkBuff
    ee: SockExtendedErr
    addr: int
    port: int
    truesize: int = field(init=False)

    def __post_init__(self) -> None:
        self.truesize = self.skb.truesize


def _rfc4884_valid(payload: bytes, off: int) -> bool:
    """ip_icmp_error_rfc4884_validate(): the extension structure's version, checksum and
    object lengths."""
    if off + 4 > len(payload):
        return False
    if payload[off] >> 4 != 2:
        return True
    if (payload[off + 2] or payload[off + 3]) and csum_fold(csum_partial(payload[off:])):
        return False
    off += 4
    while off < len(payload):
        if off + 4 > len(payload):
            return False
        olen = int.from_bytes(payload[off : off + 2], "big")
        if olen < 4:
            return False
        off += olen
        if off > len(payload):
            return False
    return True


def ip_icmp_error(
    icmp: SkBuff, err: int, icmp_type: int, icmp_code: int, port: int, info: int, rfc4884: bool
) -> SockExterrSkb | None:
    """ip_icmp_error(): a clone of the ICMP skb for the error queue, its data moved to
    the quoted datagram's payload (after the quoted IP and UDP headers). `icmp` has its
    data at the quoted IP header, the ICMP header before it (transport_header)."""
    skb = icmp.clone()
    quoted = skb.linear()
    ihl = (quoted[0] & 0x0F) * 4
    addr = int.from_bytes(quoted[16:20], "big")
    icmph = skb.transport_header if skb.transport_header + ICMP_HLEN <= skb.data else skb.data - ICMP_HLEN
    ee = SockExtendedErr(err, SO_EE_ORIGIN_ICMP, icmp_type, icmp_code, 0, info, 0)
    if not skb.pull(ihl + UDP_HLEN):
        return None
    skb.reset_transport_header()
    if rfc4884 and icmp_type in (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED, ICMP_PARAMETERPROB) and icmph >= 0:
        # ipv4_icmp_error_rfc4884(): the "length" octet counts 32-bit words of the
        # original datagram; an extension structure may follow it.
        off = skb.head[icmph + 5] * 4
        hlen = ihl + UDP_HLEN
        if off >= 128 and off >= hlen:
            off -= hlen
            payload = skb.payload()
            if off + 4 <= len(payload):
                flags = 0 if _rfc4884_valid(payload, off) else SO_EE_RFC4884_FLAG_INVALID
                ee.ee_data = off | flags << 16
    return SockExterrSkb(skb, ee, addr, port)


def ip_local_error(err: int, daddr: int, port: int, info: int) -> SockExterrSkb:
    """ip_local_error() (the caller checks inet->recverr): an empty skb whose only
    content is the IP header msg_name's address is read from."""
    skb = alloc_skb(IPV4_HLEN)
    skb.put(IPV4_HLEN)[16:20] = daddr.to_bytes(4, "big")
    skb.reset_network_header()
    skb.pull(IPV4_HLEN)
    skb.reset_transport_header()
    return SockExterrSkb(skb, SockExtendedErr(err, SO_EE_ORIGIN_LOCAL, ee_info=info), daddr, port)


@dataclass(slots=True)
class RecvMsg(Datagram):
    """What udp_recvmsg()/ip_recv_error() hand up: the Datagram (saddr/sport being
    msg_name) and msg_control as put_cmsg() filled it."""

    control: bytes = b""


def ipv4_datagram_support_cmsg(serr: SockExterrSkb, tsflags: int) -> bool:
    """ipv4_datagram_support_cmsg(): an ICMP error always has the IP cmsgs of its packet
    and an offender; a local error never; a TX timestamp only with
    SOF_TIMESTAMPING_OPT_CMSG and a device it was taken on (none for OPT_TSONLY's empty
    skb). For a timestamp, in_pktinfo's ipi_spec_dst is then the packet's source."""
    origin = serr.ee.ee_origin
    if origin == SO_EE_ORIGIN_ICMP:
        return True
    if origin == SO_EE_ORIGIN_LOCAL:
        return False
    skb = serr.skb
    if not tsflags & SOF_TIMESTAMPING_OPT_CMSG or not _INT.unpack_from(skb.cb)[0]:
        return False
    nh = skb.network_header
    skb.cb[4:8] = skb.head[nh + 12 : nh + 16]
    return True


def ip_recv_error(
    serr: SockExterrSkb, length: int, controllen: int, cmsg_flags: int, sk: TstampSock
) -> RecvMsg:
    """ip_recv_error() for an skb sock_dequeue_err_skb() took: the payload (cut to
    `length`, MSG_TRUNC), the timestamp cmsgs (sock_recv_timestamp), msg_name for ICMP and
    local errors only (ipv4_datagram_support_addr; daddr says it was filled: 0 for a
    timestamp), the IP cmsgs of the packet when ipv4_datagram_support_cmsg() allows,
    then IP_RECVERR (sock_extended_err and the offender's sockaddr_in, zeros unless
    supported), and MSG_ERRQUEUE."""
    skb = serr.skb
    payload = skb.payload()
    msg_flags = 0
    copied = len(payload)
    if copied > length:
        msg_flags |= MSG_TRUNC
        copied = length
    msg = MsgControl(controllen)
    for level, type_, data in sock_recv_timestamp(sk, skb, err_queue=True):
        msg.put(level, type_, data)
    origin = serr.ee.ee_origin
    has_name = origin in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_LOCAL)
    offender = bytes(16)
    if ipv4_datagram_support_cmsg(serr, sk.tsflags):
        nh = skb.network_header
        iph = skb.head[nh : nh + (skb.head[nh] & 0x0F) * 4]
        offender = make_sockaddr_in(int.from_bytes(iph[12:16], "big"), 0)
        if cmsg_flags:
            th = skb.transport_header
            ports = skb.head[th : min(th + 4, skb.tail)]
            ip_cmsg_recv_offset(msg, cmsg_flags, skb.cb, iph, ports, ip_retopts(iph, skb.cb))
    msg.put(SOL_IP, IP_RECVERR, serr.ee.pack() + offender)
    return RecvMsg(
        data=payload[:copied],
        ulen=copied,
        msg_flags=msg_flags | msg.flags | MSG_ERRQUEUE,
        saddr=serr.addr if has_name else 0,
        sport=serr.port if has_name else 0,
        daddr=serr.addr if has_name else 0,
        control=msg.control(),
    )
