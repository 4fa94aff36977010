"""struct udp_sock: one UDP socket's addresses, receive queue and accounting."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from services.core.skbuff import Dst, SkBuff

# include/net/tcp_states.h: UDP uses these two for "unconnected" and "connected".
TCP_ESTABLISHED = 1
TCP_CLOSE = 7

# include/net/sock.h sk_userlocks
SOCK_BINDADDR_LOCK = 4
SOCK_BINDPORT_LOCK = 8


@dataclass(slots=True)
class CachedRoute:
    """sk_dst_cache: the route of a connected socket, valid while the FIB generation
    it was looked up under is current."""

    dst: Dst
    saddr: int
    genid: int


@dataclass(eq=False, slots=True)
class UdpSock:
    sk: int
    protocol: int
    rcvbuf: int
    sndbuf: int
    pmtudisc: int
    owner_pid: int = 0
    owner_fd: int = 0
    state: int = TCP_CLOSE
    # inet_rcv_saddr (bound address), inet_saddr (source used), inet_num (local port)
    rcv_saddr: int = 0
    saddr: int = 0
    num: int = 0
    daddr: int = 0
    dport: int = 0
    userlocks: int = 0
    broadcast: bool = False
    # UDP_GRO (udp_sk(sk)->gro_enabled with ACCEPT_L4): GRO skbs are queued whole
    # instead of being split by udp_unexpected_gso().
    gro_enabled: bool = False
    inet_id: int = 0
    rmem_alloc: int = 0
    drops: int = 0
    dst_cache: CachedRoute | None = None
    receive_queue: deque[SkBuff] = field(default_factory=deque)
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    dead: bool = False

    def data_ready(self) -> None:
        """sk_data_ready(): wake the first reader waiting (exclusive wake-up)."""
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    def wake_all(self) -> None:
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(None)
