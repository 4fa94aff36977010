"""The IPv4 neighbour table of one host: ARP (net/ipv4/arp.c) over the generic neighbour
cache (net/core/neighbour.c), as Linux 6.18 runs them with their defaults.

Pure logic. The clock (seconds, kept as jiffies at HZ), the randomness of
neigh_rand_reach_time and the two ways out are injected: send_frame transmits an ARP
frame the table built, xmit_resolved takes a held skb whose neighbour resolved. The
owner calls run_timers() when next_timer() comes due; every other entry point first runs
the timers already due, and a late run_timers() runs each timer at its own expiry, so
the table acts as the kernel's would with punctual timers.

Ownership: output() either returns the destination MAC (the skb stays the caller's) or
keeps the skb. A kept skb ends exactly once: handed to xmit_resolved, or counted in
`drops` under its reason (NEIGH_QUEUEFULL when the arp_queue overflows, NEIGH_FAILED
when resolution fails or the entry is deleted, QUEUE_PURGE when the entry is destroyed
under it). NEIGH_CREATEFAIL counts an skb for which no entry could be made. Every skb
the table frees is also handed to `free` (kfree_skb runs the owning socket's
destructor), with enobufs set for NEIGH_CREATEFAIL, the one drop ip_finish_output2
turns into an error for the sender (-ENOBUFS from __neigh_create).

An skb with dst_pending_confirm (MSG_CONFIRM) confirms its neighbour before output, as
sock_confirm_neigh() → neigh_confirm() does in ip_finish_output2: confirmed = now, so a
DELAY entry whose timer then finds it confirmed within delay_first_probe_time goes back
to REACHABLE without a probe. The kernel's timer wheel fires a timer at least a jiffy
after its expiry, so there a confirmation in the very jiffy the entry went from STALE
to DELAY does not count; here timers are punctual and it does.

Loopback and IFF_NOARP devices never use the table: arp_constructor gives their
neighbours NUD_NOARP with the device's own address, which the caller uses directly.
output() refuses both with ValueError; arp_rcv() ignores ARP on a NOARP device as
arp_rcv does and refuses loopback.

Fixed at their defaults, not modelled: arp_ignore, arp_filter, arp_accept, arp_announce,
drop_gratuitous_arp, route_localnet and rp_filter all 0, forwarding and proxy ARP off,
no arpd (app_solicit), no NTF_USE/MANAGED/EXT_LEARNED entries, one neigh_parms for every
device (net.ipv4.neigh.default) with its own randomized reachable_time per device.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields

from services.core import errno
from services.core.dropreason import DropStats, SkbDropReason
from services.core.netdev import LOOPBACK_IFINDEX
from services.core.skbuff import HEADER_UNSET, PACKET_HOST, PACKET_LOOPBACK, PACKET_OTHERHOST, SkBuff
from services.core.sysctl import HZ, SK_MEM_DEFAULT
from services.core.wire.arp import (
    ARP_LEN,
    ARPHRD_ETHER,
    ARPHRD_IEEE802,
    ARPOP_REPLY,
    ARPOP_REQUEST,
    ArpPacket,
    ArpRepr,
)
from services.core.wire.ethernet import (
    BROADCAST_MAC,
    ETH_ALEN,
    ETH_HLEN,
    ETH_P_ARP,
    ETH_P_IP,
    ZERO_MAC,
    EthernetRepr,
)
from services.core.wire.ipv4 import ipv4_is_lbcast, ipv4_is_loopback, ipv4_is_multicast, ipv4_is_zeronet
from services.nic.device import IFF_LOOPBACK, IFF_NOARP, NetDevice

# include/uapi/linux/neighbour.h
NUD_NONE = 0x00
NUD_INCOMPLETE = 0x01
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_DELAY = 0x08
NUD_PROBE = 0x10
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80

# include/net/neighbour.h
NUD_IN_TIMER = NUD_INCOMPLETE | NUD_REACHABLE | NUD_DELAY | NUD_PROBE
NUD_VALID = NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE | NUD_PROBE | NUD_STALE | NUD_DELAY
NUD_CONNECTED = NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE

# The __neigh_update() flags this table uses.
NEIGH_UPDATE_F_OVERRIDE = 0x1
NEIGH_UPDATE_F_WEAK_OVERRIDE = 0x2
NEIGH_UPDATE_F_ADMIN = 0x80000000

# include/uapi/linux/rtnetlink.h: route types, as inet_addr_type_dev_table() answers.
RTN_UNICAST = 1
RTN_LOCAL = 2
RTN_BROADCAST = 3
RTN_MULTICAST = 5

# include/linux/netdevice.h; nda_policy caps NDA_LLADDR at it.
MAX_ADDR_LEN = 32

_FLUSH_KEEPS = NUD_PERMANENT | NUD_NOARP


def _jiffies(ms: int) -> int:
    return ms * HZ // 1000


def _mask(prefixlen: int) -> int:
    return (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF if prefixlen else 0


def ip_eth_mc_map(addr: int) -> bytes:
    """ip_eth_mc_map(): 01:00:5e and the group's low 23 bits."""
    return bytes((0x01, 0x00, 0x5E, (addr >> 16) & 0x7F, (addr >> 8) & 0xFF, addr & 0xFF))


@dataclass(slots=True)
class NeighParms:
    """net.ipv4.neigh.default.*: arp_tbl's neigh_parms and gc thresholds, with its
    defaults. Times in milliseconds (jiffies at HZ 1000); set them through
    NeighTable.set_parm so that base_reachable_time_ms redraws reachable_time."""

    mcast_solicit: int = 3
    ucast_solicit: int = 3
    app_solicit: int = 0
    mcast_resolicit: int = 0
    retrans_time_ms: int = 1000
    base_reachable_time_ms: int = 30_000
    delay_first_probe_time_ms: int = 5000
    gc_stale_time_ms: int = 60_000
    # SK_WMEM_DEFAULT, charged by skb->truesize.
    unres_qlen_bytes: int = SK_MEM_DEFAULT
    locktime_ms: int = 1000
    gc_thresh1: int = 128
    gc_thresh2: int = 512
    gc_thresh3: int = 1024


