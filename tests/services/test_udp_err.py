"""ICMP errors reaching UDP sockets (__udp4_lib_err: sk_err, the IP_RECVERR error queue,
MSG_ERRQUEUE), the local EMSGSIZE error (ip_local_error), and udp_rcv asking IP for a
port unreachable (icmp_send).

The UDP layer runs for real; IP is faked: in the UDP service tests (UdpHarness) the
test plays IP on the Attach stream, in the socket tests (SocketHarness) LoopbackUdp
loops datagrams back and answers a datagram no socket takes with the port unreachable
a loopback host sends (fakes_udp.icmp_error builds it as icmp_send does). Each scenario
is run on the machine's kernel too: over 127.0.0.1, or, where the test injects ICMP
messages with a raw socket (they change the route's path MTU), in a network namespace
of its own. What 6.18 answered is in the comments.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from typing import Any

from services.core import errno
from services.core.skbuff import SkBuff
from services.core.wire.ipv4 import IPPROTO_UDP, Ipv4Repr
from services.udp.layer import IcmpError
from stackemu.ip.v1 import ip_pb2
from stackemu.udp.v1 import udp_pb2
from tests.services.fakes_udp import (
    LOOPBACK,
    MSG_DONTWAIT,
    RTN_BROADCAST,
    SocketHarness,
    UdpHarness,
    async_test,
    delivered_skb,
    eventually,
    icmp_message,
    icmp_skb,
    ip,
    real_getsockopt,
    real_in_netns,
    real_recvmsg,
    real_setsockopt,
    real_udp,
    sockaddr,
    udp_mib,
    udp_segment,
)

SOL_IP = 0
SOL_SOCKET = 1
IP_TOS = 1
IP_OPTIONS = 4
IP_PKTINFO = 8
IP_MTU_DISCOVER = 10
IP_RECVERR = 11
IP_RECVTTL = 12
IP_RECVTOS = 13
IP_RECVERR_RFC4884 = 26
SO_ERROR = 4
MSG_ERRQUEUE = 0x2000
MSG_TRUNC = 0x20
MSG_CTRUNC = 0x8
PEER = ip("127.0.0.2")


def i32(v: int) -> bytes:
    return struct.pack("=i", v)


def closed_port() -> int:
    """A port nothing on this machine listens on (bound, then closed)."""
    s = real_udp()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def settle() -> None:
    """Let the real kernel's loopback deliver the ICMP error a send just caused."""
    time.sleep(0.02)


# Port unreachable, asked of IP.


@async_test
async def test_port_unreachable_is_asked_of_ip_once_per_unicast_datagram() -> None:
    """__udp4_lib_rcv(): a unicast datagram no socket takes (its checksum good) is NoPorts
    and one icmp_send(ICMP_DEST_UNREACH, ICMP_PORT_UNREACH); a broadcast one is
    IgnoredMulti and gets none, nor does one with a bad checksum. 6.18 in a namespace:
    IcmpOutDestUnreachs 1 after the three."""
    real = real_in_netns(
        """
def icmp_out():
    head, values = [line.split() for line in open("/proc/net/snmp") if line.startswith("Icmp:")]
    return dict(zip(head[1:], map(int, values[1:])))["OutDestUnreachs"]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.sendto(b"unicast", ("127.0.0.1", 9))
s.sendto(b"broadcast", ("127.255.255.255", 9))
raw_send(bytes.fromhex("d431000900091234") + b"x")  # a checksum that is wrong
out["unreachs"] = icmp_out()
out["mib"] = udp_mib()
"""
    )
    if real is not None:
        assert real["unreachs"] == 1
        assert real["mib"]["UdpNoPorts"] == 1 and real["mib"]["UdpIgnoredMulti"] == 1
    async with UdpHarness() as h:
        seg = udp_segment(PEER, LOOPBACK, 5555, 9, b"unicast")
        await h.deliver(delivered_skb(PEER, LOOPBACK, seg, tos=0x14))
        icmp = await h.ip.next_icmp()
        assert (icmp.type, icmp.code, icmp.info) == (3, 3, 0)
        skb = SkBuff.from_proto(icmp.skb)
        # The datagram as udp_rcv had it: its IP header at network_header, data at the
        # UDP header (icmp_send quotes from the network header).
        assert skb.head[skb.network_header : skb.tail] == bytes(
            delivered_skb(PEER, LOOPBACK, seg, tos=0x14).head[14:]
        )
        assert skb.data == skb.network_header + 20 and bytes(skb.linear()) == seg
        bcast = ip("127.255.255.255")
        await h.deliver(
            delivered_skb(
                PEER, bcast, udp_segment(PEER, bcast, 5555, 9, b"broadcast"), rt_type=RTN_BROADCAST
            ),
            delivered_skb(PEER, LOOPBACK, udp_segment(PEER, LOOPBACK, 5555, 9, b"x", check=0x1234)),
        )
        sk = await h.sock.create()
        assert await h.sock.bind(sk, "127.0.0.1", 9) == 0
        await h.deliver(delivered_skb(PEER, LOOPBACK, udp_segment(PEER, LOOPBACK, 5555, 9, b"taken")))
        # A datagram udp_rcv took with no ICMP between: the queue holds nothing more.
        await asyncio.sleep(0.05)
        assert h.ip.icmp_sent.empty()
        assert await h.counters() == udp_mib(NoPorts=1, IgnoredMulti=1, InCsumErrors=1, InErrors=1)


