"""services.core.bpf: parsing, bpf_check_classic's refusals, the converted length, and
what a program computes, instruction class by instruction class.

tests/e2e/test_bpf_kernel.py runs the same programs through this machine's kernel; the
values pinned here are the ones 6.18 gave there where the kernel can show them.
"""

import shutil
import struct
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    BPF_MAXINSNS,
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
    SockFilter,
    bpf_check_classic,
    bpf_convert_filter,
    bpf_prepare_filter,
    bpf_prog_size,
    emit_sock_filters,
    filter_verdict,
    parse_sock_filters,
    parse_tcpdump_dd,
    run_filter,
    sk_filter_charge_ok,
)


def stmt(code: int, k: int = 0) -> SockFilter:
    return SockFilter(code, 0, 0, k & 0xFFFFFFFF)


def jump(code: int, k: int, jt: int, jf: int) -> SockFilter:
    return SockFilter(code, jt, jf, k & 0xFFFFFFFF)


def ld_anc(ad: int, size: int = BPF_W) -> SockFilter:
    return stmt(BPF_LD | size | BPF_ABS, SKF_AD_OFF + ad)


ACCEPT = stmt(BPF_RET | BPF_K, 0xFFFFFFFF)
DROP = stmt(BPF_RET | BPF_K, 0)
RET_A = stmt(BPF_RET | BPF_A)

# A received frame as the skb holds it when the socket filter runs: 16 bytes of headroom,
# an Ethernet header, IPv4 (10.0.0.1 -> 10.0.0.2, ttl 64), the UDP header (40000 -> 53,
# where skb->data points), the payload, then 8 bytes of tailroom the filter must not read.
ETH = bytes.fromhex("020000000b02 020000000a01 0800")
IP = bytes.fromhex("4500 0024 1234 4000 4011 0000 0a000001 0a000002")
UDP = struct.pack("!HHHH", 40000, 53, 16, 0xBEEF)
PAYLOAD = b"payload!"
HEAD = bytes(16) + ETH + IP + UDP + PAYLOAD + b"\xee" * 8
MAC, NETWORK, DATA, LENGTH = 16, 30, 50, 16
ANC = AncillaryData(protocol=0x0800, ifindex=1, hatype=772)


def run(
    prog: list[SockFilter],
    head: bytes = HEAD,
    data: int = DATA,
    length: int = LENGTH,
    network: int = NETWORK,
    mac: int | None = MAC,
    anc: AncillaryData = ANC,
) -> int:
    return run_filter(bpf_prepare_filter(prog), head, data, length, network=network, mac=mac, anc=anc)


def value(*insns: SockFilter, anc: AncillaryData = ANC, **kw: Any) -> int:
    """What A holds after `insns`, returned by `ret a`."""
    return run([*insns, RET_A], anc=anc, **kw)


def test_sock_filter_bytes_round_trip():
    raw = bytes.fromhex("2800 00 00 0c000000 1500 00 06 dd860000 0600 00 00 ffffffff")
    prog = parse_sock_filters(raw)
    assert prog == [
        SockFilter(0x28, 0, 0, 12),
        SockFilter(0x15, 0, 6, 0x86DD),
        SockFilter(6, 0, 0, 0xFFFFFFFF),
    ]
    assert emit_sock_filters(prog) == raw
    assert parse_sock_filters(memoryview(raw)[:8]) == prog[:1]
    assert parse_sock_filters(b"") == []
    with pytest.raises(ValueError, match=r"^bpf: 12 bytes is not a whole number of 8-byte filters$"):
        parse_sock_filters(raw[:12])


TCPDUMP_RAW_UDP_TTL_64 = """\
{ 0x30, 0, 0, 0x00000000 },
{ 0x54, 0, 0, 0x000000f0 },
{ 0x15, 0, 5, 0x00000040 },
{ 0x30, 0, 0, 0x00000009 },
{ 0x15, 0, 3, 0x00000011 },
{ 0x30, 0, 0, 0x00000008 },
{ 0x15, 0, 1, 0x00000040 },
{ 0x6, 0, 0, 0x00040000 },
{ 0x6, 0, 0, 0x00000000 },
"""


def test_parse_tcpdump_dd():
    prog = parse_tcpdump_dd(TCPDUMP_RAW_UDP_TTL_64)
    assert len(prog) == 9
    assert prog[0] == SockFilter(0x30, 0, 0, 0)
    assert prog[2] == SockFilter(0x15, 0, 5, 0x40)
    assert prog[-2] == SockFilter(6, 0, 0, 0x40000)
    assert parse_tcpdump_dd("\n{6,0,0,65535}\n  { 0x16, 0, 0, 0 },  \n\n") == [
        SockFilter(6, 0, 0, 65535),
        RET_A,
    ]
    with pytest.raises(ValueError, match=r"^bpf: line 2 is not a tcpdump -dd instruction: '\(000\) ret #0'$"):
        parse_tcpdump_dd("{ 0x6, 0, 0, 0 },\n(000) ret #0\n")
    with pytest.raises(ValueError, match=r"^bpf: line 1 has a field too wide for struct sock_filter"):
        parse_tcpdump_dd("{ 0x6, 0, 256, 0 },")
    with pytest.raises(ValueError, match="too wide"):
        parse_tcpdump_dd("{ 0x6, 0, 0, 0x100000000 },")


