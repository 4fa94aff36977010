import pytest

from services.core.wire.arp import (
    ARP_LEN,
    ARPHRD_ETHER,
    ARPOP_REPLY,
    ARPOP_REQUEST,
    ArpPacket,
    ArpRepr,
)
from services.core.wire.errors import WireError
from services.core.wire.ethernet import ETH_P_IP

# Captured from Linux 6.18 on a veth pair between two network namespaces (Ethernet
# headers stripped): 10.0.0.1 (02:00:00:00:00:01) asks for 10.0.0.2, which answers.
REQUEST = bytes.fromhex("0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000002")
REPLY = bytes.fromhex("0001 0800 06 04 0002 020000000002 0a000002 020000000001 0a000001")

ALICE = bytes.fromhex("020000000001")
BOB = bytes.fromhex("020000000002")


def test_view_reads_captured_request():
    p = ArpPacket.new_checked(REQUEST)
    assert p.hardware_type == ARPHRD_ETHER
    assert p.protocol_type == ETH_P_IP
    assert (p.hardware_len, p.protocol_len) == (6, 4)
    assert p.operation == ARPOP_REQUEST
    assert (p.sender_hw, p.sender_ip) == (ALICE, 0x0A000001)
    assert (p.target_hw, p.target_ip) == (bytes(6), 0x0A000002)


def test_repr_parse_and_emit_reproduce_the_kernel_bytes():
    for raw, expected in (
        (REQUEST, ArpRepr(ARPOP_REQUEST, ALICE, 0x0A000001, bytes(6), 0x0A000002)),
        (REPLY, ArpRepr(ARPOP_REPLY, BOB, 0x0A000002, ALICE, 0x0A000001)),
    ):
        r = ArpRepr.parse(ArpPacket.new_checked(raw))
        assert r == expected
        out = bytearray(ARP_LEN)
        r.emit(out)
        assert bytes(out) == raw


def test_emit_after_ethernet_header():
    out = bytearray(14 + ARP_LEN)
    ArpRepr(ARPOP_REPLY, BOB, 0x0A000002, ALICE, 0x0A000001).emit(memoryview(out), 14)
    assert bytes(out[14:]) == REPLY


def test_ethernet_padding_after_the_packet_is_accepted():
    # A frame padded to ETH_ZLEN carries 18 bytes after the ARP packet.
    p = ArpPacket.new_checked(REQUEST + bytes(18))
    assert ArpRepr.parse(p).target_ip == 0x0A000002


def test_ieee802_hardware_type_is_accepted_like_arp_process():
    ArpPacket.new_checked(b"\x00\x06" + REQUEST[2:])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (REQUEST[:27], r"^arp: buffer of 27 bytes shorter than 28-byte packet$"),
        (b"", r"^arp: buffer of 0 bytes shorter than 28-byte packet$"),
        (REQUEST[:4] + b"\x08" + REQUEST[5:], r"^arp: address lengths hln=8 pln=4, expected 6 "),
        (REQUEST[:5] + b"\x10" + REQUEST[6:], r"^arp: address lengths hln=6 pln=16, expected 6 "),
        (b"\x00\x02" + REQUEST[2:], r"^arp: hardware type 2 is not Ethernet$"),
        (REQUEST[:2] + b"\x86\xdd" + REQUEST[4:], r"^arp: protocol type 0x86dd is not IPv4$"),
    ],
)
def test_new_checked_rejects(raw, message):
    with pytest.raises(WireError, match=message):
        ArpPacket.new_checked(raw)


def test_parse_rejects_operations_arp_process_ignores():
    rarp = REQUEST[:6] + b"\x00\x03" + REQUEST[8:]
    p = ArpPacket.new_checked(rarp)
    assert p.operation == 3
    with pytest.raises(WireError, match=r"^arp: operation 3 is neither request nor reply$"):
        ArpRepr.parse(p)


def test_emit_rejects_bad_values():
    with pytest.raises(WireError, match="hardware addresses must be 6 bytes"):
        ArpRepr(ARPOP_REQUEST, ALICE[:4], 1, bytes(6), 2).emit(bytearray(ARP_LEN))
    with pytest.raises(WireError, match="cannot emit packet at offset 0"):
        ArpRepr(ARPOP_REQUEST, ALICE, 1 << 32, bytes(6), 2).emit(bytearray(ARP_LEN))
    with pytest.raises(WireError, match="cannot emit packet at offset 1"):
        ArpRepr(ARPOP_REQUEST, ALICE, 1, bytes(6), 2).emit(bytearray(ARP_LEN), 1)
