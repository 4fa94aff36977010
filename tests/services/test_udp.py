"""The UDP service for real (UdpService on a grpc.aio server), the IP service faked
(FakeIp), the test playing the socket layer on the Attach stream.

Where the machine's kernel can answer the same question cheaply, the test asks it too
and asserts the same errno or counters: on 127.0.0.1 for the system-call errors, in a
network namespace of its own (fresh counters, nothing else sending) for the receive path.
"""

from __future__ import annotations

import asyncio
import platform
import struct
from pathlib import Path

import grpc

from services.core import errno
from services.core.dropreason import SkbDropReason
from services.core.skbuff import SkBuff
from services.core.sockaddr import AF_INET6, AF_UNSPEC
from services.core.sysctl import Sysctl
from services.ip.sockglue import build_cmsgs
from stackemu.udp.v1 import udp_pb2
from tests.services.fakes_udp import (
    LO_IFINDEX,
    LO_MTU,
    LOOPBACK,
    MSG_DONTWAIT,
    MSG_OOB,
    MSG_PEEK,
    MSG_TRUNC,
    RTCF_LOCAL,
    RTN_BROADCAST,
    RTN_LOCAL,
    UdpHarness,
    async_test,
    delivered_skb,
    eventually,
    ip,
    real_bind,
    real_connect,
    real_errno,
    real_in_netns,
    real_name,
    real_sendto,
    real_udp,
    sockaddr,
    udp_checksum,
    udp_mib,
    udp_segment,
)

LO = LOOPBACK
PEER = ip("127.0.0.2")
IP_PMTUDISC_WANT = 1


def reason(r: SkbDropReason) -> str:
    return r.full_name


def datagram(
    dport: int, payload: bytes, *, saddr: int = PEER, sport: int = 5555, daddr: int = LO, **kw: int
) -> bytes:
    return udp_segment(saddr, daddr, sport, dport, payload, **kw)


# Transmit.


@async_test
async def test_sendmsg_emits_header_checksum_and_cork() -> None:
    async with UdpHarness() as h:
        sk = await h.sock.create()
        assert sk >= 1
        assert await h.sock.bind(sk, "127.0.0.1", 9000) == 0
        r = await h.sock.sendmsg(sk, b"hello", sockaddr("127.0.0.1", 9001))
        assert (r.errno, r.sendmsg.sent) == (0, 5)
        skb = await h.ip.next_sent()
        # src 9000, dst 9001, len 13, checksum over the pseudo-header (127.0.0.1 both
        # ways, protocol 17, length 13) and the segment.
        assert skb.payload() == bytes.fromhex("23282329000d77ae") + b"hello"
        assert udp_checksum(LO, LO, skb.payload()) == 0x77AE
        assert skb.transport_header == skb.data and skb.sk == sk
        cork = skb.cork
        assert cork is not None
        assert (cork.saddr, cork.daddr, cork.protocol, cork.pmtudisc) == (LO, LO, 17, IP_PMTUDISC_WANT)
        assert (cork.ttl, cork.tos, cork.options, cork.inet_id) == (0, 0, b"", None)
        assert skb.dst is not None
        assert (skb.dst.ifindex, skb.dst.rt_type, skb.dst.flags, skb.dst.mtu) == (
            LO_IFINDEX,
            RTN_LOCAL,
            RTCF_LOCAL,
            LO_MTU,
        )
        assert await h.counters() == udp_mib(OutDatagrams=1)
        assert await h.drops() == {}

        # A sum that folds to 0 is sent as 0xFFFF (RFC 768; udp_send_skb's
        # CSUM_MANGLED_0): these six bytes make it so.
        r = await h.sock.sendmsg(sk, b"zero\xce\xa9", sockaddr("127.0.0.1", 9001))
        assert r.errno == 0
        skb = await h.ip.next_sent()
        assert skb.payload() == bytes.fromhex("23282329000effff") + b"zero\xce\xa9"
        assert await h.counters() == udp_mib(OutDatagrams=2)


@async_test
async def test_autobind_picks_a_port_in_ip_local_port_range() -> None:
    real = real_udp()
    assert real_sendto(real, b"x", sockaddr("127.0.0.1", 9)) == 0
    low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert real_name(real)[0] == 0 and low <= real_name(real)[1] <= high
    real.close()
    async with UdpHarness() as h:
        assert h.layer.sysctl.get_tuple("net.ipv4.ip_local_port_range") == (32768, 60999)
        sk = await h.sock.create()
        assert await h.sock.getname(sk) == (0, 0, 0)
        assert (await h.sock.sendmsg(sk, b"x", sockaddr("127.0.0.1", 9))).errno == 0
        skb = await h.ip.next_sent()
        (sport,) = struct.unpack_from("!H", skb.payload())
        assert 32768 <= sport <= 60999
        assert await h.sock.getname(sk) == (0, 0, sport)


