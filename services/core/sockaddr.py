"""struct sockaddr_in as the system calls take it (include/uapi/linux/in.h): 16 bytes,
sin_family in host (little-endian) order, sin_port and sin_addr in network order, then
8 bytes of sin_zero."""

from __future__ import annotations

import struct

AF_UNSPEC = 0
AF_INET = 2
AF_INET6 = 10
SOCKADDR_IN_LEN = 16

_SOCKADDR_IN = struct.Struct("<H")
_PORT_ADDR = struct.Struct("!HI")


def parse_sockaddr_in(name: bytes) -> tuple[int, int, int]:
    """(family, addr, port); the caller has checked len(name) >= SOCKADDR_IN_LEN, or
    at least 2 bytes for the family alone."""
    (family,) = _SOCKADDR_IN.unpack_from(name, 0)
    if len(name) < 8:
        return family, 0, 0
    port, addr = _PORT_ADDR.unpack_from(name, 2)
    return family, addr, port


def make_sockaddr_in(addr: int, port: int, family: int = AF_INET) -> bytes:
    return _SOCKADDR_IN.pack(family) + _PORT_ADDR.pack(port, addr) + bytes(8)
