"""The cork a datagram is built on (struct inet_cork_full) and the size rules it meets on
its way into ip_make_skb()/ip_append_data() (net/ipv4/ip_output.c ip_setup_cork and
__ip_append_data): which MTU it is measured against and how big it may grow, across
every append of a corked socket. The transport layer applies them before it hands the
datagram to IP, so that udp_sendmsg can fail with EMSGSIZE synchronously, as it does in
the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.core import errno
from services.core.ipcb import IpOptions
from services.core.skbuff import SKB_MAX_ALLOC, Dst, alloc_skb_truesize
from services.core.wire.udp import UDP_HLEN

# include/net/ip.h
IP_MAX_MTU = 0xFFFF
IPV4_MIN_MTU = 68
IPV4_HLEN = 20

IP_PMTUDISC_DO = 2
IP_PMTUDISC_PROBE = 3
IP_PMTUDISC_OMIT = 5


def ip_sk_use_pmtu(pmtudisc: int) -> bool:
    """Below IP_PMTUDISC_PROBE the path MTU counts; from it on, the device's."""
    return pmtudisc < IP_PMTUDISC_PROBE


def ip_sk_ignore_df(pmtudisc: int) -> bool:
    """Whether IP may still fragment the socket's datagrams locally."""
    return pmtudisc < IP_PMTUDISC_DO or pmtudisc == IP_PMTUDISC_OMIT


def dst_mtu(dst: Dst) -> int:
    """ipv4_mtu(): the route's MTU, never more than IP_MAX_MTU (lo's 65536 reads 65535).
    Dst.mtu is the device's MTU, or the path MTU IP learned for the route."""
    return min(dst.mtu, IP_MAX_MTU)


def ip_cork_fragsize(pmtudisc: int, dst: Dst) -> int:
    """ip_setup_cork()'s cork->fragsize: ENETUNREACH below the smallest IPv4 MTU."""
    fragsize = dst_mtu(dst) if ip_sk_use_pmtu(pmtudisc) else dst.mtu
    if fragsize < IPV4_MIN_MTU:
        raise errno.kernel_error(errno.ENETUNREACH)
    return fragsize


def ip_append_too_big(length: int, optlen: int, pmtudisc: int, fragsize: int) -> int | None:
    """__ip_append_data()'s check of a datagram of `length` bytes (transport header
    included) carrying `optlen` bytes of IP options: None when it may be sent, else the
    MTU to report (ee_info of the local EMSGSIZE error: mtu - optlen). A socket that
    may not fragment (IP_PMTUDISC_DO, PROBE) is held to the MTU, any other to
    IP_MAX_MTU."""
    fragheaderlen = IPV4_HLEN + optlen
    maxnonfragsize = IP_MAX_MTU if ip_sk_ignore_df(pmtudisc) else fragsize
    if length > maxnonfragsize - fragheaderlen:
        return fragsize - optlen
    return None


