"""A UDP socket's timestamping (net/core/sock.c sock_set_timestamp, sock_set_timestamping,
sock_timestamping_bind_phc, SO_TXTIME in sk_setsockopt and their sk_getsockopt halves;
include/net/sock.h sock_tx_timestamp; net/core/skbuff.c __skb_tstamp_tx,
__skb_complete_tx_timestamp, skb_may_tx_timestamp).

The receive side's cmsgs are services.core.tstamp's (ip_recv_error needs them too)."""

from __future__ import annotations

import struct
from collections.abc import Callable

from services.core import errno
from services.core.cred import CAP_NET_ADMIN, CAP_NET_RAW
from services.core.skbuff import (
    SKBTX_ANY_TSTAMP,
    SKBTX_HW_TSTAMP,
    SKBTX_IN_PROGRESS,
    SKBTX_SCHED_TSTAMP,
    SKBTX_SW_TSTAMP,
    SkBuff,
    alloc_skb,
    alloc_skb_truesize,
)
from services.core.socket_uapi import (
    SO_EE_ORIGIN_TIMESTAMPING,
    SO_TIMESTAMP_NEW,
    SO_TIMESTAMP_OLD,
    SO_TIMESTAMPING_NEW,
    SO_TIMESTAMPNS_NEW,
    SO_TIMESTAMPNS_OLD,
)
from services.core.tstamp import (
    CLOCK_MONOTONIC,
    CLOCK_REALTIME,
    CLOCK_TAI,
    SOF_TIMESTAMPING_BIND_PHC,
    SOF_TIMESTAMPING_MASK,
    SOF_TIMESTAMPING_OPT_ID,
    SOF_TIMESTAMPING_OPT_ID_TCP,
    SOF_TIMESTAMPING_OPT_STATS,
    SOF_TIMESTAMPING_OPT_TSONLY,
    SOF_TIMESTAMPING_OPT_TX_SWHW,
    SOF_TIMESTAMPING_TX_COMPLETION,
    SOF_TIMESTAMPING_TX_HARDWARE,
    SOF_TIMESTAMPING_TX_SCHED,
    SOF_TIMESTAMPING_TX_SOFTWARE,
    SOF_TXTIME_DEADLINE_MODE,
    SOF_TXTIME_FLAGS_MASK,
    SOF_TXTIME_REPORT_ERRORS,
)
from services.ip.sockglue import SockExtendedErr, SockExterrSkb
from services.udp.sock import UdpSock

# include/linux/skbuff.h: SKBTX_COMPLETION_TSTAMP (6.16), asked for by
# SOF_TIMESTAMPING_TX_COMPLETION; no emulated device reports completions.
SKBTX_COMPLETION_TSTAMP = 1 << 3

_INT = struct.Struct("=i")
# struct so_timestamping {int flags; int bind_phc}, struct sock_txtime {clockid_t
# clockid; u32 flags}.
_SO_TIMESTAMPING = struct.Struct("=ii")
_SOCK_TXTIME = struct.Struct("=iI")


def sock_set_timestamp(s: UdpSock, optname: int, valbool: bool) -> None:
    """sock_set_timestamp() → __sock_set_timestamps(): turning one of SO_TIMESTAMP(NS)
    old or new on makes it the one reported (and its format the socket's,
    SOCK_TSTAMP_NEW); turning any of them off turns both off."""
    if valbool:
        s.tstamp_new = optname in (SO_TIMESTAMP_NEW, SO_TIMESTAMPNS_NEW)
        s.rcvtstampns = optname in (SO_TIMESTAMPNS_OLD, SO_TIMESTAMPNS_NEW)
        s.rcvtstamp = True
    else:
        s.rcvtstamp = False
        s.rcvtstampns = False


def sock_get_timestamp(s: UdpSock, optname: int) -> int:
    """sk_getsockopt()'s SO_TIMESTAMP(NS)_OLD/NEW: SO_TIMESTAMP_NEW reads 1 for
    SO_TIMESTAMPNS_NEW too (it only asks SOCK_RCVTSTAMP and SOCK_TSTAMP_NEW)."""
    if optname == SO_TIMESTAMP_OLD:
        return int(s.rcvtstamp and not s.tstamp_new and not s.rcvtstampns)
    if optname == SO_TIMESTAMPNS_OLD:
        return int(s.rcvtstampns and not s.tstamp_new)
    if optname == SO_TIMESTAMP_NEW:
        return int(s.rcvtstamp and s.tstamp_new)
    return int(s.rcvtstampns and s.tstamp_new)


