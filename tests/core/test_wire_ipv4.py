import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.checksum import ip_fast_csum
from services.core.wire.errors import WireError
from services.core.wire.ipv4 import (
    IP_CE,
    IP_DF,
    IP_MF,
    IPOPT_CIPSO,
    IPOPT_END,
    IPOPT_LSRR,
    IPOPT_NOOP,
    IPOPT_RA,
    IPOPT_RR,
    IPOPT_SEC,
    IPOPT_SSRR,
    IPOPT_TS,
    IPPROTO_ICMP,
    IPPROTO_UDP,
    IpOption,
    IpOptionError,
    Ipv4Packet,
    Ipv4Repr,
    ip_from_str,
    ip_to_str,
    ipopt_copied,
    ipv4_is_lbcast,
    ipv4_is_local_multicast,
    ipv4_is_loopback,
    ipv4_is_multicast,
    ipv4_is_zeronet,
    parse_options,
)

# Captured from Linux 6.18 on a veth pair between two network namespaces, 10.0.0.1 ->
# 10.0.0.2, Ethernet headers stripped. Checksums are the kernel's.
HELLO = bytes.fromhex(
    "45000021faed400040112bdc0a0000010a000002"  # DF, ttl 64, UDP
    "9c40270f000de4af68656c6c6f"
)
# setsockopt(IP_OPTIONS, RR with room for two addresses): the kernel recorded its own
# address, moved the pointer to 8 and padded the 11-byte option with one IPOPT_END.
RECORD_ROUTE = bytes.fromhex(
    "4800002cfaff4000401118aa0a0000010a000002"  # ihl 8
    "070b080a0000010000000000"  # RR len 11 ptr 8 [10.0.0.1, 0.0.0.0], END
    "9c41270f000c449f6f707473"  # UDP b"opts"
)
# IP_OPTIONS NOP + timestamp (12 bytes, flag TSONLY), IP_TOS 0x10, IP_TTL 7: the kernel
# stored one timestamp and padded 13 bytes of options to 16.
TIMESTAMP = bytes.fromhex(
    "4910002e2c7a4000071193160a0000010a000002"  # ihl 9, tos 0x10, ttl 7
    "01440c090002e2ccac00000000000000"  # NOP, TS len 12 ptr 9 [stamp, empty], END x3
    "9c45270f000ab40f7473"  # UDP b"ts"
)
# A 2048-byte UDP payload sent with IP_PMTUDISC_DONT over a 1500-byte MTU: two
# fragments, id 0xfb00, no DF.
FIRST_FRAGMENT_HEADER = bytes.fromhex("450005dcfb0020004011460e0a0000010a000002")
LAST_FRAGMENT_HEADER = bytes.fromhex("45000254fb0000b9401168dd0a0000010a000002")
# The ICMP port unreachable for HELLO: tos 0xc0, no DF, protocol ICMP.
ICMP_HEADER = bytes.fromhex("45c0003dba0700004001abf60a0000020a000001")

ALICE = 0x0A000001
BOB = 0x0A000002


def test_view_reads_every_field():
    p = Ipv4Packet.new_checked(HELLO)
    assert (p.version, p.ihl, p.header_len) == (4, 5, 20)
    assert p.tos == 0
    assert p.total_len == 33
    assert p.ident == 0xFAED
    assert p.frag_off == 0x4000
    assert p.flags == IP_DF
    assert (p.dont_frag, p.more_frags, p.frag_offset, p.is_fragment) == (True, False, 0, False)
    assert p.ttl == 64
    assert p.protocol == IPPROTO_UDP
    assert p.checksum == 0x2BDC
    assert (p.src, p.dst) == (ALICE, BOB)
    assert bytes(p.options) == b""
    assert bytes(p.payload) == HELLO[20:]
    assert p.verify_checksum()


def test_fragment_fields():
    first = Ipv4Packet.new_checked(FIRST_FRAGMENT_HEADER)
    assert (first.flags, first.more_frags, first.dont_frag) == (IP_MF, True, False)
    assert (first.frag_offset, first.is_fragment, first.total_len) == (0, True, 1500)
    last = Ipv4Packet.new_checked(LAST_FRAGMENT_HEADER)
    assert (last.flags, last.more_frags, last.frag_offset) == (0, False, 1480)
    assert last.is_fragment
    assert last.frag_off == 0x00B9
    assert first.verify_checksum() and last.verify_checksum()


def test_reserved_flag_is_reported_not_rejected():
    raw = bytearray(HELLO)
    raw[6] |= IP_CE >> 8
    p = Ipv4Packet.new_checked(raw)
    assert p.flags == IP_CE | IP_DF
    assert p.frag_offset == 0


