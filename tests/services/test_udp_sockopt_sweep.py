"""Every SOL_SOCKET option name from 0 to 90 on a UDP socket, through the syscall layer
(SocketLayer over an in-process UdpLayer: the socket service answers SO_TYPE, SO_PROTOCOL,
SO_DOMAIN and the timeouts, sk_setsockopt()/sk_getsockopt() in services/udp/sockopt.py
the rest), against what 6.18 answers.

The sweep: on a new socket each, setsockopt with the int 0, the int 1, optlen 0 and a
2-byte optval, each followed by an int getsockopt; on one more new socket getsockopt with
optlen 4, 8, 0 and 256. KERNEL is that sweep's answer on this machine (6.18, as root in a
network namespace of its own), written as the few kinds of option there are; it is asked
of the kernel again where a namespace can be made. The options of helper A1's timestamp
work (SO_TIMESTAMP*, SO_TIMESTAMPING*, SO_TXTIME) are swept by its own tests.

Then the values of the options that are more than a flag (SO_LINGER, SO_RCVLOWAT,
SO_MAX_PACING_RATE, the busy-poll ones, SO_BUF_LOCK, SO_PEERNAME, SO_COOKIE, the
reuseport and eBPF ones), as 6.18 answered them, and the few the emulator refuses with
ENOPROTOOPT because it has not their effect.
"""

from __future__ import annotations

import struct
from typing import Any

from services.core import errno
from services.core.socket_uapi import (
    SO_ATTACH_BPF,
    SO_ATTACH_REUSEPORT_CBPF,
    SO_ATTACH_REUSEPORT_EBPF,
    SO_BUF_LOCK,
    SO_BUSY_POLL,
    SO_BUSY_POLL_BUDGET,
    SO_CNX_ADVICE,
    SO_COOKIE,
    SO_DETACH_REUSEPORT_BPF,
    SO_DEVMEM_DONTNEED,
    SO_INCOMING_CPU,
    SO_KEEPALIVE,
    SO_LINGER,
    SO_MAX_PACING_RATE,
    SO_NETNS_COOKIE,
    SO_PASSCRED,
    SO_PEERCRED,
    SO_PEERGROUPS,
    SO_PEERNAME,
    SO_PEERPIDFD,
    SO_PREFER_BUSY_POLL,
    SO_RCVBUF,
    SO_RCVLOWAT,
    SO_RCVMARK,
    SO_RCVPRIORITY,
    SO_RESERVE_MEM,
    SO_REUSEPORT,
    SO_SELECT_ERR_QUEUE,
    SO_SNDBUF,
    SO_TXREHASH,
    SO_ZEROCOPY,
    SOL_SOCKET,
)
from services.socket.syscalls import SocketLayer
from services.udp.sock import UdpSock
from tests.services.fakes_udp import LoopbackUdp, async_test, real_in_netns, sockaddr

AF_INET, SOCK_DGRAM = 2, 2
IPPROTO_UDPLITE = 136
ENOENT, EBADF, ENODEV, EINVAL, ENODATA = errno.ENOENT, errno.EBADF, errno.ENODEV, errno.EINVAL, errno.ENODATA
ENOPROTOOPT, EOPNOTSUPP, ENOTCONN = errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.ENOTCONN
RMEM_DEFAULT = WMEM_DEFAULT = 212992
U64 = "<u64>"  # a cookie: its value is the kernel's own
INT = struct.Struct("=i")

# Helper A1's options: SO_TIMESTAMP_OLD/NEW, SO_TIMESTAMPNS_OLD/NEW, SO_TIMESTAMPING_OLD/NEW,
# SO_TXTIME.
A1 = {29, 35, 37, 61, 63, 64, 65}
NAMES = [n for n in range(91) if n not in A1]