# sk_err and a connected socket.


def _connected_sequence_real(port: int) -> list[Any]:
    s = real_udp()
    s.connect(("127.0.0.1", port))
    out: list[Any] = []

    def step(f: Any) -> None:
        try:
            out.append(f())
        except OSError as err:
            out.append(err.errno)
        settle()

    step(lambda: s.send(b"hello"))
    step(lambda: s.send(b"x"))  # the error the first one caused, once
    step(lambda: s.send(b"y"))  # sent: it causes another
    step(lambda: s.recv(10, MSG_DONTWAIT))
    step(lambda: s.recv(10, MSG_DONTWAIT))
    step(lambda: s.getsockopt(SOL_SOCKET, SO_ERROR))
    step(lambda: s.send(b"z"))
    step(lambda: s.getsockopt(SOL_SOCKET, SO_ERROR))  # taken and cleared
    step(lambda: s.getsockopt(SOL_SOCKET, SO_ERROR))
    step(lambda: s.recvmsg(100, 1024, MSG_ERRQUEUE))  # no IP_RECVERR: nothing queued
    s.close()
    return out


@async_test
async def test_a_connected_socket_gets_econnrefused_once() -> None:
    """A port unreachable is a hard error: a connected socket without IP_RECVERR gets
    sk_err = ECONNREFUSED, returned once by the next send (sock_alloc_send_pskb's
    sock_error), recv (__skb_recv_udp's) or getsockopt(SO_ERROR), and nothing queued.
    6.18: [1, 111, 1, 111, EAGAIN, 0, 1, 111, 0, EAGAIN]."""
    port = closed_port()
    real = _connected_sequence_real(port)
    assert real[:7] == [5, errno.ECONNREFUSED, 1, errno.ECONNREFUSED, errno.EAGAIN, 0, 1]
    assert real[7:] == [errno.ECONNREFUSED, 0, errno.EAGAIN]
    async with SocketHarness() as h:
        pid = await h.process()
        fd = await h.udp_fd(pid)
        assert await h.connect(pid, fd, sockaddr("127.0.0.1", port)) == 0

        async def send(data: bytes) -> int:
            err, sent = await h.sendmsg(pid, fd, data)
            return err or sent

        async def recv() -> int:
            return (await h.recvmsg(pid, fd, 10, MSG_DONTWAIT)).errno

        async def so_error() -> int:
            err, val = await h.getsockopt(pid, fd, SOL_SOCKET, SO_ERROR)
            return err or struct.unpack("=i", val)[0]

        async def errqueue() -> int:
            return (await h.recvmsg(pid, fd, 100, MSG_ERRQUEUE, controllen=1024)).errno

        got = [await send(b"hello"), await send(b"x"), await send(b"y"), await recv(), await recv()]
        got += [await so_error(), await send(b"z"), await so_error(), await so_error(), await errqueue()]
        assert got == real


@async_test
async def test_an_unconnected_socket_ignores_it_without_ip_recverr() -> None:
    """Without IP_RECVERR only a hard error on a connected socket is reported (RFC 1122
    4.1.3.3 as __udp4_lib_err reads it): an unconnected sender hears nothing."""
    port = closed_port()
    real = real_udp()
    real.sendto(b"abc", ("127.0.0.1", port))
    settle()
    real_after = (real.getsockopt(SOL_SOCKET, SO_ERROR), real.sendto(b"q", ("127.0.0.1", port)))
    real.close()
    assert real_after == (0, 1)
    async with SocketHarness() as h:
        pid = await h.process()
        fd = await h.udp_fd(pid)
        assert (await h.sendmsg(pid, fd, b"abc", sockaddr("127.0.0.1", port)))[0] == 0
        err, val = await h.getsockopt(pid, fd, SOL_SOCKET, SO_ERROR)
        assert (err, struct.unpack("=i", val)[0]) == (0, real_after[0])
        assert await h.sendmsg(pid, fd, b"q", sockaddr("127.0.0.1", port)) == (0, real_after[1])


