"""services.core.bpf against this machine's kernel (6.18): classic BPF programs attached
with setsockopt(SO_ATTACH_FILTER) to a UDP socket on 127.0.0.1.

Each program gets datagrams from another socket; what the receiver gets (recvfrom with
MSG_TRUNC, which reports the length after the filter's trim) is compared with run_filter
on the very bytes the kernel filtered, captured on lo with AF_PACKET: a 14-byte Ethernet
header of zeros (loopback has one, so SKF_LL_OFF works), the IPv4 header, then the UDP
header at skb->data. The datagrams sent before the filter is detached are the test; a
sentinel from a third socket afterwards marks the end, so "nothing arrived" needs no
timeout.

What 6.18 answered is pinned beside each program (the expected payload lengths), so a
comparison cannot pass because the model and the harness went wrong the same way.

The converted length that sk_filter_charge() charges is read from the kernel in a
network namespace of its own (unshare -n) by lowering net.core.optmem_max until the
attach fails with ENOMEM.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import select
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from services.core import errno
from services.core.bpf import (
    BPF_A,
    BPF_ABS,
    BPF_ADD,
    BPF_ALU,
    BPF_AND,
    BPF_B,
    BPF_DIV,
    BPF_H,
    BPF_IMM,
    BPF_IND,
    BPF_JA,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JMP,
    BPF_JSET,
    BPF_K,
    BPF_LD,
    BPF_LDX,
    BPF_LEN,
    BPF_LSH,
    BPF_MEM,
    BPF_MISC,
    BPF_MOD,
    BPF_MSH,
    BPF_MUL,
    BPF_NEG,
    BPF_OR,
    BPF_RET,
    BPF_RSH,
    BPF_ST,
    BPF_STX,
    BPF_SUB,
    BPF_TAX,
    BPF_TXA,
    BPF_W,
    BPF_X,
    BPF_XOR,
    SKF_AD_ALU_XOR_X,
    SKF_AD_CPU,
    SKF_AD_HATYPE,
    SKF_AD_IFINDEX,
    SKF_AD_MARK,
    SKF_AD_NLATTR,
    SKF_AD_NLATTR_NEST,
    SKF_AD_OFF,
    SKF_AD_PAY_OFFSET,
    SKF_AD_PKTTYPE,
    SKF_AD_PROTOCOL,
    SKF_AD_QUEUE,
    SKF_AD_RANDOM,
    SKF_AD_RXHASH,
    SKF_AD_VLAN_TAG,
    SKF_AD_VLAN_TAG_PRESENT,
    SKF_AD_VLAN_TPID,
    SKF_LL_OFF,
    SKF_NET_OFF,
    AncillaryData,
    BpfProg,
    SockFilter,
    bpf_convert_filter,
    bpf_prepare_filter,
    bpf_prog_size,
    emit_sock_filters,
    filter_verdict,
    parse_tcpdump_dd,
    run_filter,
    sk_filter_charge_ok,
)
from tests.core.test_bpf import TCPDUMP_EN10MB_UDP_PORT_53, TCPDUMP_RAW_UDP_PORT_53

SO_ATTACH_FILTER = 26
SO_GET_FILTER = SO_ATTACH_FILTER
SO_DETACH_FILTER = 27
SO_LOCK_FILTER = 44
SO_MARK = 36
SO_NO_CHECK = 11
ETH_P_ALL = 3
PACKET_HOST = 0
ARPHRD_LOOPBACK = 772
LO = "127.0.0.1"
# On lo, a datagram with this much payload or more is built paged (__ip_append_data with
# NETIF_F_SG past SKB_MAX_ALLOC): SKF_AD_NLATTR then gives 0. Measured on 6.18.
LO_FIRST_NONLINEAR_PAYLOAD = 16005


def _why_not() -> str | None:
    if sys.platform != "linux":
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root for AF_PACKET, SO_MARK and network namespaces"
    return None


_REASON = _why_not()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def stmt(code: int, k: int = 0) -> SockFilter:
    return SockFilter(code, 0, 0, k & 0xFFFFFFFF)


def jump(code: int, k: int, jt: int, jf: int) -> SockFilter:
    return SockFilter(code, jt, jf, k & 0xFFFFFFFF)


def ld_anc(ad: int, size: int = BPF_W) -> SockFilter:
    return stmt(BPF_LD | size | BPF_ABS, SKF_AD_OFF + ad)


ACCEPT = stmt(BPF_RET | BPF_K, 0xFFFFFFFF)
DROP = stmt(BPF_RET | BPF_K, 0)
RET_A = stmt(BPF_RET | BPF_A)


def accept_if(*load: SockFilter, eq: int) -> list[SockFilter]:
    return [*load, jump(BPF_JMP | BPF_JEQ | BPF_K, eq, 0, 1), ACCEPT, DROP]


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


def attach(sk: socket.socket, prog: Sequence[SockFilter], *, pointer: int | None = None) -> int:
    """setsockopt(SO_ATTACH_FILTER): 0 or the errno."""
    array = (_SockFilter * max(1, len(prog)))(*(_SockFilter(*f) for f in prog))
    fprog = _SockFprog(len(prog), ctypes.addressof(array) if pointer is None else pointer)
    try:
        sk.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    except OSError as e:
        assert e.errno is not None
        return e.errno
    return 0


def setsockopt_int(sk: socket.socket, opt: int, value: int = 0, optlen: int = 4) -> int:
    v = ctypes.c_int(value)
    if _libc.setsockopt(sk.fileno(), socket.SOL_SOCKET, opt, ctypes.byref(v), optlen):
        return ctypes.get_errno()
    return 0


def get_filter(sk: socket.socket, blocks: int) -> tuple[int, int, bytes]:
    """getsockopt(SO_GET_FILTER) with optlen `blocks`: (errno, optlen after, bytes)."""
    buf = ctypes.create_string_buffer(8 * max(blocks, 1))
    optlen = ctypes.c_uint32(blocks)
    if _libc.getsockopt(sk.fileno(), socket.SOL_SOCKET, SO_GET_FILTER, buf, ctypes.byref(optlen)):
        return ctypes.get_errno(), optlen.value, b""
    return 0, optlen.value, buf.raw[: 8 * min(optlen.value, max(blocks, 1))]


def model_errno(prog: Sequence[SockFilter], optmem_max: int) -> tuple[int, BpfProg | None]:
    try:
        p = bpf_prepare_filter(prog)
    except OSError as e:
        assert e.errno is not None
        return e.errno, None
    if not sk_filter_charge_ok(0, p.size, optmem_max):
        return errno.ENOMEM, None
    return 0, p


def optmem_max() -> int:
    with open("/proc/sys/net/core/optmem_max") as f:
        return int(f.read())


class LoCapture:
    """AF_PACKET on lo: the frames the receiving side saw (PACKET_HOST)."""

    def __init__(self) -> None:
        self.sk = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sk.bind(("lo", 0))

    def drain(self) -> None:
        while select.select([self.sk], [], [], 0)[0]:
            self.sk.recv(70000)

    def frames(self, sport: int, dport: int, count: int) -> list[bytes]:
        out: list[bytes] = []
        end = time.monotonic() + 5
        while len(out) < count:
            if not select.select([self.sk], [], [], max(0.0, end - time.monotonic()))[0]:
                raise AssertionError(f"captured {len(out)} of {count} frames")
            frame, addr = self.sk.recvfrom(70000)
            if addr[2] != PACKET_HOST or len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
                continue
            ihl = (frame[14] & 15) * 4
            udp = 14 + ihl
            if struct.unpack_from("!HH", frame, udp) == (sport, dport):
                out.append(frame)
        return out


@dataclass
class Run:
    errno: int
    got: list[bytes]
    frames: list[bytes]


@pytest.fixture(scope="module")
def cpu() -> Iterator[int]:
    """SKF_AD_CPU: lo delivers on the sending CPU (no RPS), so pin the test to one."""
    before = os.sched_getaffinity(0)
    pinned = max(before)
    os.sched_setaffinity(0, {pinned})
    yield pinned
    os.sched_setaffinity(0, before)


@pytest.fixture(scope="module")
def lo() -> Iterator[LoCapture]:
    cap = LoCapture()
    yield cap
    cap.sk.close()


def kernel_run(
    lo: LoCapture,
    prog: Sequence[SockFilter],
    payloads: Sequence[bytes],
    *,
    mark: int = 0,
    sport: int = 0,
    no_check: bool = False,
) -> Run:
    lo.drain()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as r,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as z,
    ):
        r.bind((LO, 0))
        r.settimeout(5)
        s.bind((LO, sport))
        z.bind((LO, 0))
        if mark:
            s.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        if no_check:
            s.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        err = attach(r, prog)
        if err:
            return Run(err, [], [])
        for p in payloads:
            s.sendto(p, r.getsockname())
        assert setsockopt_int(r, SO_DETACH_FILTER) == 0
        z.sendto(b"sentinel", r.getsockname())
        got: list[bytes] = []
        for _ in range(len(payloads) + 1):
            data, addr = r.recvfrom(70000, socket.MSG_TRUNC)
            if addr == z.getsockname():
                break
            got.append(data)
        else:
            raise AssertionError("no sentinel")
        frames = lo.frames(s.getsockname()[1], r.getsockname()[1], len(payloads))
    return Run(0, got, frames)


def lo_anc(*, mark: int = 0, cpu: int = 0, nonlinear: bool = False) -> AncillaryData:
    """What a UDP socket's filter sees for a datagram received on lo (6.18)."""
    return AncillaryData(
        protocol=0x0800,
        pkt_type=PACKET_HOST,
        ifindex=1,
        hatype=ARPHRD_LOOPBACK,
        mark=mark,
        cpu=cpu,
        pay_offset=8,
        nonlinear=nonlinear,
    )