def sock_set_timestamping(
    s: UdpSock, optname: int, optval: bytes, device_exists: Callable[[int], bool]
) -> None:
    """SO_TIMESTAMPING_OLD/NEW: a struct so_timestamping when optlen is exactly its size,
    else an int of flags (the caller checked optlen >= sizeof(int)), then
    sock_set_timestamping()'s checks in its order."""
    if len(optval) == _SO_TIMESTAMPING.size:
        val, bind_phc = _SO_TIMESTAMPING.unpack(optval)
    else:
        val, bind_phc = _INT.unpack_from(optval)[0], 0
    flags = val & 0xFFFFFFFF
    if flags & ~SOF_TIMESTAMPING_MASK:
        raise errno.kernel_error(errno.EINVAL)
    if flags & SOF_TIMESTAMPING_OPT_ID_TCP and not flags & SOF_TIMESTAMPING_OPT_ID:
        raise errno.kernel_error(errno.EINVAL)
    if flags & SOF_TIMESTAMPING_OPT_ID and not s.tsflags & SOF_TIMESTAMPING_OPT_ID:
        # A UDP socket's keys start again from 0 when OPT_ID is newly set (even if a
        # later check refuses the flags).
        s.tskey = 0
    if flags & SOF_TIMESTAMPING_OPT_STATS and not flags & SOF_TIMESTAMPING_OPT_TSONLY:
        raise errno.kernel_error(errno.EINVAL)
    if flags & SOF_TIMESTAMPING_BIND_PHC:
        sock_timestamping_bind_phc(s, bind_phc, device_exists)
    s.tsflags = flags
    s.tstamp_new = optname == SO_TIMESTAMPING_NEW


def sock_timestamping_bind_phc(s: UdpSock, phc_index: int, device_exists: Callable[[int], bool]) -> None:
    """sock_timestamping_bind_phc(): EOPNOTSUPP unless the socket is bound to a device
    that exists; then the index must be one of the device's PTP virtual clocks
    (ethtool_get_phc_vclocks), and no emulated device has any: EINVAL (6.18 on lo says
    the same)."""
    if not s.bound_dev_if or not device_exists(s.bound_dev_if):
        raise errno.kernel_error(errno.EOPNOTSUPP)
    raise errno.kernel_error(errno.EINVAL, f"no PTP virtual clock {phc_index} on the bound device")


def so_timestamping_out(s: UdpSock, optname: int) -> bytes:
    """sk_getsockopt()'s struct so_timestamping: SO_TIMESTAMPING_NEW reads zeros unless
    the flags were set through SO_TIMESTAMPING_NEW (SOCK_TSTAMP_NEW)."""
    if optname == SO_TIMESTAMPING_NEW and not s.tstamp_new:
        return bytes(_SO_TIMESTAMPING.size)
    return _SO_TIMESTAMPING.pack(s.tsflags - (1 << 32) if s.tsflags >> 31 else s.tsflags, s.bind_phc)


def sock_set_txtime(s: UdpSock, optval: bytes) -> None:
    """SO_TXTIME: exactly a struct sock_txtime, known flags, CAP_NET_ADMIN for any clock
    but CLOCK_MONOTONIC (sch_fq's, which guards itself), and a clock
    sockopt_validate_clockid() knows. SOCK_TXTIME is never turned off again."""
    if len(optval) != _SOCK_TXTIME.size:
        raise errno.kernel_error(errno.EINVAL)
    clockid, flags = _SOCK_TXTIME.unpack(optval)
    if flags & ~SOF_TXTIME_FLAGS_MASK:
        raise errno.kernel_error(errno.EINVAL)
    if clockid != CLOCK_MONOTONIC and not s.cred.capable(CAP_NET_ADMIN):
        raise errno.kernel_error(errno.EPERM)
    if clockid not in (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_TAI):
        raise errno.kernel_error(errno.EINVAL)
    s.txtime = True
    s.txtime_clockid = clockid
    s.txtime_deadline_mode = bool(flags & SOF_TXTIME_DEADLINE_MODE)
    s.txtime_report_errors = bool(flags & SOF_TXTIME_REPORT_ERRORS)


