import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.checksum import (
    csum_add,
    csum_fold,
    csum_partial,
    csum_sub,
    csum_tcpudp_magic,
    csum_tcpudp_nofold,
    ip_fast_csum,
)

# Captured from Linux 6.18 on a veth pair between two network namespaces (tx checksum
# offload off, so the kernel filled in every checksum): 10.0.0.1:40000 -> 10.0.0.2:9999,
# payload b"hello", then the ICMP port unreachable that came back.
UDP_HELLO_IP = bytes.fromhex(
    "45000021faed400040112bdc0a0000010a000002"  # IPv4, DF, ttl 64, check 0x2bdc
    "9c40270f000de4af"  # UDP 40000 -> 9999, len 13, check 0xe4af
    "68656c6c6f"
)
ICMP_UNREACH_IP = bytes.fromhex(
    "45c0003dba0700004001abf60a0000020a000001"
    "0303111e00000000"  # type 3 code 3, check 0x111e
    "45000021faed400040112bdc0a0000010a0000029c40270f000de4af68656c6c6f"
)
SADDR = 0x0A000001
DADDR = 0x0A000002


def reference_csum_partial(buf: bytes, csum: int = 0) -> int:
    """RFC 1071 section 4.1, word by word with end-around carry."""
    total = csum
    for i in range(0, len(buf) - 1, 2):
        total += (buf[i] << 8) | buf[i + 1]
    if len(buf) & 1:
        total += buf[-1] << 8
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_rfc1071_example():
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert csum_partial(data) == 0xDDF2
    assert csum_fold(csum_partial(data)) == 0x220D


def test_captured_ipv4_header_checks_to_zero():
    header = UDP_HELLO_IP[:20]
    assert ip_fast_csum(header) == 0
    zeroed = bytearray(header)
    zeroed[10:12] = b"\x00\x00"
    assert ip_fast_csum(zeroed) == 0x2BDC


def test_ip_fast_csum_ihl_limits_the_words_summed():
    # With ihl the packet can be passed whole, as the kernel passes iph.
    assert ip_fast_csum(UDP_HELLO_IP, 5) == 0
    assert ip_fast_csum(UDP_HELLO_IP) != 0


def test_captured_udp_checksum_with_pseudo_header():
    segment = UDP_HELLO_IP[20:]
    assert csum_tcpudp_magic(SADDR, DADDR, 13, 17, csum_partial(segment)) == 0
    zeroed = bytearray(segment)
    zeroed[6:8] = b"\x00\x00"
    assert csum_tcpudp_magic(SADDR, DADDR, 13, 17, csum_partial(zeroed)) == 0xE4AF


def test_odd_length_captured_icmp_message():
    message = ICMP_UNREACH_IP[20:]
    assert len(message) == 41
    assert csum_fold(csum_partial(message)) == 0
    zeroed = bytearray(message)
    zeroed[2:4] = b"\x00\x00"
    assert csum_fold(csum_partial(zeroed)) == 0x111E


def test_odd_trailing_byte_is_the_high_half_of_a_word():
    assert csum_partial(b"\xab") == 0xAB00
    assert csum_partial(b"\x00\x01\xab") == 0xAB01


@pytest.mark.parametrize(
    ("data", "csum", "expected"),
    [
        (b"", 0, 0),
        (bytes(1), 0, 0),
        (bytes(4000), 0, 0),
        (b"", 0xFFFF, 0xFFFF),
        (bytes(3), 0xFFFF, 0xFFFF),
        (b"\xff\xff", 0, 0xFFFF),
        (b"\xff\xff" * 3000, 0, 0xFFFF),
        (b"\x00\x01\xff\xfe", 0, 0xFFFF),  # 1 + 0xfffe: -0, never +0
        (b"\x80\x00\x80\x00", 0, 0x0001),  # carry wraps around
        (b"\x00\x01", 0xFFFE, 0xFFFF),
        (b"\x00\x02", 0xFFFE, 0x0001),
        (b"", 0x12345678, 0x68AC),  # an unfolded 32-bit __wsum is folded
    ],
)
def test_zero_and_all_ones_edges(data, csum, expected):
    assert csum_partial(data, csum) == expected
    assert reference_csum_partial(data, csum) == expected