def model_run(prog: BpfProg, frames: Sequence[bytes], *, mark: int = 0, cpu: int = 0) -> list[bytes]:
    out: list[bytes] = []
    for frame in frames:
        data = 14 + (frame[14] & 15) * 4
        (ulen,) = struct.unpack_from("!H", frame, data + 4)
        anc = lo_anc(mark=mark, cpu=cpu, nonlinear=ulen - 8 >= LO_FIRST_NONLINEAR_PAYLOAD)
        res = run_filter(prog, frame, data, ulen, network=14, mac=0, anc=anc)
        keep = filter_verdict(res, ulen, 8)
        if keep is not None:
            out.append(frame[data + 8 : data + keep])
    return out


def nla(attrtype: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("<HH", n, attrtype) + payload + bytes(-n % 4)


# Payloads every program gets unless it brings its own.
PAYLOADS = [b"", b"a", b"0123456789", bytes(range(256)) * 4]
NLA_PAYLOAD = nla(1, bytes(96)) + nla(2, b"two!") + nla(0x4005, nla(7, b"in") + nla(9, b"nine"))

# (name, program, payloads or None for PAYLOADS, what 6.18 delivered: payload lengths)
PROGRAMS: list[tuple[str, list[SockFilter], list[bytes] | None, list[int]]] = [
    ("accept all", [ACCEPT], None, [0, 1, 10, 1024]),
    ("drop all", [DROP], None, []),
    # sk_filter_trim_cap keeps max(cap=8, res): the UDP header always stays.
    ("ret #12", [stmt(BPF_RET | BPF_K, 12)], None, [0, 1, 4, 4]),
    ("ret #3", [stmt(BPF_RET | BPF_K, 3)], None, [0, 0, 0, 0]),
    ("ret #1", [stmt(BPF_RET | BPF_K, 1)], None, [0, 0, 0, 0]),
    (
        "len - 3",
        [stmt(BPF_LD | BPF_W | BPF_LEN), stmt(BPF_ALU | BPF_SUB | BPF_K, 3), RET_A],
        None,
        [0, 0, 7, 1021],
    ),
    (
        "ldx len, txa",
        [
            stmt(BPF_LDX | BPF_W | BPF_LEN),
            stmt(BPF_MISC | BPF_TXA),
            stmt(BPF_ALU | BPF_SUB | BPF_K, 1),
            RET_A,
        ],
        None,
        [0, 0, 9, 1023],
    ),
    # The UDP header: offset 0 is skb->data.
    (
        "ldh [4] is the UDP length",
        [stmt(BPF_LD | BPF_H | BPF_ABS, 4), stmt(BPF_ALU | BPF_SUB | BPF_K, 2), RET_A],
        None,
        [0, 0, 8, 1022],
    ),
    ("ld [k] just inside", [stmt(BPF_LD | BPF_W | BPF_ABS, 14), ACCEPT], None, [10, 1024]),
    ("ld [k] one past", [stmt(BPF_LD | BPF_W | BPF_ABS, 15), ACCEPT], None, [1024]),
    ("ldb [k] past len", [stmt(BPF_LD | BPF_B | BPF_ABS, 9), ACCEPT], None, [10, 1024]),
    ("ld [0x7fffffff]", [stmt(BPF_LD | BPF_W | BPF_ABS, 0x7FFFFFFF), ACCEPT], None, []),
    # SKF_NET_OFF: the IPv4 header 20 bytes before skb->data.
    (
        "ldb [net+9] == 17",
        accept_if(stmt(BPF_LD | BPF_B | BPF_ABS, SKF_NET_OFF + 9), eq=17),
        None,
        [0, 1, 10, 1024],
    ),
    (
        "ldb [net] == 0x45",
        accept_if(stmt(BPF_LD | BPF_B | BPF_ABS, SKF_NET_OFF), eq=0x45),
        None,
        [0, 1, 10, 1024],
    ),
    (
        "ld [net+16] daddr",
        accept_if(stmt(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 16), eq=0x7F000001),
        None,
        [0, 1, 10, 1024],
    ),
    (
        "ldh [net+2] tot_len - 30",
        [stmt(BPF_LD | BPF_H | BPF_ABS, SKF_NET_OFF + 2), stmt(BPF_ALU | BPF_SUB | BPF_K, 30), RET_A],
        None,
        [0, 1, 0, 1014],
    ),
    ("ldb [net+8] ttl", [stmt(BPF_LD | BPF_B | BPF_ABS, SKF_NET_OFF + 8), RET_A], None, [0, 1, 10, 56]),
    (
        "ld [net+24] past a bare header",
        [stmt(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 25), ACCEPT],
        None,
        [1, 10, 1024],
    ),
    (
        "msh net: 4*([net]&0xf)",
        [stmt(BPF_LDX | BPF_B | BPF_MSH, SKF_NET_OFF), stmt(BPF_MISC | BPF_TXA), RET_A],
        None,
        [0, 1, 10, 12],
    ),
    ("msh past the end", [stmt(BPF_LDX | BPF_B | BPF_MSH, 30), ACCEPT], None, [1024]),
    # SKF_LL_OFF: lo's Ethernet header of zeros with type 0x0800.
    (
        "ldh [ll+12] == 0x0800",
        accept_if(stmt(BPF_LD | BPF_H | BPF_ABS, SKF_LL_OFF + 12), eq=0x0800),
        None,
        [0, 1, 10, 1024],
    ),
    (
        "ld [ll+6] == 0",
        accept_if(stmt(BPF_LD | BPF_W | BPF_ABS, SKF_LL_OFF + 6), eq=0),
        None,
        [0, 1, 10, 1024],
    ),
    (
        "ld [ll+12] spans into IP",
        accept_if(stmt(BPF_LD | BPF_W | BPF_ABS, SKF_LL_OFF + 12), eq=0x08004500),
        None,
        [0, 1, 10, 1024],
    ),
    ("ld [ll-1]", [stmt(BPF_LD | BPF_W | BPF_ABS, SKF_LL_OFF - 1), ACCEPT], None, []),
    ("ld [-0x80000000]", [stmt(BPF_LD | BPF_W | BPF_ABS, -0x80000000), ACCEPT], None, []),
    # BPF_IND: X + k wraps modulo 2**32 and is read as signed.
    (
        "ldh [x+net] with x=20 is the source port",
        [
            stmt(BPF_LD | BPF_H | BPF_ABS, 0),
            stmt(BPF_ST, 0),
            stmt(BPF_LDX | BPF_IMM, 20),
            stmt(BPF_LD | BPF_H | BPF_IND, SKF_NET_OFF),
            stmt(BPF_LDX | BPF_MEM, 0),
            jump(BPF_JMP | BPF_JEQ | BPF_X, 0, 0, 1),
            ACCEPT,
            DROP,
        ],
        None,
        [0, 1, 10, 1024],
    ),
    (
        "ldh [x+3] with x=-1 is offset 2",
        [
            stmt(BPF_LD | BPF_H | BPF_ABS, 2),
            stmt(BPF_ST, 3),
            stmt(BPF_LDX | BPF_IMM, 0xFFFFFFFF),
            stmt(BPF_LD | BPF_H | BPF_IND, 3),
            stmt(BPF_LDX | BPF_MEM, 3),
            jump(BPF_JMP | BPF_JEQ | BPF_X, 0, 0, 1),
            ACCEPT,
            DROP,
        ],
        None,
        [0, 1, 10, 1024],
    ),
    ("ldb [x-1] with x=0", [stmt(BPF_LD | BPF_B | BPF_IND, -1), ACCEPT], None, []),
    (
        "ldb [x+len-1] is the last byte",
        [stmt(BPF_LDX | BPF_W | BPF_LEN), stmt(BPF_LD | BPF_B | BPF_IND, -1), RET_A],
        None,
        [0, 1, 10, 247],
    ),
    ("ldb [x+len]", [stmt(BPF_LDX | BPF_W | BPF_LEN), stmt(BPF_LD | BPF_B | BPF_IND, 0), ACCEPT], None, []),
    # ALU: 32-bit unsigned, division by X == 0 returns 0, shifts by X use X & 31.
    (
        "div x by 0",
        [stmt(BPF_LD | BPF_IMM, 100), stmt(BPF_ALU | BPF_DIV | BPF_X), ACCEPT],
        None,
        [],
    ),
    ("mod x by 0", [stmt(BPF_LD | BPF_IMM, 100), stmt(BPF_ALU | BPF_MOD | BPF_X), ACCEPT], None, []),
    (
        "div and mod",
        [
            stmt(BPF_LD | BPF_W | BPF_LEN),
            stmt(BPF_ALU | BPF_MUL | BPF_K, 7),
            stmt(BPF_ALU | BPF_DIV | BPF_K, 3),
            stmt(BPF_LDX | BPF_IMM, 1000),
            stmt(BPF_ALU | BPF_MOD | BPF_X),
            RET_A,
        ],
        None,
        [0, 1, 10, 400],
    ),
    (
        "lsh x by 33 is lsh 1",
        [stmt(BPF_LD | BPF_IMM, 30), stmt(BPF_LDX | BPF_IMM, 33), stmt(BPF_ALU | BPF_LSH | BPF_X), RET_A],
        None,
        [0, 1, 10, 52],
    ),
    (
        "rsh x by 34 is rsh 2",
        [stmt(BPF_LD | BPF_IMM, 240), stmt(BPF_LDX | BPF_IMM, 34), stmt(BPF_ALU | BPF_RSH | BPF_X), RET_A],
        None,
        [0, 1, 10, 52],
    ),
    ("neg", [stmt(BPF_LD | BPF_IMM, -50), stmt(BPF_ALU | BPF_NEG), RET_A], None, [0, 1, 10, 42]),
    (
        "mul wraps",
        [stmt(BPF_LD | BPF_IMM, 0x80000020), stmt(BPF_ALU | BPF_MUL | BPF_K, 2), RET_A],
        None,
        [0, 1, 10, 56],
    ),
    (
        "sub wraps",
        [stmt(BPF_LD | BPF_IMM, 5), stmt(BPF_ALU | BPF_SUB | BPF_K, 10), RET_A],
        None,
        [0, 1, 10, 1024],
    ),
    (
        "and or xor lsh rsh",
        [
            stmt(BPF_LD | BPF_IMM, 0xF0F0),
            stmt(BPF_ALU | BPF_AND | BPF_K, 0xFF00),
            stmt(BPF_ALU | BPF_OR | BPF_K, 0x0F),
            stmt(BPF_ALU | BPF_XOR | BPF_K, 0x3),
            stmt(BPF_ALU | BPF_RSH | BPF_K, 6),
            stmt(BPF_ALU | BPF_LSH | BPF_K, 1),
            stmt(BPF_LDX | BPF_IMM, 1),
            stmt(BPF_ALU | BPF_ADD | BPF_X),
            RET_A,
        ],
        None,
        [0, 1, 10, 1024],
    ),
    # Jumps compare unsigned 32-bit values, negative k included.
    (
        "jgt/jge/jset with k >= 2**31",
        [
            stmt(BPF_LD | BPF_IMM, 0x90000000),
            jump(BPF_JMP | BPF_JGT | BPF_K, 0x80000000, 0, 4),
            jump(BPF_JMP | BPF_JGE | BPF_K, 0x90000001, 3, 0),
            jump(BPF_JMP | BPF_JSET | BPF_K, 0x10000000, 0, 2),
            stmt(BPF_LDX | BPF_IMM, 0x90000000),
            jump(BPF_JMP | BPF_JEQ | BPF_X, 0, 1, 0),
            DROP,
            stmt(BPF_RET | BPF_K, 20),
        ],
        None,
        [0, 1, 10, 12],
    ),
    (
        "ja over code",
        [stmt(BPF_JMP | BPF_JA, 1), DROP, stmt(BPF_ST, 15), stmt(BPF_LD | BPF_MEM, 15), ACCEPT],
        None,
        [0, 1, 10, 1024],
    ),
    # Ancillary loads: the size of the load does not matter.
    ("protocol", accept_if(ld_anc(SKF_AD_PROTOCOL), eq=0x0800), None, [0, 1, 10, 1024]),
    (
        "ldb protocol is not truncated",
        accept_if(ld_anc(SKF_AD_PROTOCOL, BPF_B), eq=0x0800),
        None,
        [0, 1, 10, 1024],
    ),
    ("pkttype", accept_if(ld_anc(SKF_AD_PKTTYPE), eq=PACKET_HOST), None, [0, 1, 10, 1024]),
    ("ifindex of lo", accept_if(ld_anc(SKF_AD_IFINDEX, BPF_H), eq=1), None, [0, 1, 10, 1024]),
    ("hatype", accept_if(ld_anc(SKF_AD_HATYPE), eq=ARPHRD_LOOPBACK), None, [0, 1, 10, 1024]),
    ("queue", accept_if(ld_anc(SKF_AD_QUEUE), eq=0), None, [0, 1, 10, 1024]),
    ("rxhash of an unconnected sender", accept_if(ld_anc(SKF_AD_RXHASH), eq=0), None, [0, 1, 10, 1024]),
    ("vlan tag", accept_if(ld_anc(SKF_AD_VLAN_TAG), eq=0), None, [0, 1, 10, 1024]),
    ("vlan tag present", accept_if(ld_anc(SKF_AD_VLAN_TAG_PRESENT), eq=0), None, [0, 1, 10, 1024]),
    ("vlan tpid", accept_if(ld_anc(SKF_AD_VLAN_TPID), eq=0), None, [0, 1, 10, 1024]),
    ("pay offset", accept_if(ld_anc(SKF_AD_PAY_OFFSET), eq=8), None, [0, 1, 10, 1024]),
    (
        "alu xor x",
        [stmt(BPF_LD | BPF_IMM, 0x3C), stmt(BPF_LDX | BPF_IMM, 0x0F), ld_anc(SKF_AD_ALU_XOR_X), RET_A],
        None,
        [0, 1, 10, 43],
    ),
    (
        "random and 0",
        [
            ld_anc(SKF_AD_RANDOM),
            stmt(BPF_ALU | BPF_AND | BPF_K, 0),
            stmt(BPF_ALU | BPF_ADD | BPF_K, 20),
            RET_A,
        ],
        None,
        [0, 1, 10, 12],
    ),
    (
        "nlattr type 2",
        [stmt(BPF_LD | BPF_IMM, 8), stmt(BPF_LDX | BPF_IMM, 2), ld_anc(SKF_AD_NLATTR), RET_A],
        [
            NLA_PAYLOAD,
            NLA_PAYLOAD[:100],
            NLA_PAYLOAD + bytes(16000 - len(NLA_PAYLOAD)),
            NLA_PAYLOAD.ljust(16005, b"z"),
        ],
        [100, 100],
    ),
    (
        "nlattr type 5 (flags masked)",
        [stmt(BPF_LD | BPF_IMM, 8), stmt(BPF_LDX | BPF_IMM, 5), ld_anc(SKF_AD_NLATTR), RET_A],
        [NLA_PAYLOAD],
        [108],
    ),
    (
        "nlattr_nest type 9",
        [
            stmt(BPF_LD | BPF_IMM, 8),
            stmt(BPF_LDX | BPF_IMM, 5),
            ld_anc(SKF_AD_NLATTR),
            jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 0),
            stmt(BPF_LDX | BPF_IMM, 9),
            ld_anc(SKF_AD_NLATTR_NEST),
            RET_A,
        ],
        [NLA_PAYLOAD, NLA_PAYLOAD[:112]],
        [120],
    ),
]


