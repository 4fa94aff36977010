"""services.ip.defrag: ip_defrag() of net/ipv4/ip_fragment.c and inet_fragment.c, with
exact bytes, /proc/net/snmp counters and drop reasons, on an injected clock.

What differs from a first guess was checked on this machine's kernel (6.18) with
fragments injected into a namespace (tests/e2e/test_frag_kernel.py): a duplicate or
contained fragment is dropped alone (DUP_FRAG, no ReasmFails); a fragment spanning
two queued ones is a duplicate if they came in order and an overlap if not; an
overlap kills the queue (ReasmOverlaps, ReasmFails, the culprit NOT_SPECIFIED and the
queued ones consumed); a duplicate after completion starts a new queue that times
out; above ipfrag_high_thresh the fragments of existing queues are refused too;
ipfrag_max_dist 64 lets 63 fragments of other datagrams come between two of one, not
64.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable

import pytest

from services.core.dropreason import DropStats, SkbDropReason
from services.core.ipcb import IPSKB_FRAG_COMPLETE, IPSKB_FRAG_PMTU, InetSkbParm, ipcb, set_ipcb
from services.core.skbuff import (
    CHECKSUM_COMPLETE,
    CHECKSUM_NONE,
    CHECKSUM_UNNECESSARY,
    NET_SKB_PAD,
    Dst,
    SkBuff,
    alloc_skb,
)
from services.core.snmp import SnmpMib
from services.core.sysctl import Sysctl
from services.ip.defrag import (
    IP_DEFRAG_CONNTRACK_IN,
    IP_DEFRAG_LOCAL_DELIVER,
    IPQ_TRUESIZE,
    IpDefrag,
)

SRC = 0x0A000001
DST = 0x0A000002
SEC = 1_000_000_000
ETH = bytes.fromhex("020000000b02020000000a010800")


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
    ident: int = 1,
    tos: int = 0,
    proto: int = 17,
    src: int = SRC,
    options: bytes = b"",
) -> bytes:
    hlen = 20 + len(options)
    h = bytearray(
        struct.pack(
            "!BBHHHBBHII", 0x40 | hlen // 4, tos, hlen + payload_len, ident, frag_off, 64, proto, 0, src, DST
        )
    )
    h += options
    h[10:12] = struct.pack("!H", rfc1071(bytes(h)))
    return bytes(h)


# The 4000 bytes after the IP header of a 4020-byte UDP datagram.
L4 = bytes((i * 13 + 5) & 0xFF for i in range(4000))


def frag(
    off: int,
    length: int,
    mf: bool,
    *,
    l4: bytes = L4,
    df: bool = False,
    ident: int = 1,
    tos: int = 0,
    proto: int = 17,
    src: int = SRC,
) -> bytes:
    fo = off >> 3 | (0x2000 if mf else 0) | (0x4000 if df else 0)
    chunk = l4[off : off + length]
    return header(len(chunk), fo, ident=ident, tos=tos, proto=proto, src=src) + chunk


def rx(packet: bytes, **meta: object) -> SkBuff:
    """A received frame as ip_local_deliver passes it: NET_SKB_PAD headroom, the
    Ethernet header before data (mac_header), the IP header at data."""
    skb = alloc_skb(len(ETH) + len(packet), NET_SKB_PAD)
    skb.put_data(ETH + packet)
    skb.reset_mac_header()
    skb.pull(len(ETH))
    skb.reset_network_header()
    skb.transport_header = skb.data + (packet[0] & 0x0F) * 4
    skb.protocol = 0x0800
    skb.dev_ifindex = skb.skb_iif = 2
    set_ipcb(skb.cb, InetSkbParm(iif=2))
    for name, value in meta.items():
        setattr(skb, name, value)
    return skb


def three(ident: int = 1, *, df: bool = False, proto: int = 17, src: int = SRC) -> list[bytes]:
    """The kernel's fragments of the 4020-byte datagram at MTU 1500."""
    return [
        frag(off, n, off < 2960, ident=ident, df=df, proto=proto, src=src)
        for off, n in ((0, 1480), (1480, 1480), (2960, 1040))
    ]


