"""udp_poll() (net/ipv4/udp.c udp_poll, first_packet_length; net/core/datagram.c
datagram_poll; include/net/sock.h sock_writeable): a UDP socket's readiness as an
EPOLL* mask, and a wait on the socket's wait queue until that mask changes."""

from __future__ import annotations

import asyncio

from services.core import errno
from services.core.dropreason import SkbDropReason
from services.core.wire.udp import UDP_HLEN
from services.udp.input import udp_lib_checksum_complete
from services.udp.recv import UdpRecv
from services.udp.sock import RCV_SHUTDOWN, SHUTDOWN_MASK, UdpSock, sk_wait

# include/uapi/linux/eventpoll.h
EPOLLIN = 0x001
EPOLLPRI = 0x002
EPOLLOUT = 0x004
EPOLLERR = 0x008
EPOLLHUP = 0x010
EPOLLNVAL = 0x020
EPOLLRDNORM = 0x040
EPOLLRDBAND = 0x080
EPOLLWRNORM = 0x100
EPOLLWRBAND = 0x200
EPOLLRDHUP = 0x2000


def sock_writeable(s: UdpSock) -> bool:
    """sock_writeable(): sk_wmem_alloc (which counts 1 for the socket itself) below
    half of sk_sndbuf."""
    return s.wmem_alloc + 1 < s.sndbuf >> 1


def datagram_poll(s: UdpSock) -> int:
    """datagram_poll() for a socket that is not connection based."""
    mask = 0
    if s.sk_err or s.error_queue:
        mask |= EPOLLERR | (EPOLLPRI if s.select_err_queue else 0)
    if s.shutdown & RCV_SHUTDOWN:
        mask |= EPOLLRDHUP | EPOLLIN | EPOLLRDNORM
    if s.shutdown == SHUTDOWN_MASK:
        mask |= EPOLLHUP
    if s.receive_queue:
        mask |= EPOLLIN | EPOLLRDNORM
    if sock_writeable(s):
        mask |= EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND
    return mask


def first_packet_length(layer: UdpRecv, s: UdpSock) -> int:
    """first_packet_length(): the datagrams at the head of the queue whose checksum
    fails are dropped (InCsumErrors, InErrors, sk_drops, SKB_DROP_REASON_UDP_CSUM) as
    udp_recvmsg would drop them; the payload length of the first good one, -1 for
    none."""
    while s.receive_queue:
        skb = s.receive_queue[0]
        if udp_lib_checksum_complete(skb):
            return skb.len - UDP_HLEN
        layer._unlink(s, skb)
        s.drops += 1
        layer._sk_mib(s).inc("InCsumErrors")
        layer._sk_mib(s).inc("InErrors")
        layer.drops.drop(SkbDropReason.UDP_CSUM, "first_packet_length", skb=skb, queued=True)
    return -1


def udp_poll(layer: UdpRecv, s: UdpSock, nonblock: bool) -> int:
    """udp_poll(): datagram_poll(), and, for a file that would block on the read, no
    EPOLLIN for a queue of datagrams that all fail their checksum (which are dropped
    here), unless the socket is shut down for reading."""
    mask = datagram_poll(s)
    if (
        mask & EPOLLRDNORM
        and not nonblock
        and not s.shutdown & RCV_SHUTDOWN
        and first_packet_length(layer, s) == -1
    ):
        mask &= ~(EPOLLIN | EPOLLRDNORM)
    return mask


async def udp_poll_wait(
    layer: UdpRecv, s: UdpSock, known: int | None, timeout_ns: int, nonblock: bool
) -> int:
    """poll()'s loop on one socket: udp_poll() at once when `known` is None, else
    sleeping on the socket's wait queue until udp_poll() differs from `known` (each
    wake-up looks again) or timeout_ns passes (negative: no limit), then the mask as it
    is. A socket released meanwhile is EBADF."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout_ns < 0 else loop.time() + timeout_ns / 1e9
    while True:
        if s.dead:
            raise errno.kernel_error(errno.EBADF)
        mask = udp_poll(layer, s, nonblock)
        if known is None or mask != known:
            return mask
        remaining = None if deadline is None else deadline - loop.time()
        if remaining is not None and remaining <= 0:
            return mask
        try:
            await sk_wait(s.poll_waiters, remaining)
        except OSError:
            pass  # sk_wait's EAGAIN: the time is up, the mask is looked at once more
