"""Router: ip_route_input_slow() outcomes with ip_error()'s counters, drop reasons and
ICMP, spec_dst, rp_filter, and PMTU exceptions' expiry and genid. The errnos and
outcomes were checked with `ip route get ... iif eth0` on Linux 6.18.44."""

from __future__ import annotations

import errno

import pytest

from services.core.dropreason import SkbDropReason
from services.core.snmp import SnmpMib
from services.core.sysctl import Sysctl
from services.ip.fib import RTN_BROADCAST, RTN_LOCAL, RTN_UNICAST, Fib, InIfaddr, RouteConfig
from services.ip.route import Router

LO, ETH0 = 1, 2
ME, PEER = 0x0A000001, 0x0A000002


def router(forward: bool = False) -> Router:
    sysctl = Sysctl({"net.ipv4.ip_forward": int(forward)})
    fib = Fib()
    r = Router(fib, SnmpMib(), sysctl)
    r.set_devices([(LO, "lo", 65536), (ETH0, "eth0", 1500)])
    fib.add_ifaddr(InIfaddr(LO, "lo", 0x7F000001, 8), loopback=True)
    fib.add_ifaddr(InIfaddr(ETH0, "eth0", ME, 24), loopback=False)
    for rtype, dst in ((6, 0xC6336400), (7, 0xC6336500), (8, 0xC6336600)):
        fib.add_route(RouteConfig(dst, 24, type=rtype), r.devices())
    fib.add_route(RouteConfig(0xC0000200, 24, gateway=PEER), r.devices())
    return r


# (daddr, forwarding, error, icmp code, counter, reason)
CASES = [
    (0x08080808, False, errno.EHOSTUNREACH, None, "InAddrErrors", SkbDropReason.IP_INADDRERRORS),
    (0xC6336401, False, errno.EHOSTUNREACH, None, "InAddrErrors", SkbDropReason.IP_INADDRERRORS),
    (0x08080808, True, errno.ENETUNREACH, 0, "InNoRoutes", SkbDropReason.IP_INNOROUTES),
    (0xC6336401, True, errno.EINVAL, None, None, SkbDropReason.NOT_SPECIFIED),
    (0xC6336501, True, errno.EHOSTUNREACH, 1, None, SkbDropReason.NOT_SPECIFIED),
    (0xC6336601, True, errno.EACCES, 13, None, SkbDropReason.NOT_SPECIFIED),
]


@pytest.mark.parametrize(("daddr", "forward", "err", "code", "counter", "reason"), CASES)
def test_ip_error(
    daddr: int, forward: bool, err: int, code: int | None, counter: str | None, reason: SkbDropReason
) -> None:
    rt = router(forward).route_input(daddr, PEER, ETH0)
    assert (rt.error, rt.counter, rt.reason) == (err, counter, reason)
    assert rt.icmp == (None if code is None else (3, code))
    assert not rt.delivered


def test_local_broadcast_forward_and_martians() -> None:
    r = router()
    rt = r.route_input(ME, PEER, ETH0)
    assert rt.type == RTN_LOCAL and rt.delivered and rt.spec_dst == ME and rt.dst is not None
    assert rt.dst.ifindex == LO
    rt = r.route_input(0x0A0000FF, PEER, ETH0)
    # fib_compute_spec_dst(): a broadcast's spec_dst is our source towards the sender.
    assert rt.type == RTN_BROADCAST and rt.spec_dst == ME
    assert r.route_input(0x7F000001, PEER, ETH0).reason == SkbDropReason.IP_LOCALNET
    assert r.route_input(ME, ME, ETH0).reason == SkbDropReason.IP_LOCAL_SOURCE
    assert r.route_input(ME, 0, ETH0).reason == SkbDropReason.IP_INVALID_SOURCE
    assert r.route_input(0, PEER, ETH0).reason == SkbDropReason.IP_INVALID_DEST
    fwd = router(True).route_input(0xC0000209, 0x0A000003, ETH0)
    assert (
        fwd.type == RTN_UNICAST and fwd.dst is not None and (fwd.dst.ifindex, fwd.dst.nexthop) == (ETH0, PEER)
    )


def test_rp_filter_strict() -> None:
    r = router()
    r.sysctl.set("net.ipv4.conf.all.rp_filter", 1)
    # 192.0.2.9 is routed back through eth0, so it may come in there...
    assert r.route_input(ME, 0xC0000209, ETH0).delivered
    # ...but an unroutable source fails the reverse path check.
    rt = r.route_input(ME, 0x08080808, ETH0)
    assert (rt.reason, rt.counter) == (SkbDropReason.IP_RPFILTER, "IPReversePathFilter")


def test_pmtu_expiry_and_genid() -> None:
    r = router()
    genid = r.fib.genid
    assert r.update_pmtu(PEER, 1400, now_ns=0)
    assert r.fib.genid == genid + 1
    assert r.output(PEER, now_ns=1)[0].mtu == 1400
    # Refreshing the same MTU is skipped until half of mtu_expires has passed.
    assert not r.update_pmtu(PEER, 1400, now_ns=10**9)
    assert r.update_pmtu(PEER, 1400, now_ns=301 * 10**9)
    assert r.output(PEER, now_ns=900 * 10**9)[0].mtu == 1400
    assert r.output(PEER, now_ns=901 * 10**9 + 1)[0].mtu == 1500