@dataclass(slots=True)
class NeighStatistics:
    """struct neigh_statistics, named as the /proc/net/stat/arp_cache header names them.
    rcv_probes_* count only IPv6 neighbour solicitations and stay 0 here."""

    allocs: int = 0
    destroys: int = 0
    hash_grows: int = 0
    lookups: int = 0
    hits: int = 0
    res_failed: int = 0
    rcv_probes_mcast: int = 0
    rcv_probes_ucast: int = 0
    periodic_gc_runs: int = 0
    forced_gc_runs: int = 0
    unresolved_discards: int = 0
    table_fulls: int = 0


@dataclass(slots=True)
class ArpStats:
    """ARP packets built and taken in. Linux keeps no such counters; received counts
    what passes arp_rcv's and arp_process's checks."""

    requests_sent: int = 0
    replies_sent: int = 0
    requests_received: int = 0
    replies_received: int = 0


@dataclass(frozen=True, slots=True)
class Neigh:
    """One entry as `ip -s neigh` shows it (neigh_fill_info): lladdr only while NUD_VALID,
    used/confirmed/updated as seconds ago."""

    ifindex: int
    address: int
    lladdr: bytes
    state: int
    queued: int
    probes: int
    used: float
    confirmed: float
    updated: float


@dataclass(frozen=True, slots=True)
class _Ifa:
    """struct in_ifaddr as ARP needs it."""

    ifindex: int
    local: int
    prefixlen: int
    mask: int
    secondary: bool

    @property
    def host_scope(self) -> bool:
        # iproute2 gives 127/8 RT_SCOPE_HOST, as inetdev_event does lo's own address.
        return ipv4_is_loopback(self.local)


class _Neighbour:
    """struct neighbour. timer is the expiry in jiffies, None when no timer is pending
    (then the table holds the only reference, what the gc checks as refcnt == 1)."""

    __slots__ = (
        "arp_queue",
        "arp_queue_len_bytes",
        "confirmed",
        "dead",
        "dev",
        "ha",
        "hh",
        "key",
        "probes",
        "state",
        "timer",
        "timer_seq",
        "type",
        "updated",
        "used",
    )

    def __init__(self, dev: NetDevice, key: int, now: int) -> None:
        self.dev = dev
        self.key = key
        self.ha = ZERO_MAC
        self.state = NUD_NONE
        self.probes = 0
        self.arp_queue: deque[SkBuff] = deque()
        self.arp_queue_len_bytes = 0
        self.confirmed = now
        self.updated = now
        self.used = now
        self.timer: int | None = None
        self.timer_seq = 0
        self.type = RTN_UNICAST
        # hh_cache filled (neigh_hh_init): NUD_CONNECTED output then skips
        # neigh_event_send and so does not refresh `used`.
        self.hh = False
        self.dead = False


