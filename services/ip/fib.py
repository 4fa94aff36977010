"""The IPv4 FIB: interface addresses, routing tables and nexthop exceptions
(net/ipv4/fib_frontend.c, fib_trie.c, fib_semantics.c, devinet.c).

A table keeps, per prefix length, a dict from prefix to the routes (fib_alias) of that
prefix in the kernel's order, and probes the lengths present from the longest: a lookup
costs at most 33 dict probes per table whatever the number of routes.

While no policy rule was ever added, the kernel keeps the local and main tables in one
trie (fib_unmerge() splits them on the first rule): a lookup then takes the longest
prefix of both, local first on a tie. `ip route add 127.0.0.5/32 dev eth0` does beat
`local 127.0.0.0/8` on 6.18 until a rule exists; Fib.merged models that.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from services.core import errno
from services.core.wire.ipv4 import (
    ipv4_is_lbcast,
    ipv4_is_loopback,
    ipv4_is_multicast,
    ipv4_is_zeronet,
)
from services.ip.fib_rules import FR_ACT_TO_TBL, FibRule, FibRules
from services.ip.fib_rules import FibError as FibError

# include/uapi/linux/rtnetlink.h
RTN_UNSPEC = 0
RTN_UNICAST = 1
RTN_LOCAL = 2
RTN_BROADCAST = 3
RTN_ANYCAST = 4
RTN_MULTICAST = 5
RTN_BLACKHOLE = 6
RTN_UNREACHABLE = 7
RTN_PROHIBIT = 8
RTN_THROW = 9
RTN_NAT = 10
RTN_XRESOLVE = 11
RTN_MAX = RTN_XRESOLVE

RT_TABLE_UNSPEC = 0
RT_TABLE_DEFAULT = 253
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255

RT_SCOPE_UNIVERSE = 0
RT_SCOPE_SITE = 200
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_SCOPE_NOWHERE = 255

RTPROT_UNSPEC = 0
RTPROT_KERNEL = 2
RTPROT_BOOT = 3
RTPROT_STATIC = 4

RTNH_F_ONLINK = 4

# include/uapi/linux/netlink.h: what `ip route add/append/prepend/change/replace` send.
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800

# include/uapi/linux/if_addr.h
IFA_F_SECONDARY = 0x01
IFA_F_PERMANENT = 0x80
IFA_F_NOPREFIXROUTE = 0x200

# include/net/ip.h: IP_MAX_MTU, the largest MTU a route may carry (RTAX_MTU is clamped).
IP_MAX_MTU = 0xFFF0
# include/net/inet_dscp.h: the bits a route's or rule's tos may match
# (INET_DSCP_LEGACY_TOS_MASK, in dsfield terms) and the ECN bits it may not have.
TOS_MATCH_MASK = 0x1C
INET_ECN_MASK = 0x03

INADDR_ANY = 0
INADDR_BROADCAST = 0xFFFFFFFF
INADDR_LOOPBACK = 0x7F000001

# net/ipv4/route.c: the nexthop exception hash of one nexthop.
FNHE_HASH_SHIFT = 11
FNHE_HASH_SIZE = 1 << FNHE_HASH_SHIFT
FNHE_RECLAIM_DEPTH = 5

# fib_props[]: the lookup error of each route type and the narrowest scope it may have.
FIB_PROPS_ERROR = {
    RTN_BLACKHOLE: errno.EINVAL,
    RTN_UNREACHABLE: errno.EHOSTUNREACH,
    RTN_PROHIBIT: errno.EACCES,
    RTN_THROW: errno.EAGAIN,
    RTN_NAT: errno.EINVAL,
    RTN_XRESOLVE: errno.EINVAL,
}
FIB_PROPS_SCOPE = {
    RTN_LOCAL: RT_SCOPE_HOST,
    RTN_BROADCAST: RT_SCOPE_LINK,
    RTN_ANYCAST: RT_SCOPE_LINK,
    RTN_NAT: RT_SCOPE_HOST,
    RTN_XRESOLVE: RT_SCOPE_NOWHERE,
}


def inet_make_mask(prefixlen: int) -> int:
    return (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF if prefixlen else 0


def default_scope(address: int) -> int:
    """iproute2's default_scope(): host for 127/8, else global."""
    return RT_SCOPE_HOST if ipv4_is_loopback(address) else RT_SCOPE_UNIVERSE


@dataclass(frozen=True, slots=True)
class InIfaddr:
    """struct in_ifaddr. brd None is the launcher's `brd +`; scope None is iproute2's
    default_scope() (host for 127/8, else global)."""

    ifindex: int
    label: str
    address: int
    prefixlen: int
    brd: int | None = None
    scope: int | None = None
    flags: int = 0
    metric: int = 0

    @property
    def mask(self) -> int:
        return inet_make_mask(self.prefixlen)

    @property
    def broadcast(self) -> int:
        if self.brd is not None:
            return self.brd
        return (self.address | ~self.mask) & 0xFFFFFFFF if self.prefixlen < 31 else 0

    @property
    def ifa_scope(self) -> int:
        return default_scope(self.address) if self.scope is None else self.scope

    @property
    def secondary(self) -> bool:
        return bool(self.flags & IFA_F_SECONDARY)

    def match(self, addr: int) -> bool:
        """inet_ifa_match(): addr is in this address's subnet."""
        return (addr ^ self.address) & self.mask == 0


