"""The options of a UDP socket's struct sock and struct udp_sock: sk_setsockopt() /
sk_getsockopt() (net/core/sock.c) for the SOL_SOCKET options that live in struct sock,
udp_lib_setsockopt() / udp_lib_getsockopt() (net/ipv4/udp.c) for SOL_UDP and
SOL_UDPLITE. udp_setsockopt() sends SOL_SOCKET here too (6.18 does, to keep UDP's
forward-allocation threshold in step with SO_RCVBUF); SOL_IP is ip_sockglue's.

The caller is root with every capability (the socket layer's processes have no
credentials of their own yet), so SO_RCVBUFFORCE, SO_SNDBUFFORCE, SO_MARK, SO_PRIORITY
above 6 and rebinding SO_BINDTODEVICE are allowed, as for root."""

from __future__ import annotations

import struct
from collections.abc import Callable

from services.core import bpf, errno
from services.core.socket_uapi import (
    SO_ATTACH_FILTER,
    SO_BINDTODEVICE,
    SO_BINDTOIFINDEX,
    SO_BROADCAST,
    SO_DETACH_FILTER,
    SO_DONTROUTE,
    SO_ERROR,
    SO_GET_FILTER,
    SO_LOCK_FILTER,
    SO_MARK,
    SO_MEMINFO,
    SO_NO_CHECK,
    SO_PEEK_OFF,
    SO_PRIORITY,
    SO_RCVBUF,
    SO_RCVBUFFORCE,
    SO_REUSEADDR,
    SO_REUSEPORT,
    SO_RXQ_OVFL,
    SO_SNDBUF,
    SO_SNDBUFFORCE,
    UDP_CORK,
    UDP_ENCAP,
    UDP_GRO,
    UDP_NO_CHECK6_RX,
    UDP_NO_CHECK6_TX,
    UDP_SEGMENT,
    UDPLITE_RECV_CSCOV,
    UDPLITE_SEND_CSCOV,
)
from services.core.sysctl import Sysctl
from services.udp.sock import SOCK_RCVBUF_LOCK, SOCK_SNDBUF_LOCK, UDPLITE_RECV_CC, UDPLITE_SEND_CC, UdpSock
from services.udp.sockfilter import sk_attach_filter, sk_filter_size

# include/net/sock.h: SOCK_MIN_SNDBUF and SOCK_MIN_RCVBUF on x86_64
# (2 * TCP_SKB_MIN_TRUESIZE and TCP_SKB_MIN_TRUESIZE, 2048 + SKB_DATA_ALIGN(sizeof
# (struct sk_buff))), as setting SO_SNDBUF/SO_RCVBUF to 1 on this machine reads back.
SOCK_MIN_SNDBUF = 4608
SOCK_MIN_RCVBUF = 2304
INT_MAX = 0x7FFFFFFF
USHRT_MAX = 0xFFFF
# include/uapi/linux/if.h
IFNAMSIZ = 16
# sk_set_prio_allowed(): priorities a caller without CAP_NET_ADMIN may set.
TC_PRIO_INTERACTIVE = 6
SK_CAN_REUSE = 1

_INT = struct.Struct("=i")


def _int_out(val: int, optlen: int) -> bytes:
    """sk_getsockopt()'s copy of an int option (a u32 field reads as the int it is):
    min(optlen, sizeof(int)) bytes."""
    if optlen < 0:
        raise errno.kernel_error(errno.EINVAL)
    val &= 0xFFFFFFFF
    return _INT.pack(val - (1 << 32) if val >= 1 << 31 else val)[: min(optlen, 4)]


