"""Classic BPF socket filters: what SO_ATTACH_FILTER checks and what the filter computes
for each datagram (net/core/filter.c; the instruction set of include/uapi/linux/filter.h
and bpf_common.h).

The kernel no longer interprets classic BPF. sk_attach_filter checks the program
(bpf_check_classic), converts it to eBPF (bpf_convert_filter) and runs that, so the
conversion says what a program means: 32-bit unsigned arithmetic; A and X zeroed at entry;
division or modulo by X == 0 and every load out of bounds end the program with 0; a
BPF_IND offset is X + k modulo 2**32 read as signed, so it too can reach SKF_NET_OFF and
SKF_LL_OFF; shifts by X use X & 31; an ancillary load ignores its size (ldb of
SKF_AD_IFINDEX is the whole ifindex); SKF_AD_IFINDEX and SKF_AD_HATYPE without a device
end the program with the current A.

A program is compiled once, at attach time, into a Python function with one `if pc == N:`
block per jump target. Classic BPF jumps only forward, so a single pass over the blocks
in order runs any path, and code no jump reaches is left out.

The buffer the filter reads is the skb's linear head: `data` is where offset 0 is (for a
UDP socket, udp_queue_rcv_one_skb runs the filter with skb->data at the UDP header),
`length` is skb->len, and `network`/`mac` are skb->network_header/mac_header, all offsets
into the same buffer. A paged skb must be linearized by the caller first: the loads give
the same bytes either way (skb_copy_bits), and only SKF_AD_NLATTR/NLATTR_NEST look at
skb_is_nonlinear, which AncillaryData.nonlinear carries.

Errnos of SO_ATTACH_FILTER that belong to the caller (sk_setsockopt, sk_attach_filter),
in the kernel's order: optlen < sizeof(int) EINVAL; optlen != sizeof(struct sock_fprog)
(16) EINVAL (copy_bpf_fprog_from_user); an unreadable optval EFAULT; SOCK_FILTER_LOCKED
EPERM; a NULL filter pointer, len 0 or len > BPF_MAXINSNS EINVAL (bpf_check_basics_ok);
an unreadable program EFAULT; then bpf_prepare_filter's EINVAL; then ENOMEM when
sk_filter_charge_ok refuses bpf_prog_size of the converted length. The new filter is
charged before the old one is uncharged (__sk_attach_prog), so a replacement must fit
beside the filter it replaces.
"""

from __future__ import annotations

import random as _random
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple, cast

from services.core import errno
from services.core.errno import kernel_error

Buffer = bytes | bytearray | memoryview

# include/uapi/linux/bpf_common.h
BPF_LD: Final = 0x00
BPF_LDX: Final = 0x01
BPF_ST: Final = 0x02
BPF_STX: Final = 0x03
BPF_ALU: Final = 0x04
BPF_JMP: Final = 0x05
BPF_RET: Final = 0x06
BPF_MISC: Final = 0x07
BPF_W: Final = 0x00
BPF_H: Final = 0x08
BPF_B: Final = 0x10
BPF_IMM: Final = 0x00
BPF_ABS: Final = 0x20
BPF_IND: Final = 0x40
BPF_MEM: Final = 0x60
BPF_LEN: Final = 0x80
BPF_MSH: Final = 0xA0
BPF_ADD: Final = 0x00
BPF_SUB: Final = 0x10
BPF_MUL: Final = 0x20
BPF_DIV: Final = 0x30
BPF_OR: Final = 0x40
BPF_AND: Final = 0x50
BPF_LSH: Final = 0x60
BPF_RSH: Final = 0x70
BPF_NEG: Final = 0x80
BPF_MOD: Final = 0x90
BPF_XOR: Final = 0xA0
BPF_JA: Final = 0x00
BPF_JEQ: Final = 0x10
BPF_JGT: Final = 0x20
BPF_JGE: Final = 0x30
BPF_JSET: Final = 0x40
BPF_K: Final = 0x00
BPF_X: Final = 0x08
BPF_MAXINSNS: Final = 4096

