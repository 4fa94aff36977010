"""The options of a UDP socket's struct sock and struct udp_sock: sk_setsockopt() /
sk_getsockopt() (net/core/sock.c) for the SOL_SOCKET options that live in struct sock,
udp_lib_setsockopt() / udp_lib_getsockopt() (net/ipv4/udp.c) for SOL_UDP and
SOL_UDPLITE. udp_setsockopt() sends SOL_SOCKET here too (6.18 does, to keep UDP's
forward-allocation threshold in step with SO_RCVBUF); SOL_IP is ip_sockglue's.

The capability checks are made against the socket owner's credentials (s.cred): the
FORCE buffer sizes, SO_MARK, SO_PRIORITY above 6, SO_DEBUG, rebinding a device, raising
the busy-poll budget. Options whose effect the emulator has not (MSG_ZEROCOPY, eBPF and
reuseport programs) answer ENOPROTOOPT with a message saying so; those of other socket
kinds (SO_PASSCRED, SO_TXREHASH, ...) their own errno, as 6.18 does on UDP."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable

from services.core import bpf, errno
from services.core.bpf import SKF_AD_MAX, SOCK_FPROG_SIZE
from services.core.cred import CAP_NET_ADMIN, CAP_NET_RAW
from services.core.sockaddr import make_sockaddr_in
from services.core.socket_uapi import (
    SO_ACCEPTCONN,
    SO_ATTACH_BPF,
    SO_ATTACH_FILTER,
    SO_ATTACH_REUSEPORT_CBPF,
    SO_ATTACH_REUSEPORT_EBPF,
    SO_BINDTODEVICE,
    SO_BINDTOIFINDEX,
    SO_BPF_EXTENSIONS,
    SO_BROADCAST,
    SO_BSDCOMPAT,
    SO_BUF_LOCK,
    SO_BUSY_POLL,
    SO_BUSY_POLL_BUDGET,
    SO_CNX_ADVICE,
    SO_COOKIE,
    SO_DEBUG,
    SO_DETACH_FILTER,
    SO_DETACH_REUSEPORT_BPF,
    SO_DEVMEM_DONTNEED,
    SO_DONTROUTE,
    SO_EMU_TRACE,
    SO_ERROR,
    SO_GET_FILTER,
    SO_INCOMING_CPU,
    SO_INCOMING_NAPI_ID,
    SO_KEEPALIVE,
    SO_LINGER,
    SO_LOCK_FILTER,
    SO_MARK,
    SO_MAX_PACING_RATE,
    SO_MEMINFO,
    SO_NETNS_COOKIE,
    SO_NO_CHECK,
    SO_NOFCS,
    SO_OOBINLINE,
    SO_PASSCRED,
    SO_PASSPIDFD,
    SO_PASSRIGHTS,
    SO_PASSSEC,
    SO_PEEK_OFF,
    SO_PEERCRED,
    SO_PEERGROUPS,
    SO_PEERNAME,
    SO_PEERPIDFD,
    SO_PREFER_BUSY_POLL,
    SO_PRIORITY,
    SO_RCVBUF,
    SO_RCVBUFFORCE,
    SO_RCVLOWAT,
    SO_RCVMARK,
    SO_RCVPRIORITY,
    SO_RESERVE_MEM,
    SO_REUSEADDR,
    SO_REUSEPORT,
    SO_RXQ_OVFL,
    SO_SELECT_ERR_QUEUE,
    SO_SNDBUF,
    SO_SNDBUFFORCE,
    SO_SNDLOWAT,
    SO_TIMESTAMP_NEW,
    SO_TIMESTAMP_OLD,
    SO_TIMESTAMPING_NEW,
    SO_TIMESTAMPING_OLD,
    SO_TIMESTAMPNS_NEW,
    SO_TIMESTAMPNS_OLD,
    SO_TXREHASH,
    SO_TXTIME,
    SO_WIFI_STATUS,
    SO_ZEROCOPY,
    UDP_CORK,
    UDP_ENCAP,
    UDP_GRO,
    UDP_NO_CHECK6_RX,
    UDP_NO_CHECK6_TX,
    UDP_SEGMENT,
    UDPLITE_RECV_CSCOV,
    UDPLITE_SEND_CSCOV,
)
from services.core.sysctl import MAX_SCHEDULE_TIMEOUT, Sysctl
from services.core.sysctl import SOCK_HZ as HZ
from services.core.wire.ipv4 import IPPROTO_UDP
from services.ip.sockglue import may_set_mark, sk_set_prio_allowed
from services.udp import tstamp
from services.udp.sock import SOCK_RCVBUF_LOCK, SOCK_SNDBUF_LOCK, UDPLITE_RECV_CC, UDPLITE_SEND_CC, UdpSock
from services.udp.sockfilter import sk_attach_filter, sk_filter_size

# include/net/sock.h: SOCK_MIN_SNDBUF and SOCK_MIN_RCVBUF on x86_64
# (2 * TCP_SKB_MIN_TRUESIZE and TCP_SKB_MIN_TRUESIZE, 2048 + SKB_DATA_ALIGN(sizeof
# (struct sk_buff))), as setting SO_SNDBUF/SO_RCVBUF to 1 on this machine reads back.
SOCK_MIN_SNDBUF = 4608
SOCK_MIN_RCVBUF = 2304
INT_MAX = 0x7FFFFFFF
USHRT_MAX = 0xFFFF
ULONG_MAX = (1 << 64) - 1
# include/uapi/linux/if.h
IFNAMSIZ = 16
SK_CAN_REUSE = 1
# include/net/sock.h: the sk_userlocks bits SO_BUF_LOCK sets.
SOCK_BUF_LOCK_MASK = SOCK_SNDBUF_LOCK | SOCK_RCVBUF_LOCK
# The network namespace cookie of the emulated host (it has one namespace, like a
# machine's init_net; SO_NETNS_COOKIE reads it).
NETNS_COOKIE = 1
# struct ucred of a socket without a peer (cred_to_ucred(NULL, NULL)): pid 0, uid and
# gid -1 (SO_PEERCRED on UDP).
NO_PEERCRED = struct.pack("=iii", 0, -1, -1)

_INT = struct.Struct("=i")
_ULONG = struct.Struct("=Q")
# struct linger { int l_onoff; int l_linger; }
_LINGER = struct.Struct("=ii")

# sock_valbool_flag() options: the UdpSock field each sets (sock_flag() reads it back).
# The timestamping options (services.udp.tstamp).
_TSTAMP_OPTIONS = frozenset(
    {SO_TIMESTAMP_OLD, SO_TIMESTAMP_NEW, SO_TIMESTAMPNS_OLD, SO_TIMESTAMPNS_NEW}
    | {SO_TIMESTAMPING_OLD, SO_TIMESTAMPING_NEW, SO_TXTIME}
)
_FLAGS = {
    SO_KEEPALIVE: "keepopen",
    SO_OOBINLINE: "urginline",
    SO_RXQ_OVFL: "rxq_ovfl",
    SO_WIFI_STATUS: "wifi_status",
    SO_NOFCS: "nofcs",
    SO_SELECT_ERR_QUEUE: "select_err_queue",
    SO_RCVMARK: "rcvmark",
    SO_RCVPRIORITY: "rcvpriority",
    # The emulator's own (socket_uapi.SO_EMU_TRACE), kept like a SOCK_* flag.
    SO_EMU_TRACE: "emu_trace",
}


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
        # sock_gen_cookie(): a socket's cookie is given the first time it is asked for.
        self._cookies = itertools.count(1)

    # SOL_SOCKET

    def sk_setsockopt(self, s: UdpSock, optname: int, optval: bytes) -> None:
        """sk_setsockopt() for the options kept in struct sock; ENOPROTOOPT for the rest,
        and for the few whose effect the emulator has not (said in the message). The
        capability checks are the owner's (s.cred), as sockopt_ns_capable() checks
        the calling task, and only the owning process reaches its sockets."""
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
        if optname in _TSTAMP_OPTIONS:
            self._set_tstamp(s, optname, optval, valbool)
            return
        flag = _FLAGS.get(optname)
        if flag is not None:
            # sock_valbool_flag(); udp_prot has no ->keepalive for SO_KEEPALIVE.
            setattr(s, flag, valbool)
        elif optname == SO_DEBUG:
            # Anyone may clear SOCK_DBG; setting it takes CAP_NET_ADMIN.
            if val and not s.cred.capable(CAP_NET_ADMIN):
                raise errno.kernel_error(errno.EACCES)
            s.dbg = valbool
        elif optname == SO_REUSEADDR:
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
                if not s.cred.capable(CAP_NET_ADMIN):
                    raise errno.kernel_error(errno.EPERM)
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
                if not s.cred.capable(CAP_NET_ADMIN):
                    raise errno.kernel_error(errno.EPERM)
                val = max(val, 0)
            # __sock_set_rcvbuf()
            s.userlocks |= SOCK_RCVBUF_LOCK
            s.rcvbuf = max(min(val, INT_MAX // 2) * 2, SOCK_MIN_RCVBUF)
        elif optname == SO_NO_CHECK:
            s.no_check_tx = valbool
        elif optname == SO_PRIORITY:
            if not sk_set_prio_allowed(s.cred, val):
                raise errno.kernel_error(errno.EPERM)
            s.priority = val & 0xFFFFFFFF
        elif optname == SO_MARK:
            # sock_set_mark's check comes first: even the mark the socket has is EPERM.
            if not may_set_mark(s.cred):
                raise errno.kernel_error(errno.EPERM)
            # __sock_set_mark(): a new mark resets the route.
            if s.mark != val & 0xFFFFFFFF:
                s.mark = val & 0xFFFFFFFF
                s.dst_cache = None
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
            self._sk_setsockopt_more(s, optname, optval, val)

    def _sk_setsockopt_more(self, s: UdpSock, optname: int, optval: bytes, val: int) -> None:
        """sk_setsockopt()'s options that change nothing a UDP socket does (kept to be
        read back), or that belong to other sockets (their errno), or whose effect the
        emulator has not (ENOPROTOOPT, saying so)."""
        if optname == SO_LINGER:
            self._setlinger(s, optval)
        elif optname == SO_BSDCOMPAT:
            pass  # obsolete: taken and forgotten
        elif optname == SO_RCVLOWAT:
            # inet_dgram_ops has no set_rcvlowat: sk_rcvlowat = val ?: 1, INT_MAX for a
            # negative one. udp_poll() and udp_recvmsg() never read it (6.18: a 10-byte
            # datagram is readable under SO_RCVLOWAT 100).
            s.rcvlowat = INT_MAX if val < 0 else val or 1
        elif optname == SO_BUSY_POLL:
            # The busy-poll values are kept and never used: sk_busy_loop() polls only a
            # NAPI id (sk_napi_id >= MIN_NAPI_ID), and no emulated device gives one
            # (SO_INCOMING_NAPI_ID reads 0), as on the kernel's lo.
            if val < 0:
                raise errno.kernel_error(errno.EINVAL)
            s.ll_usec = val
        elif optname == SO_PREFER_BUSY_POLL:
            if val and not s.cred.capable(CAP_NET_ADMIN):
                raise errno.kernel_error(errno.EPERM)
            s.prefer_busy_poll = val != 0
        elif optname == SO_BUSY_POLL_BUDGET:
            # Raising the budget takes CAP_NET_ADMIN, checked before the range.
            if val > s.busy_poll_budget and not s.cred.capable(CAP_NET_ADMIN):
                raise errno.kernel_error(errno.EPERM)
            if val < 0 or val > USHRT_MAX:
                raise errno.kernel_error(errno.EINVAL)
            s.busy_poll_budget = val
        elif optname == SO_MAX_PACING_RATE:
            # An int (~0U is ~0UL, unlimited), or an unsigned long when optlen holds one.
            # Only the fq qdisc and TCP pace, neither of which is emulated.
            rate = ULONG_MAX if val == -1 else val & 0xFFFFFFFF
            if len(optval) >= _ULONG.size:
                rate = _ULONG.unpack_from(optval)[0]
            s.max_pacing_rate = rate
        elif optname == SO_INCOMING_CPU:
            # reuseport_update_incoming_cpu(): any value. The emulated host has one CPU
            # for its sockets, so a reuseport group never picks by it.
            s.incoming_cpu = val
        elif optname == SO_CNX_ADVICE:
            # val 1: dst_negative_advice(), which ipv4_negative_advice() heeds only for
            # an obsolete, redirected or expiring route; no emulated route is one.
            pass
        elif optname == SO_ZEROCOPY:
            if s.protocol != IPPROTO_UDP:
                raise errno.kernel_error(errno.EOPNOTSUPP)  # TCP and UDP only
            if val < 0 or val > 1:
                raise errno.kernel_error(errno.EINVAL)
            if val:
                raise errno.kernel_error(
                    errno.ENOPROTOOPT, "SO_ZEROCOPY: MSG_ZEROCOPY and its completions are not emulated"
                )
        elif optname == SO_BUF_LOCK:
            if val & ~SOCK_BUF_LOCK_MASK:
                raise errno.kernel_error(errno.EINVAL)
            s.userlocks = val | (s.userlocks & ~SOCK_BUF_LOCK_MASK)
        elif optname == SO_RESERVE_MEM:
            if val < 0:
                raise errno.kernel_error(errno.EINVAL)
            # sock_reserve_memory(): only a socket charged to a memory cgroup reserves
            # (even 0 bytes); no emulated socket is, as one whose task is in the root
            # cgroup (6.18 answers EOPNOTSUPP there too).
            raise errno.kernel_error(errno.EOPNOTSUPP, "SO_RESERVE_MEM: memory cgroups are not emulated")
        elif optname in (SO_PASSCRED, SO_PASSSEC, SO_PASSPIDFD, SO_PASSRIGHTS):
            # sk_may_scm_recv() / sk_is_unix(): AF_UNIX's (and netlink's) only.
            raise errno.kernel_error(errno.EOPNOTSUPP)
        elif optname == SO_TXREHASH:
            raise errno.kernel_error(errno.EOPNOTSUPP)  # sk_is_tcp() only
        elif optname == SO_DEVMEM_DONTNEED:
            raise errno.kernel_error(errno.EBADF)  # sock_devmem_dontneed(): TCP only
        elif optname in (SO_ATTACH_BPF, SO_ATTACH_REUSEPORT_EBPF):
            # The program's fd, a u32 exactly.
            if len(optval) != 4:
                raise errno.kernel_error(errno.EINVAL)
            raise errno.kernel_error(errno.ENOPROTOOPT, "eBPF programs are not emulated")
        elif optname == SO_ATTACH_REUSEPORT_CBPF:
            # copy_bpf_fprog_from_user(): a struct sock_fprog exactly.
            if len(optval) != SOCK_FPROG_SIZE:
                raise errno.kernel_error(errno.EINVAL)
            raise errno.kernel_error(errno.ENOPROTOOPT, "reuseport selection programs are not emulated")
        elif optname == SO_DETACH_REUSEPORT_BPF:
            # reuseport_detach_prog(): out of a group, ENOENT with SO_REUSEPORT set and
            # EINVAL without; a group never has a program here (ENOENT).
            if s.reuseport_cb is None and not s.reuseport:
                raise errno.kernel_error(errno.EINVAL)
            raise errno.kernel_error(errno.ENOENT)
        else:
            # SO_TYPE, SO_PROTOCOL, SO_DOMAIN, SO_ERROR, SO_SNDLOWAT and the other
            # read-only or unknown names.
            raise errno.kernel_error(errno.ENOPROTOOPT)

    def _setlinger(self, s: UdpSock, optval: bytes) -> None:
        """SO_LINGER: a struct linger (EINVAL if shorter, 1003.1g). Off keeps the time;
        on stores l_linger seconds in jiffies, MAX_SCHEDULE_TIMEOUT from LONG_MAX / HZ
        up (a negative l_linger is a huge unsigned long). udp_lib_close() never lingers."""
        if len(optval) < _LINGER.size:
            raise errno.kernel_error(errno.EINVAL)
        onoff, seconds = _LINGER.unpack_from(optval)
        if not onoff:
            s.linger = False
            return
        t_sec = seconds & ULONG_MAX
        s.lingertime = MAX_SCHEDULE_TIMEOUT if t_sec >= MAX_SCHEDULE_TIMEOUT // HZ else t_sec * HZ
        s.linger = True

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
        """sock_bindtoindex_locked(): changing a binding takes CAP_NET_RAW (checked
        before the index); any index from 0, then the rehash and sk_dst_reset()."""
        if s.bound_dev_if and not s.cred.capable(CAP_NET_RAW):
            raise errno.kernel_error(errno.EPERM)
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

    def sock_gen_cookie(self, s: UdpSock) -> int:
        """sock_gen_cookie(): the socket's cookie, drawn from the host's counter the
        first time anything (SO_COOKIE, a sock_diag dump) asks for it."""
        if not s.cookie:
            s.cookie = next(self._cookies)
        return s.cookie

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
        if optname in _TSTAMP_OPTIONS:
            return self._get_tstamp(s, optname, optlen)
        if optname in _FLAGS:
            val = _int_out(int(getattr(s, _FLAGS[optname])), optlen)
            return val, len(val)
        out = self._sk_getsockopt_struct(s, optname, optlen)
        if out is not None:
            return out
        values: dict[int, Callable[[], int]] = {
            SO_DEBUG: lambda: int(s.dbg),
            SO_REUSEADDR: lambda: s.reuse,
            SO_REUSEPORT: lambda: int(s.reuseport),
            SO_DONTROUTE: lambda: int(s.localroute),
            SO_BROADCAST: lambda: int(s.broadcast),
            SO_SNDBUF: lambda: s.sndbuf,
            SO_RCVBUF: lambda: s.rcvbuf,
            SO_NO_CHECK: lambda: int(s.no_check_tx),
            SO_PRIORITY: lambda: s.priority,
            SO_BSDCOMPAT: lambda: 0,
            SO_RCVLOWAT: lambda: s.rcvlowat,
            SO_SNDLOWAT: lambda: 1,  # not settable (1003.1g 7)
            SO_ACCEPTCONN: lambda: 0,  # sk_state == TCP_LISTEN: never for UDP
            SO_MARK: lambda: s.mark,
            SO_PEEK_OFF: lambda: s.peek_off,
            SO_BINDTOIFINDEX: lambda: s.bound_dev_if,
            SO_LOCK_FILTER: lambda: int(s.filter_locked),
            SO_BPF_EXTENSIONS: lambda: SKF_AD_MAX,  # bpf_tell_extensions()
            SO_BUSY_POLL: lambda: s.ll_usec,
            SO_PREFER_BUSY_POLL: lambda: int(s.prefer_busy_poll),
            SO_INCOMING_CPU: lambda: s.incoming_cpu,
            SO_INCOMING_NAPI_ID: lambda: 0,  # below MIN_NAPI_ID: no NAPI id
            SO_ZEROCOPY: lambda: 0,  # SOCK_ZEROCOPY is never set
            SO_BUF_LOCK: lambda: s.userlocks & SOCK_BUF_LOCK_MASK,
            SO_RESERVE_MEM: lambda: 0,  # sk_reserved_mem: nothing can be reserved
            # sk_getsockopt(): -sock_error(), else sk_err_soft (which UDP never sets).
            SO_ERROR: s.sock_error,
        }
        get = values.get(optname)
        if get is None:
            if optname in (SO_PASSCRED, SO_PASSSEC, SO_PASSPIDFD, SO_PASSRIGHTS, SO_TXREHASH):
                raise errno.kernel_error(errno.EOPNOTSUPP)  # as setting them
            if optname in (SO_PEERGROUPS, SO_PEERPIDFD):
                raise errno.kernel_error(errno.ENODATA)  # no sk_peer_cred, no sk_peer_pid
            # SO_PEERSEC too: security_socket_getpeersec_stream() has nothing for UDP.
            raise errno.kernel_error(errno.ENOPROTOOPT)
        val = _int_out(get(), optlen)
        return val, len(val)

    def _sk_getsockopt_struct(self, s: UdpSock, optname: int, optlen: int) -> tuple[bytes, int] | None:
        """sk_getsockopt()'s options that are not an int: the bytes and optlen, None
        for the others."""
        if optname == SO_LINGER:
            # l_linger is sk_lingertime / HZ as an int (MAX_SCHEDULE_TIMEOUT / HZ cut).
            seconds = (s.lingertime // HZ) & 0xFFFFFFFF
            val = _LINGER.pack(int(s.linger), seconds - (1 << 32) if seconds >= 1 << 31 else seconds)
            return val[:optlen], min(optlen, _LINGER.size)
        if optname == SO_MAX_PACING_RATE:
            # The unsigned long when optlen holds one, else min(~0U, rate) as an int.
            if optlen >= _ULONG.size:
                return _ULONG.pack(s.max_pacing_rate), _ULONG.size
            val = _int_out(min(s.max_pacing_rate, 0xFFFFFFFF), optlen)
            return val, len(val)
        if optname in (SO_COOKIE, SO_NETNS_COOKIE):
            # A u64: SO_COOKIE takes any buffer from 8 bytes on, SO_NETNS_COOKIE exactly 8.
            if optlen < _ULONG.size or (optname == SO_NETNS_COOKIE and optlen != _ULONG.size):
                raise errno.kernel_error(errno.EINVAL)
            if optname == SO_NETNS_COOKIE:
                return _ULONG.pack(NETNS_COOKIE), _ULONG.size
            return _ULONG.pack(self.sock_gen_cookie(s)), _ULONG.size
        if optname == SO_PEERCRED:
            return NO_PEERCRED[:optlen], min(optlen, len(NO_PEERCRED))
        if optname == SO_PEERNAME:
            # inet_getname(peer 2): ENOTCONN without a peer port; a buffer longer than
            # the address is EINVAL, a shorter one gets its first bytes.
            if not s.dport:
                raise errno.kernel_error(errno.ENOTCONN)
            name = make_sockaddr_in(s.daddr, s.dport)
            if optlen > len(name):
                raise errno.kernel_error(errno.EINVAL)
            return name[:optlen], optlen
        return None

    def _set_tstamp(self, s: UdpSock, optname: int, optval: bytes, valbool: bool) -> None:
        """SO_TIMESTAMP(NS)_OLD/NEW, SO_TIMESTAMPING_OLD/NEW (BIND_PHC looks the bound
        device up) and SO_TXTIME (services.udp.tstamp)."""
        if optname in (SO_TIMESTAMPING_OLD, SO_TIMESTAMPING_NEW):
            tstamp.sock_set_timestamping(s, optname, optval, lambda i: i in self.devices())
        elif optname == SO_TXTIME:
            tstamp.sock_set_txtime(s, optval)
        else:
            tstamp.sock_set_timestamp(s, optname, valbool)

    def _get_tstamp(self, s: UdpSock, optname: int, optlen: int) -> tuple[bytes, int]:
        """sk_getsockopt(): the SO_TIMESTAMP(NS) flags as ints, struct so_timestamping and
        struct sock_txtime cut to optlen."""
        if optname in (SO_TIMESTAMPING_OLD, SO_TIMESTAMPING_NEW):
            out = tstamp.so_timestamping_out(s, optname)[:optlen]
        elif optname == SO_TXTIME:
            out = tstamp.so_txtime_out(s)[:optlen]
        else:
            out = _int_out(tstamp.sock_get_timestamp(s, optname), optlen)
        return out, len(out)

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
            # udp_lib_setsockopt(): 0 is taken (encap_type 0: datagrams stay the
            # socket's); ESP-in-UDP (2) and L2TP (3) hand datagrams to xfrm/l2tp,
            # which the emulator has not; any other type is ENOPROTOOPT as on Linux.
            if val != 0:
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