def whole(
    ident: int = 1, l4: bytes = L4, frag_off: int = 0, *, tos: int = 0, proto: int = 17, src: int = SRC
) -> bytes:
    return header(len(l4), frag_off, ident=ident, tos=tos, proto=proto, src=src) + l4


class Clock:
    def __init__(self) -> None:
        self.now = 1000 * SEC

    def __call__(self) -> int:
        return self.now


class Host:
    """One IpDefrag with its counters, drops and clock."""

    def __init__(self, **sysctls: int) -> None:
        self.sysctl = Sysctl({f"net.ipv4.{k}": v for k, v in sysctls.items()})
        self.mib = SnmpMib()
        self.drops = DropStats()
        self.clock = Clock()
        self.defrag = IpDefrag(self.sysctl, self.mib, self.drops, self.clock)

    def feed(self, packets: Iterable[bytes], **meta: object) -> list[bytes]:
        out = []
        for p in packets:
            got = self.defrag.ip_defrag(rx(p, **meta))
            if got is not None:
                out.append(got.payload())
        return out

    def reasm(self) -> dict[str, int]:
        ip = self.mib.ip
        got = {k: ip.get(f"Reasm{k}") for k in ("Reqds", "OKs", "Fails", "Timeout")}
        got["Overlaps"] = self.mib.ipext.get("ReasmOverlaps")
        return {k: v for k, v in got.items() if v}

    def idle(self) -> bool:
        return self.defrag.inuse == 0 and self.defrag.mem == 0


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]])
def test_any_order(order: list[int]) -> None:
    h = Host()
    frags = three()
    assert h.feed(frags[i] for i in order) == [whole()]
    assert h.reasm() == {"Reqds": 3, "OKs": 1}
    assert h.drops.total() == 0
    assert h.idle()


def test_random_orders_and_duplicates() -> None:
    rnd = random.Random(7)
    h = Host()
    l4 = bytes(rnd.randrange(256) for _ in range(9000))
    pieces = [frag(off, 8 * 37, off + 8 * 37 < 9000, l4=l4, ident=9) for off in range(0, 9000, 8 * 37)]
    for _ in range(20):
        order = list(range(len(pieces)))
        rnd.shuffle(order)
        # Five fragments twice, never the one that comes last and completes it.
        seq = order[:-1] + [rnd.choice(order[:-1]) for _ in range(5)]
        rnd.shuffle(seq)
        seq.append(order[-1])
        assert h.feed(pieces[i] for i in seq) == [whole(9, l4)]
    assert h.reasm() == {"Reqds": 20 * (len(pieces) + 5), "OKs": 20}
    assert h.drops.by_reason() == {"DUP_FRAG": 100}
    assert h.idle()


def test_reassembled_skb() -> None:
    h = Host()
    dst_last = Dst(ifindex=3, nexthop=DST, rt_type=2)
    frags = three()
    d = h.defrag
    assert d.ip_defrag(rx(frags[1], tstamp=11, mark=1)) is None
    assert d.ip_defrag(rx(frags[0], tstamp=22, mark=2, priority=4, hash=0x55)) is None
    assert d.inuse == 1 and d.mem > IPQ_TRUESIZE
    out = d.ip_defrag(rx(frags[2], tstamp=33, mark=3, dst=dst_last, dev_ifindex=3))
    assert out is not None
    data = out.payload()
    assert data == whole()
    # The header as ip_frag_reasm() leaves it: tot_len, frag_off 0, checksum.
    assert struct.unpack_from("!HH", data, 2) == (4020, 1) and data[6:8] == b"\0\0"
    assert rfc1071(data[:20]) == 0
    # The first fragment's metadata, with the completing one's dst, device and time.
    assert (out.mark, out.priority, out.hash, out.tstamp) == (2, 4, 0x55, 33)
    assert (out.dst, out.dev_ifindex) == (dst_last, 3)
    assert out.data == out.network_header == NET_SKB_PAD + len(ETH)
    assert out.mac_header == NET_SKB_PAD and bytes(out.head[out.mac_header : out.data]) == ETH
    assert out.transport_header == out.network_header + 20
    assert not out.is_nonlinear() and out.len == 4020
    parm = ipcb(out.cb)
    assert (parm.iif, parm.frag_max_size, parm.flags) == (2, 1500, 0)
    assert h.idle()