@async_test
async def test_autobind_with_the_range_used_up_is_eagain() -> None:
    # inet_autobind() says EAGAIN for sendmsg and connect; bind() to port 0 says
    # EADDRINUSE (udp_lib_get_port failing in __inet_bind).
    real = real_in_netns(
        """
import errno
open("/proc/sys/net/ipv4/ip_local_port_range", "w").write("40000 40001")
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(5)]
def err(call):
    try:
        call()
    except OSError as e:
        return e.errno
    return 0
out["send"] = [err(lambda s=s: s.sendto(b"x", ("127.0.0.1", 9))) for s in socks[:3]]
out["connect"] = err(lambda: socks[3].connect(("127.0.0.1", 9)))
out["bind"] = err(lambda: socks[4].bind(("127.0.0.1", 0)))
"""
    )
    expected = {"send": [0, 0, errno.EAGAIN], "connect": errno.EAGAIN, "bind": errno.EADDRINUSE}
    assert real in (None, expected)
    async with UdpHarness(Sysctl({"net.ipv4.ip_local_port_range": "40000 40001"})) as h:
        sks = [await h.sock.create() for _ in range(5)]
        sent = [(await h.sock.sendmsg(sk, b"x", sockaddr("127.0.0.1", 9))).errno for sk in sks[:3]]
        assert sent == expected["send"]
        assert {(await h.sock.getname(sk))[2] for sk in sks[:2]} == {40000, 40001}
        assert await h.sock.connect(sks[3], sockaddr("127.0.0.1", 9)) == expected["connect"]
        assert await h.sock.bind(sks[4], "127.0.0.1", 0) == expected["bind"]


@async_test
async def test_sendmsg_errors_in_the_kernels_order() -> None:
    lo9 = sockaddr("127.0.0.1", 9)
    cases = [
        # (what, payload, msg_name, flags, errno)
        ("name shorter than sockaddr_in", b"x", lo9[:8], 0, errno.EINVAL),
        ("AF_INET6 name", b"x", sockaddr("127.0.0.1", 9, AF_INET6), 0, errno.EAFNOSUPPORT),
        ("AF_UNSPEC name is taken as AF_INET", b"x", sockaddr("127.0.0.1", 9, AF_UNSPEC), 0, 0),
        ("port 0", b"x", sockaddr("127.0.0.1", 0), 0, errno.EINVAL),
        ("no name, not connected", b"x", None, 0, errno.EDESTADDRREQ),
        ("MSG_OOB", b"x", lo9, MSG_OOB, errno.EOPNOTSUPP),
        ("MSG_OOB before the name", b"x", lo9[:8], MSG_OOB, errno.EOPNOTSUPP),
        ("length > 0xFFFF before MSG_OOB", bytes(65536), lo9, MSG_OOB, errno.EMSGSIZE),
        ("65508 bytes: no room in an IP packet", bytes(65508), lo9, 0, errno.EMSGSIZE),
        ("65507 bytes fit", bytes(65507), lo9, 0, 0),
    ]
    async with UdpHarness() as h:
        for what, payload, name, flags, want in cases:
            real = real_udp()
            real_err = real_sendto(real, payload, name, flags)
            sk = await h.sock.create()
            r = await h.sock.sendmsg(sk, payload, name or b"", flags)
            assert (r.errno, real_err) == (want, want), what
            if not want:
                assert r.sendmsg.sent == len(payload), what
                assert (await h.ip.next_sent()).len == 8 + len(payload), what
            # inet_send_prepare() autobinds before udp_sendmsg looks at anything.
            assert real_name(real)[1] != 0, what
            assert (await h.sock.getname(sk))[2] != 0, what
            real.close()
        # Emulator only: this machine has a default route, the fake IP layer does not.
        sk = await h.sock.create()
        r = await h.sock.sendmsg(sk, b"x", sockaddr("10.255.255.254", 9))
        assert r.errno == errno.ENETUNREACH
        assert await h.counters() == udp_mib(OutDatagrams=2)
        assert h.ip.sent.empty()


# Binding, connecting, names.


