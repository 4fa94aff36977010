import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.wire.errors import WireError
from services.core.wire.ipv4 import Ipv4Packet
from services.core.wire.udp import (
    CSUM_MANGLED_0,
    UDP_HLEN,
    UdpPacket,
    UdpRepr,
    udp_checksum,
    udp_checksum_ok,
)

# Captured from Linux 6.18 on a veth pair between two network namespaces (tx checksum
# offload off), 10.0.0.1 -> 10.0.0.2:9999; UDP header and payload only.
HELLO = bytes.fromhex("9c40270f000de4af 68656c6c6f")  # 40000, b"hello": odd length
HELLO_WORLD = bytes.fromhex("9c40270f0014969b 68656c6c6f20776f726c640a")
# Payload 0x2885 from port 40003 makes the computed checksum 0: the kernel sent 0xffff.
MANGLED = bytes.fromhex("9c43270f000affff 2885")
# SO_NO_CHECK on the sending socket: checksum field 0.
NO_CHECK = bytes.fromhex("9c44270f000e0000 6e6f6373756d")
# bytes(range(256)) * 8 from port 40002 with IP_PMTUDISC_DONT, sent as two IPv4
# fragments; the checksum covers the whole datagram.
FRAGMENTED_HEADER = bytes.fromhex("9c42270f0808168c")
FRAGMENTED_PAYLOAD = bytes(range(256)) * 8
FIRST_FRAGMENT = bytes.fromhex("450005dcfb0020004011460e0a0000010a000002") + (
    FRAGMENTED_HEADER + FRAGMENTED_PAYLOAD[:1472]
)
LAST_FRAGMENT = bytes.fromhex("45000254fb0000b9401168dd0a0000010a000002") + (FRAGMENTED_PAYLOAD[1472:])

ALICE = 0x0A000001
BOB = 0x0A000002


def test_view_reads_captured_datagram():
    u = UdpPacket.new_checked(HELLO)
    assert (u.src_port, u.dst_port, u.length, u.checksum) == (40000, 9999, 13, 0xE4AF)
    assert bytes(u.payload) == b"hello"


def test_new_checked_rejects_only_a_short_header():
    with pytest.raises(WireError, match=r"^udp: buffer of 7 bytes shorter than 8-byte header$"):
        UdpPacket.new_checked(HELLO[:7])
    # udp_rcv judges a length field that disagrees with the buffer, either way.
    assert UdpPacket.new_checked(HELLO[:8]).length == 13
    too_short = UdpPacket.new_checked(HELLO[:4] + b"\x00\x04" + HELLO[6:])
    assert too_short.length == 4
    assert bytes(too_short.payload) == b"hello"


@pytest.mark.parametrize("segment", [HELLO, HELLO_WORLD, MANGLED])
def test_checksum_of_captured_datagrams(segment):
    stored = int.from_bytes(segment[6:8], "big")
    assert udp_checksum(ALICE, BOB, segment) == stored
    assert udp_checksum_ok(ALICE, BOB, segment)


def test_checksum_ignores_the_fields_content():
    zeroed = HELLO[:6] + b"\x00\x00" + HELLO[8:]
    garbage = HELLO[:6] + b"\x12\x34" + HELLO[8:]
    assert udp_checksum(ALICE, BOB, zeroed) == 0xE4AF
    assert udp_checksum(ALICE, BOB, bytearray(garbage)) == 0xE4AF


def test_zero_result_is_sent_mangled():
    assert CSUM_MANGLED_0 == 0xFFFF
    assert udp_checksum(ALICE, BOB, MANGLED) == 0xFFFF


def test_zero_field_means_no_checksum():
    assert udp_checksum_ok(ALICE, BOB, NO_CHECK)
    assert udp_checksum_ok(ALICE, BOB, NO_CHECK[:8] + b"anything else")