def test_reassembled_truesize() -> None:
    # skb_try_coalesce() steals the heads of the later fragments as page frags: all
    # of their truesize but the struct sk_buff moves to the head.
    h = Host()
    skbs = [rx(p) for p in three()]
    sizes = [s.truesize for s in skbs]
    out = None
    for s in skbs:
        out = h.defrag.ip_defrag(s)
    assert out is not None
    assert out.truesize == sizes[0] + (sizes[1] - 256) + (sizes[2] - 256)


def test_df_fragments_give_df_and_frag_pmtu() -> None:
    h = Host()
    out = None
    for p in three(df=True):
        out = h.defrag.ip_defrag(rx(p))
    assert out is not None
    assert out.payload() == whole(frag_off=0x4000)
    parm = ipcb(out.cb)
    assert parm.flags & IPSKB_FRAG_PMTU and parm.frag_max_size == 1500


def test_df_only_on_a_small_fragment_gives_no_df() -> None:
    # "We only set DF/IPSKB_FRAG_PMTU if such DF fragment was the largest frag seen"
    h = Host()
    got = h.feed([frag(0, 1480, True), frag(1480, 1480, True), frag(2960, 1040, False, df=True)])
    assert got == [whole()]


def test_exact_duplicate_is_dropped_alone() -> None:
    h = Host()
    a, b, c = three()
    assert h.feed([a, a, b, b, c]) == [whole()]
    assert h.reasm() == {"Reqds": 5, "OKs": 1}
    assert h.drops.by_location() == {"ip_defrag": 2}
    assert h.drops.get(SkbDropReason.DUP_FRAG) == 2


def test_contained_fragment_is_a_duplicate() -> None:
    h = Host()
    a, b, c = three()
    assert h.feed([a, frag(8, 16, True), b, c]) == [whole()]
    assert h.reasm() == {"Reqds": 4, "OKs": 1}
    assert h.drops.by_reason() == {"DUP_FRAG": 1}


def test_spanning_fragment_in_order_is_a_duplicate() -> None:
    # [0,1480) and [1480,2960) came in order: one run, which holds [0,2960).
    h = Host()
    a, b, c = three()
    assert h.feed([a, b, frag(0, 2960, True), c]) == [whole()]
    assert h.reasm() == {"Reqds": 4, "OKs": 1}
    assert h.drops.by_reason() == {"DUP_FRAG": 1}


def test_spanning_fragment_in_reverse_is_an_overlap() -> None:
    # [1480,2960) then [0,1480): two runs, neither holds [0,2960).
    h = Host()
    a, b, c = three()
    assert h.feed([b, a, frag(0, 2960, True), c]) == []
    # The last fragment started a new queue, which waits.
    assert h.reasm() == {"Reqds": 4, "Fails": 1, "Overlaps": 1}
    assert h.drops.by_reason() == {"NOT_SPECIFIED": 1}
    assert h.defrag.inuse == 1


@pytest.mark.parametrize(
    ("queued", "overlapping"),
    [(frag(0, 1480, True), frag(1472, 1480, True)), (frag(1480, 1480, True), frag(8, 1480, True))],
    ids=["back", "front"],
)
def test_partial_overlap_kills_the_queue(queued: bytes, overlapping: bytes) -> None:
    h = Host()
    assert h.feed([queued, overlapping]) == []
    assert h.reasm() == {"Reqds": 2, "Fails": 1, "Overlaps": 1}
    # The culprit is the drop (kfree_skb_reason with no reason set); the queued
    # fragment is freed by inet_frag_destroy() as consumed.
    assert h.drops.by_reason() == {"NOT_SPECIFIED": 1}
    assert h.idle()
    # What follows starts over.
    assert h.feed(three()) == [whole()]