# (program, message) for every refusal of bpf_check_classic/check_load_and_stores.
REFUSED = [
    ([], "bpf: program of 0 instructions"),
    ([DROP] * (BPF_MAXINSNS + 1), "bpf: program of 4097 instructions"),
    ([stmt(0xFF), DROP], "bpf: insn 0: opcode 0xff not allowed"),
    ([stmt(BPF_RET | BPF_X)], "bpf: insn 0: opcode 0xe not allowed"),
    ([stmt(BPF_LDX | BPF_W | BPF_ABS), DROP], "bpf: insn 0: opcode 0x21 not allowed"),
    ([stmt(BPF_ALU | BPF_NEG | BPF_X), DROP], "bpf: insn 0: opcode 0x8c not allowed"),
    ([stmt(BPF_JMP | BPF_JA | BPF_X), DROP], "bpf: insn 0: opcode 0xd not allowed"),
    ([stmt(BPF_LD | BPF_B | BPF_LEN), DROP], "bpf: insn 0: opcode 0x90 not allowed"),
    ([stmt(BPF_LDX | BPF_W | BPF_MSH), DROP], "bpf: insn 0: opcode 0xa1 not allowed"),
    ([stmt(BPF_ST | BPF_X), DROP], "bpf: insn 0: opcode 0xa not allowed"),
    ([DROP, stmt(BPF_ALU | BPF_DIV | BPF_K, 0), DROP], "bpf: insn 1: division by constant 0"),
    ([stmt(BPF_ALU | BPF_MOD | BPF_K, 0), DROP], "bpf: insn 0: division by constant 0"),
    ([stmt(BPF_ALU | BPF_LSH | BPF_K, 32), DROP], "bpf: insn 0: shift by 32"),
    ([stmt(BPF_ALU | BPF_RSH | BPF_K, 0xFFFFFFFF), DROP], "bpf: insn 0: shift by 4294967295"),
    ([stmt(BPF_ST, 16), DROP], "bpf: insn 0: M[16] out of range"),
    ([stmt(BPF_STX, 16), DROP], "bpf: insn 0: M[16] out of range"),
    ([stmt(BPF_LD | BPF_MEM, 16), DROP], "bpf: insn 0: M[16] out of range"),
    ([stmt(BPF_LDX | BPF_MEM, 99), DROP], "bpf: insn 0: M[99] out of range"),
    ([stmt(BPF_JMP | BPF_JA, 1), DROP], "bpf: insn 0: ja 1 past the end"),
    ([stmt(BPF_JMP | BPF_JA, 0xFFFFFFFF), DROP], "bpf: insn 0: ja 4294967295 past the end"),
    ([jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0), DROP], "bpf: insn 0: jump past the end"),
    ([jump(BPF_JMP | BPF_JGT | BPF_X, 0, 0, 1), DROP], "bpf: insn 0: jump past the end"),
    ([ld_anc(SKF_AD_VLAN_TPID + 4), DROP], "bpf: insn 0: unknown ancillary load -0xfc0"),
    ([ld_anc(2, BPF_B), DROP], "bpf: insn 0: unknown ancillary load -0xffe"),
    ([stmt(BPF_LD | BPF_H | BPF_ABS, -1), DROP], "bpf: insn 0: unknown ancillary load -0x1"),
    ([DROP, stmt(BPF_LD | BPF_IMM)], "bpf: last instruction is not a return"),
    ([stmt(BPF_LD | BPF_MEM, 0), DROP], "bpf: insn 0: M[0] read before any store"),
    (
        [jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1), stmt(BPF_ST, 2), stmt(BPF_LDX | BPF_MEM, 2), DROP],
        "bpf: insn 2: M[2] read before any store",
    ),
    (
        [stmt(BPF_ST, 1), stmt(BPF_JMP | BPF_JA, 1), DROP, stmt(BPF_LD | BPF_MEM, 2), DROP],
        "bpf: insn 3: M[2] read before any store",
    ),
]


@pytest.mark.parametrize(("prog", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_bpf_check_classic_refuses(prog, message):
    with pytest.raises(OSError) as e:
        bpf_check_classic(prog)
    assert e.value.errno == errno.EINVAL
    assert e.value.strerror == f"Invalid argument: {message}"
    with pytest.raises(OSError):
        bpf_prepare_filter(prog)


ACCEPTED = [
    [DROP] * BPF_MAXINSNS,
    [RET_A],
    [stmt(BPF_ALU | BPF_RSH | BPF_K, 31), stmt(BPF_ALU | BPF_DIV | BPF_K, 0xFFFFFFFF), DROP],
    [stmt(BPF_JMP | BPF_JA, 0), DROP],
    [jump(BPF_JMP | BPF_JSET | BPF_X, 0, 1, 0), DROP, DROP],
    # Every ancillary load at every size, and negative k that no check looks at.
    [ld_anc(ad, size) for ad in range(0, 64, 4) for size in (BPF_W, BPF_H, BPF_B)] + [DROP],
    [stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF - 1), stmt(BPF_LD | BPF_B | BPF_IND, -1), DROP],
    [stmt(BPF_LDX | BPF_B | BPF_MSH, -1), stmt(BPF_LD | BPF_H | BPF_ABS, SKF_LL_OFF), DROP],
    # Stored on both branches.
    [
        jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 2),
        stmt(BPF_ST, 2),
        stmt(BPF_JMP | BPF_JA, 1),
        stmt(BPF_STX, 2),
        stmt(BPF_LD | BPF_MEM, 2),
        DROP,
    ],
    # The kernel's pass takes code after an unconditional jump, that nothing jumps to, as
    # having every cell stored.
    [stmt(BPF_JMP | BPF_JA, 1), stmt(BPF_LD | BPF_MEM, 9), DROP],
]


@pytest.mark.parametrize("prog", ACCEPTED)
def test_bpf_check_classic_accepts(prog):
    bpf_check_classic(prog)
    assert bpf_prepare_filter(prog).insns == tuple(prog)