# The kinds of option 6.18 has at SOL_SOCKET, as the sweep finds them on UDP.
NO_SUCH = {0, 22, 23, 24, 31, 54, 58, 78, 79, 81, *range(84, 91)}
# sock_valbool_flag() options and the plain ints that read back 0 at first, 0 and 1
# after setting them (SO_PRIORITY, SO_MARK, SO_BINDTOIFINDEX 1 = lo, SO_BUSY_POLL,
# SO_BUF_LOCK, SO_ZEROCOPY among them).
FLAGS = {1, 2, 5, 6, 9, 10, 11, 12, 15, 36, 40, 41, 43, 44, 45, 46, 60, 62, 69, 72, 75, 82}
# Ints whose (first value, value after setting 0, after setting 1) differ: SO_PEEK_OFF
# and SO_INCOMING_CPU start at -1, SO_BSDCOMPAT keeps nothing, SO_RCVLOWAT 0 is 1, the
# buffers are doubled and floored.
INTS = {42: (-1, 0, 1), 49: (-1, 0, 1), 14: (0, 0, 0), 18: (1, 1, 1), 7: (WMEM_DEFAULT, 4608, 4608)}
INTS[8] = (RMEM_DEFAULT, 2304, 2304)
# Read-only ints (setting them is ENOPROTOOPT): SO_TYPE, SO_ERROR, SO_SNDLOWAT,
# SO_ACCEPTCONN, SO_PROTOCOL, SO_DOMAIN, SO_BPF_EXTENSIONS (SKF_AD_MAX),
# SO_INCOMING_NAPI_ID.
READ_ONLY = {3: 2, 4: 0, 19: 1, 30: 0, 38: 17, 39: 2, 48: 64, 56: 0}
# SO_PASSCRED, SO_PASSSEC, SO_TXREHASH, SO_PASSPIDFD, SO_PASSRIGHTS: other sockets'.
NOT_UDP = {16, 34, 74, 76, 83}
TIMEOUTS = {20, 21, 66, 67}
# Options that can only be set: the errno of setting 0 or 1 (None: taken). getsockopt
# does not know them.
SET_ONLY = {27: ENOENT, 32: None, 33: None, 50: EINVAL, 51: EINVAL, 52: EINVAL, 53: None, 68: EINVAL}
SET_ONLY |= {70: None, 80: EBADF}
# Options that can only be read, and fail on a UDP socket: SO_PEERNAME unconnected,
# SO_PEERGROUPS and SO_PEERPIDFD without a peer.
PEER = {28: ENOTCONN, 59: ENODATA, 77: ENODATA}


def e(n: int) -> list[Any]:
    return ["errno", n]


def i(v: int) -> list[Any]:
    return [INT.pack(v).hex(), 4]


def _row(
    s0: Any, a0: Any, s1: Any, a1: Any, first: Any, g4: Any, g8: Any, g0: Any, g256: Any
) -> dict[str, Any]:
    """A sweep row: a short optval is EINVAL for every name but SO_BINDTODEVICE."""
    return {
        "set0": s0,
        "set0get": a0,
        "set1": s1,
        "set1get": a1,
        "setlen0": e(EINVAL),
        "setlen0get": first,
        "setlen2": e(EINVAL),
        "setlen2get": first,
        "get4": g4,
        "get8": g8,
        "get0": g0,
        "get256": g256,
    }


def _ints(v: int) -> tuple[Any, Any, Any, Any]:
    """getsockopt of an int with optlen 4, 8, 0 and 256: min(optlen, 4) bytes."""
    return i(v), i(v), ["", 0], i(v)


