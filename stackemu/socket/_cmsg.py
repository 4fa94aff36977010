"""Ancillary data between Python's (level, type, data) tuples and msg_control bytes, the
way CPython's socket module turns one into the other on Linux x86_64 (sock_sendmsg's
control buffer; sock_recvmsg_guts' walk with glibc's CMSG_FIRSTHDR/CMSG_NXTHDR), so
that the drop-in's sendmsg/recvmsg hand the kernel, and give back, the same bytes."""

from __future__ import annotations

import struct
import warnings
from collections.abc import Sequence
from typing import Any

# struct cmsghdr {size_t cmsg_len; int cmsg_level; int cmsg_type;}
_CMSGHDR = struct.Struct("=Qii")
CMSG_HDR_LEN = _CMSGHDR.size
# socklen_t is unsigned 32 bits: CPython refuses control buffers past it.
SOCKLEN_T_LIMIT = 0x7FFFFFFF


def _align(n: int) -> int:
    return (n + 7) & ~7


def encode_ancdata(ancdata: Any) -> bytes:
    """sock_sendmsg()'s control buffer: each (level, type, data) as CMSG_SPACE(len)
    bytes, zero padded; the TypeErrors CPython raises for what is not such a tuple."""
    try:
        items = list(ancdata)
    except TypeError:
        raise TypeError("sendmsg() argument 2 must be an iterable") from None
    out = bytearray()
    for item in items:
        level, type_, data = _parse_item(item)
        out += _CMSGHDR.pack(CMSG_HDR_LEN + len(data), level, type_) + data
        out += bytes(_align(len(data)) - len(data))
        if len(out) > SOCKLEN_T_LIMIT:
            raise OSError("too much ancillary data")
    return bytes(out)


def _parse_item(item: Any) -> tuple[int, int, bytes]:
    """PyArg_Parse(item, "(iiy*):[sendmsg() ancillary data items]")."""
    where = "[sendmsg() ancillary data items]"
    if not isinstance(item, Sequence):
        raise TypeError(f"{where}() argument must be 3-item sequence, not {type(item).__name__}")
    if len(item) != 3:
        raise TypeError(f"{where}() argument must be sequence of length 3, not {len(item)}")
    level, type_, data = item
    for value in (level, type_):
        if not isinstance(value, int):
            raise TypeError(f"'{type(value).__name__}' object cannot be interpreted as an integer")
        if value >= 1 << 31:
            raise OverflowError("signed integer is greater than maximum")
        if value < -(1 << 31):
            raise OverflowError("signed integer is less than minimum")
    try:
        payload = bytes(memoryview(data))
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'") from None
    return level, type_, payload


def decode_ancdata(control: bytes) -> list[tuple[int, int, bytes]]:
    """sock_recvmsg_guts()'s list: the messages of msg_control (msg_controllen being
    len(control)) as CPython walks them: CMSG_FIRSTHDR, then glibc's CMSG_NXTHDR, which
    stops where the current message and another header no longer fit; a message cut
    short by the buffer is returned cut, with the RuntimeWarning CPython gives."""
    out: list[tuple[int, int, bytes]] = []
    end = len(control)
    off = 0 if end >= CMSG_HDR_LEN else -1
    while off >= 0:
        if off + CMSG_HDR_LEN > end:
            status = -1
        else:
            length, level, type_ = _CMSGHDR.unpack_from(control, off)
            if length < CMSG_HDR_LEN:
                status = -1
            else:
                space = end - off - CMSG_HDR_LEN
                data_len = min(length - CMSG_HDR_LEN, space)
                status = 0 if data_len == length - CMSG_HDR_LEN else 1
        if status:
            warnings.warn("received malformed or improperly-truncated ancillary data", RuntimeWarning, 2)
        if status < 0:
            break
        start = off + CMSG_HDR_LEN
        out.append((level, type_, bytes(control[start : start + data_len])))
        if status:
            break
        # __cmsg_nxthdr(): the next header must fit after this message, padded.
        nxt = off + _align(length)
        off = nxt if nxt + CMSG_HDR_LEN <= end else -1
    return out