@async_test
async def test_bind_errors_match_the_kernel() -> None:
    first, second = real_udp(), real_udp()
    assert real_bind(first, sockaddr("127.0.0.1", 0)) == 0
    port = real_name(first)[1]
    real = [
        real_bind(second, sockaddr("127.0.0.1", port)),
        real_name(second),
        real_bind(second, sockaddr("0.0.0.0", port)),
        real_bind(second, sockaddr("127.0.0.2", port)),
        real_bind(second, sockaddr("127.0.0.2", port)),
        real_bind(second, sockaddr("10.255.255.254", 0)),
        real_bind(real_udp(), sockaddr("10.255.255.254", 0)),
    ]
    first.close()
    second.close()
    assert real == [
        errno.EADDRINUSE,
        (0, 0),  # a failed bind leaves the socket unbound (__inet_bind)
        errno.EADDRINUSE,  # the wildcard conflicts with 127.0.0.1
        0,
        errno.EINVAL,  # already bound
        errno.EADDRNOTAVAIL,  # not local: checked before "already bound"
        errno.EADDRNOTAVAIL,
    ]
    async with UdpHarness() as h:
        a, b, c = [await h.sock.create() for _ in range(3)]
        assert await h.sock.bind(a, "127.0.0.1", 9000) == 0
        emulated = [
            await h.sock.bind(b, "127.0.0.1", 9000),
            (await h.sock.getname(b))[1:],
            await h.sock.bind(b, "0.0.0.0", 9000),
            await h.sock.bind(b, "127.0.0.2", 9000),
            await h.sock.bind(b, "127.0.0.2", 9000),
            await h.sock.bind(b, "10.255.255.254", 0),
            await h.sock.bind(c, "10.255.255.254", 0),
        ]
        assert emulated == real
        assert await h.sock.getname(a) == (0, LO, 9000)
        assert await h.sock.getname(b) == (0, PEER, 9000)
        # A port out of range cannot be a sockaddr_in: the request is malformed.
        h.sock.start(c, bind=udp_pb2.BindOp(addr=LO, port=70000))
        err = await h.sock.failure()
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "out of range" in (err.details() or "")


@async_test
async def test_connect_getname_and_disconnect_match_the_kernel() -> None:
    unspec = sockaddr("0.0.0.0", 0, AF_UNSPEC)

    def real_run() -> list[object]:
        out: list[object] = []
        s = real_udp()
        out.append(real_errno(s.getpeername))
        out.append(real_connect(s, sockaddr("127.0.0.1", 9001)))
        out.append((real_name(s)[0], real_name(s)[1] != 0, s.getpeername()))
        out.append(real_connect(s, sockaddr("0.0.0.0", 9)))  # no address: loopback
        out.append(s.getpeername())
        out.append(real_connect(s, unspec))
        out.append((real_name(s), real_errno(s.getpeername)))
        s.close()
        s = real_udp()  # bound to an address, port chosen: the port is not locked
        real_bind(s, sockaddr("127.0.0.1", 0))
        out += [real_connect(s, sockaddr("127.0.0.1", 9)), real_connect(s, unspec), real_name(s)]
        s.close()
        for name in (sockaddr("127.0.0.1", 9)[:8], sockaddr("127.0.0.1", 9, AF_INET6)):
            s = real_udp()  # inet_dgram_connect autobinds before the sockaddr is checked
            out.append((real_connect(s, name), real_name(s)[1] != 0))
            s.close()
        return out

    real = real_run()
    assert real == [
        errno.ENOTCONN,
        0,
        (LO, True, ("127.0.0.1", 9001)),
        0,
        ("127.0.0.1", 9),
        0,
        ((0, 0), errno.ENOTCONN),
        0,
        0,
        (LO, 0),
        (errno.EINVAL, True),
        (errno.EAFNOSUPPORT, True),
    ]
    async with UdpHarness() as h:
        out: list[object] = []
        sk = await h.sock.create()
        out.append((await h.sock.getname(sk, peer=True))[0])
        out.append(await h.sock.connect(sk, sockaddr("127.0.0.1", 9001)))
        _, addr, port = await h.sock.getname(sk)
        ephemeral = port
        _, paddr, pport = await h.sock.getname(sk, peer=True)
        out.append((addr, port != 0, ("127.0.0.1" if paddr == LO else paddr, pport)))
        out.append(await h.sock.connect(sk, sockaddr("0.0.0.0", 9)))
        _, paddr, pport = await h.sock.getname(sk, peer=True)
        out.append(("127.0.0.1" if paddr == LO else paddr, pport))
        out.append(await h.sock.disconnect(sk))
        _, addr, port = await h.sock.getname(sk)
        out.append(((addr, port), (await h.sock.getname(sk, peer=True))[0]))
        sk2 = await h.sock.create()
        await h.sock.bind(sk2, "127.0.0.1", 0)
        out.append(await h.sock.connect(sk2, sockaddr("127.0.0.1", 9)))
        out.append(await h.sock.disconnect(sk2))
        out.append((await h.sock.getname(sk2))[1:])
        for name in (sockaddr("127.0.0.1", 9)[:8], sockaddr("127.0.0.1", 9, AF_INET6)):
            s = await h.sock.create()
            out.append((await h.sock.connect(s, name), (await h.sock.getname(s))[2] != 0))
        assert out == real

        # __udp_disconnect undid the autobind: the old port is nobody's now.
        assert ephemeral not in {s.num for s in h.layer.table}
        await h.deliver(delivered_skb(PEER, LO, datagram(ephemeral, b"late")))
        assert await h.counters() == udp_mib(NoPorts=1)
        # A port the user bound survives disconnect.
        sk3 = await h.sock.create()
        await h.sock.bind(sk3, "127.0.0.1", 9000)
        assert await h.sock.connect(sk3, sockaddr("127.0.0.1", 9)) == 0
        assert await h.sock.disconnect(sk3) == 0
        assert await h.sock.getname(sk3) == (0, LO, 9000)
        # Emulator only (this machine has a default route).
        s = await h.sock.create()
        assert await h.sock.connect(s, sockaddr("10.255.255.254", 9)) == errno.ENETUNREACH


