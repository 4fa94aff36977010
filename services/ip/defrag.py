"""IPv4 reassembly: ip_defrag() of net/ipv4/ip_fragment.c over the queue machinery of
net/ipv4/inet_fragment.c, as Linux 6.18 has them.

A queue per (saddr, daddr, id, protocol, user, vif) (struct frag_v4_compare_key)
holds its fragments as the kernel's rb-tree does: sorted "runs" of fragments that
arrived one right after the other at the end (inet_frag_queue_insert). Whether a
fragment that falls inside what is queued is a duplicate (dropped alone) or an overlap
(the whole queue dies) depends on those runs, so on arrival order: a fragment that
spans two adjacent fragments is a duplicate if they arrived in order (one run) and an
overlap if not (two runs). The kernel on this machine agrees
(tests/e2e/test_frag_kernel.py).

The queue timer (ip_expire) starts when the queue is made and new fragments do not
move it; only ip_frag_reinit() restarts it. The emulator has no timer of its own: the
caller calls expire() when next_expiry() comes, and ip_defrag() first expires what is
overdue so a late caller changes nothing but when the ICMP goes out.

Memory is the kernel's frag_mem_limit: sizeof(struct ipq) per queue plus the truesize
of every queued fragment. Above net.ipv4.ipfrag_high_thresh inet_frag_find() finds
nothing, so every fragment, of a new datagram or of one already queued, is refused
until queues time out or complete. Since 4.17 nothing evicts queues down to
ipfrag_low_thresh (it only bounds high_thresh).

Drops follow kfree_skb_reason(), located where the tracepoint puts them
(ip_frag_queue is inlined into ip_defrag). The fragments of a queue killed by an
overlap, a bad end, an ECN mix or an oversized result are freed by
inet_frag_destroy() as SKB_CONSUMED, not as drops: they appear in no drop count, as in
the kernel; only the fragment that killed the queue is a drop.
"""

from __future__ import annotations

import heapq
import time
from bisect import bisect_right
from collections.abc import Callable
from typing import Final

from services.core.checksum import csum_partial
from services.core.dropreason import DropStats, SkbDropReason
from services.core.ipcb import IPSKB_FRAG_COMPLETE, IPSKB_FRAG_PMTU, ipcb, set_ipcb
from services.core.skbuff import (
    CHECKSUM_COMPLETE,
    CHECKSUM_NONE,
    CHECKSUM_UNNECESSARY,
    HEADER_UNSET,
    SkBuff,
    skb_truesize,
)
from services.core.snmp import SnmpMib
from services.core.sysctl import Sysctl
from services.core.wire.ipv4 import IP_DF, IP_MAX_PACKET, IP_MF, IP_OFFSET, IPV4_HLEN_MIN, Ipv4Packet
from services.ip.fib import RTN_LOCAL

# enum ip_defrag_users (include/net/ip.h); the conntrack users span USHRT_MAX zones.
IP_DEFRAG_LOCAL_DELIVER: Final = 0
IP_DEFRAG_CALL_RA_CHAIN: Final = 1
IP_DEFRAG_CONNTRACK_IN: Final = 2
IP_DEFRAG_CONNTRACK_IN_END: Final = IP_DEFRAG_CONNTRACK_IN + 0xFFFF
IP_DEFRAG_CONNTRACK_OUT: Final = IP_DEFRAG_CONNTRACK_IN_END + 1
IP_DEFRAG_CONNTRACK_OUT_END: Final = IP_DEFRAG_CONNTRACK_OUT + 0xFFFF
IP_DEFRAG_CONNTRACK_BRIDGE_IN: Final = IP_DEFRAG_CONNTRACK_OUT_END + 1
IP_DEFRAG_CONNTRACK_BRIDGE_IN_END: Final = IP_DEFRAG_CONNTRACK_BRIDGE_IN + 0xFFFF
IP_DEFRAG_VS_IN: Final = IP_DEFRAG_CONNTRACK_BRIDGE_IN_END + 1
IP_DEFRAG_VS_OUT: Final = IP_DEFRAG_VS_IN + 1
IP_DEFRAG_VS_FWD: Final = IP_DEFRAG_VS_OUT + 1
IP_DEFRAG_AF_PACKET: Final = IP_DEFRAG_VS_FWD + 1
IP_DEFRAG_MACVLAN: Final = IP_DEFRAG_AF_PACKET + 1

