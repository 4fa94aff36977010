"""Software segmentation of UDP GSO skbs and software checksum completion.

Mirrors net/core/dev.c skb_checksum_help, net/ipv4/af_inet.c inet_gso_segment,
net/ipv4/udp_offload.c __udp_gso_segment and net/core/skbuff.c skb_segment, and on the
receive side include/net/udp.h udp_rcv_segment and udp_post_segment_fix_csum. One
implementation serves both the NIC (validate_xmit_skb on a device that cannot segment)
and UDP (a GRO skb for a socket that did not ask for UDP_GRO).

Segments are built linear. skb_segment with NETIF_F_SG would share the original's pages
as frags instead; the bytes are the same, and truesize is computed as that layout would
charge it (the part that came from the original's linear area is the segment's head,
the rest counts as frags).
"""

from __future__ import annotations

from services.core.checksum import csum_add, csum_fold, csum_partial, csum_sub, ip_fast_csum
from services.core.skbuff import (
    CHECKSUM_COMPLETE,
    CHECKSUM_NONE,
    CHECKSUM_PARTIAL,
    CHECKSUM_UNNECESSARY,
    HEADER_UNSET,
    PACKET_LOOPBACK,
    SKB_GSO_UDP_L4,
    SKBTX_ANY_TSTAMP,
    SkBuff,
    skb_truesize,
)
from services.core.wire.ethernet import ETH_P_IP
from services.core.wire.ipv4 import CHECK, ID, IPPROTO_UDP, IPV4_HLEN_MIN, PROTOCOL, TOT_LEN
from services.core.wire.udp import CHECKSUM, CSUM_MANGLED_0, LENGTH, UDP_HLEN


class GsoError(ValueError):
    """An skb the kernel's segmentation refuses (ERR_PTR(-EINVAL) or -EPROTONOSUPPORT
    from skb_gso_segment, -EINVAL from skb_checksum_help); the caller drops it."""


def _u16(buf: bytes | bytearray, off: int) -> int:
    return (buf[off] << 8) | buf[off + 1]


def _put16(buf: bytearray, off: int, value: int) -> None:
    buf[off] = value >> 8
    buf[off + 1] = value & 0xFF


def skb_checksum_help(skb: SkBuff) -> None:
    """skb_checksum_help(): finish a CHECKSUM_PARTIAL skb in software.

    The field at csum_start + csum_offset holds the folded pseudo-header sum (what
    udp4_hwcsum leaves there), so summing from csum_start to the end and folding gives
    the final checksum. Like the kernel for every protocol, a result of 0 is stored as
    CSUM_MANGLED_0 ("csum_fold(csum) ?: CSUM_MANGLED_0").
    """
    if skb.ip_summed == CHECKSUM_COMPLETE:
        skb.ip_summed = CHECKSUM_NONE
        return
    if skb.gso_size:
        # skb_warn_bad_offload(): a GSO skb is segmented before its checksum is done.
        raise GsoError("skb_checksum_help: GSO skb")
    offset = skb.csum_start - skb.data
    headlen = skb.headlen()
    if not 0 <= offset < headlen:
        raise GsoError(f"skb_checksum_help: offset ({offset}) >= skb_headlen() ({headlen})")
    field = offset + skb.csum_offset
    if field + 2 > headlen:
        raise GsoError(f"skb_checksum_help: offset+2 ({field + 2}) > skb_headlen() ({headlen})")
    if skb.data_len:
        csum = csum_partial(skb.payload()[offset:])
    else:
        csum = csum_partial(memoryview(skb.head)[skb.csum_start : skb.tail])
    _put16(skb.head, skb.data + field, csum_fold(csum) or CSUM_MANGLED_0)
    skb.ip_summed = CHECKSUM_NONE