class SockOpts:
    """The option calls of one host's UDP sockets. `devices` is ifindex → name of the
    host's devices (dev_get_by_name for SO_BINDTODEVICE); `rehash` puts a socket whose
    sk_bound_dev_if changed back in the table; `push_pending` is
    udp_push_pending_frames for UDP_CORK's uncork."""

    def __init__(
        self,
        sysctl: Sysctl,
        devices: Callable[[], dict[int, str]],
        rehash: Callable[[UdpSock], None],
        push_pending: Callable[[UdpSock], None],
    ) -> None:
        self.sysctl = sysctl
        self.devices = devices
        self.rehash = rehash
        self.push_pending = push_pending

    # SOL_SOCKET

    def sk_setsockopt(self, s: UdpSock, optname: int, optval: bytes) -> None:
        """sk_setsockopt() for the options kept in struct sock; ENOPROTOOPT for the rest."""
        if optname == SO_BINDTODEVICE:
            self._setbindtodevice(s, optval)
            return
        if optname == SO_ATTACH_FILTER:
            # optval is the instruction array: the int-sized check was the socket
            # layer's, on the user's struct sock_fprog.
            self._attach_filter(s, optval)
            return
        if len(optval) < 4:
            raise errno.kernel_error(errno.EINVAL)
        val = _INT.unpack_from(optval)[0]
        valbool = val != 0
        if optname == SO_REUSEADDR:
            s.reuse = SK_CAN_REUSE if valbool else 0
        elif optname == SO_REUSEPORT:
            s.reuseport = valbool
        elif optname == SO_DONTROUTE:
            # sock_valbool_flag(SOCK_LOCALROUTE), then sk_dst_reset().
            s.localroute = valbool
            s.dst_cache = None
        elif optname == SO_BROADCAST:
            s.broadcast = valbool
        elif optname in (SO_SNDBUF, SO_SNDBUFFORCE):
            if optname == SO_SNDBUF:
                # min_t(u32, val, sysctl_wmem_max): a negative value is a huge u32.
                val = min(val & 0xFFFFFFFF, self.sysctl.get_int("net.core.wmem_max"))
            else:
                val = max(val, 0)
            # set_sndbuf: the doubled value (sk_buff overhead), never below the minimum;
            # min_t(int, val, INT_MAX / 2) first so that the doubling cannot overflow.
            s.userlocks |= SOCK_SNDBUF_LOCK
            s.sndbuf = max(min(val, INT_MAX // 2) * 2, SOCK_MIN_SNDBUF)
            s.write_space()
        elif optname in (SO_RCVBUF, SO_RCVBUFFORCE):
            if optname == SO_RCVBUF:
                val = min(val & 0xFFFFFFFF, self.sysctl.get_int("net.core.rmem_max"))
            else:
                val = max(val, 0)
            # __sock_set_rcvbuf()
            s.userlocks |= SOCK_RCVBUF_LOCK
            s.rcvbuf = max(min(val, INT_MAX // 2) * 2, SOCK_MIN_RCVBUF)
        elif optname == SO_NO_CHECK:
            s.no_check_tx = valbool
        elif optname == SO_PRIORITY:
            # sk_set_prio_allowed(): 0..6, or anything with CAP_NET_ADMIN (root here).
            s.priority = val & 0xFFFFFFFF
        elif optname == SO_MARK:
            # sock_set_mark(): CAP_NET_ADMIN (root here); a new mark resets the route.
            if s.mark != val & 0xFFFFFFFF:
                s.mark = val & 0xFFFFFFFF
                s.dst_cache = None
        elif optname == SO_RXQ_OVFL:
            s.rxq_ovfl = valbool
        elif optname == SO_PEEK_OFF:
            # inet_dgram_ops.set_peek_off = udp_set_peek_off → sk_set_peek_off().
            s.peek_off = val
        elif optname == SO_BINDTOIFINDEX:
            self._bindtoindex(s, val)
        elif optname == SO_DETACH_FILTER:
            # sk_detach_filter(): EPERM while locked, ENOENT without a filter.
            if s.filter_locked:
                raise errno.kernel_error(errno.EPERM)
            if s.sk_filter is None:
                raise errno.kernel_error(errno.ENOENT)
            s.omem_alloc -= sk_filter_size(s.sk_filter)
            s.sk_filter = None
        elif optname == SO_LOCK_FILTER:
            if s.filter_locked and not valbool:
                raise errno.kernel_error(errno.EPERM)
            s.filter_locked = valbool
        else:
            raise errno.kernel_error(errno.ENOPROTOOPT)

    def _setbindtodevice(self, s: UdpSock, optval: bytes) -> None:
        """sock_setbindtodevice(): the name is cut to IFNAMSIZ - 1 and at its first NUL;
        "" (or optlen 0) unbinds; an unknown name is ENODEV."""
        name = optval[: IFNAMSIZ - 1].split(b"\0", 1)[0]
        index = 0
        if name:
            wanted = name.decode("latin-1")
            index = next((i for i, n in self.devices().items() if n == wanted), 0)
            if not index:
                raise errno.kernel_error(errno.ENODEV)
        self._bindtoindex(s, index)

    def _bindtoindex(self, s: UdpSock, ifindex: int) -> None:
        """sock_bindtoindex_locked(): any index from 0 (CAP_NET_RAW would be needed to
        change a binding: root here), then the rehash and sk_dst_reset()."""
        if ifindex < 0:
            raise errno.kernel_error(errno.EINVAL)
        s.bound_dev_if = ifindex
        self.rehash(s)
        s.dst_cache = None

    def _attach_filter(self, s: UdpSock, optval: bytes) -> None:
        """sk_attach_filter(): the program (struct sock_filter array, which the socket
        layer copied from the user's struct sock_fprog) checked by bpf_check_classic();
        EPERM while SO_LOCK_FILTER holds the old one."""
        if s.filter_locked:
            raise errno.kernel_error(errno.EPERM)
        old = s.sk_filter
        prog = sk_attach_filter(optval, old, s.omem_alloc, self.sysctl.get_int("net.core.optmem_max"))
        s.omem_alloc += sk_filter_size(prog) - (sk_filter_size(old) if old is not None else 0)
        s.sk_filter = prog

    def _get_filter(self, s: UdpSock, optlen: int) -> tuple[bytes, int]:
        """sk_get_filter(): optlen counts instructions, not bytes. Nothing without a
        filter; with optlen 0 only the count; EINVAL when fewer instructions than the
        program has fit; else the program as attached, optlen its instruction count."""
        f = s.sk_filter
        if f is None:
            return b"", 0
        n = len(f.insns)
        if not optlen:
            return b"", n
        if optlen < n:
            raise errno.kernel_error(errno.EINVAL)
        return bpf.emit_sock_filters(f.insns), n

    def sk_getsockopt(self, s: UdpSock, optname: int, optlen: int) -> tuple[bytes, int]:
        """sk_getsockopt() for the options kept in struct sock, and SO_ERROR (which
        takes sk_err: sock_error()): the bytes written and the optlen returned."""
        if optlen < 0:
            raise errno.kernel_error(errno.EINVAL)
        if optname == SO_BINDTODEVICE:
            name = self._getbindtodevice(s, optlen)
            return name, len(name)
        if optname == SO_GET_FILTER:
            return self._get_filter(s, optlen)
        if optname == SO_MEMINFO:
            # sk_get_meminfo(): u32 mem[SK_MEMINFO_VARS], cut to optlen.
            mem = struct.pack(
                "=9I",
                s.rmem_alloc,
                s.rcvbuf,
                s.wmem_alloc,
                s.sndbuf,
                s.forward_alloc,
                0,  # sk_wmem_queued: UDP queues nothing to send
                s.omem_alloc,
                0,  # sk_backlog.len: the emulated socket is never owned by a user
                s.drops & 0xFFFFFFFF,
            )[:optlen]
            return mem, len(mem)
        values: dict[int, Callable[[], int]] = {
            SO_REUSEADDR: lambda: s.reuse,
            SO_REUSEPORT: lambda: int(s.reuseport),
            SO_DONTROUTE: lambda: int(s.localroute),
            SO_BROADCAST: lambda: int(s.broadcast),
            SO_SNDBUF: lambda: s.sndbuf,
            SO_RCVBUF: lambda: s.rcvbuf,
            SO_NO_CHECK: lambda: int(s.no_check_tx),
            SO_PRIORITY: lambda: s.priority,
            SO_MARK: lambda: s.mark,
            SO_RXQ_OVFL: lambda: int(s.rxq_ovfl),
            SO_PEEK_OFF: lambda: s.peek_off,
            SO_BINDTOIFINDEX: lambda: s.bound_dev_if,
            SO_LOCK_FILTER: lambda: int(s.filter_locked),
            # sk_getsockopt(): -sock_error(), else sk_err_soft (which UDP never sets).
            SO_ERROR: s.sock_error,
        }
        get = values.get(optname)
        if get is None:
            raise errno.kernel_error(errno.ENOPROTOOPT)
        val = _int_out(get(), optlen)
        return val, len(val)

    def _getbindtodevice(self, s: UdpSock, optlen: int) -> bytes:
        """sock_getbindtodevice(): b"" when unbound; else the name with its NUL, EINVAL
        when the caller's buffer is shorter than IFNAMSIZ."""
        if not s.bound_dev_if:
            return b""
        if optlen < IFNAMSIZ:
            raise errno.kernel_error(errno.EINVAL)
        name = self.devices().get(s.bound_dev_if)
        if name is None:
            raise errno.kernel_error(errno.ENODEV)  # netdev_get_name()
        return name.encode("latin-1") + b"\0"

    # SOL_UDP, SOL_UDPLITE

    def udp_lib_setsockopt(self, s: UdpSock, optname: int, optval: bytes, is_udplite: bool) -> None:
        if len(optval) < 4:
            raise errno.kernel_error(errno.EINVAL)
        val = _INT.unpack_from(optval)[0]
        valbool = val != 0
        if optname == UDP_CORK:
            # Any value but 0 corks; 0 uncorks and pushes what is pending, whether
            # UDP_CORK or MSG_MORE started it.
            s.corkflag = valbool
            if not valbool:
                self.push_pending(s)
        elif optname == UDP_ENCAP:
            # Encapsulation sockets hand datagrams to ESP/L2TP, which the emulator has not.
            raise errno.kernel_error(errno.ENOPROTOOPT, "UDP_ENCAP: no encapsulation is emulated")
        elif optname == UDP_NO_CHECK6_TX:
            s.no_check6_tx = valbool
        elif optname == UDP_NO_CHECK6_RX:
            s.no_check6_rx = valbool
        elif optname == UDP_SEGMENT:
            if val < 0 or val > USHRT_MAX:
                raise errno.kernel_error(errno.EINVAL)
            s.gso_size = val
        elif optname == UDP_GRO:
            # udp_lib_setsockopt(): GRO_ENABLED and ACCEPT_L4 together.
            s.gro_enabled = valbool
        elif optname in (UDPLITE_SEND_CSCOV, UDPLITE_RECV_CSCOV):
            # RFC 3828 partial coverage; refused on UDP sockets. A coverage below the
            # header (but not 0, full coverage) is the header's 8 bytes.
            if not is_udplite:
                raise errno.kernel_error(errno.ENOPROTOOPT)
            if val != 0 and val < 8:
                val = 8
            elif val > USHRT_MAX:
                val = USHRT_MAX
            if optname == UDPLITE_SEND_CSCOV:
                s.pcslen = val
                s.pcflag |= UDPLITE_SEND_CC
            else:
                s.pcrlen = val
                s.pcflag |= UDPLITE_RECV_CC
        else:
            raise errno.kernel_error(errno.ENOPROTOOPT)

    def udp_lib_getsockopt(self, s: UdpSock, optname: int, optlen: int) -> tuple[bytes, int]:
        """udp_lib_getsockopt(): UDP-Lite's coverage reads 0 on a UDP socket."""
        values: dict[int, Callable[[], int]] = {
            UDP_CORK: lambda: int(s.corkflag),
            UDP_ENCAP: lambda: 0,
            UDP_NO_CHECK6_TX: lambda: int(s.no_check6_tx),
            UDP_NO_CHECK6_RX: lambda: int(s.no_check6_rx),
            UDP_SEGMENT: lambda: s.gso_size,
            UDP_GRO: lambda: int(s.gro_enabled),
            UDPLITE_SEND_CSCOV: lambda: s.pcslen,
            UDPLITE_RECV_CSCOV: lambda: s.pcrlen,
        }
        if optlen < 0:
            raise errno.kernel_error(errno.EINVAL)
        get = values.get(optname)
        if get is None:
            raise errno.kernel_error(errno.ENOPROTOOPT)
        val = _int_out(get(), optlen)
        return val, len(val)