@dataclass(slots=True)
class InetCork:
    """inet->cork (struct inet_cork_full: the inet_cork ip_setup_cork() fills and the
    flowi4 the datagram is sent on) and what sk_write_queue holds of the datagram: its
    payload so far. A corked UDP socket keeps one while up->pending; udp_sendmsg's
    uncorked fast path builds one on its stack (ip_make_skb) and pushes it at once."""

    # cork->dst and cork->fragsize (ip_cork_fragsize), fixed at the first append.
    dst: Dst
    fragsize: int
    # fl4->saddr, fl4->daddr and fl4->fl4_dport: the pseudo-header's addresses and the
    # UDP destination port. A corked socket's flow is inet->cork.fl, which
    # __ip4_datagram_connect() reuses for its own route lookup: connect() rewrites them.
    saddr: int
    daddr: int
    dport: int
    # cork->addr (ipc->addr): the final destination, a source route's last slot.
    addr: int
    # cork->opt, and the ipcm_cookie's values ip_setup_cork() keeps: ttl 0 leaves the
    # hop limit to __ip_make_skb (the socket's IP_TTL then, or the route's).
    opt: IpOptions | None = None
    ttl: int = 0
    tos: int = 0
    priority: int = 0
    mark: int = 0
    # cork->length: the bytes appended so far, the transport header included; and the
    # payload they put on sk_write_queue.
    length: int = 0
    queue: bytearray = field(default_factory=bytearray)
    # cork->gso_size (UDP_SEGMENT), and MSG_CONFIRM of the send that made the datagram's
    # first skb (skb_set_dst_pending_confirm()).
    gso_size: int = 0
    confirm: bool = False
    # The first append's csummode: CHECKSUM_PARTIAL (True) or CHECKSUM_NONE.
    csum_partial: bool = False
    # cork->tx_flags (sock_tx_timestamp() of the send's tsflags), cork->ts_opt_id (None
    # without IPCORK_TS_OPT_ID), cork->transmit_time (SCM_TXTIME), and the OPT_ID key
    # __ip_append_data() gave the datagram's first skb.
    tx_flags: int = 0
    ts_opt_id: int | None = None
    transmit_time: int = 0
    tskey: int = 0
    # Emulator-only: record the kernel functions the datagram passes.
    trace: bool = False

    @property
    def optlen(self) -> int:
        return self.opt.optlen if self.opt is not None else 0


def ip_append_check(cork: InetCork, length: int, pmtudisc: int) -> int | None:
    """__ip_append_data()'s check of `length` more bytes onto `cork`: what was appended
    before counts (cork->length + length), measured against the cork's fragsize and
    options and the socket's IP_MTU_DISCOVER as it is now (ip_sk_ignore_df). None when
    they fit, else the MTU to report (see ip_append_too_big). A GSO datagram is
    measured against IP_MAX_MTU (__ip_append_data: "mtu = cork->gso_size ? IP_MAX_MTU :
    cork->fragsize"): its segments are checked when it is sent."""
    mtu = IP_MAX_MTU if cork.gso_size else cork.fragsize
    return ip_append_too_big(cork.length + length, cork.optlen, pmtudisc, mtu)


# LL_RESERVED_SPACE() of an Ethernet or loopback device (hard_header_len 14, rounded to
# HH_DATA_MOD 16, plus 16), and the 15 bytes __ip_append_data() adds for alignment.
HH_LEN = 16


def ip_append_truesize(length: int, optlen: int, mtu: int, sg: bool, gso: bool) -> int:
    """The truesize __ip_append_data() charges for a datagram of `length` bytes (the
    UDP header included): one skb per fragment it builds (a non-GSO datagram bigger than
    `mtu` is split at maxfraglen), each linear (sock_alloc_send_skb/alloc_skb of
    fraglen and the headroom) unless it is GSO or too big for SKB_MAX_ALLOC on a
    scatter-gather device, where the head holds the headers only and the data goes in
    page frags, charged byte for byte."""
    fragheaderlen = IPV4_HLEN + optlen
    alloc_extra = HH_LEN + 15
    if gso:
        mtu = IP_MAX_MTU
    maxfraglen = ((mtu - fragheaderlen) & ~7) + fragheaderlen
    total, remaining, transhdrlen = 0, length, UDP_HLEN
    while True:
        datalen = remaining
        if datalen > (mtu if length <= mtu else maxfraglen) - fragheaderlen:
            datalen = maxfraglen - fragheaderlen
        fraglen = datalen + fragheaderlen
        if not gso and (fraglen + alloc_extra < SKB_MAX_ALLOC or not sg):
            total += alloc_skb_truesize(fraglen + alloc_extra)
        else:
            total += alloc_skb_truesize(fragheaderlen + transhdrlen + alloc_extra) + datalen - transhdrlen
        remaining -= datalen
        transhdrlen = 0
        if remaining <= 0:
            return total