@async_test
async def test_connected_socket_numbers_its_datagrams() -> None:
    async with UdpHarness() as h:
        sk = await h.sock.create()
        assert await h.sock.connect(sk, sockaddr("127.0.0.1", 9001)) == 0
        assert (await h.sock.sendmsg(sk, b"a")).errno == 0
        first = (await h.ip.next_sent()).cork
        # ip_select_ident_segs() uses the socket's inet_id whenever inet_daddr is set,
        # also for a send that names its destination.
        assert (await h.sock.sendmsg(sk, b"b", sockaddr("127.0.0.1", 9002))).errno == 0
        second = await h.ip.next_sent()
        assert first is not None and second.cork is not None
        assert first.inet_id is not None
        assert second.cork.inet_id == (first.inet_id + 1) & 0xFFFF
        assert struct.unpack_from("!H", second.payload(), 2)[0] == 9002


@async_test
async def test_sendmsg_cork_carries_the_sockets_ip_options_and_the_cmsgs() -> None:
    """What udp_sendmsg hands IP for one datagram: the TTL (cmsg, else IP_TTL, else 0 for
    the route's), the TOS (cmsg, else IP_TOS, ECN bits included), the options in the
    form setsockopt takes (IP compiles and builds them), the priority IP_TOS or the
    cmsg gives (rt_tos2priority), SO_MARK's mark, and IP_PKTINFO's source and output
    interface in the route lookup."""
    i32 = struct.Struct("=i").pack
    async with UdpHarness() as h:
        sk = await h.sock.create()
        dst = sockaddr("127.0.0.1", 9001)
        assert await h.sock.setsockopt(sk, 0, 2, i32(33)) == 0  # IP_TTL
        assert await h.sock.setsockopt(sk, 0, 1, i32(0x11)) == 0  # IP_TOS
        assert await h.sock.setsockopt(sk, 0, 4, b"\x07\x07\x04" + bytes(4)) == 0  # IP_OPTIONS: RR
        assert (await h.sock.sendmsg(sk, b"a", dst)).errno == 0
        skb = await h.ip.next_sent()
        assert skb.cork is not None
        rr = b"\x07\x07\x04" + bytes(5)  # padded with IPOPT_END
        assert (skb.cork.ttl, skb.cork.tos, skb.cork.options, skb.priority) == (33, 0x11, rr, 6)
        control = build_cmsgs(
            [
                (0, 2, i32(9)),  # IP_TTL
                (0, 1, b"\x10"),  # IP_TOS
                (1, 36, i32(7)),  # SO_MARK
                (0, 8, struct.pack("=i4s4s", 1, bytes([127, 0, 0, 9]), bytes(4))),  # IP_PKTINFO
            ]
        )
        h.ip.route_requests.clear()
        assert (await h.sock.sendmsg(sk, b"b", dst, control=control)).errno == 0
        skb = await h.ip.next_sent()
        assert skb.cork is not None
        assert (skb.cork.ttl, skb.cork.tos, skb.priority, skb.mark) == (9, 0x10, 6, 7)
        assert skb.cork.saddr == ip("127.0.0.9")
        (req,) = h.ip.route_requests
        assert (req.daddr, req.saddr, req.oif) == (LO, ip("127.0.0.9"), LO_IFINDEX)
        # IP_TTL -1 goes back to the route's: 0 in the cork.
        assert await h.sock.setsockopt(sk, 0, 2, i32(-1)) == 0
        assert await h.sock.setsockopt(sk, 0, 4, b"") == 0
        assert (await h.sock.sendmsg(sk, b"c", dst)).errno == 0
        skb = await h.ip.next_sent()
        assert skb.cork is not None and (skb.cork.ttl, skb.cork.options) == (0, b"")


@async_test
async def test_ip_mtu_follows_the_route_a_fib_change_moves() -> None:
    """getsockopt(IP_MTU): ENOTCONN without a cached route (never connected,
    disconnected); the route's MTU, lo's 65536 read as 65535 (ipv4_mtu caps at
    IP_MAX_MTU), looked up again once the FIB generation has moved on."""
    async with UdpHarness() as h:
        sk = await h.sock.create()
        assert await h.sock.getsockopt(sk, 0, 14) == (errno.ENOTCONN, b"")
        assert await h.sock.connect(sk, sockaddr("127.0.0.1", 9)) == 0
        assert await h.sock.getsockopt(sk, 0, 14) == (0, struct.pack("=i", 65535))
        h.ip.route_requests.clear()
        h.layer.fib_genid += 1
        assert await h.sock.getsockopt(sk, 0, 14) == (0, struct.pack("=i", 65535))
        assert len(h.ip.route_requests) == 1
        assert await h.sock.disconnect(sk) == 0
        assert await h.sock.getsockopt(sk, 0, 14) == (errno.ENOTCONN, b"")


