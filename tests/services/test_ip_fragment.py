"""services.ip.fragment: ip_fragment()/ip_do_fragment() of net/ipv4/ip_output.c, with
exact bytes, counters and drop reasons.

The expected fragments are written out here from the kernel's rules (ip_frag_next):
(mtu - hlen) & ~7 bytes of payload per fragment but the last, offsets in 8-byte
units continuing from the datagram's own, MF on all but the last (and on every one
when the datagram is itself a non-last fragment), DF only for IPSKB_FRAG_PMTU, the
non-copied options turned into NOOPs after the first fragment. The layouts with
options and the 4000-byte send were checked against this machine's kernel
(tests/e2e/test_frag_kernel.py).
"""

from __future__ import annotations

import struct

import pytest

from services.core.dropreason import DropStats, SkbDropReason
from services.core.ipcb import IPSKB_FRAG_COMPLETE, IPSKB_FRAG_PMTU, InetSkbParm, ipcb, set_ipcb
from services.core.skbuff import CHECKSUM_NONE, CHECKSUM_PARTIAL, Dst, SkBuff, alloc_skb
from services.core.snmp import SnmpMib
from services.ip.fragment import LL_RESERVED_SPACE, FragNeeded, ip_fragment

SRC = 0x0A000001
DST = 0x0A000002
IDENT = 0x1234
SKB_TRUESIZE_OVERHEAD = 576


