"""ARP for Ethernet and IPv4 (RFC 826; include/uapi/linux/if_arp.h, net/ipv4/arp.c).

IPv4 addresses are host-order ints, MAC addresses 6-byte `bytes`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from services.core.wire.errors import WireError
from services.core.wire.ethernet import ETH_ALEN, ETH_P_IP

ARPHRD_ETHER = 1
ARPHRD_IEEE802 = 6

ARPOP_REQUEST = 1
ARPOP_REPLY = 2

HRD = 0
PRO = 2
HLN = 4
PLN = 5
OP = 6
SHA = 8
SPA = 14
THA = 18
TPA = 24
# arp_hdr_len() for a device whose addr_len is ETH_ALEN: the 8-byte struct arphdr plus
# two hardware and two IPv4 addresses.
ARP_LEN = 28

_PACKET = struct.Struct("!HHBBH6sI6sI")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_MAC = struct.Struct("6s")


class ArpPacket:
    """A view over an ARP packet for Ethernet/IPv4 in `buf` (which may carry Ethernet
    padding after the 28 bytes)."""

    __slots__ = ("_buf",)

    def __init__(self, buf: bytes | bytearray | memoryview) -> None:
        self._buf = buf

    @classmethod
    def new_checked(cls, buf: bytes | bytearray | memoryview) -> ArpPacket:
        """Wrap untrusted bytes, rejecting what arp_rcv and arp_process drop before
        looking at the operation: a short packet (pskb_may_pull of arp_hdr_len), address
        lengths other than the device's (ar_hln != dev->addr_len, ar_pln != 4), and a
        hardware or protocol type an Ethernet device does not take. arp_process accepts
        ar_hrd ARPHRD_IEEE802 as well as ARPHRD_ETHER on Ethernet (RFC 2625), so this
        does too."""
        n = len(buf)
        if n < ARP_LEN:
            raise WireError(f"arp: buffer of {n} bytes shorter than {ARP_LEN}-byte packet")
        hrd, pro, hln, pln = struct.unpack_from("!HHBB", buf)
        if hln != ETH_ALEN or pln != 4:
            raise WireError(f"arp: address lengths hln={hln} pln={pln}, expected {ETH_ALEN} and 4")
        if hrd not in (ARPHRD_ETHER, ARPHRD_IEEE802):
            raise WireError(f"arp: hardware type {hrd} is not Ethernet")
        if pro != ETH_P_IP:
            raise WireError(f"arp: protocol type {pro:#06x} is not IPv4")
        return cls(buf)

    @property
    def buffer(self) -> bytes | bytearray | memoryview:
        return self._buf

    @property
    def hardware_type(self) -> int:
        v: int = _U16.unpack_from(self._buf, HRD)[0]
        return v

    @property
    def protocol_type(self) -> int:
        v: int = _U16.unpack_from(self._buf, PRO)[0]
        return v

    @property
    def hardware_len(self) -> int:
        return self._buf[HLN]

    @property
    def protocol_len(self) -> int:
        return self._buf[PLN]

    @property
    def operation(self) -> int:
        v: int = _U16.unpack_from(self._buf, OP)[0]
        return v

    @property
    def sender_hw(self) -> bytes:
        v: bytes = _MAC.unpack_from(self._buf, SHA)[0]
        return v

    @property
    def sender_ip(self) -> int:
        v: int = _U32.unpack_from(self._buf, SPA)[0]
        return v

    @property
    def target_hw(self) -> bytes:
        v: bytes = _MAC.unpack_from(self._buf, THA)[0]
        return v

    @property
    def target_ip(self) -> int:
        v: int = _U32.unpack_from(self._buf, TPA)[0]
        return v


@dataclass(frozen=True, slots=True)
class ArpRepr:
    operation: int
    sender_hw: bytes
    sender_ip: int
    target_hw: bytes
    target_ip: int

    HEADER_LEN: ClassVar[int] = ARP_LEN

    @classmethod
    def parse(cls, packet: ArpPacket) -> ArpRepr:
        """Read a checked packet. Operations other than request and reply are rejected,
        as arp_process drops them ("Understand only these message types")."""
        _, _, _, _, op, sha, spa, tha, tpa = _PACKET.unpack_from(packet.buffer)
        if op != ARPOP_REQUEST and op != ARPOP_REPLY:
            raise WireError(f"arp: operation {op} is neither request nor reply")
        return cls(op, sha, spa, tha, tpa)

    def emit(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        """Write the 28-byte packet at `offset`, as arp_create lays it out (hardware type
        ARPHRD_ETHER; a request's unknown target_hw is all zero, the caller's to pass)."""
        if len(self.sender_hw) != ETH_ALEN or len(self.target_hw) != ETH_ALEN:
            raise WireError(
                f"arp: hardware addresses must be {ETH_ALEN} bytes, got "
                f"{len(self.sender_hw)} and {len(self.target_hw)}"
            )
        try:
            _PACKET.pack_into(
                buf,
                offset,
                ARPHRD_ETHER,
                ETH_P_IP,
                ETH_ALEN,
                4,
                self.operation,
                self.sender_hw,
                self.sender_ip,
                self.target_hw,
                self.target_ip,
            )
        except struct.error as e:
            raise WireError(f"arp: cannot emit packet at offset {offset}: {e}") from None
