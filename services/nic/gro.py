"""Generic receive offload for one NAPI instance, UDP over IPv4 (net/core/gro.c,
net/ipv4/af_inet.c inet_gro_receive/inet_gro_complete, net/ipv4/udp_offload.c
udp4_gro_receive/udp_gro_receive_segment/udp4_gro_complete, include/net/gro.h).

The driver hands each frame to receive() (napi_gro_receive); what must go up now comes
back in the kernel's order, and flush() at the end of a poll (napi_gro_flush; with
HZ=250 every held skb, however young) completes what is held. Packets GRO does not
handle (not IPv4, not UDP, options, fragments, bad checksums) come back untouched as
GRO_NORMAL.

Unlike the kernel, the NIC cannot look up the destination socket: sockets live in the
UDP service. udp4_gro_receive merges a plain UDP flow only for a socket with UDP_GRO
(or with rx-udp-gro-forwarding and no socket); here every qualifying flow is merged
while the device's rx-gro feature is on, and the UDP layer splits the merged skb again
for a socket that did not ask for UDP_GRO (udp_queue_rcv_skb's udp_unexpected_gso →
udp_rcv_segment), which is the path the kernel takes for such skbs anyway.

Merged payloads are attached as skb_gro_receive() does for a driver skb whose head is a
page fragment (build_skb): into the frags of the head skb, or of the last skb on its
frag_list once MAX_SKB_FRAGS are used, where a merged skb itself joins the frag_list.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.core.checksum import (
    csum_add,
    csum_fold,
    csum_partial,
    csum_sub,
    csum_tcpudp_magic,
    ip_fast_csum,
)
from services.core.checksum import csum_tcpudp_nofold as _pseudo
from services.core.dropreason import DropStats
from services.core.skbuff import (
    CHECKSUM_COMPLETE,
    CHECKSUM_NONE,
    CHECKSUM_PARTIAL,
    CHECKSUM_UNNECESSARY,
    HEADER_UNSET,
    SKB_GSO_UDP_L4,
    SkBuff,
    skb_truesize,
)
from services.core.wire.ethernet import ETH_HLEN, ETH_P_IP
from services.core.wire.ipv4 import (
    CHECK,
    DADDR,
    FRAG_OFF,
    ID,
    IP_DF,
    IP_MF,
    IP_OFFSET,
    IPPROTO_UDP,
    IPV4_HLEN_MIN,
    PROTOCOL,
    SADDR,
    TOS,
    TOT_LEN,
    TTL,
)
from services.core.wire.udp import CHECKSUM, DST_PORT, LENGTH, SRC_PORT, UDP_HLEN

# net/core/gro.c and include/net/gro.h
GRO_HASH_BUCKETS = 8
MAX_GRO_SKBS = 8
# include/linux/netdevice.h: GRO_LEGACY_MAX_SIZE, the default gro_ipv4_max_size; above
# it only TCP may grow (BIG TCP).
GRO_LEGACY_MAX_SIZE = 65536
# net/ipv4/udp_offload.c
UDP_GRO_CNT_MAX = 64
# CONFIG_MAX_SKB_FRAGS default.
MAX_SKB_FRAGS = 17
# SKB_DATA_ALIGN(sizeof(struct sk_buff)) on x86_64: what freeing the sk_buff of a
# merged skb whose head became a frag gives back (NAPI_GRO_FREE_STOLEN_HEAD).
SKB_STRUCT_TRUESIZE = 256


@dataclass(eq=False, slots=True)
class _Held:
    """A skb on a gro_hash list and the part of its NAPI_GRO_CB that outlives one
    receive: segment count, where the next payload goes, the fixed-ID decision, and
    gro_list_prepare's same_flow for the skb being received."""

    skb: SkBuff
    count: int
    last: SkBuff
    ip_fixedid: bool = False
    same_flow: bool = False


@dataclass(slots=True)
class _Cb:
    """NAPI_GRO_CB of the skb being received."""

    offset: int = 0
    flush: bool = False
    count: int = 1
    same_flow: bool = False
    csum_cnt: int = 0
    csum_valid: bool = False
    csum: int = 0


