"""services.core.gso: software UDP segmentation (transmit and the receive-side split) and
skb_checksum_help, checked against frames built independently with the wire module."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from services.core.checksum import csum_partial, csum_tcpudp_nofold, ip_fast_csum
from services.core.gso import (
    GsoError,
    skb_checksum_help,
    skb_gso_segment,
    udp_rcv_segment,
)
from services.core.skbuff import (
    CHECKSUM_COMPLETE,
    CHECKSUM_NONE,
    CHECKSUM_PARTIAL,
    CHECKSUM_UNNECESSARY,
    HEADER_UNSET,
    PACKET_HOST,
    PACKET_LOOPBACK,
    SKB_GSO_UDP_L4,
    SKBTX_ANY_TSTAMP,
    Dst,
    SkBuff,
    TraceStep,
    skb_truesize,
)
from services.core.wire.ethernet import ETH_HLEN, ETH_P_IP
from services.core.wire.ipv4 import Ipv4Repr
from services.core.wire.udp import UdpRepr, udp_checksum_ok

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
ETH = MAC_B + MAC_A + b"\x08\x00"
SADDR = 0xC0000201  # 192.0.2.1
DADDR = 0xC0000202  # 192.0.2.2
SPORT = 40000
DPORT = 40001
HEADROOM = 64
SKBTX_HW_TSTAMP = 1 << 0
SKBTX_SW_TSTAMP = 1 << 1
SKBTX_IN_PROGRESS = 1 << 2
SKBTX_WIFI_STATUS = 1 << 4
SKBTX_SCHED_TSTAMP = 1 << 6


def pattern(n: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + 3 + seed) & 0xFF for i in range(n))


def ip_header(
    payload_len: int, ident: int, *, df: bool = False, ttl: int = 64, tos: int = 0, options: bytes = b""
) -> bytes:
    r = Ipv4Repr(
        src=SADDR,
        dst=DADDR,
        protocol=17,
        payload_len=payload_len,
        ttl=ttl,
        tos=tos,
        ident=ident,
        dont_frag=df,
        options=options,
    )
    buf = bytearray(r.header_len)
    r.emit(buf)
    return bytes(buf)


def udp_datagram(payload: bytes, *, partial: bool) -> bytes:
    """The UDP header and payload as a sender with (partial) or without checksum
    offload finishes them: pseudo-header sum in the field, or the full checksum."""
    buf = bytearray(8 + len(payload))
    buf[8:] = payload
    if partial:
        struct.pack_into(
            "!HHHH", buf, 0, SPORT, DPORT, len(buf), csum_tcpudp_nofold(SADDR, DADDR, len(buf), 17)
        )
    else:
        UdpRepr(SPORT, DPORT).emit(buf, 0, len(payload), SADDR, DADDR)
    return bytes(buf)


def frame(payload: bytes, ident: int, *, partial: bool, eth: bool = True, **ip: Any) -> bytes:
    udp = udp_datagram(payload, partial=partial)
    return (ETH if eth else b"") + ip_header(len(udp), ident, **ip) + udp


def linear_skb(data: bytes, headroom: int = HEADROOM) -> SkBuff:
    skb = SkBuff(bytearray(headroom) + bytearray(data))
    skb.data = headroom
    skb.tail = headroom + len(data)
    skb.len = len(data)
    return skb


def make_nonlinear(skb: SkBuff, keep: int, layout: str, piece: int = 1000) -> SkBuff:
    """Move everything after the first `keep` linear bytes into frags or a frag_list."""
    rest = skb.payload()[keep:]
    skb.tail = skb.data + keep
    skb.head = skb.head[: skb.tail]
    pieces = [rest[i : i + piece] for i in range(0, len(rest), piece)]
    if layout == "frags":
        skb.frags = pieces
    else:
        skb.frag_list = [linear_skb(p, 0) for p in pieces]
    skb.data_len = len(rest)
    return skb


def gso_skb(
    payload: bytes,
    mss: int,
    *,
    ident: int = 0x1234,
    partial: bool = True,
    eth: bool = True,
    layout: str = "linear",
    options: bytes = b"",
    df: bool = False,
    ttl: int = 64,
    tos: int = 0,
) -> SkBuff:
    """A UDP GSO skb as udp_send_skb (udp4_hwcsum: the pseudo-header sum in the field
    whether the device checksums or not), ip_send_skb and, with eth, dev_queue_xmit
    leave it: data at the Ethernet header, or at the IPv4 header without one."""
    udp = udp_datagram(payload, partial=True)
    iph = ip_header(len(udp), ident, df=df, ttl=ttl, tos=tos, options=options)
    link = ETH if eth else b""
    skb = linear_skb(link + iph + udp)
    if eth:
        skb.mac_header = HEADROOM
    skb.network_header = HEADROOM + len(link)
    skb.transport_header = skb.csum_start = skb.network_header + len(iph)
    skb.csum_offset = 6
    skb.ip_summed = CHECKSUM_PARTIAL if partial else CHECKSUM_NONE
    skb.protocol = ETH_P_IP
    skb.gso_size = mss
    skb.gso_type = SKB_GSO_UDP_L4
    skb.gso_segs = -(-len(payload) // mss)
    if layout != "linear":
        make_nonlinear(skb, len(link) + len(iph) + 8 + 300, layout)
    return skb


def chunks(payload: bytes, mss: int) -> list[bytes]:
    return [payload[i : i + mss] for i in range(0, len(payload), mss)]


def frame_bytes(skb: SkBuff) -> bytes:
    """The bytes from the segment's first header (mac_header) through its end."""
    start = skb.mac_header if skb.mac_header != HEADER_UNSET else skb.data
    return bytes(skb.head[start : skb.data]) + skb.payload()