# The error queue.


def _errqueue_real(port: int) -> list[Any]:
    """The error queue scenario on the real kernel: every result as
    (errno, data, msg_control, msg_flags, msg_name) or an errno/value."""
    u = real_udp()
    u.setsockopt(SOL_IP, IP_RECVERR, 1)
    out: list[Any] = []

    def send(data: bytes) -> None:
        try:
            out.append(u.sendto(data, ("127.0.0.1", port)))
        except OSError as err:
            out.append(err.errno)
        settle()

    send(b"abcdef")
    send(b"12")  # the first one's error, as with a connected socket: sk_err is set
    send(b"345")
    out.append(real_recvmsg(u, 10, 0, MSG_DONTWAIT)[0])  # sk_err first
    out.append(real_recvmsg(u, 10, 0, MSG_DONTWAIT)[0])  # then the (empty) queue
    out.append(real_recvmsg(u, 100, 1024, MSG_ERRQUEUE))
    out.append(real_getsockopt(u, SOL_SOCKET, SO_ERROR, 4))  # the next error's errno
    for opt in (IP_PKTINFO, IP_RECVTTL, IP_RECVTOS):
        u.setsockopt(SOL_IP, opt, 1)
    out.append(real_recvmsg(u, 1, 1024, MSG_ERRQUEUE))  # cut to 1 byte: MSG_TRUNC
    out.append(real_getsockopt(u, SOL_SOCKET, SO_ERROR, 4))  # no ICMP error left: 0
    out.append(real_recvmsg(u, 100, 1024, MSG_ERRQUEUE)[0])
    send(b"abcdef")
    out.append(real_recvmsg(u, 100, 40, MSG_ERRQUEUE))  # room for IP_PKTINFO only
    out.append(real_getsockopt(u, SOL_SOCKET, SO_ERROR, 4))
    send(b"again")
    u.setsockopt(SOL_IP, IP_RECVERR, 0)  # purges the queue, sk_err stays
    out.append(real_recvmsg(u, 100, 1024, MSG_ERRQUEUE)[0])
    out.append(real_getsockopt(u, SOL_SOCKET, SO_ERROR, 4))
    u.close()
    return out


