"""services.nic.gro: which datagrams merge, what goes up when, and the completed skb to
the byte. tests/core/test_gso_kernel.py compares the same engine with the kernel."""

from __future__ import annotations

import pytest

from services.core.checksum import csum_partial, csum_tcpudp_nofold, ip_fast_csum
from services.core.dropreason import DropStats
from services.core.gso import skb_checksum_help
from services.core.skbuff import (
    CHECKSUM_COMPLETE,
    CHECKSUM_NONE,
    CHECKSUM_PARTIAL,
    CHECKSUM_UNNECESSARY,
    SKB_GSO_UDP_L4,
    SkBuff,
)
from services.core.wire.ethernet import ETH_HLEN, ETH_P_ARP, ETH_P_IP
from services.core.wire.ipv4 import Ipv4Repr
from services.core.wire.udp import UdpRepr, udp_checksum_ok
from services.nic.gro import GRO_HASH_BUCKETS, MAX_GRO_SKBS, SKB_STRUCT_TRUESIZE, Gro

MAC_A = bytes.fromhex("020000000a01")
MAC_B = bytes.fromhex("020000000b02")
SADDR = 0xC0000201
DADDR = 0xC0000202
SPORT = 40000
DPORT = 40001
HEADROOM = 64


def data(n: int, seed: int = 0) -> bytes:
    return bytes((i + seed * 13) & 0xFF for i in range(n))


def dgram(
    ident: int,
    payload: bytes,
    *,
    sport: int = SPORT,
    dport: int = DPORT,
    saddr: int = SADDR,
    df: bool = True,
    ttl: int = 64,
    tos: int = 0,
    csum: str = "good",
    pad: int = 0,
    options: bytes = b"",
    frag: int = 0,
    bad_ip_csum: bool = False,
    protocol: int = 17,
    src_mac: bytes = MAC_A,
) -> bytes:
    """An Ethernet frame carrying one UDP datagram as a sender puts it on the wire."""
    udp = bytearray(8 + len(payload))
    udp[8:] = payload
    UdpRepr(sport, dport).emit(udp, 0, len(payload), saddr, DADDR)
    if csum == "zero":
        udp[6:8] = b"\x00\x00"
    elif csum == "bad":
        udp[6:8] = (int.from_bytes(udp[6:8], "big") ^ 0x0101).to_bytes(2, "big")
    r = Ipv4Repr(saddr, DADDR, protocol, len(udp), ttl=ttl, tos=tos, ident=ident, options=options)
    iph = bytearray(r.header_len)
    r.emit(iph)
    iph[6:8] = ((0x4000 if df else 0) | frag).to_bytes(2, "big")
    iph[10:12] = b"\x00\x00"
    iph[10:12] = (ip_fast_csum(iph) ^ (0x0100 if bad_ip_csum else 0)).to_bytes(2, "big")
    return MAC_B + src_mac + b"\x08\x00" + bytes(iph) + bytes(udp) + bytes(pad)


def rx(frame: bytes, *, hash: int = 0, ifindex: int = 2, protocol: int = ETH_P_IP) -> SkBuff:
    """What the driver hands napi_gro_receive: a linear frame, eth_type_trans done."""
    skb = SkBuff(bytearray(HEADROOM) + bytearray(frame))
    skb.data = skb.mac_header = HEADROOM
    skb.tail = HEADROOM + len(frame)
    skb.len = len(frame)
    skb.pull(ETH_HLEN)
    skb.protocol = protocol
    skb.dev_ifindex = skb.skb_iif = ifindex
    skb.hash = hash
    return skb


def wire(skb: SkBuff) -> bytes:
    return bytes(skb.head[skb.mac_header : skb.data]) + skb.payload()


