"""The SOL_IP options that change what bind() and autobind do on a UDP socket, through an
in-process UdpLayer on a host whose only address is 127.0.0.1/8 (LoopbackUdp):
IP_FREEBIND, IP_TRANSPARENT and net.ipv4.ip_nonlocal_bind (inet_can_nonlocal_bind in
__inet_bind), IP_TRANSPARENT's source on send (FLOWI_FLAG_ANYSRC), IP_BIND_ADDRESS_NO_PORT
(__inet_bind leaves the port to inet_autobind) and IP_LOCAL_PORT_RANGE
(inet_sk_get_local_port_range in udp_lib_get_port). What 6.18 answered, in a network
namespace of its own with lo up, is written beside each step; the kernel comparison is
tests/e2e/test_ip_freebind_kernel.py.
"""

from __future__ import annotations

import struct

import pytest

from services.core import errno
from services.core.cred import CAP_NET_ADMIN, CAP_NET_RAW, Cred
from services.core.sysctl import Sysctl
from services.core.wire.ipv4 import IPPROTO_UDP
from services.ip.sockglue import (
    IP_BIND_ADDRESS_NO_PORT,
    IP_FREEBIND,
    IP_LOCAL_PORT_RANGE,
    IP_TRANSPARENT,
    InetOpts,
    inet_sk_get_local_port_range,
)
from tests.services.fakes_udp import LoopbackUdp, async_test, ip, sockaddr

SOL_IP = 0
NONLOCAL = ip("10.9.9.9")
LOOPBACK = ip("127.0.0.1")


def i32(v: int) -> bytes:
    return struct.pack("=i", v)


def u32(v: int) -> bytes:
    return struct.pack("=I", v)


async def _errno(coro: object) -> int:
    try:
        await coro  # type: ignore[misc]
    except OSError as e:
        return e.errno or 0
    return 0


@async_test
async def test_nonlocal_bind_needs_freebind_transparent_or_the_sysctl() -> None:
    """6.18: bind(10.9.9.9:5000) is EADDRNOTAVAIL; with IP_FREEBIND or IP_TRANSPARENT it
    binds (getsockname 10.9.9.9:5000), and so does any socket with ip_nonlocal_bind 1."""
    u = LoopbackUdp()
    plain = await u.create(IPPROTO_UDP, 1, 3)
    assert await _errno(u.bind(plain, NONLOCAL, 5000)) == errno.EADDRNOTAVAIL
    assert await u.getname(plain, False) == (0, 0)
    for port, opt in ((5000, IP_FREEBIND), (5001, IP_TRANSPARENT)):
        sk = await u.create(IPPROTO_UDP, 1, 4)
        await u.setsockopt(sk, SOL_IP, opt, i32(1))
        await u.bind(sk, NONLOCAL, port)
        assert await u.getname(sk, False) == (NONLOCAL, port)
    sysctl = Sysctl()
    sysctl.set("net.ipv4.ip_nonlocal_bind", 1)
    u = LoopbackUdp(sysctl)
    sk = await u.create(IPPROTO_UDP, 1, 3)
    await u.bind(sk, NONLOCAL, 5000)
    assert await u.getname(sk, False) == (NONLOCAL, 5000)


@async_test
async def test_freebind_sends_nothing_from_a_nonlocal_source_transparent_does() -> None:
    """6.18: a sendto() from a socket freebound to 10.9.9.9 is ENETUNREACH (the output
    route wants a source of ours); a transparent one's is sent (FLOWI_FLAG_ANYSRC), and
    the receiver on 127.0.0.1 sees it come from 10.9.9.9."""
    u = LoopbackUdp()
    rx = await u.create(IPPROTO_UDP, 1, 3)
    await u.bind(rx, LOOPBACK, 7000)
    free = await u.create(IPPROTO_UDP, 1, 4)
    await u.setsockopt(free, SOL_IP, IP_FREEBIND, i32(1))
    await u.bind(free, NONLOCAL, 5000)
    name = sockaddr("127.0.0.1", 7000)
    assert await _errno(u.sendmsg(free, b"free", name, 0, False)) == errno.ENETUNREACH
    tp = await u.create(IPPROTO_UDP, 1, 5)
    await u.setsockopt(tp, SOL_IP, IP_TRANSPARENT, i32(1))
    await u.bind(tp, NONLOCAL, 5001)
    assert await u.sendmsg(tp, b"tp", name, 0, False) == 2
    got = await u.recvmsg(rx, 10, 0, 0)
    assert (got.data, got.saddr, got.sport) == (b"tp", NONLOCAL, 5001)


