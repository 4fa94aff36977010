"""SOL_IP socket options and the IP control messages of sendmsg/recvmsg on a UDP socket,
through the socket service for real (SocketServicer over SocketLayer) and an in-process
UDP layer looped back through a fake IP layer (LoopbackUdp).

Every table is asked of the machine's kernel too, with the same bytes (libc calls over
127.0.0.1, so optlen and msg_control are exactly what the test says), and the emulator
must answer the same: errno, the bytes getsockopt copies out, msg_control byte for byte.
What the kernel answered when these tests were written (6.18) is in the comments.
"""

from __future__ import annotations

import importlib
import socket
import struct

import pytest

from services.core import errno
from services.core.checksum import csum_partial
from services.ip.sockglue import (
    IP_CMSG_CHECKSUM,
    MsgControl,
    build_cmsgs,
    ip_cmsg_checksum,
    ip_cmsg_recv_offset,
    rt_tos2priority,
)
from tests.services.fakes_udp import (
    MSG_DONTWAIT,
    SocketHarness,
    async_test,
    real_getsockopt,
    real_recvmsg,
    real_sendmsg,
    real_setsockopt,
    real_udp,
    sockaddr,
)

SOL_IP = 0
SOL_SOCKET = 1
SOL_UDP = 17
IP_TOS = 1
IP_TTL = 2
IP_HDRINCL = 3
IP_OPTIONS = 4
IP_ROUTER_ALERT = 5
IP_RECVOPTS = 6
IP_RETOPTS = 7
IP_PKTINFO = 8
IP_PKTOPTIONS = 9
IP_MTU_DISCOVER = 10
IP_RECVERR = 11
IP_RECVTTL = 12
IP_RECVTOS = 13
IP_MTU = 14
IP_RECVORIGDSTADDR = 20
IP_NODEFRAG = 22
IP_RECVFRAGSIZE = 25
IP_RECVERR_RFC4884 = 26
IP_PROTOCOL = 52
MRT_INIT = 200
MRT_FLUSH = 212
SO_ERROR = 4
SO_PRIORITY = 12
SO_MARK = 36
SO_TIMESTAMPING = 37
SCM_TXTIME = 61
SCM_TS_OPT_ID = 81
UDP_SEGMENT = 103
NO_SUCH_OPTION = 9999


def i32(v: int) -> bytes:
    return struct.pack("=i", v)


def cmsg(level: int, type_: int, data: bytes, length: int | None = None) -> bytes:
    """One message with an arbitrary cmsg_len, padded to 8 bytes."""
    body = struct.pack("=Qii", 16 + len(data) if length is None else length, level, type_) + data
    return body + bytes(-len(body) % 8)


CMSG_FLAG_OPTIONS = [IP_PKTINFO, IP_RECVTTL, IP_RECVTOS, IP_RECVOPTS, IP_RETOPTS, IP_RECVORIGDSTADDR]
CMSG_FLAG_OPTIONS += [IP_RECVFRAGSIZE, IP_RECVERR]


def pktinfo(ifindex: int, spec_dst: str) -> bytes:
    return struct.pack("=i4s4s", ifindex, socket.inet_aton(spec_dst), bytes(4))


# (optname, optval): each applied to a fresh socket, then the option read back.
SETS: list[tuple[int, bytes]] = [
    # IP_TTL: optlen 0 is EINVAL; 1..3 bytes read one unsigned byte; -1 resets, 1..255.
    *[(IP_TTL, v) for v in (b"", b"\x00", b"\x05", b"\x07\x00", b"\x07\x00\x00", bytes(8))],
    *[(IP_TTL, i32(v)) for v in (-2, -1, 0, 1, 64, 255, 256)],
    # IP_TOS: a datagram socket takes the whole byte, ECN bits too (0x1ff gives 0xff).
    *[(IP_TOS, v) for v in (b"", b"\x10", b"\x10\x20")],
    *[(IP_TOS, i32(v)) for v in (0, 3, 0x1C, 0xFF, 0x1FF, -1)],
    # The cmsg flags: any non-zero value sets, zero (or optlen 0) clears.
    *[(opt, v) for opt in CMSG_FLAG_OPTIONS for v in (b"", b"\x01", i32(0), i32(1), i32(-5), i32(2))],
    # IP_MTU_DISCOVER: IP_PMTUDISC_DONT (0) .. IP_PMTUDISC_OMIT (5).
    *[(IP_MTU_DISCOVER, i32(v)) for v in (-1, 0, 1, 2, 3, 4, 5, 6)],
    (IP_MTU_DISCOVER, b"\x02"),
    (IP_MTU_DISCOVER, b""),
    *[(IP_RECVERR_RFC4884, v) for v in (i32(-1), i32(0), i32(1), i32(2), b"")],
    # Raw sockets' options, router alert (raw only: EINVAL), getsockopt-only ones,
    # the multicast router's (EOPNOTSUPP) and unknown ones.
    (IP_ROUTER_ALERT, i32(1)),
    (IP_ROUTER_ALERT, b""),
    (IP_HDRINCL, i32(1)),
    (IP_NODEFRAG, i32(1)),
    (IP_MTU, i32(1500)),
    (IP_PROTOCOL, i32(17)),
    (IP_PKTOPTIONS, i32(1)),
    (MRT_INIT, i32(1)),
    (MRT_FLUSH, i32(1)),
    (MRT_FLUSH + 1, i32(1)),
    (NO_SUCH_OPTION, b""),
]
# What 6.18 answered for SETS (the errno), spelled out so the comparison cannot pass
# because both sides are broken in the same way.
SETS_KERNEL = (
    [errno.EINVAL, errno.EINVAL, 0, 0, 0, errno.EINVAL]
    + [errno.EINVAL, 0, errno.EINVAL, 0, 0, 0, errno.EINVAL]
    + [0] * 3
    + [0] * 6
    + [0] * 6 * 8
    + [errno.EINVAL, 0, 0, 0, 0, 0, 0, errno.EINVAL, 0, 0]
    + [errno.EINVAL, 0, 0, errno.EINVAL, 0]
    + [errno.EINVAL, errno.EINVAL, errno.ENOPROTOOPT, errno.ENOPROTOOPT, errno.ENOPROTOOPT]
    + [errno.ENOPROTOOPT, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EOPNOTSUPP, errno.ENOPROTOOPT]
    + [errno.ENOPROTOOPT]
)


