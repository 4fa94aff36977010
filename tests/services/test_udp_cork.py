"""Corking (MSG_MORE and UDP_CORK) in the UDP service for real (UdpService on a grpc.aio
server), the IP service faked (FakeIp), the test playing the socket layer.

udp_sendmsg() keeps a corked datagram on the socket (up->pending, inet->cork) and
pushes it as one datagram (udp_push_pending_frames) on the first send that is neither
MSG_MORE nor under UDP_CORK, or when UDP_CORK is cleared. What reaches IP is checked
byte for byte. Most sends here go from 127.0.0.1:9000 to 127.0.0.1:9001; what each
test expects was checked on 6.18 over loopback, some tests asking this machine's kernel
again (tests/e2e/test_cork_kernel.py compares the same scenarios with the kernel
through the drop-in module).

The fake IP layer gets one stream of batches in order: a datagram a corked send must
not have sent would arrive before the push, so each test checks that the next skb IP
gets is the pushed one, and ends with an uncorked sentinel that must come next.
"""

from __future__ import annotations

import struct

from services.core import errno
from services.core.skbuff import SkBuff
from services.core.sockaddr import AF_INET6, AF_UNSPEC
from services.core.socket_uapi import SOL_IP
from services.ip.sockglue import IP_RECVERR, IP_TOS, IP_TTL, build_cmsgs
from stackemu.udp.v1 import udp_pb2
from tests.services.fakes_udp import (
    LO_IFINDEX,
    LOOPBACK,
    MSG_OOB,
    UdpHarness,
    async_test,
    ip,
    real_connect,
    real_getsockopt,
    real_in_netns,
    real_setsockopt,
    real_udp,
    rfc1071,
    sockaddr,
    udp_checksum,
    udp_mib,
    udp_segment,
)

LO = LOOPBACK
SOL_UDP = 17
SOL_UDPLITE = 136
UDP_CORK = 1
MSG_PROBE = 0x10
MSG_MORE = 0x8000
MSG_ERRQUEUE = 0x2000
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2
INT = struct.Struct("=i")
TO_9001 = sockaddr("127.0.0.1", 9001)
TO_9002 = sockaddr("127.0.0.1", 9002)


async def bound(h: UdpHarness, port: int = 9000) -> int:
    sk = await h.sock.create()
    assert await h.sock.bind(sk, "127.0.0.1", port) == 0
    return sk


async def sent(h: UdpHarness, sk: int, data: bytes, name: bytes = TO_9001, flags: int = 0) -> int:
    """sendmsg's result: the length sent, or -errno."""
    r = await h.sock.sendmsg(sk, data, name, flags)
    return -r.errno if r.errno else int(r.sendmsg.sent)


async def sentinel(h: UdpHarness) -> None:
    """An uncorked datagram from a socket of its own must be the next thing IP gets:
    nothing else was sent in between."""
    sk = await h.sock.create()
    assert await sent(h, sk, b"sentinel", TO_9002) == 8
    assert (await h.ip.next_sent()).payload()[8:] == b"sentinel"
    assert h.ip.sent.empty()


def segment(payload: bytes, dport: int = 9001, sport: int = 9000) -> bytes:
    return udp_segment(LO, LO, sport, dport, payload)


@async_test
async def test_msg_more_twice_then_a_plain_send_is_one_datagram() -> None:
    async with UdpHarness() as h:
        sk = await bound(h)
        assert [
            await sent(h, sk, b"ab", flags=MSG_MORE),
            await sent(h, sk, b"cd", flags=MSG_MORE),
            await sent(h, sk, b"ef"),
        ] == [2, 2, 2]
        skb = await h.ip.next_sent()
        # 9000 → 9001, length 14, the checksum over the pseudo-header and all six bytes.
        assert skb.payload() == bytes.fromhex("23282329000e9151") + b"abcdef"
        assert udp_checksum(LO, LO, skb.payload()) == 0x9151
        assert skb.transport_header == skb.data and skb.sk == sk
        assert skb.cork is not None and skb.dst is not None
        assert (skb.cork.saddr, skb.cork.daddr, skb.cork.protocol, skb.cork.inet_id) == (LO, LO, 17, None)
        assert (skb.dst.ifindex, skb.dst.nexthop) == (LO_IFINDEX, LO)
        assert await h.counters() == udp_mib(OutDatagrams=1)
        assert await h.drops() == {}
        await sentinel(h)


