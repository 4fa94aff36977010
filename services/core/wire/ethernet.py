"""Ethernet II header (IEEE 802.3; include/uapi/linux/if_ether.h, net/ethernet/eth.c).

MAC addresses are 6-byte `bytes`, in wire order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from services.core.wire.errors import WireError

ETH_ALEN = 6
ETH_TLEN = 2
ETH_HLEN = 14
# Minimum frame without FCS: a driver pads shorter frames up to it (eth_skb_pad).
ETH_ZLEN = 60
ETH_DATA_LEN = 1500
ETH_FRAME_LEN = 1514

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_IPV6 = 0x86DD
# Type/length values below this are an 802.3 length, not an EtherType (eth_type_trans).
ETH_P_802_3_MIN = 0x0600

DST = 0
SRC = 6
ETHERTYPE = 12
PAYLOAD = ETH_HLEN

BROADCAST_MAC = b"\xff" * ETH_ALEN
ZERO_MAC = bytes(ETH_ALEN)

_HEADER = struct.Struct("!6s6sH")
_MAC = struct.Struct("6s")
_U16 = struct.Struct("!H")


def is_zero_ether_addr(mac: bytes) -> bool:
    return mac == ZERO_MAC


def is_broadcast_ether_addr(mac: bytes) -> bool:
    return mac == BROADCAST_MAC


def is_multicast_ether_addr(mac: bytes) -> bool:
    """The I/G bit: set for multicast, and so for broadcast too (etherdevice.h)."""
    return bool(mac[0] & 0x01)


def is_unicast_ether_addr(mac: bytes) -> bool:
    return not mac[0] & 0x01


def is_valid_ether_addr(mac: bytes) -> bool:
    """What a device may use as its own address: not multicast, not all zero."""
    return not mac[0] & 0x01 and mac != ZERO_MAC


def eth_proto_is_802_3(proto: int) -> bool:
    return proto >= ETH_P_802_3_MIN


def _check_mac(mac: bytes) -> bytes:
    # struct's "6s" would silently pad or cut a wrong-sized address.
    if len(mac) != ETH_ALEN:
        raise WireError(f"ethernet: MAC address of {len(mac)} bytes, expected {ETH_ALEN}")
    return mac


def mac_to_str(mac: bytes) -> str:
    """Lower-case colon form, as `ip link` prints and the kernel's %pM formats."""
    return _check_mac(mac).hex(":")


def mac_from_str(text: str) -> bytes:
    """Parse "aa:bb:cc:dd:ee:ff" (either case), the form mac_pton accepts."""
    parts = text.split(":")
    if len(parts) != ETH_ALEN or any(
        len(p) != 2 or not all(c in "0123456789abcdefABCDEF" for c in p) for p in parts
    ):
        raise WireError(f"ethernet: {text!r} is not a MAC address like 02:00:00:00:00:01")
    return bytes.fromhex("".join(parts))


class EthernetFrame:
    """A view over an Ethernet frame in `buf` (no FCS). Reads and writes in place."""

    __slots__ = ("_buf",)

    def __init__(self, buf: bytes | bytearray | memoryview) -> None:
        self._buf = buf

    @classmethod
    def new_checked(cls, buf: bytes | bytearray | memoryview) -> EthernetFrame:
        """Wrap untrusted bytes; a runt shorter than the header cannot be read at all
        (eth_type_trans pulls ETH_HLEN unconditionally, drivers drop runts first)."""
        if len(buf) < ETH_HLEN:
            raise WireError(f"ethernet: buffer of {len(buf)} bytes shorter than {ETH_HLEN}-byte header")
        return cls(buf)

    @property
    def buffer(self) -> bytes | bytearray | memoryview:
        return self._buf

    @property
    def dst(self) -> bytes:
        mac: bytes = _MAC.unpack_from(self._buf, DST)[0]
        return mac

    @property
    def src(self) -> bytes:
        mac: bytes = _MAC.unpack_from(self._buf, SRC)[0]
        return mac

    @property
    def ethertype(self) -> int:
        ethertype: int = _U16.unpack_from(self._buf, ETHERTYPE)[0]
        return ethertype

    @property
    def payload(self) -> memoryview:
        return memoryview(self._buf)[PAYLOAD:]

    def _writable(self) -> bytearray | memoryview:
        if isinstance(self._buf, bytes):
            raise TypeError("ethernet: cannot write into a frame held in bytes")
        return self._buf

    def set_dst(self, mac: bytes) -> None:
        _MAC.pack_into(self._writable(), DST, _check_mac(mac))

    def set_src(self, mac: bytes) -> None:
        _MAC.pack_into(self._writable(), SRC, _check_mac(mac))

    def set_ethertype(self, ethertype: int) -> None:
        _U16.pack_into(self._writable(), ETHERTYPE, ethertype)


@dataclass(frozen=True, slots=True)
class EthernetRepr:
    dst: bytes
    src: bytes
    ethertype: int

    HEADER_LEN: ClassVar[int] = ETH_HLEN

    @classmethod
    def parse(cls, frame: EthernetFrame) -> EthernetRepr:
        dst, src, ethertype = _HEADER.unpack_from(frame.buffer)
        return cls(dst, src, ethertype)

    def emit(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        """Write the 14-byte header at `offset` (the payload and any ETH_ZLEN padding
        are the caller's)."""
        try:
            _HEADER.pack_into(buf, offset, _check_mac(self.dst), _check_mac(self.src), self.ethertype)
        except struct.error as e:
            raise WireError(f"ethernet: cannot emit header at offset {offset}: {e}") from None
