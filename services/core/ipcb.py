"""IPCB(skb): struct inet_skb_parm in skb->cb (include/net/ip.h), the IP layer's notes
on a received packet that the layers above read (ip_cmsg_recv, udp_err, ICMP).

The layout is the kernel's on x86_64 so the 48-byte cb means the same on every side of
a service boundary:

    0  int   iif
    4  be32  opt.faddr        (struct ip_options)
    8  be32  opt.nexthop
    12 u8    opt.optlen, 13 srr, 14 rr, 15 ts   (offsets from the IP header start)
    16 u8    is_strictroute:1 srr_is_hit:1 is_changed:1 rr_needaddr:1 ts_needtime:1
             ts_needaddr:1
    17 u8    opt.router_alert, 18 cipso, 19 __pad2
    20 u16   flags (IPSKB_*)
    22 u16   frag_max_size
    24 be32  spec_dst — emulator-only: fib_compute_spec_dst() of the input route, which
             the kernel computes from skb_rtable() in ipv4_pktinfo_prepare(); the route
             does not cross the service boundary, so IP writes the answer here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# include/net/ip.h
IPSKB_FORWARDED = 1 << 0
IPSKB_XFRM_TUNNEL_SIZE = 1 << 1
IPSKB_XFRM_TRANSFORMED = 1 << 2
IPSKB_FRAG_COMPLETE = 1 << 3
IPSKB_REROUTED = 1 << 4
IPSKB_DOREDIRECT = 1 << 5
IPSKB_FRAG_PMTU = 1 << 6
IPSKB_L3SLAVE = 1 << 7
IPSKB_NOPOLICY = 1 << 8
IPSKB_MULTIPATH = 1 << 9

_LAYOUT = struct.Struct("<i4s4sBBBBBBBBHH4s")
_BITS = ("is_strictroute", "srr_is_hit", "is_changed", "rr_needaddr", "ts_needtime", "ts_needaddr")


@dataclass(slots=True)
class IpOptions:
    """struct ip_options: where each option sits in the header (offsets from the start
    of the IP header, 0 for absent) and what ip_options_compile() decided. `data` is the
    option bytes of a socket's IP_OPTIONS (struct ip_options_rcu's __data); a received
    packet's options stay in its header."""

    faddr: int = 0
    nexthop: int = 0
    optlen: int = 0
    srr: int = 0
    rr: int = 0
    ts: int = 0
    is_strictroute: bool = False
    srr_is_hit: bool = False
    is_changed: bool = False
    rr_needaddr: bool = False
    ts_needtime: bool = False
    ts_needaddr: bool = False
    router_alert: int = 0
    cipso: int = 0
    data: bytes = field(default=b"", compare=False)


@dataclass(slots=True)
class InetSkbParm:
    iif: int = 0
    opt: IpOptions = field(default_factory=IpOptions)
    flags: int = 0
    frag_max_size: int = 0
    spec_dst: int = 0

    def pack(self) -> bytes:
        o = self.opt
        bits = sum(1 << i for i, name in enumerate(_BITS) if getattr(o, name))
        return _LAYOUT.pack(
            self.iif,
            o.faddr.to_bytes(4, "big"),
            o.nexthop.to_bytes(4, "big"),
            o.optlen,
            o.srr,
            o.rr,
            o.ts,
            bits,
            o.router_alert,
            o.cipso,
            0,
            self.flags,
            self.frag_max_size,
            self.spec_dst.to_bytes(4, "big"),
        )

    @classmethod
    def unpack(cls, cb: bytes | bytearray) -> InetSkbParm:
        (iif, faddr, nexthop, optlen, srr, rr, ts, bits, ra, cipso, _, flags, fms, spec) = (
            _LAYOUT.unpack_from(cb)
        )
        opt = IpOptions(
            faddr=int.from_bytes(faddr, "big"),
            nexthop=int.from_bytes(nexthop, "big"),
            optlen=optlen,
            srr=srr,
            rr=rr,
            ts=ts,
            router_alert=ra,
            cipso=cipso,
        )
        for i, name in enumerate(_BITS):
            setattr(opt, name, bool(bits >> i & 1))
        return cls(iif, opt, flags, fms, int.from_bytes(spec, "big"))


def ipcb(skb_cb: bytes | bytearray) -> InetSkbParm:
    """IPCB(skb), read."""
    return InetSkbParm.unpack(skb_cb)


def set_ipcb(skb_cb: bytearray, parm: InetSkbParm) -> None:
    """IPCB(skb), written (the rest of cb is left as it is)."""
    packed = parm.pack()
    skb_cb[: len(packed)] = packed