@dataclass(frozen=True, slots=True)
class FibRoute:
    """One fib_alias with its fib_info and (single) nexthop."""

    dst: int
    prefixlen: int
    type: int
    ifindex: int
    scope: int
    prefsrc: int = 0
    gateway: int = 0
    table: int = RT_TABLE_MAIN
    priority: int = 0
    tos: int = 0
    protocol: int = RTPROT_KERNEL
    mtu: int = 0
    mtu_locked: bool = False
    flags: int = 0
    # fib_nh_scope: the scope of the route that reaches the gateway (link when it is
    # on-link); rt_set_nexthop() only uses the gateway when it is RT_SCOPE_LINK.
    nh_scope: int = RT_SCOPE_HOST


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """struct fib_config: an RTM_NEWROUTE/RTM_DELROUTE request. For a delete, type 0,
    scope RT_SCOPE_NOWHERE and zero attributes match anything."""

    dst: int = 0
    prefixlen: int = 0
    type: int = RTN_UNICAST
    table: int = RT_TABLE_MAIN
    scope: int = RT_SCOPE_UNIVERSE
    protocol: int = RTPROT_BOOT
    tos: int = 0
    prefsrc: int = 0
    priority: int = 0
    oif: int = 0
    gateway: int = 0
    mtu: int = 0
    mtu_locked: bool = False
    flags: int = 0


@dataclass(slots=True)
class Fnhe:
    """struct fib_nh_exception: a learned path MTU for one destination."""

    daddr: int
    pmtu: int
    locked: bool
    expires_ns: int
    stamp_ns: int


@dataclass(frozen=True, slots=True)
class Flow:
    """The struct flowi4 fields a FIB lookup reads."""

    daddr: int
    saddr: int = 0
    oif: int = 0
    iif: int = 1
    tos: int = 0
    mark: int = 0
    scope: int = RT_SCOPE_UNIVERSE


class FibTable:
    def __init__(self, table_id: int) -> None:
        self.id = table_id
        self._by_len: dict[int, dict[int, list[FibRoute]]] = {}
        self._lens: list[int] = []

    def __len__(self) -> int:
        return sum(len(a) for p in self._by_len.values() for a in p.values())

    def _aliases(self, dst: int, prefixlen: int) -> list[FibRoute]:
        return self._by_len.get(prefixlen, {}).get(dst & inet_make_mask(prefixlen), [])

    def insert(self, route: FibRoute, nlflags: int = NLM_F_CREATE | NLM_F_APPEND) -> FibRoute | None:
        """fib_table_insert() after fib_create_info(): where the new alias goes among
        those of its prefix (tos descending, metric ascending), and the EEXIST/ENOENT
        rules of NLM_F_EXCL, NLM_F_REPLACE, NLM_F_APPEND and NLM_F_CREATE. Returns the
        route a replace displaced."""
        routes = self._by_len.get(route.prefixlen, {}).get(route.dst, [])
        # fib_find_alias(): the first alias of lower tos, or same tos and metric >= ours.
        first = next(
            (
                i
                for i, r in enumerate(routes)
                if r.tos < route.tos or (r.tos == route.tos and r.priority >= route.priority)
            ),
            len(routes),
        )
        pos = first
        if (
            first < len(routes)
            and routes[first].tos == route.tos
            and routes[first].priority == route.priority
        ):
            if nlflags & NLM_F_EXCL:
                raise FibError(errno.EEXIST)
            end = first
            while (
                end < len(routes) and routes[end].tos == route.tos and routes[end].priority == route.priority
            ):
                end += 1
            match = next((i for i in range(first, end) if routes[i] == route), None)
            if nlflags & NLM_F_REPLACE:
                if match is not None:
                    if match == first:
                        return None
                    raise FibError(errno.EEXIST)
                old = routes[first]
                routes[first] = route
                return old
            if match is not None:
                raise FibError(errno.EEXIST)
            pos = end if nlflags & NLM_F_APPEND else first
        if not nlflags & NLM_F_CREATE:
            raise FibError(errno.ENOENT)
        by_prefix = self._by_len.setdefault(route.prefixlen, {})
        if not by_prefix:
            self._lens = sorted(self._by_len, reverse=True)
        by_prefix.setdefault(route.dst, []).insert(pos, route)
        return None

    def remove(self, route: FibRoute) -> bool:
        by_prefix = self._by_len.get(route.prefixlen)
        if by_prefix is None:
            return False
        routes = by_prefix.get(route.dst)
        if not routes or route not in routes:
            return False
        routes.remove(route)
        if not routes:
            del by_prefix[route.dst]
            if not by_prefix:
                del self._by_len[route.prefixlen]
                self._lens = sorted(self._by_len, reverse=True)
        return True

    def find_delete(self, cfg: RouteConfig) -> FibRoute | None:
        """fib_table_delete()'s search: the first alias of the prefix and tos that every
        attribute given in cfg matches (fib_nh_match, fib_metrics_match)."""
        for r in self._aliases(cfg.dst, cfg.prefixlen):
            if r.tos != cfg.tos:
                continue
            if (
                (not cfg.type or r.type == cfg.type)
                and (cfg.scope == RT_SCOPE_NOWHERE or r.scope == cfg.scope)
                and (not cfg.prefsrc or r.prefsrc == cfg.prefsrc)
                and (not cfg.protocol or r.protocol == cfg.protocol)
                and (not cfg.priority or r.priority == cfg.priority)
                and (not cfg.oif or r.ifindex == cfg.oif)
                and (not cfg.gateway or r.gateway == cfg.gateway)
                and (not cfg.mtu or (r.mtu == cfg.mtu and r.mtu_locked == cfg.mtu_locked))
            ):
                return r
        return None

    def routes(self) -> list[FibRoute]:
        """Dump order: prefixes ascending, a longer prefix first at the same address,
        then each prefix's aliases as stored."""
        out = [
            (dst, -plen, i, r)
            for plen, p in self._by_len.items()
            for dst, rs in p.items()
            for i, r in enumerate(rs)
        ]
        out.sort(key=lambda t: (t[0], t[1], t[2]))
        return [t[3] for t in out]

    def lookup(self, daddr: int) -> FibRoute | None:
        """The longest-prefix route, any type, no flow checks."""
        for plen in self._lens:
            routes = self._by_len[plen].get(daddr & inet_make_mask(plen))
            if routes:
                return routes[0]
        return None


