"""Socket timestamps as recvmsg reports them (include/uapi/linux/net_tstamp.h; net/socket.c
__sock_recv_timestamp, put_ts_pktinfo; include/net/sock.h sock_recv_timestamp): the
SO_TIMESTAMPING flags and the SOL_SOCKET cmsgs a datagram or an error queue entry
carries, laid out as x86_64 Linux lays them out.

Pure functions over a socket's flags and an skb: the UDP layer calls them for
udp_recvmsg, the IP half of the socket (ip_recv_error) for the error queue."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Protocol

from services.core.netdev import LOOPBACK_IFINDEX
from services.core.skbuff import HEADER_UNSET, SkBuff
from services.core.socket_uapi import (
    SCM_TIMESTAMPING_PKTINFO,
    SO_TIMESTAMP_NEW,
    SO_TIMESTAMP_OLD,
    SO_TIMESTAMPING_NEW,
    SO_TIMESTAMPING_OLD,
    SO_TIMESTAMPNS_NEW,
    SO_TIMESTAMPNS_OLD,
    SOL_SOCKET,
)

# include/uapi/linux/net_tstamp.h (6.18)
SOF_TIMESTAMPING_TX_HARDWARE = 1 << 0
SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1
SOF_TIMESTAMPING_RX_HARDWARE = 1 << 2
SOF_TIMESTAMPING_RX_SOFTWARE = 1 << 3
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SOF_TIMESTAMPING_SYS_HARDWARE = 1 << 5
SOF_TIMESTAMPING_RAW_HARDWARE = 1 << 6
SOF_TIMESTAMPING_OPT_ID = 1 << 7
SOF_TIMESTAMPING_TX_SCHED = 1 << 8
SOF_TIMESTAMPING_TX_ACK = 1 << 9
SOF_TIMESTAMPING_OPT_CMSG = 1 << 10
SOF_TIMESTAMPING_OPT_TSONLY = 1 << 11
SOF_TIMESTAMPING_OPT_STATS = 1 << 12
SOF_TIMESTAMPING_OPT_PKTINFO = 1 << 13
SOF_TIMESTAMPING_OPT_TX_SWHW = 1 << 14
SOF_TIMESTAMPING_BIND_PHC = 1 << 15
SOF_TIMESTAMPING_OPT_ID_TCP = 1 << 16
SOF_TIMESTAMPING_OPT_RX_FILTER = 1 << 17
SOF_TIMESTAMPING_TX_COMPLETION = 1 << 18
SOF_TIMESTAMPING_LAST = SOF_TIMESTAMPING_TX_COMPLETION
SOF_TIMESTAMPING_MASK = (SOF_TIMESTAMPING_LAST - 1) | SOF_TIMESTAMPING_LAST
# The flags that ask for a transmit timestamp: what a SO_TIMESTAMPING cmsg may set.
SOF_TIMESTAMPING_TX_RECORD_MASK = (
    SOF_TIMESTAMPING_TX_HARDWARE
    | SOF_TIMESTAMPING_TX_SOFTWARE
    | SOF_TIMESTAMPING_TX_SCHED
    | SOF_TIMESTAMPING_TX_ACK
    | SOF_TIMESTAMPING_TX_COMPLETION
)
# include/net/sock.h: the kernel-internal bit of sockcm_cookie.tsflags that says an
# SCM_TS_OPT_ID cmsg gave this send's key.
SOCKCM_FLAG_TS_OPT_ID = 1 << 31

# struct sock_txtime flags, and the clocks sockopt_validate_clockid() accepts.
SOF_TXTIME_DEADLINE_MODE = 1 << 0
SOF_TXTIME_REPORT_ERRORS = 1 << 1
SOF_TXTIME_FLAGS_MASK = SOF_TXTIME_DEADLINE_MODE | SOF_TXTIME_REPORT_ERRORS
CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1
CLOCK_TAI = 11

NSEC_PER_SEC = 1_000_000_000
NSEC_PER_USEC = 1000

# __kernel_old_timeval / __kernel_sock_timeval and __kernel_old_timespec /
# __kernel_timespec: two 64-bit fields each on x86_64; scm_timestamping(64) is three
# timespecs; struct scm_ts_pktinfo {u32 if_index; u32 pkt_length; u32 reserved[2]}.
_TIME = struct.Struct("=qq")
_SCM_TS_PKTINFO = struct.Struct("=II8x")

Cmsgs = list[tuple[int, int, bytes]]


class TstampSock(Protocol):
    """The socket flags __sock_recv_timestamp() reads: SOCK_RCVTSTAMP,
    SOCK_RCVTSTAMPNS, SOCK_TSTAMP_NEW and sk_tsflags."""

    rcvtstamp: bool
    rcvtstampns: bool
    tstamp_new: bool
    tsflags: int


def timeval(ns: int) -> bytes:
    """skb_get_timestamp()/skb_get_new_timestamp(): seconds and microseconds."""
    sec, rem = divmod(ns, NSEC_PER_SEC)
    return _TIME.pack(sec, rem // NSEC_PER_USEC)


def timespec(ns: int) -> bytes:
    sec, rem = divmod(ns, NSEC_PER_SEC)
    return _TIME.pack(sec, rem)


def sock_recv_timestamp(
    sk: TstampSock, skb: SkBuff, err_queue: bool, realtime: Callable[[], int] = time.time_ns
) -> Cmsgs:
    """sock_recv_timestamp() → __sock_recv_timestamp(): the SOL_SOCKET timestamp cmsgs of
    a datagram (or of an error queue entry: `err_queue`, skb_is_err_queue), in the
    kernel's order: SO_TIMESTAMP(NS) old or new, SCM_TIMESTAMPING_PKTINFO, then
    SCM_TIMESTAMPING (ts[0] software, ts[2] hardware; empty ones are not sent)."""
    tsflags = sk.tsflags
    kt = skb.tstamp
    if not (
        sk.rcvtstamp
        or tsflags & SOF_TIMESTAMPING_RX_SOFTWARE
        or (kt and tsflags & SOF_TIMESTAMPING_SOFTWARE)
        or (skb.hwtstamp and tsflags & SOF_TIMESTAMPING_RAW_HARDWARE)
    ):
        return []
    out: Cmsgs = []
    false_tstamp = False
    if sk.rcvtstamp and not skb.tstamp:
        # "Race occurred between timestamp enabling and packet receiving": now.
        skb.tstamp = realtime()
        false_tstamp = True
    if sk.rcvtstamp:
        if not sk.rcvtstampns:
            optname = SO_TIMESTAMP_NEW if sk.tstamp_new else SO_TIMESTAMP_OLD
            out.append((SOL_SOCKET, optname, timeval(skb.tstamp)))
        else:
            optname = SO_TIMESTAMPNS_NEW if sk.tstamp_new else SO_TIMESTAMPNS_OLD
            out.append((SOL_SOCKET, optname, timespec(skb.tstamp)))
    ts = [0, 0, 0]
    empty = True
    # SOF_TIMESTAMPING_OPT_RX_FILTER keeps a received datagram's stamps to the kinds
    # the RX flags asked for; error queue entries are always reported.
    rx_unfiltered = err_queue or not tsflags & SOF_TIMESTAMPING_OPT_RX_FILTER
    if (
        tsflags & SOF_TIMESTAMPING_SOFTWARE
        and (tsflags & SOF_TIMESTAMPING_RX_SOFTWARE or rx_unfiltered)
        and skb.tstamp
    ):
        ts[0] = skb.tstamp
        empty = False
    # skb_is_swtx_tstamp(): an error queue entry with a software stamp reports no
    # hardware one. SOF_TIMESTAMPING_BIND_PHC cannot be set here (no PTP virtual
    # clocks), so no ptp_convert_timestamp().
    swtx = bool(skb.tstamp) and not false_tstamp and err_queue
    if (
        tsflags & SOF_TIMESTAMPING_RAW_HARDWARE
        and (tsflags & SOF_TIMESTAMPING_RX_HARDWARE or rx_unfiltered)
        and not swtx
        and skb.hwtstamp
    ):
        ts[2] = skb.hwtstamp
        empty = False
        if tsflags & SOF_TIMESTAMPING_OPT_PKTINFO and not err_queue:
            out += put_ts_pktinfo(skb)
    if not empty:
        optname = SO_TIMESTAMPING_NEW if sk.tstamp_new else SO_TIMESTAMPING_OLD
        out.append((SOL_SOCKET, optname, b"".join(timespec(t) for t in ts)))
    return out


def put_ts_pktinfo(skb: SkBuff) -> Cmsgs:
    """put_ts_pktinfo(): the device the hardware stamp was taken on (the NAPI instance's,
    dev_get_by_napi_id: the receiving device of a NAPI driver, 0 for lo's backlog) and
    the frame's length from its MAC header; nothing without a MAC header."""
    if skb.mac_header == HEADER_UNSET:
        return []
    if_index = skb.skb_iif if skb.skb_iif != LOOPBACK_IFINDEX else 0
    pkt_length = skb.len + skb.data - skb.mac_header
    return [(SOL_SOCKET, SCM_TIMESTAMPING_PKTINFO, _SCM_TS_PKTINFO.pack(if_index, pkt_length))]