# include/uapi/linux/filter.h
BPF_A: Final = 0x10
BPF_TAX: Final = 0x00
BPF_TXA: Final = 0x80
BPF_MEMWORDS: Final = 16
SKF_AD_OFF: Final = -0x1000
SKF_AD_PROTOCOL: Final = 0
SKF_AD_PKTTYPE: Final = 4
SKF_AD_IFINDEX: Final = 8
SKF_AD_NLATTR: Final = 12
SKF_AD_NLATTR_NEST: Final = 16
SKF_AD_MARK: Final = 20
SKF_AD_QUEUE: Final = 24
SKF_AD_HATYPE: Final = 28
SKF_AD_RXHASH: Final = 32
SKF_AD_CPU: Final = 36
SKF_AD_ALU_XOR_X: Final = 40
SKF_AD_VLAN_TAG: Final = 44
SKF_AD_VLAN_TAG_PRESENT: Final = 48
SKF_AD_PAY_OFFSET: Final = 52
SKF_AD_RANDOM: Final = 56
SKF_AD_VLAN_TPID: Final = 60
SKF_AD_MAX: Final = 64
SKF_NET_OFF: Final = -0x100000
SKF_LL_OFF: Final = -0x200000

# struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; } in the machine's byte
# order, as setsockopt copies it from user memory; struct sock_fprog is a u16 length
# padded to a pointer, then the pointer (16 bytes on x86_64).
SOCK_FILTER: Final = struct.Struct("=HBBI")
SOCK_FILTER_LEN: Final = 8
SOCK_FPROG_SIZE: Final = 16

# include/linux/filter.h: bpf_prog_size() is offsetof(struct bpf_prog, insns[proglen]);
# the header is 96 bytes on x86_64 6.18 (measured: the optmem_max at which an attach
# starts to fail, in a namespace of its own, tests/e2e/test_bpf_kernel.py).
BPF_PROG_HEADER_SIZE: Final = 96
BPF_INSN_SIZE: Final = 8

_U32: Final = 0xFFFFFFFF
_S16_MAX: Final = 0x7FFF
_S16_MIN: Final = -0x8000


class SockFilter(NamedTuple):
    """One struct sock_filter."""

    code: int
    jt: int
    jf: int
    k: int


# chk_code_allowed()
_ALLOWED: Final = frozenset(
    [BPF_ALU | op | src for op in (BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_MOD) for src in (BPF_K, BPF_X)]
    + [BPF_ALU | op | src for op in (BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH) for src in (BPF_K, BPF_X)]
    + [BPF_ALU | BPF_NEG]
    + [BPF_LD | size | mode for size in (BPF_W, BPF_H, BPF_B) for mode in (BPF_ABS, BPF_IND)]
    + [BPF_LD | BPF_W | BPF_LEN, BPF_LD | BPF_IMM, BPF_LD | BPF_MEM]
    + [BPF_LDX | BPF_W | BPF_LEN, BPF_LDX | BPF_B | BPF_MSH, BPF_LDX | BPF_IMM, BPF_LDX | BPF_MEM]
    + [BPF_ST, BPF_STX, BPF_MISC | BPF_TAX, BPF_MISC | BPF_TXA, BPF_RET | BPF_K, BPF_RET | BPF_A]
    + [BPF_JMP | BPF_JA]
    + [BPF_JMP | op | src for op in (BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JSET) for src in (BPF_K, BPF_X)]
)
_COND_JUMPS: Final = frozenset(
    BPF_JMP | op | src for op in (BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JSET) for src in (BPF_K, BPF_X)
)
_LD_ABS: Final = frozenset(BPF_LD | size | BPF_ABS for size in (BPF_W, BPF_H, BPF_B))