def test_options_view():
    p = Ipv4Packet.new_checked(RECORD_ROUTE)
    assert p.header_len == 32
    assert bytes(p.options) == bytes.fromhex("070b080a0000010000000000")
    assert bytes(p.payload) == RECORD_ROUTE[32:]
    assert p.verify_checksum()
    t = Ipv4Packet.new_checked(TIMESTAMP)
    assert (t.tos, t.ttl, t.header_len) == (0x10, 7, 36)
    assert t.verify_checksum()


def test_payload_stops_at_tot_len_and_at_the_buffer():
    padded = HELLO + bytes(60 - 14 - len(HELLO))  # Ethernet padding to ETH_ZLEN
    assert bytes(Ipv4Packet.new_checked(padded).payload) == HELLO[20:]
    truncated = Ipv4Packet.new_checked(HELLO[:25])
    assert truncated.total_len == 33
    assert bytes(truncated.payload) == HELLO[20:25]


def test_new_checked_rejects_only_what_accessors_cannot_read():
    with pytest.raises(WireError, match=r"^ipv4: buffer of 19 bytes shorter than 20-byte header$"):
        Ipv4Packet.new_checked(HELLO[:19])
    with pytest.raises(WireError, match=r"^ipv4: buffer of 31 bytes shorter than 32-byte header"):
        Ipv4Packet.new_checked(RECORD_ROUTE[:31])
    # ip_rcv_core judges these itself, each under its own counter.
    bad_version = b"\x65" + HELLO[1:]
    assert Ipv4Packet.new_checked(bad_version).version == 6
    bad_ihl = b"\x44" + HELLO[1:]
    assert Ipv4Packet.new_checked(bad_ihl).ihl == 4
    bad_csum = HELLO[:10] + b"\x00\x00" + HELLO[12:]
    assert not Ipv4Packet.new_checked(bad_csum).verify_checksum()
    long_tot_len = HELLO[:2] + b"\x05\xdc" + HELLO[4:]
    assert Ipv4Packet.new_checked(long_tot_len).total_len == 1500
    short_tot_len = HELLO[:2] + b"\x00\x10" + HELLO[4:]
    assert bytes(Ipv4Packet.new_checked(short_tot_len).payload) == b""


def test_setters_and_fill_checksum():
    raw = bytearray(HELLO)
    p = Ipv4Packet(raw)
    p.set_ttl(1)
    p.set_total_len(1500)
    p.set_frag(1480, more_frags=True)
    p.set_ident(0x1234)
    p.set_tos(0x10)
    assert not p.verify_checksum()
    p.fill_checksum()
    assert p.verify_checksum()
    assert bytes(raw[:10]) == bytes.fromhex("451005dc123420b90111")
    assert p.checksum == ip_fast_csum(bytes(raw[:10]) + b"\x00\x00" + bytes(raw[12:20]))
    p.set_frag(0, more_frags=False, dont_frag=True)
    assert p.frag_off == IP_DF
    with pytest.raises(WireError, match="fragment offset 1481"):
        p.set_frag(1481, more_frags=False)
    with pytest.raises(TypeError):
        Ipv4Packet(HELLO).set_ttl(3)


def test_fill_checksum_reproduces_the_kernel():
    for header in (HELLO[:20], RECORD_ROUTE[:32], TIMESTAMP[:36], FIRST_FRAGMENT_HEADER):
        raw = bytearray(header)
        raw[10:12] = b"\xde\xad"
        Ipv4Packet(raw).fill_checksum()
        assert bytes(raw) == header


def test_decrease_ttl_matches_a_full_recompute():
    raw = bytearray(HELLO)
    p = Ipv4Packet(raw)
    assert p.decrease_ttl() == 63
    assert p.ttl == 63
    assert p.checksum == 0x2CDC
    assert p.verify_checksum()


def kernel_ip_decrease_ttl_check(check_be: int) -> int:
    # include/net/ip.h on little-endian x86: the __sum16 is used as its memory value.
    check = ((check_be & 0xFF) << 8 | check_be >> 8) + 0x0001  # htons(0x0100)
    stored = (check + (check >= 0xFFFF)) & 0xFFFF
    return (stored & 0xFF) << 8 | stored >> 8


def test_decrease_ttl_is_the_kernels_arithmetic_for_every_checksum():
    raw = bytearray(HELLO)
    p = Ipv4Packet(raw)
    for check in range(0x10000):
        raw[8] = 64
        p.set_checksum(check)
        p.decrease_ttl()
        assert p.checksum == kernel_ip_decrease_ttl_check(check), hex(check)


@given(st.binary(min_size=20, max_size=20), st.integers(2, 255))
def test_decrease_ttl_keeps_a_valid_checksum(header, ttl):
    raw = bytearray(header)
    raw[0] = 0x45
    raw[8] = ttl
    p = Ipv4Packet(raw)
    p.fill_checksum()
    p.decrease_ttl()
    assert p.verify_checksum()
    assert p.ttl == ttl - 1