@async_test
async def test_setsockopt_errno_and_effect_match_the_kernel() -> None:
    real_results = []
    for optname, optval in SETS:
        real = real_udp()
        err = real_setsockopt(real, SOL_IP, optname, optval)
        real_results.append((err, real_getsockopt(real, SOL_IP, optname, 4)))
        real.close()
    assert [e for e, _ in real_results] == SETS_KERNEL
    async with SocketHarness() as h:
        pid = await h.process()
        results = []
        for optname, optval in SETS:
            fd = await h.udp_fd(pid)
            err = await h.setsockopt(pid, fd, SOL_IP, optname, optval)
            results.append((err, await h.getsockopt(pid, fd, SOL_IP, optname, 4)))
            await h.close(pid, fd)
        for (optname, optval), got, want in zip(SETS, results, real_results, strict=True):
            assert got == want, (optname, optval)


@async_test
async def test_getsockopt_char_or_int_by_optlen_matches_the_kernel() -> None:
    """do_ip_getsockopt(): with 0 < optlen < 4 a value 0..255 comes back as one byte,
    anything else as min(optlen, 4) bytes of the int; optlen < 0 is EINVAL (6.18)."""
    lengths = (-1, 0, 1, 2, 3, 4, 5, 8, 100)
    port_holder = real_udp()
    port_holder.bind(("127.0.0.1", 0))
    port = port_holder.getsockname()[1]
    port_holder.close()
    assert port > 255  # so IP_PROTOCOL's value is an int that does not fit a char

    def configure_real(s: socket.socket, case: str) -> None:
        if case == "ttl 200":
            s.setsockopt(SOL_IP, IP_TTL, 200)
        elif case == "tos 0x1ff":
            s.setsockopt(SOL_IP, IP_TOS, 0x1FF)
        elif case == "connected":
            s.bind(("127.0.0.1", port))
            s.connect(("127.0.0.1", 9))

    cases = ["fresh", "ttl 200", "tos 0x1ff", "connected"]
    opts = [IP_TTL, IP_TOS, IP_MTU_DISCOVER, IP_RECVERR, IP_PKTINFO, IP_MTU, IP_PROTOCOL, IP_OPTIONS]
    opts += [IP_ROUTER_ALERT, IP_HDRINCL, MRT_INIT, NO_SUCH_OPTION, IP_PKTOPTIONS]
    real_results: dict[tuple[str, int | str, int], tuple[int, bytes]] = {}
    for case in cases:
        real = real_udp()
        configure_real(real, case)
        for opt in opts:
            for n in lengths:
                real_results[case, opt, n] = real_getsockopt(real, SOL_IP, opt, n)
        for n in lengths:
            real_results[case, "SO_ERROR", n] = real_getsockopt(real, SOL_SOCKET, SO_ERROR, n)
        real.close()
    # A few of the kernel's answers, written out.
    assert real_results["fresh", IP_TTL, 4] == (0, i32(64))
    assert real_results["fresh", IP_TTL, 2] == (0, b"\x40")
    assert real_results["fresh", IP_TTL, -1] == (errno.EINVAL, b"")
    assert real_results["fresh", IP_MTU, 4] == (errno.ENOTCONN, b"")
    assert real_results["connected", IP_MTU, 2] == (0, b"\xff\xff")  # lo's 65536, capped
    assert real_results["connected", IP_PROTOCOL, 3] == (0, i32(port)[:3])
    assert real_results["fresh", MRT_INIT, -1] == (errno.EOPNOTSUPP, b"")
    assert real_results["fresh", "SO_ERROR", -1] == (errno.EINVAL, b"")
    async with SocketHarness() as h:
        pid = await h.process()
        for case in cases:
            fd = await h.udp_fd(pid)
            if case == "ttl 200":
                await h.setsockopt(pid, fd, SOL_IP, IP_TTL, i32(200))
            elif case == "tos 0x1ff":
                await h.setsockopt(pid, fd, SOL_IP, IP_TOS, i32(0x1FF))
            elif case == "connected":
                assert await h.bind(pid, fd, sockaddr("127.0.0.1", port)) == 0
                assert await h.connect(pid, fd, sockaddr("127.0.0.1", 9)) == 0
            for opt in opts:
                for n in lengths:
                    got = await h.getsockopt(pid, fd, SOL_IP, opt, n & 0xFFFFFFFF)
                    assert got == real_results[case, opt, n], (case, opt, n)
            for n in lengths:
                got = await h.getsockopt(pid, fd, SOL_SOCKET, SO_ERROR, n & 0xFFFFFFFF)
                assert got == real_results[case, "SO_ERROR", n], (case, n)