# bpf_anc_helper(): the k of an ancillary load, as the u32 in the instruction, and how
# many eBPF instructions convert_bpf_extensions() makes of it.
_ANCILLARY_LEN: Final = {
    (SKF_AD_OFF + ad) & _U32: n
    for ad, n in (
        (SKF_AD_PROTOCOL, 2),
        (SKF_AD_PKTTYPE, 2),
        (SKF_AD_IFINDEX, 4),
        (SKF_AD_NLATTR, 4),
        (SKF_AD_NLATTR_NEST, 4),
        (SKF_AD_MARK, 1),
        (SKF_AD_QUEUE, 1),
        (SKF_AD_HATYPE, 4),
        (SKF_AD_RXHASH, 1),
        (SKF_AD_CPU, 4),
        (SKF_AD_ALU_XOR_X, 1),
        (SKF_AD_VLAN_TAG, 1),
        (SKF_AD_VLAN_TAG_PRESENT, 3),
        (SKF_AD_PAY_OFFSET, 4),
        (SKF_AD_RANDOM, 4),
        (SKF_AD_VLAN_TPID, 2),
    )
}


def _s32(k: int) -> int:
    return k - 0x1_0000_0000 if k & 0x8000_0000 else k


def parse_sock_filters(raw: Buffer) -> list[SockFilter]:
    """The instructions of a struct sock_filter array as user memory holds it."""
    if len(raw) % SOCK_FILTER.size:
        raise ValueError(f"bpf: {len(raw)} bytes is not a whole number of {SOCK_FILTER.size}-byte filters")
    return [SockFilter(*f) for f in SOCK_FILTER.iter_unpack(raw)]


def emit_sock_filters(prog: Iterable[SockFilter]) -> bytes:
    """struct sock_filter array bytes: what getsockopt(SO_GET_FILTER) copies out."""
    return b"".join(SOCK_FILTER.pack(*f) for f in prog)


_DD_LINE: Final = re.compile(
    r"\{\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*(0x[0-9a-fA-F]+|\d+)\s*,"
    r"\s*(0x[0-9a-fA-F]+|\d+)\s*\},?"
)


def parse_tcpdump_dd(text: str) -> list[SockFilter]:
    """The program `tcpdump -dd` prints, one `{ code, jt, jf, k },` per line."""
    prog: list[SockFilter] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        m = _DD_LINE.fullmatch(line)
        if m is None:
            raise ValueError(f"bpf: line {lineno} is not a tcpdump -dd instruction: {line!r}")
        code, jt, jf, k = (int(g, 0) for g in m.groups())
        if code > 0xFFFF or jt > 0xFF or jf > 0xFF or k > _U32:
            raise ValueError(f"bpf: line {lineno} has a field too wide for struct sock_filter: {line!r}")
        prog.append(SockFilter(code, jt, jf, k))
    return prog


def _einval(detail: str) -> OSError:
    return kernel_error(errno.EINVAL, detail)


def bpf_check_classic(prog: Sequence[SockFilter]) -> None:
    """bpf_check_basics_ok(), bpf_check_classic() and check_load_and_stores(): raise
    EINVAL for a program the kernel refuses to attach.

    Refused: no instruction or more than BPF_MAXINSNS; an opcode outside
    chk_code_allowed(); division or modulo by a constant 0; a shift by a constant >= 32;
    M[k] with k >= BPF_MEMWORDS; a jump past the last instruction; an absolute load at
    k >= SKF_AD_OFF (as u32) that is no known ancillary load; a last instruction that is
    not a return; a load from M[k] that some path reaches before any store to it.
    """
    flen = len(prog)
    if flen == 0 or flen > BPF_MAXINSNS:
        raise _einval(f"bpf: program of {flen} instructions")
    for pc, (code, jt, jf, k) in enumerate(prog):
        if code not in _ALLOWED:
            raise _einval(f"bpf: insn {pc}: opcode {code:#x} not allowed")
        if code in (BPF_ALU | BPF_DIV | BPF_K, BPF_ALU | BPF_MOD | BPF_K):
            if k == 0:
                raise _einval(f"bpf: insn {pc}: division by constant 0")
        elif code in (BPF_ALU | BPF_LSH | BPF_K, BPF_ALU | BPF_RSH | BPF_K):
            if k >= 32:
                raise _einval(f"bpf: insn {pc}: shift by {k}")
        elif code in (BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM, BPF_ST, BPF_STX):
            if k >= BPF_MEMWORDS:
                raise _einval(f"bpf: insn {pc}: M[{k}] out of range")
        elif code == BPF_JMP | BPF_JA:
            if k >= flen - pc - 1:
                raise _einval(f"bpf: insn {pc}: ja {k} past the end")
        elif code in _COND_JUMPS:
            if pc + jt + 1 >= flen or pc + jf + 1 >= flen:
                raise _einval(f"bpf: insn {pc}: jump past the end")
        elif code in _LD_ABS and k >= (SKF_AD_OFF & _U32) and k not in _ANCILLARY_LEN:
            raise _einval(f"bpf: insn {pc}: unknown ancillary load {_s32(k):#x}")
    if prog[-1].code not in (BPF_RET | BPF_K, BPF_RET | BPF_A):
        raise _einval("bpf: last instruction is not a return")
    _check_load_and_stores(prog)