# tcpdump 4.99.3 / libpcap 1.10.3, `tcpdump -dd -y EN10MB 'udp port 53'`
TCPDUMP_EN10MB_UDP_PORT_53 = """\
{ 0x28, 0, 0, 0x0000000c },
{ 0x15, 0, 6, 0x000086dd },
{ 0x30, 0, 0, 0x00000014 },
{ 0x15, 0, 15, 0x00000011 },
{ 0x28, 0, 0, 0x00000036 },
{ 0x15, 12, 0, 0x00000035 },
{ 0x28, 0, 0, 0x00000038 },
{ 0x15, 10, 11, 0x00000035 },
{ 0x15, 0, 10, 0x00000800 },
{ 0x30, 0, 0, 0x00000017 },
{ 0x15, 0, 8, 0x00000011 },
{ 0x28, 0, 0, 0x00000014 },
{ 0x45, 6, 0, 0x00001fff },
{ 0xb1, 0, 0, 0x0000000e },
{ 0x48, 0, 0, 0x0000000e },
{ 0x15, 2, 0, 0x00000035 },
{ 0x48, 0, 0, 0x00000010 },
{ 0x15, 0, 1, 0x00000035 },
{ 0x6, 0, 0, 0x00040000 },
{ 0x6, 0, 0, 0x00000000 },
"""
# `tcpdump -dd -y RAW 'udp port 53'`
TCPDUMP_RAW_UDP_PORT_53 = """\
{ 0x30, 0, 0, 0x00000000 },
{ 0x54, 0, 0, 0x000000f0 },
{ 0x15, 0, 6, 0x00000060 },
{ 0x30, 0, 0, 0x00000006 },
{ 0x15, 0, 17, 0x00000011 },
{ 0x28, 0, 0, 0x00000028 },
{ 0x15, 14, 0, 0x00000035 },
{ 0x28, 0, 0, 0x0000002a },
{ 0x15, 12, 13, 0x00000035 },
{ 0x30, 0, 0, 0x00000000 },
{ 0x54, 0, 0, 0x000000f0 },
{ 0x15, 0, 10, 0x00000040 },
{ 0x30, 0, 0, 0x00000009 },
{ 0x15, 0, 8, 0x00000011 },
{ 0x28, 0, 0, 0x00000006 },
{ 0x45, 6, 0, 0x00001fff },
{ 0xb1, 0, 0, 0x00000000 },
{ 0x48, 0, 0, 0x00000000 },
{ 0x15, 2, 0, 0x00000035 },
{ 0x48, 0, 0, 0x00000002 },
{ 0x15, 0, 1, 0x00000035 },
{ 0x6, 0, 0, 0x00040000 },
{ 0x6, 0, 0, 0x00000000 },
"""
# `tcpdump -dd -y EN10MB 'ifindex 1'` and 'inbound': ancillary loads.
TCPDUMP_IFINDEX_1 = """\
{ 0x20, 0, 0, 0xfffff008 },
{ 0x15, 0, 1, 0x00000001 },
{ 0x6, 0, 0, 0x00040000 },
{ 0x6, 0, 0, 0x00000000 },
"""
TCPDUMP_INBOUND = """\
{ 0x28, 0, 0, 0xfffff004 },
{ 0x15, 0, 1, 0x00000004 },
{ 0x6, 0, 0, 0x00000000 },
{ 0x6, 0, 0, 0x00040000 },
"""
TCPDUMP = {
    ("EN10MB", "udp port 53"): TCPDUMP_EN10MB_UDP_PORT_53,
    ("RAW", "udp port 53"): TCPDUMP_RAW_UDP_PORT_53,
    ("EN10MB", "ifindex 1"): TCPDUMP_IFINDEX_1,
    ("EN10MB", "inbound"): TCPDUMP_INBOUND,
}


def _frame(
    *,
    sport: int = 40000,
    dport: int = 53,
    frag_off: int = 0x4000,
    proto: int = 17,
    ihl: int = 5,
    ethertype: int = 0x0800,
    payload: bytes = b"q",
) -> bytes:
    opts = bytes(4 * (ihl - 5))
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(opts) + len(udp), 1, frag_off, 64, proto, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))  # fmt: skip
    return ETH[:12] + ethertype.to_bytes(2, "big") + ip + opts + udp


def _frame6(*, dport: int = 53) -> bytes:
    udp = struct.pack("!HHHH", 40000, dport, 9, 0) + b"q"
    ip6 = struct.pack("!IHBB16s16s", 0x60000000, len(udp), 17, 64, bytes(15) + b"\x01", bytes(15) + b"\x02")
    return ETH[:12] + b"\x86\xdd" + ip6 + udp


# What each program means where tcpdump means it: a packet socket's filter, offset 0 at
# the Ethernet header (EN10MB) or at the IPv4 header (RAW).
TCPDUMP_CASES = [
    (("EN10MB", "udp port 53"), _frame(), 0x40000),
    (("EN10MB", "udp port 53"), _frame(sport=53, dport=9), 0x40000),
    (("EN10MB", "udp port 53"), _frame(dport=54), 0),
    (("EN10MB", "udp port 53"), _frame(ihl=6, dport=53), 0x40000),
    (("EN10MB", "udp port 53"), _frame(frag_off=0x2001), 0),  # a later fragment: no ports
    (("EN10MB", "udp port 53"), _frame(proto=6), 0),
    (("EN10MB", "udp port 53"), _frame6(), 0x40000),
    (("EN10MB", "udp port 53"), _frame6(dport=5353), 0),
    (("EN10MB", "udp port 53"), _frame(ethertype=0x0806), 0),
    (("RAW", "udp port 53"), _frame()[14:], 0x40000),
    (("RAW", "udp port 53"), _frame(ihl=7, sport=53, dport=1)[14:], 0x40000),
    (("RAW", "udp port 53"), _frame(dport=80)[14:], 0),
    (("RAW", "udp port 53"), _frame6()[14:], 0x40000),
    (("EN10MB", "ifindex 1"), _frame(), 0x40000),
    (("EN10MB", "inbound"), _frame(), 0x40000),
]


def _tcpdump(dlt: str, expr: str) -> str:
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    cmd = ["tcpdump", "-dd", "-y", dlt, expr]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout


@pytest.mark.parametrize("source", ["pinned", "generated"])
@pytest.mark.parametrize(("key", "frame", "want"), TCPDUMP_CASES)
def test_tcpdump_programs(source, key, frame, want):
    text = TCPDUMP[key] if source == "pinned" else _tcpdump(*key)
    prog = bpf_prepare_filter(parse_tcpdump_dd(text))
    assert run_filter(prog, frame, 0, len(frame), network=14, mac=0, anc=ANC) == want


