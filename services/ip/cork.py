"""The size rules a datagram meets on its way into ip_make_skb() (net/ipv4/ip_output.c
ip_setup_cork and __ip_append_data): which MTU it is measured against and how big it
may be. The transport layer applies them before it hands the datagram to IP, so that
udp_sendmsg can fail with EMSGSIZE synchronously, as it does in the kernel.
"""

from __future__ import annotations

from services.core import errno
from services.core.skbuff import Dst

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