class Gro:
    """struct gro_node of one NAPI instance: gro_hash[GRO_HASH_BUCKETS], each list
    youngest first, at most MAX_GRO_SKBS skbs each."""

    def __init__(self, drops: DropStats) -> None:
        # The NIC's drop tally. Nothing on the UDP/IPv4 path drops: a merged skb is
        # consumed (GRO_MERGED_FREE), and gro_complete()'s kfree_skb is for a protocol
        # without a gro_complete callback, which UDP has.
        self.drops = drops
        self._hash: list[list[_Held]] = [[] for _ in range(GRO_HASH_BUCKETS)]
        # netif_get_gro_max_size(): dev->gro_ipv4_max_size (ip link ... gro_ipv4_max_size).
        self.gro_max_size = GRO_LEGACY_MAX_SIZE
        # ethtool -S style counters: segments merged into a held skb (rx_gro_merged),
        # and skbs completed carrying more than one segment (rx_gro_packets).
        self.merged = 0
        self.flushed = 0

    @property
    def held(self) -> int:
        """How many skbs are held (napi->gro.bitmask is nonzero while any are)."""
        return sum(len(b) for b in self._hash)

    # dev_gro_receive() and napi_gro_flush().

    def receive(self, skb: SkBuff) -> list[SkBuff]:
        """napi_gro_receive() → dev_gro_receive(): the skb is merged into a held one,
        held itself, or passed on (GRO_NORMAL). Returns what goes up now, in order: a
        held skb this one completed, then the oldest flushed to make room, or this skb
        itself when it is not held."""
        out: list[SkBuff] = []
        bucket = self._hash[skb.hash & (GRO_HASH_BUCKETS - 1)]
        self._gro_list_prepare(bucket, skb)
        if skb.protocol != ETH_P_IP:
            # No packet_offload for the type: GRO_NORMAL.
            out.append(skb)
            return out
        skb.network_header = skb.data
        cb = _Cb(flush=bool(skb.frag_list))
        if skb.gso_size:
            # Only TCP GSO skbs may be merged further.
            cb.count = skb.gso_segs
            cb.flush = True
        if skb.ip_summed == CHECKSUM_COMPLETE:
            cb.csum, cb.csum_valid = skb.csum, True
        elif skb.ip_summed == CHECKSUM_UNNECESSARY:
            cb.csum_cnt = 1  # csum_level + 1; the emulator's skbs carry level 0
        pp = self._inet_gro_receive(bucket, skb, cb)
        if pp is not None:
            bucket.remove(pp)
            out.append(self._gro_complete(pp))
        if cb.same_flow:
            return out
        if cb.flush:
            out.append(skb)
            return out
        if len(bucket) >= MAX_GRO_SKBS:
            # gro_flush_oldest(): the tail of the list.
            out.append(self._gro_complete(bucket.pop()))
        if not skb.gso_size:
            skb.gso_size = skb.len - cb.offset
        bucket.insert(0, _Held(skb, cb.count, skb))
        return out

    def flush(self) -> list[SkBuff]:
        """napi_gro_flush(napi, false) → __gro_flush(): every bucket in bitmask order,
        each list from its oldest skb, completed and passed up."""
        out: list[SkBuff] = []
        for bucket in self._hash:
            while bucket:
                out.append(self._gro_complete(bucket.pop()))
        return out

    @staticmethod
    def _gro_list_prepare(bucket: list[_Held], skb: SkBuff) -> None:
        """gro_list_prepare(): a held skb may be of the same flow only if it came from
        the same device with the same hash, VLAN and Ethernet header."""
        mac = _mac_header(skb)
        for h in bucket:
            p = h.skb
            h.same_flow = (
                p.hash == skb.hash
                and p.dev_ifindex == skb.dev_ifindex
                and p.vlan_tci == skb.vlan_tci
                and _mac_header(p) == mac
            )

    # IPv4.

    def _inet_gro_receive(self, bucket: list[_Held], skb: SkBuff, cb: _Cb) -> _Held | None:
        """inet_gro_receive(). Any check that fails here leaves the flush flag set and
        the held skbs alone."""
        if skb.len < IPV4_HLEN_MIN:
            cb.flush = True
            return None
        iph = _header(skb, IPV4_HLEN_MIN)
        if iph[PROTOCOL] != IPPROTO_UDP or iph[0] != 0x45:
            # Only UDP has an offload here; options (ihl != 5) are never merged.
            cb.flush = True
            return None
        frag_off = (iph[FRAG_OFF] << 8) | iph[FRAG_OFF + 1]
        if frag_off & (IP_MF | IP_OFFSET) or ip_fast_csum(iph):
            # ip_is_fragment(), or a bad header checksum: ip_rcv counts that one.
            cb.flush = True
            return None
        # A tot_len other than the skb's length (Ethernet padding) or any flag but DF
        # (the reserved bit) flushes, after the held skb of the flow is found.
        tot_len = (iph[TOT_LEN] << 8) | iph[TOT_LEN + 1]
        flush = bool(((tot_len ^ skb.len) | (frag_off & ~IP_DF)) & 0xFFFF)
        for h in bucket:
            if not h.same_flow:
                continue
            iph2 = _header(h.skb, IPV4_HLEN_MIN)
            if iph[PROTOCOL] != iph2[PROTOCOL] or iph[SADDR : DADDR + 4] != iph2[SADDR : DADDR + 4]:
                h.same_flow = False
        cb.flush |= flush
        cb.offset = IPV4_HLEN_MIN
        skb.transport_header = skb.data + IPV4_HLEN_MIN
        return self._udp4_gro_receive(bucket, skb, cb, iph)

    # UDP.

    def _udp4_gro_receive(self, bucket: list[_Held], skb: SkBuff, cb: _Cb, iph: bytes) -> _Held | None:
        """udp4_gro_receive(): validate the checksum (unless flushing anyway), then
        udp_gro_receive() → udp_gro_receive_segment() as for a socket with UDP_GRO."""
        if skb.len < IPV4_HLEN_MIN + UDP_HLEN:
            cb.flush = True
            return None
        uh = _header(skb, IPV4_HLEN_MIN + UDP_HLEN)[IPV4_HLEN_MIN:]
        check = (uh[CHECKSUM] << 8) | uh[CHECKSUM + 1]
        # Not validated when flushing anyway; a bad sum is passed up unmerged for
        # udp_rcv to count in InCsumErrors.
        if not cb.flush and not self._checksum_validate(skb, cb, iph, check):
            cb.flush = True
            return None
        return self._udp_gro_receive_segment(bucket, skb, cb, iph, uh, check)

    @staticmethod
    def _checksum_validate(skb: SkBuff, cb: _Cb, iph: bytes, check: int) -> bool:
        """skb_gro_checksum_validate_zero_check() with inet_gro_compute_pseudo."""
        needed = (
            (skb.ip_summed != CHECKSUM_PARTIAL or skb.csum_start - skb.data < cb.offset)
            and cb.csum_cnt == 0
            and check != 0
        )
        if needed:
            saddr = int.from_bytes(iph[SADDR : SADDR + 4], "big")
            daddr = int.from_bytes(iph[DADDR : DADDR + 4], "big")
            psum = _pseudo(saddr, daddr, skb.len - cb.offset, IPPROTO_UDP)
            if not (cb.csum_valid and csum_fold(csum_add(psum, cb.csum)) == 0):
                # __skb_gro_checksum_complete(): sum what follows the IP header.
                wsum = csum_partial(_bytes_from(skb, cb.offset))
                cb.csum, cb.csum_valid = wsum, True
                if csum_fold(csum_add(psum, wsum)):
                    return False
        # skb_gro_incr_csum_unnecessary(), reached whenever validation did not fail,
        # including the zero checksum it did not need to look at.
        if cb.csum_cnt > 0:
            cb.csum_cnt -= 1
        elif skb.ip_summed == CHECKSUM_NONE:
            skb.ip_summed = CHECKSUM_UNNECESSARY
        return True

    def _udp_gro_receive_segment(
        self, bucket: list[_Held], skb: SkBuff, cb: _Cb, iph: bytes, uh: bytes, check: int
    ) -> _Held | None:
        """udp_gro_receive_segment(): returns the held skb to complete now, if any."""
        if not check:
            # "requires non zero csum, for symmetry with GSO".
            cb.flush = True
            return None
        ulen = (uh[LENGTH] << 8) | uh[LENGTH + 1]
        if ulen <= UDP_HLEN or ulen != skb.len - cb.offset:
            # "Do not deal with padded or malicious packets".
            cb.flush = True
            return None
        cb.offset += UDP_HLEN
        for h in bucket:
            if not h.same_flow:
                continue
            uh2 = _header(h.skb, IPV4_HLEN_MIN + UDP_HLEN)[IPV4_HLEN_MIN:]
            if uh[SRC_PORT : DST_PORT + 2] != uh2[SRC_PORT : DST_PORT + 2]:
                h.same_flow = False
                continue
            ulen2 = (uh2[LENGTH] << 8) | uh2[LENGTH + 1]
            flush = _inet_gro_flush(iph, _header(h.skb, IPV4_HLEN_MIN), h)
            # A bigger datagram, or one the IP header refuses, ends the held skb; one
            # shorter than the first is merged as the flow's last segment.
            ok = True
            if ulen > ulen2 or flush:
                pp: _Held | None = h
            else:
                pp = None
                ok = self._skb_gro_receive(h, skb, cb)
            if not ok or ulen != ulen2 or h.count >= UDP_GRO_CNT_MAX:
                pp = h
            return pp
        return None

    def _skb_gro_receive(self, h: _Held, skb: SkBuff, cb: _Cb) -> bool:
        """skb_gro_receive(): append the payload to the held skb; False is -E2BIG."""
        p = h.skb
        length = skb.len - cb.offset
        # gro_max_size, and GRO_LEGACY_MAX_SIZE for all but TCP: the merged IP packet
        # must stay below 64 KiB.
        if p.len + length >= min(self.gro_max_size, GRO_LEGACY_MAX_SIZE) or cb.flush:
            return False
        lp = h.last
        headlen = skb.headlen()
        offset = cb.offset
        if headlen <= offset and len(lp.frags) + len(skb.frags) <= MAX_SKB_FRAGS:
            # The payload is all in frags: they move over, the head is freed.
            lp.frags.extend(_frags_from(skb.frags, offset - headlen))
            delta_truesize = skb.truesize - skb_truesize(skb.end)
        elif headlen > offset and len(lp.frags) + 1 + len(skb.frags) <= MAX_SKB_FRAGS:
            # head_frag: the head page becomes a frag, only the sk_buff is freed.
            lp.frags.append(bytes(skb.head[skb.data + offset : skb.tail]))
            lp.frags.extend(skb.frags)
            delta_truesize = skb.truesize - SKB_STRUCT_TRUESIZE
        else:
            # merge: the skb itself, pulled to its payload, joins the frag_list.
            skb.sk = 0
            delta_truesize = skb.truesize
            if offset > headlen:
                skb.frags = _frags_from(skb.frags, offset - headlen)
                skb.data_len -= offset - headlen
                skb.len -= offset - headlen
                offset = headlen
            skb.pull(offset)
            p.frag_list.append(skb)
            h.last = skb
            lp = p
        if lp is not p:
            lp.len += length
            lp.data_len += length
            lp.truesize += delta_truesize
        h.count += cb.count
        p.len += length
        p.data_len += length
        p.truesize += delta_truesize
        cb.same_flow = True
        self.merged += cb.count
        return True

    # Completion.

    def _gro_complete(self, h: _Held) -> SkBuff:
        """gro_complete() → inet_gro_complete() → udp4_gro_complete() →
        udp_gro_complete_segment()."""
        skb = h.skb
        if h.count == 1:
            skb.gso_size = 0
            return skb
        b = skb.head
        ip = skb.data
        old = (b[ip + TOT_LEN] << 8) | b[ip + TOT_LEN + 1]
        new = skb.len
        b[ip + TOT_LEN] = new >> 8
        b[ip + TOT_LEN + 1] = new & 0xFF
        # csum_replace2(): patch the header checksum for the new tot_len (RFC 1624).
        ipcheck = (b[ip + CHECK] << 8) | b[ip + CHECK + 1]
        ipcheck = ~csum_add(csum_sub(~ipcheck & 0xFFFF, old), new) & 0xFFFF
        b[ip + CHECK] = ipcheck >> 8
        b[ip + CHECK + 1] = ipcheck & 0xFF
        th = ip + IPV4_HLEN_MIN
        ulen = skb.len - IPV4_HLEN_MIN
        if b[th + CHECKSUM] or b[th + CHECKSUM + 1]:
            # The pseudo-header sum for the merged length: the skb leaves as
            # CHECKSUM_PARTIAL, like a GSO skb about to be sent.
            saddr = int.from_bytes(b[ip + SADDR : ip + SADDR + 4], "big")
            daddr = int.from_bytes(b[ip + DADDR : ip + DADDR + 4], "big")
            partial = ~csum_tcpudp_magic(saddr, daddr, ulen, IPPROTO_UDP, 0) & 0xFFFF
            b[th + CHECKSUM] = partial >> 8
            b[th + CHECKSUM + 1] = partial & 0xFF
        b[th + LENGTH] = ulen >> 8
        b[th + LENGTH + 1] = ulen & 0xFF
        skb.transport_header = th
        skb.csum_start = th
        skb.csum_offset = CHECKSUM
        skb.ip_summed = CHECKSUM_PARTIAL
        skb.gso_segs = h.count
        skb.gso_type |= SKB_GSO_UDP_L4
        self.flushed += 1
        return skb