def test_overlap_with_the_tail() -> None:
    h = Host()
    a, b, _ = three()
    assert h.feed([a, b, frag(2952, 1048, False)]) == []
    assert h.reasm() == {"Reqds": 3, "Fails": 1, "Overlaps": 1}
    assert h.idle()


def test_interleaved_datagrams() -> None:
    h = Host()
    x, y = three(ident=5), three(ident=6)
    other_proto = three(ident=5, proto=136)
    other_src = three(ident=5, src=0x0A000009)
    seq = [x[2], y[0], other_proto[1], x[0], other_src[2], y[2], other_proto[0], other_src[0], x[1], y[1]]
    seq += [other_src[1], other_proto[2]]
    assert h.feed(seq) == [whole(5), whole(6), whole(5, src=0x0A000009), whole(5, proto=136)]
    assert h.reasm() == {"Reqds": 12, "OKs": 4}
    assert h.idle()


def test_user_and_vif_are_part_of_the_key() -> None:
    h = Host()
    a, b, c = three()
    d = h.defrag
    assert d.ip_defrag(rx(a), IP_DEFRAG_LOCAL_DELIVER) is None
    assert d.ip_defrag(rx(b), IP_DEFRAG_CONNTRACK_IN) is None
    assert d.ip_defrag(rx(c), IP_DEFRAG_LOCAL_DELIVER, vif=7) is None
    assert d.inuse == 3
    assert d.ip_defrag(rx(b)) is None
    out = d.ip_defrag(rx(c))
    assert out is not None and out.payload() == whole()


def test_timeout_with_the_first_fragment() -> None:
    h = Host()
    a, b, _ = three()
    h.feed([a, b])
    d = h.defrag
    assert d.next_expiry() == h.clock.now + 30 * SEC
    assert d.expire(h.clock.now + 30 * SEC - 1) == []
    [first] = d.expire(h.clock.now + 30 * SEC)
    # The first fragment as it came, for icmp_send's quote.
    assert first.payload() == a and first.data == first.network_header
    assert h.reasm() == {"Reqds": 2, "Fails": 1, "Timeout": 1}
    assert list(h.drops.items()) == [
        ((SkbDropReason.FRAG_REASM_TIMEOUT, "inet_frag_rbtree_purge"), 1),
        ((SkbDropReason.FRAG_REASM_TIMEOUT, "ip_expire"), 1),
    ]
    assert h.idle() and d.next_expiry() is None


def test_timeout_without_the_first_fragment() -> None:
    h = Host()
    _, b, c = three()
    h.feed([b, c])
    assert h.defrag.expire(h.clock.now + 30 * SEC) == []
    assert h.reasm() == {"Reqds": 2, "Fails": 1, "Timeout": 1}
    assert list(h.drops.items()) == [((SkbDropReason.FRAG_REASM_TIMEOUT, "inet_frag_rbtree_purge"), 2)]
    assert h.idle()


def test_new_fragments_do_not_extend_the_timer() -> None:
    h = Host(ipfrag_time=5)
    a, b, c = three()
    start = h.clock.now
    h.feed([b])
    h.clock.now += 4 * SEC
    h.feed([c])
    assert h.defrag.next_expiry() == start + 5 * SEC
    h.clock.now = start + 5 * SEC
    # ip_defrag() runs the overdue timer first: the old queue is gone and the first
    # fragment starts a new one.
    assert h.feed([a]) == []
    assert h.reasm() == {"Reqds": 3, "Fails": 1, "Timeout": 1}
    assert h.defrag.inuse == 1
    assert h.defrag.expire() == []
    [first] = h.defrag.expire(h.clock.now + 5 * SEC)
    assert first.payload() == a