def test_csum_fold():
    assert csum_fold(0) == 0xFFFF
    assert csum_fold(0xFFFF) == 0
    assert csum_fold(0xDDF2) == 0x220D
    assert csum_fold(0x10000) == 0xFFFE
    assert csum_fold(0x12345678) == 0x9753
    assert csum_fold(0xFFFFFFFF) == 0


def test_csum_add_and_sub():
    assert csum_add(0, 0) == 0
    assert csum_add(0xFFFF, 1) == 1
    assert csum_add(0xFFFF, 0) == 0xFFFF
    assert csum_add(0x8000, 0x8000) == 1
    assert csum_sub(0x1234, 0x1234) == 0xFFFF
    assert csum_sub(0x0005, 0x0003) == 0x0002
    assert csum_sub(0x0003, 0x0005) == 0xFFFD


def test_pseudo_header():
    # 0a00 + 0001 + 0a00 + 0002 + 0011 + 000d
    assert csum_tcpudp_nofold(SADDR, DADDR, 13, 17) == 0x1421
    assert csum_tcpudp_nofold(SADDR, DADDR, 13, 17, 0xEBDE) == 0xFFFF
    assert csum_tcpudp_magic(SADDR, DADDR, 13, 17, 0) == 0xEBDE
    assert csum_tcpudp_nofold(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFF, 0xFF) == 0x00FF


@pytest.mark.parametrize(
    "size", [0, 1, 2, 511, 512, 513, 514, 515, 1472, 1473, 16383, 16384, 16385, 16386, 65535]
)
def test_every_size_path_matches_reference(size):
    data = random.Random(size).randbytes(size)
    assert csum_partial(data) == reference_csum_partial(data)
    assert csum_partial(data, 0xFFFF) == reference_csum_partial(data, 0xFFFF)


def test_accepts_bytearray_and_memoryview():
    data = random.Random(7).randbytes(1473)
    backing = bytearray(b"\xee" * 5 + data + b"\xee" * 5)
    expected = reference_csum_partial(data)
    assert csum_partial(bytearray(data)) == expected
    assert csum_partial(memoryview(backing)[5:-5]) == expected


@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_matches_reference(data, csum):
    assert csum_partial(data, csum) == reference_csum_partial(data, csum)


@given(
    st.lists(st.sampled_from([b"\x00", b"\xff", b"\x00\x00", b"\xff\xff", b"\x80"]), max_size=600),
    st.sampled_from([0, 0xFFFF, 0x10000, 0x1FFFE]),
)
def test_matches_reference_near_zero_and_all_ones(pieces, csum):
    data = b"".join(pieces)
    assert csum_partial(data, csum) == reference_csum_partial(data, csum)


@given(st.integers(min_value=0, max_value=70000), st.integers(min_value=0, max_value=2**32))
def test_matches_reference_on_large_buffers(size, seed):
    data = random.Random(seed).randbytes(size)
    assert csum_partial(data) == reference_csum_partial(data)


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_sum_of_even_split_is_sum_of_parts(a, b):
    if len(a) & 1:
        a += b"\x00"
    assert csum_partial(a + b) == csum_add(csum_partial(a), csum_partial(b))


@given(st.integers(5, 15).flatmap(lambda ihl: st.binary(min_size=ihl * 4, max_size=ihl * 4)))
def test_filled_header_checks_to_zero(header):
    h = bytearray(header)
    h[10:12] = b"\x00\x00"
    h[10:12] = ip_fast_csum(h).to_bytes(2, "big")
    assert ip_fast_csum(h) == 0


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_sub_undoes_add(a, b):
    # Equal as ones' complement numbers: 0 and 0xFFFF are both zero.
    assert csum_sub(csum_add(a, b), b) % 0xFFFF == a % 0xFFFF