@async_test
async def test_ip_tos_sets_the_priority_as_the_kernel_does() -> None:
    """__ip_sock_set_tos(): sk_priority = rt_tos2priority(tos) (SO_PRIORITY reads it)."""
    real = real_udp()
    want = {}
    for tos in range(0, 256, 2):
        real.setsockopt(SOL_IP, IP_TOS, tos)
        want[tos] = real.getsockopt(SOL_SOCKET, SO_PRIORITY)
    real.close()
    assert [want[t] for t in range(0, 32, 2)] == [0, 0, 0, 0, 2, 2, 2, 2, 6, 6, 6, 6, 4, 4, 4, 4]
    async with SocketHarness() as h:
        pid = await h.process()
        fd = await h.udp_fd(pid)
        s = next(iter(h.udp.layer.socks.values()))
        for tos in range(0, 256, 2):
            assert await h.setsockopt(pid, fd, SOL_IP, IP_TOS, i32(tos)) == 0
            assert s.priority == rt_tos2priority(tos) == want[tos], tos


# sendmsg's msg_control, each on its own datagram to 127.0.0.1: the errno (0: sent).
CONTROLS: list[tuple[str, bytes]] = [
    ("none", b""),
    # CMSG_FIRSTHDR is NULL below a whole header: nothing is parsed.
    ("8 bytes", bytes(8)),
    ("15 bytes", bytes(15)),
    # CMSG_OK: cmsg_len below the header or past msg_controllen.
    ("cmsg_len 15", cmsg(SOL_IP, IP_TTL, i32(5), length=15)),
    ("cmsg_len 0", cmsg(SOL_IP, IP_TTL, i32(5), length=0)),
    ("cmsg_len 100", cmsg(SOL_IP, IP_TTL, i32(5), length=100)),
    ("ttl 5", cmsg(SOL_IP, IP_TTL, i32(5))),
    ("ttl 5 unpadded", cmsg(SOL_IP, IP_TTL, i32(5))[:20]),
    ("ttl 0", cmsg(SOL_IP, IP_TTL, i32(0))),
    ("ttl 256", cmsg(SOL_IP, IP_TTL, i32(256))),
    ("ttl as byte", cmsg(SOL_IP, IP_TTL, b"\x05")),
    ("ttl 8 bytes", cmsg(SOL_IP, IP_TTL, bytes(8))),
    ("tos int", cmsg(SOL_IP, IP_TOS, i32(0x11))),
    ("tos byte", cmsg(SOL_IP, IP_TOS, b"\x11")),
    ("tos 2 bytes", cmsg(SOL_IP, IP_TOS, b"\x11\x00")),
    ("tos 256", cmsg(SOL_IP, IP_TOS, i32(256))),
    ("tos -1", cmsg(SOL_IP, IP_TOS, i32(-1))),
    ("pktinfo", cmsg(SOL_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, bytes(4), bytes(4)))),
    ("pktinfo short", cmsg(SOL_IP, IP_PKTINFO, struct.pack("=i4s", 0, bytes(4)))),
    ("pktinfo lo", cmsg(SOL_IP, IP_PKTINFO, struct.pack("=i4s4s", 1, bytes(4), bytes(4)))),
    (
        "pktinfo src 127.0.0.9",
        cmsg(SOL_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, bytes([127, 0, 0, 9]), bytes(4))),
    ),
    # The lookup's errors: a source that is not ours, an interface that does not exist.
    (
        "pktinfo src 10.9.9.9",
        cmsg(SOL_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, bytes([10, 9, 9, 9]), bytes(4))),
    ),
    ("pktinfo if 999", cmsg(SOL_IP, IP_PKTINFO, struct.pack("=i4s4s", 999, bytes(4), bytes(4)))),
    ("ip_protocol 17", cmsg(SOL_IP, IP_PROTOCOL, i32(17))),
    ("ip_protocol 0", cmsg(SOL_IP, IP_PROTOCOL, i32(0))),
    ("SOL_IP unknown", cmsg(SOL_IP, 99, i32(1))),
    ("IP_RECVTTL as cmsg", cmsg(SOL_IP, IP_RECVTTL, i32(1))),
    # Other levels are skipped.
    ("level 99", cmsg(99, 1, i32(1))),
    ("level SOL_TCP", cmsg(6, 1, i32(1))),
    ("UDP_SEGMENT bad length", cmsg(SOL_UDP, UDP_SEGMENT, i32(1000))),
    ("SOL_UDP unknown", cmsg(SOL_UDP, 1, i32(1))),
    # __sock_cmsg_send(): SCM_RIGHTS/SCM_CREDENTIALS pass, SO_MARK and SO_PRIORITY need
    # 4 bytes (and CAP_NET_ADMIN, which root has), timestamping flags only TX ones.
    ("SCM_RIGHTS", cmsg(SOL_SOCKET, 1, i32(0))),
    ("SCM_CREDENTIALS", cmsg(SOL_SOCKET, 2, bytes(12))),
    ("SO_MARK", cmsg(SOL_SOCKET, SO_MARK, i32(5))),
    ("SO_MARK byte", cmsg(SOL_SOCKET, SO_MARK, b"\x05")),
    ("SO_PRIORITY", cmsg(SOL_SOCKET, SO_PRIORITY, i32(7))),
    ("SO_PRIORITY byte", cmsg(SOL_SOCKET, SO_PRIORITY, b"\x03")),
    ("SO_TIMESTAMPING tx", cmsg(SOL_SOCKET, SO_TIMESTAMPING, i32(1 | 2 | 1 << 8 | 1 << 9 | 1 << 18))),
    ("SO_TIMESTAMPING rx", cmsg(SOL_SOCKET, SO_TIMESTAMPING, i32(1 << 2))),
    ("SO_TIMESTAMPING_NEW", cmsg(SOL_SOCKET, 65, i32(2))),
    ("SCM_TXTIME", cmsg(SOL_SOCKET, SCM_TXTIME, bytes(8))),
    ("SCM_TS_OPT_ID", cmsg(SOL_SOCKET, SCM_TS_OPT_ID, i32(3))),
    ("SOL_SOCKET unknown", cmsg(SOL_SOCKET, 99, i32(3))),
    # The walk: a tail too short for a header is ignored; a second header is checked.
    ("tail 8", cmsg(SOL_IP, IP_TTL, i32(5)) + bytes(8)),
    ("tail 15", cmsg(SOL_IP, IP_TTL, i32(5)) + bytes(15)),
    ("tail 16 zeros", cmsg(SOL_IP, IP_TTL, i32(5)) + bytes(16)),
    ("ttl cmsg_len 17", cmsg(SOL_IP, IP_TTL, i32(5), length=17) + bytes(8)),
    ("ttl 0 then SOL_UDP bad", cmsg(SOL_IP, IP_TTL, i32(0)) + cmsg(SOL_UDP, 1, i32(1))),
    ("two good", cmsg(SOL_IP, IP_TTL, i32(9)) + cmsg(SOL_IP, IP_TOS, b"\x04")),
]
CONTROLS_KERNEL = {
    "cmsg_len 15": errno.EINVAL,
    "cmsg_len 0": errno.EINVAL,
    "cmsg_len 100": errno.EINVAL,
    "ttl 0": errno.EINVAL,
    "ttl 256": errno.EINVAL,
    "ttl as byte": errno.EINVAL,
    "ttl 8 bytes": errno.EINVAL,
    "tos 2 bytes": errno.EINVAL,
    "tos 256": errno.EINVAL,
    "tos -1": errno.EINVAL,
    "pktinfo short": errno.EINVAL,
    "pktinfo src 10.9.9.9": errno.ENETUNREACH,
    "pktinfo if 999": errno.ENODEV,
    "ip_protocol 0": errno.EINVAL,
    "SOL_IP unknown": errno.EINVAL,
    "IP_RECVTTL as cmsg": errno.EINVAL,
    "UDP_SEGMENT bad length": errno.EINVAL,
    "SOL_UDP unknown": errno.EINVAL,
    "SO_MARK byte": errno.EINVAL,
    "SO_PRIORITY byte": errno.EINVAL,
    "SO_TIMESTAMPING rx": errno.EINVAL,
    "SCM_TXTIME": errno.EINVAL,
    "SCM_TS_OPT_ID": errno.EINVAL,
    "SOL_SOCKET unknown": errno.EINVAL,
    "tail 16 zeros": errno.EINVAL,
    "ttl cmsg_len 17": errno.EINVAL,
    "ttl 0 then SOL_UDP bad": errno.EINVAL,
}


