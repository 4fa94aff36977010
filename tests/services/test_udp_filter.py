"""Socket filters on the UDP layer (UdpService for real, FakeIp, the test as the socket
layer): SO_ATTACH_FILTER, SO_DETACH_FILTER, SO_LOCK_FILTER and SO_GET_FILTER
(sk_setsockopt, sk_attach_filter, sk_get_filter in net/core), the charge to
sk_omem_alloc that SO_MEMINFO reads, and udp_queue_rcv_one_skb()'s use of the filter:
the checksum verified first (InCsumErrors), a drop counted in InErrors and sk_drops, a
trim to what the program returned (never below the UDP header).

The socket layer hands the UDP layer the struct sock_filter array itself (it copied it
from the user's struct sock_fprog), so optval here is the instructions' bytes.

What 6.18 answered is pinned beside each step; the receive path is also run on the
kernel in a network namespace of its own (fresh counters) where one can be made, and
the errnos and SO_MEMINFO's filter charge on real sockets on 127.0.0.1.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Sequence
from typing import Any

from services.core import errno
from services.core.bpf import (
    BPF_ABS,
    BPF_B,
    BPF_H,
    BPF_JEQ,
    BPF_JMP,
    BPF_K,
    BPF_LD,
    BPF_RET,
    BPF_W,
    SKF_NET_OFF,
    SockFilter,
    emit_sock_filters,
)
from services.core.dropreason import SkbDropReason
from services.core.socket_uapi import (
    SO_ATTACH_FILTER,
    SO_DETACH_FILTER,
    SO_GET_FILTER,
    SO_LOCK_FILTER,
    SO_MEMINFO,
    SOL_SOCKET,
)
from stackemu.udp.v1 import udp_pb2
from tests.services.fakes_udp import (
    LOOPBACK,
    MSG_TRUNC,
    UdpHarness,
    async_test,
    delivered_skb,
    ip,
    real_in_netns,
    real_udp,
    udp_mib,
    udp_segment,
)

LO = LOOPBACK
PEER = ip("127.0.0.2")
OTHER = ip("127.0.0.3")
PORT = 9000
INT = struct.Struct("=i")
MEMINFO = struct.Struct("=9I")
SK_MEMINFO_OPTMEM, SK_MEMINFO_DROPS = 6, 8
BAD_CHECK = 0x1234
LONG = 100  # with its header above CHECKSUM_BREAK (76): not verified by __udp4_lib_rcv


def stmt(code: int, k: int = 0) -> SockFilter:
    return SockFilter(code, 0, 0, k & 0xFFFFFFFF)


def accept_if(load: SockFilter, eq: int) -> list[SockFilter]:
    """load; jeq #eq, accept, drop."""
    return [load, SockFilter(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, eq), ACCEPT, DROP]


ACCEPT = stmt(BPF_RET | BPF_K, 0xFFFFFFFF)
DROP = stmt(BPF_RET | BPF_K, 0)
LDH_12 = stmt(BPF_LD | BPF_H | BPF_ABS, 12)
# ldh [2]: the UDP destination port (skb->data is at the UDP header).
DPORT_IS_9000 = accept_if(stmt(BPF_LD | BPF_H | BPF_ABS, 2), PORT)
SPORT_IS_5555 = accept_if(stmt(BPF_LD | BPF_H | BPF_ABS, 0), 5555)
# ld [SKF_NET_OFF + 12]: the IPv4 source address, from skb_network_header().
SADDR_IS_PEER = accept_if(stmt(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 12), PEER)
# ldb [SKF_NET_OFF + 9]: the IPv4 protocol.
PROTO_IS_UDP = accept_if(stmt(BPF_LD | BPF_B | BPF_ABS, SKF_NET_OFF + 9), 17)

# sk_omem_alloc as SO_MEMINFO reads it on 6.18 after attaching the program (on a real
# UDP socket): bpf_prog_size() of the converted length.
OMEM_6_18 = {"accept": 136, "ldh [12]; ret": 280, "dport": 304}


def datagram(payload: bytes, *, saddr: int = PEER, sport: int = 5555, dport: int = PORT, **kw: int) -> bytes:
    return udp_segment(saddr, LO, sport, dport, payload, **kw)


def reason(r: SkbDropReason) -> str:
    return r.full_name


async def attach(h: UdpHarness, sk: int, prog: Sequence[SockFilter]) -> int:
    return await h.sock.setsockopt(sk, SOL_SOCKET, SO_ATTACH_FILTER, emit_sock_filters(prog))