def _inet_gro_flush(iph: bytes, iph2: bytes, h: _Held) -> bool:
    """inet_gro_flush() of 6.18 for the skb's header `iph` against the held `iph2`:
    TTL, TOS and DF must match; the IP ID must advance by one per segment, unless the
    second segment repeated the first one's ID, which makes the flow fixed-ID (with or
    without DF) and every later ID must repeat it too."""
    if iph[TTL] != iph2[TTL] or iph[TOS] != iph2[TOS] or (iph[FRAG_OFF] ^ iph2[FRAG_OFF]) & (IP_DF >> 8):
        return True
    ipid_offset = (((iph[ID] << 8) | iph[ID + 1]) - ((iph2[ID] << 8) | iph2[ID + 1])) & 0xFFFF
    if h.count == 1 and not ipid_offset:
        h.ip_fixedid = True
    return bool(ipid_offset ^ (0 if h.ip_fixedid else h.count))


def _header(skb: SkBuff, n: int) -> bytes:
    """skb_gro_header(): the first n bytes from data, pulled from frags if need be."""
    if skb.headlen() >= n:
        return bytes(skb.head[skb.data : skb.data + n])
    return skb.payload()[:n]


def _bytes_from(skb: SkBuff, offset: int) -> bytes:
    if not skb.data_len:
        return bytes(skb.head[skb.data + offset : skb.tail])
    return skb.payload()[offset:]


def _frags_from(frags: list[bytes], eat: int) -> list[bytes]:
    """skb_frag_off_add() on the first frag: drop `eat` bytes from the front."""
    if not eat:
        return list(frags)
    return [frags[0][eat:], *frags[1:]]


def _mac_header(skb: SkBuff) -> bytes:
    """compare_ether_header()'s 14 bytes (hard_header_len of Ethernet and of lo)."""
    if skb.mac_header == HEADER_UNSET:
        return b""
    return bytes(skb.head[skb.mac_header : skb.mac_header + ETH_HLEN])