def rfc1071(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def header(
    payload_len: int,
    frag_off: int = 0,
    *,
    options: bytes = b"",
    tos: int = 0,
    ident: int = IDENT,
    ttl: int = 64,
) -> bytes:
    hlen = 20 + len(options)
    h = bytearray(
        struct.pack(
            "!BBHHHBBHII", 0x40 | hlen // 4, tos, hlen + payload_len, ident, frag_off, ttl, 17, 0, SRC, DST
        )
    )
    h += options
    h[10:12] = struct.pack("!H", rfc1071(bytes(h)))
    return bytes(h)


def udp_segment(size: int) -> bytes:
    """A UDP header and size - 8 bytes of payload, checksum filled."""
    data = bytes((i * 7 + 3) & 0xFF for i in range(size - 8))
    pseudo = struct.pack("!IIBBH", SRC, DST, 0, 17, size)
    udp = struct.pack("!HHHH", 40000, 9000, size, 0) + data
    return udp[:6] + struct.pack("!H", rfc1071(pseudo + udp) or 0xFFFF) + udp[8:]


def datagram_skb(packet: bytes, **meta: object) -> SkBuff:
    """What ip_finish_output hands ip_fragment: the IP header at data, headroom for
    the link header, the network and transport headers set."""
    skb = alloc_skb(len(packet), 64)
    skb.put_data(packet)
    skb.reset_network_header()
    skb.transport_header = skb.data + (packet[0] & 0x0F) * 4
    skb.protocol = 0x0800
    for name, value in meta.items():
        setattr(skb, name, value)
    return skb


def expected(
    l4: bytes,
    mtu: int,
    *,
    options: bytes = b"",
    later_options: bytes | None = None,
    base: int = 0,
    mf: bool = False,
) -> list[bytes]:
    """The fragments ip_frag_next() writes for a datagram carrying l4."""
    hlen = 20 + len(options)
    step = (mtu - hlen) & ~7
    out = []
    pos = 0
    while pos < len(l4):
        n = min(step, len(l4) - pos)
        last = pos + n == len(l4)
        opts = (
            options if pos == 0 and base == 0 else (later_options if later_options is not None else options)
        )
        fo = (base + pos) >> 3 | (0 if last and not mf else 0x2000)
        out.append(header(n, fo, options=opts) + l4[pos : pos + n])
        pos += n
    return out


@pytest.fixture
def mib() -> SnmpMib:
    return SnmpMib()


@pytest.fixture
def drops() -> DropStats:
    return DropStats()


def counters(mib: SnmpMib) -> tuple[int, int, int]:
    return mib.ip.get("FragOKs"), mib.ip.get("FragCreates"), mib.ip.get("FragFails")


@pytest.mark.parametrize(
    ("mtu", "sizes"),
    [(1500, [1500, 1500, 1068]), (576, [572] * 7 + [164])],
    ids=["mtu1500", "mtu576"],
)
def test_4000_byte_udp_datagram(mib: SnmpMib, drops: DropStats, mtu: int, sizes: list[int]) -> None:
    l4 = udp_segment(4008)
    frags = ip_fragment(datagram_skb(header(len(l4)) + l4), mtu, mib, drops)
    assert [f.len for f in frags] == sizes
    assert [f.payload() for f in frags] == expected(l4, mtu)
    # (mtu - 20) & ~7: 1480 at MTU 1500, 552 at 576.
    assert struct.unpack_from("!H", frags[1].payload(), 6)[0] == ((mtu - 20) & ~7) >> 3 | 0x2000
    assert counters(mib) == (1, len(sizes), 0)
    assert drops.total() == 0


def test_fragment_geometry(mib: SnmpMib, drops: DropStats) -> None:
    [first, second, third] = ip_fragment(datagram_skb(header(4008) + udp_segment(4008)), 1500, mib, drops)
    for f in (first, second, third):
        assert f.data == f.network_header == LL_RESERVED_SPACE
        assert f.transport_header == f.network_header + 20
        assert f.tail == f.end == LL_RESERVED_SPACE + f.len
        assert f.truesize == ((f.end + 63) & ~63) + SKB_TRUESIZE_OVERHEAD
        assert f.ip_summed == CHECKSUM_NONE and not f.is_nonlinear()
        assert rfc1071(f.payload()[:20]) == 0


def test_exact_multiple_makes_no_empty_fragment(mib: SnmpMib, drops: DropStats) -> None:
    l4 = udp_segment(2960)
    frags = ip_fragment(datagram_skb(header(len(l4)) + l4), 1500, mib, drops)
    assert [f.payload() for f in frags] == expected(l4, 1500)
    assert [f.len for f in frags] == [1500, 1500]
    assert counters(mib) == (1, 2, 0)


def test_non_copied_options_become_noops_after_the_first(mib: SnmpMib, drops: DropStats) -> None:
    # Record route (7, not copied) with our address in its slot, then a stream ID
    # (136, copied), padded with END to 12 bytes: the layout the kernel sent for
    # IP_OPTIONS 07 07 04 00000000 88 04 0102 (tests/e2e/test_frag_kernel.py).
    rr = bytes([7, 7, 8]) + struct.pack("!I", SRC)
    sid = bytes([136, 4, 1, 2])
    options = rr + sid + b"\0"
    later = bytes([1] * 7) + sid + b"\0"
    l4 = udp_segment(4008)
    frags = ip_fragment(datagram_skb(header(len(l4), options=options) + l4), 1500, mib, drops)
    assert [f.len for f in frags] == [1496, 1496, 1112]  # (1500 - 32) & ~7 = 1464
    assert [f.payload() for f in frags] == expected(l4, 1500, options=options, later_options=later)
    assert all(f.transport_header - f.network_header == 32 for f in frags)
    assert counters(mib) == (1, 3, 0)


def test_copied_options_only_are_kept(mib: SnmpMib, drops: DropStats) -> None:
    # A timestamp (68, not copied) between two copied ones (a security option, 130,
    # and a stream ID, 136).
    sec = bytes([130, 11]) + bytes(range(9))
    ts = bytes([68, 8, 5, 0]) + bytes(4)
    sid = bytes([136, 4, 9, 9])
    options = sec + ts + sid + b"\1"
    later = sec + b"\1" * 8 + sid + b"\1"
    l4 = udp_segment(1200)
    frags = ip_fragment(datagram_skb(header(len(l4), options=options) + l4), 576, mib, drops)
    assert [f.payload() for f in frags] == expected(l4, 576, options=options, later_options=later)
    assert len(frags) == 3


def test_df_is_refused_with_frag_needed(mib: SnmpMib, drops: DropStats) -> None:
    l4 = udp_segment(4008)
    packet = header(len(l4), 0x4000) + l4
    skb = datagram_skb(packet)
    with pytest.raises(FragNeeded) as err:
        ip_fragment(skb, 1500, mib, drops)
    assert err.value.mtu == 1500
    assert counters(mib) == (0, 0, 1)
    # ip_fragment(): kfree_skb(), so no particular reason.
    assert drops.get(SkbDropReason.NOT_SPECIFIED, "ip_fragment") == 1
    assert drops.total() == 1
    assert skb.payload() == packet  # untouched, for the caller's icmp_send


def test_df_with_ignore_df_is_fragmented_without_df(mib: SnmpMib, drops: DropStats) -> None:
    l4 = udp_segment(4008)
    skb = datagram_skb(header(len(l4), 0x4000) + l4, ignore_df=True)
    frags = ip_fragment(skb, 1500, mib, drops)
    assert [f.payload() for f in frags] == expected(l4, 1500)
    assert counters(mib) == (1, 3, 0)


def test_df_with_ignore_df_but_larger_frag_max_size_is_refused(mib: SnmpMib, drops: DropStats) -> None:
    l4 = udp_segment(4008)
    skb = datagram_skb(header(len(l4), 0x4000) + l4, ignore_df=True)
    set_ipcb(skb.cb, InetSkbParm(frag_max_size=1600))
    with pytest.raises(FragNeeded):
        ip_fragment(skb, 1500, mib, drops)
    assert counters(mib) == (0, 0, 1)


def test_frag_max_size_and_frag_pmtu(mib: SnmpMib, drops: DropStats) -> None:
    # A reassembled datagram forwarded on: no fragment larger than the largest that
    # came (frag_max_size), and DF on each for IPSKB_FRAG_PMTU.
    l4 = udp_segment(3000)
    skb = datagram_skb(header(len(l4), 0x4000) + l4, ignore_df=True)
    set_ipcb(skb.cb, InetSkbParm(frag_max_size=1020, flags=IPSKB_FRAG_PMTU))
    frags = ip_fragment(skb, 1500, mib, drops)
    want = [
        header(len(p) - 20, struct.unpack_from("!H", p, 6)[0] | 0x4000) + p[20:] for p in expected(l4, 1020)
    ]
    assert [f.payload() for f in frags] == want
    assert [f.len for f in frags] == [1020, 1020, 1020]
    for f in frags:
        assert ipcb(f.cb).flags == IPSKB_FRAG_PMTU | IPSKB_FRAG_COMPLETE


def test_reserved_flag_is_not_copied(mib: SnmpMib, drops: DropStats) -> None:
    l4 = udp_segment(2000)
    frags = ip_fragment(datagram_skb(header(len(l4), 0x8000) + l4), 1500, mib, drops)
    assert [f.payload() for f in frags] == expected(l4, 1500)


def test_checksum_partial_is_completed_first(mib: SnmpMib, drops: DropStats) -> None:
    full = udp_segment(4008)
    # udp4_hwcsum(): the field holds the folded pseudo-header sum, ~csum_tcpudp_magic.
    pseudo = struct.pack("!IIBBH", SRC, DST, 0, 17, len(full))
    partial = full[:6] + struct.pack("!H", ~rfc1071(pseudo) & 0xFFFF) + full[8:]
    skb = datagram_skb(header(len(full)) + partial, ip_summed=CHECKSUM_PARTIAL)
    skb.csum_start = skb.transport_header
    skb.csum_offset = 6
    frags = ip_fragment(skb, 1500, mib, drops)
    assert [f.payload() for f in frags] == expected(full, 1500)
    assert skb.ip_summed == CHECKSUM_NONE
    assert counters(mib) == (1, 3, 0)


def test_bad_checksum_partial_offsets_fail(mib: SnmpMib, drops: DropStats) -> None:
    l4 = udp_segment(2000)
    skb = datagram_skb(header(len(l4)) + l4, ip_summed=CHECKSUM_PARTIAL)
    skb.csum_start = skb.tail + 10
    assert ip_fragment(skb, 1500, mib, drops) == []
    assert counters(mib) == (0, 0, 1)
    assert drops.get(SkbDropReason.NOT_SPECIFIED, "ip_do_fragment") == 1


@pytest.mark.parametrize("more", [True, False], ids=["non-last", "last"])
def test_fragmenting_a_fragment(mib: SnmpMib, drops: DropStats, more: bool) -> None:
    # A 1480-byte fragment at offset 2960 going out on an MTU-576 link.
    chunk = bytes(range(256)) * 5 + bytes(200)
    frag_off = 370 | (0x2000 if more else 0)
    frags = ip_fragment(datagram_skb(header(len(chunk), frag_off) + chunk), 576, mib, drops)
    assert [f.payload() for f in frags] == expected(chunk, 576, base=2960, mf=more)
    assert [struct.unpack_from("!H", f.payload(), 6)[0] & 0x1FFF for f in frags] == [370, 439, 508]
    assert counters(mib) == (1, 3, 0)


def test_options_of_a_later_fragment_are_left_alone(mib: SnmpMib, drops: DropStats) -> None:
    # Not THE FIRST segment (offset != 0): ip_options_fragment() is not applied again.
    options = bytes([7, 7, 8]) + struct.pack("!I", SRC) + b"\0"
    chunk = bytes(1400)
    frags = ip_fragment(datagram_skb(header(len(chunk), 185, options=options) + chunk), 576, mib, drops)
    assert [f.payload() for f in frags] == expected(chunk, 576, options=options, base=1480)


def test_metadata_of_a_local_send(mib: SnmpMib, drops: DropStats) -> None:
    """An skb owned by a socket: the fast path's first fragment is the original skb
    and keeps its TX timestamp request; every fragment is charged to the socket."""
    dst = Dst(ifindex=2, nexthop=DST, mtu=1500, rt_type=1)
    l4 = udp_segment(4008)
    skb = datagram_skb(
        header(len(l4)) + l4,
        sk=7,
        tx_flags=0x02,
        tskey=5,
        tstamp=123,
        mark=9,
        priority=6,
        hash=0xABC,
        dst=dst,
        dev_ifindex=2,
        skb_iif=0,
        queue_mapping=1,
    )
    set_ipcb(skb.cb, InetSkbParm(flags=0))
    frags = ip_fragment(skb, 1500, mib, drops)
    for f in frags:
        assert (f.sk, f.tstamp, f.mark, f.priority, f.hash, f.dst, f.dev_ifindex, f.protocol) == (
            7,
            123,
            9,
            6,
            0xABC,
            dst,
            2,
            0x0800,
        )
        assert ipcb(f.cb).flags == IPSKB_FRAG_COMPLETE
    assert [(f.tx_flags, f.tskey) for f in frags] == [(0x02, 5), (0, 0), (0, 0)]
    assert [f.queue_mapping for f in frags] == [1, 0, 0]


def test_metadata_of_a_forwarded_datagram(mib: SnmpMib, drops: DropStats) -> None:
    """No owner: the slow path's new skbs carry only what ip_copy_metadata copies."""
    l4 = udp_segment(3000)
    skb = datagram_skb(header(len(l4)) + l4, mark=3, skb_iif=4, vlan_tci=5, tx_flags=0x02)
    frags = ip_fragment(skb, 1500, mib, drops)
    assert [(f.sk, f.mark, f.skb_iif, f.vlan_tci, f.tx_flags) for f in frags] == [(0, 3, 4, 0, 0)] * 3


def test_nonlinear_datagram(mib: SnmpMib, drops: DropStats) -> None:
    l4 = udp_segment(4008)
    packet = header(len(l4)) + l4
    skb = datagram_skb(packet[:100])
    skb.frags = [packet[100:2000], packet[2000:]]
    skb.data_len = len(packet) - 100
    skb.len = len(packet)
    frags = ip_fragment(skb, 1500, mib, drops)
    assert [f.payload() for f in frags] == expected(l4, 1500)


def test_header_checksums_verify(mib: SnmpMib, drops: DropStats) -> None:
    l4 = udp_segment(9000)
    frags = ip_fragment(datagram_skb(header(len(l4), tos=0x10, ttl=3) + l4), 1280, mib, drops)
    assert len(frags) == 8
    for f in frags:
        data = f.payload()
        assert rfc1071(data[:20]) == 0
        assert (data[1], data[8]) == (0x10, 3)
    assert b"".join(f.payload()[20:] for f in frags) == l4