def test_late_expiry_keeps_the_icmp_for_expire() -> None:
    h = Host(ipfrag_time=2)
    a = three()[0]
    h.feed([a])
    h.clock.now += 3 * SEC
    h.feed([three(ident=2)[1]])
    assert h.reasm()["Timeout"] == 1
    deadline = h.clock.now - SEC
    assert h.defrag.next_expiry() == deadline  # already past: fire now
    [first] = h.defrag.expire()
    assert first.payload() == a
    assert h.defrag.next_expiry() == h.clock.now + 2 * SEC


def test_duplicate_after_completion_starts_a_queue_that_times_out() -> None:
    h = Host()
    a, b, c = three()
    assert h.feed([a, b, c, a]) == [whole()]
    assert h.defrag.inuse == 1
    [first] = h.defrag.expire(h.clock.now + 30 * SEC)
    assert first.payload() == a
    assert h.reasm() == {"Reqds": 4, "OKs": 1, "Fails": 1, "Timeout": 1}


def test_conntrack_user_sends_no_icmp_for_others() -> None:
    h = Host()
    d = h.defrag
    assert d.ip_defrag(rx(three()[0], dst=Dst(rt_type=1)), IP_DEFRAG_CONNTRACK_IN) is None
    assert d.ip_defrag(rx(three(ident=2)[0], dst=Dst(rt_type=2)), IP_DEFRAG_CONNTRACK_IN) is None
    [first] = d.expire(h.clock.now + 30 * SEC)
    assert first.payload() == three(ident=2)[0]
    assert h.reasm() == {"Reqds": 2, "Fails": 2, "Timeout": 2}


def test_high_thresh_refuses_every_fragment() -> None:
    # inet_frag_find() returns nothing above high_thresh: not even the fragments of
    # a queue that exists (the kernel did so with ipfrag_high_thresh 1).
    h = Host(ipfrag_low_thresh=0, ipfrag_high_thresh=1)
    a, b, c = three()
    assert h.feed([a, b, c]) == []
    assert h.reasm() == {"Reqds": 3, "Fails": 2}
    assert h.drops.by_reason() == {"NOT_SPECIFIED": 2}
    assert h.defrag.inuse == 1
    assert h.defrag.expire(h.clock.now + 30 * SEC)[0].payload() == a
    assert h.idle()


def test_high_thresh_zero_refuses_all() -> None:
    h = Host(ipfrag_low_thresh=0, ipfrag_high_thresh=0)
    assert h.feed(three()) == []
    assert h.reasm() == {"Reqds": 3, "Fails": 3}
    assert h.idle()


def test_flood_of_incomplete_datagrams_stays_bounded() -> None:
    h = Host(ipfrag_low_thresh=0, ipfrag_high_thresh=256 * 1024)
    d = h.defrag
    a = three()[0]
    truesize = rx(a).truesize
    accepted = 0
    peak = 0
    for ident in range(20000):
        before = d.inuse
        h.feed([frag(0, 1480, True, ident=ident & 0xFFFF, src=SRC + (ident >> 16))])
        accepted += d.inuse - before
        peak = max(peak, d.mem)
    # Each queue costs sizeof(struct ipq) and its fragment's truesize; the last one
    # let in may pass the threshold by its own size.
    per_queue = IPQ_TRUESIZE + truesize
    assert accepted == 256 * 1024 // per_queue + 1
    assert peak == accepted * per_queue <= 256 * 1024 + per_queue
    assert d.inuse == accepted
    assert h.reasm() == {"Reqds": 20000, "Fails": 20000 - accepted}
    # Refused fragments of the queued datagrams too, until the queues time out.
    assert h.feed([frag(1480, 1480, True, ident=0)]) == []
    assert h.mib.ip.get("ReasmFails") == 20000 - accepted + 1
    assert len(d.expire(h.clock.now + 30 * SEC)) == accepted
    assert h.idle()
    assert h.feed(three(ident=1)) == [whole(1)]