def test_tcpdump_ancillary_programs_read_the_skb():
    ifindex = bpf_prepare_filter(parse_tcpdump_dd(TCPDUMP_IFINDEX_1))
    inbound = bpf_prepare_filter(parse_tcpdump_dd(TCPDUMP_INBOUND))
    frame = _frame()
    assert run_filter(ifindex, frame, 0, len(frame), network=14, mac=0, anc=AncillaryData(ifindex=2)) == 0
    assert run_filter(inbound, frame, 0, len(frame), network=14, mac=0, anc=AncillaryData(pkt_type=4)) == 0


# (op, A, X or K, result); K forms use the same operand as an immediate.
ALU = [
    (BPF_ADD, 0xFFFFFFFF, 2, 1),
    (BPF_SUB, 1, 2, 0xFFFFFFFF),
    (BPF_MUL, 0x80000001, 2, 2),
    (BPF_MUL, 0x10000, 0x10000, 0),
    (BPF_DIV, 100, 7, 14),
    (BPF_DIV, 0xFFFFFFFF, 0x80000000, 1),  # unsigned, not signed
    (BPF_MOD, 100, 7, 2),
    (BPF_MOD, 0xFFFFFFF6, 0x7FFFFFFF, 0x7FFFFFF7),
    (BPF_OR, 0xF0, 0x0F, 0xFF),
    (BPF_AND, 0xF0F0, 0xFF00, 0xF000),
    (BPF_XOR, 0xFF, 0x0F, 0xF0),
    (BPF_LSH, 0x80000001, 1, 2),
    (BPF_LSH, 1, 31, 0x80000000),
    (BPF_RSH, 0x80000000, 31, 1),
]


@pytest.mark.parametrize(("op", "a", "x", "want"), ALU)
def test_alu(op, a, x, want):
    assert value(stmt(BPF_LD | BPF_IMM, a), stmt(BPF_LDX | BPF_IMM, x), stmt(BPF_ALU | op | BPF_X)) == want
    assert value(stmt(BPF_LD | BPF_IMM, a), stmt(BPF_ALU | op | BPF_K, x)) == want


def test_alu_edges():
    # Shifts by X take X & 31 (the eBPF interpreter and the x86 JIT alike).
    assert value(stmt(BPF_LD | BPF_IMM, 3), stmt(BPF_LDX | BPF_IMM, 33), stmt(BPF_ALU | BPF_LSH | BPF_X)) == 6
    assert (
        value(stmt(BPF_LD | BPF_IMM, 12), stmt(BPF_LDX | BPF_IMM, 66), stmt(BPF_ALU | BPF_RSH | BPF_X)) == 3
    )
    assert value(stmt(BPF_LD | BPF_IMM, 5), stmt(BPF_LDX | BPF_IMM, 32), stmt(BPF_ALU | BPF_LSH | BPF_X)) == 5
    assert value(stmt(BPF_LD | BPF_IMM, 5), stmt(BPF_ALU | BPF_NEG)) == 0xFFFFFFFB
    assert value(stmt(BPF_ALU | BPF_NEG)) == 0
    # Division or modulo by X == 0 ends the program with 0, whatever follows.
    for op in (BPF_DIV, BPF_MOD):
        assert run([stmt(BPF_LD | BPF_IMM, 9), stmt(BPF_ALU | op | BPF_X), ACCEPT]) == 0
        assert run(
            [stmt(BPF_LDX | BPF_IMM, 4), stmt(BPF_LD | BPF_IMM, 9), stmt(BPF_ALU | op | BPF_X), ACCEPT]
        ) == (0xFFFFFFFF)


# (op, A, operand, taken)
JUMPS = [
    (BPF_JEQ, 5, 5, True),
    (BPF_JEQ, 5, 6, False),
    (BPF_JGT, 6, 5, True),
    (BPF_JGT, 5, 5, False),
    (BPF_JGT, 0x80000000, 0x7FFFFFFF, True),  # unsigned, also for k >= 2**31
    (BPF_JGT, 1, 0xFFFFFFFF, False),
    (BPF_JGE, 5, 5, True),
    (BPF_JGE, 4, 5, False),
    (BPF_JGE, 0xFFFFFFFF, 0xFFFFFFFF, True),
    (BPF_JSET, 6, 2, True),
    (BPF_JSET, 6, 9, False),
    (BPF_JSET, 0x80000000, 0x80000000, True),
]


@pytest.mark.parametrize(("op", "a", "k", "taken"), JUMPS)
def test_jumps(op, a, k, taken):
    want = 1 if taken else 2
    ret1, ret2 = stmt(BPF_RET | BPF_K, 1), stmt(BPF_RET | BPF_K, 2)
    assert run([stmt(BPF_LD | BPF_IMM, a), jump(BPF_JMP | op | BPF_K, k, 0, 1), ret1, ret2]) == want
    assert run([stmt(BPF_LD | BPF_IMM, a), jump(BPF_JMP | op | BPF_K, k, 1, 0), ret2, ret1]) == want
    assert run(
        [
            stmt(BPF_LD | BPF_IMM, a),
            stmt(BPF_LDX | BPF_IMM, k),
            jump(BPF_JMP | op | BPF_X, 0, 0, 1),
            ret1,
            ret2,
        ]
    ) == (want)
    # Both ways far, through dead code.
    far = [stmt(BPF_LD | BPF_IMM, a), jump(BPF_JMP | op | BPF_K, k, 2, 3), DROP, DROP, ret1, ret2]
    assert run(far) == want


def test_ja_and_fall_through_into_a_target():
    prog = [
        stmt(BPF_LD | BPF_IMM, 7),
        jump(BPF_JMP | BPF_JEQ | BPF_K, 7, 2, 0),
        stmt(BPF_ALU | BPF_ADD | BPF_K, 100),
        stmt(BPF_JMP | BPF_JA, 1),
        stmt(BPF_ALU | BPF_ADD | BPF_K, 10),  # the jeq's target
        stmt(BPF_ALU | BPF_ADD | BPF_K, 1),  # the ja's target, also fallen into from 4
        RET_A,
    ]
    assert run(prog) == 18
    prog[0] = stmt(BPF_LD | BPF_IMM, 8)
    assert run(prog) == 109