@pytest.mark.parametrize(
    ("prog", "payloads", "lengths"), [p[1:] for p in PROGRAMS], ids=[p[0] for p in PROGRAMS]
)
def test_program_agrees_with_kernel(lo, cpu, prog, payloads, lengths):
    payloads = PAYLOADS if payloads is None else payloads
    run = kernel_run(lo, prog, payloads)
    assert run.errno == 0
    assert model_run(bpf_prepare_filter(prog), run.frames, cpu=cpu) == run.got
    assert [len(g) for g in run.got] == lengths


def test_mark_and_cpu(lo, cpu):
    prog = [ld_anc(SKF_AD_MARK), stmt(BPF_ALU | BPF_ADD | BPF_K, 8), RET_A]
    run = kernel_run(lo, prog, [bytes(100)], mark=77)
    assert [len(g) for g in run.got] == [77]
    assert model_run(bpf_prepare_filter(prog), run.frames, mark=77, cpu=cpu) == run.got
    prog = [ld_anc(SKF_AD_CPU), stmt(BPF_ALU | BPF_ADD | BPF_K, 58), RET_A]
    run = kernel_run(lo, prog, [bytes(100)])
    assert [len(g) for g in run.got] == [50 + cpu]
    assert model_run(bpf_prepare_filter(prog), run.frames, cpu=cpu) == run.got