def skb_gso_segment(skb: SkBuff, hw_csum: bool) -> list[SkBuff]:
    """Segment an SKB_GSO_UDP_L4 IPv4 skb in software (__skb_gso_segment →
    inet_gso_segment → udp4_ufo_fragment → __udp_gso_segment → skb_segment).

    The skb's data is at the IPv4 header or at a link header before it (network_header
    then marks the IPv4 header); when mac_header is set before data, the segments start
    there too. Each segment keeps the original's layout: the headers from the first
    byte through the UDP header are copied, and data, mac_header, network_header and
    transport_header sit at the same offsets as in the original.

    The UDP check field must hold the folded pseudo-header sum for the original length,
    as udp4_hwcsum leaves it (udp_send_skb) and udp4_gro_complete does (GRO). With
    hw_csum (the device checksums IPv4, NETIF_F_IP_CSUM/HW_CSUM) and a CHECKSUM_PARTIAL
    input, each segment stays CHECKSUM_PARTIAL with its own pseudo-header sum in the
    field; otherwise every segment gets its full checksum and CHECKSUM_NONE. The input
    is not modified.
    """
    if not skb.gso_type & SKB_GSO_UDP_L4:
        # udp4_ufo_fragment(): neither SKB_GSO_UDP nor SKB_GSO_UDP_L4.
        raise GsoError(f"skb_gso_segment: gso_type {skb.gso_type:#x} is not SKB_GSO_UDP_L4")
    mss = skb.gso_size
    if not mss:
        raise GsoError("skb_gso_segment: gso_size 0 (not a GSO skb)")
    if skb.protocol != ETH_P_IP:
        # skb_mac_gso_segment(): no packet_offload for the protocol.
        raise GsoError(f"skb_gso_segment: protocol {skb.protocol:#06x} is not IPv4")
    nh = skb.data if skb.network_header == HEADER_UNSET else skb.network_header
    if skb.data > nh:
        raise GsoError("skb_gso_segment: data is past the network header")
    start = skb.data
    if skb.mac_header != HEADER_UNSET and skb.mac_header < start:
        start = skb.mac_header
    pkt = bytes(skb.head[start : skb.data]) + skb.payload() if start < skb.data else skb.payload()
    nhoff = nh - start
    # inet_gso_segment(): pskb_may_pull the header, then its options.
    if len(pkt) < nhoff + IPV4_HLEN_MIN:
        raise GsoError("skb_gso_segment: no room for the IPv4 header")
    ihl = (pkt[nhoff] & 0x0F) << 2
    if ihl < IPV4_HLEN_MIN or len(pkt) < nhoff + ihl:
        raise GsoError(f"skb_gso_segment: IPv4 header length {ihl}")
    if pkt[nhoff + PROTOCOL] != IPPROTO_UDP:
        raise GsoError(f"skb_gso_segment: IP protocol {pkt[nhoff + PROTOCOL]} has no UDP GSO")
    thoff = nhoff + ihl
    # udp4_ufo_fragment(): pskb_may_pull the UDP header.
    if len(pkt) < thoff + UDP_HLEN:
        raise GsoError("skb_gso_segment: no room for the UDP header")
    # __udp_gso_segment(): an skb that fits in one segment is -EINVAL, not passed on
    # whole; udp_send_skb never marks such a send as GSO.
    if len(pkt) - thoff <= UDP_HLEN + mss:
        raise GsoError(f"skb_gso_segment: {len(pkt) - thoff - UDP_HLEN} bytes fit in gso_size {mss}")
    if skb.csum_start != start + thoff:
        raise GsoError("skb_gso_segment: csum_start is not the UDP header")
    # __udp_gso_segment(): without CHECKSUM_PARTIAL the checksum features are dropped, so
    # skb_segment() sums each segment in software.
    partial = hw_csum and skb.ip_summed == CHECKSUM_PARTIAL

    hlen = thoff + UDP_HLEN
    headers = pkt[:hlen]
    ident = _u16(pkt, nhoff + ID)
    old_check = _u16(pkt, thoff + CHECKSUM)
    old_len = _u16(pkt, thoff + LENGTH)
    rel_data = skb.data - start
    # What of the payload came from the linear area (skb_segment's hsize per segment).
    linear_end = skb.tail - start
    total = len(pkt)
    segs: list[SkBuff] = []
    for pos in range(hlen, total, mss):
        end = min(pos + mss, total)
        seg_len = end - pos
        buf = bytearray(start + hlen + seg_len)
        buf[start : start + hlen] = headers
        buf[start + hlen :] = pkt[pos:end]
        seg = _new_segment(skb, buf, start, rel_data)
        seg.network_header = start + nhoff
        seg.transport_header = start + thoff
        # skb_segment(): a segment's head holds its headers and what lay in the
        # original's head; frags contribute their size.
        hsize = max(0, min(end, linear_end) - pos)
        seg.truesize = skb_truesize(start + hlen + hsize) + seg_len - hsize
        # __udp_gso_segment(): the length difference is patched into the pseudo-header
        # sum with csum16 arithmetic, then finished in software or left to the device.
        newlen = UDP_HLEN + seg_len
        check = csum_add(csum_sub(old_check, old_len), newlen)
        th = start + thoff
        _put16(buf, th + LENGTH, newlen)
        _put16(buf, th + CHECKSUM, check)
        if partial:
            seg.ip_summed = CHECKSUM_PARTIAL
        else:
            # gso_make_checksum(): the header (its field holding the pseudo-header sum)
            # plus the payload sum skb_segment() computed.
            full = csum_fold(csum_partial(memoryview(buf)[th:]))
            _put16(buf, th + CHECKSUM, full or CSUM_MANGLED_0)
            seg.ip_summed = CHECKSUM_NONE
        seg.csum_start = th
        seg.csum_offset = CHECKSUM
        # inet_gso_segment(): UDP_L4 has no fixed-ID variant (only TCP's gso_type has
        # SKB_GSO_TCP_FIXEDID), so every segment takes the next ID; tot_len and the
        # header checksum follow.
        ip = start + nhoff
        _put16(buf, ip + ID, (ident + len(segs)) & 0xFFFF)
        _put16(buf, ip + TOT_LEN, len(buf) - ip)
        buf[ip + CHECK] = buf[ip + CHECK + 1] = 0
        _put16(buf, ip + CHECK, ip_fast_csum(memoryview(buf)[ip : ip + ihl]))
        segs.append(seg)
    # __udp_gso_segment(): the first segment keeps the timestamp request and its key.
    first = segs[0]
    first.tskey = skb.tskey
    first.tx_flags = skb.tx_flags & SKBTX_ANY_TSTAMP
    return segs


