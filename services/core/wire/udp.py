"""UDP header (RFC 768; include/uapi/linux/udp.h, net/ipv4/udp.c).

Checksums here are over IPv4 only: the pseudo-header carries host-order int addresses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from services.core.checksum import csum_partial, csum_sub, csum_tcpudp_magic
from services.core.wire.errors import WireError
from services.core.wire.ipv4 import IPPROTO_UDP

UDP_HLEN = 8
UDP_MAX_LEN = 0xFFFF

SRC_PORT = 0
DST_PORT = 2
LENGTH = 4
CHECKSUM = 6
PAYLOAD = UDP_HLEN

# include/net/checksum.h: a computed checksum of 0 is sent as its other ones' complement
# form, because 0 in the field means "no checksum" (RFC 768).
CSUM_MANGLED_0 = 0xFFFF

_HEADER = struct.Struct("!HHHH")
_U16 = struct.Struct("!H")


def udp_checksum(saddr: int, daddr: int, segment: bytes | bytearray | memoryview) -> int:
    """The value to store in the checksum field of `segment` (UDP header and payload,
    whose length is the pseudo-header's length). The field's current content is ignored,
    and a result of 0 is already CSUM_MANGLED_0, as udp_send_skb stores it."""
    if len(segment) < UDP_HLEN:
        raise WireError(f"udp: segment of {len(segment)} bytes shorter than {UDP_HLEN}-byte header")
    s = csum_partial(segment)
    field = (segment[CHECKSUM] << 8) | segment[CHECKSUM + 1]
    if field:
        s = csum_sub(s, field)
    check = csum_tcpudp_magic(saddr, daddr, len(segment), IPPROTO_UDP, s)
    return check or CSUM_MANGLED_0


def udp_checksum_ok(saddr: int, daddr: int, segment: bytes | bytearray | memoryview) -> bool:
    """Whether a received segment passes udp4_csum_init/udp_lib_checksum_complete.

    `segment` must already be trimmed to the header's length field (udp_rcv's
    pskb_trim_rcsum to ulen). A zero field means the sender computed no checksum, which
    IPv4 allows (RFC 768; skb_checksum_init_zero_check).
    """
    if len(segment) < UDP_HLEN:
        raise WireError(f"udp: segment of {len(segment)} bytes shorter than {UDP_HLEN}-byte header")
    if not (segment[CHECKSUM] or segment[CHECKSUM + 1]):
        return True
    return csum_tcpudp_magic(saddr, daddr, len(segment), IPPROTO_UDP, csum_partial(segment)) == 0


class UdpPacket:
    """A view over a UDP datagram (header and payload) in `buf`."""

    __slots__ = ("_buf",)

    def __init__(self, buf: bytes | bytearray | memoryview) -> None:
        self._buf = buf

    @classmethod
    def new_checked(cls, buf: bytes | bytearray | memoryview) -> UdpPacket:
        """Wrap untrusted bytes: only a buffer shorter than the header is rejected
        (udp_rcv's pskb_may_pull, counted as a header error). A length field that
        disagrees with the buffer is udp_rcv's to judge and count (short_packet)."""
        if len(buf) < UDP_HLEN:
            raise WireError(f"udp: buffer of {len(buf)} bytes shorter than {UDP_HLEN}-byte header")
        return cls(buf)

    @property
    def buffer(self) -> bytes | bytearray | memoryview:
        return self._buf

    @property
    def src_port(self) -> int:
        v: int = _U16.unpack_from(self._buf, SRC_PORT)[0]
        return v

    @property
    def dst_port(self) -> int:
        v: int = _U16.unpack_from(self._buf, DST_PORT)[0]
        return v

    @property
    def length(self) -> int:
        v: int = _U16.unpack_from(self._buf, LENGTH)[0]
        return v

    @property
    def checksum(self) -> int:
        v: int = _U16.unpack_from(self._buf, CHECKSUM)[0]
        return v

    @property
    def payload(self) -> memoryview:
        """Everything after the header in the buffer; trimming to `length` is the
        caller's (udp_rcv does it only after checking the length)."""
        return memoryview(self._buf)[PAYLOAD:]

    def _writable(self) -> bytearray | memoryview:
        if isinstance(self._buf, bytes):
            raise TypeError("udp: cannot write into a datagram held in bytes")
        return self._buf

    def set_src_port(self, port: int) -> None:
        _U16.pack_into(self._writable(), SRC_PORT, port)

    def set_dst_port(self, port: int) -> None:
        _U16.pack_into(self._writable(), DST_PORT, port)

    def set_length(self, length: int) -> None:
        _U16.pack_into(self._writable(), LENGTH, length)

    def set_checksum(self, checksum: int) -> None:
        _U16.pack_into(self._writable(), CHECKSUM, checksum)


@dataclass(frozen=True, slots=True)
class UdpRepr:
    src_port: int
    dst_port: int

    HEADER_LEN: ClassVar[int] = UDP_HLEN

    @classmethod
    def parse(cls, packet: UdpPacket) -> UdpRepr:
        src, dst = struct.unpack_from("!HH", packet.buffer)
        return cls(src, dst)

    def emit(
        self,
        buf: bytearray | memoryview,
        offset: int,
        payload_len: int,
        saddr: int,
        daddr: int,
        checksum: bool = True,
    ) -> None:
        """Write the header at `offset` for the `payload_len` bytes already after it, as
        udp_send_skb does: len covers header and payload, and the checksum (with the
        pseudo-header) covers both, 0 becoming CSUM_MANGLED_0. With checksum=False the
        field is 0 (SO_NO_CHECK, sk_no_check_tx)."""
        length = UDP_HLEN + payload_len
        if length > UDP_MAX_LEN:
            raise WireError(f"udp: length {length} exceeds {UDP_MAX_LEN}")
        end = offset + length
        if payload_len < 0 or end > len(buf):
            raise WireError(
                f"udp: {payload_len}-byte payload at offset {offset + UDP_HLEN} "
                f"runs past the {len(buf)}-byte buffer"
            )
        try:
            _HEADER.pack_into(buf, offset, self.src_port, self.dst_port, length, 0)
        except struct.error as e:
            raise WireError(f"udp: cannot emit header at offset {offset}: {e}") from None
        if checksum:
            check = csum_tcpudp_magic(saddr, daddr, length, IPPROTO_UDP, csum_partial(buf[offset:end]))
            _U16.pack_into(buf, offset + CHECKSUM, check or CSUM_MANGLED_0)