def test_ifindex_without_device_keeps_a():
    # skb->dev NULL cannot be made from user space; the conversion returns A then.
    prog = bpf_prepare_filter([stmt(BPF_LD | BPF_IMM, 33), ld_anc(SKF_AD_IFINDEX), DROP])
    assert run_filter(prog, bytes(8), 0, 8, network=0, mac=None, anc=AncillaryData()) == 33


def _en10mb_match(n: int) -> bytes:
    """A payload that an Ethernet `udp port 53` program accepts when it reads the UDP
    header as offset 0: [12] is payload[4], [23] payload[15], the IHL nibble payload[6]."""
    p = bytearray(n)
    p[4:6] = b"\x08\x00"
    p[6] = 0x45
    p[15] = 17
    p[26:28] = (53).to_bytes(2, "big")
    return bytes(p[:n])


def _raw_match(n: int) -> bytes:
    """The RAW program reads the UDP header as IPv4: the source port's high byte must be
    0x45 (version and IHL), the checksum field (frag_off) 0, payload[1] the protocol 17
    and payload[12:14] the port at 4*5."""
    p = bytearray(n)
    p[1] = 17
    p[12:14] = (53).to_bytes(2, "big")
    return bytes(p[:n])


def _tcpdump(dlt: str, expr: str) -> str | None:
    if shutil.which("tcpdump") is None:
        return None
    return subprocess.run(
        ["tcpdump", "-dd", "-y", dlt, expr], capture_output=True, text=True, check=True, timeout=30
    ).stdout