def table_lookup(tables: list[FibTable], flow: Flow) -> tuple[FibRoute | None, int, int]:
    """fib_table_lookup() over one table, or over local+main as one trie: (route,
    errno, prefixlen). A prefix whose every alias fails the tos, scope or oif checks
    backtracks to shorter prefixes; a route of an error type (blackhole, unreachable,
    prohibit, throw) ends the lookup with its error, EAGAIN when nothing matched."""
    if len(tables) == 1:
        lens: Iterable[int] = tables[0]._lens
    else:
        lens = sorted({n for t in tables for n in t._lens}, reverse=True)
    daddr, tos, oif = flow.daddr, flow.tos & TOS_MATCH_MASK, flow.oif
    for plen in lens:
        key = daddr & inet_make_mask(plen)
        for table in tables:
            routes = table._by_len.get(plen, {}).get(key)
            if not routes:
                continue
            for r in routes:
                if r.tos and r.tos != tos:
                    continue
                if r.scope < flow.scope:
                    continue
                err = FIB_PROPS_ERROR.get(r.type, 0)
                if err:
                    return r, err, plen
                if oif and r.ifindex != oif:
                    continue
                return r, 0, plen
    return None, errno.EAGAIN, 0


@dataclass(frozen=True, slots=True)
class FibResult:
    route: FibRoute
    # res->table->tb_id: main for a local route found while local and main are merged.
    table: int