@async_test
async def test_udp_cork_on_three_sends_then_off_is_one_datagram() -> None:
    async with UdpHarness() as h:
        sk = await bound(h)
        assert await h.sock.getsockopt(sk, SOL_UDP, UDP_CORK) == (0, INT.pack(0))
        assert await h.sock.setsockopt(sk, SOL_UDP, UDP_CORK, INT.pack(1)) == 0
        assert await h.sock.getsockopt(sk, SOL_UDP, UDP_CORK) == (0, INT.pack(1))
        assert [await sent(h, sk, b"1"), await sent(h, sk, b"22"), await sent(h, sk, b"333")] == [1, 2, 3]
        assert await h.counters() == udp_mib()
        assert await h.sock.setsockopt(sk, SOL_UDP, UDP_CORK, INT.pack(0)) == 0
        assert (await h.ip.next_sent()).payload() == bytes.fromhex("23282329000e24e6") + b"122333"
        assert await h.sock.getsockopt(sk, SOL_UDP, UDP_CORK) == (0, INT.pack(0))
        assert await h.counters() == udp_mib(OutDatagrams=1)
        # Uncorking again with nothing pending sends nothing.
        assert await h.sock.setsockopt(sk, SOL_UDP, UDP_CORK, INT.pack(0)) == 0
        await sentinel(h)


@async_test
async def test_udp_cork_off_pushes_what_msg_more_started() -> None:
    async with UdpHarness() as h:
        sk = await bound(h)
        assert await sent(h, sk, b"zz", flags=MSG_MORE) == 2
        assert await h.sock.setsockopt(sk, SOL_UDP, UDP_CORK, INT.pack(0)) == 0
        assert (await h.ip.next_sent()).payload() == segment(b"zz")
        await sentinel(h)


@async_test
async def test_udp_cork_sockopt_matches_the_kernel() -> None:
    """udp_lib_setsockopt(): an int, any nonzero value corks; udp_lib_getsockopt():
    min(optlen, 4) bytes, EINVAL for a negative optlen; SOL_UDPLITE is the same on a
    UDP socket; other SOL_UDP names are ENOPROTOOPT here (not built yet)."""
    real = real_udp()
    checks = [
        (SOL_UDP, UDP_CORK, b"\x01"),
        (SOL_UDP, UDP_CORK, INT.pack(-5)),
        (SOL_UDPLITE, UDP_CORK, INT.pack(0)),
        (SOL_UDPLITE, UDP_CORK, INT.pack(7) + b"xx"),
    ]
    real_answers: list[int | tuple[int, bytes]] = []
    for level, name, val in checks:
        real_answers.append(real_setsockopt(real, level, name, val))
        real_answers.append(real_getsockopt(real, SOL_UDP, UDP_CORK, 4))
    real_reads = [real_getsockopt(real, SOL_UDP, UDP_CORK, n) for n in (-1, 0, 1, 8)]
    real.close()
    assert real_answers == [
        errno.EINVAL,
        (0, INT.pack(0)),
        0,
        (0, INT.pack(1)),
        0,
        (0, INT.pack(0)),
        0,
        (0, INT.pack(1)),
    ]
    assert real_reads == [(errno.EINVAL, b""), (0, b""), (0, b"\x01"), (0, INT.pack(1))]
    async with UdpHarness() as h:
        sk = await h.sock.create()
        answers: list[int | tuple[int, bytes]] = []
        for level, name, val in checks:
            answers.append(await h.sock.setsockopt(sk, level, name, val))
            answers.append(await h.sock.getsockopt(sk, SOL_UDP, UDP_CORK, 4))
        assert answers == real_answers
        assert [await h.sock.getsockopt(sk, SOL_UDP, UDP_CORK, n) for n in (-1, 0, 1, 8)] == real_reads


@async_test
async def test_emsgsize_across_appends_flushes_the_pending_datagram() -> None:
    """__ip_append_data(): cork->length + length may not pass 0xFFFF less the IP header
    (65515 with the UDP header); the append that would is EMSGSIZE and
    udp_flush_pending_frames() throws all of it away."""
    async with UdpHarness() as h:
        sk = await bound(h)
        assert await sent(h, sk, bytes(60000), flags=MSG_MORE) == 60000
        assert await sent(h, sk, bytes(5508), flags=MSG_MORE) == -errno.EMSGSIZE
        assert await sent(h, sk, b"x") == 1
        assert (await h.ip.next_sent()).payload() == segment(b"x")
        # 60008 + 5507 = 65515 fits.
        assert await sent(h, sk, bytes(60000), flags=MSG_MORE) == 60000
        assert await sent(h, sk, bytes(5507)) == 5507
        skb = await h.ip.next_sent()
        assert skb.len == 65515 and skb.payload() == segment(bytes(65507))
        assert await h.counters() == udp_mib(OutDatagrams=2)
        await sentinel(h)