# Receive.


@async_test
async def test_recvmsg_returns_the_datagram_and_counts_at_recvmsg() -> None:
    real = real_in_netns(
        """
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(("127.0.0.1", 9000))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.2", 5555))
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 33)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
s.sendto(b"ping", ("127.0.0.1", 9000))
out["queued"] = udp_mib()
r.setsockopt(socket.IPPROTO_IP, 12, 1)  # IP_RECVTTL
r.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
data, anc, flags, addr = r.recvmsg(100, 1024, socket.MSG_DONTWAIT)
out["got"] = [data.decode(), flags, list(addr), sorted((t, d[0]) for _, t, d in anc)]
out["read"] = udp_mib()
"""
    )
    if real is not None:
        assert real["queued"] == udp_mib(OutDatagrams=1)
        assert real["read"] == udp_mib(OutDatagrams=1, InDatagrams=1)
        assert real["got"] == ["ping", 0, ["127.0.0.2", 5555], [[1, 0x10], [2, 33]]]  # IP_TOS, IP_TTL
    async with UdpHarness() as h:
        sk = await h.sock.create()
        assert await h.sock.bind(sk, "127.0.0.1", 9000) == 0
        await h.deliver(delivered_skb(PEER, LO, datagram(9000, b"ping"), ttl=33, tos=0x10))
        await h.queued(sk, 1)
        assert await h.counters() == udp_mib()  # udp_recvmsg counts InDatagrams
        r = await h.sock.recvmsg(sk, 100)
        assert r.errno == 0
        m = r.recvmsg
        assert (m.data, m.ulen, m.msg_flags) == (b"ping", 4, 0)
        assert (m.saddr, m.sport, m.daddr, m.ttl, m.tos, m.ifindex) == (PEER, 5555, LO, 33, 0x10, LO_IFINDEX)
        assert await h.counters() == udp_mib(InDatagrams=1)
        info = await h.socket_info(sk)
        assert (info.rmem_alloc, info.drops) == (0, 0)


@async_test
async def test_peek_trunc_and_dontwait() -> None:
    real = real_udp()
    real_bind(real, sockaddr("127.0.0.1", 0))
    real.sendto(b"abcdef", real.getsockname())
    real_peek = real.recvmsg(3, 0, MSG_PEEK)
    real_read = real.recvmsg(6, 0, MSG_DONTWAIT)
    real_empty = real_errno(lambda: real.recvmsg(6, 0, MSG_DONTWAIT))
    real.close()
    assert (real_peek[0], real_peek[2]) == (b"abc", MSG_TRUNC)
    assert (real_read[0], real_read[2]) == (b"abcdef", 0)
    assert real_empty == errno.EAGAIN
    async with UdpHarness() as h:
        sk = await h.sock.create()
        await h.sock.bind(sk, "127.0.0.1", 9000)
        await h.deliver(delivered_skb(PEER, LO, datagram(9000, b"abcdef")))
        await h.queued(sk, 1)
        peek = (await h.sock.recvmsg(sk, 3, MSG_PEEK | MSG_DONTWAIT)).recvmsg
        assert (peek.data, peek.msg_flags, peek.ulen) == (b"abc", real_peek[2], 6)
        assert await h.counters() == udp_mib()  # a peek is not a delivery
        assert len(h.layer.socks[sk].receive_queue) == 1
        read = (await h.sock.recvmsg(sk, 6)).recvmsg
        assert (read.data, read.msg_flags) == (b"abcdef", real_read[2])
        assert (await h.sock.recvmsg(sk, 6)).errno == real_empty
        assert await h.counters() == udp_mib(InDatagrams=1)