@async_test
async def test_sendmsg_control_messages_match_the_kernel() -> None:
    rx = real_udp()
    rx.bind(("127.0.0.1", 0))
    dst = sockaddr("127.0.0.1", rx.getsockname()[1])
    tx = real_udp()
    real_results = {name: real_sendmsg(tx, b"x", dst, control) for name, control in CONTROLS}
    # ____sys_sendmsg(): a control buffer of net.core.optmem_max (131072) or more is
    # ENOBUFS, before the send could autobind.
    fresh = real_udp()
    real_results["optmem_max"] = real_sendmsg(fresh, b"x", dst, bytes(131072))
    real_results["optmem_max autobound"] = fresh.getsockname()[1]
    fresh.close()
    tx.close()
    rx.close()
    assert real_results == {name: CONTROLS_KERNEL.get(name, 0) for name, _ in CONTROLS} | {
        "optmem_max": errno.ENOBUFS,
        "optmem_max autobound": 0,
    }
    async with SocketHarness() as h:
        pid = await h.process()
        rfd, tfd = await h.udp_fd(pid), await h.udp_fd(pid)
        assert await h.bind(pid, rfd, sockaddr("127.0.0.1", 7000)) == 0
        edst = sockaddr("127.0.0.1", 7000)
        results = {}
        for name, control in CONTROLS:
            results[name] = (await h.sendmsg(pid, tfd, b"x", edst, control=control))[0]
        fd = await h.udp_fd(pid)
        results["optmem_max"] = (await h.sendmsg(pid, fd, b"x", edst, control=bytes(131072)))[0]
        results["optmem_max autobound"] = struct.unpack_from("!H", (await h.getsockname(pid, fd))[1], 2)[0]
        assert results == real_results