def kernel_row(n: int) -> dict[str, Any]:
    """What 6.18 answered for option name n."""
    if n in NO_SUCH:
        return _row(*[e(ENOPROTOOPT)] * 9)
    if n in FLAGS or n in INTS:
        first, v0, v1 = INTS.get(n, (0, 0, 1))
        return _row(None, i(v0), None, i(v1), i(first), *_ints(first))
    if n in READ_ONLY:
        v = READ_ONLY[n]
        return _row(e(ENOPROTOOPT), i(v), e(ENOPROTOOPT), i(v), i(v), *_ints(v))
    if n == SO_RESERVE_MEM:
        return _row(e(EOPNOTSUPP), i(0), e(EOPNOTSUPP), i(0), i(0), *_ints(0))
    if n in NOT_UDP:
        return _row(*[e(EOPNOTSUPP)] * 9)
    if n in TIMEOUTS:
        # A struct timeval: an int is too short; getsockopt copies up to 16 bytes.
        zeros = [bytes(16).hex(), 16]
        return _row(e(EINVAL), i(0), e(EINVAL), i(0), i(0), i(0), [bytes(8).hex(), 8], ["", 0], zeros)
    if n in SET_ONLY:
        s = None if SET_ONLY[n] is None else e(SET_ONLY[n] or 0)
        return _row(s, e(ENOPROTOOPT), s, *[e(ENOPROTOOPT)] * 6)
    if n in PEER:
        return _row(e(ENOPROTOOPT), e(PEER[n]), e(ENOPROTOOPT), *[e(PEER[n])] * 6)
    if n == SO_LINGER:
        zeros = [bytes(8).hex(), 8]
        return _row(e(EINVAL), i(0), e(EINVAL), i(0), i(0), i(0), zeros, ["", 0], zeros)
    if n == SO_PEERCRED:
        cred = struct.pack("=iii", 0, -1, -1)
        g, no = [cred[:4].hex(), 4], e(ENOPROTOOPT)
        return _row(no, g, no, g, g, g, [cred[:8].hex(), 8], ["", 0], [cred.hex(), 12])
    if n == 25:
        # SO_BINDTODEVICE: "\0\0\0\0" and optlen 0 unbind, "\1\0..." names no device.
        z = ["", 0]
        row = _row(None, z, e(ENODEV), z, z, z, z, z, z)
        row["setlen0"], row["setlen2"] = None, e(ENODEV)
        return row
    if n == 26:
        # SO_ATTACH_FILTER wants a struct sock_fprog; SO_GET_FILTER without a filter.
        z = ["", 0]
        return _row(e(EINVAL), z, e(EINVAL), z, z, z, z, z, z)
    if n == SO_MAX_PACING_RATE:
        ones = [bytes([255] * 8).hex(), 8]
        return _row(None, i(0), None, i(1), i(-1), i(-1), ones, ["", 0], ones)
    if n == 55:
        # SO_MEMINFO: rmem_alloc, rcvbuf, wmem_alloc, sndbuf and five zeros.
        mem = struct.pack("=9I", 0, RMEM_DEFAULT, 0, WMEM_DEFAULT, 0, 0, 0, 0, 0)
        no, z = e(ENOPROTOOPT), i(0)
        return _row(no, z, no, z, z, z, [mem[:8].hex(), 8], ["", 0], [mem.hex(), 36])
    if n == SO_COOKIE:
        no, bad = e(ENOPROTOOPT), e(EINVAL)
        return _row(no, bad, no, bad, bad, bad, [U64, 8], bad, [U64, 8])
    if n == SO_NETNS_COOKIE:
        no, bad = e(ENOPROTOOPT), e(EINVAL)
        return _row(no, bad, no, bad, bad, bad, [U64, 8], bad, bad)
    raise AssertionError(f"no kernel answer for option {n}")


KERNEL = {n: kernel_row(n) for n in NAMES}

# Where the emulator differs from 6.18, and why: it has no eBPF programs (the kernel
# refuses fds 0 and 1, which are not programs, with EINVAL), and no MSG_ZEROCOPY.
NOT_EMULATED = {
    SO_ATTACH_BPF: {"set0": e(ENOPROTOOPT), "set1": e(ENOPROTOOPT)},
    SO_ATTACH_REUSEPORT_EBPF: {"set0": e(ENOPROTOOPT), "set1": e(ENOPROTOOPT)},
    SO_ZEROCOPY: {"set1": e(ENOPROTOOPT), "set1get": i(0)},
}
EMULATED = {n: KERNEL[n] | NOT_EMULATED.get(n, {}) for n in NAMES}

SWEEP_SCRIPT = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def sset(s, n, buf):
    b = ctypes.create_string_buffer(buf, max(len(buf), 1))
    if libc.setsockopt(s.fileno(), 1, n, b, len(buf)):
        return ["errno", ctypes.get_errno()]
