"""The FIB without gRPC: fib_table_insert's flags, longest-prefix match with tos and
metrics, the route types' lookup errors, and the bound on nexthop exceptions."""

from __future__ import annotations

import errno

import pytest

from services.ip.fib import (
    FNHE_HASH_SIZE,
    FNHE_RECLAIM_DEPTH,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    RT_SCOPE_LINK,
    RTN_BLACKHOLE,
    RTN_THROW,
    Fib,
    FibError,
    Flow,
    InIfaddr,
    RouteConfig,
)

A = 0x0A000001
DEVS = {1: "lo", 2: "eth0"}


def host() -> Fib:
    fib = Fib()
    fib.add_ifaddr(InIfaddr(1, "lo", 0x7F000001, 8), loopback=True)
    fib.add_ifaddr(InIfaddr(2, "eth0", A, 24), loopback=False)
    return fib


def dev_route(dst: int, plen: int, priority: int = 0, mtu: int = 0, tos: int = 0) -> RouteConfig:
    return RouteConfig(dst, plen, oif=2, scope=RT_SCOPE_LINK, priority=priority, mtu=mtu, tos=tos)


def test_flags_of_add_append_replace_change() -> None:
    fib = host()
    fib.add_route(dev_route(0xC0000200, 24, priority=5), DEVS)
    with pytest.raises(FibError) as e:
        fib.add_route(dev_route(0xC0000200, 24, priority=5, mtu=1400), DEVS)
    assert e.value.errno == errno.EEXIST
    fib.add_route(dev_route(0xC0000200, 24, priority=5, mtu=1400), DEVS, NLM_F_CREATE | NLM_F_APPEND)
    assert [r.mtu for r in fib.main.routes() if r.dst == 0xC0000200] == [0, 1400]
    fib.add_route(dev_route(0xC0000200, 24, priority=5, mtu=1300), DEVS, NLM_F_CREATE | NLM_F_REPLACE)
    assert [r.mtu for r in fib.main.routes() if r.dst == 0xC0000200] == [1300, 1400]
    with pytest.raises(FibError) as e:
        fib.add_route(dev_route(0xC6120000, 16), DEVS, NLM_F_REPLACE)
    assert e.value.errno == errno.ENOENT
    # prepend (CREATE alone) goes first; an exact duplicate is EEXIST even so.
    fib.add_route(dev_route(0xC0000200, 24, priority=5, mtu=1200), DEVS, NLM_F_CREATE)
    assert [r.mtu for r in fib.main.routes() if r.dst == 0xC0000200] == [1200, 1300, 1400]
    with pytest.raises(FibError):
        fib.add_route(dev_route(0xC0000200, 24, priority=5, mtu=1200), DEVS, NLM_F_CREATE)
    assert NLM_F_EXCL


def test_lowest_metric_and_tos_win_then_longest_prefix() -> None:
    fib = host()
    fib.add_route(RouteConfig(0, 0, gateway=0x0A000002, priority=10), DEVS)
    fib.add_route(RouteConfig(0, 0, gateway=0x0A000003, priority=5), DEVS)
    fib.add_route(dev_route(0xC0000200, 24, tos=0x10), DEVS)
    res, err = fib.fib_lookup(Flow(0xC0000209))
    assert err == 0 and res is not None and res.route.gateway == 0x0A000003
    res, err = fib.fib_lookup(Flow(0xC0000209, tos=0x10))
    assert res is not None and res.route.prefixlen == 24
    # the flow's tos is matched on the legacy TOS bits only
    res, err = fib.fib_lookup(Flow(0xC0000209, tos=0x12))
    assert res is not None and res.route.prefixlen == 24


@pytest.mark.parametrize(
    ("rtype", "err"),
    [
        (RTN_BLACKHOLE, errno.EINVAL),
        (7, errno.EHOSTUNREACH),
        (8, errno.EACCES),
        (RTN_THROW, errno.ENETUNREACH),
    ],
)
def test_route_types_end_lookups_with_their_error(rtype: int, err: int) -> None:
    fib = host()
    fib.add_route(RouteConfig(0xC6336400, 24, type=rtype), DEVS)
    assert fib.fib_lookup(Flow(0xC6336401))[1] == err


def test_exceptions_are_bounded_per_bucket() -> None:
    fib = host()
    route = fib.main.routes()[0]
    for i in range(FNHE_HASH_SIZE * 20):
        fib.update_exception(route, 0x0A000000 | i, 1400, False, 10**12, i)
    chains = fib.exceptions[route].values()
    assert max(len(c) for c in chains) <= 2 * FNHE_RECLAIM_DEPTH
    assert sum(len(c) for c in chains) <= FNHE_HASH_SIZE * 2 * FNHE_RECLAIM_DEPTH
    fib.flush_exceptions()
    assert not fib.exceptions
