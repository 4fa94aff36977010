"""UDP-Lite's partial checksum coverage (RFC 3828; include/net/udplite.h,
net/ipv4/udplite.c): the sender's coverage (UDPLITE_SEND_CSCOV) in the length field,
the receiver's checks of it (udplite_checksum_init) and where the coverage travels with
a received skb (UDP_SKB_CB)."""

from __future__ import annotations

import struct

from services.core.wire.udp import UDP_HLEN
from services.udp.sock import UDPLITE_SEND_CC

# UDP_SKB_CB(skb): struct udp_skb_cb keeps cscov (u16) and partial_cov (u8) after the
# header parms union (inet6_skb_parm being the larger, 40 bytes here), so IPCB stays
# whole beneath it.
UDP_SKB_CB_OFF = 40
_CB = struct.Struct("=HB")


def udplite_send_coverage(pcflag: int, pcslen: int, length: int) -> tuple[int, int]:
    """udplite_csum(): for a datagram of `length` bytes (header included), the value of
    the length field and how many bytes the checksum covers. With UDPLITE_SEND_CSCOV
    below the length the field carries it (0 meaning full coverage, which covers all);
    otherwise the field is the length and all is covered."""
    if pcflag & UDPLITE_SEND_CC and pcslen < length:
        return pcslen, pcslen if pcslen > 0 else length
    return length, length


def udplite_checksum_init(check: int, cscov: int, length: int) -> tuple[bool, int]:
    """udplite_checksum_init(): (bad, coverage) for a datagram of `length` bytes whose
    checksum field is `check` and length field `cscov`. A zero checksum (UDP-Lite
    mandates one) and a coverage that is neither 0 (full) nor within 8..length are bad;
    the coverage returned is what the checksum spans."""
    if check == 0:
        return True, length
    if cscov == 0:
        return False, length
    if cscov < UDP_HLEN or cscov > length:
        return True, length
    return False, cscov


def set_udp_skb_cb(cb: bytearray, cscov: int, partial_cov: bool) -> None:
    _CB.pack_into(cb, UDP_SKB_CB_OFF, cscov, int(partial_cov))


def udp_skb_cb(cb: bytearray) -> tuple[int, bool]:
    """(cscov, partial_cov) as udp4_csum_init() left them."""
    cscov, partial = _CB.unpack_from(cb, UDP_SKB_CB_OFF)
    return cscov, bool(partial)