def sget(s, n, optlen):
    b = ctypes.create_string_buffer(max(optlen, 1))
    length = ctypes.c_int(optlen)
    if libc.getsockopt(s.fileno(), 1, n, b, ctypes.byref(length)):
        return ["errno", ctypes.get_errno()]
    return [b.raw[:length.value].hex(), length.value]
for n in NAMES:
    row = {}
    for key, buf in (("set0", bytes(4)), ("set1", b"\\1\\0\\0\\0"), ("setlen0", b""), ("setlen2", b"\\1\\0")):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        row[key], row[key + "get"] = sset(s, n, buf), sget(s, n, 4)
        s.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for optlen in (4, 8, 0, 256):
        row["get%d" % optlen] = sget(s, n, optlen)
    s.close()
    out[n] = row
"""


def _cookies(row: dict[str, Any], n: int) -> dict[str, Any]:
    """The row with a cookie's value replaced by U64."""
    if n in (SO_COOKIE, SO_NETNS_COOKIE):
        for key in ("get8", "get256"):
            if row[key][0] != "errno":
                row[key] = [U64, row[key][1]]
    return row


def test_the_sweep_table_is_what_the_kernel_answers() -> None:
    real = real_in_netns(f"NAMES = {NAMES!r}\n" + SWEEP_SCRIPT)
    if real is None:
        return  # no namespace here: KERNEL is as recorded on 6.18
    got = {int(n): _cookies(row, int(n)) for n, row in real.items()}
    assert got == KERNEL


async def _layer() -> tuple[SocketLayer, LoopbackUdp, int]:
    udp = LoopbackUdp()
    layer = SocketLayer(udp)
    return layer, udp, layer.open_process("sweep").pid


async def _set(layer: SocketLayer, pid: int, fd: int, n: int, optval: bytes) -> Any:
    try:
        await layer.setsockopt(pid, fd, SOL_SOCKET, n, optval)
    except OSError as err:
        return e(err.errno or 0)
    return None


async def _get(layer: SocketLayer, pid: int, fd: int, n: int, optlen: int) -> Any:
    try:
        val, length = await layer.getsockopt(pid, fd, SOL_SOCKET, n, optlen)
    except OSError as err:
        return e(err.errno or 0)
    return [val.hex(), length]


async def _sweep(layer: SocketLayer, pid: int, n: int) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, optval in (("set0", bytes(4)), ("set1", b"\1\0\0\0"), ("setlen0", b""), ("setlen2", b"\1\0")):
        fd = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
        row[key] = await _set(layer, pid, fd, n, optval)
        row[key + "get"] = await _get(layer, pid, fd, n, 4)
        await layer.close(pid, fd)
    fd = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    for optlen in (4, 8, 0, 256):
        row[f"get{optlen}"] = await _get(layer, pid, fd, n, optlen)
    await layer.close(pid, fd)
    return _cookies(row, n)


@async_test
async def test_every_option_name_answers_as_the_kernel() -> None:
    layer, _, pid = await _layer()
    got = {n: await _sweep(layer, pid, n) for n in NAMES}
    diff = {n: (got[n], EMULATED[n]) for n in NAMES if got[n] != EMULATED[n]}
    assert not diff


@async_test
async def test_the_options_not_emulated_say_so() -> None:
    layer, udp, pid = await _layer()
    fd = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    for n, optval, what in (
        (SO_ZEROCOPY, INT.pack(1), "MSG_ZEROCOPY"),
        (SO_ATTACH_BPF, INT.pack(3), "eBPF"),
        (SO_ATTACH_REUSEPORT_EBPF, INT.pack(3), "eBPF"),
        (SO_ATTACH_REUSEPORT_CBPF, bytes(16), "reuseport"),
        (SO_RESERVE_MEM, INT.pack(4096), "memory cgroup"),
    ):
        try:
            await layer.setsockopt(pid, fd, SOL_SOCKET, n, optval)
        except OSError as err:
            assert what in str(err) and "not emulated" in str(err), err
        else:
            raise AssertionError(f"option {n} was taken")
    # 6.18: SO_ZEROCOPY 0 is taken (SOCK_ZEROCOPY stays clear), 2 and -1 are EINVAL;
    # on a UDP-Lite socket it is EOPNOTSUPP whatever the value (TCP and UDP only).
    assert await _set(layer, pid, fd, SO_ZEROCOPY, INT.pack(0)) is None
    assert await _set(layer, pid, fd, SO_ZEROCOPY, INT.pack(2)) == e(EINVAL)
    assert await _set(layer, pid, fd, SO_ZEROCOPY, INT.pack(-1)) == e(EINVAL)
    lite = await layer.socket(pid, AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE)
    assert await _set(layer, pid, lite, SO_ZEROCOPY, INT.pack(0)) == e(EOPNOTSUPP)
    assert udp.layer.socks  # the sockets are the UDP layer's