@pytest.mark.parametrize(("between", "fine"), [(63, True), (64, False)])
def test_max_dist(between: int, fine: bool) -> None:
    h = Host()
    a, b, c = three(ident=1000)
    others = [frag(0, 8, True, ident=2000 + i) for i in range(between)]
    got = h.feed([a, *others, b, c])
    if fine:
        assert got == [whole(1000)]
        assert h.reasm() == {"Reqds": between + 3, "OKs": 1}
    else:
        # ip_frag_too_far(): ReasmFails, the queue starts over (fragment 0 dropped as
        # FRAG_TOO_FAR) with its timer restarted, and waits for a fragment 0 again.
        assert got == []
        assert h.reasm() == {"Reqds": between + 3, "Fails": 1}
        assert list(h.drops.items()) == [((SkbDropReason.FRAG_TOO_FAR, "inet_frag_rbtree_purge"), 1)]
        assert h.feed([a]) == [whole(1000)]


def test_max_dist_counts_per_source() -> None:
    h = Host()
    a, b, c = three(ident=1000)
    others = [frag(0, 8, True, ident=2000 + i, src=SRC + 1) for i in range(100)]
    assert h.feed([a, *others, b, c]) == [whole(1000)]


def test_max_dist_zero_turns_the_check_off() -> None:
    h = Host(ipfrag_max_dist=0)
    a, b, c = three(ident=1000)
    others = [frag(0, 8, True, ident=2000 + i) for i in range(100)]
    assert h.feed([a, *others, b, c]) == [whole(1000)]


def test_locally_made_fragments_skip_max_dist() -> None:
    h = Host()
    frags = [rx(p) for p in three(ident=1000)]
    for skb in frags:
        set_ipcb(skb.cb, InetSkbParm(flags=IPSKB_FRAG_COMPLETE))
    d = h.defrag
    assert d.ip_defrag(frags[0]) is None
    for i in range(100):
        d.ip_defrag(rx(frag(0, 8, True, ident=2000 + i)))
    assert d.ip_defrag(frags[1]) is None
    out = d.ip_defrag(frags[2])
    assert out is not None and out.payload() == whole(1000)


def test_reinit_restarts_the_timer() -> None:
    h = Host(ipfrag_time=10)
    a, b, _ = three(ident=1000)
    start = h.clock.now
    h.feed([a])
    h.clock.now = start + SEC
    h.feed([frag(0, 8, True, ident=2000 + i) for i in range(64)])
    h.clock.now = start + 4 * SEC
    h.feed([b])
    assert h.mib.ip.get("ReasmFails") == 1
    assert h.defrag.next_expiry() == start + 11 * SEC
    # Past the first deadline (start + 10 s) and the other queues' (11 s), the
    # restarted queue (4 s + 10 s) waits.
    assert len(h.defrag.expire(start + 11 * SEC)) == 64
    assert h.defrag.inuse == 1
    assert h.defrag.next_expiry() == start + 14 * SEC
    assert h.defrag.expire(start + 14 * SEC) == []
    assert h.reasm() == {"Reqds": 66, "Fails": 66, "Timeout": 65}
    assert h.idle()


def test_largest_datagram() -> None:
    h = Host()
    l4 = bytes(65515)
    pieces = [frag(off, min(8192, 65515 - off), off + 8192 < 65515, l4=l4) for off in range(0, 65515, 8192)]
    [got] = h.feed(pieces)
    assert len(got) == 65535
    assert h.reasm() == {"Reqds": 8, "OKs": 1}


def test_oversized_datagram_fails() -> None:
    # ip_frag_reasm(): "Oversized IP packet"; the queued fragments are consumed.
    h = Host()
    l4 = bytes(67000)
    pieces = [frag(off, min(8960, 67000 - off), off + 8960 < 67000, l4=l4) for off in range(0, 67000, 8960)]
    assert h.feed(pieces) == []
    assert h.reasm() == {"Reqds": 8, "Fails": 1}
    assert h.drops.total() == 0
    assert h.idle()