async def set_int(h: UdpHarness, sk: int, optname: int, value: int = 0) -> int:
    return await h.sock.setsockopt(sk, SOL_SOCKET, optname, INT.pack(value))


async def get_filter(h: UdpHarness, sk: int, optlen: int) -> tuple[int, bytes, int]:
    """getsockopt(SO_GET_FILTER) with this optlen (instructions): (errno, bytes, optlen)."""
    r = await h.sock.call(
        sk, getsockopt=udp_pb2.GetsockoptOp(level=SOL_SOCKET, optname=SO_GET_FILTER, optlen=optlen)
    )
    return int(r.errno), bytes(r.getsockopt.optval), int(r.getsockopt.optlen)


async def meminfo(h: UdpHarness, sk: int) -> tuple[int, ...]:
    err, val = await h.sock.getsockopt(sk, SOL_SOCKET, SO_MEMINFO, MEMINFO.size)
    assert err == 0
    return MEMINFO.unpack(val)


async def receive_all(h: UdpHarness, sk: int) -> list[tuple[int, bytes, int, int]]:
    """Every queued datagram as (length read, its first bytes, msg_flags, sport)."""
    got: list[tuple[int, bytes, int, int]] = []
    for _ in range(100):
        r = await h.sock.recvmsg(sk, 1000)
        if r.errno == errno.EAGAIN:
            return got
        assert r.errno == 0
        got.append((len(r.recvmsg.data), r.recvmsg.data[:4], r.recvmsg.msg_flags, r.recvmsg.sport))
    raise AssertionError("more than 100 datagrams queued")


async def bound(h: UdpHarness, port: int = PORT) -> int:
    sk = await h.sock.create()
    assert await h.sock.bind(sk, "127.0.0.1", port) == 0
    return sk


# The kernel's side of the receive tests, in a namespace of its own.
_REAL_ATTACH = """
import ctypes
class F(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]
class P(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.c_void_p)]
def attach(s, prog):
    arr = (F * len(prog))(*(F(*f) for f in prog))
    s.setsockopt(socket.SOL_SOCKET, 26, bytes(P(len(prog), ctypes.addressof(arr))))
def drops(s):
    return struct.unpack("=9I", s.getsockopt(socket.SOL_SOCKET, 55, 36))[8]
def recv_all(s):
    s.setblocking(False)
    got = []
    for _ in range(100):
        try:
            data, _, flags, addr = s.recvmsg(1000)
        except BlockingIOError:
            return got
        got.append([len(data), data[:4].hex(), flags, addr[1]])
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(("127.0.0.1", 9000))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
raw.bind(("127.0.0.2", 0))
"""


Step = tuple[str, list[SockFilter], list[bytes], dict[str, int], int, list[list[object]]]


def _real_steps(steps: Sequence[Step]) -> dict[str, Any] | None:
    """For each step: attach the program to r (127.0.0.1:9000), send the segments from
    127.0.0.2 over a raw socket, read r dry, then [Udp counters, r's drops, what r got]."""
    script = _REAL_ATTACH + (
        "for name, prog, segs in STEPS:\n"
        "    attach(r, prog)\n"
        "    for seg in segs:\n"
        "        raw.sendto(bytes.fromhex(seg), ('127.0.0.1', 0))\n"
        "    got = recv_all(r)\n"
        "    out[name] = [udp_mib(), drops(r), got]\n"
    ).replace(
        "STEPS", repr([(n, [tuple(f) for f in p], [s.hex() for s in segs]) for n, p, segs, *_ in steps])
    )
    return real_in_netns(script)


async def _check_steps(steps: Sequence[Step], drop_stats: dict[tuple[str, str], int]) -> None:
    """The steps on the kernel (where a namespace can be made), then on the UDP layer:
    each step's counters, sk_drops (SO_MEMINFO's and ListSockets') and reads."""
    real = _real_steps(steps)
    if real is not None:
        for name, _, _, mib, drops, got in steps:
            real_mib, real_drops, real_got = real[name]
            assert (real_mib, real_drops, real_got) == (mib, drops, got), name

    async with UdpHarness() as h:
        sk = await bound(h)
        for name, prog, segs, mib, drops, got in steps:
            assert await attach(h, sk, prog) == 0, name
            await h.deliver(*(delivered_skb(PEER, LO, seg) for seg in segs))
            reads = [[n, data.hex(), flags, sport] for n, data, flags, sport in await receive_all(h, sk)]
            assert (await h.counters(), reads) == (mib, got), name
            assert (await meminfo(h, sk))[SK_MEMINFO_DROPS] == drops, name
            assert (await h.socket_info(sk)).drops == drops, name
        assert await h.drops() == drop_stats