def _cmsgs_of(control: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    off = 0
    while off + 16 <= len(control):
        length, level, type_ = struct.unpack_from("=Qii", control, off)
        out.append((level, type_, control[off + 16 : off + length]))
        off += (length + 7) & ~7
    return out


@async_test
async def test_sendmsg_ttl_and_tos_reach_the_header() -> None:
    """ip_cmsg_send()'s IP_TTL/IP_TOS override the socket's IP_TTL/IP_TOS for one
    datagram; the receiver's IP_RECVTTL/IP_RECVTOS cmsgs show the header (6.18)."""
    sends = [
        ([], []),
        ([(IP_TOS, i32(0xFF))], []),
        ([(IP_TOS, i32(0xFF))], [(SOL_IP, IP_TOS, b"\x03"), (SOL_IP, IP_TTL, i32(9))]),
        ([(IP_TOS, i32(0xFF)), (IP_TTL, i32(33))], []),
        ([(IP_TOS, i32(0xFF)), (IP_TTL, i32(33))], [(SOL_IP, IP_TOS, i32(0))]),
    ]
    rx = real_udp()
    rx.bind(("127.0.0.1", 0))
    for opt in (IP_RECVTTL, IP_RECVTOS):
        rx.setsockopt(SOL_IP, opt, 1)
    real_seen = []
    for opts, anc in sends:
        tx = real_udp()
        for opt, val in opts:
            real_setsockopt(tx, SOL_IP, opt, val)
        assert real_sendmsg(tx, b"x", sockaddr("127.0.0.1", rx.getsockname()[1]), build_cmsgs(anc)) == 0
        err, _, control, _, _ = real_recvmsg(rx, 10, 100)
        assert err == 0
        real_seen.append(_cmsgs_of(control))
        tx.close()
    rx.close()
    assert real_seen[2] == [(SOL_IP, IP_TTL, i32(9)), (SOL_IP, IP_TOS, b"\x03")]
    assert real_seen[4] == [(SOL_IP, IP_TTL, i32(33)), (SOL_IP, IP_TOS, b"\x00")]
    async with SocketHarness() as h:
        pid = await h.process()
        rfd = await h.udp_fd(pid)
        assert await h.bind(pid, rfd, sockaddr("127.0.0.1", 7000)) == 0
        for opt in (IP_RECVTTL, IP_RECVTOS):
            assert await h.setsockopt(pid, rfd, SOL_IP, opt, i32(1)) == 0
        seen = []
        for opts, anc in sends:
            tfd = await h.udp_fd(pid)
            for opt, val in opts:
                await h.setsockopt(pid, tfd, SOL_IP, opt, val)
            assert await h.sendmsg(pid, tfd, b"x", sockaddr("127.0.0.1", 7000), control=build_cmsgs(anc)) == (
                0,
                1,
            )
            r = await h.recvmsg(pid, rfd, 10, MSG_DONTWAIT, controllen=100)
            seen.append(_cmsgs_of(r.control))
        assert seen == real_seen


@async_test
async def test_recvmsg_control_bytes_match_the_kernel_at_every_controllen() -> None:
    """ip_cmsg_recv_offset() in the kernel's order (IP_PKTINFO, IP_TTL, IP_TOS,
    IP_ORIGDSTADDR), put_cmsg() cutting the last one that does not fit (cmsg_len says
    how much) and MSG_CTRUNC: msg_control and msg_flags byte for byte, for every
    msg_controllen from 0 to 120. 6.18: at 31 the whole IP_PKTINFO (28 bytes) and
    CTRUNC; 33..47 nothing more (under a header left); 48 an IP_TTL of cmsg_len 16."""
    holder = real_udp()
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    holder.close()
    lengths = range(0, 121)
    rx = real_udp()
    rx.bind(("0.0.0.0", port))
    tx = real_udp()
    tx.bind(("127.0.0.1", 0))
    tx.setsockopt(SOL_IP, IP_TOS, 0x2D)
    # Queued before IP_PKTINFO is on: ipv4_pktinfo_prepare() ran without it (zeros).
    tx.sendto(b"early", ("127.0.0.1", port))
    for opt in (IP_PKTINFO, IP_RECVTTL, IP_RECVTOS, IP_RECVORIGDSTADDR):
        rx.setsockopt(SOL_IP, opt, 1)
    real_early = real_recvmsg(rx, 10, 200)
    real = {}
    for n in lengths:
        tx.sendto(b"x", ("127.0.0.5", port))
        real[n] = real_recvmsg(rx, 10, n)
    tx_port = tx.getsockname()[1]
    tx.close()
    rx.close()
    assert real_early[2][:28] == struct.pack("=Qii", 28, SOL_IP, IP_PKTINFO) + bytes(8) + bytes(
        [127, 0, 0, 1]
    )
    assert real[31][2] == real[120][2][:31]
    assert real[31][3] == real[47][3] == 8  # MSG_CTRUNC
    assert real[111][3] == 8 and real[112][3] == 0  # all four need 112 bytes
    async with SocketHarness() as h:
        pid = await h.process()
        rfd, tfd = await h.udp_fd(pid), await h.udp_fd(pid)
        assert await h.bind(pid, rfd, sockaddr("0.0.0.0", port)) == 0
        assert await h.bind(pid, tfd, sockaddr("127.0.0.1", tx_port)) == 0
        assert await h.setsockopt(pid, tfd, SOL_IP, IP_TOS, i32(0x2D)) == 0
        await h.sendmsg(pid, tfd, b"early", sockaddr("127.0.0.1", port))
        for opt in (IP_PKTINFO, IP_RECVTTL, IP_RECVTOS, IP_RECVORIGDSTADDR):
            assert await h.setsockopt(pid, rfd, SOL_IP, opt, i32(1)) == 0
        r = await h.recvmsg(pid, rfd, 10, MSG_DONTWAIT, controllen=200)
        assert (r.errno, r.data, r.control, r.msg_flags, r.addr) == real_early
        for n in lengths:
            await h.sendmsg(pid, tfd, b"x", sockaddr("127.0.0.5", port))
            r = await h.recvmsg(pid, rfd, 10, MSG_DONTWAIT, controllen=n)
            assert (r.errno, r.data, r.control, r.msg_flags, r.addr) == real[n], n


def _options_built() -> bool:
    return hasattr(importlib.import_module("services.ip.options"), "ip_options_get")


@pytest.mark.skipif(not _options_built(), reason="services.ip.options.ip_options_get is not built yet")
@async_test
async def test_ip_options_setsockopt_and_getsockopt_match_the_kernel() -> None:
    """IP_OPTIONS: at most 40 bytes (EINVAL past), padded with IPOPT_END to a multiple of
    4, returned by getsockopt up to optlen; malformed options EINVAL (6.18: b"\\x01"
    reads back b"\\x01\\0\\0\\0", 41 bytes EINVAL, b"\\x07" EINVAL)."""
    cases = [b"", b"\x01", b"\x01\x01\x01", b"\x01" * 40, b"\x01" * 41, b"\x07", b"\x44\x04\x05\x00"]
    real_results = []
    for optval in cases:
        real = real_udp()
        err = real_setsockopt(real, SOL_IP, IP_OPTIONS, optval)
        real_results.append((err, [real_getsockopt(real, SOL_IP, IP_OPTIONS, n) for n in (0, 2, 4, 40)]))
        real.close()
    assert real_results[1] == (
        0,
        [(0, b""), (0, b"\x01\x00"), (0, b"\x01\x00\x00\x00"), (0, b"\x01\x00\x00\x00")],
    )
    assert real_results[4][0] == errno.EINVAL
    async with SocketHarness() as h:
        pid = await h.process()
        for optval, want in zip(cases, real_results, strict=True):
            fd = await h.udp_fd(pid)
            err = await h.setsockopt(pid, fd, SOL_IP, IP_OPTIONS, optval)
            got = (err, [await h.getsockopt(pid, fd, SOL_IP, IP_OPTIONS, n) for n in (0, 2, 4, 40)])
            assert got == want, optval


@pytest.mark.skipif(not _options_built(), reason="services.ip.options.ip_options_get is not built yet")
@async_test
async def test_ip_options_on_the_wire_and_in_recv_cmsgs_match_the_kernel() -> None:
    """A record route option, from the socket (IP_OPTIONS) or one datagram (the IP_RETOPTS
    cmsg): the sender fills its slot, the receiver the next one; IP_RECVOPTS shows the
    header's options as received, IP_RETOPTS their echo (a full record route echoes as
    it is, but the NOOP is not echoed: the padding is IPOPT_END). 6.18 on 127.0.0.1:
    both slots read 127.0.0.1, the pointer 12."""
    rr = b"\x07\x0b\x04" + bytes(8) + b"\x01"
    holder = real_udp()
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    holder.close()
    rx = real_udp()
    rx.bind(("127.0.0.1", port))
    for opt in (IP_RECVOPTS, IP_RETOPTS):
        rx.setsockopt(SOL_IP, opt, 1)
    tx = real_udp()
    assert real_setsockopt(tx, SOL_IP, IP_OPTIONS, rr) == 0
    tx.sendto(b"opts", ("127.0.0.1", port))
    real_sockopt = real_recvmsg(rx, 10, 200)
    assert real_setsockopt(tx, SOL_IP, IP_OPTIONS, b"") == 0
    assert (
        real_sendmsg(tx, b"cmsg", sockaddr("127.0.0.1", port), build_cmsgs([(SOL_IP, IP_RETOPTS, rr)])) == 0
    )
    real_cmsg = real_recvmsg(rx, 10, 200)
    tx.sendto(b"none", ("127.0.0.1", port))
    real_none = real_recvmsg(rx, 10, 200)
    tx.close()
    rx.close()
    filled = b"\x07\x0b\x0c" + socket.inet_aton("127.0.0.1") * 2 + b"\x01"
    echoed = filled[:-1] + b"\x00"
    assert _cmsgs_of(real_sockopt[2]) == [(SOL_IP, IP_RECVOPTS, filled), (SOL_IP, IP_RETOPTS, echoed)]
    assert real_cmsg[2] == real_sockopt[2]
    assert real_none[2] == b"" and real_none[3] == 0
    async with SocketHarness() as h:
        pid = await h.process()
        rfd, tfd = await h.udp_fd(pid), await h.udp_fd(pid)
        assert await h.bind(pid, rfd, sockaddr("127.0.0.1", port)) == 0
        for opt in (IP_RECVOPTS, IP_RETOPTS):
            assert await h.setsockopt(pid, rfd, SOL_IP, opt, i32(1)) == 0
        assert await h.setsockopt(pid, tfd, SOL_IP, IP_OPTIONS, rr) == 0
        got = []
        assert (await h.sendmsg(pid, tfd, b"opts", sockaddr("127.0.0.1", port)))[0] == 0
        got.append(await h.recvmsg(pid, rfd, 10, MSG_DONTWAIT, controllen=200))
        assert await h.setsockopt(pid, tfd, SOL_IP, IP_OPTIONS, b"") == 0
        control = build_cmsgs([(SOL_IP, IP_RETOPTS, rr)])
        assert (await h.sendmsg(pid, tfd, b"cmsg", sockaddr("127.0.0.1", port), control=control))[0] == 0
        got.append(await h.recvmsg(pid, rfd, 10, MSG_DONTWAIT, controllen=200))
        assert (await h.sendmsg(pid, tfd, b"none", sockaddr("127.0.0.1", port)))[0] == 0
        got.append(await h.recvmsg(pid, rfd, 10, MSG_DONTWAIT, controllen=200))
        want = [real_sockopt, real_cmsg, real_none]
        for r, (err, data, ctl, flags, _) in zip(got, want, strict=True):
            assert (r.errno, r.data, r.control, r.msg_flags) == (err, data, ctl, flags)


IP_FREEBIND = 15
IP_PASSSEC = 18
IP_TRANSPARENT = 19
IP_MINTTL = 21
IP_CHECKSUM = 23
IP_BIND_ADDRESS_NO_PORT = 24
IP_LOCAL_PORT_RANGE = 51
# (optname, optval) for the options of inet_sock's flags and fields that 6.0 .. 6.18
# added to the lockless part of do_ip_setsockopt(), each on a fresh socket.
NEWER_VALUES = [b"", b"\x02", i32(0), i32(1), i32(-1), i32(256), i32(5) + b"\x01"]
NEWER_SETS: list[tuple[int, bytes]] = [
    (opt, v)
    for opt in (IP_FREEBIND, IP_PASSSEC, IP_TRANSPARENT, IP_MINTTL, IP_CHECKSUM, IP_BIND_ADDRESS_NO_PORT)
    for v in NEWER_VALUES
]
LOCAL_PORT_RANGES = [struct.pack("=I", 40010 << 16 | 40000), struct.pack("=I", 40000 << 16 | 40010)]
NEWER_SETS += [(IP_LOCAL_PORT_RANGE, v) for v in [*NEWER_VALUES, *LOCAL_PORT_RANGES]]
EINVAL = errno.EINVAL
# 6.18: FREEBIND and TRANSPARENT want optlen >= 1; PASSSEC, CHECKSUM and
# BIND_ADDRESS_NO_PORT take anything (optlen 0 is 0); MINTTL wants 0..255 and a byte at
# least; LOCAL_PORT_RANGE exactly 4 bytes, lo <= hi unless one is 0.
NEWER_SETS_KERNEL = (
    [EINVAL, 0, 0, 0, 0, 0, 0]
    + [0] * 7
    + [EINVAL, 0, 0, 0, 0, 0, 0]
    + [EINVAL, 0, 0, 0, EINVAL, EINVAL, 0]
    + [0] * 7
    + [0] * 7
    + [EINVAL, EINVAL, 0, 0, 0, 0, EINVAL, 0, EINVAL]
)


@async_test
async def test_freebind_transparent_minttl_and_the_others_match_the_kernel() -> None:
    """The errno of each set and what getsockopt then reads, at buflen 4 and 2 (a flag
    reads 1 for any non-zero value; IP_LOCAL_PORT_RANGE reads the int it was given:
    -1 stays -1, 0x9c4a9c40 is -1672831936, two bytes of it for a buflen of 2)."""
    real_results = []
    for optname, optval in NEWER_SETS:
        real = real_udp()
        err = real_setsockopt(real, SOL_IP, optname, optval)
        got4 = real_getsockopt(real, SOL_IP, optname, 4)
        real_results.append((err, got4, real_getsockopt(real, SOL_IP, optname, 2)))
        real.close()
    assert [e for e, _, _ in real_results] == NEWER_SETS_KERNEL
    assert real_results[NEWER_SETS.index((IP_FREEBIND, i32(256)))][1:] == ((0, i32(1)), (0, b"\x01"))
    assert real_results[NEWER_SETS.index((IP_MINTTL, b"\x02"))][1] == (0, i32(2))
    assert real_results[-2][1:] == ((0, struct.pack("=I", 0x9C4A9C40)), (0, b"\x40\x9c"))
    assert real_results[NEWER_SETS.index((IP_LOCAL_PORT_RANGE, i32(-1)))][1] == (0, i32(-1))
    async with SocketHarness() as h:
        pid = await h.process()
        results = []
        for optname, optval in NEWER_SETS:
            fd = await h.udp_fd(pid)
            err = await h.setsockopt(pid, fd, SOL_IP, optname, optval)
            got4 = await h.getsockopt(pid, fd, SOL_IP, optname, 4)
            results.append((err, got4, await h.getsockopt(pid, fd, SOL_IP, optname, 2)))
            await h.close(pid, fd)
        for (optname, optval), got, want in zip(NEWER_SETS, results, real_results, strict=True):
            assert got == want, (optname, optval)


@async_test
async def test_minttl_checksum_and_passsec_change_nothing_a_udp_socket_receives() -> None:
    """6.18 on 127.0.0.1: a socket with IP_MINTTL 255 still receives a TTL 64 datagram
    (only tcp_v4_rcv drops below it); IP_CHECKSUM puts no cmsg for loopback's
    CHECKSUM_PARTIAL skbs (only a CHECKSUM_COMPLETE one has it); IP_PASSSEC none
    without an LSM's label."""
    rx, tx = real_udp(), real_udp()
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    for opt, v in ((IP_MINTTL, 255), (IP_CHECKSUM, 1), (IP_PASSSEC, 1)):
        rx.setsockopt(SOL_IP, opt, v)
    tx.sendto(b"ttl64", ("127.0.0.1", port))
    real = real_recvmsg(rx, 10, 200)
    rx.close()
    tx.close()
    assert real[:4] == (0, b"ttl64", b"", 0)
    async with SocketHarness() as h:
        pid = await h.process()
        rfd, tfd = await h.udp_fd(pid), await h.udp_fd(pid)
        assert await h.bind(pid, rfd, sockaddr("127.0.0.1", port)) == 0
        for opt, v in ((IP_MINTTL, 255), (IP_CHECKSUM, 1), (IP_PASSSEC, 1)):
            assert await h.setsockopt(pid, rfd, SOL_IP, opt, i32(v)) == 0
        assert (await h.sendmsg(pid, tfd, b"ttl64", sockaddr("127.0.0.1", port)))[0] == 0
        r = await h.recvmsg(pid, rfd, 10, MSG_DONTWAIT, controllen=200)
        assert (r.errno, r.data, r.control, r.msg_flags) == real[:4]


def test_ip_cmsg_checksum_of_a_checksum_complete_skb() -> None:
    """ip_cmsg_recv_checksum(): skb->csum as a u32 when the skb is CHECKSUM_COMPLETE,
    less the bytes a peek offset skips; nothing otherwise."""
    payload = b"\x12\x34\x56\x78\x9a\xbc"
    csum = csum_partial(payload)
    assert ip_cmsg_checksum(csum, payload[:2]) == csum_partial(payload[2:])
    iph = bytes(20)
    for value, want in ((None, b""), (csum, cmsg(SOL_IP, IP_CHECKSUM, struct.pack("=I", csum)))):
        msg = MsgControl(64)
        ip_cmsg_recv_offset(msg, IP_CMSG_CHECKSUM, bytes(48), iph, bytes(8), csum=value)
        assert msg.control() == want
