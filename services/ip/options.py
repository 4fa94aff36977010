"""IP options (net/ipv4/ip_options.c of Linux 6.x).

Offsets in IpOptions (srr, rr, ts, router_alert, cipso) count from the start of the IP
header, as in struct ip_options, so every function here takes the header as a buffer
whose options start at byte 20. For a socket's IP_OPTIONS the kernel compiles the bytes
in opt->__data "as if" a 20-byte header preceded them; ip_options_get() does the same
with a scratch header and keeps the compiled bytes in IpOptions.data.

Two forms of a socket's options exist, as in the kernel:
  - the user form: what setsockopt(IP_OPTIONS) takes, getsockopt(IP_OPTIONS) and the
    IP_RETOPTS cmsg return (ip_options_undo() of the compiled form). A source route
    starts with its first hop and its pointer is 4.
  - the compiled form (IpOptions.data after ip_options_get): the first hop moved to
    faddr, the record route and timestamp pointers advanced past the slot this host
    fills when it sends (ip_options_build).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from services.core import errno
from services.core.checksum import ip_fast_csum
from services.core.errno import kernel_error
from services.core.ipcb import InetSkbParm, IpOptions
from services.core.skbuff import PACKET_HOST
from services.core.wire.ipv4 import (
    IPOPT_CIPSO,
    IPOPT_COPY,
    IPOPT_END,
    IPOPT_LSRR,
    IPOPT_NOOP,
    IPOPT_RA,
    IPOPT_RR,
    IPOPT_SSRR,
    IPOPT_TIMESTAMP,
    IPOPT_TS_PRESPEC,
    IPOPT_TS_TSANDADDR,
    IPOPT_TS_TSONLY,
    MAX_IPOPTLEN,
    ipv4_is_lbcast,
    ipv4_is_multicast,
    ipv4_is_zeronet,
)
from services.ip.fib import RTN_BROADCAST, RTN_LOCAL, RTN_MULTICAST, RTN_UNICAST, Fib

__all__ = [
    "IPOPT_COPY",
    "IPOPT_END",
    "IPOPT_NOOP",
    "RTN_MULTICAST",
    "AddrType",
    "OptionsError",
    "SourceRouteDrop",
    "inet_addr_type",
    "inet_current_timestamp",
    "ip_forward_options",
    "ip_options_build",
    "ip_options_compile",
    "ip_options_echo",
    "ip_options_fragment",
    "ip_options_from_cork",
    "ip_options_get",
    "ip_options_rcv_srr",
    "ip_options_undo",
    "ip_options_undo_bytes",
    "ipopt_copied",
]

# inet_addr_type(net, addr) as a callable: RTN_LOCAL, RTN_BROADCAST, RTN_MULTICAST or
# RTN_UNICAST (anything the local table does not hold).
AddrType = Callable[[int], int]

_BE32 = struct.Struct("!I")
_MSEC_PER_DAY: Final = 86_400_000
_IPH: Final = 20


class OptionsError(Exception):
    """__ip_options_compile() refused the options. `pointer` is pp_ptr - iph, the octet
    an ICMP parameter problem points at; `info` is icmp_send()'s info argument for it
    (htonl(pointer << 24) read back in host order)."""

    def __init__(self, pointer: int) -> None:
        super().__init__(f"bad IP option at header octet {pointer}")
        self.pointer = pointer

    @property
    def info(self) -> int:
        return self.pointer << 24


class SourceRouteDrop(Exception):
    """ip_options_rcv_srr() returned -EINVAL without sending an ICMP error: the caller
    drops the packet (ip_rcv_options → SKB_DROP_REASON_IP_INHDR, no counter)."""


def ipopt_copied(o: int) -> bool:
    return bool(o & IPOPT_COPY)


def inet_current_timestamp(realtime_ns: int | None = None) -> int:
    """inet_current_timestamp(): milliseconds since midnight UT of CLOCK_REALTIME."""
    ns = time.time_ns() if realtime_ns is None else realtime_ns
    return (ns // 1_000_000) % _MSEC_PER_DAY


def _addr_class(addr: int) -> int:
    # What the address alone says: inet_addr_type() of a host without addresses.
    if ipv4_is_zeronet(addr) or ipv4_is_lbcast(addr):
        return RTN_BROADCAST
    if ipv4_is_multicast(addr):
        return RTN_MULTICAST
    return RTN_UNICAST


def inet_addr_type(fib: Fib, addr: int, dev: int | None = None) -> int:
    """__inet_dev_addr_type() over the local table: 0.0.0.0/8 and 255.255.255.255 are
    RTN_BROADCAST, 224/4 RTN_MULTICAST, else the local table's route type (only when it
    is on `dev`, if given: inet_addr_type_dev_table), else RTN_UNICAST."""
    kind = _addr_class(addr)
    if kind != RTN_UNICAST:
        return kind
    route = fib.local.lookup(addr)
    if route is None or (dev is not None and route.ifindex != dev):
        return RTN_UNICAST
    return route.type


def _einval(why: str) -> OSError:
    return kernel_error(errno.EINVAL, why)


def _get32(buf: bytes | bytearray | memoryview, at: int) -> int:
    v: int = _BE32.unpack_from(buf, at)[0]
    return v


def ip_options_compile(
    header: bytearray | memoryview,
    opt: IpOptions,
    *,
    local_addr: int | None,
    now_ms: int | None = None,
    addr_type: AddrType | None = None,
    cap_net_raw: bool = False,
) -> None:
    """__ip_options_compile(): check the options and note where each one is.

    `opt.optlen` is the option length on entry (ihl * 4 - 20 for a received packet);
    `header` holds at least 20 + opt.optlen bytes (ValueError otherwise).
    With `local_addr` set this is the receive path (an skb with its input route):
    record route and timestamp slots get `local_addr` (fib_compute_spec_dst() of the
    route) and `now_ms` (CLOCK_REALTIME milliseconds; now if None), the timestamp
    overflow counter is advanced, and opt.is_changed says the header checksum no longer
    holds. With `local_addr` None the bytes are a socket's IP_OPTIONS (no skb): a source
    route loses its first hop to opt.faddr, pointers advance past the slot the sender
    fills, and options other than LSRR/SSRR/RR/TS(0,1,3)/RA need `cap_net_raw`.

    `addr_type` is inet_addr_type() for prespecified timestamps (a slot naming an
    address that is not RTN_UNICAST is ours); None answers for a host without
    addresses. CIPSO is refused as by a kernel with no CIPSO DOI configured
    (cipso_v4_validate). Raises OptionsError with the parameter-problem pointer.
    """
    if len(header) < _IPH + opt.optlen:
        raise ValueError(f"ip_options_compile: {len(header)}-byte header, options need {_IPH + opt.optlen}")
    skb = local_addr is not None
    kind_of = _addr_class if addr_type is None else addr_type
    pos = _IPH
    left = opt.optlen
    while left > 0:
        kind = header[pos]
        if kind == IPOPT_END:
            # What follows END is padding: make it END too.
            pos += 1
            left -= 1
            while left > 0:
                if header[pos] != IPOPT_END:
                    header[pos] = IPOPT_END
                    opt.is_changed = True
                pos += 1
                left -= 1
            return
        if kind == IPOPT_NOOP:
            pos += 1
            left -= 1
            continue
        if left < 2:
            raise OptionsError(pos)
        optlen = header[pos + 1]
        if optlen < 2 or optlen > left:
            raise OptionsError(pos)
        if kind in (IPOPT_SSRR, IPOPT_LSRR):
            if optlen < 3:
                raise OptionsError(pos + 1)
            if header[pos + 2] < 4:
                raise OptionsError(pos + 2)
            # RFC 1812 5.2.4.1: one source route at most.
            if opt.srr:
                raise OptionsError(pos)
            if not skb:
                if header[pos + 2] != 4 or optlen < 7 or (optlen - 3) & 3:
                    raise OptionsError(pos + 1)
                opt.faddr = _get32(header, pos + 3)
                if optlen > 7:
                    header[pos + 3 : pos + optlen - 4] = bytes(header[pos + 7 : pos + optlen])
            opt.is_strictroute = kind == IPOPT_SSRR
            opt.srr = pos
        elif kind == IPOPT_RR:
            if opt.rr:
                raise OptionsError(pos)
            if optlen < 3:
                raise OptionsError(pos + 1)
            ptr = header[pos + 2]
            if ptr < 4:
                raise OptionsError(pos + 2)
            if ptr <= optlen:
                if ptr + 3 > optlen:
                    raise OptionsError(pos + 2)
                if local_addr is not None:
                    _BE32.pack_into(header, pos + ptr - 1, local_addr)
                    opt.is_changed = True
                header[pos + 2] = ptr + 4
                opt.rr_needaddr = True
            opt.rr = pos
        elif kind == IPOPT_TIMESTAMP:
            if opt.ts:
                raise OptionsError(pos)
            if optlen < 4:
                raise OptionsError(pos + 1)
            ptr = header[pos + 2]
            if ptr < 5:
                raise OptionsError(pos + 2)
            flags = header[pos + 3] & 0xF
            if ptr <= optlen:
                timeptr = -1
                if ptr + 3 > optlen:
                    raise OptionsError(pos + 2)
                if flags == IPOPT_TS_TSONLY:
                    if skb:
                        timeptr = pos + ptr - 1
                    opt.ts_needtime = True
                    header[pos + 2] = ptr + 4
                elif flags == IPOPT_TS_TSANDADDR:
                    if ptr + 7 > optlen:
                        raise OptionsError(pos + 2)
                    if local_addr is not None:
                        _BE32.pack_into(header, pos + ptr - 1, local_addr)
                        timeptr = pos + ptr + 3
                    opt.ts_needaddr = True
                    opt.ts_needtime = True
                    header[pos + 2] = ptr + 8
                elif flags == IPOPT_TS_PRESPEC:
                    if ptr + 7 > optlen:
                        raise OptionsError(pos + 2)
                    # Only the host named in the next slot stamps it.
                    if kind_of(_get32(header, pos + ptr - 1)) != RTN_UNICAST:
                        if skb:
                            timeptr = pos + ptr + 3
                        opt.ts_needtime = True
                        header[pos + 2] = ptr + 8
                elif not skb and not cap_net_raw:
                    raise OptionsError(pos + 3)
                if timeptr >= 0:
                    _BE32.pack_into(
                        header,
                        timeptr,
                        inet_current_timestamp() if now_ms is None else now_ms % _MSEC_PER_DAY,
                    )
                    opt.is_changed = True
            elif flags != IPOPT_TS_PRESPEC:
                # Full: count the hosts that could not stamp (RFC 791 overflow, 4 bits).
                overflow = header[pos + 3] >> 4
                if overflow == 15:
                    raise OptionsError(pos + 3)
                if skb:
                    header[pos + 3] = flags | (overflow + 1) << 4
                    opt.is_changed = True
            opt.ts = pos
        elif kind == IPOPT_RA:
            if optlen < 4:
                raise OptionsError(pos + 1)
            if header[pos + 2] == 0 and header[pos + 3] == 0:
                opt.router_alert = pos
        elif kind == IPOPT_CIPSO:
            if (not skb and not cap_net_raw) or opt.cipso:
                raise OptionsError(pos)
            opt.cipso = pos
            # cipso_v4_validate() with no DOI registered: too short, else unknown DOI.
            raise OptionsError(pos + 1 if optlen < 8 else pos + 2)
        elif not skb and not cap_net_raw:
            # IPOPT_SEC, IPOPT_SID and anything unknown: a received packet keeps them
            # (skipped by length), a socket needs CAP_NET_RAW to send them.
            raise OptionsError(pos)
        left -= optlen
        pos += optlen


def ip_options_get(
    optval: bytes | bytearray | memoryview,
    *,
    cap_net_raw: bool = False,
    addr_type: AddrType | None = None,
) -> IpOptions:
    """do_ip_setsockopt(IP_OPTIONS) → ip_options_get(): more than 40 bytes is EINVAL,
    the rest is padded with IPOPT_END to a multiple of 4 and compiled without an skb
    (a refusal is EINVAL); then a source route without CAP_NET_RAW is EPERM (6.18.44
    has "ipv4: restrict IPOPT_SSRR and IPOPT_LSRR options"). The result holds the
    compiled bytes in `data`; faddr is the first hop of a source route. Empty `optval`
    gives optlen 0: the socket's options are cleared. The IP_RETOPTS cmsg of sendmsg
    (ip_cmsg_send) truncates to 40 bytes instead of refusing: pass optval[:40] there."""
    if len(optval) > MAX_IPOPTLEN:
        raise kernel_error(errno.EINVAL, "IP_OPTIONS longer than 40 bytes")
    opt = _compile_user(bytes(optval), cap_net_raw, addr_type)
    if opt.srr and not cap_net_raw:
        raise kernel_error(errno.EPERM, "source route options need CAP_NET_RAW")
    return opt


def _compile_user(optval: bytes, cap_net_raw: bool, addr_type: AddrType | None) -> IpOptions:
    padded = optval + bytes(-len(optval) % 4)
    opt = IpOptions(optlen=len(padded))
    if padded:
        buf = bytearray(_IPH) + bytearray(padded)
        try:
            ip_options_compile(buf, opt, local_addr=None, addr_type=addr_type, cap_net_raw=cap_net_raw)
        except OptionsError as err:
            raise kernel_error(errno.EINVAL, str(err)) from None
        padded = bytes(buf[_IPH:])
    opt.data = padded
    return opt


def ip_options_from_cork(
    cb: bytes | bytearray,
    options: bytes | bytearray,
    *,
    addr_type: AddrType | None = None,
) -> IpOptions:
    """The options an outgoing skb is built with (ipc.opt / cork->opt, struct
    ip_options_rcu), from what crosses the service boundary: IPCB(skb)->opt in `cb`
    (offsets, flags, faddr) with skb.cork.options as its compiled __data. ICMP sends
    them so, and so can a socket's IP_OPTIONS (IpOptions from ip_options_get packed
    with set_ipcb, its data in the cork). When IPCB says optlen 0, `options` are taken
    to be in the user form (what setsockopt took; getsockopt(IP_OPTIONS) gives it back)
    and compiled here; the capability checks were setsockopt's and are not repeated.

    Returns an IpOptions for ip_options_build(); EINVAL when IPCB and the bytes do not
    describe options ip_options_build() can fill in."""
    if not options:
        return IpOptions()
    opt = InetSkbParm.unpack(cb).opt
    if not opt.optlen:
        if len(options) > MAX_IPOPTLEN:
            raise _einval("cork options longer than 40 bytes")
        return _compile_user(bytes(options), True, addr_type)
    opt.data = bytes(options)
    _check_compiled(opt)
    return opt


def _check_compiled(opt: IpOptions) -> None:
    # Every slot ip_options_build() writes must lie inside its option.
    d, n = opt.data, opt.optlen
    if n != len(d) or n > MAX_IPOPTLEN or n & 3:
        raise _einval("IPCB optlen does not match the cork's options")

    def span(off: int) -> tuple[int, int]:
        if not _IPH <= off <= _IPH + n - 2 or d[off - _IPH + 1] < 2 or off + d[off - _IPH + 1] > _IPH + n:
            raise _einval(f"IPCB option offset {off} outside the options")
        return off, off + d[off - _IPH + 1]

    def slot(off: int, at: int, first: int) -> None:
        start, end = span(off)
        if not start + first <= at <= end - 4:
            raise _einval(f"option at {off} has no room for its slot")

    for off in (opt.srr, opt.rr, opt.ts, opt.cipso, opt.router_alert):
        if off:
            span(off)
    if opt.srr:
        slot(opt.srr, opt.srr + d[opt.srr - _IPH + 1] - 4, 3)
    if opt.rr_needaddr:
        if not opt.rr or d[opt.rr - _IPH + 1] < 3:
            raise _einval("rr_needaddr without a record route option")
        slot(opt.rr, opt.rr + d[opt.rr - _IPH + 2] - 5, 3)
    if opt.ts_needaddr or opt.ts_needtime:
        if not opt.ts or d[opt.ts - _IPH + 1] < 4:
            raise _einval("ts_needaddr/ts_needtime without a timestamp option")
        if opt.ts_needaddr:
            slot(opt.ts, opt.ts + d[opt.ts - _IPH + 2] - 9, 4)
        if opt.ts_needtime:
            slot(opt.ts, opt.ts + d[opt.ts - _IPH + 2] - 5, 4)


def ip_options_build(
    header: bytearray | memoryview,
    opt: IpOptions,
    daddr: int,
    saddr: int,
    now_ms: int,
    is_frag: bool = False,
) -> None:
    """ip_options_build(): write a socket's compiled options (opt from ip_options_get)
    into an outgoing header, options from byte 20, and fill what the sender owes: the
    last source-route slot gets `daddr` (the final destination, ipc.addr), record route
    and timestamp-with-address get `saddr` (ip_rt_get_source() of an output route is
    iph->saddr), timestamps get `now_ms` (CLOCK_REALTIME ms, taken modulo a day).

    The caller emits the header with 20 + opt.optlen bytes, its destination being
    opt.faddr when opt.srr (udp_sendmsg routes to the first hop and __ip_make_skb puts
    it in iph->daddr) else `daddr`, recomputes the header checksum afterwards, and keeps
    `opt` as IPCB(skb)->opt for fragmentation. 6.x builds every packet with is_frag
    False; True does what ip_options_build(..., is_frag) did before: record route and
    timestamp become NOOPs and their flags are cleared."""
    n = opt.optlen
    header[_IPH : _IPH + n] = opt.data[:n]
    if opt.srr:
        _BE32.pack_into(header, opt.srr + header[opt.srr + 1] - 4, daddr)
    if not is_frag:
        if opt.rr_needaddr:
            _BE32.pack_into(header, opt.rr + header[opt.rr + 2] - 5, saddr)
        if opt.ts_needaddr:
            _BE32.pack_into(header, opt.ts + header[opt.ts + 2] - 9, saddr)
        if opt.ts_needtime:
            _BE32.pack_into(header, opt.ts + header[opt.ts + 2] - 5, now_ms % _MSEC_PER_DAY)
        return
    if opt.rr:
        header[opt.rr : opt.rr + header[opt.rr + 1]] = bytes([IPOPT_NOOP]) * header[opt.rr + 1]
        opt.rr = 0
        opt.rr_needaddr = False
    if opt.ts:
        header[opt.ts : opt.ts + header[opt.ts + 1]] = bytes([IPOPT_NOOP]) * header[opt.ts + 1]
        opt.ts = 0
        opt.ts_needaddr = opt.ts_needtime = False


def ip_options_echo(
    header: bytes | bytearray | memoryview,
    sopt: IpOptions,
    *,
    addr_type: AddrType | None = None,
) -> IpOptions:
    """__ip_options_echo(): the options to answer a received packet with (an ICMP
    message, IP_RETOPTS): record route and timestamp copied with room claimed for this
    host, the source route reversed (its first hop to faddr, the last slot left zero
    for ip_options_build to put the final destination in), CIPSO copied; other options
    are not echoed. `header` is the received IP header as compiled on receive, `sopt`
    its IPCB(skb)->opt. An option with no room left is EINVAL, as is an IPCB that does
    not fit the header. The result is in compiled form (data, offsets, flags)."""
    dopt = IpOptions()
    if sopt.optlen == 0:
        return dopt
    hlen = _IPH + sopt.optlen
    if sopt.optlen > MAX_IPOPTLEN or len(header) < hlen:
        raise _einval("IPCB options do not fit the header")
    kind_of = _addr_class if addr_type is None else addr_type
    out = bytearray()

    def option(at: int) -> tuple[int, int]:
        # An offset from IPCB must name an option inside the header.
        if not _IPH <= at < hlen - 2 or at + header[at + 1] > hlen or header[at + 1] < 3:
            raise _einval("IPCB option offset outside the header")
        return header[at + 1], header[at + 2]

    if sopt.rr:
        optlen, soffset = option(sopt.rr)
        dopt.rr = _IPH + len(out)
        start = len(out)
        out += header[sopt.rr : sopt.rr + optlen]
        if sopt.rr_needaddr and soffset <= optlen:
            if soffset + 3 > optlen:
                raise _einval("record route full")
            out[start + 2] = soffset + 4
            dopt.rr_needaddr = True
    if sopt.ts:
        optlen, soffset = option(sopt.ts)
        if optlen < 4:
            raise _einval("IPCB timestamp shorter than its header")
        dopt.ts = _IPH + len(out)
        start = len(out)
        out += header[sopt.ts : sopt.ts + optlen]
        if soffset <= optlen:
            if sopt.ts_needaddr:
                if soffset + 3 > optlen:
                    raise _einval("timestamp full")
                dopt.ts_needaddr = True
                soffset += 4
            if sopt.ts_needtime:
                if soffset + 3 > optlen:
                    raise _einval("timestamp full")
                if out[start + 3] & 0xF != IPOPT_TS_PRESPEC:
                    dopt.ts_needtime = True
                    soffset += 4
                elif soffset + 7 <= optlen and kind_of(_get32(out, start + soffset - 1)) != RTN_UNICAST:
                    dopt.ts_needtime = True
                    soffset += 8
            out[start + 2] = soffset & 0xFF
    if sopt.srr:
        optlen, soffset = option(sopt.srr)
        start = sopt.srr
        dpos = len(out)
        doffset = 0
        faddr = 0
        if soffset > optlen:
            soffset = optlen + 1
        soffset -= 4
        if soffset > 3:
            faddr = _get32(header, start + soffset - 1)
            soffset -= 4
            doffset = 4
            out += bytes(3)
            while soffset > 3:
                out += header[start + soffset - 1 : start + soffset + 3]
                soffset -= 4
                doffset += 4
            # RFC 1812 5.2.4.1: a route that starts with the sender is not echoed back
            # to it.
            if header[12:16] == header[start + soffset + 3 : start + soffset + 7]:
                doffset -= 4
        if doffset > 3:
            # The last slot is the final destination's, written by ip_options_build.
            del out[dpos + doffset - 1 :]
            out += bytes(4)
            out[dpos : dpos + 3] = bytes([header[start], doffset + 3, 4])
            dopt.faddr = faddr
            dopt.srr = _IPH + dpos
            dopt.is_strictroute = sopt.is_strictroute
        else:
            del out[dpos:]
    if sopt.cipso:
        optlen = header[sopt.cipso + 1]
        dopt.cipso = _IPH + len(out)
        out += header[sopt.cipso : sopt.cipso + optlen]
    out += bytes(-len(out) % 4)
    dopt.optlen = len(out)
    dopt.data = bytes(out)
    return dopt


def ip_options_undo(opt: IpOptions) -> IpOptions:
    """ip_options_undo(): the compiled options back in the form setsockopt(IP_OPTIONS)
    takes (what getsockopt(IP_OPTIONS) and, after ip_options_echo, the IP_RETOPTS cmsg
    return): the first hop back in the source route, the slots this host would fill
    zeroed and their pointers moved back. Returns a new IpOptions; `opt` is unchanged."""
    d = bytearray(opt.data)
    if opt.srr:
        p = opt.srr - _IPH
        n = d[p + 1] - 7
        d[p + 7 : p + 7 + n] = d[p + 3 : p + 3 + n]
        _BE32.pack_into(d, p + 3, opt.faddr)
    if opt.rr_needaddr:
        p = opt.rr - _IPH
        d[p + 2] -= 4
        d[p + d[p + 2] - 1 : p + d[p + 2] + 3] = bytes(4)
    if opt.ts:
        p = opt.ts - _IPH
        if opt.ts_needtime:
            d[p + 2] -= 4
            d[p + d[p + 2] - 1 : p + d[p + 2] + 3] = bytes(4)
            if d[p + 3] & 0xF == IPOPT_TS_PRESPEC:
                d[p + 2] -= 4
        if opt.ts_needaddr:
            d[p + 2] -= 4
            d[p + d[p + 2] - 1 : p + d[p + 2] + 3] = bytes(4)
    return replace(opt, data=bytes(d))


def ip_options_fragment(header: bytearray | memoryview, opt: IpOptions) -> None:
    """ip_options_fragment(): after the first fragment, the options whose copied flag is
    clear become NOOPs (the header keeps its length), and record route and timestamp
    are no longer filled in. `header` is the IP header, options from byte 20."""
    pos, left = _IPH, opt.optlen
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


def ip_options_rcv_srr(
    header: bytearray | memoryview,
    opt: IpOptions,
    *,
    pkt_type: int,
    rt_type: int,
    route_input: Callable[[int], int | None],
) -> int | None:
    """ip_options_rcv_srr(): what a received source-routed packet does next, once
    ip_rcv_options() has compiled its options (opt.srr set) and found source routing
    accepted on the input device (conf/all and conf/<dev> accept_source_route, else the
    caller drops it first, no counter).

    `rt_type` is the type of its input route; `route_input(addr)` is ip_route_input()
    of the packet re-addressed to `addr` (same source, TOS, device), giving the route
    type or None when it fails. Returns None when the packet goes on by its input route
    unchanged (a loose route through a router), or the next hop when the route names it:
    the caller then routes the packet to that address as ip_route_input() did here
    (a forward) and ip_forward_options() rewrites the header on the way out. Hops that
    are this host's own addresses are taken on the spot: the header's destination
    becomes each in turn (opt.is_changed). Raises OptionsError when an ICMP parameter
    problem is due (a strict route through a router: pointer 16, the destination field;
    a route with no room: the pointer octet), SourceRouteDrop when the packet is dropped
    without one; either way ip_rcv_options drops it (SKB_DROP_REASON_IP_INHDR)."""
    if pkt_type != PACKET_HOST:
        raise SourceRouteDrop("source-routed packet not addressed to this host's link address")
    if rt_type == RTN_UNICAST:
        if not opt.is_strictroute:
            return None
        raise OptionsError(16)
    if rt_type != RTN_LOCAL:
        raise SourceRouteDrop("source route to a broadcast or multicast destination")
    srr = opt.srr
    srrptr, srrspace = header[srr + 2], header[srr + 1]
    nexthop = 0
    while srrptr <= srrspace:
        if srrptr + 3 > srrspace:
            raise OptionsError(srr + 2)
        nexthop = _get32(header, srr + srrptr - 1)
        rt2 = route_input(nexthop)
        if rt2 not in (RTN_UNICAST, RTN_LOCAL):
            raise SourceRouteDrop("no route to the next source-route hop")
        if rt2 != RTN_LOCAL:
            break
        # "Superfast loopback forward": the next hop is us too.
        _BE32.pack_into(header, 16, nexthop)
        opt.is_changed = True
        srrptr += 4
    if srrptr <= srrspace:
        opt.srr_is_hit = True
        opt.nexthop = nexthop
        opt.is_changed = True
        return nexthop
    return None


def ip_forward_options(header: bytearray | memoryview, opt: IpOptions, src: int) -> None:
    """ip_forward_options(): on the way out of ip_forward, record route gets `src` (the
    address ip_rt_get_source() picks for the forward route: the route's preferred
    source, else inet_select_addr() of the output device towards the next hop); a hit
    source route gets the packet's destination set to opt.nexthop and its slot for
    that hop overwritten with `src`, the pointer moved past it, and timestamp-with-address
    `src` too. The header checksum is recomputed when anything changed (ip_send_check)."""
    if opt.rr_needaddr:
        _BE32.pack_into(header, opt.rr + header[opt.rr + 2] - 5, src)
        opt.is_changed = True
    if opt.srr_is_hit:
        srr = opt.srr
        srrptr, srrspace = header[srr + 2], header[srr + 1]
        while srrptr <= srrspace:
            if srrptr + 3 > srrspace or _get32(header, srr + srrptr - 1) == opt.nexthop:
                break
            srrptr += 4
        if srrptr + 3 <= srrspace:
            opt.is_changed = True
            _BE32.pack_into(header, 16, opt.nexthop)
            _BE32.pack_into(header, srr + srrptr - 1, src)
            header[srr + 2] = srrptr + 4
        # else: the kernel logs "Argh! Destination lost!" and sends it on as it is.
        if opt.ts_needaddr:
            _BE32.pack_into(header, opt.ts + header[opt.ts + 2] - 9, src)
            opt.is_changed = True
    if opt.is_changed:
        opt.is_changed = False
        header[10] = header[11] = 0
        ihl = (header[0] & 0x0F) * 4
        check = ip_fast_csum(header[:ihl])
        header[10], header[11] = check >> 8, check & 0xFF


def ip_options_undo_bytes(opt: IpOptions) -> bytes:
    """getsockopt(IP_OPTIONS) and the IP_RETOPTS cmsg: ip_options_undo() of the compiled
    options, their optlen bytes (IP_RETOPTS is ip_options_undo(ip_options_echo(...)))."""
    return ip_options_undo(opt).data[: opt.optlen]