# inet_frag_queue flags (include/net/inet_frag.h). COMPLETE queues are out of the
# table at once here (inet_frag_kill), so only these two are kept.
INET_FRAG_FIRST_IN: Final = 1 << 0
INET_FRAG_LAST_IN: Final = 1 << 1

# sizeof(struct ipq) on x86_64: the object size of the ip4-frags slab cache.
IPQ_TRUESIZE: Final = 200
# CONFIG_MAX_SKB_FRAGS default, and SKB_DATA_ALIGN(sizeof(struct sk_buff)).
MAX_SKB_FRAGS: Final = 17
SKB_STRUCT_TRUESIZE: Final = 256

# ip4_frag_ecn(): one bit per ECN codepoint seen (include/net/inet_ecn.h).
IPFRAG_ECN_NOT_ECT: Final = 0x01
IPFRAG_ECN_ECT_1: Final = 0x02
IPFRAG_ECN_ECT_0: Final = 0x04
IPFRAG_ECN_CE: Final = 0x08
INET_ECN_CE: Final = 3

# Heads of timed-out queues waiting for expire(); more than this (a caller that never
# asks) are dropped without their ICMP, which icmp_ratelimit would mostly have refused.
MAX_PENDING_ICMP: Final = 1024

_U32: Final = 0xFFFFFFFF

FragKey = tuple[int, int, int, int, int, int]

_OK, _DUP, _OVERLAP = 0, 1, 2


def ip_frag_ecn_table(seen: int) -> int:
    """ip_frag_ecn_table[]: the ECN bits to OR into the reassembled header's TOS, or
    0xff for a mix RFC 3168 5.3 says to drop (Not-ECT with anything ECN-capable)."""
    if seen & IPFRAG_ECN_NOT_ECT and seen & ~IPFRAG_ECN_NOT_ECT:
        return 0xFF
    if seen & IPFRAG_ECN_CE and seen & (IPFRAG_ECN_ECT_0 | IPFRAG_ECN_ECT_1):
        return INET_ECN_CE
    return 0


def frag_expire_skip_icmp(user: int) -> bool:
    """frag_expire_skip_icmp(): defrag users that send no time-exceeded unless the
    packet was for this host."""
    return (
        user == IP_DEFRAG_AF_PACKET
        or IP_DEFRAG_CONNTRACK_IN <= user <= IP_DEFRAG_CONNTRACK_IN_END
        or IP_DEFRAG_CONNTRACK_BRIDGE_IN <= user <= IP_DEFRAG_CONNTRACK_BRIDGE_IN_END
    )


class _Frag:
    """A queued fragment: its offset in the datagram and the skb, pulled to its payload
    and trimmed to end - offset (FRAG_CB ip_defrag_offset)."""

    __slots__ = ("offset", "skb")

    def __init__(self, offset: int, skb: SkBuff) -> None:
        self.offset = offset
        self.skb = skb

    @property
    def end(self) -> int:
        return self.offset + self.skb.len


class _Run:
    """A node of the rb-tree: fragments that arrived each right after the previous one
    at the end of the queue (FRAG_CB next_frag chain, frag_run_len)."""

    __slots__ = ("frags", "length", "offset")

    def __init__(self, frag: _Frag) -> None:
        self.offset = frag.offset
        self.length = frag.skb.len
        self.frags = [frag]

    @property
    def end(self) -> int:
        return self.offset + self.length


class _Peer:
    """The inet_peer of a source, for ip_frag_too_far(): rid counts the fragments from
    that source. Kept while a queue refers to it; the counter only matters relative to
    the live queues' rid, so dropping an unused peer changes nothing."""

    __slots__ = ("refs", "rid")

    def __init__(self) -> None:
        self.rid = 0
        self.refs = 0


class _Queue:
    """struct ipq with its struct inet_frag_queue."""

    __slots__ = (
        "deadline",
        "ecn",
        "flags",
        "iif",
        "key",
        "last_run",
        "len",
        "live",
        "max_df_size",
        "max_size",
        "meat",
        "peer",
        "rid",
        "runs",
        "stamp",
        "starts",
        "tail",
        "truesize",
    )

    def __init__(self, key: FragKey, deadline: int, peer: _Peer | None) -> None:
        self.key = key
        self.deadline = deadline
        self.peer = peer
        self.live = True
        self.flags = 0
        self.len = 0
        self.meat = 0
        self.runs: list[_Run] = []
        self.starts: list[int] = []
        self.tail: _Frag | None = None
        self.last_run: _Run | None = None
        self.iif = 0
        self.ecn = 0
        self.max_size = 0
        self.max_df_size = 0
        self.rid = 0
        self.stamp = 0
        self.truesize = 0

    def fragments(self) -> list[_Frag]:
        return [f for run in self.runs for f in run.frags]

    def reset(self) -> None:
        self.flags = self.len = self.meat = self.iif = self.ecn = self.truesize = 0
        self.runs = []
        self.starts = []
        self.tail = None
        self.last_run = None