# (name, program attached, segments delivered from 127.0.0.2; then the Udp counters,
# sk_drops and [length, first 4 bytes hex, msg_flags, sport] of each datagram read, as
# 6.18 answered)
RECEIVE_STEPS: list[Step] = [
    (
        "accept-all",
        [ACCEPT],
        [datagram(b"one"), datagram(b"two" * 40)],
        udp_mib(InDatagrams=2),
        0,
        [[3, b"one".hex(), 0, 5555], [120, b"twot".hex(), 0, 5555]],
    ),
    (
        "drop-all",
        [DROP],
        [datagram(b"one"), datagram(b"two"), datagram(b"x" * LONG)],
        udp_mib(InDatagrams=2, InErrors=3),
        3,
        [],
    ),
    (
        "ldh [0]: the source port",
        SPORT_IS_5555,
        [datagram(b"yes", sport=5555), datagram(b"no", sport=6666), datagram(b"yes2", sport=5555)],
        udp_mib(InDatagrams=4, InErrors=4),
        4,
        [[3, b"yes".hex(), 0, 5555], [4, b"yes2".hex(), 0, 5555]],
    ),
    (
        "ldh [2]: the destination port",
        DPORT_IS_9000,
        [datagram(b"to 9000")],
        udp_mib(InDatagrams=5, InErrors=4),
        4,
        [[7, b"to 9".hex(), 0, 5555]],
    ),
    (
        "ldb [net + 9]: the IP protocol",
        PROTO_IS_UDP,
        [datagram(b"udp")],
        udp_mib(InDatagrams=6, InErrors=4),
        4,
        [[3, b"udp".hex(), 0, 5555]],
    ),
    (
        # udp_lib_checksum_complete() before the filter: InCsumErrors and InErrors, and
        # the filter (which would accept) never runs.
        "bad checksum, accept-all filter",
        [ACCEPT],
        [datagram(b"B" * LONG, check=BAD_CHECK)],
        udp_mib(InDatagrams=6, InErrors=5, InCsumErrors=1),
        5,
        [],
    ),
    (
        # A drop-all filter alone would count InErrors only: InCsumErrors says the
        # checksum was verified before the filter ran.
        "bad checksum, drop-all filter",
        [DROP],
        [datagram(b"B" * LONG, check=BAD_CHECK)],
        udp_mib(InDatagrams=6, InErrors=6, InCsumErrors=2),
        6,
        [],
    ),
]


@async_test
async def test_receive_through_filters_matches_the_kernel() -> None:
    await _check_steps(
        RECEIVE_STEPS,
        {
            (reason(SkbDropReason.SOCKET_FILTER), "sk_filter_trim_cap"): 4,
            (reason(SkbDropReason.UDP_CSUM), "udp_queue_rcv_one_skb"): 2,
        },
    )


# Datagrams longer than CHECKSUM_BREAK with a filter attached: the checksum verified
# before the filter ran (__skb_checksum_complete leaves skb->csum_valid), so udp_recvmsg
# does not verify the trimmed datagram again.
TRIM_STEPS: list[Step] = [
    (
        "ret #20 of a short datagram (verified on receipt)",
        [stmt(BPF_RET | BPF_K, 20)],
        [datagram(b"0123456789abcdef")],
        udp_mib(InDatagrams=1),
        0,
        [[12, b"0123".hex(), 0, 5555]],
    ),
    (
        # sk_filter_trim_cap: pskb_trim(skb, max(cap, 12)), cap the UDP header.
        "ret #12 trims to 4 bytes of payload",
        [stmt(BPF_RET | BPF_K, 12)],
        [datagram(bytes(range(LONG)))],
        udp_mib(InDatagrams=2),
        0,
        [[4, "00010203", 0, 5555]],
    ),
    (
        "ret #4 trims to the header, not below",
        [stmt(BPF_RET | BPF_K, 4)],
        [datagram(bytes(range(LONG)))],
        udp_mib(InDatagrams=3),
        0,
        [[0, "", 0, 5555]],
    ),
]


@async_test
async def test_filter_trims_like_the_kernel() -> None:
    await _check_steps(TRIM_STEPS, {})