@async_test
async def test_error_queue_entries_match_the_kernel_byte_for_byte() -> None:
    """ip_icmp_error() + ip_recv_error(): the quoted payload as data, msg_name the
    destination and port the error is about, the IP cmsgs of the ICMP packet (from
    127.0.0.1, TTL 64, TOS 0xc0; ipi_spec_dst 0) when asked for, then IP_RECVERR:
    sock_extended_err {111, SO_EE_ORIGIN_ICMP, 3, 3, 0, 0, 0} and the offender's
    sockaddr_in; MSG_ERRQUEUE in msg_flags. sock_dequeue_err_skb() sets sk_err from
    the next ICMP error queued, or clears it when none is left (6.18)."""
    port = closed_port()
    real = _errqueue_real(port)
    ee = struct.pack("=IBBBBII", errno.ECONNREFUSED, 2, 3, 3, 0, 0, 0)
    offender = sockaddr("127.0.0.1", 0)
    assert real[:5] == [6, errno.ECONNREFUSED, 3, errno.ECONNREFUSED, errno.EAGAIN]
    assert real[5][1:] == (
        b"abcdef",
        struct.pack("=Qii", 48, SOL_IP, IP_RECVERR) + ee + offender,
        MSG_ERRQUEUE,
        sockaddr("127.0.0.1", port),
    )
    assert real[6] == (0, i32(errno.ECONNREFUSED))
    assert real[7][3] == MSG_ERRQUEUE | MSG_TRUNC and real[7][1] == b"3"
    assert real[11][3] == MSG_ERRQUEUE | MSG_CTRUNC
    assert real[-2:] == [errno.EAGAIN, (0, i32(errno.ECONNREFUSED))]
    async with SocketHarness() as h:
        pid = await h.process()
        fd = await h.udp_fd(pid)
        assert await h.setsockopt(pid, fd, SOL_IP, IP_RECVERR, i32(1)) == 0
        got: list[Any] = []

        async def send(data: bytes) -> None:
            err, sent = await h.sendmsg(pid, fd, data, sockaddr("127.0.0.1", port))
            got.append(err or sent)

        async def recv(bufsize: int, controllen: int, flags: int) -> tuple[int, bytes, bytes, int, bytes]:
            r = await h.recvmsg(pid, fd, bufsize, flags, controllen=controllen)
            if r.errno:
                return r.errno, b"", b"", 0, b""
            return 0, r.data, r.control, r.msg_flags, r.addr

        await send(b"abcdef")
        await send(b"12")
        await send(b"345")
        got.append((await recv(10, 0, MSG_DONTWAIT))[0])
        got.append((await recv(10, 0, MSG_DONTWAIT))[0])
        got.append(await recv(100, 1024, MSG_ERRQUEUE))
        got.append(await h.getsockopt(pid, fd, SOL_SOCKET, SO_ERROR))
        for opt in (IP_PKTINFO, IP_RECVTTL, IP_RECVTOS):
            assert await h.setsockopt(pid, fd, SOL_IP, opt, i32(1)) == 0
        got.append(await recv(1, 1024, MSG_ERRQUEUE))
        got.append(await h.getsockopt(pid, fd, SOL_SOCKET, SO_ERROR))
        got.append((await recv(100, 1024, MSG_ERRQUEUE))[0])
        await send(b"abcdef")
        got.append(await recv(100, 40, MSG_ERRQUEUE))
        got.append(await h.getsockopt(pid, fd, SOL_SOCKET, SO_ERROR))
        await send(b"again")
        assert await h.setsockopt(pid, fd, SOL_IP, IP_RECVERR, i32(0)) == 0
        got.append((await recv(100, 1024, MSG_ERRQUEUE))[0])
        got.append(await h.getsockopt(pid, fd, SOL_SOCKET, SO_ERROR))
        assert got == real
        s = next(iter(h.udp.layer.socks.values()))
        assert s.rmem_alloc == 0 and not s.error_queue


@async_test
async def test_a_pending_error_comes_before_queued_data() -> None:
    """__skb_recv_udp() checks sock_error() before the queue: a datagram waiting behind
    an error is read by the next call (6.18: ECONNREFUSED, then b"data")."""
    port = closed_port()
    u, peer = real_udp(), real_udp()
    u.setsockopt(SOL_IP, IP_RECVERR, 1)
    u.bind(("127.0.0.1", 0))
    u.sendto(b"abcdef", ("127.0.0.1", port))
    settle()
    peer.sendto(b"data", u.getsockname())
    settle()
    real = [real_recvmsg(u, 10, 0, MSG_DONTWAIT)[:2], real_recvmsg(u, 10, 0, MSG_DONTWAIT)[:2]]
    u.close()
    peer.close()
    assert real == [(errno.ECONNREFUSED, b""), (0, b"data")]
    async with SocketHarness() as h:
        pid = await h.process()
        fd, pfd = await h.udp_fd(pid), await h.udp_fd(pid)
        assert await h.setsockopt(pid, fd, SOL_IP, IP_RECVERR, i32(1)) == 0
        assert await h.bind(pid, fd, sockaddr("127.0.0.1", 7000)) == 0
        await h.sendmsg(pid, fd, b"abcdef", sockaddr("127.0.0.1", port))
        await h.sendmsg(pid, pfd, b"data", sockaddr("127.0.0.1", 7000))
        got = []
        for _ in range(2):
            r = await h.recvmsg(pid, fd, 10, MSG_DONTWAIT)
            got.append((r.errno, r.data))
        assert got == real


# The local EMSGSIZE error.


def _emsgsize_cases() -> list[tuple[str, int, bytes, bool, int]]:
    """(name, pmtudisc, IP_OPTIONS, connected, payload length)."""
    return [
        ("DO fits", 2, b"", False, 65507),
        ("DO too big", 2, b"", False, 65508),
        ("DO too big, connected", 2, b"", True, 65508),
        ("PROBE too big", 3, b"", False, 65509),
        ("WANT too big", 1, b"", False, 65508),
        ("DONT with 4 bytes of options", 0, b"\x01\x01\x01\x01", False, 65504),
        ("DONT with 4 bytes of options, fits", 0, b"\x01\x01\x01\x01", False, 65503),
        ("beyond 0xffff", 0, b"", False, 65536),
    ]


