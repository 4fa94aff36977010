"""The wire modules (services/core/wire) and the IP option code (services/ip/options.py)
on untrusted bytes: a checked view refuses exactly what the kernel's receive path
cannot read (with a WireError naming the layer), every accessor of an accepted view
answers, and a header built from a valid representation parses back to it exactly.

Option areas go through what the kernel does with them: __ip_options_compile on
receive, __ip_options_echo for an answer, ip_options_build for the answer's header;
a socket's IP_OPTIONS through ip_options_get and ip_options_build; and the
options a neighbour's skb carries (cb and cork) through ip_options_from_cork."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from services.core import errno
from services.core.checksum import ip_fast_csum
from services.core.ipcb import InetSkbParm, IpOptions
from services.core.wire.arp import ARP_LEN, ArpPacket, ArpRepr
from services.core.wire.errors import WireError
from services.core.wire.ethernet import ETH_HLEN, EthernetFrame, EthernetRepr
from services.core.wire.ipv4 import (
    IPV4_HLEN_MIN,
    IpOptionError,
    Ipv4Packet,
    Ipv4Repr,
    parse_options,
)
from services.core.wire.udp import UDP_HLEN, UdpPacket, UdpRepr, udp_checksum, udp_checksum_ok
from services.ip.options import (
    OptionsError,
    ip_options_build,
    ip_options_compile,
    ip_options_echo,
    ip_options_from_cork,
    ip_options_get,
)
from tests.fuzz import fuzz_settings

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
macs = st.binary(min_size=6, max_size=6)

# Option areas that look like options: known types, lengths and pointers near the
# edges, so the checks past the framing are reached, not just "length too long".
_OPT_TYPES = st.sampled_from([0, 1, 7, 68, 130, 131, 134, 136, 137, 148, 25, 0x44, 0xFF])


def _option(kind: int, length: int, pointer: int, flags: int, body: bytes) -> bytes:
    return bytes([kind]) if kind in (0, 1) else bytes([kind, length, pointer, flags]) + body


def option_areas(max_size: int = 40) -> st.SearchStrategy[bytes]:
    structured = st.lists(
        st.builds(
            _option, _OPT_TYPES, st.integers(0, 44), st.integers(0, 16) | u8, u8, st.binary(max_size=12)
        ),
        max_size=6,
    ).map(lambda opts: b"".join(opts)[:max_size])
    return structured | st.binary(max_size=max_size)


@fuzz_settings(600)
@given(st.binary(max_size=80))
def test_ethernet_view(buf: bytes) -> None:
    try:
        frame = EthernetFrame.new_checked(buf)
    except WireError as err:
        assert len(buf) < ETH_HLEN and str(err).startswith("ethernet:")
        return
    r = EthernetRepr.parse(frame)
    assert (r.dst, r.src, r.ethertype) == (buf[:6], buf[6:12], int.from_bytes(buf[12:14], "big"))
    assert bytes(frame.payload) == buf[ETH_HLEN:]
    out = bytearray(ETH_HLEN)
    r.emit(out)
    assert bytes(out) == buf[:ETH_HLEN]


@fuzz_settings(1000)
@given(st.one_of(st.binary(max_size=90), st.binary(min_size=20, max_size=90).map(lambda b: b"\x4f" + b[1:])))
def test_ipv4_view_and_parse(buf: bytes) -> None:
    """new_checked refuses only what its accessors could not read; parse refuses only
    version, ihl < 5 and a tot_len outside header..buffer, the checks ip_rcv_core makes
    before it looks at the fields."""
    try:
        pkt = Ipv4Packet.new_checked(buf)
    except WireError as err:
        assert len(buf) < IPV4_HLEN_MIN or len(buf) < (buf[0] & 0x0F) * 4
        assert str(err).startswith("ipv4:")
        return
    hlen = (buf[0] & 0x0F) * 4
    tot_len = int.from_bytes(buf[2:4], "big")
    fields = (pkt.version, pkt.ihl, pkt.header_len, pkt.tos, pkt.total_len, pkt.ident, pkt.frag_off)
    assert fields == (buf[0] >> 4, buf[0] & 0x0F, hlen, buf[1], tot_len, *struct.unpack("!HH", buf[4:8]))
    assert (pkt.ttl, pkt.protocol, pkt.checksum) == (buf[8], buf[9], int.from_bytes(buf[10:12], "big"))
    assert (pkt.src, pkt.dst) == struct.unpack("!II", buf[12:20])
    assert bytes(pkt.options) == buf[20:hlen]
    assert bytes(pkt.payload) == buf[hlen : min(tot_len, len(buf))]
    assert pkt.verify_checksum() == (ip_fast_csum(buf[:hlen]) == 0)
    assert pkt.is_fragment == bool(pkt.more_frags or pkt.frag_offset)
    try:
        r = Ipv4Repr.parse(pkt)
    except WireError:
        assert pkt.version != 4 or hlen < IPV4_HLEN_MIN or not hlen <= tot_len <= len(buf)
        return
    assert pkt.version == 4 and hlen >= IPV4_HLEN_MIN and hlen <= tot_len <= len(buf)
    assert (r.src, r.dst, r.protocol, r.ttl, r.tos, r.ident) == (
        pkt.src,
        pkt.dst,
        pkt.protocol,
        pkt.ttl,
        pkt.tos,
        pkt.ident,
    )
    assert (r.payload_len, r.header_len, r.options) == (tot_len - hlen, hlen, buf[20:hlen])


@st.composite
def ipv4_reprs(draw: st.DrawFn) -> Ipv4Repr:
    return Ipv4Repr(
        src=draw(u32),
        dst=draw(u32),
        protocol=draw(u8),
        payload_len=draw(st.integers(0, 200)),
        ttl=draw(u8),
        tos=draw(u8),
        ident=draw(u16),
        dont_frag=draw(st.booleans()),
        more_frags=draw(st.booleans()),
        frag_offset=draw(st.integers(0, 0x1FFF)) * 8,
        options=draw(st.binary(max_size=40)),
    )


@fuzz_settings(400)
@given(ipv4_reprs())
def test_ipv4_emit_parses_back_exactly(r: Ipv4Repr) -> None:
    buf = bytearray(r.total_len)
    r.emit(buf)
    pkt = Ipv4Packet.new_checked(buf)
    assert pkt.verify_checksum()
    back = Ipv4Repr.parse(pkt)
    padded = r.options + bytes(-len(r.options) % 4)
    assert back == Ipv4Repr(**{**{f: getattr(r, f) for f in r.__slots__}, "options": padded})


@fuzz_settings(800)
@given(option_areas())
def test_option_framing(opts: bytes) -> None:
    """parse_options splits by ip_options_compile's framing or points at the fault."""
    try:
        parsed = parse_options(opts)
    except IpOptionError as err:
        assert 0 <= err.offset < len(opts) and err.pointer == IPV4_HLEN_MIN + err.offset
        return
    for o in parsed:
        assert opts[o.offset] == o.type and opts[o.offset + 1] == len(o.data) + 2
        assert opts[o.offset + 2 : o.offset + 2 + len(o.data)] == o.data