@pytest.mark.parametrize("source", ["pinned", "generated"])
def test_tcpdump_en10mb_program_reads_the_udp_header_as_ethernet(lo, cpu, source):
    text = TCPDUMP_EN10MB_UDP_PORT_53 if source == "pinned" else _tcpdump("EN10MB", "udp port 53")
    if text is None:
        pytest.skip("tcpdump is not installed")
    prog = parse_tcpdump_dd(text)
    payloads = [bytes(64), _en10mb_match(64), _en10mb_match(27), _en10mb_match(28), b"x" * 100]
    run = kernel_run(lo, prog, payloads)
    # 0x40000 from the ret keeps everything; short or other payloads drop.
    assert [len(g) for g in run.got] == [64, 28]
    assert model_run(bpf_prepare_filter(prog), run.frames, cpu=cpu) == run.got


@pytest.mark.parametrize("source", ["pinned", "generated"])
def test_tcpdump_raw_program_reads_the_udp_header_as_ipv4(lo, cpu, source):
    text = TCPDUMP_RAW_UDP_PORT_53 if source == "pinned" else _tcpdump("RAW", "udp port 53")
    if text is None:
        pytest.skip("tcpdump is not installed")
    prog = parse_tcpdump_dd(text)
    payloads = [_raw_match(20), _raw_match(13), bytes(20)]
    for sport in range(0x4580, 0x45FF):
        try:
            run = kernel_run(lo, prog, payloads, sport=sport, no_check=True)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                continue
            raise
        break
    else:
        pytest.skip("no free source port 0x45xx")
    assert [len(g) for g in run.got] == [20]
    assert model_run(bpf_prepare_filter(prog), run.frames, cpu=cpu) == run.got