def merged_frame(first_ident: int, payloads: list[bytes], *, df: bool = True, sport: int = SPORT) -> bytes:
    """What udp4_gro_complete leaves, built from scratch: one IP header (the first
    segment's, tot_len and checksum for the whole), a UDP header with the total length
    and the pseudo-header sum, the payloads one after the other."""
    body = b"".join(payloads)
    ulen = 8 + len(body)
    iph = bytearray(20)
    Ipv4Repr(src=SADDR, dst=DADDR, protocol=17, payload_len=ulen, ident=first_ident, dont_frag=df).emit(iph)
    uh = (
        sport.to_bytes(2, "big")
        + DPORT.to_bytes(2, "big")
        + ulen.to_bytes(2, "big")
        + csum_tcpudp_nofold(SADDR, DADDR, ulen, 17).to_bytes(2, "big")
    )
    return MAC_B + MAC_A + b"\x08\x00" + bytes(iph) + uh + body


def feed(gro: Gro, frames: list[SkBuff]) -> list[list[SkBuff]]:
    return [gro.receive(s) for s in frames]


@pytest.fixture
def gro() -> Gro:
    return Gro(DropStats())


def test_consecutive_datagrams_merge_into_one_skb(gro: Gro) -> None:
    payloads = [data(100, i) for i in range(3)]
    skbs = [rx(dgram(100 + i, p)) for i, p in enumerate(payloads)]
    sizes = [s.truesize for s in skbs]
    assert feed(gro, skbs) == [[], [], []]
    assert (gro.held, gro.merged, gro.flushed) == (1, 2, 0)
    [skb] = gro.flush()
    assert skb is skbs[0]
    assert wire(skb) == merged_frame(100, payloads)
    assert ip_fast_csum(wire(skb)[14:34]) == 0
    # udp_gro_complete_segment(): partial checksum from the UDP header, the segment
    # geometry for GSO or for the split in udp_rcv_segment.
    assert (skb.ip_summed, skb.csum_start, skb.csum_offset) == (CHECKSUM_PARTIAL, skb.data + 20, 6)
    assert (skb.gso_size, skb.gso_segs, skb.gso_type) == (100, 3, SKB_GSO_UDP_L4)
    assert (skb.network_header, skb.transport_header) == (skb.data, skb.data + 20)
    # skb_gro_receive(): the payloads became frags; each merged skb gave its truesize
    # but its sk_buff.
    assert (skb.len, skb.data_len, skb.frags) == (328, 200, payloads[1:])
    assert skb.truesize == sizes[0] + sizes[1] + sizes[2] - 2 * SKB_STRUCT_TRUESIZE
    assert (gro.held, gro.merged, gro.flushed) == (0, 2, 1)
    whole = skb.copy()
    whole.gso_size = 0
    skb_checksum_help(whole)
    assert udp_checksum_ok(SADDR, DADDR, whole.payload()[20:])


def test_an_skb_held_alone_leaves_unchanged(gro: Gro) -> None:
    frame = dgram(5, data(100))
    assert gro.receive(rx(frame)) == []
    [skb] = gro.flush()
    assert wire(skb) == frame
    assert (skb.gso_size, skb.gso_segs, skb.gso_type) == (0, 0, 0)
    # The checksum was verified in software on the way (skb_gro_incr_csum_unnecessary).
    assert skb.ip_summed == CHECKSUM_UNNECESSARY
    assert (gro.merged, gro.flushed) == (0, 0)
    assert gro.flush() == []


def test_other_packets_pass_through_in_order(gro: Gro) -> None:
    first = rx(dgram(0, data(100)))
    arp = rx(bytes(60), protocol=ETH_P_ARP)
    icmp = rx(dgram(1, data(100), protocol=1))
    assert gro.receive(first) == []
    assert gro.receive(arp) == [arp]
    assert gro.receive(icmp) == [icmp]
    # Not flushed by them: the next datagram of the flow still merges.
    assert gro.receive(rx(dgram(1, data(100)))) == []
    [skb] = gro.flush()
    assert skb.gso_segs == 2 and wire(arp) == bytes(60)


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param({"options": bytes([1, 1, 1, 0])}, id="ip-options"),
        pytest.param({"bad_ip_csum": True}, id="bad-ip-csum"),
        pytest.param({"frag": 0x2000}, id="more-fragments"),
        pytest.param({"frag": 0x0010}, id="fragment-offset"),
        pytest.param({"csum": "bad"}, id="bad-udp-csum"),
        pytest.param({"csum": "zero"}, id="zero-udp-csum"),
        pytest.param({"pad": 6}, id="ethernet-padding"),
    ],
)
def test_passed_up_alone_and_the_held_skb_merges_on(gro: Gro, odd: dict[str, object]) -> None:
    # Fixed ID 0 with DF (an unconnected sender's DF datagrams): the odd one in the
    # middle leaves the flow as it was.
    a, c = rx(dgram(0, data(100, 1))), rx(dgram(0, data(100, 3)))
    b = rx(dgram(0, data(100, 2), **odd))  # type: ignore[arg-type]
    b_bytes = wire(b)
    assert feed(gro, [a, b, c]) == [[], [b], []]
    assert wire(b) == b_bytes and b.gso_size == 0
    [skb] = gro.flush()
    assert wire(skb) == merged_frame(0, [data(100, 1), data(100, 3)])
    assert (gro.merged, gro.flushed) == (1, 1)