def _check_load_and_stores(prog: Sequence[SockFilter]) -> None:
    # The kernel's forward pass: a jump narrows the valid set of its targets, and the
    # instruction after a jump starts from everything valid, narrowed by the jumps to it
    # (so code that nothing reaches passes).
    masks = [0xFFFF] * len(prog)
    memvalid = 0
    for pc, (code, jt, jf, k) in enumerate(prog):
        memvalid &= masks[pc]
        if code in (BPF_ST, BPF_STX):
            memvalid |= 1 << k
        elif code in (BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM):
            if not memvalid & (1 << k):
                raise _einval(f"bpf: insn {pc}: M[{k}] read before any store")
        elif code == BPF_JMP | BPF_JA:
            masks[pc + 1 + k] &= memvalid
            memvalid = 0xFFFF
        elif code in _COND_JUMPS:
            masks[pc + 1 + jt] &= memvalid
            masks[pc + 1 + jf] &= memvalid
            memvalid = 0xFFFF


def _ld_abs_len(k: int, size: int, indirect: bool) -> int:
    # convert_bpf_ld_abs() on x86_64 (CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS): an inline
    # load for a constant offset >= 0, then the call to bpf_skb_load_helper_*.
    offset = _s32(k)
    n = 0
    if not indirect and offset >= 0:
        n = 4 + (offset != 0) + (0 if offset <= _S16_MAX else 2) + (size != BPF_B)
    return n + 8 + (indirect and k != 0)


def bpf_convert_filter(prog: Sequence[SockFilter]) -> int:
    """The length in eBPF instructions of the converted program (bpf_convert_filter's
    first pass, x86_64), which is what the socket is charged for (bpf_prog_size).

    Raises EINVAL, as the second pass does, when a jump's eBPF offset does not fit in 16
    bits: a long `ja` over loads can (each packet load becomes 14 instructions).
    `prog` must have passed bpf_check_classic.
    """
    addrs: list[int] = []
    jumps: list[tuple[int, int, int]] = []  # (cBPF index, slot in its expansion, target)
    pos = 0
    seen_ld_abs = False
    for i, (code, jt, jf, k) in enumerate(prog):
        addrs.append(pos)
        cls = code & 0x07
        if code in _LD_ABS and k in _ANCILLARY_LEN:
            n = _ANCILLARY_LEN[k]
        elif cls == BPF_LD and code & 0xE0 in (BPF_ABS, BPF_IND):
            n = _ld_abs_len(k, code & 0x18, code & 0xE0 == BPF_IND)
            seen_ld_abs = True
        elif code == BPF_LDX | BPF_B | BPF_MSH:
            n = 1 + _ld_abs_len(k, BPF_B, False) + 5
            seen_ld_abs = True
        elif code in (BPF_ALU | BPF_DIV | BPF_X, BPF_ALU | BPF_MOD | BPF_X):
            n = 5
        elif code == BPF_RET | BPF_K:
            n = 2
        elif code == BPF_JMP | BPF_JA:
            n = 1
            jumps.append((i, 0, i + 1 + k))
        elif code in _COND_JUMPS:
            pre = int(code & BPF_X == BPF_K and k >= 0x8000_0000)
            if jf == 0:
                n = pre + 1
                jumps.append((i, pre, i + 1 + jt))
            elif jt == 0 and code & 0xF0 != BPF_JSET:
                n = pre + 1
                jumps.append((i, pre, i + 1 + jf))
            else:
                n = pre + 2
                jumps.append((i, pre, i + 1 + jt))
                jumps.append((i, pre + 1, i + 1 + jf))
        else:
            n = 1
        pos += n
    addrs.append(pos)
    for i, slot, target in jumps:
        off = addrs[target] - addrs[i] - 1 - slot
        if not _S16_MIN <= off <= _S16_MAX:
            raise _einval(f"bpf: insn {i}: converted jump offset {off} out of range")
    return 3 + (4 if seen_ld_abs else 0) + pos