def _sock(udp: LoopbackUdp, layer: SocketLayer, pid: int, fd: int) -> UdpSock:
    return udp.layer.sock(layer.procs.get(pid).file(fd).sk)


@async_test
async def test_struct_sock_values_read_back_as_the_kernel_keeps_them() -> None:
    layer, udp, pid = await _layer()
    fd = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)

    async def put(n: int, optval: bytes | int) -> Any:
        return await _set(layer, pid, fd, n, INT.pack(optval) if isinstance(optval, int) else optval)

    async def get(n: int, optlen: int = 4) -> Any:
        return await _get(layer, pid, fd, n, optlen)

    linger = struct.Struct("=ii").pack
    # 6.18 (HZ 250): on keeps l_linger; off keeps the time; -1 is MAX_SCHEDULE_TIMEOUT,
    # which reads LONG_MAX / HZ cut to an int; a 6-byte optval is EINVAL.
    assert [
        await get(SO_LINGER, 8),
        await put(SO_LINGER, linger(1, 10)),
        await get(SO_LINGER, 8),
        await get(SO_LINGER, 4),
        await put(SO_LINGER, linger(0, 5)),
        await get(SO_LINGER, 8),
        await put(SO_LINGER, linger(1, -1)),
        await get(SO_LINGER, 8),
        await put(SO_LINGER, linger(1, 0x7FFFFFFF)),
        await get(SO_LINGER, 8),
        await put(SO_LINGER, linger(1, 3) + INT.pack(9)),
        await get(SO_LINGER, 12),
        await put(SO_LINGER, INT.pack(1) + b"\0\0"),
    ] == [
        ["0000000000000000", 8],
        None,
        ["010000000a000000", 8],
        ["01000000", 4],
        None,
        ["000000000a000000", 8],
        None,
        ["01000000df4f8d97", 8],
        None,
        ["01000000ffffff7f", 8],
        None,
        ["0100000003000000", 8],
        e(EINVAL),
    ]
    # SO_RCVLOWAT: a negative value is INT_MAX, 0 is 1.
    assert [
        await put(SO_RCVLOWAT, -1),
        await get(SO_RCVLOWAT),
        await put(SO_RCVLOWAT, 0),
        await get(SO_RCVLOWAT),
    ] == [
        None,
        i(0x7FFFFFFF),
        None,
        i(1),
    ]
    # SO_MAX_PACING_RATE: an int (-1 is ~0UL, others a u32), or a u64 from optlen 8;
    # read as a u64 from optlen 8, else min(~0U, rate); a 6-byte optval is its int.
    u64 = struct.Struct("=Q").pack
    assert [
        await put(SO_MAX_PACING_RATE, 1000),
        await get(SO_MAX_PACING_RATE, 8),
        await put(SO_MAX_PACING_RATE, -2),
        await get(SO_MAX_PACING_RATE, 8),
        await put(SO_MAX_PACING_RATE, u64(1 << 40)),
        await get(SO_MAX_PACING_RATE, 4),
        await get(SO_MAX_PACING_RATE, 7),
        await get(SO_MAX_PACING_RATE, 8),
        await put(SO_MAX_PACING_RATE, u64(1 << 40)[:6]),
        await get(SO_MAX_PACING_RATE, 8),
        await put(SO_MAX_PACING_RATE, -1),
        await get(SO_MAX_PACING_RATE, 8),
    ] == [
        None,
        ["e803000000000000", 8],
        None,
        ["feffffff00000000", 8],
        None,
        ["ffffffff", 4],
        ["ffffffff", 4],
        ["0000000000010000", 8],
        None,
        ["0000000000000000", 8],
        None,
        ["ffffffffffffffff", 8],
    ]
    # SO_INCOMING_CPU takes any int; SO_BUSY_POLL any but a negative one; the budget
    # 0..65535; SO_PREFER_BUSY_POLL is a flag.
    assert [
        await put(SO_INCOMING_CPU, -5),
        await get(SO_INCOMING_CPU),
        await put(SO_BUSY_POLL, -1),
        await put(SO_BUSY_POLL, 1000),
        await get(SO_BUSY_POLL),
        await put(SO_BUSY_POLL_BUDGET, 65535),
        await put(SO_BUSY_POLL_BUDGET, 65536),
        await put(SO_BUSY_POLL_BUDGET, -1),
        await put(SO_PREFER_BUSY_POLL, 5),
        await get(SO_PREFER_BUSY_POLL),
    ] == [None, i(-5), e(EINVAL), None, i(1000), None, e(EINVAL), e(EINVAL), None, i(1)]
    s = _sock(udp, layer, pid, fd)
    assert (s.incoming_cpu, s.ll_usec, s.busy_poll_budget, s.prefer_busy_poll) == (-5, 1000, 65535, True)

    # SO_BUF_LOCK: the two lock bits only; SO_RCVBUF and SO_SNDBUF set theirs.
    b = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    assert [
        await _set(layer, pid, b, SO_BUF_LOCK, INT.pack(3)),
        await _get(layer, pid, b, SO_BUF_LOCK, 4),
        await _set(layer, pid, b, SO_BUF_LOCK, INT.pack(4)),
        await _set(layer, pid, b, SO_BUF_LOCK, INT.pack(-1)),
        await _set(layer, pid, b, SO_BUF_LOCK, INT.pack(0)),
        await _get(layer, pid, b, SO_BUF_LOCK, 4),
        await _set(layer, pid, b, SO_RCVBUF, INT.pack(5000)),
        await _get(layer, pid, b, SO_BUF_LOCK, 4),
        await _set(layer, pid, b, SO_SNDBUF, INT.pack(5000)),
        await _get(layer, pid, b, SO_BUF_LOCK, 4),
        await _set(layer, pid, b, SO_BUF_LOCK, INT.pack(1)),
        await _get(layer, pid, b, SO_BUF_LOCK, 4),
    ] == [None, i(3), e(EINVAL), e(EINVAL), None, i(0), None, i(2), None, i(3), None, i(1)]

    # The flags helpers A1 and B read.
    for n in (SO_RCVMARK, SO_RCVPRIORITY, SO_SELECT_ERR_QUEUE, SO_KEEPALIVE):
        assert await put(n, 7) is None
    assert (s.rcvmark, s.rcvpriority, s.select_err_queue, s.keepopen) == (True, True, True, True)
    # SO_CNX_ADVICE is taken and changes nothing on these routes.
    assert [await put(SO_CNX_ADVICE, 1), await put(SO_CNX_ADVICE, 2)] == [None, None]