def test_checksum_state_of_what_is_passed_up(gro: Gro) -> None:
    bad = rx(dgram(0, data(100), csum="bad"))
    zero = rx(dgram(0, data(100), csum="zero"))
    assert gro.receive(bad) == [bad]
    # udp_rcv verifies and counts InCsumErrors.
    assert bad.ip_summed == CHECKSUM_NONE
    # A zero checksum needs no validation; GRO still marks the skb as checked.
    assert gro.receive(zero) == [zero]
    assert zero.ip_summed == CHECKSUM_UNNECESSARY


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"ttl": 63}, id="ttl"),
        pytest.param({"tos": 4}, id="tos"),
        pytest.param({"df": False}, id="df"),
    ],
)
def test_ip_header_difference_completes_the_held_skb(gro: Gro, change: dict[str, object]) -> None:
    a, b = rx(dgram(5, data(100))), rx(dgram(6, data(100)))
    c = rx(dgram(7, data(100, 1), **change))  # type: ignore[arg-type]
    assert feed(gro, [a, b]) == [[], []]
    # The held skb goes up; the new datagram starts a flow of its own.
    assert gro.receive(c) == [a]
    assert a.gso_segs == 2
    assert gro.flush() == [c]
    assert c.gso_size == 0
    assert (gro.merged, gro.flushed) == (1, 1)


def test_reserved_bit_completes_the_held_skb_and_goes_up_itself(gro: Gro) -> None:
    a, b = rx(dgram(5, data(100))), rx(dgram(6, data(100)))
    odd = rx(dgram(7, data(100), frag=0x8000))
    feed(gro, [a, b])
    assert gro.receive(odd) == [a, odd]
    assert gro.held == 0


@pytest.mark.parametrize(
    ("ids", "df", "segments"),
    [
        pytest.param([7, 8, 9, 10], True, [4], id="incrementing"),
        pytest.param([7, 8, 9, 10], False, [4], id="incrementing-no-df"),
        pytest.param([0, 0, 0, 0], True, [4], id="fixed-df"),
        # 6.18: fixed IDs merge without DF too (inet_gro_flush lost its DF check).
        pytest.param([9, 9, 9, 9], False, [4], id="fixed-no-df"),
        pytest.param([0xFFFE, 0xFFFF, 0, 1], True, [4], id="wrapping"),
        pytest.param([7, 8, 8, 9], True, [2, 2], id="repeat-after-increment"),
        pytest.param([7, 7, 8, 8], True, [2, 2], id="step-after-fixed"),
        pytest.param([7, 9, 10, 11], True, [1, 3], id="gap"),
    ],
)
def test_ip_id_rule(gro: Gro, ids: list[int], df: bool, segments: list[int]) -> None:
    out: list[SkBuff] = []
    for i, ident in enumerate(ids):
        out += gro.receive(rx(dgram(ident, data(100, i), df=df)))
    out += gro.flush()
    assert [max(1, s.gso_segs) for s in out] == segments
    assert int.from_bytes(wire(out[0])[18:20], "big") == ids[0]