class IpDefrag:
    """One network namespace's IPv4 reassembly (net->ipv4.fqdir and its queues)."""

    def __init__(
        self,
        sysctl: Sysctl,
        mib: SnmpMib,
        drops: DropStats,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.sysctl = sysctl
        self.mib = mib
        self.drops = drops
        self.clock = clock
        self._queues: dict[FragKey, _Queue] = {}
        self._peers: dict[tuple[int, int], _Peer] = {}
        self._timers: list[tuple[int, int, _Queue]] = []
        self._seq = 0
        self._pending: list[SkBuff] = []
        self._pending_since: int | None = None
        self._mem = 0

    @property
    def mem(self) -> int:
        """frag_mem_limit(): bytes charged to reassembly now (the "memory" of the FRAG
        line in /proc/net/sockstat)."""
        return self._mem

    @property
    def inuse(self) -> int:
        """Queues in the table (the FRAG line's "inuse")."""
        return len(self._queues)

    # ip_defrag

    def ip_defrag(self, skb: SkBuff, user: int = IP_DEFRAG_LOCAL_DELIVER, vif: int = 0) -> SkBuff | None:
        """ip_defrag(): queue a fragment whose IP header is at skb.data (ip_rcv_core has
        checked it and trimmed the skb to tot_len). Returns the whole datagram when
        this fragment completes it: a new linear skb with the IP header at data,
        tot_len, frag_off and the checksum rewritten as ip_frag_reasm() does, and the
        first fragment's metadata. Otherwise None: the skb is queued (kept, the caller
        lets go of it) or dropped and counted. `vif` is the l3mdev (VRF) master's
        ifindex, 0 without VRF."""
        now = self.clock()
        self._run_timers(now)
        self.mib.ip.inc("ReasmReqds")
        if skb.network_header == HEADER_UNSET:
            skb.reset_network_header()
        if skb.data_len:
            skb.linearize()
        nh = skb.network_header
        if not 0 <= nh <= skb.data or skb.tail - nh < IPV4_HLEN_MIN:
            raise ValueError(f"ip_defrag: no IPv4 header at {nh} in {skb!r}")
        iph = Ipv4Packet(bytes(skb.head[nh : nh + IPV4_HLEN_MIN]))
        key = (iph.src, iph.dst, iph.ident, iph.protocol, user, vif)
        q = self._find(key, now)
        if q is None:
            self.mib.ip.inc("ReasmFails")
            # kfree_skb(skb): the fragment names its flow if it is the first.
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "ip_defrag", skb=skb)
            return None
        return self._frag_queue(q, skb, iph, now)

    def _find(self, key: FragKey, now: int) -> _Queue | None:
        """inet_frag_find(): nothing at all above high_thresh, else the queue, made if
        new (inet_frag_create, ip4_frag_init) with its timer armed."""
        high = self.sysctl.get_int("net.ipv4.ipfrag_high_thresh")
        if not high or self._mem > high:
            return None
        q = self._queues.get(key)
        if q is not None:
            return q
        peer = None
        if self.sysctl.get_int("net.ipv4.ipfrag_max_dist"):
            # inet_getpeer_v4(net->ipv4.peers, saddr, vif)
            peer_key = (key[0], key[5])
            peer = self._peers.get(peer_key)
            if peer is None:
                peer = self._peers[peer_key] = _Peer()
            peer.refs += 1
        q = _Queue(key, self._timeout_at(now), peer)
        self._queues[key] = q
        self._mem += IPQ_TRUESIZE
        self._arm(q)
        return q

    def _frag_queue(self, q: _Queue, skb: SkBuff, iph: Ipv4Packet, now: int) -> SkBuff | None:
        """ip_frag_queue()."""
        if not ipcb(skb.cb).flags & IPSKB_FRAG_COMPLETE and self._too_far(q):
            self._reinit(q, now)
        noff = skb.network_header - skb.data
        ecn = 1 << (iph.tos & 3)
        frag_off = iph.frag_off
        flags = frag_off & ~IP_OFFSET
        offset = (frag_off & IP_OFFSET) << 3
        ihl = iph.header_len
        dont_frag = bool(frag_off & IP_DF)
        end = offset + skb.len - noff - ihl
        if not flags & IP_MF:
            # "If we already have some bits beyond end or have different end, the
            # segment is corrupted."
            if end < q.len or (q.flags & INET_FRAG_LAST_IN and end != q.len):
                return self._discard_qp(q, skb)
            q.flags |= INET_FRAG_LAST_IN
            q.len = end
        else:
            if end & 7:
                end &= ~7
                if skb.ip_summed != CHECKSUM_UNNECESSARY:
                    skb.ip_summed = CHECKSUM_NONE
            if end > q.len:
                # "Some bits beyond end -> corruption."
                if q.flags & INET_FRAG_LAST_IN:
                    return self._discard_qp(q, skb)
                q.len = end
        if end == offset:
            return self._discard_qp(q, skb)
        if not skb.pull(noff + ihl):
            return self._discard_qp(q, skb)
        # pskb_trim_rcsum(): the bytes past a non-last fragment's last 8-byte block.
        skb.trim(end - offset)

        result = self._insert(q, skb, offset, end)
        if result == _DUP:
            self.drops.drop(SkbDropReason.DUP_FRAG, "ip_defrag")
            return None
        if result == _OVERLAP:
            self.mib.ipext.inc("ReasmOverlaps")
            return self._discard_qp(q, skb)

        if skb.dev_ifindex:
            q.iif = skb.dev_ifindex
        q.stamp = skb.tstamp
        q.meat += skb.len
        q.ecn |= ecn
        q.truesize += skb.truesize
        self._mem += skb.truesize
        if offset == 0:
            q.flags |= INET_FRAG_FIRST_IN
        fragsize = skb.len + ihl
        q.max_size = max(q.max_size, fragsize)
        if dont_frag and fragsize > q.max_df_size:
            q.max_df_size = fragsize
        if q.flags == INET_FRAG_FIRST_IN | INET_FRAG_LAST_IN and q.meat == q.len:
            return self._reasm(q, skb)
        # skb_dst_drop() and skb_orphan(): the queued skb lets go of its socket. Its
        # dst stays, standing in for the route ip_expire() looks up for the ICMP.
        skb.sk = 0
        return None

    def _discard_qp(self, q: _Queue, skb: SkBuff) -> SkBuff | None:
        """ip_frag_queue()'s discard_qp: the queue dies (its fragments are consumed,
        not dropped), ReasmFails, and this fragment is dropped."""
        self._kill(q)
        self.mib.ip.inc("ReasmFails")
        self.drops.drop(SkbDropReason.NOT_SPECIFIED, "ip_defrag")
        return None

    def _insert(self, q: _Queue, skb: SkBuff, offset: int, end: int) -> int:
        """inet_frag_queue_insert(): overlaps are refused (RFC 5722, amended by erratum
        3089), duplicates ignored. A fragment right after the tail joins the last run,
        one further on starts a run; one before the tail is looked up among the runs,
        and is a duplicate only if one run holds all of it."""
        frag = _Frag(offset, skb)
        last = q.tail
        if last is None:
            self._new_run(q, len(q.runs), frag)
            q.tail = frag
            q.last_run = q.runs[-1]
        elif last.end < end:
            # "This is the common case: skb goes to the end."
            if offset < last.end:
                return _OVERLAP
            if offset == last.end and q.last_run is not None:
                q.last_run.frags.append(frag)
                q.last_run.length += skb.len
            else:
                self._new_run(q, len(q.runs), frag)
                q.last_run = q.runs[-1]
            q.tail = frag
        else:
            # The binary search: the new fragment can become the first, never the last.
            i = bisect_right(q.starts, offset) - 1
            if i >= 0:
                run = q.runs[i]
                if offset < run.end:
                    return _DUP if end <= run.end else _OVERLAP
            if i + 1 < len(q.runs) and q.runs[i + 1].offset < end:
                return _OVERLAP
            self._new_run(q, i + 1, frag)
        return _OK

    @staticmethod
    def _new_run(q: _Queue, index: int, frag: _Frag) -> None:
        q.runs.insert(index, _Run(frag))
        q.starts.insert(index, frag.offset)

    def _too_far(self, q: _Queue) -> bool:
        """ip_frag_too_far(): more than ipfrag_max_dist fragments from this source
        (to any queue) since this queue's last one, and it holds some: ReasmFails."""
        peer = q.peer
        max_dist = self.sysctl.get_int("net.ipv4.ipfrag_max_dist")
        if peer is None or not max_dist:
            return False
        start = q.rid
        peer.rid = (peer.rid + 1) & _U32
        q.rid = end = peer.rid
        if q.tail is not None and (end - start) & _U32 > max_dist:
            self.mib.ip.inc("ReasmFails")
            return True
        return False

    def _reinit(self, q: _Queue, now: int) -> None:
        """ip_frag_reinit(): throw the queued fragments away (FRAG_TOO_FAR), start the
        queue over and restart its timer. max_size and max_df_size stay."""
        self._purge(q, SkbDropReason.FRAG_TOO_FAR)
        q.reset()
        q.deadline = self._timeout_at(now)
        self._arm(q)

    def _reasm(self, q: _Queue, skb: SkBuff) -> SkBuff | None:
        """ip_frag_reasm() with inet_frag_reasm_prepare() and inet_frag_reasm_finish().

        The fragment that just came is made the head (skb_morph of the first one):
        the result has the first fragment's metadata, but the dst and device of the
        one that completed it, and its timestamp (q->stamp). ECN bits are merged as
        RFC 3168 5.3 asks; frag_off becomes DF (and IPSKB_FRAG_PMTU is set) when the
        largest fragment had DF, so ip_fragment refragments a forwarded datagram no
        larger than it came; IPCB frag_max_size is the largest fragment seen."""
        frags = q.fragments()
        self._kill(q)
        ecn = ip_frag_ecn_table(q.ecn)
        if ecn == 0xFF:
            self.mib.ip.inc("ReasmFails")
            return None
        head = frags[0].skb
        ihl = head.data - head.network_header
        length = ihl + q.len
        if length > IP_MAX_PACKET:
            # "Oversized IP packet from %pI4"
            self.mib.ip.inc("ReasmFails")
            return None

        nh = head.network_header
        buf = bytearray(head.head[:nh])
        buf += head.head[nh : head.data]
        for f in frags:
            buf += f.skb.payload()
        out = head.clone()
        out.head = buf
        out.data = out.network_header = nh
        out.tail = len(buf)
        out.len = length
        out.data_len = 0
        out.frags = []
        out.frag_list = []
        out.transport_header = nh + ihl
        out.dst = skb.dst
        out.dev_ifindex = skb.dev_ifindex
        out.tstamp = q.stamp
        out.sk = skb.sk
        out.truesize = _reasm_truesize(frags, q.key[4] == IP_DEFRAG_LOCAL_DELIVER)

        parm = ipcb(out.cb)
        parm.frag_max_size = max(q.max_df_size, q.max_size)
        iph = Ipv4Packet(memoryview(buf)[nh : nh + ihl])
        iph.set_total_len(length)
        iph.set_tos(iph.tos | ecn)
        if q.max_df_size == q.max_size:
            parm.flags |= IPSKB_FRAG_PMTU
            iph.set_frag_off(IP_DF)
        else:
            iph.set_frag_off(0)
        iph.fill_checksum()
        del iph
        set_ipcb(out.cb, parm)

        # inet_frag_reasm_finish(): the head keeps its ip_summed only if every
        # fragment has the same; CHECKSUM_COMPLETE sums add up.
        summed = head.ip_summed
        if any(f.skb.ip_summed != summed for f in frags):
            summed = CHECKSUM_NONE
        out.ip_summed = summed
        if summed == CHECKSUM_COMPLETE:
            out.csum = csum_partial(memoryview(buf)[nh:])
        self.mib.ip.inc("ReasmOKs")
        return out

    # Timers.

    def expire(self, now_ns: int | None = None) -> list[SkBuff]:
        """ip_expire() for every queue whose time is up: ReasmFails and ReasmTimeout
        each, the fragments dropped as FRAG_REASM_TIMEOUT. Returns the first fragment
        (IP header at data, as it arrived) of each such queue that had it, for the
        caller's icmp_send(ICMP_TIME_EXCEEDED, ICMP_EXC_FRAGTIME); it is already
        counted as dropped. Conntrack and AF_PACKET users' queues send none unless
        the datagram was for this host (frag_expire_skip_icmp)."""
        self._run_timers(self.clock() if now_ns is None else now_ns)
        out = self._pending
        self._pending = []
        self._pending_since = None
        return out

    def next_expiry(self) -> int | None:
        """When expire() has work next (the clock's ns), or None with no queue: a time
        already past when timed-out queues' first fragments wait for expire()."""
        timers = self._timers
        while timers and not _current(timers[0]):
            heapq.heappop(timers)
        when = timers[0][0] if timers else None
        if self._pending_since is not None and (when is None or self._pending_since < when):
            return self._pending_since
        return when

    def _timeout_at(self, now: int) -> int:
        # fqdir->timeout, read when the timer is (re)armed: net.ipv4.ipfrag_time.
        return now + self.sysctl.get_int("net.ipv4.ipfrag_time") * 1_000_000_000

    def _arm(self, q: _Queue) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (q.deadline, self._seq, q))
        # Entries of completed or rearmed queues wait for their time; keep them few.
        if len(self._timers) > 2 * len(self._queues) + 64:
            self._timers = [t for t in self._timers if _current(t)]
            heapq.heapify(self._timers)

    def _run_timers(self, now: int) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            if _current(entry):
                self._expire(entry[2])

    def _expire(self, q: _Queue) -> None:
        """ip_expire()."""
        self._kill(q)
        self.mib.ip.inc("ReasmFails")
        self.mib.ip.inc("ReasmTimeout")
        head: SkBuff | None = None
        if q.flags & INET_FRAG_FIRST_IN and q.runs:
            # inet_frag_pull_head()
            run = q.runs[0]
            head = run.frags.pop(0).skb
            if not run.frags:
                del q.runs[0]
        # inet_frag_destroy() with INET_FRAG_DROP: the rest are timeout drops.
        rest = len(q.fragments())
        if rest:
            self.drops.drop(SkbDropReason.FRAG_REASM_TIMEOUT, "inet_frag_rbtree_purge", rest)
        if head is None:
            return
        self.drops.drop(SkbDropReason.FRAG_REASM_TIMEOUT, "ip_expire", skb=head)
        if frag_expire_skip_icmp(q.key[4]) and (head.dst is None or head.dst.rt_type != RTN_LOCAL):
            return
        if len(self._pending) >= MAX_PENDING_ICMP:
            return
        # The ICMP quotes the header the fragment arrived with.
        head.push(head.data - head.network_header)
        if self._pending_since is None:
            self._pending_since = q.deadline
        self._pending.append(head)

    # Queue lifetime.

    def _kill(self, q: _Queue) -> None:
        """inet_frag_kill() and the inet_frag_destroy() that follows: out of the table,
        timer off, memory (queue and fragments) given back."""
        if not q.live:
            return
        q.live = False
        del self._queues[q.key]
        self._mem -= IPQ_TRUESIZE + q.truesize
        peer = q.peer
        if peer is not None:
            peer.refs -= 1
            if not peer.refs:
                del self._peers[(q.key[0], q.key[5])]

    def _purge(self, q: _Queue, reason: SkbDropReason) -> None:
        """inet_frag_rbtree_purge(): every queued fragment dropped for `reason`."""
        n = len(q.fragments())
        if n:
            self.drops.drop(reason, "inet_frag_rbtree_purge", n)
        self._mem -= q.truesize
        q.truesize = 0