@async_test
async def test_local_emsgsize_matches_the_kernel() -> None:
    """__ip_append_data(): a socket that may not fragment (IP_PMTUDISC_DO, PROBE) is held
    to the MTU (lo's: 65535 for DO, the device's 65536 for PROBE), any other to
    IP_MAX_MTU, the IP header and options counted: EMSGSIZE, and with IP_RECVERR
    ip_local_error(): no data, msg_name the destination with inet_dport (0 unless
    connected), sock_extended_err {90, SO_EE_ORIGIN_LOCAL, 0, 0, 0, mtu - optlen, 0},
    a zero offender, no other cmsg. udp_sendmsg's own len > 0xFFFF check queues
    nothing (6.18)."""
    rx = real_udp()
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    real: dict[tuple[str, bool], Any] = {}
    for name, pmtudisc, options, connected, length in _emsgsize_cases():
        for recverr in (False, True):
            s = real_udp()
            s.setsockopt(SOL_IP, IP_MTU_DISCOVER, pmtudisc)
            s.setsockopt(SOL_IP, IP_RECVERR, int(recverr))
            s.setsockopt(SOL_IP, IP_RECVTTL, 1)
            if options:
                assert real_setsockopt(s, SOL_IP, IP_OPTIONS, options) == 0
            if connected:
                s.connect(("127.0.0.1", port))
            try:
                sent = s.sendto(bytes(length), ("127.0.0.1", port))
            except OSError as exc:
                sent = -(exc.errno or 0)
            real[name, recverr] = (sent, real_recvmsg(s, 100, 1024, MSG_ERRQUEUE))
            s.close()
            rx.settimeout(0)
            try:
                while True:
                    rx.recv(70000)
            except BlockingIOError:
                pass
    rx.close()

    def local(info: int, port: int) -> tuple[int, bytes, bytes, int, bytes]:
        ee = struct.pack("=IBBBBII", errno.EMSGSIZE, 1, 0, 0, 0, info, 0)
        control = struct.pack("=Qii", 48, SOL_IP, IP_RECVERR) + ee + bytes(16)
        return 0, b"", control, MSG_ERRQUEUE, sockaddr("127.0.0.1", port)

    assert real["DO too big", True] == (-errno.EMSGSIZE, local(65535, 0))
    assert real["DO too big, connected", True] == (-errno.EMSGSIZE, local(65535, port))
    assert real["PROBE too big", True] == (-errno.EMSGSIZE, local(65536, 0))
    assert real["DONT with 4 bytes of options", True] == (-errno.EMSGSIZE, local(65531, 0))
    assert real["DO too big", False] == (-errno.EMSGSIZE, (errno.EAGAIN, b"", b"", 0, b""))
    assert real["beyond 0xffff", True] == (-errno.EMSGSIZE, (errno.EAGAIN, b"", b"", 0, b""))
    assert real["DO fits", True][0] == 65507
    async with SocketHarness() as h:
        pid = await h.process()
        rfd = await h.udp_fd(pid)
        assert await h.bind(pid, rfd, sockaddr("127.0.0.1", port)) == 0
        for name, pmtudisc, options, connected, length in _emsgsize_cases():
            for recverr in (False, True):
                fd = await h.udp_fd(pid)
                await h.setsockopt(pid, fd, SOL_IP, IP_MTU_DISCOVER, i32(pmtudisc))
                await h.setsockopt(pid, fd, SOL_IP, IP_RECVERR, i32(int(recverr)))
                await h.setsockopt(pid, fd, SOL_IP, IP_RECVTTL, i32(1))
                if options:
                    assert await h.setsockopt(pid, fd, SOL_IP, IP_OPTIONS, options) == 0
                if connected:
                    assert await h.connect(pid, fd, sockaddr("127.0.0.1", port)) == 0
                err, sent = await h.sendmsg(pid, fd, bytes(length), sockaddr("127.0.0.1", port))
                r = await h.recvmsg(pid, fd, 100, MSG_ERRQUEUE, controllen=1024)
                q = (r.errno, b"", b"", 0, b"") if r.errno else (0, r.data, r.control, r.msg_flags, r.addr)
                assert (-err if err else sent, q) == real[name, recverr], (name, recverr)
                await h.close(pid, fd)
                while (await h.recvmsg(pid, rfd, 70000, MSG_DONTWAIT)).errno == 0:
                    pass


# ICMP errors of every kind, injected.

