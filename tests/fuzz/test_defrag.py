"""Hostile fragments into IPv4 reassembly (services/ip/defrag.py, ip_defrag() of
net/ipv4/ip_fragment.c): teardrop overlaps, tiny fragments, random offsets, MF bits and
lengths, duplicates, several datagrams interleaved, and floods of incomplete datagrams
above net.ipv4.ipfrag_high_thresh, with tests/services/test_ip_defrag.py's Host.

Properties: nothing raises; fragment memory (frag_mem_limit) stays within
ipfrag_high_thresh plus the one fragment inet_frag_find() may let in past it (its check
comes before the charge), and goes back to exactly 0 once the queues time out; a
fragment that is queued is charged exactly its truesize (and sizeof(struct ipq) for a
new queue); every fragment is counted in ReasmReqds; a duplicate is a DUP_FRAG drop
alone, any other refusal one ReasmFails (ReasmOverlaps being part of them) and at most
one drop; a reassembled datagram is exactly the bytes its fragments carried, with a
header ip_frag_reasm() would write; and afterwards a valid datagram reassembles
exactly."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import event, given
from hypothesis import strategies as st

from services.core.checksum import ip_fast_csum
from services.core.dropreason import SkbDropReason
from services.core.skbuff import CHECKSUM_NONE, CHECKSUM_UNNECESSARY, SkBuff
from services.ip.defrag import IPQ_TRUESIZE
from tests.fuzz import fuzz_settings
from tests.services.test_ip_defrag import SEC, SRC, Host, frag, header, rx, three, whole

# Each datagram's transport bytes: fragments of ident i carry slices of DATA[i], so any
# datagram reassembled from them must be a prefix of it.
IDENTS = (1, 2, 3)
DATA = {i: bytes((i * 31 + k * 7) & 0xFF for k in range(9000)) for i in IDENTS}


@dataclass(frozen=True)
class Piece:
    ident: int
    offset: int
    length: int
    mf: bool
    # Bytes unlike the datagram's own (a teardrop with different data at an offset).
    garbage: bool = False
    tos: int = 0
    summed: int = CHECKSUM_NONE

    def packet(self) -> bytes:
        if self.garbage:
            payload = bytes([0xEE]) * self.length
            return (
                header(len(payload), self.offset >> 3 | (0x2000 if self.mf else 0), ident=self.ident)
                + payload
            )
        return frag(self.offset, self.length, self.mf, l4=DATA[self.ident], ident=self.ident, tos=self.tos)


pieces = st.builds(
    Piece,
    ident=st.sampled_from(IDENTS),
    # Offsets in 8-byte units; small ones so fragments meet, overlap and repeat.
    offset=st.one_of(st.integers(0, 24), st.integers(0, 1000)).map(lambda u: u * 8),
    length=st.one_of(st.integers(0, 24), st.integers(0, 1480), st.sampled_from([1, 7, 8, 9, 16])),
    mf=st.booleans(),
    garbage=st.sampled_from([False, False, False, True]),
    tos=st.sampled_from([0, 0, 1, 2, 3]),
    summed=st.sampled_from([CHECKSUM_NONE, CHECKSUM_UNNECESSARY]),
)


def check_reassembled(out: SkBuff, garbage_seen: bool) -> None:
    """What ip_frag_reasm() hands on: a linear skb whose header says its length, has no
    fragment bits left (DF at most) and a valid checksum, and whose payload is what the
    fragments carried."""
    data = out.payload()
    ihl = (data[0] & 0x0F) * 4
    assert out.len == len(data) == int.from_bytes(data[2:4], "big")
    assert int.from_bytes(data[6:8], "big") in (0, 0x4000)
    assert ip_fast_csum(data[:ihl]) == 0
    ident = int.from_bytes(data[4:6], "big")
    if not garbage_seen:
        assert data[ihl:] == DATA[ident][: len(data) - ihl]


@fuzz_settings(400)
@given(st.lists(pieces, max_size=30), st.sampled_from([0, 1, 4096, 16 * 1024, 4 * 1024 * 1024]))
def test_random_fragments(seq: list[Piece], high_thresh: int) -> None:
    h = Host(ipfrag_low_thresh=0, ipfrag_high_thresh=high_thresh)
    d = h.defrag
    garbage = {i: False for i in IDENTS}
    done = dups = biggest = 0
    for p in seq:
        garbage[p.ident] |= p.garbage
        skb = rx(p.packet(), ip_summed=p.summed)
        biggest = max(biggest, skb.truesize)
        fails, drops, mem, inuse = h.mib.ip.get("ReasmFails"), h.drops.total(), d.mem, d.inuse
        out = d.ip_defrag(skb)
        fails, drops = h.mib.ip.get("ReasmFails") - fails, h.drops.total() - drops
        assert fails <= 1 and drops <= 1
        if out is not None:
            done += 1
            check_reassembled(out, garbage[p.ident])
            garbage[p.ident] = False
        elif not fails and not drops:
            # Queued: charged its truesize, and sizeof(struct ipq) if it made a queue.
            assert d.mem - mem == skb.truesize + IPQ_TRUESIZE * (d.inuse - inuse)
        elif drops:
            # Refused alone as a duplicate, or the culprit of a failure (not found
            # above high_thresh, an overlap, a bad end: ReasmFails).
            assert (h.drops.get(SkbDropReason.DUP_FRAG) > dups) != bool(fails)
        dups = h.drops.get(SkbDropReason.DUP_FRAG)
        assert d.mem <= high_thresh + IPQ_TRUESIZE + biggest
        assert d.mem >= IPQ_TRUESIZE * d.inuse
    mib = h.mib
    assert mib.ip.get("ReasmReqds") == len(seq)
    assert mib.ip.get("ReasmOKs") == done
    assert mib.ipext.get("ReasmOverlaps") <= mib.ip.get("ReasmFails")
    assert h.drops.get(SkbDropReason.NOT_SPECIFIED, "ip_defrag") <= mib.ip.get("ReasmFails")
    d.expire(h.clock.now + 31 * SEC)
    assert (d.inuse, d.mem) == (0, 0)
    h.sysctl.set("net.ipv4.ipfrag_high_thresh", 4 * 1024 * 1024)
    assert h.feed(three(ident=7)) == [whole(7)]


@fuzz_settings(60)
@given(
    st.integers(1, 150),
    st.integers(1, 32).map(lambda k: k * 1024),
    st.lists(st.tuples(st.integers(0, 180), st.integers(8, 1480)), min_size=1, max_size=4),
)
def test_flood_above_high_thresh(datagrams: int, high_thresh: int, shape: list[tuple[int, int]]) -> None:
    """Incomplete datagrams from 16 sources until memory is full: refused fragments
    are ReasmFails and NOT_SPECIFIED drops at ip_defrag, memory never passes the bound,
    queues that time out give it all back, and reassembly works again."""
    h = Host(ipfrag_low_thresh=0, ipfrag_high_thresh=high_thresh)
    d = h.defrag
    biggest = 0
    for n in range(datagrams):
        for off_units, length in shape:
            # Every fragment but a last one: never complete.
            skb = rx(frag(off_units * 8, length, True, ident=n, src=SRC + 1 + n % 16))
            biggest = max(biggest, skb.truesize)
            assert d.ip_defrag(skb) is None
            assert d.mem <= high_thresh + IPQ_TRUESIZE + biggest
    # Each refusal (above high_thresh, or an overlap within the shape) is one
    # ReasmFails and the culprit's drop; a repeated fragment is a duplicate's drop.
    assert h.mib.ip.get("ReasmFails") == h.drops.get(SkbDropReason.NOT_SPECIFIED, "ip_defrag")
    assert d.mem > high_thresh or h.mib.ip.get("ReasmFails") == h.mib.ipext.get("ReasmOverlaps")
    event("flood refused" if d.mem > high_thresh else "flood fits")
    assert h.mib.ip.get("ReasmReqds") == datagrams * len(shape)
    d.expire(h.clock.now + 31 * SEC)
    assert (d.inuse, d.mem) == (0, 0)
    h.sysctl.set("net.ipv4.ipfrag_high_thresh", 4 * 1024 * 1024)
    assert h.feed(three(ident=9)) == [whole(9)]