class NeighTable:
    """arp_tbl for one host."""

    def __init__(
        self,
        drops: DropStats,
        clock: Callable[[], float],
        send_frame: Callable[[NetDevice, bytes], None],
        xmit_resolved: Callable[[NetDevice, SkBuff, bytes], None],
        rng: random.Random | None = None,
        link_failure: Callable[[NetDevice, SkBuff], None] | None = None,
        free: Callable[[SkBuff, bool], None] | None = None,
    ) -> None:
        """link_failure, when given, sees each held skb of a neighbour that failed just
        before it is counted dropped: arp_error_report's dst_link_failure, where the IP
        layer sends ICMP host unreachable to the skb's source. free, when given, sees
        every skb the table drops (and whether the sender gets -ENOBUFS for it)."""
        self._drops = drops
        self._clock = clock
        self._send_frame = send_frame
        self._xmit_resolved = xmit_resolved
        self._link_failure = link_failure
        self._free = free if free is not None else _no_free
        self._rng = rng if rng is not None else random.Random()
        self.parms = NeighParms()
        self.stats = NeighStatistics()
        self.arp_stats = ArpStats()
        self._tbl: dict[tuple[int, int], _Neighbour] = {}
        # tbl->gc_list: entries the forced gc may take, oldest first.
        self._gc_list: dict[tuple[int, int], _Neighbour] = {}
        self._hash_shift = 3
        self._timers: list[tuple[int, int, _Neighbour]] = []
        self._timer_seq = 0
        self._running = False
        self._ifas: list[_Ifa] = []
        # The local routing table as inet_addr_type() reads it: prefixlen -> prefix ->
        # (route type, ifindex).
        self._local: dict[int, dict[int, tuple[int, int]]] = {}
        self._local_lens: list[int] = []
        # neigh_table_init(): the table's parms draw a reachable_time that schedules the
        # first gc run and the first redraw; each device's parms draw their own
        # (neigh_parms_alloc), here when the device is first used.
        now = self._now()
        self._tbl_reach = self._rand_reach()
        self._dev_reach: dict[int, int] = {}
        self._last_flush = now
        self._last_rand = now + self._tbl_reach * 20
        self._gc_next = now + self._tbl_reach

    # Configuration.

    def set_addrs(self, addrs: list[tuple[int, int, int]]) -> None:
        """Every local address of the host as (ifindex, address, prefixlen), in the order
        they were added. The local table follows fib_add_ifaddr(): a local route per
        address, the subnet broadcast (`brd +`) for a primary shorter than /31, the whole
        prefix for an address on lo."""
        ifas: list[_Ifa] = []
        for ifindex, local, prefixlen in addrs:
            if not 0 <= local <= 0xFFFFFFFF or not 0 <= prefixlen <= 32:
                raise ValueError(f"neigh: bad address {local!r}/{prefixlen!r} on ifindex {ifindex}")
            mask = _mask(prefixlen)
            # __inet_insert_ifa(): one in the subnet of an earlier primary is secondary.
            secondary = any(
                o.ifindex == ifindex
                and o.prefixlen == prefixlen
                and not o.secondary
                and not (o.local ^ local) & mask
                for o in ifas
            )
            ifas.append(_Ifa(ifindex, local, prefixlen, mask, secondary))
        self._ifas = ifas
        self._local = {}
        for ifa in ifas:
            self._add_local_route(ifa.local, 32, RTN_LOCAL, ifa.ifindex)
            prefix = ifa.local & ifa.mask
            if ifa.secondary or ipv4_is_zeronet(prefix) or (prefix == ifa.local and ifa.prefixlen == 32):
                continue
            if ifa.ifindex == LOOPBACK_IFINDEX:
                self._add_local_route(prefix, ifa.prefixlen, RTN_LOCAL, ifa.ifindex)
            if ifa.prefixlen < 31:
                self._add_local_route(prefix | (~ifa.mask & 0xFFFFFFFF), 32, RTN_BROADCAST, ifa.ifindex)
        self._local_lens = sorted(self._local, reverse=True)

    def set_parm(self, name: str, value: int) -> None:
        """Write one NeighParms field (net.ipv4.neigh.default.NAME); the range checks
        are the sysctl's. base_reachable_time_ms redraws every reachable_time at once
        (neigh_proc_base_reachable_time)."""
        if name not in {f.name for f in fields(NeighParms)}:
            raise KeyError(f"neigh: no parameter {name!r}")
        setattr(self.parms, name, value)
        if name == "base_reachable_time_ms":
            self._tbl_reach = self._rand_reach()
            for ifindex in self._dev_reach:
                self._dev_reach[ifindex] = self._rand_reach()

    def reachable_time(self, ifindex: int) -> float:
        """The device's current reachable_time in seconds (neigh_parms.reachable_time)."""
        return self._reach(ifindex) / HZ

    # Transmit.

    def output(self, dev: NetDevice, nexthop: int, skb: SkBuff) -> bytes | None:
        """ip_finish_output2 → neigh_output for an skb whose data is at the network
        header: the destination MAC when the entry can be used now, else None and the
        skb is the table's (held in the arp_queue, or dropped and counted)."""
        if dev.flags & (IFF_LOOPBACK | IFF_NOARP):
            raise ValueError(f"neigh: {dev.name} does not use ARP; its neighbour is its own address")
        now = self._catch_up()
        # __ipv4_neigh_lookup_noref() counts no lookup; __neigh_create() if none.
        n = self._tbl.get((dev.ifindex, nexthop))
        if n is None:
            n = self._create(dev, nexthop, now, exempt_from_gc=False)
            if n is None:
                self._drops.drop(SkbDropReason.NEIGH_CREATEFAIL, "ip_finish_output2")
                self._free(skb, True)
                return None
        if skb.dst_pending_confirm:
            # sock_confirm_neigh() → neigh_confirm().
            n.confirmed = now
        if n.state & NUD_CONNECTED and n.hh:
            # neigh_hh_output(): the cached header, no neigh_event_send.
            return n.ha
        return self._resolve_output(n, skb, now)

    # Receive.

    def arp_rcv(self, dev: NetDevice, frame: bytes, pkt_type: int) -> None:
        """arp_rcv + arp_process for an ARP frame (Ethernet header included) that dev
        received; pkt_type is what eth_type_trans set."""
        if dev.flags & IFF_LOOPBACK:
            raise ValueError(f"neigh: {dev.name} does not use ARP")
        # "do not tweak dropwatch on an ARP we will ignore": consumed, not dropped.
        if dev.flags & IFF_NOARP or pkt_type in (PACKET_OTHERHOST, PACKET_LOOPBACK):
            return
        now = self._catch_up()
        if len(frame) < ETH_HLEN + ARP_LEN:
            self._drops.drop(SkbDropReason.PKT_TOO_SMALL, "arp_rcv")
            return
        arp = ArpPacket(memoryview(frame)[ETH_HLEN:])
        if arp.hardware_len != ETH_ALEN or arp.protocol_len != 4:
            self._drops.drop(SkbDropReason.NOT_SPECIFIED, "arp_rcv")
            return
        self._arp_process(dev, arp, pkt_type, now)

    def _arp_process(self, dev: NetDevice, arp: ArpPacket, pkt_type: int, now: int) -> None:
        # An Ethernet device takes ARPHRD_ETHER and ARPHRD_IEEE802 (RFC 2625).
        if arp.hardware_type not in (ARPHRD_ETHER, ARPHRD_IEEE802) or arp.protocol_type != ETH_P_IP:
            self._drops.drop(SkbDropReason.NOT_SPECIFIED, "arp_process")
            return
        op = arp.operation
        if op != ARPOP_REQUEST and op != ARPOP_REPLY:
            self._drops.drop(SkbDropReason.NOT_SPECIFIED, "arp_process")
            return
        sha, sip, tha, tip = arp.sender_hw, arp.sender_ip, arp.target_hw, arp.target_ip
        # "Check for bad requests for 127.x.x.x and requests for multicast addresses."
        if ipv4_is_multicast(tip) or ipv4_is_loopback(tip):
            self._drops.drop(SkbDropReason.NOT_SPECIFIED, "arp_process")
            return
        if op == ARPOP_REQUEST:
            self.arp_stats.requests_received += 1
        else:
            self.arp_stats.replies_received += 1

        # Duplicate address detection (RFC 2131, RFC 5227): answer, learn nothing.
        if sip == 0:
            if op == ARPOP_REQUEST and self._addr_type(dev.ifindex, tip) == RTN_LOCAL:
                self._arp_send(ARPOP_REPLY, sip, dev, tip, sha, dev.dev_addr, sha)
            return

        # A request for one of our addresses (on any device: arp_ignore 0): learn the
        # asker as STALE (neigh_event_ns) and answer. Nothing else for requests: no
        # forwarding, no proxy ARP.
        if op == ARPOP_REQUEST and self._route_input_local(sip, tip):
            n = self._neigh_event_ns(dev, sha, sip, now)
            if n is not None:
                self._arp_send(ARPOP_REPLY, sip, dev, tip, sha, dev.dev_addr, sha)
            return

        # Update an entry we already have; arp_accept 0 creates none from unsolicited
        # replies or gratuitous ARP.
        n = self._lookup(dev, sip)
        if n is None:
            return
        is_garp = self._is_garp(dev, op, sip, tip, sha, tha)
        # "Broadcast replies and request packets do not assert neighbour reachability."
        state = NUD_REACHABLE if op == ARPOP_REPLY and pkt_type == PACKET_HOST else NUD_STALE
        # "If several different ARP replies follows back-to-back, use the FIRST one."
        override = now > n.updated + _jiffies(self.parms.locktime_ms) or is_garp
        self._update(n, sha, state, NEIGH_UPDATE_F_OVERRIDE if override else 0, now)

    def _is_garp(self, dev: NetDevice, op: int, sip: int, tip: int, sha: bytes, tha: bytes) -> bool:
        """arp_is_garp(): sender and target address equal (a reply also needs target
        hardware address = sender's), and the sender unicast on this device."""
        is_garp = tip == sip
        if is_garp and op == ARPOP_REPLY:
            is_garp = tha == sha
        return is_garp and self._addr_type(dev.ifindex, sip) == RTN_UNICAST

    def _neigh_event_ns(self, dev: NetDevice, sha: bytes, sip: int, now: int) -> _Neighbour | None:
        n = self._lookup(dev, sip)
        if n is None:
            n = self._create(dev, sip, now, exempt_from_gc=bool(dev.flags & IFF_LOOPBACK))
        if n is not None:
            self._update(n, sha, NUD_STALE, NEIGH_UPDATE_F_OVERRIDE, now)
        return n

    # Timers.

    def next_timer(self) -> float | None:
        """When run_timers() next has work, in the clock's seconds; None when nothing is
        pending. neigh_periodic_work is left out below gc_thresh1 entries, where it only
        redraws reachable_time, which run_timers() catches up on before anything
        reads it."""
        top = self._peek_timer()
        when = top[0] if top is not None else None
        if len(self._tbl) >= self.parms.gc_thresh1:
            when = self._gc_next if when is None else min(when, self._gc_next)
        return None if when is None else when / HZ

    def run_timers(self) -> None:
        """neigh_timer_handler for every entry whose timer has expired, and
        neigh_periodic_work, each at its own expiry and in expiry order."""
        self._catch_up()

    def _catch_up(self) -> int:
        """Run what is due and return the time now, in jiffies."""
        now = self._now()
        if self._running:
            # A callback re-entered the table from inside a timer.
            return now
        self._running = True
        try:
            while True:
                top = self._peek_timer()
                if self._gc_next <= now and (top is None or self._gc_next <= top[0]):
                    self._periodic_work(self._gc_next)
                    continue
                if top is None or top[0] > now:
                    break
                heapq.heappop(self._timers)
                when, _, n = top
                n.timer = None
                self._timer_handler(n, when)
        finally:
            self._running = False
        return now

    def _timer_handler(self, n: _Neighbour, now: int) -> None:
        """neigh_timer_handler()."""
        p = self.parms
        state = n.state
        if not state & NUD_IN_TIMER:
            return
        retrans = max(_jiffies(p.retrans_time_ms), HZ // 100)
        delay = _jiffies(p.delay_first_probe_time_ms)
        reach = self._reach(n.dev.ifindex)
        nxt = now + HZ
        if state & NUD_REACHABLE:
            if now <= n.confirmed + reach:
                # "still alive": confirmed since the timer was set.
                nxt = n.confirmed + reach
            elif now <= n.used + delay:
                n.state = NUD_DELAY
                n.updated = now
                nxt = now + delay
            else:
                n.state = NUD_STALE
                n.updated = now
        elif state & NUD_DELAY:
            if now <= n.confirmed + delay:
                n.state = NUD_REACHABLE
                n.updated = now
                nxt = n.confirmed + reach
            else:
                n.state = NUD_PROBE
                n.updated = now
                n.probes = 0
                nxt = now + retrans
        else:
            nxt = now + retrans

        if n.state & (NUD_INCOMPLETE | NUD_PROBE) and n.probes >= self._max_probes(n):
            n.state = NUD_FAILED
            self._invalidate(n, now)
            return
        if n.state & NUD_IN_TIMER:
            nxt = max(nxt, now + HZ // 100)
            self._mod_timer(n, nxt)
        if n.state & (NUD_INCOMPLETE | NUD_PROBE):
            self._probe(n)

    def _max_probes(self, n: _Neighbour) -> int:
        """neigh_max_probes()."""
        p = self.parms
        multicast = p.mcast_resolicit if n.state & NUD_PROBE else p.mcast_solicit
        return p.ucast_solicit + p.app_solicit + multicast

    def _periodic_work(self, now: int) -> None:
        """neigh_periodic_work(): every base_reachable_time/2, redraw reachable_time each
        300 s and, from gc_thresh1 entries on, free entries unused for gc_stale_time or
        FAILED that no timer holds."""
        p = self.parms
        self.stats.periodic_gc_runs += 1
        if now > self._last_rand + 300 * HZ:
            self._last_rand = now
            self._tbl_reach = self._rand_reach()
            for ifindex in self._dev_reach:
                self._dev_reach[ifindex] = self._rand_reach()
        if len(self._tbl) >= p.gc_thresh1:
            stale = _jiffies(p.gc_stale_time_ms)
            for n in list(self._tbl.values()):
                if n.dead or n.state & (NUD_PERMANENT | NUD_IN_TIMER):
                    continue
                if n.used < n.confirmed <= now:
                    n.used = n.confirmed
                if n.timer is None and (n.state == NUD_FAILED or not n.used <= now < n.used + stale):
                    self._remove(n)
        # At least a jiffy: base_reachable_time 0 would make the kernel's work spin too.
        self._gc_next = now + max(_jiffies(p.base_reachable_time_ms) // 2, 1)

    def _mod_timer(self, n: _Neighbour, when: int) -> None:
        self._timer_seq += 1
        n.timer = when
        n.timer_seq = self._timer_seq
        heapq.heappush(self._timers, (when, self._timer_seq, n))

    def _add_timer(self, n: _Neighbour, when: int) -> None:
        """neigh_add_timer(): `used` is never before `confirmed` while a timer runs."""
        if n.used < n.confirmed:
            n.used = n.confirmed
        self._mod_timer(n, when)

    @staticmethod
    def _del_timer(n: _Neighbour) -> None:
        n.timer = None

    def _peek_timer(self) -> tuple[int, int, _Neighbour] | None:
        timers = self._timers
        while timers:
            _, seq, n = timers[0]
            if not n.dead and n.timer is not None and n.timer_seq == seq:
                return timers[0]
            heapq.heappop(timers)
        return None

    # The ip neigh commands.

    def add(self, dev: NetDevice, address: int, lladdr: bytes, state: int) -> int:
        """`ip neigh replace ADDR [lladdr LLADDR] dev DEV nud STATE` (neigh_add with
        NLM_F_CREATE|NLM_F_REPLACE): 0 or an errno. An empty lladdr is no lladdr."""
        now = self._catch_up()
        # iproute2's nud_state_a2n(): one NUD bit, or none.
        if not 0 <= state < 0x100 or state & (state - 1):
            return errno.EINVAL
        if not 0 <= address <= 0xFFFFFFFF:
            return errno.EINVAL
        ll: bytes | None = None
        if lladdr:
            if len(lladdr) > MAX_ADDR_LEN:
                return errno.ERANGE
            if len(lladdr) < ETH_ALEN:
                # "Invalid link address"; a longer one is cut to dev->addr_len.
                return errno.EINVAL
            ll = bytes(lladdr[:ETH_ALEN])
        n = self._lookup(dev, address)
        if n is None:
            n = self._create(dev, address, now, exempt_from_gc=bool(state & NUD_PERMANENT))
            if n is None:
                return errno.ENOBUFS
        # A valid state without lladdr on an entry that has none fails with EINVAL ("No
        # link layer address given") and, as in the kernel, leaves the entry NUD_NONE.
        return self._update(n, ll, state, NEIGH_UPDATE_F_ADMIN | NEIGH_UPDATE_F_OVERRIDE, now)

    def delete(self, dev: NetDevice, address: int) -> int:
        """`ip neigh del ADDR dev DEV` (neigh_delete): the entry goes FAILED, which
        drops what it held with NEIGH_FAILED as a failed resolution does, then goes;
        ENOENT when there is none."""
        now = self._catch_up()
        n = self._lookup(dev, address)
        if n is None:
            return errno.ENOENT
        return self._delete(n, now)

    def _delete(self, n: _Neighbour, now: int) -> int:
        err = self._update(n, None, NUD_FAILED, NEIGH_UPDATE_F_OVERRIDE | NEIGH_UPDATE_F_ADMIN, now)
        if not n.dead:
            self._remove(n)
        return err

    def flush(self, dev: NetDevice | None) -> int:
        """`ip neigh flush dev DEV` (`ip neigh flush all` for None): iproute2 deletes
        every entry but PERMANENT and NOARP ones (FAILED and NONE ones too; checked
        with iproute2 6.1 on Linux 6.18), one RTM_DELNEIGH each. Returns how many."""
        now = self._catch_up()
        victims = [
            n
            for n in self._tbl.values()
            if (dev is None or n.dev.ifindex == dev.ifindex)
            and (n.state & ~_FLUSH_KEEPS or n.state == NUD_NONE)
        ]
        flushed = 0
        for n in victims:
            if n.dead:
                continue
            # neigh_delete() finds it with neigh_lookup().
            self.stats.lookups += 1
            self.stats.hits += 1
            self._delete(n, now)
            flushed += 1
        return flushed

    def ifdown(self, dev: NetDevice) -> int:
        """neigh_ifdown() (arp_ifdown, the device went down): every entry of dev goes,
        PERMANENT too; what they held is dropped with QUEUE_PURGE."""
        return self._flush_dev(dev, skip_perm=False)

    def carrier_down(self, dev: NetDevice) -> int:
        """neigh_carrier_down() (NETDEV_CHANGE without carrier, arp_evict_nocarrier 1):
        like ifdown() but PERMANENT entries stay."""
        return self._flush_dev(dev, skip_perm=True)

    def _flush_dev(self, dev: NetDevice, skip_perm: bool) -> int:
        self._catch_up()
        victims = [
            n
            for n in self._tbl.values()
            if n.dev.ifindex == dev.ifindex and not (skip_perm and n.state & NUD_PERMANENT)
        ]
        for n in victims:
            self._remove(n)
        return len(victims)

    def entries(self) -> list[Neigh]:
        """`ip -s neigh show nud all`, in creation order."""
        now = self._catch_up()
        return [
            Neigh(
                ifindex=n.dev.ifindex,
                address=n.key,
                lladdr=n.ha if n.state & NUD_VALID else b"",
                state=n.state,
                queued=len(n.arp_queue),
                probes=n.probes,
                used=(now - n.used) / HZ,
                confirmed=(now - n.confirmed) / HZ,
                updated=(now - n.updated) / HZ,
            )
            for n in self._tbl.values()
        ]

    def proc_stat(self) -> dict[str, int]:
        """The /proc/net/stat/arp_cache row, by its header's names."""
        s = self.stats
        return {
            "entries": len(self._tbl),
            "allocs": s.allocs,
            "destroys": s.destroys,
            "hash_grows": s.hash_grows,
            "lookups": s.lookups,
            "hits": s.hits,
            "res_failed": s.res_failed,
            "rcv_probes_mcast": s.rcv_probes_mcast,
            "rcv_probes_ucast": s.rcv_probes_ucast,
            "periodic_gc_runs": s.periodic_gc_runs,
            "forced_gc_runs": s.forced_gc_runs,
            "unresolved_discards": s.unresolved_discards,
            "table_fulls": s.table_fulls,
        }

    # The state machine.

    def _resolve_output(self, n: _Neighbour, skb: SkBuff, now: int) -> bytes | None:
        """neigh_resolve_output(): the MAC once neigh_event_send lets the skb go."""
        if self._event_send(n, skb, now):
            return None
        # neigh_hh_init(): eth_header_cache fills the header cache once.
        n.hh = True
        return n.ha

    def _event_send(self, n: _Neighbour, skb: SkBuff | None, now: int) -> bool:
        """neigh_event_send → __neigh_event_send(): True when the skb was taken (queued
        or dropped), False when it may go now."""
        n.used = now
        if n.state & (NUD_CONNECTED | NUD_DELAY | NUD_PROBE):
            return False
        if n.dead:
            if n.state & NUD_STALE:
                return False
            if skb is not None:
                self._drops.drop(SkbDropReason.NEIGH_DEAD, "__neigh_event_send")
                self._free(skb, False)
            return True
        p = self.parms
        immediate_probe = False
        if not n.state & (NUD_STALE | NUD_INCOMPLETE):
            if p.mcast_solicit + p.app_solicit:
                # NONE or FAILED: resolution (re)starts with a request at once.
                n.probes = p.ucast_solicit
                self._del_timer(n)
                n.state = NUD_INCOMPLETE
                n.updated = now
                immediate_probe = True
                self._add_timer(n, now + max(_jiffies(p.retrans_time_ms), HZ // 100))
            else:
                n.state = NUD_FAILED
                n.updated = now
                if skb is not None:
                    self._drops.drop(SkbDropReason.NEIGH_FAILED, "__neigh_event_send")
                    self._free(skb, False)
                return True
        elif n.state & NUD_STALE:
            self._del_timer(n)
            n.state = NUD_DELAY
            n.updated = now
            self._add_timer(n, now + _jiffies(p.delay_first_probe_time_ms))

        taken = False
        if n.state == NUD_INCOMPLETE:
            if skb is not None:
                # The arp_queue is bounded by truesize; the oldest make room.
                while n.arp_queue and n.arp_queue_len_bytes + skb.truesize > p.unres_qlen_bytes:
                    old = n.arp_queue.popleft()
                    n.arp_queue_len_bytes -= old.truesize
                    self._drops.drop(SkbDropReason.NEIGH_QUEUEFULL, "__neigh_event_send")
                    self._free(old, False)
                    self.stats.unresolved_discards += 1
                n.arp_queue.append(skb)
                n.arp_queue_len_bytes += skb.truesize
            taken = True
        if immediate_probe:
            self._probe(n)
        return taken

    def _update(self, n: _Neighbour, lladdr: bytes | None, new: int, flags: int, now: int) -> int:
        """__neigh_update(): 0 or an errno. lladdr None is "not supplied"."""
        old = n.state
        if n.dead:
            return errno.EPERM
        if not flags & NEIGH_UPDATE_F_ADMIN and old & (NUD_NOARP | NUD_PERMANENT):
            return errno.EPERM

        if not new & NUD_VALID:
            self._del_timer(n)
            n.state = new
            if old & (NUD_INCOMPLETE | NUD_PROBE) and new & NUD_FAILED:
                self._invalidate(n, now)
            if (new ^ old) & NUD_PERMANENT:
                self._update_gc_list(n)
            return 0

        # `same` is the kernel's lladdr == neigh->ha: the address is the one cached.
        if lladdr is not None:
            same = bool(old & NUD_VALID) and lladdr == n.ha
        else:
            if not old & NUD_VALID:
                return errno.EINVAL
            lladdr = n.ha
            same = True

        # confirmed moves with any ARP packet, even one that changes nothing.
        if new & NUD_CONNECTED:
            n.confirmed = now

        if old & NUD_VALID:
            if not same and not flags & NEIGH_UPDATE_F_OVERRIDE:
                if flags & NEIGH_UPDATE_F_WEAK_OVERRIDE and old & NUD_CONNECTED:
                    lladdr, same = n.ha, True
                    new = NUD_STALE
                else:
                    return 0
            elif same and new == NUD_STALE and not flags & NEIGH_UPDATE_F_ADMIN:
                # A valid entry with the same address is not made STALE.
                new = old

        if new != old or not same:
            n.updated = now
        if new != old:
            self._del_timer(n)
            if new & NUD_PROBE:
                n.probes = 0
            if new & NUD_IN_TIMER:
                self._add_timer(n, now + (self._reach(n.dev.ifindex) if new & NUD_REACHABLE else 0))
            n.state = new
        if not same:
            n.ha = lladdr
            if not new & NUD_CONNECTED:
                n.confirmed = now - (_jiffies(self.parms.base_reachable_time_ms) << 1)
        if new == old:
            return 0
        if (new ^ old) & NUD_PERMANENT:
            self._update_gc_list(n)
        if not old & NUD_VALID:
            self._process_arp_queue(n, now)
        return 0

    def _process_arp_queue(self, n: _Neighbour, now: int) -> None:
        """neigh_update_process_arp_queue(): the held skbs go, in order, through the
        entry's output (neigh_resolve_output, so STALE becomes DELAY)."""
        while n.state & NUD_VALID and not n.dead and n.arp_queue:
            skb = n.arp_queue.popleft()
            lladdr = self._resolve_output(n, skb, now)
            if lladdr is not None:
                self._xmit_resolved(n.dev, skb, lladdr)
        if n.arp_queue:
            self._drops.drop(SkbDropReason.QUEUE_PURGE, "__neigh_update", len(n.arp_queue))
            self._purge(n)
        n.arp_queue_len_bytes = 0

    def _invalidate(self, n: _Neighbour, now: int) -> None:
        """neigh_invalidate(): resolution failed; each held skb gets arp_error_report."""
        self.stats.res_failed += 1
        n.updated = now
        while n.state == NUD_FAILED and n.arp_queue:
            skb = n.arp_queue.popleft()
            if self._link_failure is not None:
                self._link_failure(n.dev, skb)
            self._drops.drop(SkbDropReason.NEIGH_FAILED, "arp_error_report")
            self._free(skb, False)
        if n.arp_queue:
            self._drops.drop(SkbDropReason.QUEUE_PURGE, "neigh_invalidate", len(n.arp_queue))
            self._purge(n)
        n.arp_queue_len_bytes = 0

    def _probe(self, n: _Neighbour) -> None:
        """neigh_probe(): solicit with the newest held skb, then count the probe."""
        self._solicit(n, n.arp_queue[-1] if n.arp_queue else None)
        n.probes += 1

    def _solicit(self, n: _Neighbour, skb: SkBuff | None) -> None:
        """arp_solicit(): the first ucast_solicit probes go unicast to the cached address
        (PROBE counts from 0), later ones broadcast (INCOMPLETE counts from
        ucast_solicit, so all of its requests are broadcast)."""
        p = self.parms
        dev = n.dev
        target = n.key
        saddr = 0
        # arp_announce 0: the held skb's source if it is local on this device.
        if skb is not None:
            src = _ip_saddr(skb)
            if src is not None and self._addr_type(dev.ifindex, src) == RTN_LOCAL:
                saddr = src
        if not saddr:
            saddr = self._select_addr(dev.ifindex, target)
        probes = n.probes - p.ucast_solicit
        dest_hw: bytes | None = None
        if probes < 0:
            dest_hw = n.ha
        elif probes - p.app_solicit < 0:
            # neigh_app_ns(): ask arpd over netlink; there is none.
            return
        self._arp_send(ARPOP_REQUEST, target, dev, saddr, dest_hw, dev.dev_addr, None)

    def _arp_send(
        self,
        op: int,
        dest_ip: int,
        dev: NetDevice,
        src_ip: int,
        dest_hw: bytes | None,
        src_hw: bytes | None,
        target_hw: bytes | None,
    ) -> None:
        """arp_send_dst → arp_create: no dest_hw is broadcast, no target_hw zeros."""
        if dev.flags & IFF_NOARP:
            return
        sha = src_hw if src_hw is not None else dev.dev_addr
        frame = bytearray(ETH_HLEN + ARP_LEN)
        eth_dst = dest_hw if dest_hw is not None else BROADCAST_MAC
        tha = target_hw if target_hw is not None else ZERO_MAC
        EthernetRepr(dst=eth_dst, src=sha, ethertype=ETH_P_ARP).emit(frame)
        ArpRepr(op, sha, src_ip, tha, dest_ip).emit(frame, ETH_HLEN)
        if op == ARPOP_REQUEST:
            self.arp_stats.requests_sent += 1
        else:
            self.arp_stats.replies_sent += 1
        self._send_frame(dev, bytes(frame))

    # Entries.

    def _lookup(self, dev: NetDevice, key: int) -> _Neighbour | None:
        """neigh_lookup(), which counts lookups and hits."""
        self.stats.lookups += 1
        n = self._tbl.get((dev.ifindex, key))
        if n is not None:
            self.stats.hits += 1
        return n

    def _create(self, dev: NetDevice, key: int, now: int, exempt_from_gc: bool) -> _Neighbour | None:
        """___neigh_create() with arp_constructor(); None when the table is full."""
        if not self._neigh_alloc(exempt_from_gc, now):
            return None
        if dev.flags & IFF_LOOPBACK:
            key = 0
        existing = self._tbl.get((dev.ifindex, key))
        if existing is not None:
            # Found under the table lock: the new one is released.
            self.stats.destroys += 1
            return existing
        n = _Neighbour(dev, key, now)
        n.type = self._addr_type(dev.ifindex, key)
        if n.type == RTN_MULTICAST:
            n.state = NUD_NOARP
            n.ha = ip_eth_mc_map(key)
        elif dev.flags & (IFF_NOARP | IFF_LOOPBACK):
            n.state = NUD_NOARP
            n.ha = bytes(dev.dev_addr)
        elif n.type == RTN_BROADCAST:
            n.state = NUD_NOARP
            n.ha = BROADCAST_MAC
        self._reach(dev.ifindex)
        n.confirmed = now - (_jiffies(self.parms.base_reachable_time_ms) << 1)
        if len(self._tbl) + 1 > 1 << self._hash_shift:
            self._hash_shift += 1
            self.stats.hash_grows += 1
        self._tbl[(dev.ifindex, key)] = n
        if not exempt_from_gc:
            self._gc_list[(dev.ifindex, key)] = n
        return n

    def _neigh_alloc(self, exempt_from_gc: bool, now: int) -> bool:
        """neigh_alloc(): past gc_thresh3 entries (or gc_thresh2 and 5 s since the last
        flush) the forced gc runs first; if it frees nothing at gc_thresh3, no entry."""
        if not exempt_from_gc:
            p = self.parms
            entries = len(self._gc_list)
            pressed = entries >= p.gc_thresh3 or (entries >= p.gc_thresh2 and now > self._last_flush + 5 * HZ)
            if pressed and not self._forced_gc(entries + 1, now) and entries >= p.gc_thresh3:
                self.stats.table_fulls += 1
                return False
        self.stats.allocs += 1
        return True

    def _forced_gc(self, gc_entries: int, now: int) -> int:
        """neigh_forced_gc(): oldest first, free entries no timer holds that are FAILED,
        NOARP, multicast or not updated in the last 5 s, down to gc_thresh2."""
        self.stats.forced_gc_runs += 1
        max_clean = gc_entries - self.parms.gc_thresh2
        tref = now - 5 * HZ
        shrunk = 0
        for n in list(self._gc_list.values()):
            if n.timer is not None:
                continue
            if (
                n.state == NUD_FAILED
                or n.state == NUD_NOARP
                or ipv4_is_multicast(n.key)
                or not tref <= n.updated <= now
            ):
                self._remove(n)
                shrunk += 1
            if shrunk >= max_clean:
                break
        self._last_flush = now
        return shrunk

    def _remove(self, n: _Neighbour) -> None:
        """Out of the table and destroyed (neigh_remove_one, neigh_flush_one →
        neigh_destroy): anything still held is purged."""
        key = (n.dev.ifindex, n.key)
        del self._tbl[key]
        self._gc_list.pop(key, None)
        n.dead = True
        self._del_timer(n)
        if n.arp_queue:
            self._drops.drop(SkbDropReason.QUEUE_PURGE, "neigh_destroy", len(n.arp_queue))
            self._purge(n)
        n.arp_queue_len_bytes = 0
        self.stats.destroys += 1

    def _purge(self, n: _Neighbour) -> None:
        """__skb_queue_purge(&neigh->arp_queue): every held skb is freed."""
        while n.arp_queue:
            self._free(n.arp_queue.popleft(), False)

    def _update_gc_list(self, n: _Neighbour) -> None:
        """neigh_update_gc_list(): PERMANENT entries are exempt from the forced gc."""
        if n.dead:
            return
        key = (n.dev.ifindex, n.key)
        on_list = key in self._gc_list
        if n.state & NUD_PERMANENT and on_list:
            del self._gc_list[key]
        elif not n.state & NUD_PERMANENT and not on_list:
            self._gc_list[key] = n

    # Addresses and routes, as ARP asks the FIB.

    def _add_local_route(self, prefix: int, prefixlen: int, rtn: int, ifindex: int) -> None:
        self._local.setdefault(prefixlen, {}).setdefault(prefix, (rtn, ifindex))

    def _local_lookup(self, addr: int) -> tuple[int, int] | None:
        for plen in self._local_lens:
            route = self._local[plen].get(addr & _mask(plen))
            if route is not None:
                return route
        return None

    def _addr_type(self, ifindex: int, addr: int) -> int:
        """inet_addr_type_dev_table(): the local table's answer when its route is on this
        device, else RTN_UNICAST (an address of another device is unicast here)."""
        if ipv4_is_zeronet(addr) or ipv4_is_lbcast(addr):
            return RTN_BROADCAST
        if ipv4_is_multicast(addr):
            return RTN_MULTICAST
        route = self._local_lookup(addr)
        if route is not None and route[1] == ifindex:
            return route[0]
        return RTN_UNICAST

    def _route_input_local(self, sip: int, tip: int) -> bool:
        """Does ip_route_input_noref(skb, tip, sip, 0, dev) give RTN_LOCAL? tip must be a
        local address (of any device) and sip no martian; with rp_filter 0,
        fib_validate_source() still calls one of our own addresses martian."""
        if ipv4_is_multicast(sip) or ipv4_is_lbcast(sip) or ipv4_is_zeronet(sip):
            return False
        if ipv4_is_lbcast(tip) or ipv4_is_zeronet(tip):
            return False
        if ipv4_is_loopback(tip) or ipv4_is_loopback(sip):
            return False
        route = self._local_lookup(tip)
        if route is None or route[0] != RTN_LOCAL:
            return False
        return not any(ifa.local == sip for ifa in self._ifas)

    def _select_addr(self, ifindex: int, dst: int) -> int:
        """inet_select_addr(dev, dst, RT_SCOPE_LINK): the device's primary address in
        dst's subnet, else its first primary, else the first of any device (lo first);
        never a host-scope (127/8) one."""
        first = 0
        for ifa in self._ifas:
            if ifa.ifindex != ifindex or ifa.secondary or ifa.host_scope:
                continue
            if not (dst ^ ifa.local) & ifa.mask:
                return ifa.local
            first = first or ifa.local
        if first:
            return first
        for index in sorted({ifa.ifindex for ifa in self._ifas}):
            for ifa in self._ifas:
                if ifa.ifindex == index and not ifa.secondary and not ifa.host_scope:
                    return ifa.local
        return 0

    # Time and chance.

    def _now(self) -> int:
        return math.floor(self._clock() * HZ + 0.5)

    def _rand_reach(self) -> int:
        """neigh_rand_reach_time(): uniform in [base/2, 3*base/2)."""
        base = _jiffies(self.parms.base_reachable_time_ms)
        return self._rng.randrange(base) + (base >> 1) if base > 0 else 0

    def _reach(self, ifindex: int) -> int:
        reach = self._dev_reach.get(ifindex)
        if reach is None:
            reach = self._dev_reach[ifindex] = self._rand_reach()
        return reach


def _no_free(skb: SkBuff, enobufs: bool) -> None:
    return None


def _ip_saddr(skb: SkBuff) -> int | None:
    """ip_hdr(skb)->saddr of a held skb, None if its header is not all there."""
    nh = skb.network_header if skb.network_header != HEADER_UNSET else skb.data
    if nh + 16 > skb.tail:
        return None
    return int.from_bytes(skb.head[nh + 12 : nh + 16], "big")
