"""udp_table: the sockets by local port (net/ipv4/udp.c udp_lib_get_port,
__udp4_lib_lookup).

Sockets sharing a port live in one chain, newest first, as hlist_add_head_rcu leaves
them; a lookup scores each socket of the destination port's chain (compute_score), so
its cost does not grow with the number of sockets on other ports.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from services.core import errno
from services.udp.sock import UdpSock


def _saddr_equal(a: UdpSock, b: UdpSock) -> bool:
    """inet_rcv_saddr_equal(match_wildcard=true)."""
    return a.rcv_saddr == b.rcv_saddr or not a.rcv_saddr or not b.rcv_saddr


class UdpTable:
    def __init__(self) -> None:
        self._ports: dict[int, list[UdpSock]] = {}

    def __iter__(self) -> Iterator[UdpSock]:
        for chain in self._ports.values():
            yield from chain

    def __len__(self) -> int:
        return sum(len(c) for c in self._ports.values())

    def _inuse(self, sk: UdpSock, port: int) -> bool:
        """udp_lib_lport_inuse() without SO_REUSEADDR/SO_REUSEPORT (socket issue)."""
        return any(other is not sk and _saddr_equal(sk, other) for other in self._ports.get(port, ()))

    def get_port(self, sk: UdpSock, snum: int, port_range: tuple[int, int]) -> None:
        """udp_lib_get_port(): hash sk on snum, or on a free ephemeral port if snum is 0.
        Raises EADDRINUSE."""
        if snum == 0:
            snum = self._pick_ephemeral(sk, port_range)
        elif self._inuse(sk, snum):
            raise errno.kernel_error(errno.EADDRINUSE)
        sk.num = snum
        self._ports.setdefault(snum, []).insert(0, sk)

    def _pick_ephemeral(self, sk: UdpSock, port_range: tuple[int, int]) -> int:
        """The search of udp_lib_get_port(): a random first port, then a walk through the
        range by a random odd stride, so every port is tried once."""
        low, high = port_range
        remaining = high - low + 1
        first = random.randrange(remaining)
        stride = random.randrange(remaining) | 1
        while math.gcd(stride, remaining) != 1:
            stride = random.randrange(remaining) | 1
        for i in range(remaining):
            port = low + (first + i * stride) % remaining
            if not self._inuse(sk, port):
                return port
        raise errno.kernel_error(errno.EADDRINUSE)

    def unhash(self, sk: UdpSock) -> None:
        chain = self._ports.get(sk.num)
        if chain is not None and sk in chain:
            chain.remove(sk)
            if not chain:
                del self._ports[sk.num]

    def lookup(self, saddr: int, sport: int, daddr: int, dport: int, dif: int) -> UdpSock | None:
        """__udp4_lib_lookup(): the best-scoring socket bound to dport, exact local
        address first, then the wildcard (compute_score)."""
        chain = self._ports.get(dport)
        if not chain:
            return None
        for want in (daddr, 0):
            best, best_score = None, -1
            for sk in chain:
                if sk.rcv_saddr != want:
                    continue
                score = 2
                if sk.daddr:
                    if sk.daddr != saddr:
                        continue
                    score += 4
                if sk.dport:
                    if sk.dport != sport:
                        continue
                    score += 4
                if score > best_score:
                    best, best_score = sk, score
            if best is not None:
                return best
        return None