@async_test
async def test_trimmed_datagram_reads_without_msg_trunc() -> None:
    async with UdpHarness() as h:
        sk = await bound(h)
        assert await attach(h, sk, [stmt(BPF_RET | BPF_K, 12)]) == 0
        await h.deliver(delivered_skb(PEER, LO, datagram(bytes(range(LONG)))))
        await h.queued(sk, 1)
        # udp_recvmsg reads skb->len (trimmed), not the header's length field.
        r = await h.sock.recvmsg(sk, 1000)
        assert (r.errno, r.recvmsg.data, r.recvmsg.ulen, r.recvmsg.msg_flags) == (0, b"\0\1\2\3", 4, 0)
        await h.deliver(delivered_skb(PEER, LO, datagram(bytes(range(LONG)))))
        r = await h.sock.recvmsg(sk, 2)
        assert (r.errno, r.recvmsg.data, r.recvmsg.ulen, r.recvmsg.msg_flags) == (0, b"\0\1", 4, MSG_TRUNC)
        assert await h.counters() == udp_mib(InDatagrams=2)


@async_test
async def test_destination_port_and_source_address_programs() -> None:
    async with UdpHarness() as h:
        on_9000 = await bound(h, PORT)
        on_9001 = await bound(h, PORT + 1)
        # The same program on both: only the socket on 9000 gets datagrams to it.
        assert await attach(h, on_9000, DPORT_IS_9000) == 0
        assert await attach(h, on_9001, DPORT_IS_9000) == 0
        await h.deliver(
            delivered_skb(PEER, LO, datagram(b"a", dport=PORT)),
            delivered_skb(PEER, LO, datagram(b"b", dport=PORT + 1)),
        )
        assert await receive_all(h, on_9000) == [(1, b"a", 0, 5555)]
        assert await receive_all(h, on_9001) == []
        assert await h.counters() == udp_mib(InDatagrams=1, InErrors=1)
        assert (await h.socket_info(on_9000)).drops == 0
        assert (await h.socket_info(on_9001)).drops == 1

        # SKF_NET_OFF reaches the IPv4 header before skb->data.
        assert await attach(h, on_9000, SADDR_IS_PEER) == 0
        await h.deliver(
            delivered_skb(PEER, LO, datagram(b"peer", saddr=PEER)),
            delivered_skb(OTHER, LO, datagram(b"other", saddr=OTHER)),
        )
        assert await receive_all(h, on_9000) == [(4, b"peer", 0, 5555)]
        assert await h.counters() == udp_mib(InDatagrams=2, InErrors=2)
        assert (await h.socket_info(on_9000)).drops == 1


# The kernel's answers on a real socket on 127.0.0.1 (no traffic needed).


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)


def real_attach(s: socket.socket, prog: Sequence[SockFilter]) -> int:
    array = (_SockFilter * max(1, len(prog)))(*(_SockFilter(*f) for f in prog))
    fprog = _SockFprog(len(prog), ctypes.addressof(array) if prog else 0)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    except OSError as e:
        return e.errno or 0
    return 0


def real_set_int(s: socket.socket, optname: int, value: int = 0) -> int:
    v = ctypes.c_int(value)
    if _libc.setsockopt(s.fileno(), SOL_SOCKET, optname, ctypes.byref(v), 4):
        return ctypes.get_errno()
    return 0


def real_get_filter(s: socket.socket, optlen: int) -> tuple[int, bytes, int]:
    buf = ctypes.create_string_buffer(8 * max(optlen, 1))
    length = ctypes.c_uint32(optlen)
    if _libc.getsockopt(s.fileno(), SOL_SOCKET, SO_GET_FILTER, buf, ctypes.byref(length)):
        return ctypes.get_errno(), b"", length.value
    return 0, buf.raw[: 8 * min(length.value, max(optlen, 1))] if optlen else b"", length.value


def real_omem(s: socket.socket) -> int:
    value: int = MEMINFO.unpack(s.getsockopt(SOL_SOCKET, SO_MEMINFO, MEMINFO.size))[SK_MEMINFO_OPTMEM]
    return value


