"""flowi4_scope in output route lookups: RT_SCOPE_LINK, which udp_sendmsg asks for with
MSG_DONTROUTE, SO_DONTROUTE or a strict source route (ip_sendmsg_scope), takes only
routes of link scope or narrower (fib_table_lookup skips wider aliases).

The answers are Linux 6.18.44's, in a network namespace with veth `vea` 10.231.0.1/24
(peer 10.231.0.2 in another namespace), `10.232.0.0/24 via 10.231.0.2` and `default via
10.231.0.2`, python sendto() with MSG_DONTROUTE (and SO_DONTROUTE, SO_BINDTODEVICE),
tcpdump -i any for the source addresses and nstat:
- 10.231.0.2 (on link): sent, from 10.231.0.1;
- 10.232.0.5 and 10.9.9.9 (through the gateway only): ENETUNREACH; without the flag
  10.232.0.5 goes; SO_DONTROUTE answers as MSG_DONTROUTE does;
- 10.231.0.1 (ours), 127.0.0.1: sent (local routes are host scope);
- 10.231.0.255 (SO_BROADCAST): sent (the broadcast route is link scope);
- 255.255.255.255 and 239.1.2.3: ENETUNREACH (only the default route would take them);
- bound to vea, 10.232.0.5: sent, on link (it ARPs for 10.232.0.5 itself), because a
  failed lookup with an oif assumes the destination is on link; bound to lo, sent out
  lo from 10.231.0.1; bound to vea, 239.1.2.3 leaves vea from 10.231.0.1;
- IpOutNoRoutes counted each ENETUNREACH (5 for the 5 failed sends).
"""

from __future__ import annotations

import errno

import grpc
import pytest

from services.core.snmp import SnmpMib
from services.core.sysctl import Sysctl
from services.ip.fib import (
    RT_SCOPE_LINK,
    RTN_BROADCAST,
    RTN_LOCAL,
    RTN_MULTICAST,
    RTN_UNICAST,
    Fib,
    InIfaddr,
    RouteConfig,
)
from services.ip.route import RouteError, Router
from stackemu.ip.v1 import ip_pb2
from tests.services.test_ip import ip_service

LO, VEA = 1, 2


def A(s: str) -> int:
    a, b, c, d = (int(x) for x in s.split("."))
    return a << 24 | b << 16 | c << 8 | d


ME, PEER = A("10.231.0.1"), A("10.231.0.2")


def router() -> Router:
    fib = Fib()
    r = Router(fib, SnmpMib(), Sysctl())
    r.set_devices([(LO, "lo", 65536, 0, 0x49), (VEA, "vea", 1500, 0, 0x1043)])
    fib.add_ifaddr(InIfaddr(LO, "lo", A("127.0.0.1"), 8), loopback=True)
    fib.add_ifaddr(InIfaddr(VEA, "vea", ME, 24), loopback=False)
    fib.add_route(RouteConfig(A("10.232.0.0"), 24, gateway=PEER), r.devices())
    fib.add_route(RouteConfig(0, 0, gateway=PEER), r.devices())
    return r


# (destination, oif, route type, device, next hop, source) with RT_SCOPE_LINK.
SENT = [
    ("10.231.0.2", 0, RTN_UNICAST, VEA, "10.231.0.2", "10.231.0.1"),
    ("10.231.0.1", 0, RTN_LOCAL, LO, "10.231.0.1", "10.231.0.1"),
    ("127.0.0.1", 0, RTN_LOCAL, LO, "127.0.0.1", "127.0.0.1"),
    ("10.231.0.255", 0, RTN_BROADCAST, VEA, "10.231.0.255", "10.231.0.1"),
    ("10.232.0.5", VEA, RTN_UNICAST, VEA, "10.232.0.5", "10.231.0.1"),
    ("10.232.0.5", LO, RTN_UNICAST, LO, "10.232.0.5", "10.231.0.1"),
    ("239.1.2.3", VEA, RTN_MULTICAST, VEA, "239.1.2.3", "10.231.0.1"),
]


@pytest.mark.parametrize(("daddr", "oif", "rtype", "dev", "nexthop", "saddr"), SENT)
def test_link_scope_lookups_that_succeed(
    daddr: str, oif: int, rtype: int, dev: int, nexthop: str, saddr: str
) -> None:
    dst, src = router().output(A(daddr), oif=oif, scope=RT_SCOPE_LINK)
    assert (dst.rt_type, dst.ifindex, dst.nexthop, src) == (rtype, dev, A(nexthop), A(saddr))


@pytest.mark.parametrize("daddr", ["10.232.0.5", "10.9.9.9", "255.255.255.255", "239.1.2.3"])
def test_link_scope_refuses_what_only_a_gateway_reaches(daddr: str) -> None:
    r = router()
    with pytest.raises(RouteError) as err:
        r.output(A(daddr), scope=RT_SCOPE_LINK)
    assert err.value.errno == errno.ENETUNREACH
    assert r.mib.ip.get("OutNoRoutes") == 1


def test_universe_scope_takes_the_gateway() -> None:
    dst, src = router().output(A("10.232.0.5"))
    assert (dst.rt_type, dst.ifindex, dst.nexthop, src) == (RTN_UNICAST, VEA, PEER, ME)


def test_an_oif_that_is_down_is_unreachable() -> None:
    # ip_route_output_key_hash_rcu(): "!(dev_out->flags & IFF_UP)" → -ENETUNREACH.
    r = router()
    r.set_devices([(VEA, "vea", 1500, 0, 0x1002)])
    with pytest.raises(RouteError) as err:
        r.output(PEER, oif=VEA)
    assert err.value.errno == errno.ENETUNREACH


def test_route_output_takes_the_scope(run_async, grpc_test_server, poll_until) -> None:
    async def scenario() -> None:
        async with ip_service(grpc_test_server, poll_until) as ip:
            layer = ip.service.servicer.layer
            gw = A("10.0.0.7")
            layer.fib.add_route(RouteConfig(A("10.232.0.0"), 24, gateway=gw), layer.router.devices())
            far = A("10.232.0.5")
            resp = await ip.stub.RouteOutput(ip_pb2.RouteOutputRequest(daddr=far))
            assert (resp.errno, resp.dst.nexthop) == (0, gw)
            resp = await ip.stub.RouteOutput(ip_pb2.RouteOutputRequest(daddr=far, scope=RT_SCOPE_LINK))
            assert resp.errno == errno.ENETUNREACH
            resp = await ip.stub.RouteOutput(ip_pb2.RouteOutputRequest(daddr=gw, scope=RT_SCOPE_LINK))
            assert (resp.errno, resp.dst.nexthop, resp.saddr) == (0, gw, A("10.0.0.1"))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ip.stub.RouteOutput(ip_pb2.RouteOutputRequest(daddr=far, scope=256))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    run_async(scenario())