QUOTED_PAYLOAD = b"hello"
LPORT, RPORT = 40000, 9999


def _quoted() -> bytes:
    """The datagram an ICMP error quotes: 127.0.0.1:LPORT to 127.0.0.2:RPORT."""
    seg = udp_segment(LOOPBACK, PEER, LPORT, RPORT, QUOTED_PAYLOAD, check=0)
    head = bytearray(20 + len(seg))
    Ipv4Repr(src=LOOPBACK, dst=PEER, protocol=IPPROTO_UDP, payload_len=len(seg)).emit(head, 0)
    head[20:] = seg
    return bytes(head)


def _rfc4884_quoted(valid: bool) -> bytes:
    """The original datagram padded to 128 bytes, then an RFC 4884 extension structure
    (version 2, checksum) with one 8-byte object."""
    original = _quoted().ljust(128, b"\0")
    obj = struct.pack("!HBB", 8, 1, 1) + b"\xaa\xbb\xcc\xdd"
    ext = bytearray(struct.pack("!BBH", 0x20, 0, 0) + obj)
    csum = 0
    data = bytes(ext)
    for i in range(0, len(data), 2):
        csum += (data[i] << 8) | data[i + 1]
    csum = (csum & 0xFFFF) + (csum >> 16)
    ext[2:4] = struct.pack("!H", ~csum & 0xFFFF if valid else 0x1234)
    return original + bytes(ext)


# (name, type, code, info as IP hands it to udp_err, quoted bytes, RFC 4884 length words)
ICMP_CASES: list[tuple[str, int, int, int, bytes, int]] = [
    *[(f"unreach {code}", 3, code, 0, _quoted(), 0) for code in range(16) if code != 4],
    ("frag needed 1400", 3, 4, 1400, _quoted(), 0),
    ("time exceeded 0", 11, 0, 0, _quoted(), 0),
    ("parameter problem 5", 12, 0, 5, _quoted(), 0),
    # ipv4_sk_redirect(): a redirect is the route's business, the socket hears nothing.
    ("redirect", 5, 1, PEER, _quoted(), 0),
    ("rfc4884 valid", 11, 0, 0, _rfc4884_quoted(True), 32),
    ("rfc4884 bad checksum", 11, 0, 0, _rfc4884_quoted(False), 32),
]
# ICMP errors the IP layer does not hand to UDP at all (icmp_unreach: fragment
# reassembly time exceeded, unreachable codes past NR_ICMP_UNREACH; icmp_discard for a
# source quench): the kernel is asked, to show nothing reaches the socket.
IP_FILTERED: list[tuple[str, int, int, int, bytes, int]] = [
    ("time exceeded 1", 11, 1, 0, _quoted(), 0),
    ("unreach 16", 3, 16, 0, _quoted(), 0),
    ("source quench", 4, 0, 0, _quoted(), 0),
]
# The modes a socket hears an error in: connected without IP_RECVERR (hard errors only,
# sk_err alone); connected with IP_RECVERR, RFC 4884 and the cmsgs (every error is
# queued, sk_err set); unconnected with IP_RECVERR and IP_PMTUDISC_DONT (fragmentation
# needed is not an error then).
MODES = ("connected", "recverr", "dont")

_NETNS_ICMP = """
import struct
cases = json.loads(CASES)
for name, icmp_hex in cases:
    for mode in MODES:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", LPORT))
        if mode != "dont":
            s.connect(("127.0.0.2", RPORT))
        if mode != "connected":
            s.setsockopt(socket.SOL_IP, 11, 1)
        if mode == "recverr":
            for opt in (8, 12, 13, 26):
                s.setsockopt(socket.SOL_IP, opt, 1)
        if mode == "dont":
            s.setsockopt(socket.SOL_IP, 10, 0)
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        raw.setsockopt(socket.SOL_IP, socket.IP_TOS, 0xC0)
        raw.bind(("127.0.0.2", 0))
        raw.sendto(bytes.fromhex(icmp_hex), ("127.0.0.1", 0))
        raw.close()
        try:
            data, anc, flags, addr = s.recvmsg(100, 1024, socket.MSG_ERRQUEUE)
            entry = [data.hex(), [[l, t, d.hex()] for l, t, d in anc], flags, list(addr)]
        except OSError as err:
            entry = err.errno
        out[name + "/" + mode] = [entry, s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)]
        s.close()
"""