def _new_segment(skb: SkBuff, buf: bytearray, start: int, rel_data: int) -> SkBuff:
    """A segment's sk_buff as skb_segment() makes it: __alloc_skb + skb_reserve of the
    original's headroom, __copy_skb_header(), header offsets kept."""
    seg = SkBuff(buf)
    seg.data = start + rel_data
    seg.tail = len(buf)
    seg.len = seg.tail - seg.data
    # __skb_gso_segment() resets the mac header to where segmentation starts.
    seg.mac_header = start
    # __copy_skb_header(): tstamp, dev, cb, dst, queue_mapping and the headers group.
    seg.tstamp = skb.tstamp
    seg.dev_ifindex = skb.dev_ifindex
    seg.cb[:] = skb.cb
    seg.dst = skb.dst
    seg.queue_mapping = skb.queue_mapping
    seg.protocol = skb.protocol
    seg.pkt_type = skb.pkt_type
    seg.ignore_df = skb.ignore_df
    seg.priority = skb.priority
    seg.skb_iif = skb.skb_iif
    seg.hash = skb.hash
    seg.vlan_tci = skb.vlan_tci
    seg.mark = skb.mark
    seg.cork = skb.cork
    # __udp_gso_segment(): an skb owned by a sending socket (sock_wfree) hands that
    # ownership to every segment. Receive skbs reach here without an owner.
    seg.sk = skb.sk
    # skb_shared_info of a new skb is zeroed: no hwtstamps, tx_flags or GSO fields.
    seg.trace = None if skb.trace is None else list(skb.trace)
    return seg


def udp_rcv_segment(skb: SkBuff, convert_csum: bool = False) -> list[SkBuff]:
    """udp_rcv_segment() + udp_post_segment_fix_csum(), as udp_queue_rcv_skb() calls
    them when udp_unexpected_gso() holds.

    The skb is what udp_rcv queues: data at the UDP header, network_header and
    mac_header set. Each segment returned has its data at its own UDP header and is a
    datagram of its own. The features are NETIF_F_SG plus NETIF_F_IP_CSUM unless the
    socket asked for the final checksums (inet_get_convert_csum), so GRO's
    CHECKSUM_PARTIAL segments stay partial. Raises GsoError where the kernel drops the
    skb (the caller counts gso_segs drops). The skb is consumed: as in the kernel, its
    data has been pushed back to the mac header.
    """
    # udp_queue_rcv_skb(): __skb_push(skb, -skb_mac_offset(skb)).
    start = skb.mac_header if skb.mac_header != HEADER_UNSET else skb.network_header
    if start == HEADER_UNSET or start > skb.data:
        raise GsoError("udp_rcv_segment: no header before the UDP header")
    skb.push(skb.data - start)
    if skb.pkt_type == PACKET_LOOPBACK:
        # dev_loopback_xmit() turned CHECKSUM_NONE into UNNECESSARY; PARTIAL is what
        # __udp_gso_segment needs and what the skb really is.
        skb.ip_summed = CHECKSUM_PARTIAL
    segs = skb_gso_segment(skb, hw_csum=not convert_csum)
    for seg in segs:
        seg.pull(seg.transport_header - seg.data)
        # udp_post_segment_fix_csum(): GRO validated the checksum before merging, so a
        # segment that lost CHECKSUM_PARTIAL is marked valid (skb->csum_valid; the
        # emulator's skb has no such bit and says CHECKSUM_UNNECESSARY, which
        # skb_csum_unnecessary() reads the same way).
        if seg.ip_summed == CHECKSUM_NONE:
            seg.ip_summed = CHECKSUM_UNNECESSARY
    return segs