def bpf_prog_size(proglen: int) -> int:
    """bpf_prog_size(): the bytes a filter of `proglen` eBPF instructions charges to
    sk_omem_alloc."""
    return BPF_PROG_HEADER_SIZE + BPF_INSN_SIZE * proglen


def sk_filter_charge_ok(omem_alloc: int, filter_size: int, optmem_max: int) -> bool:
    """__sk_filter_charge()'s test (sock_kmalloc's): False means ENOMEM."""
    return filter_size <= optmem_max and omem_alloc + filter_size < optmem_max


def _prandom_u32() -> int:
    return _random.getrandbits(32)


@dataclass(slots=True)
class AncillaryData:
    """The skb and device fields the SKF_AD_* loads read (convert_bpf_extensions()).

    Values are as the filter sees them: `protocol` and `vlan_proto` in host order
    (the load applies ntohs), the rest as the kernel stores them. For a datagram received
    on lo by a UDP socket, 6.18 shows protocol 0x0800, pkt_type PACKET_HOST (0), ifindex 1,
    hatype ARPHRD_LOOPBACK (772), mark the sender's SO_MARK, queue_mapping, hash and the
    VLAN fields 0, pay_offset 8 (skb_get_poff: the transport header, which is skb->data,
    plus the UDP header), cpu the one that ran the receive softirq (on lo, the sender's).
    """

    protocol: int = 0
    pkt_type: int = 0
    # skb->dev->ifindex; None when skb->dev is NULL, which ends an IFINDEX or HATYPE
    # load's program with the current A.
    ifindex: int | None = None
    hatype: int = 0
    mark: int = 0
    queue_mapping: int = 0
    hash: int = 0
    cpu: int = 0
    vlan_tci: int = 0
    vlan_proto: int = 0
    pay_offset: int = 0
    # skb_is_nonlinear(): SKF_AD_NLATTR and SKF_AD_NLATTR_NEST give 0 then.
    nonlinear: bool = False
    # bpf_user_rnd_u32() for SKF_AD_RANDOM.
    random: Callable[[], int] = field(default=_prandom_u32)


RunFunc = Callable[[Buffer, int, int, int, int | None, AncillaryData], int]


@dataclass(frozen=True, slots=True)
class BpfProg:
    """A checked and compiled filter: what sk->sk_filter holds.

    `insns` is the program as attached (orig_prog, which SO_GET_FILTER returns), `len`
    the converted eBPF length that bpf_prog_size() charges, `run` the compiled function
    (run_filter's arguments).
    """

    insns: tuple[SockFilter, ...]
    len: int
    run: RunFunc = field(repr=False, compare=False)
    source: str = field(repr=False, compare=False)

    @property
    def size(self) -> int:
        return bpf_prog_size(self.len)