@async_test
async def test_peer_options_and_cookies() -> None:
    layer, _, pid = await _layer()
    r = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    await layer.bind(pid, r, sockaddr("127.0.0.1", 20000))
    t = await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)
    await layer.connect(pid, t, sockaddr("127.0.0.1", 20000))
    peer = sockaddr("127.0.0.1", 20000)
    # 6.18: SO_PEERNAME is ENOTCONN without a peer, the sockaddr_in with optlen up to
    # 16 (its first bytes), EINVAL beyond; SO_PEERCRED is {0, -1, -1} cut to optlen (at
    # most 12); SO_PEERGROUPS and SO_PEERPIDFD ENODATA.
    assert [
        await _get(layer, pid, r, SO_PEERNAME, 16),
        await _get(layer, pid, t, SO_PEERNAME, 16),
        await _get(layer, pid, t, SO_PEERNAME, 8),
        await _get(layer, pid, t, SO_PEERNAME, 17),
        await _get(layer, pid, t, SO_PEERNAME, 256),
        await _get(layer, pid, t, SO_PEERNAME, 0),
        await _get(layer, pid, t, SO_PEERCRED, 13),
        await _get(layer, pid, t, SO_PEERGROUPS, 256),
        await _get(layer, pid, t, SO_PEERPIDFD, 4),
    ] == [
        e(ENOTCONN),
        [peer.hex(), 16],
        [peer[:8].hex(), 8],
        e(EINVAL),
        e(EINVAL),
        ["", 0],
        ["00000000ffffffffffffffff", 12],
        e(ENODATA),
        e(ENODATA),
    ]
    # SO_COOKIE: given at the first ask and kept, one per socket, 8 bytes from optlen 8
    # on (EINVAL below). SO_NETNS_COOKIE: the host's, optlen exactly 8.
    c1 = await _get(layer, pid, t, SO_COOKIE, 16)
    assert c1 == await _get(layer, pid, t, SO_COOKIE, 8)
    c2 = await _get(layer, pid, r, SO_COOKIE, 8)
    assert c1[1] == c2[1] == 8 and c1 != c2 and 0 not in (int(c1[0], 16), int(c2[0], 16))
    assert await _get(layer, pid, t, SO_COOKIE, 7) == e(EINVAL)
    netns = await _get(layer, pid, t, SO_NETNS_COOKIE, 8)
    assert netns == await _get(layer, pid, r, SO_NETNS_COOKIE, 8) and netns[1] == 8
    assert [await _get(layer, pid, t, SO_NETNS_COOKIE, n) for n in (7, 9)] == [e(EINVAL)] * 2


