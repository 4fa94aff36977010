"""Route lookups (net/ipv4/route.c): ip_route_output_key_hash_rcu() for locally
generated packets, ip_route_input_slow() + ip_error() for received ones, and path MTU
exceptions (__ip_rt_update_pmtu), over the FIB and its policy rules."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from services.core import errno
from services.core.dropreason import SkbDropReason
from services.core.skbuff import Dst
from services.core.snmp import SnmpMib
from services.core.sysctl import Sysctl
from services.core.wire.icmp import ICMP_DEST_UNREACH, ICMP_HOST_UNREACH, ICMP_NET_UNREACH, ICMP_PKT_FILTERED
from services.core.wire.ipv4 import (
    ipv4_is_lbcast,
    ipv4_is_local_multicast,
    ipv4_is_loopback,
    ipv4_is_multicast,
    ipv4_is_zeronet,
)
from services.ip.fib import (
    INADDR_LOOPBACK,
    IP_MAX_MTU,
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RTN_BROADCAST,
    RTN_LOCAL,
    RTN_MULTICAST,
    RTN_UNICAST,
    RTN_UNREACHABLE,
    RTN_UNSPEC,
    Fib,
    FibResult,
    FibRoute,
    Flow,
)

# include/net/route.h
RTCF_NOTIFY = 0x00010000
RTCF_REDIRECTED = 0x00040000
RTCF_DOREDIRECT = 0x01000000
RTCF_BROADCAST = 0x10000000
RTCF_MULTICAST = 0x20000000
RTCF_LOCAL = 0x80000000


# include/uapi/linux/if.h
IFF_UP = 0x1

# A device the NIC has not described: up, and no offloads (the transport does all in
# software).
DEFAULT_DEV_FLAGS = IFF_UP
DEFAULT_DEV_FEATURES = 0

# (ifindex, name, mtu) or (ifindex, name, mtu, features, flags), as the NIC's links.
DeviceSpec = tuple[int, str, int] | tuple[int, str, int, int, int]

IGMP_ALL_HOSTS = 0xE0000001
# ip_rt_get_dev(): what an input route to this host hangs on.
LOOPBACK_MTU = 65536
NSEC_PER_SEC = 1_000_000_000


class RouteError(Exception):
    def __init__(self, err: int) -> None:
        super().__init__(errno.strerror(err))
        self.errno = err


@dataclass(frozen=True, slots=True)
class OutputRoute:
    """struct rtable of an output lookup, with what `ip route get` prints of it."""

    type: int
    daddr: int
    saddr: int
    ifindex: int
    flags: int
    # rt_gw4: set only when the gateway is used (the nexthop's scope is link).
    gateway: int
    mtu: int
    table: int
    # RTA_METRICS as rt_fill_info() fills them: the route's, or the exception's MTU.
    metric_mtu: int
    mtu_locked: bool
    expires_ns: int
    route: FibRoute | None
    # dst->dev->features of the output device.
    dev_features: int = 0

    def dst(self) -> Dst:
        return Dst(
            self.ifindex, self.gateway or self.daddr, self.mtu, self.type, self.flags, self.dev_features
        )


@dataclass(frozen=True, slots=True)
class InputRoute:
    """The outcome of ip_route_input_slow() for one packet, and what dst_input() then
    does with it: local delivery (RTN_LOCAL, RTN_BROADCAST, RTN_MULTICAST), forwarding
    (RTN_UNICAST, dst is the nexthop), or a drop. error is 0, EINVAL for a martian (the
    lookup itself failed), or the dst.error ip_error() reads (EHOSTUNREACH,
    ENETUNREACH, EACCES, EINVAL). icmp is the (type, code) ip_error() would send before
    its per-source rate limit; counter the Ip MIB counter it bumps ("InAddrErrors",
    "InNoRoutes") or TcpExt's "IPReversePathFilter"; reason the skb's drop reason."""

    type: int
    dst: Dst | None
    spec_dst: int = 0
    error: int = 0
    icmp: tuple[int, int] | None = None
    counter: str | None = None
    reason: SkbDropReason = SkbDropReason.NOT_SPECIFIED
    table: int = 0
    flags: int = 0
    saddr: int = 0

    @property
    def delivered(self) -> bool:
        return self.error == 0 and self.type in (RTN_LOCAL, RTN_BROADCAST, RTN_MULTICAST)


class Router:
    def __init__(self, fib: Fib, mib: SnmpMib, sysctl: Sysctl | None = None) -> None:
        self.fib = fib
        self.mib = mib
        # The layer's sysctl table (ip_forward, rp_filter, route.min_pmtu,
        # route.mtu_expires); a private default one until the layer hands its own.
        self.sysctl = sysctl if sysctl is not None else Sysctl()
        # The devices (ifindex → mtu, name, NETIF_F_* features, IFF_* flags) as the NIC
        # reports them.
        self.mtus: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.features: dict[int, int] = {}
        self.flags: dict[int, int] = {}
        # Groups each device is a member of (ip_check_mc_rcu); all-hosts always.
        self.mc_groups: dict[int, set[int]] = {}

    def set_devices(self, devices: Iterable[DeviceSpec]) -> bool:
        """The NIC's devices (ifindex, name, mtu[, features, flags]): names for `dev
        eth0` and rules' iif/oif, MTUs and features for routes, flags for oif
        lookups. A changed MTU flushes cached routes (genid), and so do changed
        features: the kernel reads dst->dev->features at each send, a transport that
        caches the route here must renew it. True when anything about any device
        changed (or a device is new)."""
        changed = flush = False
        for dev in devices:
            ifindex, name, mtu = dev[0], dev[1], dev[2]
            if len(dev) == 5:
                features, flags = dev[3], dev[4]
            else:
                features = self.features.get(ifindex, DEFAULT_DEV_FEATURES)
                flags = self.flags.get(ifindex, DEFAULT_DEV_FLAGS)
            old = (self.names.get(ifindex), self.mtus.get(ifindex), self.features.get(ifindex))
            if old != (name, mtu, features) or self.flags.get(ifindex) != flags:
                changed = True
                known = ifindex in self.mtus
                flush = flush or (known and (old[1] != mtu or old[2] != features))
                self.names[ifindex] = name
                self.mtus[ifindex] = mtu
                self.features[ifindex] = features
                self.flags[ifindex] = flags
        self.fib.rules.resolve(self.names)
        if flush:
            self.fib.changed()
        return changed

    def ifindex(self, name: str) -> int:
        return next((i for i, n in self.names.items() if n == name), 0)

    def devices(self) -> dict[int, str]:
        """ifindex → name of every device known: the NIC's, else the addresses' labels."""
        devices = dict(self.names)
        for ifa in self.fib.ifaddrs:
            devices.setdefault(ifa.ifindex, ifa.label)
        devices.setdefault(self.fib.loopback_ifindex, "lo")
        for i in self.mtus:
            devices.setdefault(i, str(i))
        return devices

    def _forwarding(self) -> bool:
        # devinet_sysctl_forward(): ip_forward sets conf/all and every device's forwarding.
        return self.sysctl.get_int("net.ipv4.ip_forward") != 0

    @staticmethod
    def _now(now_ns: int | None) -> int:
        return time.monotonic_ns() if now_ns is None else now_ns

    # Output.

    def input(self, daddr: int) -> FibRoute | None:
        """The FIB lookup of ip_route_input_slow() alone (kept for the layer)."""
        return self.fib.lookup(daddr)

    def output(
        self,
        daddr: int,
        saddr: int = 0,
        oif: int = 0,
        *,
        tos: int = 0,
        mark: int = 0,
        scope: int = RT_SCOPE_UNIVERSE,
        now_ns: int | None = None,
    ) -> tuple[Dst, int]:
        """ip_route_output_key(): the route and source address for a flow, or RouteError
        with the errno the kernel returns. scope is flowi4_scope: RT_SCOPE_LINK
        (MSG_DONTROUTE, SO_DONTROUTE, a strict source route) takes only routes of
        link scope or narrower, so a destination behind a gateway is ENETUNREACH."""
        rt = self.route_output(daddr, saddr, oif, tos=tos, mark=mark, scope=scope, now_ns=now_ns)
        return rt.dst(), rt.saddr

    def route_output(
        self,
        daddr: int,
        saddr: int = 0,
        oif: int = 0,
        *,
        tos: int = 0,
        mark: int = 0,
        scope: int = RT_SCOPE_UNIVERSE,
        now_ns: int | None = None,
        count: bool = True,
    ) -> OutputRoute:
        try:
            return self._output_rt(daddr, saddr, oif, tos & 0xFC, mark, self._now(now_ns), scope)
        except RouteError as err:
            # udp_sendmsg() and __ip4_datagram_connect() count every -ENETUNREACH of the
            # lookup; they run in another process, so the lookup counts for them.
            if err.errno == errno.ENETUNREACH and count:
                self.mib.ip.inc("OutNoRoutes")
            raise

    def _output(
        self, daddr: int, saddr: int = 0, oif: int = 0, tos: int = 0, mark: int = 0
    ) -> tuple[Dst, int]:
        """output() without the OutNoRoutes count (ICMP's replies use it)."""
        rt = self.route_output(daddr, saddr, oif, tos=tos, mark=mark, count=False)
        return rt.dst(), rt.saddr

    def _output_rt(
        self, daddr: int, saddr: int, oif: int, tos: int, mark: int, now: int, scope: int = RT_SCOPE_UNIVERSE
    ) -> OutputRoute:
        """ip_route_output_key_hash_rcu(). flowi4_scope (scope) narrows the FIB lookup
        (fib_table_lookup skips aliases whose scope is wider) and is the scope of the
        source picked for a multicast destination on a given oif; the on-link guess
        with an oif still applies when the narrowed lookup finds nothing."""
        fib = self.fib
        lo = fib.loopback_ifindex
        orig_oif = oif
        rtype = RTN_UNSPEC
        res: FibResult | None = None
        flags = 0
        dev_out = 0
        if saddr:
            if ipv4_is_multicast(saddr) or ipv4_is_lbcast(saddr) or ipv4_is_zeronet(saddr):
                raise RouteError(errno.EINVAL)
            if oif == 0 and (ipv4_is_multicast(daddr) or ipv4_is_lbcast(daddr)):
                # The "vic/vat" hack: a multicast or broadcast from one of our addresses
                # leaves through the device that has it.
                dev_out = fib.ip_dev_find(saddr)
                if not dev_out:
                    raise RouteError(errno.ENETUNREACH)
                return self._mkroute(daddr, saddr, dev_out, orig_oif, rtype, flags, None, now, mark)
            if not fib.is_local(saddr):
                raise RouteError(errno.ENETUNREACH)
        if oif:
            if oif not in self.devices():
                raise RouteError(errno.ENODEV)
            if not self.flags.get(oif, DEFAULT_DEV_FLAGS) & IFF_UP:
                raise RouteError(errno.ENETUNREACH)
            dev_out = oif
            if ipv4_is_local_multicast(daddr) or ipv4_is_lbcast(daddr):
                saddr = saddr or self._select(oif, 0, RT_SCOPE_LINK)
                return self._mkroute(daddr, saddr, dev_out, orig_oif, rtype, flags, None, now, mark)
            if not saddr:
                if ipv4_is_multicast(daddr):
                    saddr = self._select(oif, 0, scope)
                elif not daddr:
                    saddr = self._select(oif, 0, RT_SCOPE_HOST)
        if not daddr:
            daddr = saddr or INADDR_LOOPBACK
            saddr = saddr or INADDR_LOOPBACK
            return self._mkroute(daddr, saddr, lo, lo, RTN_LOCAL, RTCF_LOCAL, None, now, mark)
        res, err = fib.fib_lookup(Flow(daddr, saddr, oif, lo, tos, mark, scope))
        if err or res is None:
            if oif:
                # "Apparently, routing tables are wrong. Assume, that the destination is
                # on link." (even over a blackhole or unreachable route)
                saddr = saddr or self._select(dev_out, 0, RT_SCOPE_LINK)
                return self._mkroute(daddr, saddr, dev_out, orig_oif, RTN_UNICAST, flags, None, now, mark)
            raise RouteError(err)
        route = res.route
        if route.type == RTN_LOCAL:
            saddr = saddr or route.prefsrc or daddr
            return self._mkroute(daddr, saddr, lo, route.ifindex, RTN_LOCAL, RTCF_LOCAL, res, now, mark)
        # fib_select_path() → fib_result_prefsrc().
        if not saddr:
            saddr = route.prefsrc or self._select(route.ifindex, route.gateway, route.scope)
        return self._mkroute(daddr, saddr, route.ifindex, orig_oif, route.type, flags, res, now, mark)

    def _select(self, ifindex: int, dst: int, scope: int) -> int:
        return self.fib.inet_select_addr(ifindex, dst, scope, self.devices())

    def _mkroute(
        self,
        daddr: int,
        saddr: int,
        dev_out: int,
        orig_oif: int,
        rtype: int,
        flags: int,
        res: FibResult | None,
        now: int,
        mark: int,
    ) -> OutputRoute:
        """__mkroute_output() + rt_set_nexthop()."""
        lo = self.fib.loopback_ifindex
        if ipv4_is_loopback(saddr) and dev_out != lo:
            raise RouteError(errno.EINVAL)
        if ipv4_is_lbcast(daddr):
            rtype = RTN_BROADCAST
        elif ipv4_is_multicast(daddr):
            rtype = RTN_MULTICAST
        elif ipv4_is_zeronet(daddr):
            raise RouteError(errno.EINVAL)
        if dev_out == lo:
            flags |= RTCF_LOCAL
        route = res.route if res is not None else None
        if rtype == RTN_BROADCAST:
            flags |= RTCF_BROADCAST | RTCF_LOCAL
            route = None
        elif rtype == RTN_MULTICAST:
            flags |= RTCF_MULTICAST | RTCF_LOCAL
            if daddr not in self.mc_groups.get(dev_out, {IGMP_ALL_HOSTS}):
                flags &= ~RTCF_LOCAL
            if route is not None and route.prefixlen < 4:
                route = None
        elif rtype == RTN_LOCAL and orig_oif and orig_oif != dev_out:
            route = None
        gateway = 0
        metric_mtu = 0
        locked = False
        pmtu = 0
        expires = 0
        if route is not None:
            if route.gateway and route.nh_scope == RT_SCOPE_LINK:
                gateway = route.gateway
            metric_mtu, locked = route.mtu, route.mtu_locked
            fnhe = self.fib.find_exception(route, daddr, now)
            if fnhe is not None and fnhe.pmtu:
                pmtu, expires = fnhe.pmtu, fnhe.expires_ns
                locked = locked or fnhe.locked
        # ipv4_mtu(): the exception's PMTU while valid, the route's MTU metric, the
        # device's MTU (576 through a gateway when the MTU is locked).
        mtu = pmtu or metric_mtu
        if not mtu:
            mtu = self.mtus.get(dev_out, LOOPBACK_MTU if dev_out == lo else 1500)
            if locked and gateway and mtu > 576:
                mtu = 576
        if pmtu or metric_mtu:
            mtu = min(mtu, IP_MAX_MTU)
        return OutputRoute(
            type=rtype,
            daddr=daddr,
            saddr=saddr,
            ifindex=dev_out,
            flags=flags,
            gateway=gateway,
            mtu=mtu,
            table=res.table if res is not None else 0,
            metric_mtu=pmtu or metric_mtu,
            mtu_locked=locked,
            expires_ns=expires,
            route=route,
            dev_features=self.features.get(dev_out, DEFAULT_DEV_FEATURES),
        )

    # Path MTU.

    def update_pmtu(
        self,
        daddr: int,
        mtu: int,
        now_ns: int | None = None,
        *,
        saddr: int = 0,
        oif: int = 0,
        tos: int = 0,
        mark: int = 0,
    ) -> bool:
        """__ip_rt_update_pmtu(): learn a smaller path MTU for daddr as an exception on
        the nexthop that reaches it. Ignored when the route's MTU is locked or the new
        MTU is not smaller; below net.ipv4.route.min_pmtu it becomes min_pmtu and locked.
        Expires after net.ipv4.route.mtu_expires seconds. True when something changed
        (the FIB generation moves so senders refresh their cached routes)."""
        now = self._now(now_ns)
        try:
            rt = self._output_rt(daddr, saddr, oif, tos & 0xFC, mark, now)
        except RouteError:
            return False
        if rt.mtu_locked:
            return False
        old_mtu = rt.mtu
        if old_mtu < mtu:
            return False
        lock = False
        min_pmtu = self.sysctl.get_int("net.ipv4.route.min_pmtu")
        if mtu < min_pmtu:
            lock = True
            mtu = min(old_mtu, min_pmtu)
        expires_s = self.sysctl.get_int("net.ipv4.route.mtu_expires")
        if (
            rt.expires_ns
            and rt.metric_mtu == mtu
            and not lock
            and now < rt.expires_ns - expires_s * NSEC_PER_SEC // 2
        ):
            return False
        res, err = self.fib.fib_lookup(Flow(daddr, saddr, oif, self.fib.loopback_ifindex, tos & 0xFC, mark))
        if err or res is None:
            return False
        self.fib.update_exception(res.route, daddr, mtu, lock, max(1, now + expires_s * NSEC_PER_SEC), now)
        self.fib.changed()
        return True

    # Input.

    def route_input(
        self, daddr: int, saddr: int, iif: int, tos: int = 0, mark: int = 0, now_ns: int | None = None
    ) -> InputRoute:
        """ip_route_input_rcu() → ip_route_input_slow() (and ip_route_input_mc()), then
        what ip_error() does with a route that is an error."""
        now = self._now(now_ns)
        tos &= 0xFC
        if iif not in self.devices():
            return self._martian(SkbDropReason.NOT_SPECIFIED, saddr)
        if ipv4_is_multicast(daddr):
            return self._input_mc(daddr, saddr, iif, tos, mark)
        if ipv4_is_multicast(saddr) or ipv4_is_lbcast(saddr):
            return self._martian(SkbDropReason.IP_INVALID_SOURCE, saddr)
        if ipv4_is_lbcast(daddr) or (saddr == 0 and daddr == 0):
            return self._brd_input(daddr, saddr, iif, tos, mark, None)
        if ipv4_is_zeronet(saddr):
            return self._martian(SkbDropReason.IP_INVALID_SOURCE, saddr)
        if ipv4_is_zeronet(daddr):
            return self._martian(SkbDropReason.IP_INVALID_DEST, saddr)
        # route_localnet is not modelled (0): 127/8 never crosses a real device.
        if ipv4_is_loopback(daddr) and iif != self.fib.loopback_ifindex:
            return self._martian(SkbDropReason.IP_LOCALNET, saddr)
        if ipv4_is_loopback(saddr) and iif != self.fib.loopback_ifindex:
            return self._martian(SkbDropReason.IP_LOCALNET, saddr)
        forwarding = self._forwarding()
        res, err = self.fib.fib_lookup(Flow(daddr, saddr, 0, iif, tos, mark))
        if err or res is None:
            return self._no_route(err if forwarding else errno.EHOSTUNREACH, forwarding, saddr)
        route = res.route
        if route.type == RTN_BROADCAST:
            return self._brd_input(daddr, saddr, iif, tos, mark, res)
        if route.type == RTN_LOCAL:
            reason = self._validate_source(saddr, daddr, tos, 0, iif, mark)
            if reason is not None:
                return self._martian(reason, saddr)
            return self._local_input(daddr, saddr, iif, tos, mark, RTN_LOCAL, 0, res)
        if not forwarding:
            return self._no_route(errno.EHOSTUNREACH, forwarding, saddr)
        if route.type != RTN_UNICAST:
            return self._martian(SkbDropReason.IP_INVALID_DEST, saddr)
        # ip_mkroute_input() → __mkroute_input(): the source is checked against the
        # way out, then the forwarding dst with the exception's MTU.
        reason = self._validate_source(saddr, daddr, tos, route.ifindex, iif, mark)
        if reason is not None:
            return self._martian(reason, saddr)
        rt = self._mkroute(
            daddr,
            saddr or self._select(route.ifindex, 0, RT_SCOPE_LINK),
            route.ifindex,
            0,
            RTN_UNICAST,
            0,
            res,
            now,
            mark,
        )
        return InputRoute(RTN_UNICAST, rt.dst(), table=res.table, flags=0, saddr=saddr)

    def _martian(self, reason: SkbDropReason, saddr: int) -> InputRoute:
        # ip_handle_martian_source() / martian_destination: RT_CACHE_STAT only.
        counter = "IPReversePathFilter" if reason == SkbDropReason.IP_RPFILTER else None
        return InputRoute(RTN_UNSPEC, None, error=errno.EINVAL, counter=counter, reason=reason, saddr=saddr)

    def _no_route(self, err: int, forwarding: bool, saddr: int) -> InputRoute:
        """no_route: an RTN_UNREACHABLE dst whose error ip_error() turns into counters
        and, on a forwarding device, an ICMP destination unreachable."""
        lo = self.fib.loopback_ifindex
        dst = Dst(lo, 0, self.mtus.get(lo, LOOPBACK_MTU), RTN_UNREACHABLE, 0)
        counter: str | None = None
        reason = SkbDropReason.NOT_SPECIFIED
        icmp: tuple[int, int] | None = None
        if not forwarding:
            if err == errno.EHOSTUNREACH:
                counter, reason = "InAddrErrors", SkbDropReason.IP_INADDRERRORS
            elif err == errno.ENETUNREACH:
                counter, reason = "InNoRoutes", SkbDropReason.IP_INNOROUTES
        elif err == errno.EHOSTUNREACH:
            icmp = (ICMP_DEST_UNREACH, ICMP_HOST_UNREACH)
        elif err == errno.ENETUNREACH:
            icmp = (ICMP_DEST_UNREACH, ICMP_NET_UNREACH)
            counter, reason = "InNoRoutes", SkbDropReason.IP_INNOROUTES
        elif err == errno.EACCES:
            icmp = (ICMP_DEST_UNREACH, ICMP_PKT_FILTERED)
        return InputRoute(
            RTN_UNREACHABLE, dst, error=err, icmp=icmp, counter=counter, reason=reason, saddr=saddr
        )

    def _brd_input(
        self, daddr: int, saddr: int, iif: int, tos: int, mark: int, res: FibResult | None
    ) -> InputRoute:
        if not ipv4_is_zeronet(saddr):
            reason = self._validate_source(saddr, 0, tos, 0, iif, mark)
            if reason is not None:
                return self._martian(reason, saddr)
        return self._local_input(daddr, saddr, iif, tos, mark, RTN_BROADCAST, RTCF_BROADCAST, res)

    def _local_input(
        self,
        daddr: int,
        saddr: int,
        iif: int,
        tos: int,
        mark: int,
        rtype: int,
        flags: int,
        res: FibResult | None,
    ) -> InputRoute:
        """local_input: the dst hangs on loopback (ip_rt_get_dev), RTCF_LOCAL."""
        lo = self.fib.loopback_ifindex
        flags |= RTCF_LOCAL
        dst = Dst(lo, daddr, self.mtus.get(lo, LOOPBACK_MTU), rtype, flags)
        return InputRoute(
            rtype,
            dst,
            spec_dst=self.spec_dst(daddr, saddr, iif, tos, flags),
            table=res.table if res is not None else 0,
            flags=flags,
            saddr=saddr,
        )

    def _input_mc(self, daddr: int, saddr: int, iif: int, tos: int, mark: int) -> InputRoute:
        """ip_route_input_rcu()'s multicast branch: only groups the device joined (the
        all-hosts group always) are delivered; ip_mc_validate_source() on the source."""
        if daddr not in self.mc_groups.get(iif, {IGMP_ALL_HOSTS}):
            return InputRoute(
                RTN_UNSPEC, None, error=errno.EINVAL, reason=SkbDropReason.NOT_SPECIFIED, saddr=saddr
            )
        if ipv4_is_multicast(saddr) or ipv4_is_lbcast(saddr):
            return self._martian(SkbDropReason.IP_INVALID_SOURCE, saddr)
        if ipv4_is_loopback(saddr) and iif != self.fib.loopback_ifindex:
            return self._martian(SkbDropReason.IP_LOCALNET, saddr)
        if ipv4_is_zeronet(saddr):
            if not ipv4_is_local_multicast(daddr):
                return self._martian(SkbDropReason.IP_INVALID_SOURCE, saddr)
        else:
            reason = self._validate_source(saddr, 0, tos, 0, iif, mark)
            if reason is not None:
                return self._martian(reason, saddr)
        return self._local_input(daddr, saddr, iif, tos, mark, RTN_MULTICAST, RTCF_MULTICAST, None)

    def _validate_source(
        self, src: int, dst: int, tos: int, oif: int, iif: int, mark: int
    ) -> SkbDropReason | None:
        """fib_validate_source(): a source that is one of our addresses is a martian
        (IP_LOCAL_SOURCE, accept_local is 0); with rp_filter (the max of conf/all and
        the device's, only conf/all here) the route back to the source must leave
        through the device the packet came in on, else IP_RPFILTER."""
        fib = self.fib
        rpf = self.sysctl.get_int("net.ipv4.conf.all.rp_filter")
        if not rpf and iif != oif and not fib.custom_local_routes and fib.merged:
            return SkbDropReason.IP_LOCAL_SOURCE if fib.ip_dev_find(src) else None
        res, err = fib.fib_lookup(Flow(src, dst, 0, oif or fib.loopback_ifindex, tos, 0))
        if err or res is None:
            return SkbDropReason.IP_RPFILTER if rpf else None
        route = res.route
        if route.type not in (RTN_UNICAST,):
            return SkbDropReason.IP_LOCAL_SOURCE
        dev_match = route.ifindex == iif
        if dev_match:
            return None
        if not fib.dev_ifaddrs(iif):
            return SkbDropReason.IP_RPFILTER if rpf else None
        if rpf == 1:
            return SkbDropReason.IP_RPFILTER
        return None

    def spec_dst(self, daddr: int, saddr: int, iif: int, tos: int, flags: int) -> int:
        """fib_compute_spec_dst(): what IP_PKTINFO's ipi_spec_dst reports: the
        destination of a unicast packet to us, else the source address we would use
        to answer (the prefsrc of the route back), else the device's address."""
        if flags & (RTCF_BROADCAST | RTCF_MULTICAST | RTCF_LOCAL) == RTCF_LOCAL:
            return daddr
        scope = RT_SCOPE_UNIVERSE
        if not ipv4_is_zeronet(saddr):
            res, err = self.fib.fib_lookup(Flow(saddr, 0, 0, self.fib.loopback_ifindex, tos, 0))
            if not err and res is not None:
                route = res.route
                return route.prefsrc or self._select(route.ifindex, route.gateway, route.scope)
        else:
            scope = RT_SCOPE_LINK
        return self._select(iif, 0, scope)