def assert_checksums(f: bytes, ip_off: int, *, partial: bool) -> None:
    """Verify a segment's IPv4 header checksum and UDP checksum on their own."""
    ihl = (f[ip_off] & 0x0F) * 4
    assert ip_fast_csum(f[ip_off : ip_off + ihl]) == 0
    udp = f[ip_off + ihl :]
    assert len(udp) == struct.unpack_from("!H", udp, 4)[0]
    if partial:
        assert struct.unpack_from("!H", udp, 6)[0] == csum_tcpudp_nofold(SADDR, DADDR, len(udp), 17)
    else:
        assert udp_checksum_ok(SADDR, DADDR, udp)


# skb_gso_segment.


@pytest.mark.parametrize("layout", ["linear", "frags", "frag_list"])
@pytest.mark.parametrize("hw_csum", [True, False])
def test_segments_are_the_datagrams_a_sender_would_have_sent(layout: str, hw_csum: bool) -> None:
    payload = pattern(5000)
    skb = gso_skb(payload, 1400, layout=layout)
    segs = skb_gso_segment(skb, hw_csum=hw_csum)
    # 1400 + 1400 + 1400 + 800: the last segment is short; IDs count up from the
    # original's.
    assert [s.len for s in segs] == [1442, 1442, 1442, 842]
    want = [frame(c, 0x1234 + i, partial=hw_csum) for i, c in enumerate(chunks(payload, 1400))]
    assert [frame_bytes(s) for s in segs] == want
    for s in segs:
        assert_checksums(frame_bytes(s), ETH_HLEN, partial=hw_csum)
        assert not s.data_len and not s.frags and not s.frag_list
        if hw_csum:
            assert (s.ip_summed, s.csum_start, s.csum_offset) == (CHECKSUM_PARTIAL, s.transport_header, 6)
            skb_checksum_help(s)
            assert_checksums(frame_bytes(s), ETH_HLEN, partial=False)
        assert s.ip_summed == CHECKSUM_NONE


def test_checksum_none_input_is_summed_in_software_even_with_hw_csum() -> None:
    """__udp_gso_segment drops the checksum features for a skb that is not
    CHECKSUM_PARTIAL (a device without checksum offload made it)."""
    payload = pattern(3000, 5)
    segs = skb_gso_segment(gso_skb(payload, 1000, partial=False), hw_csum=True)
    assert [frame_bytes(s) for s in segs] == [
        frame(c, 0x1234 + i, partial=False) for i, c in enumerate(chunks(payload, 1000))
    ]
    assert {s.ip_summed for s in segs} == {CHECKSUM_NONE}


def test_exact_multiple_has_no_short_segment_and_input_is_untouched() -> None:
    payload = pattern(2800)
    skb = gso_skb(payload, 1400)
    before = bytes(skb.head)
    segs = skb_gso_segment(skb, hw_csum=False)
    assert [s.len for s in segs] == [1442, 1442]
    assert bytes(skb.head) == before
    assert (skb.gso_size, skb.ip_summed) == (1400, CHECKSUM_PARTIAL)