@fuzz_settings(500)
@given(st.binary(max_size=40))
def test_udp_view_and_checksum(buf: bytes) -> None:
    try:
        pkt = UdpPacket.new_checked(buf)
    except WireError as err:
        assert len(buf) < UDP_HLEN and str(err).startswith("udp:")
        return
    assert (pkt.src_port, pkt.dst_port, pkt.length, pkt.checksum) == struct.unpack("!HHHH", buf[:8])
    assert bytes(pkt.payload) == buf[8:]
    seg = bytearray(buf)
    seg[6:8] = udp_checksum(0x0A000002, 0x0A000001, seg).to_bytes(2, "big")
    assert udp_checksum_ok(0x0A000002, 0x0A000001, seg)


@fuzz_settings(300)
@given(u16, u16, st.binary(max_size=64), u32, u32, st.booleans())
def test_udp_emit_checks_out(
    sport: int, dport: int, payload: bytes, saddr: int, daddr: int, csum: bool
) -> None:
    buf = bytearray(UDP_HLEN) + payload
    UdpRepr(sport, dport).emit(buf, 0, len(payload), saddr, daddr, checksum=csum)
    pkt = UdpPacket.new_checked(buf)
    assert (UdpRepr.parse(pkt), pkt.length) == (UdpRepr(sport, dport), len(buf))
    assert udp_checksum_ok(saddr, daddr, buf) and (pkt.checksum != 0) == csum