@async_test
async def test_transparent_wants_cap_net_raw_or_cap_net_admin() -> None:
    """6.18 do_ip_setsockopt(): turning IP_TRANSPARENT on without CAP_NET_RAW or
    CAP_NET_ADMIN is EPERM (before the length check); off needs neither; optlen 0 is
    val 0, so EINVAL for the length alone."""
    u = LoopbackUdp()
    none, raw, admin = Cred(1000, 0), Cred(1000, 1 << CAP_NET_RAW), Cred(1000, 1 << CAP_NET_ADMIN)
    want = {id(none): errno.EPERM, id(raw): 0, id(admin): 0}
    for cred in (none, raw, admin):
        sk = await u.create(IPPROTO_UDP, 1, 3, cred)
        assert await _errno(u.setsockopt(sk, SOL_IP, IP_TRANSPARENT, i32(1))) == want[id(cred)]
        assert await _errno(u.setsockopt(sk, SOL_IP, IP_TRANSPARENT, i32(0))) == 0
        assert await _errno(u.setsockopt(sk, SOL_IP, IP_TRANSPARENT, b"")) == errno.EINVAL
        assert await u.getsockopt(sk, SOL_IP, IP_TRANSPARENT, 4) == (i32(0), 4)
    # IP_FREEBIND takes no capability.
    sk = await u.create(IPPROTO_UDP, 1, 4, none)
    await u.setsockopt(sk, SOL_IP, IP_FREEBIND, i32(1))
    await u.bind(sk, NONLOCAL, 5000)


@async_test
async def test_bind_address_no_port_leaves_the_port_to_autobind() -> None:
    """6.18: with IP_BIND_ADDRESS_NO_PORT, bind(127.0.0.1:0) reads back 127.0.0.1:0; a
    second bind() is allowed (inet_num is still 0); the first send picks the port, on the
    bound address. A bind to a given port takes it as ever."""
    u = LoopbackUdp()
    sk = await u.create(IPPROTO_UDP, 1, 3)
    await u.setsockopt(sk, SOL_IP, IP_BIND_ADDRESS_NO_PORT, i32(1))
    await u.bind(sk, LOOPBACK, 0)
    assert await u.getname(sk, False) == (LOOPBACK, 0)
    await u.bind(sk, LOOPBACK, 0)
    assert await u.sendmsg(sk, b"x", sockaddr("127.0.0.1", 9), 0, False) == 1
    addr, port = await u.getname(sk, False)
    assert addr == LOOPBACK and 32768 <= port <= 60999
    assert await _errno(u.bind(sk, LOOPBACK, 0)) == errno.EINVAL
    other = await u.create(IPPROTO_UDP, 1, 4)
    await u.setsockopt(other, SOL_IP, IP_BIND_ADDRESS_NO_PORT, i32(1))
    await u.bind(other, ip("127.0.0.2"), 6000)
    assert await u.getname(other, False) == (ip("127.0.0.2"), 6000)


@pytest.mark.parametrize(
    ("sk_range", "want"),
    [
        # 6.18 with ip_local_port_range 32768 60999: each bound is taken where it falls
        # inside the range so far; 0 leaves that side alone.
        ((40005 << 16) | 40000, (40000, 40005)),
        (40000, (40000, 60999)),
        (40005 << 16, (32768, 40005)),
        ((100 << 16) | 50, (32768, 60999)),
        ((61000 << 16) | 60000, (60000, 60999)),
        ((32768 << 16) | 1, (32768, 32768)),
        (0xFFFFFFFF, (32768, 60999)),
        (0, (32768, 60999)),
    ],
)
def test_inet_sk_get_local_port_range(sk_range: int, want: tuple[int, int]) -> None:
    assert inet_sk_get_local_port_range(InetOpts(local_port_range=sk_range), 32768, 60999) == want