def test_ids_wrap_and_ip_fields_are_copied() -> None:
    opts = bytes([7, 7, 4, 0, 0, 0, 0])  # record route with one slot, padded to 8
    payload = pattern(1000, 1)
    segs = skb_gso_segment(
        gso_skb(payload, 400, ident=0xFFFE, options=opts, df=True, ttl=3, tos=0xB8), hw_csum=False
    )
    want = [
        frame(c, ident, partial=False, df=True, ttl=3, tos=0xB8, options=opts)
        for c, ident in zip(chunks(payload, 400), [0xFFFE, 0xFFFF, 0x0000], strict=True)
    ]
    assert [frame_bytes(s) for s in segs] == want
    for s in segs:
        assert (s.network_header, s.transport_header) == (HEADROOM + 14, HEADROOM + 14 + 28)
        assert_checksums(frame_bytes(s), ETH_HLEN, partial=False)


def test_data_at_the_ip_header_without_a_link_header() -> None:
    payload = pattern(2500, 2)
    segs = skb_gso_segment(gso_skb(payload, 1000, eth=False), hw_csum=True)
    assert [s.payload() for s in segs] == [
        frame(c, 0x1234 + i, partial=True, eth=False) for i, c in enumerate(chunks(payload, 1000))
    ]
    for s in segs:
        # __skb_gso_segment resets the mac header to where segmentation started.
        assert s.data == s.mac_header == s.network_header == HEADROOM
        assert s.transport_header == HEADROOM + 20


def test_data_at_the_ip_header_with_the_mac_header_before_it() -> None:
    payload = pattern(2500, 3)
    skb = gso_skb(payload, 1000)
    skb.pull(ETH_HLEN)
    segs = skb_gso_segment(skb, hw_csum=False)
    for i, (s, c) in enumerate(zip(segs, chunks(payload, 1000), strict=True)):
        assert (s.mac_header, s.data, s.network_header) == (HEADROOM, HEADROOM + 14, HEADROOM + 14)
        assert frame_bytes(s) == frame(c, 0x1234 + i, partial=False)
        assert s.len == len(c) + 28


def test_skb_fields_carried_to_every_segment() -> None:
    skb = gso_skb(pattern(3000), 1000, layout="frags")
    skb.sk = 7
    skb.tstamp = 111
    skb.hwtstamp = 222
    skb.mark = 0x55
    skb.priority = 6
    skb.dev_ifindex = 3
    skb.skb_iif = 4
    skb.hash = 0xABCDEF
    skb.queue_mapping = 1
    skb.vlan_tci = 10
    skb.ignore_df = True
    skb.pkt_type = PACKET_HOST
    skb.dst = Dst(3, DADDR, 1500, 1, 0)
    skb.cb[:4] = b"\x01\x02\x03\x04"
    skb.trace = [TraceStep("udp_sendmsg", "udp", "h", 1)]
    skb.tskey = 41
    skb.tx_flags = (
        SKBTX_SW_TSTAMP | SKBTX_SCHED_TSTAMP | SKBTX_HW_TSTAMP | SKBTX_IN_PROGRESS | SKBTX_WIFI_STATUS
    )
    segs = skb_gso_segment(skb, hw_csum=True)
    assert len(segs) == 3
    for i, s in enumerate(segs):
        assert (s.sk, s.tstamp, s.mark, s.priority, s.dev_ifindex, s.skb_iif) == (7, 111, 0x55, 6, 3, 4)
        assert (s.hash, s.queue_mapping, s.vlan_tci, s.ignore_df, s.protocol) == (
            0xABCDEF,
            1,
            10,
            True,
            ETH_P_IP,
        )
        assert s.dst is skb.dst
        assert bytes(s.cb[:4]) == b"\x01\x02\x03\x04"
        assert s.trace == skb.trace and s.trace is not skb.trace
        # skb_shared_info starts zeroed: no GSO fields, no hardware timestamp.
        assert (s.gso_size, s.gso_segs, s.gso_type, s.hwtstamp) == (0, 0, 0, 0)
        # __udp_gso_segment: only the first segment asks for the timestamp, with the key.
        if i == 0:
            assert s.tskey == 41
            assert s.tx_flags == SKBTX_SW_TSTAMP | SKBTX_SCHED_TSTAMP | SKBTX_HW_TSTAMP
            assert s.tx_flags == skb.tx_flags & SKBTX_ANY_TSTAMP
        else:
            assert (s.tskey, s.tx_flags) == (0, 0)