def _random_program(rng: random.Random) -> list[SockFilter]:
    """A program the checker accepts, mostly: loads anywhere (packet, SKF_NET_OFF,
    SKF_LL_OFF, BPF_IND with X), ALU with small and wrapping constants, short jumps, the
    scratch memory (stored first), and a return of A kept small enough to be seen."""
    body: list[SockFilter] = [stmt(BPF_ST, 0), stmt(BPF_STX, 1)]
    n = rng.randint(1, 14)
    for _ in range(n):
        kind = rng.randrange(10)
        size = rng.choice((BPF_W, BPF_H, BPF_B))
        if kind == 0:
            body.append(stmt(BPF_LD | size | BPF_ABS, rng.choice((0, 2, 4, 8, 9, 12, 30, 1020, 1023))))
        elif kind == 1:
            base = rng.choice((SKF_NET_OFF, SKF_LL_OFF))
            body.append(stmt(BPF_LD | size | BPF_ABS, base + rng.choice((0, 1, 2, 8, 9, 12, 16, 20, 34, 40))))
        elif kind == 2:
            body.append(
                stmt(BPF_LD | size | BPF_IND, rng.choice((0, 1, -1, -8, 6, SKF_NET_OFF, SKF_NET_OFF + 20)))
            )
        elif kind == 3:
            body.append(stmt(BPF_LDX | BPF_B | BPF_MSH, rng.choice((0, 1, 8, SKF_NET_OFF, SKF_LL_OFF + 14))))
        elif kind == 4:
            op = rng.choice(
                (BPF_ADD, BPF_SUB, BPF_MUL, BPF_OR, BPF_AND, BPF_XOR, BPF_DIV, BPF_MOD, BPF_LSH, BPF_RSH)
            )
            if rng.random() < 0.4:
                body.append(stmt(BPF_ALU | op | BPF_X))
            elif op in (BPF_LSH, BPF_RSH):
                body.append(stmt(BPF_ALU | op | BPF_K, rng.randrange(32)))
            else:
                body.append(stmt(BPF_ALU | op | BPF_K, rng.choice((1, 3, 7, 0xFF, 0x80000000, 0xFFFFFFF0))))
        elif kind == 5:
            body.append(
                stmt(rng.choice((BPF_LD, BPF_LDX)) | BPF_IMM, rng.choice((0, 1, 20, 0xFFFFFFFF, 0xFFF00000)))
            )
        elif kind == 6:
            body.append(
                rng.choice(
                    (
                        stmt(BPF_MISC | BPF_TAX),
                        stmt(BPF_MISC | BPF_TXA),
                        stmt(BPF_ALU | BPF_NEG),
                        stmt(BPF_LD | BPF_W | BPF_LEN),
                    )
                )
            )
        elif kind == 7:
            body.append(
                stmt(rng.choice((BPF_ST, BPF_STX, BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM)), rng.randrange(2))
            )
        elif kind == 8:
            op = rng.choice((BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET))
            src = rng.choice((BPF_K, BPF_X))
            body.append(
                jump(
                    BPF_JMP | op | src,
                    rng.choice((0, 1, 17, 0x45, 0x800, 0x80000000)),
                    rng.randrange(3),
                    rng.randrange(3),
                )
            )
        else:
            ad = (SKF_AD_PROTOCOL, SKF_AD_PKTTYPE, SKF_AD_IFINDEX, SKF_AD_HATYPE, SKF_AD_MARK, SKF_AD_CPU)
            body.append(ld_anc(rng.choice((*ad, SKF_AD_PAY_OFFSET, SKF_AD_ALU_XOR_X))))
    # Jumps land inside the tail, whose returns make the result visible.
    tail = [
        stmt(BPF_ALU | BPF_AND | BPF_K, 0x3FF),
        RET_A,
        stmt(BPF_RET | BPF_K, rng.choice((0, 9, 30, 0xFFFF))),
    ]
    return body + tail


def test_random_programs_agree_with_kernel(lo, cpu):
    rng = random.Random(20240618)
    payloads = [b"", b"\x45" + bytes(range(40)), bytes(range(256)) * 3, b"\x08\x00" * 20]
    seen: set[int] = set()
    for _ in range(150):
        prog = _random_program(rng)
        want, model = model_errno(prog, optmem_max())
        run = kernel_run(lo, prog, payloads)
        assert run.errno == want == 0, prog
        assert model is not None
        assert model_run(model, run.frames, cpu=cpu) == run.got, prog
        seen.update(len(g) for g in run.got)
    # The programs drop, trim and keep whole: lengths of every kind were seen.
    assert len(seen) > 20