def test_bigger_datagram_ends_the_flow_and_shorter_one_is_its_last(gro: Gro) -> None:
    a, b = rx(dgram(5, data(100))), rx(dgram(6, data(100, 1)))
    bigger = rx(dgram(7, data(120, 2)))
    assert feed(gro, [a, b]) == [[], []]
    assert gro.receive(bigger) == [a]
    assert wire(a) == merged_frame(5, [data(100), data(100, 1)])
    shorter = rx(dgram(8, data(80, 3)))
    # Merged, and the flow is complete at once.
    assert gro.receive(shorter) == [bigger]
    assert wire(bigger) == merged_frame(7, [data(120, 2), data(80, 3)])
    assert bigger.gso_size == 120
    after = rx(dgram(9, data(120, 4)))
    assert gro.receive(after) == []
    assert gro.flush() == [after]
    assert (gro.merged, gro.flushed) == (2, 2)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param({"sport": SPORT + 1}, id="source-port"),
        pytest.param({"dport": DPORT + 1}, id="destination-port"),
        pytest.param({"saddr": SADDR + 1}, id="source-address"),
        pytest.param({"src_mac": MAC_B}, id="ethernet-header"),
    ],
)
def test_other_flows_are_held_apart(gro: Gro, other: dict[str, object]) -> None:
    a1, a2 = rx(dgram(1, data(100))), rx(dgram(2, data(100, 1)))
    b1 = rx(dgram(1, data(100, 2), **other))  # type: ignore[arg-type]
    b2 = rx(dgram(2, data(100, 3), **other))  # type: ignore[arg-type]
    assert feed(gro, [a1, b1, a2, b2]) == [[], [], [], []]
    assert gro.held == 2
    # Oldest first.
    assert gro.flush() == [a1, b1]
    assert (a1.gso_segs, b1.gso_segs) == (2, 2)


def test_device_and_vlan_separate_flows(gro: Gro) -> None:
    a = rx(dgram(1, data(100)), ifindex=2)
    b = rx(dgram(2, data(100, 1)), ifindex=3)
    c = rx(dgram(2, data(100, 2)))
    c.vlan_tci = 5
    assert feed(gro, [a, b, c]) == [[], [], []]
    assert gro.held == 3


def test_at_most_eight_flows_per_bucket_the_oldest_goes_first(gro: Gro) -> None:
    flows = [rx(dgram(1, data(100, i), sport=1000 + i)) for i in range(MAX_GRO_SKBS + 1)]
    out = feed(gro, flows)
    assert out[:MAX_GRO_SKBS] == [[]] * MAX_GRO_SKBS
    # gro_flush_oldest(): the first flow, alone, unchanged.
    assert out[MAX_GRO_SKBS] == [flows[0]]
    assert flows[0].gso_size == 0
    assert gro.flush() == flows[1:]


def test_buckets_by_hash_each_with_its_own_limit(gro: Gro) -> None:
    # Hash 9 falls in bucket 1, hash 0 in bucket 0: sixteen flows fit.
    low = [rx(dgram(1, data(10 + i), sport=2000 + i), hash=0) for i in range(MAX_GRO_SKBS)]
    high = [
        rx(dgram(1, data(10 + i), sport=3000 + i), hash=GRO_HASH_BUCKETS + 1) for i in range(MAX_GRO_SKBS)
    ]
    # Interleaved arrival; the flush walks bucket 0 then bucket 1, oldest first in each.
    for lo, hi in zip(low, high, strict=True):
        assert gro.receive(hi) == []
        assert gro.receive(lo) == []
    assert gro.held == 2 * MAX_GRO_SKBS
    assert gro.flush() == low + high
    # Same flow, different hash: never compared, so not merged.
    assert feed(gro, [rx(dgram(1, data(100)), hash=1), rx(dgram(2, data(100)), hash=2)]) == [[], []]
    assert gro.held == 2