def so_txtime_out(s: UdpSock) -> bytes:
    flags = (SOF_TXTIME_DEADLINE_MODE if s.txtime_deadline_mode else 0) | (
        SOF_TXTIME_REPORT_ERRORS if s.txtime_report_errors else 0
    )
    return _SOCK_TXTIME.pack(s.txtime_clockid, flags)


def sock_tx_timestamp(tsflags: int) -> int:
    """__sock_tx_timestamp(): the skb tx_flags a send's sockcm tsflags ask for."""
    flags = 0
    if tsflags & SOF_TIMESTAMPING_TX_HARDWARE:
        flags |= SKBTX_HW_TSTAMP
    if tsflags & SOF_TIMESTAMPING_TX_SOFTWARE:
        flags |= SKBTX_SW_TSTAMP
    if tsflags & SOF_TIMESTAMPING_TX_SCHED:
        flags |= SKBTX_SCHED_TSTAMP
    if tsflags & SOF_TIMESTAMPING_TX_COMPLETION:
        flags |= SKBTX_COMPLETION_TSTAMP
    return flags


def ip_append_tskey(s: UdpSock, tx_flags: int, ts_opt_id: int | None) -> tuple[int, bool]:
    """__ip_append_data()'s key for a datagram's first skb: with a timestamp asked for
    and SOF_TIMESTAMPING_OPT_ID on the socket, SCM_TS_OPT_ID's key or else the next of
    sk_tskey (atomic_inc_return() - 1). Whether it was taken from sk_tskey comes back
    too (hold_tskey: an error gives it back)."""
    if not tx_flags & SKBTX_ANY_TSTAMP or not s.tsflags & SOF_TIMESTAMPING_OPT_ID:
        return 0, False
    if ts_opt_id is not None:
        return ts_opt_id, False
    key = s.tskey
    s.tskey = (s.tskey + 1) & 0xFFFFFFFF
    return key, True


def skb_tstamp_tx(s: UdpSock, clone: SkBuff, tstype: int, allow_data: bool) -> SockExterrSkb | None:
    """__skb_tstamp_tx() for a timestamp the NIC took (`clone`: skb_clone of the skb it
    stamped, with tstamp, or hwtstamp for the hardware's), then
    __skb_complete_tx_timestamp(): the error queue entry, or None when the socket's
    flags say there is none. A software stamp while the hardware's is in progress is
    dropped unless SOF_TIMESTAMPING_OPT_TX_SWHW; without net.core.tstamp_allow_data the
    payload needs CAP_NET_RAW (skb_may_tx_timestamp); with SOF_TIMESTAMPING_OPT_TSONLY the
    entry is an empty skb (no payload, no device) carrying the stamp and the key."""
    tsflags = s.tsflags
    hw = bool(clone.hwtstamp) and not clone.tstamp
    if not hw and not tsflags & SOF_TIMESTAMPING_OPT_TX_SWHW and clone.tx_flags & SKBTX_IN_PROGRESS:
        return None
    tsonly = bool(tsflags & SOF_TIMESTAMPING_OPT_TSONLY)
    if not (allow_data or tsonly or s.cred.capable(CAP_NET_RAW)):
        return None
    if tsonly:
        skb = alloc_skb(0)
        # 832 on 6.18 (SO_MEMINFO with one OPT_TSONLY entry queued).
        skb.truesize = alloc_skb_truesize(0)
        skb.tx_flags = clone.tx_flags & SKBTX_ANY_TSTAMP
        skb.tskey = clone.tskey
        skb.tstamp = clone.tstamp
        skb.hwtstamp = clone.hwtstamp
        iif = 0
    else:
        skb = clone
        iif = skb.dev_ifindex
    skb.sk = s.sk
    skb.trace = None
    # memset(serr): the IPCB that was in cb goes; header.h4.iif is the device (what
    # ip_recv_error's in_pktinfo reads as ipi_ifindex).
    skb.cb[:] = bytes(len(skb.cb))
    _INT.pack_into(skb.cb, 0, iif)
    ee = SockExtendedErr(errno.ENOMSG, SO_EE_ORIGIN_TIMESTAMPING, ee_info=tstype)
    if tsflags & SOF_TIMESTAMPING_OPT_ID:
        ee.ee_data = skb.tskey
    return SockExterrSkb(skb, ee, 0, 0)