def test_misc_and_memory():
    assert value(stmt(BPF_LDX | BPF_IMM, 42), stmt(BPF_MISC | BPF_TXA)) == 42
    assert (
        value(
            stmt(BPF_LD | BPF_IMM, 42),
            stmt(BPF_MISC | BPF_TAX),
            stmt(BPF_LD | BPF_IMM, 0),
            stmt(BPF_MISC | BPF_TXA),
        )
        == 42
    )
    prog = [stmt(BPF_LD | BPF_IMM, 1), stmt(BPF_ST, 0), stmt(BPF_LDX | BPF_IMM, 2), stmt(BPF_STX, 15)]
    prog += [stmt(BPF_LD | BPF_MEM, 15), stmt(BPF_LDX | BPF_MEM, 0), stmt(BPF_ALU | BPF_LSH | BPF_K, 4)]
    prog += [stmt(BPF_ALU | BPF_ADD | BPF_X)]
    assert value(*prog) == 0x21
    assert value(stmt(BPF_LD | BPF_W | BPF_LEN)) == LENGTH
    assert value(stmt(BPF_LDX | BPF_W | BPF_LEN), stmt(BPF_MISC | BPF_TXA)) == LENGTH
    # A and X start at 0.
    assert value(stmt(BPF_ALU | BPF_ADD | BPF_X)) == 0
    assert run([stmt(BPF_RET | BPF_K, 0xFFFFFFFF)]) == 0xFFFFFFFF


def test_absolute_loads_and_bounds():
    assert value(stmt(BPF_LD | BPF_B | BPF_ABS, 0)) == 40000 >> 8
    assert value(stmt(BPF_LD | BPF_H | BPF_ABS, 2)) == 53
    assert value(stmt(BPF_LD | BPF_W | BPF_ABS, 4)) == 0x0010BEEF
    # The last bytes of skb->len load; one more does not, though the buffer goes on.
    assert value(stmt(BPF_LD | BPF_W | BPF_ABS, 12)) == int.from_bytes(b"oad!", "big")
    assert value(stmt(BPF_LD | BPF_H | BPF_ABS, 14)) == int.from_bytes(b"d!", "big")
    assert value(stmt(BPF_LD | BPF_B | BPF_ABS, 15)) == ord("!")
    for size, k in ((BPF_W, 13), (BPF_H, 15), (BPF_B, 16), (BPF_W, 0x7FFFFFFF), (BPF_B, 0x10000)):
        assert run([stmt(BPF_LD | size | BPF_ABS, k), ACCEPT]) == 0
    # A failed load ends the program at once with 0, even with `ret #k` after it.
    assert run([stmt(BPF_LD | BPF_IMM, 5), stmt(BPF_LD | BPF_B | BPF_ABS, 16), RET_A]) == 0


def test_network_and_link_layer_loads():
    assert value(stmt(BPF_LD | BPF_B | BPF_ABS, SKF_NET_OFF)) == 0x45
    assert value(stmt(BPF_LD | BPF_B | BPF_ABS, SKF_NET_OFF + 9)) == 17
    assert value(stmt(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 16)) == 0x0A000002
    # Reading across into the UDP header, up to skb->len and no further.
    assert value(stmt(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 18)) == 0x00029C40
    assert value(stmt(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 32)) == int.from_bytes(b"oad!", "big")
    assert run([stmt(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 33), ACCEPT]) == 0
    assert run([stmt(BPF_LD | BPF_B | BPF_ABS, SKF_AD_OFF - 1), ACCEPT]) == 0  # net + 0xFEFFF
    assert value(stmt(BPF_LD | BPF_H | BPF_ABS, SKF_LL_OFF + 12)) == 0x0800
    assert value(stmt(BPF_LD | BPF_W | BPF_ABS, SKF_LL_OFF + 2)) == 0x00000B02
    assert value(stmt(BPF_LD | BPF_W | BPF_ABS, SKF_LL_OFF + 12)) == 0x08004500
    # No mac header: SKF_LL_OFF fails; below SKF_LL_OFF always fails.
    assert run([stmt(BPF_LD | BPF_H | BPF_ABS, SKF_LL_OFF + 12), ACCEPT], mac=None) == 0
    assert value(stmt(BPF_LD | BPF_B | BPF_ABS, SKF_NET_OFF), mac=None) == 0x45
    assert run([stmt(BPF_LD | BPF_B | BPF_ABS, SKF_LL_OFF - 1), ACCEPT]) == 0
    assert run([stmt(BPF_LD | BPF_B | BPF_ABS, -0x80000000), ACCEPT]) == 0


def test_indirect_loads_wrap_to_signed():
    assert value(stmt(BPF_LDX | BPF_IMM, 2), stmt(BPF_LD | BPF_H | BPF_IND, 0)) == 53
    assert value(stmt(BPF_LDX | BPF_IMM, 0xFFFFFFFF), stmt(BPF_LD | BPF_H | BPF_IND, 3)) == 53
    assert value(stmt(BPF_LDX | BPF_IMM, 9), stmt(BPF_LD | BPF_B | BPF_IND, SKF_NET_OFF)) == 17
    assert value(stmt(BPF_LDX | BPF_IMM, SKF_NET_OFF), stmt(BPF_LD | BPF_B | BPF_IND, 9)) == 17
    assert value(stmt(BPF_LDX | BPF_IMM, SKF_LL_OFF), stmt(BPF_LD | BPF_H | BPF_IND, 12)) == 0x0800
    assert value(stmt(BPF_LDX | BPF_W | BPF_LEN), stmt(BPF_LD | BPF_B | BPF_IND, -1)) == ord("!")
    for x, k in ((0, -1), (LENGTH, 0), (0xFFFFFFFF, 0), (0x7FFFFFFF, 0x7FFFFFFF), (SKF_LL_OFF, -1)):
        assert run([stmt(BPF_LDX | BPF_IMM, x), stmt(BPF_LD | BPF_B | BPF_IND, k), ACCEPT]) == 0
    assert (
        run([stmt(BPF_LDX | BPF_IMM, SKF_LL_OFF), stmt(BPF_LD | BPF_B | BPF_IND, 0), ACCEPT], mac=None) == 0
    )