# (name, program, errno of 6.18 with optmem_max 131072)
BAD_PROGRAMS: list[tuple[str, list[SockFilter], int]] = [
    ("empty", [], errno.EINVAL),
    ("4097 instructions", [DROP] * 4097, errno.EINVAL),
    ("4096 returns", [DROP] * 4096, 0),
    ("unknown opcode", [stmt(0xFF), DROP], errno.EINVAL),
    ("ret x", [stmt(BPF_RET | BPF_X)], errno.EINVAL),
    ("seccomp's ldx [k]", [stmt(BPF_LDX | BPF_W | BPF_ABS), DROP], errno.EINVAL),
    ("ld |h imm", [stmt(BPF_LD | BPF_H | BPF_IMM), DROP], errno.EINVAL),
    ("jt out of range", [jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0), DROP], errno.EINVAL),
    ("jf out of range", [jump(BPF_JMP | BPF_JSET | BPF_X, 0, 0, 1), DROP], errno.EINVAL),
    ("ja out of range", [stmt(BPF_JMP | BPF_JA, 1), DROP], errno.EINVAL),
    ("ja to the last", [stmt(BPF_JMP | BPF_JA, 1), stmt(BPF_LD | BPF_MEM, 9), DROP], 0),
    ("div by constant 0", [stmt(BPF_ALU | BPF_DIV | BPF_K, 0), DROP], errno.EINVAL),
    ("mod by constant 0", [stmt(BPF_ALU | BPF_MOD | BPF_K, 0), DROP], errno.EINVAL),
    ("lsh by 32", [stmt(BPF_ALU | BPF_LSH | BPF_K, 32), DROP], errno.EINVAL),
    ("rsh by 31", [stmt(BPF_ALU | BPF_RSH | BPF_K, 31), DROP], 0),
    ("st M[16]", [stmt(BPF_ST, 16), DROP], errno.EINVAL),
    ("ldx M[16]", [stmt(BPF_ST, 15), stmt(BPF_LDX | BPF_MEM, 16), DROP], errno.EINVAL),
    ("ld M[0] before a store", [stmt(BPF_LD | BPF_MEM, 0), DROP], errno.EINVAL),
    (
        "store on one branch only",
        [jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1), stmt(BPF_ST, 2), stmt(BPF_LD | BPF_MEM, 2), DROP],
        errno.EINVAL,
    ),
    (
        "store on both branches",
        [
            jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2),
            stmt(BPF_ST, 2),
            stmt(BPF_JMP | BPF_JA, 1),
            stmt(BPF_STX, 2),
            stmt(BPF_LD | BPF_MEM, 2),
            DROP,
        ],
        0,
    ),
    ("last is not a return", [DROP, stmt(BPF_LD | BPF_IMM, 1)], errno.EINVAL),
    ("unknown ancillary", [ld_anc(SKF_AD_VLAN_TPID + 4), DROP], errno.EINVAL),
    ("ancillary off by 2", [ld_anc(2), DROP], errno.EINVAL),
    ("ld [-1]", [stmt(BPF_LD | BPF_B | BPF_ABS, -1), DROP], errno.EINVAL),
    ("ldb [x-1] passes", [stmt(BPF_LD | BPF_B | BPF_IND, -1), DROP], 0),
    ("msh at -1 passes", [stmt(BPF_LDX | BPF_B | BPF_MSH, -1), DROP], 0),
    ("ld [ad_off-1] passes", [stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF - 1), DROP], 0),
    # bpf_convert_filter: each `ldh [12]` becomes 14 eBPF instructions; a ja over 2341
    # of them needs an offset past S16_MAX. 2340 converts, but needs 262256 bytes.
    (
        "ja over 2341 loads",
        [stmt(BPF_JMP | BPF_JA, 2341)] + [stmt(BPF_LD | BPF_H | BPF_ABS, 12)] * 2341 + [DROP],
        errno.EINVAL,
    ),
    (
        "ja over 2340 loads",
        [stmt(BPF_JMP | BPF_JA, 2340)] + [stmt(BPF_LD | BPF_H | BPF_ABS, 12)] * 2340 + [DROP],
        errno.ENOMEM,
    ),
    ("4096 loads", [stmt(BPF_LD | BPF_H | BPF_ABS, 12)] * 4095 + [DROP], errno.ENOMEM),
    ("1168 loads fit", [stmt(BPF_LD | BPF_H | BPF_ABS, 12)] * 1168 + [DROP], 0),
    ("1169 loads do not", [stmt(BPF_LD | BPF_H | BPF_ABS, 12)] * 1169 + [DROP], errno.ENOMEM),
]


@pytest.mark.parametrize(("prog", "want"), [p[1:] for p in BAD_PROGRAMS], ids=[p[0] for p in BAD_PROGRAMS])
def test_attach_errno_agrees_with_kernel(prog, want):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as r:
        got = attach(r, prog)
    assert got == model_errno(prog, optmem_max())[0]
    if optmem_max() == 131072:
        assert got == want


def test_sockopt_answers():
    prog = [stmt(BPF_LD | BPF_H | BPF_ABS, 12), jump(BPF_JMP | BPF_JEQ | BPF_K, 0x800, 0, 1), ACCEPT, DROP]
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as r,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as r2,
    ):
        # No filter: SO_GET_FILTER answers 0 with optlen 0; detaching is ENOENT.
        assert get_filter(r, 0) == (0, 0, b"")
        assert get_filter(r, 5) == (0, 0, b"")
        assert setsockopt_int(r, SO_DETACH_FILTER) == errno.ENOENT
        assert setsockopt_int(r, SO_DETACH_FILTER, optlen=0) == errno.EINVAL
        # optlen must be sizeof(struct sock_fprog) exactly; the pointer is read after.
        assert setsockopt_int(r, SO_ATTACH_FILTER, optlen=8) == errno.EINVAL
        assert attach(r, prog, pointer=0) == errno.EINVAL
        assert attach(r, prog, pointer=8) == errno.EFAULT
        assert attach(r, prog) == 0
        # optlen counts instructions, not bytes: 0 asks for the count.
        assert get_filter(r, 0)[:2] == (0, 4)
        assert get_filter(r, 3)[:2] == (errno.EINVAL, 3)
        assert get_filter(r, 4) == (0, 4, emit_sock_filters(prog))
        assert get_filter(r, 100) == (0, 4, emit_sock_filters(prog))
        # So Python's getsockopt(..., buflen) hands back only `count` bytes.
        assert r.getsockopt(socket.SOL_SOCKET, SO_GET_FILTER, 64) == emit_sock_filters(prog)[:4]
        assert r.getsockopt(socket.SOL_SOCKET, SO_LOCK_FILTER) == 0
        assert setsockopt_int(r, SO_LOCK_FILTER, 1) == 0
        assert r.getsockopt(socket.SOL_SOCKET, SO_LOCK_FILTER) == 1
        assert attach(r, [ACCEPT]) == errno.EPERM
        assert attach(r, [], pointer=0) == errno.EPERM
        assert setsockopt_int(r, SO_ATTACH_FILTER, optlen=8) == errno.EINVAL
        assert setsockopt_int(r, SO_DETACH_FILTER) == errno.EPERM
        assert setsockopt_int(r, SO_LOCK_FILTER, 0) == errno.EPERM
        assert setsockopt_int(r, SO_LOCK_FILTER, 5) == 0
        assert get_filter(r, 4) == (0, 4, emit_sock_filters(prog))
        # Locked without a filter: still EPERM, not ENOENT.
        assert setsockopt_int(r2, SO_LOCK_FILTER, 1) == 0
        assert setsockopt_int(r2, SO_DETACH_FILTER) == errno.EPERM
        assert attach(r2, prog) == errno.EPERM