@async_test
async def test_blocking_recvmsg_timeout_cancel_and_release() -> None:
    async with UdpHarness() as h:
        servicer = h.service.servicer
        sk = await h.sock.create()
        await h.sock.bind(sk, "127.0.0.1", 9000)
        # A blocking call is answered when a datagram arrives.
        waiting = h.sock.start(sk, recvmsg=udp_pb2.RecvmsgOp(len=100, timeout_ns=-1))
        await eventually(lambda: waiting in servicer._pending, "the recvmsg to wait")
        assert not h.sock.has_reply(waiting)
        await h.deliver(delivered_skb(PEER, LO, datagram(9000, b"late")))
        r = await h.sock.reply(waiting)
        assert (r.errno, r.recvmsg.data) == (0, b"late")
        # A timeout that passes is EAGAIN (sock_rcvtimeo).
        r = await h.sock.recvmsg(sk, 100, flags=0, timeout_ns=1_000_000)
        assert r.errno == errno.EAGAIN
        # CancelOp abandons a pending call: EINTR for it, and the next datagram is
        # still there for the next reader.
        waiting = h.sock.start(sk, recvmsg=udp_pb2.RecvmsgOp(len=100, timeout_ns=-1))
        await eventually(lambda: waiting in servicer._pending, "the recvmsg to wait")
        r = await h.sock.call(cancel=udp_pb2.CancelOp(call_id=waiting))
        assert r.errno == 0
        assert (await h.sock.reply(waiting)).errno == errno.EINTR
        assert not servicer._pending
        await h.deliver(delivered_skb(PEER, LO, datagram(9000, b"kept")))
        await h.queued(sk, 1)
        assert (await h.sock.recvmsg(sk, 100)).recvmsg.data == b"kept"
        # Release wakes a waiter with EBADF; later calls on the sk are EBADF too.
        waiting = h.sock.start(sk, recvmsg=udp_pb2.RecvmsgOp(len=100, timeout_ns=-1))
        await eventually(lambda: waiting in servicer._pending, "the recvmsg to wait")
        assert (await h.sock.call(sk, release=udp_pb2.ReleaseOp())).errno == 0
        assert (await h.sock.reply(waiting)).errno == errno.EBADF
        assert (await h.sock.recvmsg(sk)).errno == errno.EBADF
        assert await h.sock.bind(sk, "127.0.0.1", 9000) == errno.EBADF
        assert h.layer.socks == {} and len(h.layer.table) == 0
        assert await h.counters() == udp_mib(InDatagrams=2)
        assert h.sock.duplicates == []


# The receive path's errors, step by step, against a kernel in a namespace of its own:
# each step sends the same UDP segments (raw, so a header can be wrong, from 127.0.0.2)
# and reads datagrams from a socket bound to 127.0.0.1:9000, then the Udp counters.
_RECEIVE_SCRIPT = """
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
raw.bind(("127.0.0.2", 0))
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(("127.0.0.1", 9000))
r.setblocking(False)
def recv():
    try:
        return r.recv(1000)[:4].decode()
    except BlockingIOError:
        return "EAGAIN"
for name, segments, read in STEPS:
    for s in segments:
        raw.sendto(bytes.fromhex(s), ("127.0.0.1", 0))
    got = [recv() for _ in range(read)]
    out[name] = [udp_mib(), got]
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
b.bind(("127.0.0.2", 5555))
b.sendto(b"all", ("127.255.255.255", 9000))
out["broadcast"] = [udp_mib(), []]
"""

BAD = 0x1234
LONG = 100  # with its header above CHECKSUM_BREAK (76): verified only by udp_recvmsg
# (name, segments sent, datagrams read after, Udp counters after, what the reads got)
STEPS: list[tuple[str, list[bytes], int, dict[str, int], list[str]]] = [
    ("no socket", [datagram(9999, b"x")], 0, udp_mib(NoPorts=1), []),
    (
        "no socket, bad checksum",
        [datagram(9999, b"x", check=BAD)],
        0,
        udp_mib(NoPorts=1, InErrors=1, InCsumErrors=1),
        [],
    ),
    (
        "ulen beyond the skb",
        [datagram(9999, b"x", length=100)],
        0,
        udp_mib(NoPorts=1, InErrors=2, InCsumErrors=1),
        [],
    ),
    (
        "ulen below the header",
        [datagram(9999, b"x", length=7)],
        0,
        udp_mib(NoPorts=1, InErrors=3, InCsumErrors=1),
        [],
    ),
    ("shorter than a header", [b"abcd"], 0, udp_mib(NoPorts=1, InErrors=4, InCsumErrors=1), []),
    (
        "short, bad checksum, to the socket: dropped on receipt",
        [datagram(9000, b"x", check=BAD)],
        0,
        udp_mib(NoPorts=1, InErrors=5, InCsumErrors=2),
        [],
    ),
    (
        "long, bad checksum, to the socket: queued",
        [
            datagram(9000, b"B" * LONG, check=BAD),
            datagram(9000, b"good" + bytes(LONG)),
            datagram(9000, b"zero", check=0),
        ],
        0,
        udp_mib(NoPorts=1, InErrors=5, InCsumErrors=2),
        [],
    ),
    (
        "recvmsg drops it and returns the next",
        [],
        1,
        udp_mib(NoPorts=1, InErrors=6, InCsumErrors=3, InDatagrams=1),
        ["good"],
    ),
    (
        "a zero checksum is accepted",
        [],
        1,
        udp_mib(NoPorts=1, InErrors=6, InCsumErrors=3, InDatagrams=2),
        ["zero"],
    ),
    (
        "only a bad one queued: EAGAIN",
        [datagram(9000, b"B" * LONG, check=BAD)],
        1,
        udp_mib(NoPorts=1, InErrors=7, InCsumErrors=4, InDatagrams=2),
        ["EAGAIN"],
    ),
]
BROADCAST = udp_mib(NoPorts=1, InErrors=7, InCsumErrors=4, InDatagrams=2, IgnoredMulti=1)


