"""The IP layer's control RPCs (rtnetlink's job in the kernel): addresses, routes,
rules and the net.ipv4 sysctls. IpServicer inherits them. A refusal is answered as
rtnetlink answers it: an errno and the extack message, if the kernel gives one."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import grpc

from services.core import errno
from services.core.skbuff import dst_to_proto
from services.core.sysctl import SYSCTLS, get_sysctls, set_sysctl
from services.ip.fib import (
    RT_TABLE_MAIN,
    RTNH_F_ONLINK,
    FibRoute,
    InIfaddr,
    RouteConfig,
)
from services.ip.fib_rules import DETACHED, FibError, FibRule
from services.ip.route import NSEC_PER_SEC, RouteError
from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc

if TYPE_CHECKING:
    from services.ip.layer import IpLayer

# The sysctls the IP layer owns: net.ipv4.* registered for the "ip" layer.
IP_SYSCTL_PREFIX = "net.ipv4."

_ADDR_FLAGS = 0x200  # IFA_F_NOPREFIXROUTE, the one flag a request may set
_U32 = 0xFFFFFFFF


def ip_sysctl_names() -> list[str]:
    return sorted(n for n, s in SYSCTLS.items() if n.startswith(IP_SYSCTL_PREFIX) and s.layer == "ip")


def no_device(name: str) -> tuple[int, str]:
    """The name resolution iproute2 does before it sends (ll_name_to_index)."""
    return errno.ENODEV, f'Cannot find device "{name}"'


def route_to_proto(route: FibRoute, names: dict[int, str]) -> ip_pb2.Route:
    return ip_pb2.Route(
        dst=route.dst,
        prefixlen=route.prefixlen,
        type=route.type,
        table=route.table,
        scope=route.scope,
        protocol=route.protocol,
        tos=route.tos,
        prefsrc=route.prefsrc,
        priority=route.priority,
        device=names.get(route.ifindex, "") if route.ifindex else "",
        gateway=route.gateway,
        mtu=route.mtu,
        mtu_locked=route.mtu_locked,
        flags=route.flags,
    )


def rule_to_proto(rule: FibRule) -> ip_pb2.Rule:
    return ip_pb2.Rule(
        priority=rule.priority,
        action=rule.action,
        table=rule.table,
        src=rule.src,
        src_len=rule.src_len,
        dst=rule.dst,
        dst_len=rule.dst_len,
        tos=rule.tos,
        fwmark=rule.mark,
        fwmask=rule.mark_mask,
        iif=rule.iifname,
        oif=rule.oifname,
        invert=rule.invert,
        protocol=rule.protocol,
        iif_detached=rule.iif == DETACHED,
        oif_detached=rule.oif == DETACHED,
    )


def rule_from_proto(r: ip_pb2.Rule) -> FibRule:
    return FibRule(
        priority=r.priority,
        action=r.action,
        table=r.table,
        src=r.src,
        src_len=r.src_len,
        dst=r.dst,
        dst_len=r.dst_len,
        tos=r.tos,
        mark=r.fwmark,
        mark_mask=r.fwmask,
        iifname=r.iif,
        oifname=r.oif,
        invert=r.invert,
        protocol=r.protocol,
    )


class IpControl(ip_pb2_grpc.IpServiceServicer):
    layer: IpLayer

    def addresses_changed(self) -> None:
        """Hook: the address list changed (the NIC answers ARP for it)."""

    def _dev(self, name: str) -> int:
        return next((i for i, n in self.layer.router.devices().items() if n == name), 0)

    async def _check_u32(self, context: grpc.aio.ServicerContext, **fields: int) -> None:
        for name, value in fields.items():
            if value > _U32:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name} is not an IPv4 address")

    # Addresses.

    async def AddAddr(
        self, request: ip_pb2.AddAddrRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.AddAddrResponse:
        if not request.device:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "device is required")
        if request.prefixlen > 32:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "prefixlen is above 32")
        if request.scope > 255:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "scope is above 255")
        ifindex = self._dev(request.device)
        if not ifindex:
            err, msg = no_device(request.device)
            return ip_pb2.AddAddrResponse(errno=err, message=msg)
        ifa = InIfaddr(
            ifindex,
            request.label or request.device,
            request.address,
            request.prefixlen,
            brd=request.broadcast,
            scope=request.scope,
            flags=request.flags & _ADDR_FLAGS,
            metric=request.metric,
        )
        fib = self.layer.fib
        try:
            fib.add_ifaddr(ifa, loopback=ifindex == fib.loopback_ifindex)
        except FibError as e:
            return ip_pb2.AddAddrResponse(errno=e.errno, message=e.message)
        self.addresses_changed()
        return ip_pb2.AddAddrResponse()

    async def DelAddr(
        self, request: ip_pb2.DelAddrRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.DelAddrResponse:
        if not request.device:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "device is required")
        ifindex = self._dev(request.device)
        if not ifindex:
            err, msg = no_device(request.device)
            return ip_pb2.DelAddrResponse(errno=err, message=msg)
        fib = self.layer.fib
        plen = request.prefixlen if request.HasField("prefixlen") else None
        try:
            fib.del_ifaddr(ifindex, request.address, plen, loopback=ifindex == fib.loopback_ifindex)
        except FibError as e:
            return ip_pb2.DelAddrResponse(errno=e.errno, message=e.message)
        self.addresses_changed()
        return ip_pb2.DelAddrResponse()

    async def ListAddrs(
        self, request: ip_pb2.ListAddrsRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.ListAddrsResponse:
        return ip_pb2.ListAddrsResponse(
            addrs=[
                ip_pb2.InterfaceAddress(
                    ifindex=ifa.ifindex,
                    label=ifa.label,
                    address=ifa.address,
                    prefixlen=ifa.prefixlen,
                    broadcast=ifa.broadcast,
                    scope=ifa.ifa_scope,
                    flags=ifa.flags | 0x80,
                    metric=ifa.metric,
                )
                for ifa in self.layer.fib.ifaddrs
            ]
        )

    # Routes.

    async def _route_config(
        self, r: ip_pb2.Route, context: grpc.aio.ServicerContext
    ) -> RouteConfig | tuple[int, str]:
        if r.prefixlen > 32:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "prefixlen is above 32")
        if r.scope > 255 or r.protocol > 255 or r.tos > 255:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "scope, protocol and tos are 8-bit")
        oif = 0
        if r.device:
            oif = self._dev(r.device)
            if not oif:
                return no_device(r.device)
        return RouteConfig(
            dst=r.dst,
            prefixlen=r.prefixlen,
            type=r.type,
            table=r.table or RT_TABLE_MAIN,
            scope=r.scope,
            protocol=r.protocol,
            tos=r.tos,
            prefsrc=r.prefsrc,
            priority=r.priority,
            oif=oif,
            gateway=r.gateway,
            mtu=r.mtu,
            mtu_locked=r.mtu_locked,
            flags=r.flags & RTNH_F_ONLINK,
        )

    async def AddRoute(
        self, request: ip_pb2.AddRouteRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.AddRouteResponse:
        cfg = await self._route_config(request.route, context)
        if isinstance(cfg, tuple):
            return ip_pb2.AddRouteResponse(errno=cfg[0], message=cfg[1])
        try:
            self.layer.fib.add_route(cfg, self.layer.router.devices(), request.nlm_flags)
        except FibError as e:
            return ip_pb2.AddRouteResponse(errno=e.errno, message=e.message)
        return ip_pb2.AddRouteResponse()

    async def DelRoute(
        self, request: ip_pb2.DelRouteRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.DelRouteResponse:
        cfg = await self._route_config(request.route, context)
        if isinstance(cfg, tuple):
            return ip_pb2.DelRouteResponse(errno=cfg[0], message=cfg[1])
        try:
            self.layer.fib.delete_route(cfg)
        except FibError as e:
            return ip_pb2.DelRouteResponse(errno=e.errno, message=e.message)
        return ip_pb2.DelRouteResponse()

    async def ListRoutes(
        self, request: ip_pb2.ListRoutesRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.ListRoutesResponse:
        fib, names = self.layer.fib, self.layer.router.devices()
        if request.cache:
            now = time.monotonic_ns()
            return ip_pb2.ListRoutesResponse(
                cached=[
                    ip_pb2.CachedRoute(
                        dst=fnhe.daddr,
                        gateway=route.gateway if route.nh_scope == 253 else 0,
                        device=names.get(route.ifindex, ""),
                        mtu=fnhe.pmtu,
                        mtu_locked=fnhe.locked,
                        expires_sec=max(0, fnhe.expires_ns - now) // NSEC_PER_SEC,
                    )
                    for route, fnhe in fib.iter_exceptions(now)
                    if not request.table or route.table == request.table
                ]
            )
        return ip_pb2.ListRoutesResponse(routes=[route_to_proto(r, names) for r in fib.routes(request.table)])

    async def GetRoute(
        self, request: ip_pb2.GetRouteRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.GetRouteResponse:
        await self._check_u32(context, daddr=request.daddr, saddr=request.saddr)
        if request.tos > 255:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "tos is 8-bit")
        router, names = self.layer.router, self.layer.router.devices()
        oif = iif = 0
        for name, field in (("iif", request.iif), ("oif", request.oif)):
            if field:
                ifindex = self._dev(field)
                if not ifindex:
                    err, msg = no_device(field)
                    return ip_pb2.GetRouteResponse(errno=err, message=msg)
                iif, oif = (ifindex, oif) if name == "iif" else (iif, ifindex)
        now = time.monotonic_ns()
        if iif:
            rin = router.route_input(request.daddr, request.saddr, iif, request.tos, request.mark, now)
            if rin.error or rin.dst is None:
                return ip_pb2.GetRouteResponse(errno=rin.error)
            d = rin.dst
            return ip_pb2.GetRouteResponse(
                type=rin.type,
                daddr=request.daddr,
                saddr=request.saddr,
                gateway=d.nexthop if rin.type == 1 and d.nexthop != request.daddr else 0,
                device=names.get(d.ifindex, ""),
                table=rin.table,
                flags=rin.flags,
                mtu=0,
                iif=request.iif,
                mark=request.mark,
                input=True,
                dst=dst_to_proto(d),
            )
        try:
            rt = router.route_output(
                request.daddr, request.saddr, oif, tos=request.tos, mark=request.mark, now_ns=now, count=False
            )
        except RouteError as e:
            return ip_pb2.GetRouteResponse(errno=e.errno)
        d = rt.dst()
        return ip_pb2.GetRouteResponse(
            type=rt.type,
            daddr=rt.daddr,
            saddr=request.saddr,
            prefsrc=rt.saddr,
            gateway=rt.gateway,
            device=names.get(rt.ifindex, ""),
            table=rt.table,
            flags=rt.flags,
            mtu=rt.metric_mtu,
            mtu_locked=rt.mtu_locked,
            expires_sec=max(0, rt.expires_ns - now) // NSEC_PER_SEC if rt.expires_ns else 0,
            mark=request.mark,
            dst=dst_to_proto(d),
        )

    async def FlushCache(
        self, request: ip_pb2.FlushCacheRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.FlushCacheResponse:
        self.layer.fib.flush_exceptions()
        return ip_pb2.FlushCacheResponse()

    # Rules.

    async def AddRule(
        self, request: ip_pb2.AddRuleRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.AddRuleResponse:
        r = request.rule
        if r.src_len > 32 or r.dst_len > 32 or r.tos > 255:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "src_len/dst_len above 32 or tos above 255")
        if r.action not in (1, 3, 6, 7, 8):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"rule action {r.action} is not supported")
        fib = self.layer.fib
        rule = rule_from_proto(r)
        if not request.priority_given:
            rule = dataclasses.replace(rule, priority=fib.rules.default_pref())
        try:
            fib.add_rule(rule, self.layer.router.devices())
        except FibError as e:
            return ip_pb2.AddRuleResponse(errno=e.errno, message=e.message)
        return ip_pb2.AddRuleResponse()

    async def DelRule(
        self, request: ip_pb2.DelRuleRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.DelRuleResponse:
        try:
            self.layer.fib.del_rule(rule_from_proto(request.rule), request.priority_given)
        except FibError as e:
            return ip_pb2.DelRuleResponse(errno=e.errno, message=e.message)
        return ip_pb2.DelRuleResponse()

    async def ListRules(
        self, request: ip_pb2.ListRulesRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.ListRulesResponse:
        return ip_pb2.ListRulesResponse(rules=[rule_to_proto(r) for r in self.layer.fib.rules.rules])

    # Sysctls.

    async def GetSysctl(
        self, request: ip_pb2.GetSysctlRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.GetSysctlResponse:
        own = ip_sysctl_names()
        code, message, values = get_sysctls(
            self.layer.sysctl, request.names, set(own).__contains__, own, "the IP layer"
        )
        return ip_pb2.GetSysctlResponse(errno=code, message=message, values=values)

    async def SetSysctl(
        self, request: ip_pb2.SetSysctlRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.SetSysctlResponse:
        own = set(ip_sysctl_names()).__contains__
        code, message = set_sysctl(self.layer.sysctl, request.name, request.value, own, "the IP layer")
        return ip_pb2.SetSysctlResponse(errno=code, message=message)
