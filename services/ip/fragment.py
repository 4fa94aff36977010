"""IPv4 fragmentation on output: ip_fragment() and ip_do_fragment() of
net/ipv4/ip_output.c.

`ip_fragment` takes a whole datagram and returns its fragments; it knows nothing of
the device or the neighbour, the caller hands each fragment to ip_finish_output2.

The kernel has two ways to cut a datagram with identical bytes on the wire. A local
send arrives with a frag_list that __ip_append_data already cut at the fragment
boundaries (the fast path): the original skb becomes the first fragment and keeps all
it carried (the TX timestamp request and its key, the control block); the others are
the frag_list's skbs. Anything else (a forwarded datagram, a linear one) is copied
into new skbs (the slow path, ip_frag_next), which carry only what ip_copy_metadata()
copies. The emulator's datagrams are linear; one owned by a socket (skb.sk) is
treated as the fast path would treat it, one without an owner as the slow path does.
"""

from __future__ import annotations

from services.core.dropreason import DropStats, SkbDropReason
from services.core.gso import GsoError, skb_checksum_help
from services.core.ipcb import IPSKB_FRAG_COMPLETE, IPSKB_FRAG_PMTU, InetSkbParm, IpOptions, ipcb, set_ipcb
from services.core.skbuff import CHECKSUM_NONE, CHECKSUM_PARTIAL, HEADER_UNSET, SkBuff, skb_truesize
from services.core.snmp import SnmpMib
from services.core.wire.ipv4 import IP_DF, IP_MF, IP_OFFSET, IPV4_HLEN_MIN, Ipv4Packet
from services.ip.options import ip_options_fragment

# LL_RESERVED_SPACE(dev) for Ethernet and loopback (hard_header_len 14, no
# needed_headroom): ((14 + 0) & ~(HH_DATA_MOD - 1)) + HH_DATA_MOD with HH_DATA_MOD 16.
LL_RESERVED_SPACE = 16


class FragNeeded(Exception):
    """ip_fragment() refused a DF datagram larger than the MTU. The kernel has counted
    FragFails and freed the skb; the caller sends ICMP_DEST_UNREACH /
    ICMP_FRAG_NEEDED with `mtu` as the next-hop MTU (icmp_send's info)."""

    def __init__(self, mtu: int) -> None:
        super().__init__(f"fragmentation needed and DF set (mtu {mtu})")
        self.mtu = mtu


def ip_fragment(skb: SkBuff, mtu: int, mib: SnmpMib, drops: DropStats) -> list[SkBuff]:
    """ip_fragment(): cut the datagram at skb.data (IP header there, checksum final)
    into fragments of at most `mtu` bytes, in order.

    A DF datagram is refused unless skb.ignore_df is set and the reassembled size it
    came from (IPCB frag_max_size) fits: FragFails, the skb is dropped (kfree_skb, so
    NOT_SPECIFIED) and FragNeeded(mtu) raised with the skb otherwise untouched, for the
    caller's icmp_send. On success the skb is consumed (the caller drops its
    reference), FragCreates counts each fragment and FragOKs the datagram.
    """
    pkt = Ipv4Packet(skb.linear())
    if pkt.frag_off & IP_DF:
        parm = ipcb(skb.cb)
        if not skb.ignore_df or (parm.frag_max_size and parm.frag_max_size > mtu):
            mib.ip.inc("FragFails")
            drops.drop(SkbDropReason.NOT_SPECIFIED, "ip_fragment")
            raise FragNeeded(mtu)
    return ip_do_fragment(skb, mtu, mib, drops)