@async_test
async def test_receive_errors_match_the_kernel() -> None:
    steps = [(name, [seg.hex() for seg in segs], read) for name, segs, read, _, _ in STEPS]
    real = real_in_netns(_RECEIVE_SCRIPT.replace("STEPS", repr(steps)))
    for name, _, _, mib, got in [*STEPS, ("broadcast", [], 0, BROADCAST, [])]:
        if real is None:
            break
        real_mib, real_got = real[name]
        # The broadcast is the namespace's one UDP send; raw sends are not counted.
        assert real_mib.pop("UdpOutDatagrams") == (name == "broadcast")
        assert (real_mib, real_got) == ({k: v for k, v in mib.items() if k != "UdpOutDatagrams"}, got), name

    async with UdpHarness() as h:
        sk = await h.sock.create()
        await h.sock.bind(sk, "127.0.0.1", 9000)
        for name, segs, read, mib, got in STEPS:
            for seg in segs:
                await h.deliver(delivered_skb(PEER, LO, seg))
            reads = []
            for _ in range(read):
                r = await h.sock.recvmsg(sk, 1000)
                reads.append("EAGAIN" if r.errno == errno.EAGAIN else r.recvmsg.data[:4].decode())
            assert (await h.counters(), reads) == (mib, got), name
        bcast = ip("127.255.255.255")
        seg = udp_segment(PEER, bcast, 5555, 9000, b"all")
        await h.deliver(delivered_skb(PEER, bcast, seg, rt_type=RTN_BROADCAST))
        assert await h.counters() == BROADCAST
        assert await h.drops() == {
            (reason(SkbDropReason.NO_SOCKET), "__udp4_lib_rcv"): 1,
            (reason(SkbDropReason.UDP_CSUM), "__udp4_lib_rcv"): 2,
            (reason(SkbDropReason.PKT_TOO_SMALL), "__udp4_lib_rcv"): 2,
            (reason(SkbDropReason.NOT_SPECIFIED), "__udp4_lib_rcv"): 1,
            (reason(SkbDropReason.UDP_CSUM), "udp_recvmsg"): 2,
            (reason(SkbDropReason.NOT_SPECIFIED), "__udp4_lib_mcast_deliver"): 1,
        }
        info = await h.socket_info(sk)
        assert (info.rmem_alloc, info.drops) == (0, 2)  # sk_drops counts the recvmsg drops


# What a 6.18 kernel says in a namespace of its own, for SO_RCVBUF 0 (its minimum,
# 2304): a 10-byte datagram over lo costs 832 bytes of truesize, a 4000-byte one 8448.
RCVBUF_6_18 = {"rcvbuf": 2304, "small": 832, "large": 8448}


@async_test
async def test_receive_buffer_matches_the_kernel() -> None:
    # Send 6 small datagrams and 2 large ones to sockets with the smallest SO_RCVBUF;
    # read sk_rmem_alloc (rx_queue) after the first and after all, and the drops.
    # Before 6.18 the kernel also took a datagram while rmem <= rcvbuf (one more here),
    # so only a 6.18 or later kernel is asked.
    major, minor = (int(v) for v in platform.release().split(".")[:2])
    real = (
        real_in_netns(
            """
def fill(size, n):
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind(("127.0.0.1", 0))
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(bytes(size), r.getsockname())
    one = rx_queue(r.getsockname()[1])[0]
    for _ in range(n - 1):
        s.sendto(bytes(size), r.getsockname())
    return [r.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), one, *rx_queue(r.getsockname()[1])]
out["small"] = fill(10, 6)
out["large"] = fill(4000, 2)
out["mib"] = udp_mib()
"""
        )
        if (major, minor) >= (6, 18)
        else None
    )
    rcvbuf, small, large = RCVBUF_6_18["rcvbuf"], RCVBUF_6_18["small"], RCVBUF_6_18["large"]
    if real is not None:
        rcvbuf, small, _, _ = real["small"]
        _, large, _, _ = real["large"]
    # 6.18's __udp_enqueue_schedule_skb: past sk_rcvbuf, only an empty queue takes one.
    assert small < rcvbuf < large
    kept = rcvbuf // small
    # [SO_RCVBUF, rmem after one, rmem after all, drops]
    fills = {"small": [rcvbuf, small, kept * small, 6 - kept], "large": [rcvbuf, large, large, 1]}
    dropped = 6 - kept + 1
    if real is not None:
        assert real == {**fills, "mib": udp_mib(OutDatagrams=8, InErrors=dropped, RcvbufErrors=dropped)}

    async with UdpHarness() as h:
        for size, n, (_, truesize, rmem, drops) in ((10, 6, fills["small"]), (4000, 2, fills["large"])):
            sk = await h.sock.create()
            await h.sock.bind(sk, "127.0.0.1", 0)
            port = (await h.sock.getname(sk))[2]
            h.layer.socks[sk].rcvbuf = rcvbuf
            await h.deliver(delivered_skb(PEER, LO, datagram(port, bytes(size)), truesize=truesize))
            assert (await h.socket_info(sk)).rmem_alloc == truesize
            seg = datagram(port, bytes(size))
            await h.deliver(*[delivered_skb(PEER, LO, seg, truesize=truesize) for _ in range(n - 1)])
            info = await h.socket_info(sk)
            assert (info.rcvbuf, info.rmem_alloc, info.drops) == (rcvbuf, rmem, drops)
        assert await h.counters() == udp_mib(InErrors=dropped, RcvbufErrors=dropped)
        assert await h.drops() == {(reason(SkbDropReason.SOCKET_RCVBUFF), "__udp_queue_rcv_skb"): dropped}
        # Reading frees the charge: the next datagram fits again.
        r = await h.sock.recvmsg(sk)
        assert r.errno == 0 and len(r.recvmsg.data) == 4000
        await h.deliver(delivered_skb(PEER, LO, datagram(port, b"again"), truesize=large))
        await h.queued(sk, 1)