@async_test
async def test_filter_charges_omem_like_the_kernel() -> None:
    progs = {"accept": [ACCEPT], "ldh [12]; ret": [LDH_12, ACCEPT], "dport": DPORT_IS_9000}
    with real_udp() as r:
        real = {}
        for name, prog in progs.items():
            assert real_attach(r, prog) == 0
            real[name] = real_omem(r)
    assert real == OMEM_6_18
    async with UdpHarness() as h:
        sk = await bound(h)
        assert (await meminfo(h, sk))[SK_MEMINFO_OPTMEM] == 0
        for name, prog in progs.items():
            # A replacement moves the charge: the old filter's is given back.
            assert await attach(h, sk, prog) == 0
            assert (await meminfo(h, sk))[SK_MEMINFO_OPTMEM] == OMEM_6_18[name], name
        assert await set_int(h, sk, SO_DETACH_FILTER) == 0
        assert (await meminfo(h, sk))[SK_MEMINFO_OPTMEM] == 0


# (program, errno 6.18 gives SO_ATTACH_FILTER)
BAD_PROGRAMS: list[tuple[str, list[SockFilter], int]] = [
    ("empty", [], errno.EINVAL),
    ("unknown opcode", [stmt(0xFF), DROP], errno.EINVAL),
    ("last is not a return", [DROP, LDH_12], errno.EINVAL),
    ("jump past the end", [SockFilter(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0), DROP], errno.EINVAL),
]


@async_test
async def test_sockopt_errnos_match_the_kernel() -> None:
    seq_real: list[object] = []
    with real_udp() as r, real_udp() as r2:
        seq_real.append(real_set_int(r, SO_DETACH_FILTER))
        seq_real += [real_attach(r, prog) for _, prog, _ in BAD_PROGRAMS]
        seq_real.append(real_get_filter(r, 4))
        seq_real.append(real_attach(r, DPORT_IS_9000))
        seq_real.append(real_set_int(r, SO_LOCK_FILTER, 1))
        seq_real.append(r.getsockopt(SOL_SOCKET, SO_LOCK_FILTER))
        seq_real.append(real_attach(r, [ACCEPT]))
        seq_real.append(real_set_int(r, SO_DETACH_FILTER))
        seq_real.append(real_set_int(r, SO_LOCK_FILTER, 0))
        seq_real.append(real_set_int(r, SO_LOCK_FILTER, 5))
        seq_real.append(r.getsockopt(SOL_SOCKET, SO_LOCK_FILTER))
        seq_real.append(real_get_filter(r, 4))
        # Locked without a filter: EPERM, not ENOENT.
        seq_real.append(real_set_int(r2, SO_LOCK_FILTER, 1))
        seq_real.append(real_set_int(r2, SO_DETACH_FILTER))
        seq_real.append(real_attach(r2, [ACCEPT]))
    prog = emit_sock_filters(DPORT_IS_9000)
    want: list[object] = [
        errno.ENOENT,
        *(e for _, _, e in BAD_PROGRAMS),
        (0, b"", 0),
        0,
        0,
        1,
        errno.EPERM,
        errno.EPERM,
        errno.EPERM,
        0,
        1,
        (0, prog, 4),
        0,
        errno.EPERM,
        errno.EPERM,
    ]
    assert seq_real == want

    async with UdpHarness() as h:
        sk = await bound(h)
        sk2 = await bound(h, PORT + 1)
        seq: list[object] = [await set_int(h, sk, SO_DETACH_FILTER)]
        seq += [await attach(h, sk, p) for _, p, _ in BAD_PROGRAMS]
        seq.append(await get_filter(h, sk, 4))
        seq.append(await attach(h, sk, DPORT_IS_9000))
        seq.append(await set_int(h, sk, SO_LOCK_FILTER, 1))
        seq.append(INT.unpack((await h.sock.getsockopt(sk, SOL_SOCKET, SO_LOCK_FILTER))[1])[0])
        seq.append(await attach(h, sk, [ACCEPT]))
        seq.append(await set_int(h, sk, SO_DETACH_FILTER))
        seq.append(await set_int(h, sk, SO_LOCK_FILTER, 0))
        seq.append(await set_int(h, sk, SO_LOCK_FILTER, 5))
        seq.append(INT.unpack((await h.sock.getsockopt(sk, SOL_SOCKET, SO_LOCK_FILTER))[1])[0])
        seq.append(await get_filter(h, sk, 4))
        seq.append(await set_int(h, sk2, SO_LOCK_FILTER, 1))
        seq.append(await set_int(h, sk2, SO_DETACH_FILTER))
        seq.append(await attach(h, sk2, [ACCEPT]))
        assert seq == want