def test_corruption_is_caught():
    for i in range(len(HELLO_WORLD)):
        if i in (6, 7):
            continue
        bad = bytearray(HELLO_WORLD)
        bad[i] ^= 0x01
        assert not udp_checksum_ok(ALICE, BOB, bad), i
    assert not udp_checksum_ok(ALICE, BOB ^ 1, HELLO_WORLD)
    assert not udp_checksum_ok(ALICE, BOB, HELLO_WORLD + b"\x00\x01")


def test_pseudo_header_length_is_the_segment_length():
    # Ethernet padding left after the datagram changes the pseudo-header's length, so
    # udp_rcv trims to ulen before checking.
    assert not udp_checksum_ok(ALICE, BOB, HELLO + b"\x00")


def test_reassembled_fragments_check():
    first = Ipv4Packet.new_checked(FIRST_FRAGMENT)
    last = Ipv4Packet.new_checked(LAST_FRAGMENT)
    assert first.verify_checksum() and last.verify_checksum()
    datagram = bytes(first.payload) + bytes(last.payload)
    u = UdpPacket.new_checked(datagram)
    assert (u.length, len(datagram)) == (2056, 2056)
    assert udp_checksum_ok(first.src, first.dst, datagram)
    assert udp_checksum(ALICE, BOB, datagram) == 0x168C


@pytest.mark.parametrize(
    ("src", "segment"), [(40000, HELLO), (40000, HELLO_WORLD), (40003, MANGLED), (40002, None)]
)
def test_emit_reproduces_the_kernel_bytes(src, segment):
    if segment is None:
        segment = FRAGMENTED_HEADER + FRAGMENTED_PAYLOAD
    payload = segment[8:]
    buf = bytearray(20 + UDP_HLEN) + payload
    UdpRepr(src, 9999).emit(buf, 20, len(payload), ALICE, BOB)
    assert bytes(buf[20:]) == segment
    assert bytes(buf[:20]) == bytes(20)


def test_emit_without_checksum_like_so_no_check():
    buf = bytearray(UDP_HLEN) + b"nocsum"
    UdpRepr(40004, 9999).emit(memoryview(buf), 0, 6, ALICE, BOB, checksum=False)
    assert bytes(buf) == NO_CHECK


def test_emit_rejects():
    with pytest.raises(WireError, match=r"^udp: length 65536 exceeds 65535$"):
        UdpRepr(1, 2).emit(bytearray(70000), 0, 65528, ALICE, BOB)
    with pytest.raises(WireError, match=r"5-byte payload at offset 8 runs past the 12-byte buffer"):
        UdpRepr(1, 2).emit(bytearray(12), 0, 5, ALICE, BOB)
    with pytest.raises(WireError, match="cannot emit header at offset 0"):
        UdpRepr(65536, 2).emit(bytearray(8), 0, 0, ALICE, BOB)


def test_repr_parse_and_setters():
    assert UdpRepr.parse(UdpPacket.new_checked(HELLO)) == UdpRepr(40000, 9999)
    buf = bytearray(HELLO)
    u = UdpPacket(buf)
    u.set_src_port(1)
    u.set_dst_port(2)
    u.set_length(3)
    u.set_checksum(4)
    assert bytes(buf[:8]) == bytes.fromhex("0001000200030004")
    with pytest.raises(TypeError):
        UdpPacket(HELLO).set_checksum(0)


def test_short_segments_are_rejected_by_the_checksum_helpers():
    with pytest.raises(WireError, match="segment of 7 bytes"):
        udp_checksum(ALICE, BOB, HELLO[:7])
    with pytest.raises(WireError, match="segment of 0 bytes"):
        udp_checksum_ok(ALICE, BOB, b"")


@given(
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.binary(max_size=3000),
)
def test_emitted_checksum_verifies(saddr, daddr, sport, dport, payload):
    buf = bytearray(UDP_HLEN) + payload
    UdpRepr(sport, dport).emit(buf, 0, len(payload), saddr, daddr)
    u = UdpPacket.new_checked(buf)
    assert u.length == UDP_HLEN + len(payload)
    assert u.checksum != 0
    assert u.checksum == udp_checksum(saddr, daddr, buf)
    assert udp_checksum_ok(saddr, daddr, buf)