def test_trimmed_length_is_what_recvmsg_sees(lo):
    prog = [stmt(BPF_RET | BPF_K, 12)]
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as r,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
    ):
        r.bind((LO, 0))
        r.settimeout(5)
        assert attach(r, prog) == 0
        s.sendto(b"0123456789", r.getsockname())
        data, _, flags, _ = r.recvmsg(100)
        # udp_recvmsg reads skb->len (trimmed), not the header's length field: no MSG_TRUNC.
        assert (data, flags) == (b"0123", 0)
        s.sendto(b"0123456789", r.getsockname())
        buf = bytearray(2)
        assert (r.recv_into(buf, 2, socket.MSG_TRUNC), bytes(buf)) == (4, b"01")
        s.sendto(b"0123456789", r.getsockname())
        data, _, flags, _ = r.recvmsg(2)
        assert (data, flags) == (b"01", socket.MSG_TRUNC)


# Run in a network namespace of its own (unshare -n): for each program, the smallest
# optmem_max at which the attach succeeds is bpf_prog_size(len) + 1 (sk_omem_alloc of a
# new socket is 0), which gives the converted length.
AGENT = r"""
import ctypes, json, socket, sys
u8, u16, u32 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32
class F(ctypes.Structure):
    _fields_ = [("code", u16), ("jt", u8), ("jf", u8), ("k", u32)]
class P(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.c_void_p)]
def attach(sk, prog):
    a = (F * len(prog))(*(F(*f) for f in prog))
    try:
        sk.setsockopt(socket.SOL_SOCKET, 26, bytes(P(len(prog), ctypes.addressof(a))))
    except OSError as e:
        return e.errno
    return 0
def optmem(v):
    with open("/proc/sys/net/core/optmem_max", "w") as f:
        f.write(str(v))
def ok(prog, v):
    optmem(v)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return attach(s, prog)
out = []
for prog in json.load(sys.stdin):
    lo, hi = 1, 1 << 22
    if ok(prog, hi):
        out.append(None)
        continue
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(prog, mid) == 0:
            hi = mid
        else:
            lo = mid + 1
    out.append(lo - 1)
# Replacing a filter charges the new one before the old one is uncharged.
optmem(200)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    out.append([attach(s, [[6, 0, 0, 0]]), attach(s, [[6, 0, 0, 1]])])
print(json.dumps(out))
"""


def _length_programs() -> list[list[SockFilter]]:
    anc = [[ld_anc(ad), RET_A] for ad in range(0, 64, 4)]
    loads = [
        [stmt(BPF_LD | size | mode, k), RET_A]
        for k in (0, 1, 0x7FFF, 0x8000, SKF_NET_OFF, SKF_LL_OFF + 3)
        for size in (BPF_W, BPF_H, BPF_B)
        for mode in (BPF_ABS, BPF_IND)
    ]
    msh = [[stmt(BPF_LDX | BPF_B | BPF_MSH, k), RET_A] for k in (0, 14, 0x8000, SKF_NET_OFF)]
    jumps = [
        [
            jump(BPF_JMP | BPF_JEQ | BPF_K, 0x80000000, 0, 1),
            jump(BPF_JMP | BPF_JGT | BPF_K, 1, 1, 0),
            jump(BPF_JMP | BPF_JSET | BPF_K, 1, 0, 1),
            jump(BPF_JMP | BPF_JGE | BPF_X, 0, 1, 1),
            jump(BPF_JMP | BPF_JSET | BPF_K, 0xFFFFFFFF, 0, 0),
            DROP,
            RET_A,
        ]
    ]
    alu = [
        [stmt(BPF_ALU | op | src, 3) for op in (BPF_ADD, BPF_DIV, BPF_MOD) for src in (BPF_K, BPF_X)]
        + [stmt(BPF_ALU | BPF_NEG), RET_A]
    ]
    tcpdump = [parse_tcpdump_dd(TCPDUMP_EN10MB_UDP_PORT_53), parse_tcpdump_dd(TCPDUMP_RAW_UDP_PORT_53)]
    return [[DROP], [RET_A], *anc, *loads, *msh, *jumps, *alu, *tcpdump]


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_converted_length_agrees_with_kernel():
    progs = _length_programs()
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", AGENT],
        input=json.dumps([[list(f) for f in p] for p in progs]),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    out: list[Any] = json.loads(proc.stdout)
    assert out.pop() == [0, errno.ENOMEM]
    assert out == [bpf_prog_size(bpf_convert_filter(p)) for p in progs]
    # What 6.18 charged for the two tcpdump programs: 140 and 150 eBPF instructions.
    assert out[-2:] == [96 + 8 * 140, 96 + 8 * 150]