def test_repr_parse():
    r = Ipv4Repr.parse(Ipv4Packet.new_checked(HELLO))
    assert r == Ipv4Repr(
        src=ALICE,
        dst=BOB,
        protocol=IPPROTO_UDP,
        payload_len=13,
        ttl=64,
        ident=0xFAED,
        dont_frag=True,
    )
    assert r.header_len == 20
    assert r.total_len == 33
    last = Ipv4Repr.parse(Ipv4Packet.new_checked(LAST_FRAGMENT_HEADER + bytes(576)))
    assert (last.frag_offset, last.more_frags, last.dont_frag, last.payload_len) == (
        1480,
        False,
        False,
        576,
    )


@pytest.mark.parametrize(
    "packet",
    [HELLO, RECORD_ROUTE, TIMESTAMP, FIRST_FRAGMENT_HEADER + bytes(1480), ICMP_HEADER + bytes(41)],
)
def test_parse_then_emit_reproduces_the_kernel_header(packet):
    r = Ipv4Repr.parse(Ipv4Packet.new_checked(packet))
    out = bytearray(r.header_len)
    r.emit(out)
    assert bytes(out) == packet[: r.header_len]


def test_emit_pads_options_with_ipopt_end():
    # The 11-byte record route as the kernel had it before padding.
    rr = bytes.fromhex("070b080a00000100000000")
    r = Ipv4Repr(ALICE, BOB, IPPROTO_UDP, 12, ident=0xFAFF, dont_frag=True, options=rr)
    assert r.header_len == 32
    out = bytearray(b"\xee" * 50)
    r.emit(memoryview(out), 14)
    assert bytes(out[14:46]) == RECORD_ROUTE[:32]
    assert bytes(out[:14]) == b"\xee" * 14
    assert bytes(out[46:]) == b"\xee" * 4


def test_emit_icmp_header():
    r = Ipv4Repr(BOB, ALICE, IPPROTO_ICMP, 41, tos=0xC0, ident=0xBA07)
    out = bytearray(20)
    r.emit(out)
    assert bytes(out) == ICMP_HEADER


@pytest.mark.parametrize(
    ("r", "message"),
    [
        (Ipv4Repr(ALICE, BOB, 17, 0, options=bytes(41)), "41 bytes of options, at most 40"),
        (Ipv4Repr(ALICE, BOB, 17, 65516), "total length 65536 exceeds 65535"),
        (Ipv4Repr(ALICE, BOB, 17, 0, frag_offset=4), "fragment offset 4 is not a multiple"),
        (Ipv4Repr(ALICE, BOB, 17, 0, frag_offset=65536), "fragment offset 65536"),
        (Ipv4Repr(ALICE, BOB, 17, 0, ttl=256), "cannot emit header at offset 0"),
        (Ipv4Repr(ALICE, 1 << 32, 17, 0), "cannot emit header at offset 0"),
    ],
)
def test_emit_rejects(r, message):
    with pytest.raises(WireError, match=message):
        r.emit(bytearray(60))


def test_emit_into_short_buffer():
    with pytest.raises(WireError, match="cannot emit header at offset 5"):
        Ipv4Repr(ALICE, BOB, 17, 0).emit(bytearray(24), 5)


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"\x65" + HELLO[1:], r"^ipv4: version 6, expected 4$"),
        (b"\x44" + HELLO[1:], r"^ipv4: ihl 4 below the minimum of 5$"),
        (HELLO[:2] + b"\x00\x13" + HELLO[4:], r"^ipv4: tot_len 19 shorter than 20-byte header$"),
        (HELLO[:30], r"^ipv4: tot_len 33 longer than the 30-byte buffer$"),
    ],
)
def test_repr_parse_rejects(packet, message):
    with pytest.raises(WireError, match=message):
        Ipv4Repr.parse(Ipv4Packet.new_checked(packet))


@given(
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 255),
    st.integers(0, 1000),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    st.booleans(),
    st.booleans(),
    st.integers(0, 0x1FFF).map(lambda units: units * 8),
    st.binary(max_size=40),
)
def test_emit_parse_round_trip(src, dst, proto, plen, ttl, tos, ident, df, mf, fo, opts):
    r = Ipv4Repr(src, dst, proto, plen, ttl, tos, ident, df, mf, fo, opts)
    out = bytearray(r.header_len + plen)
    r.emit(out)
    p = Ipv4Packet.new_checked(out)
    assert p.verify_checksum()
    back = Ipv4Repr.parse(p)
    padded = opts + bytes(-len(opts) % 4)
    assert back == Ipv4Repr(src, dst, proto, plen, ttl, tos, ident, df, mf, fo, padded)


