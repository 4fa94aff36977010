"""IP options (net/ipv4/ip_options.c)."""

from __future__ import annotations

from services.core.ipcb import IpOptions

# include/uapi/linux/ip.h
IPOPT_END = 0
IPOPT_NOOP = 1
IPOPT_COPY = 0x80


def ipopt_copied(o: int) -> bool:
    return bool(o & IPOPT_COPY)


def ip_options_fragment(header: bytearray | memoryview, opt: IpOptions) -> None:
    """ip_options_fragment(): after the first fragment, the options whose copied flag is
    clear become NOOPs (the header keeps its length), and record route and timestamp
    are no longer filled in. `header` is the IP header, options from byte 20."""
    pos, left = 20, opt.optlen
    while left > 0:
        kind = header[pos]
        if kind == IPOPT_END:
            return
        if kind == IPOPT_NOOP:
            left -= 1
            pos += 1
            continue
        optlen = header[pos + 1]
        if optlen < 2 or optlen > left:
            return
        if not ipopt_copied(kind):
            header[pos : pos + optlen] = bytes([IPOPT_NOOP]) * optlen
        left -= optlen
        pos += optlen
    opt.ts = opt.rr = 0
    opt.rr_needaddr = opt.ts_needaddr = opt.ts_needtime = False