def bpf_prepare_filter(prog: Sequence[SockFilter]) -> BpfProg:
    """bpf_check_classic + bpf_convert_filter + compile: EINVAL for what the kernel
    refuses, else the filter to attach."""
    insns = tuple(SockFilter(*f) for f in prog)
    bpf_check_classic(insns)
    proglen = bpf_convert_filter(insns)
    source = _generate(insns)
    namespace: dict[str, object] = {
        "_h16": _H16,
        "_u32": _UNPACK_U32,
        "_load": _load_slow,
        "_nlattr": _nlattr,
        "_nlattr_nest": _nlattr_nest,
    }
    exec(compile(source, "<bpf>", "exec"), namespace)
    return BpfProg(insns, proglen, cast(RunFunc, namespace["bpf_filter"]), source)


def run_filter(
    prog: BpfProg,
    head: Buffer,
    data: int,
    length: int,
    network: int,
    mac: int | None,
    anc: AncillaryData,
) -> int:
    """bpf_prog_run() of a socket filter: the u32 the program returns (0: drop, else
    the bytes to keep; see filter_verdict).

    `head` is the linear buffer, `data` skb->data's offset in it, `length` skb->len,
    `network` and `mac` the header offsets in it (mac None when the skb has none:
    SKF_LL_OFF loads then fail). The bytes of `head` past data + length are not read.
    """
    return prog.run(head, data, length, network, mac, anc)


def filter_verdict(res: int, skb_len: int, cap: int) -> int | None:
    """sk_filter_trim_cap() after the program: None to drop (-EPERM,
    SKB_DROP_REASON_SOCKET_FILTER), else skb->len after pskb_trim(skb, max(cap, res)).

    For UDP, cap is sizeof(struct udphdr) and the trimmed length is what udp_recvmsg
    reports: a `ret #12` filter makes a 100-byte datagram read as 4 bytes, MSG_TRUNC
    included.
    """
    if res == 0:
        return None
    keep = max(cap, res)
    return keep if keep < skb_len else skb_len


_H16: Final = struct.Struct(">H").unpack_from
_UNPACK_U32: Final = struct.Struct(">I").unpack_from


def _load_slow(head: Buffer, data: int, length: int, network: int, mac: int | None, k: int, size: int) -> int:
    """bpf_skb_load_helper_{8,16,32}() for the offsets the inline path leaves: `k` is the
    32-bit offset (read as signed), the result the big-endian value or -1 (-EFAULT)."""
    off = _s32(k)
    if off < 0:
        # bpf_skb_load_helper_convert_offset()
        if off >= SKF_NET_OFF:
            off += network - data - SKF_NET_OFF
        elif off >= SKF_LL_OFF and mac is not None:
            off += mac - data - SKF_LL_OFF
        else:
            return -1
    if length - off < size:
        return -1
    pos = data + off
    return int.from_bytes(head[pos : pos + size], "big")


# include/net/netlink.h: struct nlattr is { u16 nla_len; u16 nla_type; } in host order.
_NLA_HDRLEN: Final = 4
_NLA_TYPE_MASK: Final = 0x3FFF
_NLA: Final = struct.Struct("<HH").unpack_from


def _nla_find(head: Buffer, pos: int, rem: int, attrtype: int, base: int) -> int:
    # nla_find(): the offset from skb->data of the first attribute of `attrtype`, 0 if none.
    while rem >= _NLA_HDRLEN:
        nla_len, nla_type = _NLA(head, pos)
        if nla_len < _NLA_HDRLEN or nla_len > rem:
            break
        if nla_type & _NLA_TYPE_MASK == attrtype:
            return pos - base
        total = (nla_len + 3) & ~3
        pos += total
        rem -= total
    return 0


def _nlattr(head: Buffer, data: int, length: int, a: int, x: int) -> int:
    """bpf_skb_get_nlattr(): a netlink attribute of type X in the attributes at offset A."""
    if length < _NLA_HDRLEN or a > length - _NLA_HDRLEN:
        return 0
    return _nla_find(head, data + a, length - a, x, data)