def test_msh():
    assert run([stmt(BPF_LDX | BPF_B | BPF_MSH, SKF_NET_OFF), stmt(BPF_MISC | BPF_TXA), RET_A]) == 20
    # 4 * (0x9c & 0xf): the high byte of the source port, read as an IHL.
    assert run([stmt(BPF_LD | BPF_IMM, 7), stmt(BPF_LDX | BPF_B | BPF_MSH, 0), RET_A]) == 7
    assert run([stmt(BPF_LDX | BPF_B | BPF_MSH, 0), stmt(BPF_MISC | BPF_TXA), RET_A]) == 48
    assert run([stmt(BPF_LDX | BPF_B | BPF_MSH, LENGTH), ACCEPT]) == 0
    assert run([stmt(BPF_LDX | BPF_B | BPF_MSH, SKF_LL_OFF), stmt(BPF_MISC | BPF_TXA), RET_A], mac=None) == 0


def _nla(attrtype: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("<HH", n, attrtype) + payload + bytes(-n % 4)


def test_ancillary_loads():
    anc = AncillaryData(
        protocol=0x86DD,
        pkt_type=3,
        ifindex=7,
        hatype=1,
        mark=0xDEADBEEF,
        queue_mapping=5,
        hash=0x12345678,
        cpu=3,
        vlan_tci=0x0123,
        vlan_proto=0x8100,
        pay_offset=8,
        random=lambda: 0xCAFEF00D,
    )
    want = {
        SKF_AD_PROTOCOL: 0x86DD,
        SKF_AD_PKTTYPE: 3,
        SKF_AD_IFINDEX: 7,
        SKF_AD_MARK: 0xDEADBEEF,
        SKF_AD_QUEUE: 5,
        SKF_AD_HATYPE: 1,
        SKF_AD_RXHASH: 0x12345678,
        SKF_AD_CPU: 3,
        SKF_AD_VLAN_TAG: 0x0123,
        SKF_AD_VLAN_TAG_PRESENT: 1,
        SKF_AD_PAY_OFFSET: 8,
        SKF_AD_RANDOM: 0xCAFEF00D,
        SKF_AD_VLAN_TPID: 0x8100,
    }
    for ad, v in want.items():
        for size in (BPF_W, BPF_H, BPF_B):  # the size is not looked at
            assert value(ld_anc(ad, size), anc=anc) == v, (ad, size)
    assert value(stmt(BPF_LD | BPF_IMM, 0x3C), stmt(BPF_LDX | BPF_IMM, 0xF), ld_anc(SKF_AD_ALU_XOR_X)) == 0x33
    assert value(ld_anc(SKF_AD_VLAN_TAG_PRESENT), anc=AncillaryData(vlan_proto=0x88A8)) == 1
    assert value(ld_anc(SKF_AD_VLAN_TAG_PRESENT), anc=AncillaryData()) == 0
    assert value(ld_anc(SKF_AD_PKTTYPE), anc=AncillaryData(pkt_type=0xF)) == 7


def test_ifindex_and_hatype_without_a_device_return_a():
    for ad in (SKF_AD_IFINDEX, SKF_AD_HATYPE):
        assert run([stmt(BPF_LD | BPF_IMM, 33), ld_anc(ad), DROP], anc=AncillaryData(ifindex=None)) == 33
        assert run([stmt(BPF_LD | BPF_IMM, 33), ld_anc(ad), DROP], anc=AncillaryData(ifindex=0)) == 0


def test_random_is_called_per_load():
    seq = iter([1, 2, 0x1_0000_0003])
    anc = AncillaryData(random=lambda: next(seq))
    prog = [
        ld_anc(SKF_AD_RANDOM),
        stmt(BPF_MISC | BPF_TAX),
        ld_anc(SKF_AD_RANDOM),
        stmt(BPF_ALU | BPF_ADD | BPF_X),
    ]
    assert value(*prog, anc=anc) == 3
    assert value(ld_anc(SKF_AD_RANDOM), anc=anc) == 3


NLA_PAYLOAD = _nla(1, bytes(6)) + _nla(0x4002, b"two") + _nla(0x8005, _nla(7, b"in") + _nla(9, b"nine"))


@pytest.mark.parametrize(
    ("a", "x", "nest", "want"),
    [
        (8, 1, False, 8),
        (8, 2, False, 20),  # NLA_F_NET_BYTEORDER masked off
        (8, 5, False, 28),
        (8, 9, False, 0),  # nested attributes are not searched
        (28, 9, True, 40),
        (28, 7, True, 32),
        (28, 1, True, 0),
        (20, 1, True, 0),  # "two" holds no attributes
        (8, 0x10002, False, 0),
        (len(NLA_PAYLOAD) + 8 - 3, 1, False, 0),  # a > len - 4
        (29, 1, False, 0),  # nla_len 0x0500 > rem
    ],
)
def test_nlattr(a, x, nest, want):
    length = 8 + len(NLA_PAYLOAD)
    head = bytes(50) + UDP + NLA_PAYLOAD
    prog = [
        stmt(BPF_LD | BPF_IMM, a),
        stmt(BPF_LDX | BPF_IMM, x),
        ld_anc(SKF_AD_NLATTR_NEST if nest else SKF_AD_NLATTR),
    ]
    assert value(*prog, head=head, length=length) == want
    assert value(*prog, head=head, length=length, anc=AncillaryData(nonlinear=True)) == 0


def test_nlattr_short_packets():
    for ad in (SKF_AD_NLATTR, SKF_AD_NLATTR_NEST):
        assert (
            value(stmt(BPF_LDX | BPF_IMM, 0), ld_anc(ad), head=_nla(0, b"") + bytes(4), data=0, length=3) == 0
        )
        assert value(stmt(BPF_LDX | BPF_IMM, 0), ld_anc(ad), head=_nla(0, b""), data=0, length=4) == 0
        assert value(
            stmt(BPF_LDX | BPF_IMM, 3), ld_anc(ad), head=_nla(0, b"") + _nla(3, b""), data=0, length=8
        ) == (4 if ad == SKF_AD_NLATTR else 0)


def test_buffers_of_every_kind():
    prog = bpf_prepare_filter([stmt(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 16), RET_A])
    for head in (HEAD, bytearray(HEAD), memoryview(HEAD)):
        assert run_filter(prog, head, DATA, LENGTH, network=NETWORK, mac=MAC, anc=ANC) == 0x0A000002
    assert prog.insns == (SockFilter(0x20, 0, 0, 0xFFF00010), RET_A)


@pytest.mark.parametrize(
    ("res", "skb_len", "cap", "want"),
    [
        (0, 100, 8, None),
        (0xFFFFFFFF, 100, 8, 100),
        (100, 100, 8, 100),
        (99, 100, 8, 99),
        (12, 100, 8, 12),
        (3, 100, 8, 8),
        (1, 8, 8, 8),
        (3, 5, 8, 5),  # pskb_trim only shortens
    ],
)
def test_filter_verdict(res, skb_len, cap, want):
    assert filter_verdict(res, skb_len, cap) == want


# Converted lengths read from 6.18 (tests/e2e/test_bpf_kernel.py measures them).
@pytest.mark.parametrize(
    ("prog", "proglen"),
    [
        ([DROP], 5),
        ([RET_A], 4),
        ([ld_anc(SKF_AD_PROTOCOL), RET_A], 6),
        ([ld_anc(SKF_AD_IFINDEX), RET_A], 8),
        ([ld_anc(SKF_AD_VLAN_TAG_PRESENT), RET_A], 7),
        ([stmt(BPF_LD | BPF_W | BPF_ABS, 0), RET_A], 21),
        ([stmt(BPF_LD | BPF_B | BPF_ABS, 1), RET_A], 21),
        ([stmt(BPF_LD | BPF_H | BPF_ABS, 0x8000), RET_A], 24),
        ([stmt(BPF_LD | BPF_H | BPF_ABS, SKF_NET_OFF), RET_A], 16),
        ([stmt(BPF_LD | BPF_H | BPF_IND, 0), RET_A], 16),
        ([stmt(BPF_LD | BPF_H | BPF_IND, 1), RET_A], 17),
        ([stmt(BPF_LDX | BPF_B | BPF_MSH, 0), RET_A], 26),
        ([stmt(BPF_LDX | BPF_B | BPF_MSH, SKF_NET_OFF), RET_A], 22),
        ([stmt(BPF_ALU | BPF_DIV | BPF_X), stmt(BPF_ALU | BPF_MOD | BPF_X), RET_A], 14),
        (parse_tcpdump_dd(TCPDUMP_EN10MB_UDP_PORT_53), 140),
        (parse_tcpdump_dd(TCPDUMP_RAW_UDP_PORT_53), 150),
    ],
)
def test_converted_length(prog, proglen):
    assert bpf_convert_filter(prog) == proglen
    assert bpf_prepare_filter(prog).len == proglen
    assert bpf_prepare_filter(prog).size == 96 + 8 * proglen


def test_converted_jump_must_fit_16_bits():
    # Each `ldh [12]` becomes 14 eBPF instructions: a ja over 2340 of them is offset 32760.
    loads = [stmt(BPF_LD | BPF_H | BPF_ABS, 12)]
    assert bpf_convert_filter([stmt(BPF_JMP | BPF_JA, 2340), *loads * 2340, DROP]) == 32770
    with pytest.raises(OSError) as e:
        bpf_prepare_filter([stmt(BPF_JMP | BPF_JA, 2341), *loads * 2341, DROP])
    assert e.value.errno == errno.EINVAL
    assert e.value.strerror == "Invalid argument: bpf: insn 0: converted jump offset 32774 out of range"


def test_charge():
    assert bpf_prog_size(5) == 136
    # 6.18: a 136-byte filter attaches with optmem_max 137, not 136; a second one on the
    # same socket does not fit beside it in 200.
    assert sk_filter_charge_ok(0, 136, 137)
    assert not sk_filter_charge_ok(0, 136, 136)
    assert not sk_filter_charge_ok(136, 136, 200)
    assert not sk_filter_charge_ok(0, 300, 200)
    # The default optmem_max (131072) takes 1168 loads and a return, not 1169.
    loads = [stmt(BPF_LD | BPF_H | BPF_ABS, 12)]
    assert sk_filter_charge_ok(0, bpf_prepare_filter(loads * 1168 + [DROP]).size, 131072)
    assert not sk_filter_charge_ok(0, bpf_prepare_filter(loads * 1169 + [DROP]).size, 131072)


def _alu(op: int, a: int, v: int) -> int:
    if op == BPF_ADD:
        return a + v
    if op == BPF_SUB:
        return a - v
    if op == BPF_MUL:
        return a * v
    if op == BPF_DIV:
        return a // v
    if op == BPF_MOD:
        return a % v
    if op == BPF_OR:
        return a | v
    if op == BPF_AND:
        return a & v
    if op == BPF_XOR:
        return a ^ v
    if op == BPF_LSH:
        return a << v
    if op == BPF_RSH:
        return a >> v
    assert op == BPF_NEG
    return -a


def reference(
    prog: list[SockFilter],
    head: bytes,
    data: int,
    length: int,
    network: int,
    mac: int | None,
    anc: AncillaryData,
) -> int:
    """A step-by-step reading of the same semantics, for the generated code to agree with."""
    a = x = pc = 0
    mem = [0] * 16
    m32 = 0xFFFFFFFF

    def load(off: int, size: int) -> int | None:
        off = off - (1 << 32) if off >= 1 << 31 else off
        if off < 0:
            if off >= SKF_NET_OFF:
                off = network + off - SKF_NET_OFF - data
            elif off >= SKF_LL_OFF and mac is not None:
                off = mac + off - SKF_LL_OFF - data
            else:
                return None
        if off + size > length:
            return None
        return int.from_bytes(head[data + off : data + off + size], "big")

    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        cls, size = code & 7, {BPF_W: 4, BPF_H: 2, BPF_B: 1}.get(code & 0x18, 0)
        if cls == BPF_RET:
            return a if code & BPF_A else k
        if cls == BPF_LD and code & 0xE0 == BPF_ABS and k >= 0xFFFFF000:
            a = {
                SKF_AD_PROTOCOL: anc.protocol,
                SKF_AD_IFINDEX: anc.ifindex or 0,
                SKF_AD_PAY_OFFSET: anc.pay_offset,
                SKF_AD_ALU_XOR_X: a ^ x,
                SKF_AD_CPU: anc.cpu,
            }[k - 0xFFFFF000]
        elif cls in (BPF_LD, BPF_LDX) and code & 0xE0 in (BPF_ABS, BPF_IND, BPF_MSH):
            v = load((x + k) & m32 if code & 0xE0 == BPF_IND else k, size if cls == BPF_LD else 1)
            if v is None:
                return 0
            if cls == BPF_LD:
                a = v
            else:
                x = (v & 15) * 4
        elif cls in (BPF_LD, BPF_LDX):
            v = {BPF_IMM: k, BPF_LEN: length, BPF_MEM: mem[k % 16]}[code & 0xE0]
            a, x = (v, x) if cls == BPF_LD else (a, v)
        elif cls == BPF_ST:
            mem[k] = a
        elif cls == BPF_STX:
            mem[k] = x
        elif cls == BPF_MISC:
            a, x = (a, a) if code == BPF_MISC | BPF_TAX else (x, x)
        elif cls == BPF_ALU:
            op, v = code & 0xF0, x if code & BPF_X else k
            if op in (BPF_DIV, BPF_MOD) and v == 0:
                return 0
            if op in (BPF_LSH, BPF_RSH):
                v &= 31
            a = _alu(op, a, v) & m32
        elif code == BPF_JMP | BPF_JA:
            pc += k
        else:
            v = x if code & BPF_X else k
            taken = {BPF_JEQ: a == v, BPF_JGT: a > v, BPF_JGE: a >= v, BPF_JSET: bool(a & v)}[code & 0xF0]
            pc += jt if taken else jf


_u32 = st.one_of(
    st.integers(0, 64), st.sampled_from([0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFF00000, 0xFFE00000])
)
_offset = st.one_of(
    st.integers(0, 40),
    st.integers(0, 60).map(lambda o: (SKF_NET_OFF + o) & 0xFFFFFFFF),
    st.integers(0, 60).map(lambda o: (SKF_LL_OFF + o) & 0xFFFFFFFF),
)
_insn = st.one_of(
    st.builds(stmt, st.sampled_from([BPF_LD | s | BPF_ABS for s in (BPF_W, BPF_H, BPF_B)]), _offset),
    st.builds(stmt, st.sampled_from([BPF_LD | s | BPF_IND for s in (BPF_W, BPF_H, BPF_B)]), _u32 | _offset),
    st.builds(stmt, st.just(BPF_LDX | BPF_B | BPF_MSH), _offset),
    st.builds(stmt, st.sampled_from([BPF_LD | BPF_IMM, BPF_LDX | BPF_IMM]), _u32),
    st.builds(
        stmt, st.sampled_from([BPF_LD | BPF_W | BPF_LEN, BPF_LDX | BPF_W | BPF_LEN, BPF_MISC | BPF_TAX])
    ),
    st.builds(stmt, st.sampled_from([BPF_MISC | BPF_TXA, BPF_ALU | BPF_NEG])),
    st.builds(
        stmt, st.sampled_from([BPF_ST, BPF_STX, BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM]), st.integers(0, 1)
    ),
    st.builds(
        stmt,
        st.sampled_from(
            [BPF_ALU | op | BPF_X for op in (BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_MOD, BPF_LSH, BPF_RSH)]
        ),
    ),
    st.builds(
        stmt,
        st.sampled_from(
            [BPF_ALU | op | BPF_K for op in (BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_MOD, BPF_OR, BPF_XOR)]
        ),
        _u32.filter(bool),
    ),
    st.builds(
        stmt, st.sampled_from([BPF_ALU | BPF_LSH | BPF_K, BPF_ALU | BPF_RSH | BPF_K]), st.integers(0, 31)
    ),
    st.builds(
        jump,
        st.sampled_from(
            [BPF_JMP | op | src for op in (BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET) for src in (BPF_K, BPF_X)]
        ),
        _u32,
        st.integers(0, 4),
        st.integers(0, 4),
    ),
    st.builds(stmt, st.just(BPF_JMP | BPF_JA), st.integers(0, 4)),
    st.builds(
        ld_anc,
        st.sampled_from([SKF_AD_PROTOCOL, SKF_AD_IFINDEX, SKF_AD_PAY_OFFSET, SKF_AD_ALU_XOR_X, SKF_AD_CPU]),
    ),
    st.builds(stmt, st.sampled_from([BPF_RET | BPF_A, BPF_RET | BPF_K]), _u32),
)


@settings(max_examples=400, deadline=None)
@given(
    body=st.lists(_insn, min_size=1, max_size=20),
    payload=st.binary(max_size=24),
    mac=st.booleans(),
)
def test_generated_code_agrees_with_a_plain_reading(body, payload, mac):
    # M[0] and M[1] stored first; five returns at the end catch every jump of the body.
    prog = [
        stmt(BPF_ST, 0),
        stmt(BPF_STX, 1),
        *body,
        RET_A,
        *(stmt(BPF_RET | BPF_K, r) for r in (1, 2, 3, 4)),
    ]
    try:
        compiled = bpf_prepare_filter(prog)
    except OSError as e:
        assert e.errno == errno.EINVAL
        return
    head = HEAD[:DATA] + UDP[:4] + struct.pack("!H", 8 + len(payload)) + UDP[6:] + payload
    length = 8 + len(payload)
    anc = AncillaryData(protocol=0x0800, ifindex=1, pay_offset=8, cpu=1)
    got = run_filter(compiled, head, DATA, length, network=NETWORK, mac=MAC if mac else None, anc=anc)
    assert got == reference(prog, head, DATA, length, NETWORK, MAC if mac else None, anc)