@pytest.mark.parametrize(
    "bad",
    [frag(1480, 0, True), frag(1480, 4, True), frag(1480, 0, False)],
    ids=["zero-length", "shorter-than-8", "empty-last"],
)
def test_fragment_with_no_data_kills_the_queue(bad: bytes) -> None:
    h = Host()
    a, b, c = three()
    assert h.feed([a, bad, b, c]) == []
    assert h.reasm()["Fails"] == 1
    assert h.drops.by_reason() == {"NOT_SPECIFIED": 1}
    # The other fragments made a new queue.
    assert h.defrag.inuse == 1


def test_odd_length_non_last_fragment_is_trimmed() -> None:
    h = Host()
    a = frag(0, 1483, True)
    _, b, c = three()
    assert h.feed([a, b, c]) == [whole()]
    assert h.reasm() == {"Reqds": 3, "OKs": 1}


def test_last_fragment_contradicting_the_end() -> None:
    h = Host()
    a, b, c = three()
    assert h.feed([c, a, frag(2952, 1000, False), b]) == []
    assert h.reasm() == {"Reqds": 4, "Fails": 1}
    assert h.drops.by_reason() == {"NOT_SPECIFIED": 1}


def test_fragment_beyond_the_end() -> None:
    h = Host()
    a, b, c = three()
    assert h.feed([c, a, frag(4000, 16, True, l4=L4 + bytes(16)), b]) == []
    assert h.reasm() == {"Reqds": 4, "Fails": 1}


def test_last_fragment_before_queued_data() -> None:
    h = Host()
    a, b, _ = three()
    assert h.feed([a, b, frag(0, 1000, False)]) == []
    assert h.reasm() == {"Reqds": 3, "Fails": 1}
    assert h.idle()


def test_ecn_not_ect_with_ce_fails() -> None:
    h = Host()
    a, _, c = three()
    ce = frag(1480, 1480, True, tos=3)
    assert h.feed([a, ce, c]) == []
    assert h.reasm() == {"Reqds": 3, "Fails": 1}
    assert h.drops.total() == 0
    assert h.idle()


def test_ecn_ce_is_merged() -> None:
    h = Host()
    got = h.feed([frag(0, 1480, True, tos=2), frag(1480, 1480, True, tos=3), frag(2960, 1040, False, tos=2)])
    assert got == [whole(tos=3)]


@pytest.mark.parametrize(
    ("kinds", "result"),
    [
        ([CHECKSUM_COMPLETE] * 3, CHECKSUM_COMPLETE),
        ([CHECKSUM_UNNECESSARY] * 3, CHECKSUM_UNNECESSARY),
        ([CHECKSUM_COMPLETE, CHECKSUM_NONE, CHECKSUM_COMPLETE], CHECKSUM_NONE),
    ],
)
def test_ip_summed(kinds: list[int], result: int) -> None:
    h = Host()
    out = None
    for p, kind in zip(three(), kinds, strict=True):
        out = h.defrag.ip_defrag(rx(p, ip_summed=kind))
    assert out is not None and out.ip_summed == result
    if result == CHECKSUM_COMPLETE:
        # The ones' complement sum of everything from the IP header on (to which the
        # header adds -0), in either representation of zero.
        assert out.csum % 0xFFFF == (~rfc1071(out.payload()) & 0xFFFF) % 0xFFFF


def test_fragments_with_options() -> None:
    # The first fragment's header, options and all, is the datagram's.
    h = Host()
    opts = bytes([7, 7, 8, 10, 0, 0, 1, 0])
    later = bytes([1] * 7 + [0])
    pieces = [
        header(1464, 0x2000, options=opts) + L4[:1464],
        header(1464, 183 | 0x2000, options=later) + L4[1464:2928],
        header(1072, 366, options=later) + L4[2928:],
    ]
    [got] = h.feed(reversed(pieces))
    assert got == header(4000, options=opts) + L4