def _icmp_cases_real() -> dict[str, Any] | None:
    cases = [
        (name, icmp_message(t, c, info, quoted, words).hex())
        for name, t, c, info, quoted, words in ICMP_CASES + IP_FILTERED
    ]
    script = (
        f"CASES = {json.dumps(json.dumps(cases))}\nMODES = {MODES!r}\nLPORT, RPORT = {LPORT}, {RPORT}\n"
        + _NETNS_ICMP
    )
    return real_in_netns(script)


# What 6.18 does with each (errno, hard): icmp_err_convert[] for destination unreachable
# (fragmentation needed: EMSGSIZE, hard unless the socket never sets DF), EHOSTUNREACH
# soft for time exceeded, EPROTO hard for a parameter problem.
KERNEL_ERRNO = {
    **{
        f"unreach {code}": conv
        for code, conv in enumerate(
            [
                (errno.ENETUNREACH, False),
                (errno.EHOSTUNREACH, False),
                (errno.ENOPROTOOPT, True),
                (errno.ECONNREFUSED, True),
                (errno.EMSGSIZE, False),
                (errno.EOPNOTSUPP, False),
                (errno.ENETUNREACH, True),
                (errno.EHOSTDOWN, True),
                (errno.ENONET, True),
                (errno.ENETUNREACH, True),
                (errno.EHOSTUNREACH, True),
                (errno.ENETUNREACH, False),
                (errno.EHOSTUNREACH, False),
                (errno.EHOSTUNREACH, True),
                (errno.EHOSTUNREACH, True),
                (errno.EHOSTUNREACH, True),
            ]
        )
    },
    "frag needed 1400": (errno.EMSGSIZE, True),
    "time exceeded 0": (errno.EHOSTUNREACH, False),
    "time exceeded 1": (errno.EHOSTUNREACH, False),
    "parameter problem 5": (errno.EPROTO, True),
    "rfc4884 valid": (errno.EHOSTUNREACH, False),
    "rfc4884 bad checksum": (errno.EHOSTUNREACH, False),
    "redirect": (0, False),
}


def _ancdata(control: bytes) -> list[list[Any]]:
    out = []
    off = 0
    while off + 16 <= len(control):
        length, level, type_ = struct.unpack_from("=Qii", control, off)
        out.append([level, type_, control[off + 16 : off + length].hex()])
        off += (length + 7) & ~7
    return out


@async_test
async def test_icmp_errors_of_every_kind_match_the_kernel() -> None:
    """__udp4_lib_err() for each ICMP error the IP layer hands up, in each mode: what
    the error queue holds (ee_info the MTU or pointer, ee_data the RFC 4884 length with
    SO_EE_RFC4884_FLAG_INVALID for a bad extension checksum) and SO_ERROR afterwards.
    Compared with 6.18 in a namespace, where a raw socket sends the same ICMP messages
    from 127.0.0.2 with TOS 0xc0."""
    real = _icmp_cases_real()
    async with UdpHarness() as h:
        layer = h.layer
        got: dict[str, Any] = {}
        for name, t, c, info, quoted, words in ICMP_CASES:
            for mode in MODES:
                s = layer.create(17, 1, 3)
                await layer.bind(s, LOOPBACK, LPORT)
                if mode != "dont":
                    await layer.connect(s, sockaddr(PEER, RPORT))
                if mode != "connected":
                    await layer.setsockopt(s, SOL_IP, IP_RECVERR, i32(1))
                if mode == "recverr":
                    for opt in (IP_PKTINFO, IP_RECVTTL, IP_RECVTOS, IP_RECVERR_RFC4884):
                        await layer.setsockopt(s, SOL_IP, opt, i32(1))
                if mode == "dont":
                    await layer.setsockopt(s, SOL_IP, IP_MTU_DISCOVER, i32(0))
                msg = icmp_message(t, c, info, quoted, words)
                layer.udp_err(IcmpError(icmp_skb(PEER, LOOPBACK, msg, 0xC0), t, c, info))
                try:
                    r = await layer.udp_recvmsg(s, 100, MSG_ERRQUEUE, 0, 1024)
                    addr = [socket.inet_ntoa(r.saddr.to_bytes(4, "big")), r.sport]
                    entry: Any = [r.data.hex(), _ancdata(r.control), r.msg_flags, addr]
                except OSError as err:
                    entry = err.errno
                so_error = struct.unpack("=i", (await layer.getsockopt(s, SOL_SOCKET, SO_ERROR, 4))[0])[0]
                got[f"{name}/{mode}"] = [entry, so_error]
                layer.release(s)
        for name, *_ in ICMP_CASES:
            eno, hard = KERNEL_ERRNO[name]
            assert got[f"{name}/connected"] == [errno.EAGAIN, eno if hard else 0], name
            if not eno:
                assert got[f"{name}/recverr"] == got[f"{name}/dont"] == [errno.EAGAIN, 0]
                continue
            entry, so_error = got[f"{name}/recverr"]
            assert entry[0].startswith(QUOTED_PAYLOAD.hex()) and entry[2] & ~MSG_TRUNC == MSG_ERRQUEUE
            assert so_error == 0
            assert entry[1][-1][:2] == [SOL_IP, IP_RECVERR]
            ee = struct.unpack("=IBBBBII", bytes.fromhex(entry[1][-1][2])[:16])
            assert ee[:2] == (eno, 2), name
        assert got["frag needed 1400/dont"] == [errno.EAGAIN, 0]
        if real is not None:
            for name, *_ in IP_FILTERED:
                assert [real.pop(f"{name}/{mode}") for mode in MODES] == [[errno.EAGAIN, 0]] * 3, name
            assert got == real


