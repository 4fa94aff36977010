"""Route lookups (net/ipv4/route.c): ip_route_output_key for locally generated
packets and ip_route_input for received ones, over the FIB."""

from __future__ import annotations

from services.core import errno
from services.core.skbuff import Dst
from services.core.snmp import SnmpMib
from services.core.wire.ipv4 import ipv4_is_lbcast, ipv4_is_loopback, ipv4_is_multicast
from services.ip.fib import (
    INADDR_LOOPBACK,
    RTN_BROADCAST,
    RTN_LOCAL,
    RTN_UNICAST,
    Fib,
    FibRoute,
)

# include/net/route.h
RTCF_BROADCAST = 0x10000000
RTCF_LOCAL = 0x80000000


class RouteError(Exception):
    def __init__(self, err: int) -> None:
        super().__init__(errno.strerror(err))
        self.errno = err


class Router:
    def __init__(self, fib: Fib, mib: SnmpMib) -> None:
        self.fib = fib
        self.mib = mib
        # The devices' MTUs (ifindex → mtu) as the NIC reports them.
        self.mtus: dict[int, int] = {}

    def input(self, daddr: int) -> FibRoute | None:
        """The FIB lookup of ip_route_input_slow()."""
        return self.fib.lookup(daddr)

    def output(self, daddr: int, saddr: int = 0, oif: int = 0) -> tuple[Dst, int]:
        """ip_route_output_key(): the route and source address for a flow, or RouteError
        with the errno the kernel returns."""
        try:
            return self._output(daddr, saddr, oif)
        except RouteError as err:
            # udp_sendmsg() and __ip4_datagram_connect() count every -ENETUNREACH of the
            # lookup; they run in another process, so the lookup counts for them.
            if err.errno == errno.ENETUNREACH:
                self.mib.ip.inc("OutNoRoutes")
            raise

    def _output(self, daddr: int, saddr: int, oif: int) -> tuple[Dst, int]:
        if saddr:
            # ip_route_output_key_hash_rcu(): a multicast or limited-broadcast source is
            # -EINVAL; one that is not a local address (__ip_dev_find, which also takes
            # any address of a local route, so 127.0.0.9 is ours) is -ENETUNREACH.
            # `ip route get 10.0.0.7 from 10.0.0.99` says the same on 6.18.
            if ipv4_is_multicast(saddr) or ipv4_is_lbcast(saddr):
                raise RouteError(errno.EINVAL)
            if not self.fib.is_local(saddr):
                raise RouteError(errno.ENETUNREACH)
        if not daddr:
            # No destination: the packet loops back to ourselves (127.0.0.1 by default).
            daddr = saddr or INADDR_LOOPBACK
            saddr = saddr or INADDR_LOOPBACK
            lo = self.fib.loopback_ifindex
            return Dst(lo, daddr, self.mtus.get(lo, 65536), RTN_LOCAL, RTCF_LOCAL), saddr
        route = self.fib.lookup(daddr)
        if route is None:
            raise RouteError(errno.ENETUNREACH)
        if route.type == RTN_LOCAL:
            lo = self.fib.loopback_ifindex
            src = saddr or route.prefsrc or daddr
            return Dst(lo, daddr, self.mtus.get(lo, 65536), RTN_LOCAL, RTCF_LOCAL), src
        if ipv4_is_loopback(saddr) and route.ifindex != self.fib.loopback_ifindex:
            # __mkroute_output(): a loopback source may not leave through another device
            # (`ip route get 10.0.0.7 from 127.0.0.1` is -EINVAL).
            raise RouteError(errno.EINVAL)
        if route.type == RTN_BROADCAST:
            src = saddr or route.prefsrc or self.fib.select_addr(route.ifindex, daddr)
            mtu = self.mtus.get(route.ifindex, 1500)
            # __mkroute_output(): a broadcast route is RTCF_BROADCAST | RTCF_LOCAL.
            return Dst(route.ifindex, daddr, mtu, RTN_BROADCAST, RTCF_BROADCAST | RTCF_LOCAL), src
        if route.type != RTN_UNICAST:
            raise RouteError(errno.ENETUNREACH)
        if oif and oif != route.ifindex:
            raise RouteError(errno.ENETUNREACH)
        nexthop = route.gateway or daddr
        src = saddr or route.prefsrc or self.fib.select_addr(route.ifindex, nexthop)
        return Dst(route.ifindex, nexthop, self.mtus.get(route.ifindex, 1500), RTN_UNICAST, 0), src
