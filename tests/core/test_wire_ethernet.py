import pytest

from services.core.wire.errors import WireError
from services.core.wire.ethernet import (
    BROADCAST_MAC,
    ETH_FRAME_LEN,
    ETH_HLEN,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    ETH_ZLEN,
    EthernetFrame,
    EthernetRepr,
    eth_proto_is_802_3,
    is_broadcast_ether_addr,
    is_multicast_ether_addr,
    is_unicast_ether_addr,
    is_valid_ether_addr,
    is_zero_ether_addr,
    mac_from_str,
    mac_to_str,
)

# Captured from Linux 6.18 on a veth pair between two network namespaces: an ARP request
# from 02:00:00:00:00:01 (10.0.0.1) for 10.0.0.2, the UDP datagram that followed, and an
# MLD report to 33:33:00:00:00:16.
ARP_REQUEST_FRAME = bytes.fromhex(
    "ffffffffffff 020000000001 0806"  # broadcast <- 02:00:00:00:00:01, ETH_P_ARP
    "0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000002"  # who-has 10.0.0.2
)
UDP_FRAME = bytes.fromhex(
    "020000000002 020000000001 0800"  # ETH_P_IP
    "45000021faed400040112bdc0a0000010a000002 9c40270f000de4af 68656c6c6f"  # IPv4, UDP, hello
)
MLD_FRAME_HEADER = bytes.fromhex("333300000016 020000000001 86dd")

ALICE = bytes.fromhex("020000000001")
BOB = bytes.fromhex("020000000002")


def test_constants():
    assert (ETH_HLEN, ETH_ZLEN, ETH_FRAME_LEN) == (14, 60, 1514)


def test_view_reads_captured_frames():
    frame = EthernetFrame.new_checked(ARP_REQUEST_FRAME)
    assert frame.dst == BROADCAST_MAC
    assert frame.src == ALICE
    assert frame.ethertype == ETH_P_ARP
    assert bytes(frame.payload) == ARP_REQUEST_FRAME[14:]

    frame = EthernetFrame.new_checked(UDP_FRAME)
    assert (frame.dst, frame.src, frame.ethertype) == (BOB, ALICE, ETH_P_IP)
    assert bytes(frame.payload[:1]) == b"\x45"


def test_payload_is_a_view_not_a_copy():
    buf = bytearray(UDP_FRAME)
    payload = EthernetFrame(buf).payload
    buf[14] = 0x46
    assert payload[0] == 0x46


def test_runt_is_rejected():
    message = r"^ethernet: buffer of 13 bytes shorter than 14-byte header$"
    with pytest.raises(WireError, match=message):
        EthernetFrame.new_checked(UDP_FRAME[:13])
    assert EthernetFrame.new_checked(UDP_FRAME[:14]).payload.nbytes == 0


def test_repr_round_trip():
    frame = EthernetFrame.new_checked(MLD_FRAME_HEADER)
    r = EthernetRepr.parse(frame)
    assert r == EthernetRepr(mac_from_str("33:33:00:00:00:16"), ALICE, ETH_P_IPV6)
    out = bytearray(EthernetRepr.HEADER_LEN)
    r.emit(out)
    assert bytes(out) == MLD_FRAME_HEADER


def test_emit_at_offset_into_memoryview():
    out = bytearray(b"\xaa" * 20)
    EthernetRepr(BOB, ALICE, ETH_P_IP).emit(memoryview(out), 2)
    assert bytes(out) == b"\xaa\xaa" + UDP_FRAME[:14] + b"\xaa" * 4


def test_emit_rejects_bad_mac_and_short_buffer():
    with pytest.raises(WireError, match="MAC address of 5 bytes"):
        EthernetRepr(BOB[:5], ALICE, ETH_P_IP).emit(bytearray(14))
    with pytest.raises(WireError, match="cannot emit header at offset 1"):
        EthernetRepr(BOB, ALICE, ETH_P_IP).emit(bytearray(14), 1)


def test_setters_write_in_place():
    buf = bytearray(UDP_FRAME)
    frame = EthernetFrame(buf)
    frame.set_dst(ALICE)
    frame.set_src(BOB)
    frame.set_ethertype(ETH_P_ARP)
    assert bytes(buf[:14]) == bytes.fromhex("020000000001 020000000002 0806")
    with pytest.raises(TypeError):
        EthernetFrame(UDP_FRAME).set_ethertype(ETH_P_IP)


def test_address_classes():
    assert is_broadcast_ether_addr(BROADCAST_MAC)
    assert is_multicast_ether_addr(BROADCAST_MAC)
    assert is_multicast_ether_addr(bytes.fromhex("333300000016"))
    assert is_multicast_ether_addr(bytes.fromhex("01005e000001"))
    assert not is_broadcast_ether_addr(bytes.fromhex("333300000016"))
    assert not is_multicast_ether_addr(ALICE)
    assert is_unicast_ether_addr(ALICE)
    assert is_valid_ether_addr(ALICE)
    assert not is_valid_ether_addr(bytes(6))
    assert not is_valid_ether_addr(BROADCAST_MAC)
    assert is_zero_ether_addr(bytes(6))


def test_802_3_length_versus_ethertype():
    assert eth_proto_is_802_3(ETH_P_IP)
    assert eth_proto_is_802_3(0x0600)
    assert not eth_proto_is_802_3(0x05DC)


def test_mac_strings():
    assert mac_to_str(ALICE) == "02:00:00:00:00:01"
    assert mac_to_str(BROADCAST_MAC) == "ff:ff:ff:ff:ff:ff"
    assert mac_from_str("02:00:00:00:00:01") == ALICE
    assert mac_from_str("FF:ff:FF:ff:FF:ff") == BROADCAST_MAC
    with pytest.raises(WireError, match="MAC address of 7 bytes"):
        mac_to_str(b"\x00" * 7)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "02:00:00:00:00",
        "02:00:00:00:00:01:02",
        "2:0:0:0:0:1",
        "02-00-00-00-00-01",
        "0g:00:00:00:00:01",
        "02:00:00:00:00:01 ",
        "+2:00:00:00:00:01",
    ],
)
def test_bad_mac_strings(text):
    with pytest.raises(WireError, match="is not a MAC address"):
        mac_from_str(text)