# Waiting readers, accounting, no socket.


@async_test
async def test_a_blocked_reader_is_woken_by_the_error() -> None:
    """sk_error_report() wakes a reader waiting in __skb_wait_for_more_packets, which
    returns the error (its sock_error() check); MSG_ERRQUEUE never waits."""
    async with UdpHarness() as h:
        sk = await h.sock.create()
        assert await h.sock.bind(sk, "127.0.0.1", LPORT) == 0
        assert await h.sock.connect(sk, sockaddr(PEER, RPORT)) == 0
        waiting = h.sock.start(sk, recvmsg=udp_pb2.RecvmsgOp(len=100, flags=0, timeout_ns=-1))
        errq = await h.sock.recvmsg(sk, 100, MSG_ERRQUEUE, timeout_ns=-1)
        assert errq.errno == errno.EAGAIN
        await asyncio.sleep(0.02)
        assert not h.sock.has_reply(waiting)
        h.ip.deliver(_icmp_proto(icmp_message(3, 3, 0, _quoted())))
        assert (await h.sock.reply(waiting)).errno == errno.ECONNREFUSED


def _icmp_proto(msg: bytes, t: int = 3, c: int = 3, info: int = 0) -> ip_pb2.IcmpError:
    """An IcmpError as the IP service sends it on the Attach stream."""
    return ip_pb2.IcmpError(skb=icmp_skb(PEER, LOOPBACK, msg, 0xC0).to_proto(), type=t, code=c, info=info)


@async_test
async def test_the_error_queue_is_charged_to_the_receive_buffer() -> None:
    """sock_queue_err_skb(): an error skb is charged to sk_rmem_alloc as data is, and
    refused once that would reach sk_rcvbuf (sk_err is still set); reading or purging
    gives the memory back."""
    async with UdpHarness() as h:
        layer = h.layer
        s = layer.create(17, 1, 3)
        await layer.bind(s, LOOPBACK, LPORT)
        await layer.setsockopt(s, SOL_IP, IP_RECVERR, i32(1))
        err = IcmpError(icmp_skb(PEER, LOOPBACK, icmp_message(3, 3, 0, _quoted()), 0xC0), 3, 3, 0)
        fits = (s.rcvbuf - 1) // err.skb.truesize
        for _ in range(fits + 5):
            layer.udp_err(err)
        assert len(s.error_queue) == fits and s.rmem_alloc == fits * err.skb.truesize
        assert s.sk_err == errno.ECONNREFUSED
        await layer.recvmsg(s, 100, MSG_ERRQUEUE, 0)
        assert s.rmem_alloc == (fits - 1) * err.skb.truesize
        await layer.setsockopt(s, SOL_IP, IP_RECVERR, i32(0))
        assert s.rmem_alloc == 0 and not s.error_queue


@async_test
async def test_an_error_no_socket_takes_is_counted_for_icmp() -> None:
    """__udp4_lib_err() without a socket: ICMP_MIB_INERRORS (IcmpInErrors, which the
    IP layer reports), nothing else."""
    async with UdpHarness() as h:
        h.ip.deliver(_icmp_proto(icmp_message(3, 3, 0, _quoted())))
        await eventually(lambda: h.layer.mib.icmp.get("InErrors") == 1, "IcmpInErrors")
        assert await h.counters() == udp_mib()
        assert await h.drops() == {}