@async_test
async def test_errors_before_the_append_keep_the_pending_datagram() -> None:
    """udp_sendmsg()'s own len > 0xFFFF and MSG_OOB checks come before "if (up->pending)
    goto do_append_data": they fail the call and leave what is pending alone."""
    async with UdpHarness() as h:
        sk = await bound(h)
        assert await sent(h, sk, b"ab", flags=MSG_MORE) == 2
        assert await sent(h, sk, bytes(0x10000), flags=MSG_MORE) == -errno.EMSGSIZE
        assert await sent(h, sk, b"cd", flags=MSG_MORE | MSG_OOB) == -errno.EOPNOTSUPP
        assert await sent(h, sk, b"ef") == 2
        assert (await h.ip.next_sent()).payload() == segment(b"abef")
        await sentinel(h)


@async_test
async def test_emsgsize_on_an_append_is_a_local_error_for_ip_recverr() -> None:
    """ip_local_error() from __ip_append_data: the cork's flow destination, inet_dport
    (0 unconnected), ee_info the MTU less the options (65535 on lo)."""
    async with UdpHarness() as h:
        sk = await bound(h)
        assert await h.sock.setsockopt(sk, SOL_IP, IP_RECVERR, INT.pack(1)) == 0
        assert await sent(h, sk, bytes(60000), flags=MSG_MORE) == 60000
        assert await sent(h, sk, bytes(6000), TO_9002, flags=MSG_MORE) == -errno.EMSGSIZE
        r = await h.sock.recvmsg(sk, 100, MSG_ERRQUEUE, controllen=1024)
        ee = struct.pack("=IBBBBII", errno.EMSGSIZE, 1, 0, 0, 0, 65535, 0)
        assert r.errno == 0
        assert r.recvmsg.control == struct.pack("=Qii", 48, SOL_IP, IP_RECVERR) + ee + bytes(16)
        assert (r.recvmsg.saddr, r.recvmsg.sport, r.recvmsg.data) == (LO, 0, b"")
        await sentinel(h)


@async_test
async def test_a_corked_send_to_another_address_appends_to_the_first() -> None:
    """With data pending, udp_sendmsg() goes to do_append_data before it looks at
    msg_name or the control messages: another port, port 0, an AF_INET6 or short name,
    a bad cmsg, all append to the datagram for 9001."""
    async with UdpHarness() as h:
        sk = await bound(h)
        bad_cmsg = build_cmsgs([(SOL_IP, 99, INT.pack(1))])
        ttl_cmsg = build_cmsgs([(SOL_IP, IP_TTL, INT.pack(9))])
        results = [
            await sent(h, sk, b"a", flags=MSG_MORE),
            await sent(h, sk, b"b", TO_9002, flags=MSG_MORE),
            await sent(h, sk, b"c", sockaddr("127.0.0.1", 0), flags=MSG_MORE),
            await sent(h, sk, b"d", sockaddr("127.0.0.1", 9002, AF_INET6), flags=MSG_MORE),
            await sent(h, sk, b"e", TO_9002[:8], flags=MSG_MORE),
        ]
        for data, control in ((b"f", bad_cmsg), (b"g", ttl_cmsg)):
            r = await h.sock.sendmsg(sk, data, b"", MSG_MORE, control)
            results.append(r.errno or r.sendmsg.sent)
        results.append(await sent(h, sk, b"h", TO_9002))
        assert results == [1] * 8
        skb = await h.ip.next_sent()
        assert skb.payload() == segment(b"abcdefgh", dport=9001)
        # The TTL cmsg on an append is not looked at: the socket's (0: the route's).
        assert skb.cork is not None and skb.cork.ttl == 0
        await sentinel(h)


@async_test
async def test_zero_length_sends() -> None:
    async with UdpHarness() as h:
        sk = await bound(h)
        # The first append is the UDP header alone: the datagram is pending, and a
        # plain empty send pushes it.
        assert [await sent(h, sk, b"", flags=MSG_MORE), await sent(h, sk, b"")] == [0, 0]
        assert (await h.ip.next_sent()).payload() == bytes.fromhex("232823290008bb8a")
        assert await h.sock.setsockopt(sk, SOL_UDP, UDP_CORK, INT.pack(1)) == 0
        assert [await sent(h, sk, b""), await sent(h, sk, b"")] == [0, 0]
        assert await h.sock.setsockopt(sk, SOL_UDP, UDP_CORK, INT.pack(0)) == 0
        assert (await h.ip.next_sent()).payload() == segment(b"")
        assert await h.counters() == udp_mib(OutDatagrams=2)
        await sentinel(h)


