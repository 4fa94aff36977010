"""UDP socket lookup cost (__udp4_lib_lookup on UdpTable) as the table grows: 1, 100
and 10,000 sockets on distinct ports; 10,000 sockets on one port, each on its own local
address (127.x.y.z: the secondary hash by address keeps the lookup to one chain); and
10,000 connected sockets sharing one local address and port (the four-tuple hash finds
each at once, and a datagram from a new peer skips them all). The figures should stay
close to each other: no lookup walks sockets that cannot match.

    .venv/bin/python scripts/bench_udp_lookup.py
"""

from __future__ import annotations

import itertools
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.ip.sockglue import InetOpts
from services.udp.sock import TCP_ESTABLISHED, UdpSock
from services.udp.table import UdpTable

LOOKUPS = 20_000
RUNS = 7
LO = 0x7F000001
PEER = 0x7F000002
RANGE = (32768, 60999)
LO_IF = 1

Lookup = tuple[int, int, int, int, int]
_ids = itertools.count(1)


def sock(addr: int, *, reuseport: bool = False) -> UdpSock:
    return UdpSock(
        sk=next(_ids),
        protocol=17,
        rcvbuf=212992,
        sndbuf=212992,
        inet=InetOpts(),
        rcv_saddr=addr,
        reuseport=reuseport,
    )


def distinct_ports(n: int) -> tuple[UdpTable, list[Lookup]]:
    t = UdpTable(rng=random.Random(1))
    for i in range(n):
        t.get_port(sock(LO), 20000 + i, RANGE)
    return t, [(PEER, 40000 + i % 1000, LO, 20000 + i % n, LO_IF) for i in range(LOOKUPS)]


def one_port_many_addresses(n: int) -> tuple[UdpTable, list[Lookup]]:
    t = UdpTable(rng=random.Random(1))
    addrs = [0x7F000000 | (i + 0x100) for i in range(n)]  # 127.0.1.0, 127.0.1.1, ...
    for addr in addrs:
        t.get_port(sock(addr), 5000, RANGE)
    return t, [(PEER, 40000, addrs[i % n], 5000, LO_IF) for i in range(LOOKUPS)]


def one_port_many_connected(n: int, *, new_peers: bool = False) -> tuple[UdpTable, list[Lookup]]:
    """A SO_REUSEPORT listener on 127.0.0.1:5000 and n sockets on the same address and
    port, each connected to its own peer port (as a QUIC server's are)."""
    t = UdpTable(rng=random.Random(1))
    t.get_port(sock(LO, reuseport=True), 5000, RANGE)
    for i in range(n):
        sk = sock(LO, reuseport=True)
        t.get_port(sk, 5000, RANGE)
        sk.daddr, sk.dport, sk.state = PEER, 10000 + i, TCP_ESTABLISHED
        t.connected(sk)
    first = 10000 + n if new_peers else 10000
    return t, [(PEER, first + i % n, LO, 5000, LO_IF) for i in range(LOOKUPS)]


def measure(t: UdpTable, lookups: list[Lookup]) -> float:
    """The median over RUNS of the µs one lookup takes."""
    lookup = t.lookup
    runs = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        for saddr, sport, daddr, dport, dif in lookups:
            lookup(saddr, sport, daddr, dport, dif)
        runs.append((time.perf_counter() - t0) / len(lookups) * 1e6)
    return statistics.median(runs)


def main() -> None:
    cases: list[tuple[str, Callable[[], tuple[UdpTable, list[Lookup]]]]] = [
        ("1 socket", lambda: distinct_ports(1)),
        ("100 sockets, distinct ports", lambda: distinct_ports(100)),
        ("10,000 sockets, distinct ports", lambda: distinct_ports(10_000)),
        ("10,000 sockets, one port, distinct addresses", lambda: one_port_many_addresses(10_000)),
        ("10,000 connected sockets, one port", lambda: one_port_many_connected(10_000)),
        ("  ... a datagram from a new peer", lambda: one_port_many_connected(10_000, new_peers=True)),
    ]
    for what, build in cases:
        t, lookups = build()
        # Every lookup finds a socket (the last case: the listener).
        assert all(t.lookup(*a) is not None for a in lookups[:1000])
        print(f"{what:<46} {len(t):>6} in table  {measure(t, lookups):6.2f} us/lookup")


if __name__ == "__main__":
    main()