def _nlattr_nest(head: Buffer, data: int, length: int, a: int, x: int) -> int:
    """bpf_skb_get_nlattr_nest(): an attribute of type X inside the one at offset A."""
    if length < _NLA_HDRLEN or a > length - _NLA_HDRLEN:
        return 0
    nla_len, _ = _NLA(head, data + a)
    if nla_len < _NLA_HDRLEN or nla_len > length - a:
        return 0
    return _nla_find(head, data + a + _NLA_HDRLEN, nla_len - _NLA_HDRLEN, x, data)


_ALU_K: Final = {
    BPF_ADD: "A = (A + {k}) & 0xFFFFFFFF",
    BPF_SUB: "A = (A - {k}) & 0xFFFFFFFF",
    BPF_MUL: "A = A * {k} & 0xFFFFFFFF",
    BPF_DIV: "A //= {k}",
    BPF_MOD: "A %= {k}",
    BPF_OR: "A |= {k}",
    BPF_AND: "A &= {k}",
    BPF_XOR: "A ^= {k}",
    BPF_LSH: "A = A << {k} & 0xFFFFFFFF",
    BPF_RSH: "A >>= {k}",
}
_ALU_X: Final = {
    BPF_ADD: "A = (A + X) & 0xFFFFFFFF",
    BPF_SUB: "A = (A - X) & 0xFFFFFFFF",
    BPF_MUL: "A = A * X & 0xFFFFFFFF",
    BPF_DIV: "if X == 0: return 0\nA //= X",
    BPF_MOD: "if X == 0: return 0\nA %= X",
    BPF_OR: "A |= X",
    BPF_AND: "A &= X",
    BPF_XOR: "A ^= X",
    BPF_LSH: "A = A << (X & 31) & 0xFFFFFFFF",
    BPF_RSH: "A >>= X & 31",
}
_JUMP_OP: Final = {BPF_JEQ: "{a} == {v}", BPF_JGT: "{a} > {v}", BPF_JGE: "{a} >= {v}", BPF_JSET: "{a} & {v}"}
_ANCILLARY_CODE: Final = {
    SKF_AD_PROTOCOL: "A = anc.protocol & 0xFFFF",
    SKF_AD_PKTTYPE: "A = anc.pkt_type & 7",
    SKF_AD_IFINDEX: "if anc.ifindex is None: return A\nA = anc.ifindex & 0xFFFFFFFF",
    SKF_AD_NLATTR: "A = 0 if anc.nonlinear else _nlattr(h, d, L, A, X)",
    SKF_AD_NLATTR_NEST: "A = 0 if anc.nonlinear else _nlattr_nest(h, d, L, A, X)",
    SKF_AD_MARK: "A = anc.mark & 0xFFFFFFFF",
    SKF_AD_QUEUE: "A = anc.queue_mapping & 0xFFFF",
    SKF_AD_HATYPE: "if anc.ifindex is None: return A\nA = anc.hatype & 0xFFFF",
    SKF_AD_RXHASH: "A = anc.hash & 0xFFFFFFFF",
    SKF_AD_CPU: "A = anc.cpu & 0xFFFFFFFF",
    SKF_AD_ALU_XOR_X: "A ^= X",
    SKF_AD_VLAN_TAG: "A = anc.vlan_tci & 0xFFFF",
    SKF_AD_VLAN_TAG_PRESENT: "A = 1 if anc.vlan_tci or anc.vlan_proto else 0",
    SKF_AD_PAY_OFFSET: "A = anc.pay_offset & 0xFFFFFFFF",
    SKF_AD_RANDOM: "A = anc.random() & 0xFFFFFFFF",
    SKF_AD_VLAN_TPID: "A = anc.vlan_proto & 0xFFFF",
}
_SIZE_BYTES: Final = {BPF_W: 4, BPF_H: 2, BPF_B: 1}


def _read(size: int, pos: str) -> str:
    if size == 1:
        return f"h[{pos}]"
    if size == 2:
        return f"_h16(h, {pos})[0]"
    return f"_u32(h, {pos})[0]"