@async_test
async def test_tos_is_the_corks_ttl_and_df_are_read_at_push_time() -> None:
    """6.18: ipcm_init_sk() takes IP_TOS into the ipcm_cookie, so ip_setup_cork() keeps
    the TOS of the first send; cork->ttl is 0 without a cmsg and __ip_make_skb() reads
    IP_TTL (and IP_MTU_DISCOVER for DF) when the datagram is pushed. Cmsgs on the first
    send are the cork's."""
    async with UdpHarness() as h:
        sk = await bound(h)
        for opt, val in ((IP_TOS, 0x10), (IP_TTL, 33)):
            assert await h.sock.setsockopt(sk, SOL_IP, opt, INT.pack(val)) == 0
        assert await sent(h, sk, b"t1", flags=MSG_MORE) == 2
        for opt, val in ((IP_TOS, 0x08), (IP_TTL, 44), (IP_MTU_DISCOVER, IP_PMTUDISC_DO)):
            assert await h.sock.setsockopt(sk, SOL_IP, opt, INT.pack(val)) == 0
        assert await sent(h, sk, b"t2") == 2
        cork = (await h.ip.next_sent()).cork
        assert cork is not None and (cork.tos, cork.ttl, cork.pmtudisc) == (0x10, 44, IP_PMTUDISC_DO)

        cmsgs = build_cmsgs([(SOL_IP, IP_TTL, INT.pack(9)), (SOL_IP, IP_TOS, b"\x04")])
        r = await h.sock.sendmsg(sk, b"c1", TO_9001, MSG_MORE, cmsgs)
        assert (r.errno, r.sendmsg.sent) == (0, 2)
        assert await h.sock.setsockopt(sk, SOL_IP, IP_TTL, INT.pack(55)) == 0
        assert await sent(h, sk, b"c2") == 2
        cork = (await h.ip.next_sent()).cork
        assert cork is not None and (cork.tos, cork.ttl) == (0x04, 9)
        await sentinel(h)


@async_test
async def test_msg_probe() -> None:
    """ip_make_skb() and ip_append_data() return at once for MSG_PROBE: an uncorked probe
    sends nothing (not even the size is checked) and returns the length; on a socket
    with data pending, a probe that is not corked still pushes it; a corked first probe
    leaves nothing pending."""
    async with UdpHarness() as h:
        sk = await bound(h)
        assert await sent(h, sk, b"pp", flags=MSG_PROBE) == 2
        assert await sent(h, sk, bytes(65508), flags=MSG_PROBE) == 65508
        assert await sent(h, sk, b"ab", flags=MSG_MORE) == 2
        assert await sent(h, sk, b"cd", flags=MSG_PROBE) == 2
        assert (await h.ip.next_sent()).payload() == segment(b"ab")
        assert await sent(h, sk, b"ab", flags=MSG_MORE | MSG_PROBE) == 2
        assert await sent(h, sk, b"cd") == 2
        assert (await h.ip.next_sent()).payload() == segment(b"cd")
        assert await h.counters() == udp_mib(OutDatagrams=2)
        await sentinel(h)


