"""Socket filters (SO_ATTACH_FILTER, SO_DETACH_FILTER, SO_LOCK_FILTER, SO_GET_FILTER)
through the drop-in module on a running stack, compared with this machine's kernel: the
harness of test_udp_kernel_send.py (this file is also the script), the kernel in a
network namespace of its own (so /proc/net/snmp counts only the script), the emulator on
alice. Both print the same JSON: each call's result or errno, what the receiver got
(length, first bytes, sender) and which Udp counters moved.

struct sock_fprog is built with ctypes on both sides and its instruction array kept
alive while setsockopt runs: the kernel copies it from the pointer, the drop-in reads
it there and sends the instructions.

Python's getsockopt(SOL_SOCKET, SO_GET_FILTER, buflen) passes buflen as optlen, which
the kernel reads as a number of instructions, writes 8 bytes for each and returns the
count: Python hands back the first `count` bytes. buflen must hold 8 bytes per
instruction, so only programs of at most 8 instructions are read with 64.

What 6.18 answered is written next to each comparison.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from services.core import errno
from tests.e2e.test_udp_kernel_send import (
    LO,
    PORT,
    SOL_SOCKET,
    Both,
    Host,
    compare,
    dgram,
    errno_of,
    get,
    main,
    put,
    run_both,
)

SO_ATTACH_FILTER = SO_GET_FILTER = 26
SO_DETACH_FILTER, SO_LOCK_FILTER, SO_MEMINFO = 27, 44, 55
MEMINFO = struct.Struct("=9I")
# include/uapi/linux/bpf_common.h
BPF_LD_H_ABS, BPF_JEQ_K, BPF_RET_K = 0x28, 0x15, 0x06
ACCEPT = (BPF_RET_K, 0, 0, 0xFFFFFFFF)
DROP = (BPF_RET_K, 0, 0, 0)
TRIM_12 = (BPF_RET_K, 0, 0, 12)
LDH_12 = (BPF_LD_H_ABS, 0, 0, 12)


def port_is(offset: int, port: int) -> list[tuple[int, int, int, int]]:
    """ldh [offset]; jeq #port, accept, drop: offset 0 the UDP source port, 2 the
    destination port (skb->data is at the UDP header)."""
    return [(BPF_LD_H_ABS, 0, 0, offset), (BPF_JEQ_K, 0, 1, port), ACCEPT, DROP]


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.c_void_p)]


def attach(s: Any, prog: list[tuple[int, int, int, int]], *, null: bool = False) -> Any:
    """setsockopt(SO_ATTACH_FILTER) with a struct sock_fprog pointing at the program (a
    NULL pointer with `null`): None or ["errno", n]."""
    array = (_SockFilter * max(1, len(prog)))(*(_SockFilter(*f) for f in prog))
    fprog = _SockFprog(len(prog), None if null else ctypes.addressof(array))
    result = errno_of(lambda: s.setsockopt(SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog)))
    del array  # alive until here: setsockopt read it
    return result


def meminfo(s: Any) -> list[int]:
    """SO_MEMINFO's sk_omem_alloc (the filter's charge) and sk_drops."""
    mem = MEMINFO.unpack(s.getsockopt(SOL_SOCKET, SO_MEMINFO, MEMINFO.size))
    return [mem[6], mem[8]]


PROGRAMS: list[tuple[str, list[tuple[int, int, int, int]]]] = [
    ("accept", [ACCEPT]),
    ("drop", [DROP]),
    ("ret #12", [TRIM_12]),
    ("dst port is PORT", port_is(2, PORT)),
    ("dst port is PORT + 7", port_is(2, PORT + 7)),
    ("src port is PORT + 1", port_is(0, PORT + 1)),
]
PAYLOADS = (b"", b"hello", bytes(range(100)))


def filters(h: Host) -> dict[str, Any]:
    """Each program on the receiver, datagrams from two senders; the sockopt errnos."""
    out: dict[str, Any] = {}
    r = h.sock(0)
    s1, s2 = h.sock(1), h.sock(2)
    to = (LO, PORT)
    out["no filter"] = [
        get(r, SOL_SOCKET, SO_GET_FILTER, 64),
        put(r, SOL_SOCKET, SO_DETACH_FILTER, 0),
        get(r, SOL_SOCKET, SO_LOCK_FILTER),
        meminfo(r),
    ]
    for name, prog in PROGRAMS:
        before = h.counters()
        attached = attach(r, prog)
        for p in PAYLOADS:
            s1.sendto(p, to)
            s2.sendto(p, to)
        out[name] = [
            attached,
            get(r, SOL_SOCKET, SO_GET_FILTER, 64),
            h.got(r),
            h.moved(before),
            meminfo(r),
        ]
    out["detach"] = [
        put(r, SOL_SOCKET, SO_DETACH_FILTER, 0),
        get(r, SOL_SOCKET, SO_GET_FILTER, 64),
        put(r, SOL_SOCKET, SO_DETACH_FILTER, 0),
        meminfo(r),
    ]

    out["bad programs"] = [
        attach(r, [(0xFF, 0, 0, 0), DROP]),
        attach(r, [DROP, LDH_12]),
        attach(r, [(BPF_JEQ_K, 1, 0, 0), DROP]),
        attach(r, []),
        attach(r, [ACCEPT], null=True),
        put(r, SOL_SOCKET, SO_ATTACH_FILTER, b"\0" * 8),
        get(r, SOL_SOCKET, SO_GET_FILTER, 64),
    ]

    prog = port_is(0, PORT + 1)
    out["SO_GET_FILTER optlen"] = [
        attach(r, prog),
        # Fewer instructions than the program has: EINVAL.
        get(r, SOL_SOCKET, SO_GET_FILTER, 3),
        get(r, SOL_SOCKET, SO_GET_FILTER, 32),
        get(r, SOL_SOCKET, SO_GET_FILTER, 1024),
    ]

    before = h.counters()
    out["SO_LOCK_FILTER"] = [
        put(r, SOL_SOCKET, SO_LOCK_FILTER, 1),
        get(r, SOL_SOCKET, SO_LOCK_FILTER),
        attach(r, [ACCEPT]),
        put(r, SOL_SOCKET, SO_DETACH_FILTER, 0),
        put(r, SOL_SOCKET, SO_LOCK_FILTER, 0),
        put(r, SOL_SOCKET, SO_LOCK_FILTER, 5),
        get(r, SOL_SOCKET, SO_LOCK_FILTER),
        get(r, SOL_SOCKET, SO_GET_FILTER, 64),
    ]
    # The locked filter still filters: only s1's datagram arrives.
    s1.sendto(b"locked 1", to)
    s2.sendto(b"locked 2", to)
    out["SO_LOCK_FILTER"] += [h.got(r), h.moved(before)]
    out["locked, NULL pointer"] = [attach(r, [ACCEPT], null=True), attach(r, [])]
    q = h.sock()
    out["locked without a filter"] = [
        put(q, SOL_SOCKET, SO_LOCK_FILTER, 1),
        put(q, SOL_SOCKET, SO_DETACH_FILTER, 0),
        attach(q, [ACCEPT]),
    ]

    # net.core.optmem_max 131072: each `ldh [12]` converts to 14 eBPF instructions;
    # 1168 and a return fit, 1169 do not, nor does anything beside the 1168.
    m = h.sock()
    out["optmem_max"] = [
        attach(m, [LDH_12] * 1169 + [DROP]),
        meminfo(m),
        attach(m, [LDH_12] * 1168 + [DROP]),
        meminfo(m),
        attach(m, [ACCEPT]),
        put(m, SOL_SOCKET, SO_DETACH_FILTER, 0),
        attach(m, [ACCEPT]),
        meminfo(m),
    ]
    for x in (r, s1, s2, q, m):
        x.close()
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    yield from run_both(__name__, str(tmp_path_factory.mktemp("state")))


def _from_both(payloads: tuple[bytes, ...] = PAYLOADS, cut: int | None = None) -> list[Any]:
    """What the receiver drains when every payload came from s1 then s2 (cut to `cut`)."""
    return [dgram(p[:cut], sender) for p in payloads for sender in (1, 2)]


def _from(sender: int, payloads: tuple[bytes, ...] = PAYLOADS) -> list[Any]:
    return [dgram(p, sender) for p in payloads]


def _hex(prog: list[tuple[int, int, int, int]]) -> bytes:
    return b"".join(struct.pack("=HBBI", *f) for f in prog)


# Counters that moved for six sends and two settle sentinels (each one out and in).
def _moved(in_datagrams: int, in_errors: int = 0) -> dict[str, int]:
    moved = {"UdpOutDatagrams": 8, "UdpInDatagrams": in_datagrams + 2}
    if in_errors:
        moved["UdpInErrors"] = in_errors
    return moved


def test_programs(both: Both) -> None:
    kernel, emulated = both
    # 6.18: no filter reads back as b"" (optlen 0), detaching it is ENOENT. A program's
    # SO_GET_FILTER with buflen 64 is its first `count` bytes. A drop counts InErrors
    # and sk_drops; ret #12 leaves 4 bytes of each payload (0 and 5 bytes: 0 and 4),
    # read without MSG_TRUNC. The destination port program passes everything sent to
    # the socket's own port, nothing for another; the source port one only s1's. The
    # charge to sk_omem_alloc: 136 for one instruction, 304 for the four of the
    # destination port program, 296 for the source port one (ldh [0] converts shorter).
    assert kernel["no filter"] == ["", ["errno", errno.ENOENT], 0, [0, 0]]
    accept = _hex([ACCEPT])
    assert kernel["accept"] == [None, accept[:1].hex(), _from_both(), _moved(6), [136, 0]]
    assert kernel["drop"] == [None, _hex([DROP])[:1].hex(), [], _moved(0, 6), [136, 6]]
    assert kernel["ret #12"] == [None, _hex([TRIM_12])[:1].hex(), _from_both(cut=4), _moved(6), [136, 6]]
    dport = _hex(port_is(2, PORT))[:4].hex()
    assert kernel["dst port is PORT"] == [None, dport, _from_both(), _moved(6), [304, 6]]
    other = _hex(port_is(2, PORT + 7))[:4].hex()
    assert kernel["dst port is PORT + 7"] == [None, other, [], _moved(0, 6), [304, 12]]
    sport = _hex(port_is(0, PORT + 1))[:4].hex()
    assert kernel["src port is PORT + 1"] == [None, sport, _from(1), _moved(3, 3), [296, 15]]
    assert kernel["detach"] == [None, "", ["errno", errno.ENOENT], [0, 15]]
    compare(kernel, emulated, "no filter", *(name for name, _ in PROGRAMS), "detach")


def test_sockopt_errnos(both: Both) -> None:
    kernel, emulated = both
    # 6.18: an unknown opcode, a program not ending in a return, a jump past the end,
    # length 0 and a NULL pointer are EINVAL, as is an optlen other than 16; the filter
    # is unchanged (none). SO_GET_FILTER with room for 3 of 4 instructions: EINVAL.
    einval = ["errno", errno.EINVAL]
    assert kernel["bad programs"] == [einval, einval, einval, einval, einval, einval, ""]
    sport = _hex(port_is(0, PORT + 1))[:4].hex()
    assert kernel["SO_GET_FILTER optlen"] == [None, einval, sport, sport]
    # Locked: attach, detach and unlock are EPERM; locking again (any nonzero value)
    # is allowed; reads 1. Locked without a filter: EPERM.
    eperm = ["errno", errno.EPERM]
    assert kernel["SO_LOCK_FILTER"] == [
        None,
        1,
        eperm,
        eperm,
        eperm,
        None,
        1,
        sport,
        [dgram(b"locked 1", 1)],
        {"UdpOutDatagrams": 4, "UdpInDatagrams": 3, "UdpInErrors": 1},
    ]
    assert kernel["locked without a filter"] == [None, eperm, eperm]
    compare(
        kernel, emulated, "bad programs", "SO_GET_FILTER optlen", "SO_LOCK_FILTER", "locked without a filter"
    )


def test_locked_null_pointer(both: Both) -> None:
    kernel, emulated = both
    # 6.18: sk_attach_filter() looks at SOCK_FILTER_LOCKED before bpf_check_basics_ok()
    # refuses a NULL pointer or length 0: EPERM while locked.
    eperm = ["errno", errno.EPERM]
    assert kernel["locked, NULL pointer"] == [eperm, eperm]
    compare(kernel, emulated, "locked, NULL pointer")


def test_optmem_max(both: Both) -> None:
    kernel, emulated = both
    # 6.18 in a fresh namespace (optmem_max 131072): 1169 loads ENOMEM and nothing
    # charged; 1168 charge 130984, and then even one instruction (136 more) is ENOMEM,
    # as the new filter is charged before the old one is given back.
    enomem = ["errno", errno.ENOMEM]
    assert kernel["optmem_max"] == [enomem, [0, 0], None, [130984, 0], enomem, None, None, [136, 0]]
    compare(kernel, emulated, "optmem_max")


if __name__ == "__main__":
    main(filters)