def test_truesize_counts_the_linear_part_as_head_and_the_rest_as_frags() -> None:
    # 300 payload bytes stay linear in the original; the rest is in frags.
    segs = skb_gso_segment(gso_skb(pattern(3000), 1000, layout="frags"), hw_csum=True)
    hdr = HEADROOM + 14 + 20 + 8
    assert [s.truesize for s in segs] == [
        skb_truesize(hdr + 300) + 700,
        skb_truesize(hdr) + 1000,
        skb_truesize(hdr) + 1000,
    ]
    linear = skb_gso_segment(gso_skb(pattern(3000), 1000), hw_csum=True)
    assert [s.truesize for s in linear] == [skb_truesize(hdr + 1000)] * 3


def test_refused_skbs() -> None:
    def err(skb: SkBuff, match: str) -> None:
        with pytest.raises(GsoError, match=match):
            skb_gso_segment(skb, hw_csum=True)

    skb = gso_skb(pattern(3000), 1000)
    skb.gso_size = 0
    err(skb, "gso_size 0")
    skb = gso_skb(pattern(3000), 1000)
    skb.gso_type = 1 << 0  # SKB_GSO_TCPV4
    err(skb, "not SKB_GSO_UDP_L4")
    skb = gso_skb(pattern(3000), 1000)
    skb.protocol = 0x86DD
    err(skb, "not IPv4")
    # __udp_gso_segment: what fits in one segment is -EINVAL.
    err(gso_skb(pattern(1000), 1000), "fit in gso_size 1000")
    skb = gso_skb(pattern(3000), 1000)
    skb.csum_start += 2
    err(skb, "csum_start")
    skb = gso_skb(pattern(3000), 1000)
    skb.head[skb.network_header + 9] = 6  # TCP
    err(skb, "IP protocol 6")
    skb = gso_skb(pattern(3000), 1000)
    skb.head[skb.network_header] = 0x44  # ihl 4
    err(skb, "header length 16")
    skb = gso_skb(pattern(3000), 1000)
    skb.pull(ETH_HLEN + 20)
    err(skb, "past the network header")
    assert issubclass(GsoError, ValueError)


# skb_checksum_help.


def partial_udp_skb(payload: bytes) -> SkBuff:
    udp = udp_datagram(payload, partial=True)
    skb = linear_skb(ETH + ip_header(len(udp), 1) + udp)
    skb.mac_header = HEADROOM
    skb.network_header = HEADROOM + 14
    skb.csum_start = skb.transport_header = HEADROOM + 34
    skb.csum_offset = 6
    skb.ip_summed = CHECKSUM_PARTIAL
    return skb


def test_checksum_help_completes_a_partial_checksum() -> None:
    payload = pattern(777, 9)
    skb = partial_udp_skb(payload)
    skb_checksum_help(skb)
    assert skb.ip_summed == CHECKSUM_NONE
    assert skb.payload() == frame(payload, 1, partial=False)
    # From the IP header on, and nonlinear.
    skb = make_nonlinear(partial_udp_skb(payload), 100, "frags", 300)
    skb.pull(ETH_HLEN)
    skb_checksum_help(skb)
    assert frame_bytes(skb) == frame(payload, 1, partial=False)


def test_checksum_help_stores_a_zero_result_as_csum_mangled_0() -> None:
    # Pick the last two payload bytes so that everything sums to 0xFFFF: the folded
    # checksum is then 0, which the kernel stores as 0xFFFF.
    head = pattern(20, 4)
    udp = udp_datagram(head + b"\x00\x00", partial=True)
    s = csum_partial(udp)
    fix = (0xFFFF - s) & 0xFFFF
    payload = head + fix.to_bytes(2, "big")
    skb = partial_udp_skb(payload)
    skb_checksum_help(skb)
    udp_out = skb.payload()[34:]
    assert udp_out[6:8] == b"\xff\xff"
    assert udp_checksum_ok(SADDR, DADDR, udp_out)
    assert udp_datagram(payload, partial=False)[6:8] == b"\xff\xff"