@async_test
async def test_connect_redirects_the_pending_datagram_and_disconnect_keeps_it() -> None:
    """__ip4_datagram_connect() looks its route up in inet->cork.fl, the corked flow:
    the pending datagram goes where the socket is now connected. __udp_disconnect()
    leaves the flow alone, but an autobound port is given up, and the datagram is then
    pushed with inet_sport 0."""
    # The same on this machine's kernel (a disconnect is a connect to AF_UNSPEC): what
    # each receiver got, from the corking socket's port or from port 0.
    unspec = sockaddr("0.0.0.0", 0, AF_UNSPEC)
    r1, r2 = real_udp(), real_udp()
    for r in (r1, r2):
        r.bind(("127.0.0.1", 0))
        r.settimeout(5)
    # A port named in bind(), so that the disconnect keeps it (SOCK_BINDPORT_LOCK).
    s = real_udp()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    s = real_udp()
    s.bind(("127.0.0.1", port))
    s.sendto(b"e1", MSG_MORE, r1.getsockname())
    s.connect(r2.getsockname())
    assert real_setsockopt(s, SOL_UDP, UDP_CORK, INT.pack(0)) == 0
    s.send(b"d1", MSG_MORE)
    assert real_connect(s, unspec) == 0
    s.sendto(b"d2", r1.getsockname())
    a = real_udp()
    a.connect(r1.getsockname())
    a.send(b"u1", MSG_MORE)
    assert real_connect(a, unspec) == 0
    assert real_setsockopt(a, SOL_UDP, UDP_CORK, INT.pack(0)) == 0
    real = [(d, addr[1] == port) for d, addr in (r2.recvfrom(100), r2.recvfrom(100), r1.recvfrom(100))]
    assert real == [(b"e1", True), (b"d1d2", True), (b"u1", False)]
    assert r1.getsockname()[1] and a.getsockname() == ("0.0.0.0", 0)
    for x in (r1, r2, s, a):
        x.close()
    async with UdpHarness() as h:
        sk = await bound(h)
        assert await sent(h, sk, b"e1", flags=MSG_MORE) == 2
        assert await h.sock.connect(sk, TO_9002) == 0
        assert await h.sock.setsockopt(sk, SOL_UDP, UDP_CORK, INT.pack(0)) == 0
        skb = await h.ip.next_sent()
        assert skb.payload() == segment(b"e1", dport=9002)
        # A connected socket's datagram takes the socket's IP ID, at push time.
        assert skb.cork is not None and skb.cork.inet_id == h.layer.socks[sk].inet_id

        assert await sent(h, sk, b"d1", b"", MSG_MORE) == 2
        assert await h.sock.disconnect(sk) == 0
        assert await sent(h, sk, b"d2", TO_9001) == 2
        skb = await h.ip.next_sent()
        assert skb.payload() == segment(b"d1d2", dport=9002)
        assert skb.cork is not None and skb.cork.inet_id is None

        auto = await h.sock.create()
        assert await h.sock.connect(auto, TO_9001) == 0
        assert await sent(h, auto, b"u1", b"", MSG_MORE) == 2
        assert await h.sock.disconnect(auto) == 0
        assert await h.sock.getname(auto) == (0, 0, 0)
        assert await h.sock.setsockopt(auto, SOL_UDP, UDP_CORK, INT.pack(0)) == 0
        assert (await h.ip.next_sent()).payload() == segment(b"u1", sport=0)
        await sentinel(h)


@async_test
async def test_close_throws_the_pending_datagram_away() -> None:
    async with UdpHarness() as h:
        sk = await bound(h)
        assert await sent(h, sk, b"cl", flags=MSG_MORE) == 2
        r = await h.sock.call(sk, release=udp_pb2.ReleaseOp())
        assert r.errno == 0
        await sentinel(h)
        assert await h.counters() == udp_mib(OutDatagrams=1)


@async_test
async def test_a_failed_first_corked_send_leaves_nothing_pending() -> None:
    """The route, and sock_alloc_send_skb()'s sock_error() on the first append, fail the
    send before anything is pending; later appends allocate no skb of their own, so an
    error ICMP left meanwhile waits for the next uncorked send or recv."""
    async with UdpHarness() as h:
        sk = await bound(h)
        s = h.layer.socks[sk]
        assert await sent(h, sk, b"x", sockaddr("10.255.255.254", 9), MSG_MORE) == -errno.ENETUNREACH
        s.sk_err = errno.ECONNREFUSED
        assert await sent(h, sk, b"y", flags=MSG_MORE) == -errno.ECONNREFUSED
        assert s.pending is None
        assert await sent(h, sk, b"ab", flags=MSG_MORE) == 2
        s.sk_err = errno.ECONNREFUSED
        assert await sent(h, sk, b"cd") == 2
        assert (await h.ip.next_sent()).payload() == segment(b"abcd")
        assert s.sk_err == errno.ECONNREFUSED
        await sentinel(h)