@async_test
async def test_local_port_range_bounds_autobind_and_bind_to_port_zero() -> None:
    """6.18: six sockets with IP_LOCAL_PORT_RANGE 40000..40005 autobind to the six ports
    of it; a seventh finds none (EAGAIN from sendto); bind(addr, 0) picks from it too;
    an explicit port outside it is still allowed."""
    u = LoopbackUdp()
    rng = u32((40005 << 16) | 40000)
    ports = []
    for fd in range(6):
        sk = await u.create(IPPROTO_UDP, 1, 10 + fd)
        await u.setsockopt(sk, SOL_IP, IP_LOCAL_PORT_RANGE, rng)
        assert await u.sendmsg(sk, b"x", sockaddr("127.0.0.1", 9), 0, False) == 1
        ports.append((await u.getname(sk, False))[1])
    assert sorted(ports) == list(range(40000, 40006))
    sk = await u.create(IPPROTO_UDP, 1, 20)
    await u.setsockopt(sk, SOL_IP, IP_LOCAL_PORT_RANGE, rng)
    assert await _errno(u.sendmsg(sk, b"x", sockaddr("127.0.0.1", 9), 0, False)) == errno.EAGAIN
    assert await _errno(u.bind(sk, LOOPBACK, 0)) == errno.EADDRINUSE
    await u.bind(sk, LOOPBACK, 50000)
    one = await u.create(IPPROTO_UDP, 1, 21)
    await u.setsockopt(one, SOL_IP, IP_LOCAL_PORT_RANGE, u32((32768 << 16) | 1))
    await u.bind(one, LOOPBACK, 0)
    assert await u.getname(one, False) == (LOOPBACK, 32768)


@async_test
async def test_ip_unicast_if() -> None:
    """IP_UNICAST_IF (do_ip_setsockopt, udp_sendmsg, __ip4_datagram_connect): an int
    ifindex in network order, EINVAL for any other length, EADDRNOTAVAIL for a device
    that does not exist, EINVAL on a device-bound socket (no VRF master), 0 clears; it
    reads back as htonl(ifindex) (a byte for a short buffer only when that fits); a
    unicast send or connect without a device of its own routes with it as oif. 6.18
    here: int 1 is htonl'd to ifindex 16777216, EADDRNOTAVAIL; 0 is taken and reads 0."""
    from services.ip.sockglue import IP_UNICAST_IF

    u = LoopbackUdp()
    u.layer.devices = {1: "lo", 2: "eth0"}
    s = u.layer.sock(await u.create(IPPROTO_UDP, 1, 3))
    lo = struct.pack("!i", 1)
    assert await _errno(u.setsockopt(s.sk, SOL_IP, IP_UNICAST_IF, i32(1))) == errno.EADDRNOTAVAIL
    assert await _errno(u.setsockopt(s.sk, SOL_IP, IP_UNICAST_IF, lo[:3])) == errno.EINVAL
    assert await _errno(u.setsockopt(s.sk, SOL_IP, IP_UNICAST_IF, lo + b"\0")) == errno.EINVAL
    assert await u.getsockopt(s.sk, SOL_IP, IP_UNICAST_IF, 4) == (i32(0), 4)
    await u.setsockopt(s.sk, SOL_IP, IP_UNICAST_IF, lo)
    assert s.inet.uc_index == 1
    assert await u.getsockopt(s.sk, SOL_IP, IP_UNICAST_IF, 4) == (lo, 4)
    assert await u.getsockopt(s.sk, SOL_IP, IP_UNICAST_IF, 2) == (lo[:2], 2)
    # Sends and connects route with it as the output device.
    seen: list[int] = []
    route = u.layer.route_output

    async def spy(daddr: int, saddr: int, oif: int, **kw: int) -> object:
        seen.append(oif)
        return await route(daddr, saddr, oif, **kw)

    u.layer.route_output = spy  # type: ignore[assignment]
    assert await u.sendmsg(s.sk, b"x", sockaddr("127.0.0.1", 9), 0, False) == 1
    await u.connect(s.sk, sockaddr("127.0.0.1", 9))
    assert seen == [1, 1]
    # eth0 (2) is not on lo's routes: the send fails as ip_route_output_key says.
    await u.setsockopt(s.sk, SOL_IP, IP_UNICAST_IF, struct.pack("!i", 2))
    assert await _errno(u.sendmsg(s.sk, b"x", sockaddr("127.0.0.1", 10), 0, False)) == errno.ENODEV
    await u.setsockopt(s.sk, SOL_IP, IP_UNICAST_IF, i32(0))
    assert s.inet.uc_index == 0
    # A socket bound to a device takes no other (EINVAL), but may clear it.
    await u.setsockopt(s.sk, 1, 25, b"lo\0")  # SO_BINDTODEVICE
    assert await _errno(u.setsockopt(s.sk, SOL_IP, IP_UNICAST_IF, lo)) == errno.EINVAL
    await u.setsockopt(s.sk, SOL_IP, IP_UNICAST_IF, i32(0))
