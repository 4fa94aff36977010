"""The IPv4 FIB: interface addresses and the local and main tables
(net/ipv4/fib_frontend.c, fib_trie.c).

A table is a dict per prefix length, probed from the longest length present, so a
lookup costs at most 33 dict probes whatever the number of routes.
"""

from __future__ import annotations

from dataclasses import dataclass

# include/uapi/linux/rtnetlink.h
RTN_UNICAST = 1
RTN_LOCAL = 2
RTN_BROADCAST = 3
RTN_BLACKHOLE = 6
RTN_UNREACHABLE = 7
RTN_PROHIBIT = 8

RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255

RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254

INADDR_ANY = 0
INADDR_BROADCAST = 0xFFFFFFFF
INADDR_LOOPBACK = 0x7F000001


def inet_make_mask(prefixlen: int) -> int:
    return (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF if prefixlen else 0


@dataclass(frozen=True, slots=True)
class InIfaddr:
    """struct in_ifaddr."""

    ifindex: int
    label: str
    address: int
    prefixlen: int

    @property
    def mask(self) -> int:
        return inet_make_mask(self.prefixlen)

    @property
    def broadcast(self) -> int:
        # `ip addr add ... brd +`, what the launcher configures.
        return (self.address | ~self.mask) & 0xFFFFFFFF if self.prefixlen < 31 else 0


@dataclass(frozen=True, slots=True)
class FibRoute:
    dst: int
    prefixlen: int
    type: int
    ifindex: int
    scope: int
    prefsrc: int = 0
    gateway: int = 0
    table: int = RT_TABLE_MAIN


class FibTable:
    def __init__(self, table_id: int) -> None:
        self.id = table_id
        self._by_len: dict[int, dict[int, FibRoute]] = {}
        self._lens: list[int] = []

    def insert(self, route: FibRoute) -> None:
        routes = self._by_len.setdefault(route.prefixlen, {})
        routes[route.dst & inet_make_mask(route.prefixlen)] = route
        self._lens = sorted(self._by_len, reverse=True)

    def delete(self, dst: int, prefixlen: int) -> bool:
        routes = self._by_len.get(prefixlen)
        if routes is None or routes.pop(dst & inet_make_mask(prefixlen), None) is None:
            return False
        if not routes:
            del self._by_len[prefixlen]
            self._lens = sorted(self._by_len, reverse=True)
        return True

    def lookup(self, daddr: int) -> FibRoute | None:
        for plen in self._lens:
            route = self._by_len[plen].get(daddr & inet_make_mask(plen))
            if route is not None:
                return route
        return None

    def routes(self) -> list[FibRoute]:
        return [r for plen in self._lens for r in self._by_len[plen].values()]


class Fib:
    """The default policy: table local (priority 0), then main (32766)."""

    def __init__(self) -> None:
        self.local = FibTable(RT_TABLE_LOCAL)
        self.main = FibTable(RT_TABLE_MAIN)
        self.ifaddrs: list[InIfaddr] = []
        self.loopback_ifindex = 1
        # rt_genid_bump_ipv4(): every change invalidates the routes callers cached.
        self.genid = 1

    def lookup(self, daddr: int) -> FibRoute | None:
        """fib_lookup() with the default rules."""
        return self.local.lookup(daddr) or self.main.lookup(daddr)

    def add_ifaddr(self, ifa: InIfaddr, loopback: bool) -> None:
        """fib_add_ifaddr(): the local and broadcast routes an address brings, and the
        prefix route (RTN_LOCAL in the local table for a loopback device)."""
        self.ifaddrs.append(ifa)
        self.local.insert(
            FibRoute(
                ifa.address, 32, RTN_LOCAL, ifa.ifindex, RT_SCOPE_HOST, ifa.address, table=RT_TABLE_LOCAL
            )
        )
        prefix = ifa.address & ifa.mask
        if prefix != ifa.address or ifa.prefixlen < 32:
            if loopback:
                self.local.insert(
                    FibRoute(
                        prefix,
                        ifa.prefixlen,
                        RTN_LOCAL,
                        ifa.ifindex,
                        RT_SCOPE_HOST,
                        ifa.address,
                        table=RT_TABLE_LOCAL,
                    )
                )
            else:
                self.main.insert(
                    FibRoute(prefix, ifa.prefixlen, RTN_UNICAST, ifa.ifindex, RT_SCOPE_LINK, ifa.address)
                )
        if ifa.broadcast:
            self.local.insert(
                FibRoute(
                    ifa.broadcast,
                    32,
                    RTN_BROADCAST,
                    ifa.ifindex,
                    RT_SCOPE_LINK,
                    ifa.address,
                    table=RT_TABLE_LOCAL,
                )
            )
        self.genid += 1

    def is_local(self, addr: int) -> bool:
        """__ip_dev_find(): is addr one of this host's addresses? Like the kernel, an
        address the local table routes as RTN_LOCAL counts (127.0.0.9 via 127.0.0.0/8)."""
        if any(ifa.address == addr for ifa in self.ifaddrs):
            return True
        route = self.local.lookup(addr)
        return route is not None and route.type == RTN_LOCAL

    def select_addr(self, ifindex: int, dst: int) -> int:
        """inet_select_addr(): the device's primary address in dst's subnet, else its
        first address, else any address of the host."""
        first = 0
        for ifa in self.ifaddrs:
            if ifa.ifindex != ifindex:
                continue
            if (ifa.address ^ dst) & ifa.mask == 0:
                return ifa.address
            first = first or ifa.address
        return first or (self.ifaddrs[0].address if self.ifaddrs else 0)