@async_test
async def test_the_pushed_datagram_is_handed_to_ip_like_an_uncorked_one() -> None:
    """udp_push_pending_frames() → udp_send_skb() → ip_send_skb(): one skb, the UDP
    header at data, the cork and the route, as the fast path's; so IP's header and
    fragmentation apply to it unchanged."""
    async with UdpHarness() as h:
        sk = await bound(h)
        control = build_cmsgs([(SOL_IP, IP_TTL, INT.pack(7)), (1, 36, INT.pack(5))])  # SO_MARK 5
        r = await h.sock.sendmsg(sk, b"abcdef", TO_9001, 0, control)
        assert r.errno == 0
        plain = await h.ip.next_sent()
        r = await h.sock.sendmsg(sk, b"abc", TO_9001, MSG_MORE, control)
        assert r.errno == 0
        assert await sent(h, sk, b"def") == 3
        corked = await h.ip.next_sent()

        def shape(skb: SkBuff) -> tuple[object, ...]:
            return (
                skb.payload(),
                skb.data - skb.transport_header,
                skb.len,
                skb.data_len,
                skb.sk,
                skb.mark,
                skb.priority,
                skb.cork,
                skb.dst,
                skb.gso_size,
                skb.ip_summed,
            )

        assert shape(corked) == shape(plain)
        assert corked.mark == 5 and corked.cork is not None and corked.cork.ttl == 7
        assert await h.counters() == udp_mib(OutDatagrams=2)
        await sentinel(h)


@async_test
async def test_a_connected_corked_send() -> None:
    async with UdpHarness() as h:
        sk = await bound(h)
        assert await h.sock.connect(sk, TO_9001) == 0
        assert [await sent(h, sk, b"ab", b"", MSG_MORE), await sent(h, sk, b"cd", b"")] == [2, 2]
        skb = await h.ip.next_sent()
        assert skb.payload() == segment(b"abcd")
        assert skb.cork is not None and skb.cork.daddr == ip("127.0.0.1")
        await sentinel(h)


@async_test
async def test_a_corked_source_route_is_checksummed_for_the_final_destination() -> None:
    """udp_sendmsg() puts the final destination in the corked flow (fl4->daddr = daddr),
    where the fast path's flow has a source route's first hop: udp_send_skb()'s
    pseudo-header differs accordingly, as a capture on 6.18's lo shows. (The kernel's
    corked header carries the final destination too, ip_copy_addrs() from that flow;
    the IP layer here puts the first hop there for both.)"""
    lsrr = bytes([1, 131, 7, 4, 127, 0, 0, 2])  # NOP, LSRR via 127.0.0.2
    real = real_in_netns(
        f"""
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
cap.bind(("lo", 0))
cap.settimeout(2)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 5000))
s.setsockopt(0, 4, {lsrr!r})
s.sendto(b"plain", ("127.0.0.1", 6000))
s.sendto(b"cor", socket.MSG_MORE, ("127.0.0.1", 6000))
s.sendto(b"ked", ("127.0.0.1", 6000))
frames = []
while len(frames) < 2:
    f, a = cap.recvfrom(70000)
    if a[2] != socket.PACKET_OUTGOING:
        ihl = (f[14] & 15) * 4
        frames.append([f[30:34].hex(), f[14 + ihl :].hex()])
out["frames"] = frames
"""
    )
    plain_seg = udp_segment(LO, ip("127.0.0.2"), 5000, 6000, b"plain")
    corked_seg = udp_segment(LO, LO, 5000, 6000, b"corked")
    # lo offloads the fast path's checksum (CHECKSUM_PARTIAL, udp4_hwcsum): the capture
    # has only the pseudo-header's sum there, for the first hop 127.0.0.2. A corked
    # (MSG_MORE) datagram is CHECKSUM_NONE: the full checksum, for 127.0.0.1.
    pseudo = struct.pack("!IIBBH", LO, ip("127.0.0.2"), 0, 17, len(plain_seg))
    plain_partial = udp_segment(LO, ip("127.0.0.2"), 5000, 6000, b"plain", check=~rfc1071(pseudo) & 0xFFFF)
    assert plain_partial[6:8] == b"\xfe\x21"
    assert real in (None, {"frames": [["7f000002", plain_partial.hex()], ["7f000001", corked_seg.hex()]]})
    async with UdpHarness() as h:
        sk = await bound(h, 5000)
        assert await h.sock.setsockopt(sk, SOL_IP, 4, lsrr) == 0  # IP_OPTIONS
        to = sockaddr("127.0.0.1", 6000)
        assert await sent(h, sk, b"plain", to) == 5
        plain = await h.ip.next_sent()
        assert await sent(h, sk, b"cor", to, MSG_MORE) == 3
        assert await sent(h, sk, b"ked", to) == 3
        corked = await h.ip.next_sent()
        assert (plain.payload(), corked.payload()) == (plain_seg, corked_seg)
        # The final destination for the source route's last slot, either way.
        assert plain.cork is not None and corked.cork is not None
        assert plain.cork.daddr == corked.cork.daddr == LO