def test_checksum_help_complete_and_errors() -> None:
    skb = partial_udp_skb(b"abc")
    skb.ip_summed = CHECKSUM_COMPLETE
    before = bytes(skb.head)
    skb_checksum_help(skb)
    assert skb.ip_summed == CHECKSUM_NONE and bytes(skb.head) == before
    skb = partial_udp_skb(b"abc")
    skb.gso_size = 1
    with pytest.raises(GsoError, match="GSO skb"):
        skb_checksum_help(skb)
    skb = make_nonlinear(partial_udp_skb(pattern(100)), 30, "frags")
    with pytest.raises(GsoError, match=r"offset \(34\) >= skb_headlen\(\) \(30\)"):
        skb_checksum_help(skb)
    skb = make_nonlinear(partial_udp_skb(pattern(100)), 40, "frags")
    with pytest.raises(GsoError, match=r"offset\+2 \(42\) > skb_headlen\(\) \(40\)"):
        skb_checksum_help(skb)


# udp_rcv_segment.


def gro_skb(payload: bytes, mss: int, *, first_ident: int = 0x0700, layout: str = "frags") -> SkBuff:
    """A merged skb as udp4_gro_complete leaves it and ip_rcv/udp_rcv pass it to a
    socket: data at the UDP header, CHECKSUM_PARTIAL with the pseudo-header sum."""
    skb = gso_skb(payload, mss, ident=first_ident, layout="linear")
    # GRO merges DF datagrams too; nothing here depends on it.
    keep = 14 + 20 + 8 + mss
    if layout != "linear":
        make_nonlinear(skb, keep, layout, mss)
    skb.pull(ETH_HLEN + 20)
    skb.gso_segs = -(-len(payload) // mss)
    skb.pkt_type = PACKET_HOST
    skb.tstamp = 1_000_000
    skb.hwtstamp = 2_000_000
    skb.dev_ifindex = skb.skb_iif = 2
    return skb


@pytest.mark.parametrize("layout", ["frags", "frag_list", "linear"])
def test_rcv_segment_gives_standalone_datagrams(layout: str) -> None:
    payload = pattern(4100, 6)
    segs = udp_rcv_segment(gro_skb(payload, 1000, layout=layout))
    assert len(segs) == 5
    for i, (s, c) in enumerate(zip(segs, chunks(payload, 1000), strict=True)):
        assert s.data == s.transport_header == HEADROOM + 34
        assert (s.network_header, s.mac_header) == (HEADROOM + 14, HEADROOM)
        assert s.payload() == udp_datagram(c, partial=True)
        assert frame_bytes(s) == frame(c, 0x0700 + i, partial=True)
        assert_checksums(frame_bytes(s), ETH_HLEN, partial=True)
        assert s.ip_summed == CHECKSUM_PARTIAL
        # skb_segment copies skb->tstamp; the hardware stamp lives in skb_shared_info,
        # which a new segment gets zeroed.
        assert (s.tstamp, s.hwtstamp, s.skb_iif, s.dev_ifindex) == (1_000_000, 0, 2, 2)
        assert (s.gso_size, s.gso_segs, s.gso_type) == (0, 0, 0)
        skb_checksum_help(s)
        assert s.payload() == udp_datagram(c, partial=False)


def test_rcv_segment_with_final_checksums_marks_segments_valid() -> None:
    """inet_get_convert_csum(): the checksum is computed, and
    udp_post_segment_fix_csum marks the CHECKSUM_NONE result valid."""
    payload = pattern(2500, 8)
    segs = udp_rcv_segment(gro_skb(payload, 1000), convert_csum=True)
    assert [s.payload() for s in segs] == [udp_datagram(c, partial=False) for c in chunks(payload, 1000)]
    assert {s.ip_summed for s in segs} == {CHECKSUM_UNNECESSARY}


def test_rcv_segment_loopback_is_treated_as_partial() -> None:
    skb = gro_skb(pattern(2500), 1000)
    skb.pkt_type = PACKET_LOOPBACK
    skb.ip_summed = CHECKSUM_UNNECESSARY
    segs = udp_rcv_segment(skb)
    assert {s.ip_summed for s in segs} == {CHECKSUM_PARTIAL}


def test_rcv_segment_without_a_header_before_data_is_refused() -> None:
    skb = gro_skb(pattern(2500), 1000)
    skb.mac_header = skb.network_header = HEADER_UNSET
    with pytest.raises(GsoError, match="no header"):
        udp_rcv_segment(skb)
    skb = gro_skb(pattern(2500), 1000)
    skb.gso_size = 3000  # the whole datagram in one segment
    with pytest.raises(GsoError, match="fit in gso_size"):
        udp_rcv_segment(skb)