@async_test
async def test_reuseport_bpf_and_other_sockets_options() -> None:
    layer, _, pid = await _layer()

    async def new() -> int:
        return await layer.socket(pid, AF_INET, SOCK_DGRAM, 0)

    async def put(fd: int, n: int, optval: bytes) -> Any:
        return await _set(layer, pid, fd, n, optval)

    zero = INT.pack(0)
    # 6.18's reuseport_detach_prog(): EINVAL out of a group without SO_REUSEPORT,
    # ENOENT with it (bound or not, and after clearing it once in a group).
    s = await new()
    seq = [await put(s, SO_DETACH_REUSEPORT_BPF, zero), await put(s, SO_REUSEPORT, INT.pack(1))]
    seq.append(await put(s, SO_DETACH_REUSEPORT_BPF, zero))
    await layer.bind(pid, s, sockaddr("127.0.0.1", 20001))
    seq.append(await put(s, SO_DETACH_REUSEPORT_BPF, zero))
    seq += [await put(s, SO_REUSEPORT, zero), await put(s, SO_DETACH_REUSEPORT_BPF, zero)]
    u = await new()
    await layer.bind(pid, u, sockaddr("127.0.0.1", 20002))
    seq.append(await put(u, SO_DETACH_REUSEPORT_BPF, zero))
    assert seq == [e(EINVAL), None, e(ENOENT), e(ENOENT), None, e(ENOENT), e(EINVAL)]
    # Program attachments check their optlen first: a u32 fd, a 16-byte sock_fprog.
    v = await new()
    assert [
        await put(v, SO_ATTACH_BPF, bytes(8)),
        await put(v, SO_ATTACH_REUSEPORT_EBPF, bytes(3) + b"\0\0"),
        await put(v, SO_ATTACH_REUSEPORT_CBPF, zero),
    ] == [e(EINVAL)] * 3
    # Other sockets' options: SO_PASSCRED (AF_UNIX, netlink) and SO_TXREHASH (TCP)
    # EOPNOTSUPP both ways, SO_DEVMEM_DONTNEED (TCP) EBADF.
    assert [
        await put(v, SO_PASSCRED, zero),
        await _get(layer, pid, v, SO_PASSCRED, 4),
        await put(v, SO_TXREHASH, zero),
        await _get(layer, pid, v, SO_TXREHASH, 4),
        await put(v, SO_DEVMEM_DONTNEED, bytes(8)),
        await put(v, SO_RESERVE_MEM, INT.pack(-1)),
    ] == [e(EOPNOTSUPP)] * 4 + [e(EBADF), e(EINVAL)]