def test_at_most_64_segments(gro: Gro) -> None:
    out = feed(gro, [rx(dgram(i, data(100, i))) for i in range(70)])
    # The 64th is merged, and its skb goes up at once.
    assert [i for i, o in enumerate(out) if o] == [63]
    [full] = out[63]
    assert (full.gso_segs, full.len) == (64, 28 + 6400)
    assert wire(full) == merged_frame(0, [data(100, i) for i in range(64)])
    [rest] = gro.flush()
    assert wire(rest) == merged_frame(64, [data(100, i) for i in range(64, 70)])
    assert (gro.merged, gro.flushed) == (63 + 5, 2)


def test_merged_ip_packet_stays_below_64k(gro: Gro) -> None:
    # 28 + 59 * 1100 = 64928; a last, shorter segment of 607 bytes makes 65535.
    seg = [rx(dgram(i, data(1100, i))) for i in range(59)]
    assert all(o == [] for o in feed(gro, seg))
    last = rx(dgram(59, data(607)))
    [done] = gro.receive(last)
    assert (done.len, done.gso_segs) == (65535, 60)
    assert int.from_bytes(wire(done)[16:18], "big") == 65535
    # One byte more would reach 65536: skb_gro_receive refuses (-E2BIG), the held skb
    # is completed and the datagram starts a new one.
    seg = [rx(dgram(i, data(1100, i))) for i in range(59)]
    feed(gro, seg)
    over = rx(dgram(59, data(608)))
    [done] = gro.receive(over)
    assert (done.len, done.gso_segs) == (64928, 59)
    assert gro.flush() == [over]


def test_frags_then_frag_list_after_max_skb_frags(gro: Gro) -> None:
    payloads = [data(100, i) for i in range(21)]
    skbs = [rx(dgram(i, p)) for i, p in enumerate(payloads)]
    sizes = [s.truesize for s in skbs]
    feed(gro, skbs)
    [skb] = gro.flush()
    # 17 frags in the head skb; the 19th datagram itself joins the frag_list, and the
    # next ones become its frags.
    assert skb.frags == payloads[1:18]
    [member] = skb.frag_list
    assert member is skbs[18]
    assert member.payload() == payloads[18] + payloads[19] + payloads[20]
    assert (member.len, member.data_len) == (300, 200)
    assert (skb.len, skb.data_len) == (28 + 2100, 2000)
    assert wire(skb) == merged_frame(0, payloads)
    assert skb.truesize == sum(sizes) - 19 * SKB_STRUCT_TRUESIZE
    assert member.truesize == sizes[18] + sizes[19] + sizes[20] - 2 * SKB_STRUCT_TRUESIZE


def test_checksum_offloaded_by_the_device(gro: Gro) -> None:
    # CHECKSUM_UNNECESSARY: the driver vouches, GRO does not look.
    a, b = rx(dgram(0, data(100))), rx(dgram(0, data(100, 1), csum="bad"))
    a.ip_summed = b.ip_summed = CHECKSUM_UNNECESSARY
    assert feed(gro, [a, b]) == [[], []]
    assert gro.flush()[0].gso_segs == 2
    # CHECKSUM_COMPLETE: skb->csum (over the IP packet) decides; a wrong one falls
    # back to summing the datagram.
    c, d = rx(dgram(0, data(100, 2))), rx(dgram(0, data(100, 3)))
    for s in (c, d):
        s.ip_summed = CHECKSUM_COMPLETE
    c.csum = csum_partial(c.payload())
    d.csum = 0x1234
    assert feed(gro, [c, d]) == [[], []]
    [m] = gro.flush()
    assert m is c and m.gso_segs == 2
    e = rx(dgram(0, data(100, 4)))
    e.ip_summed = CHECKSUM_COMPLETE
    e.csum = csum_partial(e.payload())
    assert gro.receive(e) == []
    assert gro.flush() == [e] and e.ip_summed == CHECKSUM_COMPLETE


def test_gso_and_frag_list_skbs_are_not_merged(gro: Gro) -> None:
    a = rx(dgram(0, data(100)))
    a.gso_size, a.gso_segs, a.gso_type = 50, 2, SKB_GSO_UDP_L4
    assert gro.receive(a) == [a]
    b = rx(dgram(0, data(100)))
    b.frag_list = [SkBuff(bytearray(0))]
    assert gro.receive(b) == [b]
    assert gro.held == 0