def _load(reg: str, k: int, size: int, indirect: bool) -> str:
    """A packet load into `reg` that ends the program with 0 when it fails."""
    if indirect:
        off = f"(X + {k}) & 0xFFFFFFFF" if k else "X"
        return (
            f"o = {off}\n"
            f"if L >= o + {size}: {reg} = {_read(size, 'd + o')}\n"
            "else:\n"
            f"    {reg} = _load(h, d, L, nh, mh, o, {size})\n"
            f"    if {reg} < 0: return 0"
        )
    if k < 0x8000_0000:
        return f"if L < {k + size}: return 0\n{reg} = {_read(size, f'd + {k}')}"
    return f"{reg} = _load(h, d, L, nh, mh, {k}, {size})\nif {reg} < 0: return 0"


def _insn(pc: int, f: SockFilter) -> tuple[str, bool]:
    """Python for one instruction, and whether control can go on to the next one."""
    code, jt, jf, k = f
    cls = code & 0x07
    if cls == BPF_ALU:
        op = code & 0xF0
        if op == BPF_NEG:
            return "A = -A & 0xFFFFFFFF", True
        return (_ALU_X[op] if code & BPF_X else _ALU_K[op].format(k=k)), True
    if cls == BPF_JMP:
        if code == BPF_JMP | BPF_JA:
            return f"pc = {pc + 1 + k}", False
        t, e = pc + 1 + jt, pc + 1 + jf
        if t == e:
            return f"pc = {t}", False
        cond = _JUMP_OP[code & 0xF0].format(a="A", v="X" if code & BPF_X else k)
        return f"pc = {t} if {cond} else {e}", False
    if cls == BPF_RET:
        return ("return A" if code & BPF_A else f"return {k}"), False
    if cls == BPF_LD:
        mode = code & 0xE0
        if mode == BPF_ABS and k in _ANCILLARY_LEN:
            return _ANCILLARY_CODE[_s32(k) - SKF_AD_OFF], True
        if mode in (BPF_ABS, BPF_IND):
            return _load("A", k, _SIZE_BYTES[code & 0x18], mode == BPF_IND), True
        if mode == BPF_LEN:
            return "A = L", True
        if mode == BPF_MEM:
            return f"A = m{k}", True
        return f"A = {k}", True
    if cls == BPF_LDX:
        mode = code & 0xE0
        if mode == BPF_MSH:
            return _load("X", k, 1, False) + "\nX = (X & 15) << 2", True
        if mode == BPF_LEN:
            return "X = L", True
        if mode == BPF_MEM:
            return f"X = m{k}", True
        return f"X = {k}", True
    if cls == BPF_ST:
        return f"m{k} = A", True
    if cls == BPF_STX:
        return f"m{k} = X", True
    return ("X = A" if code & 0xF8 == BPF_TAX else "A = X"), True


def _generate(prog: Sequence[SockFilter]) -> str:
    targets: set[int] = set()
    for pc, (code, jt, jf, k) in enumerate(prog):
        if code == BPF_JMP | BPF_JA:
            targets.add(pc + 1 + k)
        elif code in _COND_JUMPS:
            targets.update((pc + 1 + jt, pc + 1 + jf))
    lines = ["def bpf_filter(h, d, L, nh, mh, anc):", "    A = X = pc = 0"]
    mem = sorted({f.k for f in prog if f.code in (BPF_ST, BPF_STX)})
    if mem:
        lines.append("    " + " = ".join(f"m{k}" for k in mem) + " = 0")
    indent = "    "
    live = True
    for pc, f in enumerate(prog):
        if pc in targets:
            if live:
                lines.append(f"{indent}pc = {pc}")
            indent = "    "
            lines.append(f"{indent}if pc == {pc}:")
            indent = "        "
            live = True
        elif not live:
            continue
        lines.append(f"{indent}# {pc}: {f.code:#06x} {f.jt} {f.jf} {f.k:#x}")
        body, live = _insn(pc, f)
        lines.extend(indent + line for line in body.split("\n"))
    lines.append("    raise AssertionError(pc)")
    return "\n".join(lines) + "\n"
