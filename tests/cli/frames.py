"""Ethernet frames built byte by byte (checksums computed here, independently of the
code under test) for the capture tests."""

from __future__ import annotations

import struct

from tests.services.fakes_udp import rfc1071 as csum

MAC_A = bytes.fromhex("02000a000001")
MAC_B = bytes.fromhex("02000a000002")
BROADCAST = b"\xff" * 6
IP_A = bytes([10, 0, 0, 1])
IP_B = bytes([10, 0, 0, 2])
LOCALHOST = bytes([127, 0, 0, 1])


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int = 1, frag: int = 0x4000) -> bytes:
    total = 20 + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, frag, 64, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:] + payload


def udp(src: bytes, dst: bytes, sport: int, dport: int, data: bytes, ulen: int | None = None) -> bytes:
    length = 8 + len(data) if ulen is None else ulen
    seg = struct.pack("!HHHH", sport, dport, length, 0) + data
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(seg))
    c = csum(pseudo + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def icmp(itype: int, code: int, rest: bytes, body: bytes) -> bytes:
    msg = struct.pack("!BBH", itype, code, 0) + rest + body
    return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]


def eth(dst: bytes, src: bytes, ethertype: int, payload: bytes, pad_to: int = 0) -> bytes:
    frame = dst + src + struct.pack("!H", ethertype) + payload
    return frame + bytes(max(0, pad_to - len(frame)))


def arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha + spa + tha + tpa


def udp_frame(data: bytes = b"hello") -> bytes:
    return eth(MAC_B, MAC_A, 0x0800, ipv4(IP_A, IP_B, 17, udp(IP_A, IP_B, 40000, 9000, data)))


def arp_request() -> bytes:
    return eth(BROADCAST, MAC_A, 0x0806, arp(1, MAC_A, IP_A, bytes(6), IP_B))


def arp_reply() -> bytes:
    return eth(MAC_A, MAC_B, 0x0806, arp(2, MAC_B, IP_B, MAC_A, IP_A))


def port_unreachable() -> bytes:
    original = ipv4(IP_A, IP_B, 17, udp(IP_A, IP_B, 40000, 9001, b"x"))
    return eth(MAC_A, MAC_B, 0x0800, ipv4(IP_B, IP_A, 1, icmp(3, 3, bytes(4), original)))


def need_frag() -> bytes:
    original = ipv4(IP_A, IP_B, 17, udp(IP_A, IP_B, 40000, 9000, b"y" * 8))
    return eth(MAC_A, MAC_B, 0x0800, ipv4(IP_B, IP_A, 1, icmp(3, 4, struct.pack("!HH", 0, 1400), original)))


def echo_request() -> bytes:
    return eth(MAC_B, MAC_A, 0x0800, ipv4(IP_A, IP_B, 1, icmp(8, 0, struct.pack("!HH", 7, 1), b"ping" * 4)))


def time_exceeded() -> bytes:
    original = ipv4(IP_A, IP_B, 17, udp(IP_A, IP_B, 40000, 9000, b""))
    return eth(MAC_A, MAC_B, 0x0800, ipv4(IP_B, IP_A, 1, icmp(11, 1, bytes(4), original)))


def first_fragment() -> bytes:
    """The first 1480 bytes of a 2000-byte datagram's UDP payload (MF set)."""
    seg = udp(IP_A, IP_B, 40000, 9000, bytes(1992))
    return eth(MAC_B, MAC_A, 0x0800, ipv4(IP_A, IP_B, 17, seg[:1480], ident=9, frag=0x2000))


def last_fragment() -> bytes:
    seg = udp(IP_A, IP_B, 40000, 9000, bytes(1992))
    return eth(MAC_B, MAC_A, 0x0800, ipv4(IP_A, IP_B, 17, seg[1480:], ident=9, frag=1480 // 8))


def bad_udp_length() -> bytes:
    """A UDP header claiming more than the IP datagram holds."""
    return eth(MAC_B, MAC_A, 0x0800, ipv4(IP_A, IP_B, 17, udp(IP_A, IP_B, 40000, 9000, b"abc", ulen=100)))


def loopback_udp() -> bytes:
    """lo's frames: an Ethernet header of zeros (loopback_xmit())."""
    seg = udp(LOCALHOST, LOCALHOST, 54095, 49410, b"hello from the emulated stack")
    return eth(bytes(6), bytes(6), 0x0800, ipv4(LOCALHOST, LOCALHOST, 17, seg))


def unknown_ethertype() -> bytes:
    return eth(BROADCAST, MAC_A, 0x88B5, b"\x01\x02", pad_to=60)


def padded_arp_request() -> bytes:
    return eth(BROADCAST, MAC_A, 0x0806, arp(1, MAC_A, IP_A, bytes(6), IP_B), pad_to=60)