def ip_do_fragment(skb: SkBuff, mtu: int, mib: SnmpMib, drops: DropStats) -> list[SkBuff]:
    """ip_do_fragment(): the datagram's payload in pieces of (mtu - hlen) & ~7 bytes
    (the last one takes the rest), each behind a copy of the header with tot_len,
    frag_off and the checksum rewritten.

    Offsets continue from the datagram's own and MF stays on the last piece of a
    fragment that was not the last (ip_frag_next: fragmenting a fragment). DF is set
    on the pieces only for IPSKB_FRAG_PMTU (a reassembled datagram whose largest
    fragment had DF). Options stay whole in the first fragment; ip_options_fragment()
    then turns the non-copied ones into NOOPs once, and every later fragment carries
    that header, of the same length.
    """
    if skb.ip_summed == CHECKSUM_PARTIAL:
        # "for offloaded checksums cleanup checksum before fragmentation"
        try:
            skb_checksum_help(skb)
        except GsoError:
            mib.ip.inc("FragFails")
            drops.drop(SkbDropReason.NOT_SPECIFIED, "ip_do_fragment")
            return []
    data = skb.payload()
    hlen = (data[0] & 0x0F) << 2
    if hlen < IPV4_HLEN_MIN or len(data) < hlen:
        raise ValueError(f"ip_fragment: IPv4 header length {hlen} in a {len(data)}-byte skb")
    parm = ipcb(skb.cb)
    if parm.frag_max_size and parm.frag_max_size < mtu:
        mtu = parm.frag_max_size
    room = mtu - hlen
    if room < 8 and len(data) - hlen > room:
        # Unreachable in the kernel: no device MTU is below IPV4_MIN_MTU (68).
        raise ValueError(f"ip_fragment: MTU {mtu} leaves no room after a {hlen}-byte header")
    # IPCB(skb)->flags |= IPSKB_FRAG_COMPLETE, and ip_frag_ipcb() copies the flags to
    # every fragment: looped back to this host, they skip ip_frag_too_far().
    parm.flags |= IPSKB_FRAG_COMPLETE
    dont_frag = IP_DF if parm.flags & IPSKB_FRAG_PMTU else 0
    # ip_frag_init()
    frag_off = Ipv4Packet(data).frag_off
    offset = (frag_off & IP_OFFSET) << 3
    not_last_frag = frag_off & IP_MF
    header = bytearray(data[:hlen])
    ptr, left = hlen, len(data) - hlen
    fast = skb.sk != 0
    frags: list[SkBuff] = []
    while left > 0:
        first_frag = offset == 0
        # ip_frag_next(): what fits, cut to a multiple of 8 unless it reaches the end.
        n = min(left, room)
        if n < left:
            n &= ~7
        keeps_all = fast and not frags
        frag = _new_fragment(skb, hlen, n, keeps_all)
        set_ipcb(frag.cb, parm if keeps_all else InetSkbParm(flags=parm.flags))
        nh = frag.network_header
        frag.head[nh : nh + hlen] = header
        frag.head[nh + hlen : nh + hlen + n] = data[ptr : ptr + n]
        left -= n
        value = (offset >> 3) | dont_frag
        # "If we are fragmenting a fragment that's not the last fragment then keep
        # MF on each bit"
        if left > 0 or not_last_frag:
            value |= IP_MF
        iph = Ipv4Packet(memoryview(frag.head)[nh : nh + hlen])
        iph.set_frag_off(value)
        iph.set_total_len(n + hlen)
        iph.fill_checksum()
        ptr += n
        offset += n
        if first_frag and hlen > IPV4_HLEN_MIN:
            # ip_frag_ipcb(): "Upgrade options only if the segment to be fragmented
            # was THE FIRST (otherwise, options are already fixed) and make it ONCE",
            # on the header the following fragments copy.
            ip_options_fragment(header, IpOptions(optlen=hlen - IPV4_HLEN_MIN))
        frags.append(frag)
        mib.ip.inc("FragCreates")
    mib.ip.inc("FragOKs")
    return frags


def _new_fragment(skb: SkBuff, hlen: int, n: int, keeps_all: bool) -> SkBuff:
    """A fragment's sk_buff: alloc_skb(len + hlen + ll_rs), skb_reserve(ll_rs), the
    network and transport headers set (ip_frag_next).

    Every fragment gets what ip_copy_metadata() copies (pkt_type, priority, protocol,
    skb_iif, dst, dev, mark, hash), the delivery time (skb_set_delivery_time) and the
    owning socket (skb_set_owner_w). With keeps_all the fragment is the fast path's
    first one, the original skb itself: it also keeps the TX timestamp request, its
    key, the control block, the rest of the header fields and the socket's charge
    (wmem); the others owe the socket nothing.
    """
    size = LL_RESERVED_SPACE + hlen + n
    if keeps_all:
        frag = skb.clone()
        # The original skb itself: it keeps its socket's charge (sock_wfree), so the
        # fragments release exactly what the datagram was charged, once.
        frag.wmem, skb.wmem = skb.wmem, 0
        frag.head = bytearray(size)
        frag.frags = []
        frag.frag_list = []
        frag.data_len = 0
        frag.truesize = skb_truesize(size)
    else:
        frag = SkBuff(bytearray(size))
        frag.pkt_type = skb.pkt_type
        frag.priority = skb.priority
        frag.protocol = skb.protocol
        frag.skb_iif = skb.skb_iif
        frag.dst = skb.dst
        frag.dev_ifindex = skb.dev_ifindex
        frag.mark = skb.mark
        frag.hash = skb.hash
        frag.sk = skb.sk
        frag.tstamp = skb.tstamp
        frag.trace = None if skb.trace is None else list(skb.trace)
    frag.data = frag.network_header = LL_RESERVED_SPACE
    frag.mac_header = HEADER_UNSET
    frag.tail = size
    frag.len = hlen + n
    frag.transport_header = LL_RESERVED_SPACE + hlen
    if not keeps_all:
        frag.ip_summed = CHECKSUM_NONE
    return frag