def test_parse_options_from_captured_packets():
    rr = parse_options(Ipv4Packet.new_checked(RECORD_ROUTE).options)
    assert rr == [IpOption(IPOPT_RR, bytes.fromhex("080a00000100000000"))]
    assert rr[0].offset == 0
    ts = parse_options(Ipv4Packet.new_checked(TIMESTAMP).options)
    assert ts == [IpOption(IPOPT_TS, bytes.fromhex("090002e2ccac00000000"))]
    assert ts[0].offset == 1  # after the NOP


def test_parse_options_framing():
    assert parse_options(b"") == []
    assert parse_options(bytes([IPOPT_NOOP] * 4)) == []
    # Whatever follows IPOPT_END is padding, however it looks.
    assert parse_options(bytes([IPOPT_END, 0x07, 0xFF, 0x33])) == []
    opts = parse_options(bytes([IPOPT_RA, 4, 0, 0, IPOPT_NOOP, 0x99, 2, IPOPT_END, 0]))
    assert opts == [IpOption(IPOPT_RA, b"\x00\x00"), IpOption(0x99, b"")]
    assert [o.offset for o in opts] == [0, 5]
    # An option may end exactly at the end of the area.
    assert parse_options(bytes([IPOPT_RR, 7, 4, 0, 0, 0, 0])) == [IpOption(IPOPT_RR, bytes([4, 0, 0, 0, 0]))]


@pytest.mark.parametrize(
    ("opts", "offset", "message"),
    [
        (bytes([IPOPT_RR]), 0, "option 7 at offset 0 has no length octet"),
        (bytes([IPOPT_NOOP, IPOPT_NOOP, IPOPT_NOOP, IPOPT_TS]), 3, "option 68 at offset 3 has no"),
        (bytes([IPOPT_RR, 1, 0, 0]), 0, "option 7 at offset 0 has length 1, 4 bytes left"),
        (bytes([IPOPT_RR, 0, 0, 0]), 0, "has length 0"),
        (bytes([IPOPT_NOOP, IPOPT_LSRR, 8, 4, 0, 0, 0, 0]), 1, "has length 8, 7 bytes left"),
        (bytes([IPOPT_RA, 4, 0, 0, IPOPT_SEC, 5, 0, 0]), 4, "option 130 at offset 4"),
    ],
)
def test_parse_options_rejects_like_ip_options_compile(opts, offset, message):
    with pytest.raises(IpOptionError, match=message) as e:
        parse_options(opts)
    assert e.value.offset == offset
    assert e.value.pointer == 20 + offset
    assert isinstance(e.value, WireError)


def test_copied_flag():
    assert [ipopt_copied(t) for t in (IPOPT_SEC, IPOPT_LSRR, IPOPT_SSRR, IPOPT_CIPSO, IPOPT_RA)] == [True] * 5
    assert [ipopt_copied(t) for t in (IPOPT_END, IPOPT_NOOP, IPOPT_RR, IPOPT_TS)] == [False] * 4


def test_address_strings():
    assert ip_to_str(ALICE) == "10.0.0.1"
    assert ip_to_str(0) == "0.0.0.0"
    assert ip_to_str(0xFFFFFFFF) == "255.255.255.255"
    assert ip_from_str("10.0.0.2") == BOB
    assert ip_from_str("127.0.0.1") == 0x7F000001
    with pytest.raises(WireError, match=r"^ipv4: 4294967296 is not a 32-bit address$"):
        ip_to_str(1 << 32)
    with pytest.raises(WireError, match=r"^ipv4: -1 is not a 32-bit address$"):
        ip_to_str(-1)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10.0.0",
        "10.0.0.1.2",
        "256.0.0.1",
        "10.0.0.01",
        " 10.0.0.1",
        "10.0.0.1\n",
        "0x0a.0.0.1",
        "ten.0.0.1",
        "::1",
    ],
)
def test_bad_address_strings(text):
    with pytest.raises(WireError, match=r"is not an IPv4 address like 10\.0\.0\.1$"):
        ip_from_str(text)


@given(st.integers(0, 0xFFFFFFFF))
def test_address_string_round_trip(addr):
    assert ip_from_str(ip_to_str(addr)) == addr


def test_address_classes():
    assert ipv4_is_multicast(ip_from_str("224.0.0.1"))
    assert ipv4_is_multicast(ip_from_str("239.255.255.255"))
    assert not ipv4_is_multicast(ip_from_str("240.0.0.1"))
    assert ipv4_is_local_multicast(ip_from_str("224.0.0.251"))
    assert not ipv4_is_local_multicast(ip_from_str("224.0.1.1"))
    assert ipv4_is_lbcast(0xFFFFFFFF)
    assert ipv4_is_loopback(ip_from_str("127.1.2.3"))
    assert ipv4_is_zeronet(ip_from_str("0.1.2.3"))
    assert not ipv4_is_zeronet(ALICE)