class Fib:
    """Addresses, tables, policy rules and nexthop exceptions of one host."""

    def __init__(self) -> None:
        self.tables: dict[int, FibTable] = {
            RT_TABLE_LOCAL: FibTable(RT_TABLE_LOCAL),
            RT_TABLE_MAIN: FibTable(RT_TABLE_MAIN),
        }
        self._table_order: list[int] = [RT_TABLE_LOCAL, RT_TABLE_MAIN]
        self.rules = FibRules()
        self.ifaddrs: list[InIfaddr] = []
        self.loopback_ifindex = 1
        # rt_genid_bump_ipv4(): every change invalidates the routes callers cached.
        self.genid = 1
        # fib_has_custom_local_routes: fib_validate_source() must then do a full lookup.
        self.custom_local_routes = False
        # nhc_exceptions of each route's nexthop: bucket → chain, as fnhe hash chains.
        self.exceptions: dict[FibRoute, dict[int, list[Fnhe]]] = {}
        self._fnhe_key = random.getrandbits(64)

    @property
    def local(self) -> FibTable:
        return self.tables[RT_TABLE_LOCAL]

    @property
    def main(self) -> FibTable:
        return self.tables[RT_TABLE_MAIN]

    @property
    def merged(self) -> bool:
        """fib_has_custom_rules is false: local and main are one trie."""
        return not self.rules.custom

    def changed(self) -> None:
        self.genid += 1

    def new_table(self, table_id: int) -> FibTable:
        """fib_new_table(): id 0 is main."""
        table_id = table_id or RT_TABLE_MAIN
        table = self.tables.get(table_id)
        if table is None:
            table = self.tables[table_id] = FibTable(table_id)
            self._table_order.append(table_id)
        return table

    def table_ids(self) -> list[int]:
        """Dump order of inet_dump_fib(): hash bucket (id & 255), newest first in one."""
        order = {tid: i for i, tid in enumerate(self._table_order)}
        return sorted(self.tables, key=lambda t: (t & 0xFF, -order[t]))

    # Lookups.

    def _view(self, table_id: int) -> list[FibTable]:
        table = self.tables.get(table_id)
        if table is None:
            return []
        if self.merged and table_id in (RT_TABLE_LOCAL, RT_TABLE_MAIN):
            return [self.local, self.main]
        return [table]

    def table_lookup(self, table_id: int, flow: Flow) -> tuple[FibResult | None, int]:
        tables = self._view(table_id)
        if not tables:
            return None, errno.EAGAIN
        route, err, _ = table_lookup(tables, flow)
        if route is None or err:
            return None, err
        shown = RT_TABLE_MAIN if len(tables) > 1 else table_id
        return FibResult(route, shown), 0

    def fib_lookup(self, flow: Flow) -> tuple[FibResult | None, int]:
        """fib_lookup(): the policy rules in order (fib_rules_lookup); with the default
        rules still merged, local+main then default. -ESRCH becomes ENETUNREACH."""
        if self.merged:
            res, err = self.table_lookup(RT_TABLE_MAIN, flow)
            if err == errno.EAGAIN:
                res, err = self.table_lookup(RT_TABLE_DEFAULT, flow)
            if err == errno.EAGAIN:
                err = errno.ENETUNREACH
            return res, err
        for rule in self.rules.rules:
            if not rule.match(flow):
                continue
            if rule.action != FR_ACT_TO_TBL:
                err = rule.action_error()
                if err == errno.EAGAIN:
                    continue
                return None, err
            res, err = self.table_lookup(rule.table, flow)
            if err != errno.EAGAIN:
                return res, err
        return None, errno.ENETUNREACH

    def lookup(self, daddr: int) -> FibRoute | None:
        """fib_lookup() for a destination alone; None when it fails."""
        res, _ = self.fib_lookup(Flow(daddr))
        return res.route if res is not None else None

    def addr_type_table(self, addr: int, table_id: int, ifindex: int = 0) -> int:
        """inet_addr_type_table() / inet_addr_type_dev_table()."""
        if ipv4_is_zeronet(addr) or ipv4_is_lbcast(addr):
            return RTN_BROADCAST
        if ipv4_is_multicast(addr):
            return RTN_MULTICAST
        tables = self._view(table_id)
        if not tables:
            return RTN_UNICAST
        route, err, _ = table_lookup(tables, Flow(addr))
        if route is None or err or (ifindex and route.ifindex != ifindex):
            return RTN_UNICAST
        return route.type

    def ip_dev_find(self, addr: int) -> int:
        """__ip_dev_find(): the device holding addr, else the device of a local route
        for it (so 127.0.0.9 is on lo); 0 if neither."""
        for ifa in self.ifaddrs:
            if ifa.address == addr:
                return ifa.ifindex
        route, err, _ = table_lookup(self._view(RT_TABLE_LOCAL), Flow(addr))
        if route is not None and not err and route.type == RTN_LOCAL:
            return route.ifindex
        return 0

    def is_local(self, addr: int) -> bool:
        return self.ip_dev_find(addr) != 0

    def dev_ifaddrs(self, ifindex: int) -> list[InIfaddr]:
        return [ifa for ifa in self.ifaddrs if ifa.ifindex == ifindex]

    def inet_select_addr(self, ifindex: int, dst: int, scope: int, devices: Iterable[int] = ()) -> int:
        """inet_select_addr(): a primary address of the device within scope, the one in
        dst's subnet first; else the first primary of any device (lo first) whose scope
        is not link and within scope (in_dev_select_addr)."""
        addr = 0
        for ifa in self.dev_ifaddrs(ifindex):
            if ifa.secondary or min(ifa.ifa_scope, RT_SCOPE_HOST) > scope:
                continue
            if not dst or ifa.match(dst):
                return ifa.address
            addr = addr or ifa.address
        if addr:
            return addr
        for dev in sorted({*devices, *(ifa.ifindex for ifa in self.ifaddrs)}):
            for ifa in self.dev_ifaddrs(dev):
                if not ifa.secondary and ifa.ifa_scope != RT_SCOPE_LINK and ifa.ifa_scope <= scope:
                    return ifa.address
        return 0

    def select_addr(self, ifindex: int, dst: int) -> int:
        """inet_select_addr(dev, dst, RT_SCOPE_LINK), what a route through the device
        without a gateway would pick."""
        return self.inet_select_addr(ifindex, dst, RT_SCOPE_LINK)

    # Routes: rtnetlink RTM_NEWROUTE / RTM_DELROUTE.

    def _valid_prefsrc(self, cfg: RouteConfig) -> bool:
        """fib_valid_prefsrc(): a local route may name itself, anything else must be an
        address the route's table (main means local) or the local table routes as local."""
        if cfg.type == RTN_LOCAL and cfg.dst and cfg.prefsrc == cfg.dst:
            return True
        tb = RT_TABLE_LOCAL if cfg.table == RT_TABLE_MAIN else cfg.table
        rc = self.addr_type_table(cfg.prefsrc, tb)
        if rc != RTN_LOCAL and tb != RT_TABLE_LOCAL:
            rc = self.addr_type_table(cfg.prefsrc, RT_TABLE_LOCAL)
        return rc == RTN_LOCAL

    def _check_gateway(self, cfg: RouteConfig, devices: dict[int, str]) -> tuple[int, int]:
        """fib_check_nh_v4_gw(): the gateway must be reached by a route of scope link or
        narrower (on-link) that is unicast or local; (ifindex, nh_scope)."""
        if cfg.flags & RTNH_F_ONLINK:
            if cfg.scope >= RT_SCOPE_LINK:
                raise FibError(errno.EINVAL, "Nexthop has invalid scope")
            if cfg.oif not in devices:
                raise FibError(errno.ENODEV, "Nexthop device required for onlink")
            if self.addr_type_table(cfg.gateway, cfg.table, cfg.oif) != RTN_UNICAST:
                raise FibError(errno.EINVAL, "Nexthop has invalid gateway")
            return cfg.oif, RT_SCOPE_LINK
        flow = Flow(cfg.gateway, oif=cfg.oif, scope=max(cfg.scope + 1, RT_SCOPE_LINK))
        res: FibResult | None = None
        err = errno.EAGAIN
        if cfg.table and cfg.table != RT_TABLE_MAIN and cfg.table in self.tables:
            res, err = self.table_lookup(cfg.table, flow)
        if err:
            res, err = self.fib_lookup(flow)
        if err or res is None:
            raise FibError(err or errno.ENETUNREACH, "Nexthop has invalid gateway")
        if res.route.type not in (RTN_UNICAST, RTN_LOCAL):
            raise FibError(errno.EINVAL, "Nexthop has invalid gateway")
        return res.route.ifindex, res.route.scope

    def create_route(self, cfg: RouteConfig, devices: dict[int, str]) -> FibRoute:
        """rtm_to_fib_config() and fib_create_info() checks, in the kernel's order."""
        if cfg.type > RTN_MAX:
            raise FibError(errno.EINVAL, "Invalid route type")
        if cfg.tos & INET_ECN_MASK:
            raise FibError(errno.EINVAL, "Invalid dsfield (tos): ECN bits must be 0")
        if cfg.prefixlen > 32:
            raise FibError(errno.EINVAL, "Invalid prefix length")
        if cfg.dst & ~inet_make_mask(cfg.prefixlen) & 0xFFFFFFFF:
            raise FibError(errno.EINVAL, "Invalid prefix for given prefix length")
        if FIB_PROPS_SCOPE.get(cfg.type, RT_SCOPE_UNIVERSE) > cfg.scope:
            raise FibError(errno.EINVAL, "Invalid scope")
        mtu = min(cfg.mtu, IP_MAX_MTU)
        base = FibRoute(
            cfg.dst,
            cfg.prefixlen,
            cfg.type,
            0,
            cfg.scope,
            cfg.prefsrc,
            0,
            table=cfg.table or RT_TABLE_MAIN,
            priority=cfg.priority,
            tos=cfg.tos,
            protocol=cfg.protocol,
            mtu=mtu,
            mtu_locked=cfg.mtu_locked and mtu > 0,
            flags=cfg.flags,
        )
        if cfg.type in FIB_PROPS_ERROR:
            if cfg.gateway or cfg.oif:
                raise FibError(
                    errno.EINVAL, "Gateway, device and multipath can not be specified for this route type"
                )
            route = dataclasses.replace(base, nh_scope=RT_SCOPE_NOWHERE)
        else:
            if cfg.type not in (RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST, RTN_ANYCAST, RTN_MULTICAST):
                raise FibError(errno.EINVAL, "Invalid route type")
            if cfg.scope > RT_SCOPE_HOST:
                raise FibError(errno.EINVAL, "Invalid scope")
            if cfg.scope == RT_SCOPE_HOST:
                if cfg.gateway:
                    raise FibError(errno.EINVAL, "Route with host scope can not have a gateway")
                if cfg.oif not in devices:
                    raise FibError(errno.ENODEV)
                route = dataclasses.replace(base, ifindex=cfg.oif, nh_scope=RT_SCOPE_NOWHERE)
            elif cfg.gateway:
                ifindex, nh_scope = self._check_gateway(cfg, devices)
                route = dataclasses.replace(base, ifindex=ifindex, gateway=cfg.gateway, nh_scope=nh_scope)
            else:
                if cfg.flags & RTNH_F_ONLINK:
                    raise FibError(
                        errno.EINVAL, "Invalid flags for nexthop - PERVASIVE and DEAD can not be set"
                    )
                if cfg.oif not in devices:
                    raise FibError(errno.ENODEV)
                route = dataclasses.replace(base, ifindex=cfg.oif, nh_scope=RT_SCOPE_HOST)
        if cfg.prefsrc and not self._valid_prefsrc(cfg):
            raise FibError(errno.EINVAL, "Invalid prefsrc address")
        return route

    def add_route(
        self, cfg: RouteConfig, devices: dict[int, str], nlflags: int = NLM_F_CREATE | NLM_F_EXCL
    ) -> FibRoute:
        """inet_rtm_newroute(): `ip route add` is NLM_F_CREATE|NLM_F_EXCL, append
        CREATE|APPEND, prepend CREATE, change REPLACE, replace CREATE|REPLACE."""
        route = self.create_route(cfg, devices)
        if not nlflags & NLM_F_CREATE and (cfg.table or RT_TABLE_MAIN) not in self.tables:
            raise FibError(errno.ESRCH)
        old = self.new_table(route.table).insert(route, nlflags)
        if old is not None:
            self.exceptions.pop(old, None)
        if route.type == RTN_LOCAL and route.protocol != RTPROT_KERNEL:
            self.custom_local_routes = True
        self.changed()
        return route

    def delete_route(self, cfg: RouteConfig) -> FibRoute:
        """inet_rtm_delroute(): ESRCH for a missing table or no matching route."""
        table = self.tables.get(cfg.table or RT_TABLE_MAIN)
        if cfg.prefixlen > 32:
            raise FibError(errno.EINVAL, "Invalid prefix length")
        route = table.find_delete(cfg) if table is not None else None
        if table is None or route is None:
            raise FibError(errno.ESRCH)
        self._remove(table, route)
        self.changed()
        return route

    def _remove(self, table: FibTable, route: FibRoute) -> None:
        table.remove(route)
        # fib_release_info() frees the nexthop's exceptions with it.
        self.exceptions.pop(route, None)

    def routes(self, table_id: int = 0) -> list[FibRoute]:
        """Every route of one table, or of all (0) in inet_dump_fib() order."""
        ids = [table_id] if table_id else self.table_ids()
        return [r for tid in ids if tid in self.tables for r in self.tables[tid].routes()]

    # Addresses: fib_add_ifaddr() / fib_del_ifaddr() through fib_magic().

    def _magic_add(self, rtype: int, dst: int, plen: int, prim: InIfaddr, priority: int = 0) -> None:
        """fib_magic(RTM_NEWROUTE): NLM_F_CREATE|NLM_F_APPEND, proto kernel, unicast in
        main and the rest in local, scope host for local and link for the others."""
        table = RT_TABLE_MAIN if rtype == RTN_UNICAST else RT_TABLE_LOCAL
        scope = RT_SCOPE_HOST if rtype == RTN_LOCAL else RT_SCOPE_LINK
        route = FibRoute(
            dst & inet_make_mask(plen),
            plen,
            rtype,
            prim.ifindex,
            scope,
            prim.address,
            table=table,
            priority=priority,
            protocol=RTPROT_KERNEL,
            nh_scope=RT_SCOPE_NOWHERE if scope == RT_SCOPE_HOST else RT_SCOPE_HOST,
        )
        try:
            self.tables[table].insert(route, NLM_F_CREATE | NLM_F_APPEND)
        except FibError:
            pass  # the same route from another address: fib_magic() ignores -EEXIST

    def _magic_del(self, rtype: int, dst: int, plen: int, prim: InIfaddr) -> None:
        table = self.tables[RT_TABLE_MAIN if rtype == RTN_UNICAST else RT_TABLE_LOCAL]
        cfg = RouteConfig(
            dst & inet_make_mask(plen),
            plen,
            rtype,
            table.id,
            RT_SCOPE_HOST if rtype == RTN_LOCAL else RT_SCOPE_LINK,
            RTPROT_KERNEL,
            prefsrc=prim.address,
            oif=prim.ifindex,
        )
        route = table.find_delete(cfg)
        if route is not None:
            self._remove(table, route)

    def _primary_of(self, ifa: InIfaddr) -> InIfaddr | None:
        """inet_ifa_byprefix(): the primary address of ifa's subnet on its device."""
        for other in self.dev_ifaddrs(ifa.ifindex):
            if not other.secondary and other.prefixlen == ifa.prefixlen and other.match(ifa.address):
                return other
        return None

    def add_ifaddr(self, ifa: InIfaddr, loopback: bool) -> InIfaddr:
        """__inet_insert_ifa() then fib_add_ifaddr(). An address in the subnet (same
        mask) of another becomes secondary; EEXIST for the same address and mask;
        primaries are kept ordered by scope, widest last. Returns the address as stored."""
        dev = self.dev_ifaddrs(ifa.ifindex)
        ifa = dataclasses.replace(ifa, flags=ifa.flags & ~IFA_F_SECONDARY)
        for other in dev:
            if other.prefixlen == ifa.prefixlen and ifa.match(other.address):
                if other.address == ifa.address:
                    raise FibError(errno.EEXIST, "ipv4: Address already assigned")
                if other.ifa_scope != ifa.ifa_scope:
                    raise FibError(errno.EINVAL, "ipv4: Invalid scope value")
                ifa = dataclasses.replace(ifa, flags=ifa.flags | IFA_F_SECONDARY)
        if ifa.secondary:
            pos = len(dev)
        else:
            pos = 0
            for i, other in enumerate(dev):
                if not other.secondary and ifa.ifa_scope <= other.ifa_scope:
                    pos = i + 1
        dev.insert(pos, ifa)
        self._set_dev_ifaddrs(ifa.ifindex, dev)
        self._fib_add_ifaddr(ifa, loopback)
        self.changed()
        return ifa

    def _set_dev_ifaddrs(self, ifindex: int, dev: list[InIfaddr]) -> None:
        others = [a for a in self.ifaddrs if a.ifindex != ifindex]
        self.ifaddrs = sorted([*others, *dev], key=lambda a: a.ifindex)

    def _fib_add_ifaddr(self, ifa: InIfaddr, loopback: bool) -> None:
        prim = ifa
        if ifa.secondary:
            found = self._primary_of(ifa)
            if found is None:
                return
            prim = found
        self._magic_add(RTN_LOCAL, ifa.address, 32, prim)
        brd = ifa.broadcast
        if brd and brd != INADDR_BROADCAST:
            self._magic_add(RTN_BROADCAST, brd, 32, prim)
        prefix = ifa.address & ifa.mask
        if (
            not ipv4_is_zeronet(prefix)
            and not ifa.secondary
            and (prefix != ifa.address or ifa.prefixlen < 32)
        ):
            if not ifa.flags & IFA_F_NOPREFIXROUTE:
                rtype = RTN_LOCAL if loopback else RTN_UNICAST
                self._magic_add(rtype, prefix, ifa.prefixlen, prim, ifa.metric)
            if ifa.prefixlen < 31:
                self._magic_add(RTN_BROADCAST, prefix | ~ifa.mask & 0xFFFFFFFF, 32, prim)

    def find_ifaddr(self, ifindex: int, address: int, prefixlen: int | None) -> InIfaddr | None:
        """inet_rtm_deladdr()'s match: the local address, and the prefix when given."""
        for ifa in self.dev_ifaddrs(ifindex):
            if ifa.address != address:
                continue
            if prefixlen is not None and (ifa.prefixlen != prefixlen or not ifa.match(address)):
                continue
            return ifa
        return None

    def del_ifaddr(self, ifindex: int, address: int, prefixlen: int | None, loopback: bool) -> list[InIfaddr]:
        """__inet_del_ifa() without promote_secondaries: deleting a primary deletes its
        secondaries first; each goes through fib_del_ifaddr(). When the device has no
        address left, fib_disable_ip() flushes every route through it. Returns what went."""
        ifa = self.find_ifaddr(ifindex, address, prefixlen)
        if ifa is None:
            raise FibError(errno.EADDRNOTAVAIL, "ipv4: Address not found")
        gone: list[InIfaddr] = []
        if not ifa.secondary:
            for sec in self.dev_ifaddrs(ifindex):
                if sec.secondary and sec.prefixlen == ifa.prefixlen and ifa.match(sec.address):
                    self._unlink(sec)
                    self._fib_del_ifaddr(sec, loopback)
                    gone.append(sec)
        self._unlink(ifa)
        self._fib_del_ifaddr(ifa, loopback)
        gone.append(ifa)
        if not self.dev_ifaddrs(ifindex):
            self.sync_down_dev(ifindex)
        self.changed()
        return gone

    def _unlink(self, ifa: InIfaddr) -> None:
        self.ifaddrs = [a for a in self.ifaddrs if a is not ifa]

    def _fib_del_ifaddr(self, ifa: InIfaddr, loopback: bool) -> None:
        """fib_del_ifaddr(): drop only the routes no remaining address of the device
        still brings (the LOCAL_OK/BRD_OK/BRD0_OK/BRD1_OK scan), then the routes of the
        main table whose prefsrc was this address (fib_sync_down_addr)."""
        brd = (ifa.address | ~ifa.mask) & 0xFFFFFFFF
        anyaddr = ifa.address & ifa.mask
        prim = ifa
        subnet = False
        if ifa.secondary:
            found = self._primary_of(ifa)
            if found is None:
                return
            prim = found
        elif not ipv4_is_zeronet(anyaddr) and (anyaddr != ifa.address or ifa.prefixlen < 32):
            if not ifa.flags & IFA_F_NOPREFIXROUTE:
                self._magic_del(RTN_LOCAL if loopback else RTN_UNICAST, anyaddr, ifa.prefixlen, prim)
            subnet = True
        local_ok = brd_ok = brd0_ok = brd1_ok = False
        prim1: InIfaddr | None = None
        same_prefsrc = False
        for ifa1 in self.dev_ifaddrs(ifa.ifindex):
            if ifa1.secondary:
                if ifa1.prefixlen == prim.prefixlen and prim.match(ifa1.address):
                    prim1 = prim
                else:
                    if not same_prefsrc:
                        continue
                    if prim1 is None or ifa1.prefixlen != prim1.prefixlen or not prim1.match(ifa1.address):
                        prim1 = self._primary_of(ifa1)
                    if prim1 is None or prim1.address != prim.address:
                        continue
            else:
                if prim.address != ifa1.address:
                    continue
                prim1 = ifa1
                if prim is not prim1:
                    same_prefsrc = True
            local_ok |= ifa.address == ifa1.address
            brd_ok |= ifa.broadcast == ifa1.broadcast
            brd1_ok |= brd == ifa1.broadcast
            brd0_ok |= anyaddr == ifa1.broadcast
            if prim1 is ifa1 and ifa1.prefixlen < 31:
                brd_1 = (ifa1.address | ~ifa1.mask) & 0xFFFFFFFF
                any_1 = ifa1.address & ifa1.mask
                if not ipv4_is_zeronet(any_1):
                    brd_ok |= ifa.broadcast in (brd_1, any_1)
                    brd1_ok |= brd in (brd_1, any_1)
                    brd0_ok |= anyaddr in (brd_1, any_1)
        if not brd_ok and ifa.broadcast:
            self._magic_del(RTN_BROADCAST, ifa.broadcast, 32, prim)
        if subnet and ifa.prefixlen < 31:
            if not brd1_ok:
                self._magic_del(RTN_BROADCAST, brd, 32, prim)
            if not brd0_ok:
                self._magic_del(RTN_BROADCAST, anyaddr, 32, prim)
        if not local_ok:
            self._magic_del(RTN_LOCAL, ifa.address, 32, prim)
            if self.addr_type_table(ifa.address, RT_TABLE_LOCAL, ifa.ifindex) != RTN_LOCAL:
                self.sync_down_addr(ifa.address)

    def sync_down_addr(self, local: int) -> None:
        """fib_sync_down_addr() + fib_flush(): routes of the main table with this prefsrc."""
        main = self.main
        for route in [r for r in main.routes() if r.prefsrc == local]:
            self._remove(main, route)

    def sync_down_dev(self, ifindex: int) -> None:
        """fib_disable_ip(): every route whose nexthop is the device, in every table."""
        for table in self.tables.values():
            for route in [r for r in table.routes() if r.ifindex == ifindex]:
                self._remove(table, route)

    # Policy rules.

    def add_rule(self, rule: FibRule, devices: dict[int, str]) -> FibRule:
        if rule.action == FR_ACT_TO_TBL and not rule.table:
            # fib4_rule_configure(): `lookup 0` gets the first unused table id.
            rule = dataclasses.replace(rule, table=next(i for i in range(1, 2**32) if i not in self.tables))
            self.new_table(rule.table)
        added = self.rules.add(rule, devices)
        self.changed()
        return added

    def del_rule(self, rule: FibRule, priority_given: bool) -> FibRule:
        gone = self.rules.delete(rule, priority_given)
        self.changed()
        return gone

    # Nexthop exceptions.

    def _fnhe_bucket(self, daddr: int) -> int:
        return hash((self._fnhe_key, daddr)) & (FNHE_HASH_SIZE - 1)

    def find_exception(self, route: FibRoute, daddr: int, now_ns: int) -> Fnhe | None:
        """find_exception(): an expired exception is removed as it is found."""
        buckets = self.exceptions.get(route)
        if not buckets:
            return None
        chain = buckets.get(self._fnhe_bucket(daddr))
        if not chain:
            return None
        for fnhe in chain:
            if fnhe.daddr == daddr:
                if fnhe.expires_ns and now_ns >= fnhe.expires_ns:
                    chain.remove(fnhe)
                    return None
                return fnhe
        return None

    def update_exception(
        self, route: FibRoute, daddr: int, pmtu: int, lock: bool, expires_ns: int, now_ns: int
    ) -> None:
        """update_or_create_fnhe(): a chain of a nexthop's 2048 buckets holds at most
        FNHE_RECLAIM_DEPTH plus a random 0..4 more; the oldest gives way."""
        buckets = self.exceptions.setdefault(route, {})
        chain = buckets.setdefault(self._fnhe_bucket(daddr), [])
        for fnhe in chain:
            if fnhe.daddr == daddr:
                fnhe.pmtu, fnhe.locked, fnhe.expires_ns, fnhe.stamp_ns = pmtu, lock, expires_ns, now_ns
                return
        max_depth = FNHE_RECLAIM_DEPTH + random.randrange(FNHE_RECLAIM_DEPTH)
        while len(chain) > max_depth:
            chain.remove(min(chain, key=lambda f: f.stamp_ns))
        chain.insert(0, Fnhe(daddr, pmtu, lock, expires_ns, now_ns))

    def iter_exceptions(self, now_ns: int) -> Iterator[tuple[FibRoute, Fnhe]]:
        for route in self.routes():
            for chain in self.exceptions.get(route, {}).values():
                for fnhe in chain:
                    if not fnhe.expires_ns or now_ns < fnhe.expires_ns:
                        yield route, fnhe

    def flush_exceptions(self) -> None:
        """`ip route flush cache` (rt_cache_flush + fnhe_genid_bump): learned MTUs go."""
        self.exceptions.clear()
        self.changed()