@async_test
async def test_zero_checksum_is_accepted() -> None:
    async with UdpHarness() as h:
        sk = await h.sock.create()
        await h.sock.bind(sk, "127.0.0.1", 9000)
        await h.deliver(delivered_skb(PEER, LO, datagram(9000, b"x" * LONG, check=0)))
        await h.queued(sk, 1)
        r = await h.sock.recvmsg(sk)
        assert (r.errno, r.recvmsg.data) == (0, b"x" * LONG)
        assert await h.counters() == udp_mib(InDatagrams=1)


# The stream itself.


@async_test
async def test_call_without_an_operation_fails_the_stream() -> None:
    async with UdpHarness() as h:
        h.sock.send(udp_pb2.ProtoCall(id=7, sk=1))
        err = await h.sock.failure()
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == "call 7: no operation"
        # The service takes a new socket layer afterwards.
        sock = h.reattach()
        assert await sock.create() >= 1


@async_test
async def test_unknown_sk_is_ebadf() -> None:
    async with UdpHarness() as h:
        for op in (
            {"bind": udp_pb2.BindOp(addr=LO, port=9000)},
            {"sendmsg": udp_pb2.SendmsgOp(data=b"x", name=sockaddr("127.0.0.1", 9))},
            {"recvmsg": udp_pb2.RecvmsgOp(len=1)},
            {"getname": udp_pb2.GetnameOp()},
            {"release": udp_pb2.ReleaseOp()},
        ):
            assert (await h.sock.call(42, **op)).errno == errno.EBADF, op
        assert (await h.sock.call(create=udp_pb2.CreateOp(protocol=6))).errno == errno.EPROTONOSUPPORT


@async_test
async def test_a_new_stream_gets_no_replies_owed_to_the_old_one() -> None:
    async with UdpHarness() as h:
        servicer = h.service.servicer
        sk = await h.sock.create()
        await h.sock.bind(sk, "127.0.0.1", 9000)
        waiting = h.sock.start(sk, recvmsg=udp_pb2.RecvmsgOp(len=100, timeout_ns=-1))
        await eventually(lambda: waiting in servicer._pending, "the recvmsg to wait")
        await h.sock.close()
        await eventually(lambda: not servicer.gate.busy and not servicer._pending, "the stream to end")
        # The old stream's sockets went with it: their owners' files are gone too.
        assert h.layer.socks == {} and len(h.layer.table) == 0
        # The new socket layer numbers its calls from 1 again: the old stream's
        # abandoned recvmsg (its EINTR) must not answer this stream's call of that id.
        sock = h.reattach()
        assert waiting == 3
        for _ in range(2):
            sock.next_id()
        r = await sock.call(create=udp_pb2.CreateOp(protocol=17))
        assert r.id == waiting and r.errno == 0 and r.WhichOneof("result") == "create"
        assert sock.duplicates == []


@async_test
async def test_a_woken_reader_that_is_cancelled_passes_the_wakeup_on() -> None:
    # Two readers block on one socket; a datagram wakes the first (an exclusive
    # wake-up), which is cancelled before it runs. The second must get the datagram.
    async with UdpHarness() as h:
        sk = await h.sock.create()
        await h.sock.bind(sk, "127.0.0.1", 9000)
        s = h.layer.socks[sk]
        first = asyncio.create_task(h.layer.recvmsg(s, 100, 0, -1))
        second = asyncio.create_task(h.layer.recvmsg(s, 100, 0, -1))
        await eventually(lambda: len(s.waiters) == 2, "both readers to wait")
        h.layer.udp_rcv(SkBuff.from_proto(delivered_skb(PEER, LO, datagram(9000, b"once"))))
        first.cancel()
        r = await asyncio.wait_for(second, 5)
        assert r.data == b"once"
        assert first.cancelled()