@fuzz_settings(400)
@given(
    st.one_of(
        st.binary(max_size=64), st.binary(min_size=28, max_size=64).map(lambda b: b"\0\1\x08\0\6\4" + b[6:])
    )
)
def test_arp_view(buf: bytes) -> None:
    try:
        r = ArpRepr.parse(ArpPacket.new_checked(buf))
    except WireError as err:
        assert str(err).startswith("arp:")
        return
    assert len(buf) >= ARP_LEN
    out = bytearray(ARP_LEN)
    r.emit(out)
    # emit writes ARPHRD_ETHER; ARPHRD_IEEE802 is accepted on receive (RFC 2625).
    assert out[2:] == buf[2:ARP_LEN]


@fuzz_settings(1000)
@given(option_areas(), u32, u32)
def test_received_options_compile_echo_build(opts: bytes, local: int, saddr: int) -> None:
    """ip_rcv_options → __ip_options_compile; an accepted area is echoed for a reply
    (__ip_options_echo) and that reply's header built (ip_options_build); each step
    either works or refuses with the kernel's answer (a parameter problem pointer inside
    the options, EINVAL)."""
    padded = opts + bytes(-len(opts) % 4)
    header = bytearray(IPV4_HLEN_MIN) + padded
    header[0] = 0x40 | len(header) // 4
    header[12:16] = saddr.to_bytes(4, "big")
    opt = IpOptions(optlen=len(padded))
    try:
        ip_options_compile(header, opt, local_addr=local, now_ms=1234)
    except OptionsError as err:
        assert IPV4_HLEN_MIN <= err.pointer < len(header)
        return
    assert len(header) == IPV4_HLEN_MIN + len(padded)
    try:
        echo = ip_options_echo(header, opt)
    except OSError as err:
        assert err.errno == errno.EINVAL
        return
    assert echo.optlen == len(echo.data) <= 40 and echo.optlen % 4 == 0
    reply = bytearray(IPV4_HLEN_MIN + echo.optlen)
    ip_options_build(reply, echo, saddr, local, 99)
    assert len(reply) == IPV4_HLEN_MIN + echo.optlen


@fuzz_settings(600)
@given(option_areas(max_size=44), st.booleans())
def test_socket_options_get_and_build(opts: bytes, cap_net_raw: bool) -> None:
    """setsockopt(IP_OPTIONS) → ip_options_get: EINVAL, EPERM or compiled options that
    ip_options_build writes into a header which compiles again on receive."""
    try:
        opt = ip_options_get(opts, cap_net_raw=cap_net_raw)
    except OSError as err:
        assert err.errno in (errno.EINVAL, errno.EPERM)
        return
    assert len(opts) <= 40 and opt.optlen == len(opt.data) == (len(opts) + 3) & ~3
    header = bytearray(IPV4_HLEN_MIN + opt.optlen)
    ip_options_build(header, opt, 0x0A000002, 0x0A000001, 5)
    assert len(header) == IPV4_HLEN_MIN + opt.optlen


@fuzz_settings(600)
@given(st.binary(min_size=48, max_size=48), option_areas(max_size=44), st.booleans())
def test_options_from_a_neighbours_cork(cb: bytes, options: bytes, fill_optlen: bool) -> None:
    """ip_send_skb builds a header from skb.cb (IPCB offsets) and skb.cork.options, both
    from another process: EINVAL or options ip_options_build can fill in."""
    if fill_optlen:
        # IPCB's optlen agreeing with the bytes, so the offsets are what is checked.
        parm = InetSkbParm.unpack(cb)
        parm.opt.optlen = len(options)
        cb = parm.pack()
    try:
        opt = ip_options_from_cork(cb, options)
    except OSError as err:
        assert err.errno == errno.EINVAL
        return
    header = bytearray(IPV4_HLEN_MIN + opt.optlen)
    ip_options_build(header, opt, 0x0A000002, 0x0A000001, 5)
    assert len(header) == IPV4_HLEN_MIN + opt.optlen