def _current(entry: tuple[int, int, _Queue]) -> bool:
    q = entry[2]
    return q.live and q.deadline == entry[0]


def _reasm_truesize(frags: list[_Frag], try_coalesce: bool) -> int:
    """The reassembled skb's truesize as inet_frag_reasm_finish() builds it: for the
    local-delivery user (ip_frag_coalesce_ok) skb_try_coalesce() copies a fragment
    into the head's tailroom (its truesize gone) or steals its head as a page frag
    (all but its struct sk_buff) while frags are left; the rest go to the frag_list
    whole."""
    head = frags[0].skb
    truesize = head.truesize
    tailroom = head.tailroom()
    nr_frags = len(head.frags)
    in_frag_list = False
    for f in frags[1:]:
        fp = f.skb
        if try_coalesce and not in_frag_list:
            if fp.len <= tailroom:
                tailroom -= fp.len
                continue
            if fp.headlen():
                if nr_frags + len(fp.frags) < MAX_SKB_FRAGS:
                    nr_frags += 1 + len(fp.frags)
                    truesize += fp.truesize - SKB_STRUCT_TRUESIZE
                    tailroom = 0
                    continue
            elif nr_frags + len(fp.frags) <= MAX_SKB_FRAGS:
                nr_frags += len(fp.frags)
                truesize += fp.truesize - skb_truesize(fp.end)
                tailroom = 0
                continue
        in_frag_list = True
        truesize += fp.truesize
    return truesize