@async_test
async def test_locked_filter_refuses_an_empty_program() -> None:
    # A NULL filter pointer or length 0 reaches the UDP layer as no instructions at all.
    # sk_attach_filter() looks at SOCK_FILTER_LOCKED before bpf_check_basics_ok(): EPERM
    # while locked, EINVAL otherwise (6.18). sk_setsockopt's optlen < sizeof(int) check
    # is about the user's struct sock_fprog (16 bytes), not the instructions.
    with real_udp() as r:
        real = [real_attach(r, []), real_set_int(r, SO_LOCK_FILTER, 1), real_attach(r, [])]
    assert real == [errno.EINVAL, 0, errno.EPERM]
    async with UdpHarness() as h:
        sk = await bound(h)
        got = [await attach(h, sk, []), await set_int(h, sk, SO_LOCK_FILTER, 1), await attach(h, sk, [])]
        assert got == real


@async_test
async def test_get_filter_counts_instructions() -> None:
    prog = emit_sock_filters(DPORT_IS_9000)
    with real_udp() as r:
        real = [real_get_filter(r, 0), real_get_filter(r, 5)]
        assert real_attach(r, DPORT_IS_9000) == 0
        real += [real_get_filter(r, n) for n in (0, 3, 4, 100)]
        assert real_set_int(r, SO_DETACH_FILTER) == 0
        real.append(real_get_filter(r, 4))
    # 6.18: no filter answers optlen 0; optlen 0 asks for the count; fewer instructions
    # than the program has are EINVAL; else the program and its count.
    want = [
        (0, b"", 0),
        (0, b"", 0),
        (0, b"", 4),
        (errno.EINVAL, b"", 3),
        (0, prog, 4),
        (0, prog, 4),
        (0, b"", 0),
    ]
    assert real == want
    async with UdpHarness() as h:
        sk = await bound(h)
        got = [await get_filter(h, sk, 0), await get_filter(h, sk, 5)]
        assert await attach(h, sk, DPORT_IS_9000) == 0
        got += [await get_filter(h, sk, n) for n in (0, 3, 4, 100)]
        assert await set_int(h, sk, SO_DETACH_FILTER) == 0
        got.append(await get_filter(h, sk, 4))
        # An errno reply carries no optlen: compare the errno alone there.
        assert [*got[:3], (got[3][0], b"", 3), *got[4:]] == want
        assert got[3][0] == errno.EINVAL


@async_test
async def test_optmem_max_limits_the_charge() -> None:
    # Each `ldh [12]` converts to 14 eBPF instructions: 1168 of them and a return fit in
    # net.core.optmem_max 131072, 1169 do not (6.18). A replacement is charged before
    # the old filter is given back, so it must fit beside it.
    fits = [LDH_12] * 1168 + [DROP]
    too_big = [LDH_12] * 1169 + [DROP]
    small = [ACCEPT]
    with open("/proc/sys/net/core/optmem_max") as f:
        host_optmem = int(f.read())
    seq_kernel: list[int] | None = None
    if host_optmem == 131072:
        with real_udp() as r:
            seq_kernel = [
                real_attach(r, too_big),
                real_attach(r, fits),
                real_attach(r, fits),
                real_attach(r, small),
                real_set_int(r, SO_DETACH_FILTER),
                real_omem(r),
                real_attach(r, small),
                real_attach(r, fits),
                real_set_int(r, SO_DETACH_FILTER),
                real_attach(r, fits),
            ]
    # Not even the 1-instruction program (136 bytes) fits beside the big one.
    want = [errno.ENOMEM, 0, errno.ENOMEM, errno.ENOMEM, 0, 0, 0, errno.ENOMEM, 0, 0]
    if seq_kernel is not None:
        assert seq_kernel == want
    async with UdpHarness() as h:
        assert h.layer.sysctl.get_int("net.core.optmem_max") == 131072
        sk = await bound(h)
        seq = [
            await attach(h, sk, too_big),
            await attach(h, sk, fits),
            await attach(h, sk, fits),
            await attach(h, sk, small),
            await set_int(h, sk, SO_DETACH_FILTER),
            (await meminfo(h, sk))[SK_MEMINFO_OPTMEM],
            await attach(h, sk, small),
            await attach(h, sk, fits),
            await set_int(h, sk, SO_DETACH_FILTER),
            await attach(h, sk, fits),
        ]
        assert seq == want
        # What failed left the filter that was there.
        assert (await get_filter(h, sk, 2000))[2] == 1169
