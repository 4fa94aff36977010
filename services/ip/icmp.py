"""ICMP (net/ipv4/icmp.c of Linux 6.x): errors sent about received or unsendable
packets (__icmp_send), and what arrives (icmp_rcv: echo and timestamp answered, errors
handed to the quoted protocol's err_handler, the rest counted and consumed).

Icmp owns no sockets. What it sends goes to `output`, the IP layer's ip_send_skb: an
skb whose data is the whole ICMP message (checksum done), with skb.cork and skb.dst as
icmp_push_reply() hands them to ip_push_pending_frames(). The cork's `daddr` is the
final destination (ipc.addr) and its `options` the compiled reply options (their
__data), whose struct ip_options rides in IPCB(skb) (cb); ip_options_from_cork() reads
the two back for ip_options_build(). With a source route the packet goes to opt.faddr,
the first hop, where skb.dst leads. Errors received go to `deliver_err`,
icmp_socket_deliver(): the skb's data at the quoted IP header, its transport header at
the ICMP header and its network header at the outer IP header.

Time is jiffies at the emulated HZ taken from `clock_ns` (monotonic), and
CLOCK_REALTIME from `realtime_ns` for timestamps.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from typing import Final

from services.core.checksum import csum_fold, csum_partial
from services.core.dropreason import DropStats, SkbDropReason
from services.core.ipcb import InetSkbParm, IpOptions, ipcb, set_ipcb
from services.core.skbuff import (
    CHECKSUM_UNNECESSARY,
    HEADER_UNSET,
    PACKET_HOST,
    Dst,
    IpCork,
    SkBuff,
    alloc_skb,
)
from services.core.snmp import SnmpMib
from services.core.sysctl import HZ, Sysctl
from services.core.wire.icmp import (
    ICMP_ADDRESS,
    ICMP_ADDRESSREPLY,
    ICMP_DEST_UNREACH,
    ICMP_ECHO,
    ICMP_ECHOREPLY,
    ICMP_EXC_FRAGTIME,
    ICMP_EXT_ECHO,
    ICMP_EXT_ECHOREPLY,
    ICMP_FRAG_NEEDED,
    ICMP_HLEN,
    ICMP_PARAMETERPROB,
    ICMP_REDIRECT,
    ICMP_SOURCE_QUENCH,
    ICMP_TIME_EXCEEDED,
    ICMP_TIMESTAMP,
    ICMP_TIMESTAMPREPLY,
    NR_ICMP_TYPES,
    NR_ICMP_UNREACH,
)
from services.core.wire.ipv4 import IP_OFFSET, IPPROTO_ICMP, IPPROTO_TCP
from services.ip.fib import RTN_BROADCAST, RTN_LOCAL
from services.ip.options import (
    RTN_MULTICAST,
    inet_addr_type,
    inet_current_timestamp,
    ip_options_echo,
)
from services.ip.route import RTCF_BROADCAST, RTCF_LOCAL, RouteError, Router

# include/uapi/linux/ip.h, include/net/route.h
IPTOS_TOS_MASK: Final = 0x1E
IPTOS_PREC_INTERNETCONTROL: Final = 0xC0
RTCF_MULTICAST: Final = 0x20000000
# include/uapi/linux/in.h: 192.0.0.8, the source of last resort (RFC 7600).
INADDR_DUMMY: Final = 0xC0000008
IP_PMTUDISC_DONT: Final = 0  # icmp_init(): the ICMP sockets never set DF

# icmp_pointers[type].error: the types that are error messages (1, 2, 6, 7, 9 and 10
# are unassigned or obsolete and treated as errors too).
_ERROR_TYPES: Final = frozenset({1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12})

# inet_protos[proto]->icmp_strict_tag_validation: only TCP sets it.
_STRICT_TAG_PROTOCOLS: Final = frozenset({IPPROTO_TCP})

# RFC 1812 4.3.2.3, __icmp_send(): an error quotes as much as fits in 576 bytes.
_ICMP_ERROR_MAX: Final = 576
_IPH: Final = 20
_IP_MAX: Final = 0xFFFF
# Room for the IP header (with options) and a link-layer header in front of the message.
_HEADROOM: Final = 128

# net/ipv4/inetpeer.c
XRLIM_BURST_FACTOR: Final = 6
_PEER_THRESHOLD: Final = 65536 + 128  # inet_peer_threshold
_PEER_MAXTTL_S: Final = 10 * 60  # inet_peer_maxttl

_BE32 = struct.Struct("!I")
_BE16 = struct.Struct("!H")

OutputFn = Callable[[SkBuff], None]
DeliverErrFn = Callable[[SkBuff, int, int, int], None]


class _Peer:
    """The part of struct inet_peer that icmpv4_xrlim_allow() uses."""

    __slots__ = ("rate_last", "rate_tokens")

    def __init__(self, now: int) -> None:
        self.rate_tokens = 0
        # inet_getpeer(): "60*HZ is arbitrary, but chosen enough high so that the first
        # calculation of rate_tokens in inet_peer_xrlim_allow() will not be too high."
        self.rate_last = now - 60 * HZ


def msecs_to_jiffies(ms: int) -> int:
    return (ms * HZ + 999) // 1000


class Icmp:
    """One host's ICMP: __icmp_send() and icmp_rcv(), with the kernel's counters (Icmp,
    IcmpMsg), rate limits and drop reasons.

    `output(skb)` is the IP layer's ip_send_skb (see the module doc for what the skb
    carries; OutMsgs and OutType are already counted, as __ip_make_skb counts them).
    `deliver_err(skb, type, code, info)` is icmp_socket_deliver() → the protocol's
    err_handler; it is called for whatever protocol the quoted header names and takes
    the skb. `rand_below(n)` is get_random_u32_below(n) (icmp_global_consume).
    """

    def __init__(
        self,
        sysctl: Sysctl,
        mib: SnmpMib,
        drops: DropStats,
        router: Router,
        output: OutputFn,
        deliver_err: DeliverErrFn,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        *,
        realtime_ns: Callable[[], int] = time.time_ns,
        rand_below: Callable[[int], int] = random.randrange,
    ) -> None:
        self.sysctl = sysctl
        self.mib = mib
        self.drops = drops
        self.router = router
        self._output = output
        self._deliver_err = deliver_err
        self._clock_ns = clock_ns
        self._realtime_ns = realtime_ns
        self._rand_below = rand_below
        # net->ipv4.icmp_global_credit and icmp_global_stamp (zero in a new netns; a
        # stamp of None reads as "long ago", as jiffies far from 0 do).
        self._global_credit = 0
        self._global_stamp: int | None = None
        self._peers: dict[int, _Peer] = {}
        self._handlers: dict[int, Callable[[SkBuff], SkbDropReason | None]] = {
            ICMP_DEST_UNREACH: self._icmp_unreach,
            ICMP_SOURCE_QUENCH: self._icmp_unreach,
            ICMP_REDIRECT: self._icmp_redirect,
            ICMP_ECHO: self._icmp_echo,
            ICMP_TIME_EXCEEDED: self._icmp_unreach,
            ICMP_PARAMETERPROB: self._icmp_unreach,
            ICMP_TIMESTAMP: self._icmp_timestamp,
        }

    # Time and rate limits.

    def _jiffies(self) -> int:
        return self._clock_ns() * HZ // 1_000_000_000

    def _addr_type(self, addr: int) -> int:
        return inet_addr_type(self.router.fib, addr)

    def _mask_allow(self, icmp_type: int, code: int) -> bool:
        """icmpv4_mask_allow(): types outside icmp_ratemask, and PMTU discovery's
        fragmentation needed, are never rate limited."""
        if icmp_type > NR_ICMP_TYPES:
            return True
        if icmp_type == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED:
            return True
        return not (1 << icmp_type) & self.sysctl.get_int("net.ipv4.icmp_ratemask")

    def icmp_global_allow(self) -> bool:
        """icmp_global_allow(): the host-wide token bucket, icmp_msgs_per_sec refilled at
        most every HZ/50 jiffies, capped at icmp_msgs_burst."""
        if self._global_credit > 0:
            return True
        now = self._jiffies()
        stamp = self._global_stamp
        delta = HZ if stamp is None else min((now - stamp) & 0xFFFFFFFF, HZ)
        if delta < HZ // 50:
            return False
        incr = self.sysctl.get_int("net.ipv4.icmp_msgs_per_sec") * delta // HZ
        if not incr:
            return False
        self._global_stamp = now
        self._global_credit = min(self._global_credit + incr, self.sysctl.get_int("net.ipv4.icmp_msgs_burst"))
        return True

    def _global_consume(self) -> None:
        """icmp_global_consume(): 0, 1 or 2 credits at random, 1 on average (the credit
        may go negative)."""
        self._global_credit -= self._rand_below(3)

    def _global_allow(self, icmp_type: int, code: int) -> tuple[bool, bool]:
        """icmpv4_global_allow(): (allowed, apply_ratelimit)."""
        if self._mask_allow(icmp_type, code):
            return True, False
        if self.icmp_global_allow():
            return True, True
        self.mib.icmp.inc("OutRateLimitGlobal")
        return False, False

    def _getpeer(self, daddr: int, now: int) -> _Peer:
        """inet_getpeer_v4(); peers unused for inet_peer_maxttl are forgotten once the
        table holds inet_peer_threshold of them (inet_peer_gc)."""
        peer = self._peers.get(daddr)
        if peer is None:
            if len(self._peers) >= _PEER_THRESHOLD:
                ttl = _PEER_MAXTTL_S * HZ
                self._peers = {a: p for a, p in self._peers.items() if now - p.rate_last < ttl}
                if len(self._peers) >= _PEER_THRESHOLD:
                    del self._peers[min(self._peers, key=lambda a: self._peers[a].rate_last)]
            peer = self._peers[daddr] = _Peer(now)
        return peer

    def _xrlim_allow(self, dst: Dst, daddr: int, apply_ratelimit: bool) -> bool:
        """icmpv4_xrlim_allow(): the per-destination token bucket (inet_peer_xrlim_allow,
        icmp_ratelimit per message, bursts of XRLIM_BURST_FACTOR); a reply through the
        loopback device is exempt but still takes global credit."""
        if not apply_ratelimit:
            return True
        rc = True
        if dst.ifindex != self.router.fib.loopback_ifindex:
            now = self._jiffies()
            peer = self._getpeer(daddr, now)
            timeout = msecs_to_jiffies(self.sysctl.get_int("net.ipv4.icmp_ratelimit"))
            token = peer.rate_tokens
            delta = now - peer.rate_last
            if delta:
                peer.rate_last = now
                token = min(token + delta, XRLIM_BURST_FACTOR * timeout)
            rc = token >= timeout
            if rc:
                token -= timeout
            peer.rate_tokens = token
        if rc:
            self._global_consume()
        else:
            self.mib.icmp.inc("OutRateLimitHost")
        return rc

    # Sending.

    def _echo_options(self, skb: SkBuff) -> IpOptions | None:
        """__ip_options_echo() of the packet at skb's network header with IPCB(skb)->opt;
        None where the kernel's echo fails (no ICMP is sent)."""
        sopt = ipcb(skb.cb).opt
        nh = skb.network_header
        # Only the header's own option area: an IPCB that claims more is refused.
        header = skb.head[nh : min(skb.tail, nh + (skb.head[nh] & 0x0F) * 4)]
        try:
            return ip_options_echo(header, sopt, addr_type=self._addr_type)
        except OSError:
            return None

    def _route(self, daddr: int, saddr: int, tos: int) -> tuple[Dst, int] | None:
        """ip_route_output_key() for the reply (flowi4_tos from the TOS; the mark is
        IP4_REPLY_MARK, 0 without fwmark_reflect). Router._output leaves out the
        OutNoRoutes count that belongs to udp_sendmsg(), not to ICMP."""
        try:
            return self.router._output(daddr, saddr, 0, tos)
        except RouteError:
            return None

    def _push_reply(
        self,
        message: bytearray,
        saddr: int,
        daddr: int,
        tos: int,
        dst: Dst,
        options: IpOptions,
    ) -> None:
        """icmp_push_reply(): checksum the message and hand it to ip_push_pending_frames
        (output). ip_append_data() refuses more than 64 KiB with the IP header."""
        if len(message) > _IP_MAX - (_IPH + options.optlen):
            self.mib.icmp.inc("OutErrors")
            return
        message[2:4] = b"\0\0"
        _BE16.pack_into(message, 2, csum_fold(csum_partial(message)))
        skb = alloc_skb(len(message), _HEADROOM)
        skb.put_data(message)
        skb.reset_transport_header()
        skb.cork = IpCork(
            saddr=saddr,
            daddr=daddr,
            protocol=IPPROTO_ICMP,
            ttl=self.sysctl.get_int("net.ipv4.ip_default_ttl"),
            tos=tos,
            pmtudisc=IP_PMTUDISC_DONT,
            options=options.data,
        )
        # ipc.opt: the compiled reply options travel as IPCB(skb)->opt beside their
        # bytes in the cork (ip_options_from_cork reads them back).
        if options.optlen:
            set_ipcb(skb.cb, InetSkbParm(opt=options))
        skb.dst = dst
        # __ip_make_skb() → icmp_out_count().
        self.mib.icmpmsg.inc_out(message[0])
        self.mib.icmp.inc("OutMsgs")
        self._output(skb)

    def icmp_send(self, skb_in: SkBuff, icmp_type: int, code: int, info: int) -> None:
        """icmp_send() → __icmp_send(skb_in, type, code, htonl(info), &IPCB(skb_in)->opt).

        `skb_in` has the offending packet's IP header at network_header (data anywhere
        at or after it), its input or output route in dst, IPCB in cb, the receiving
        device in dev_ifindex and skb_iif (0 for a packet this host made). `info` is the
        32-bit rest-of-header in host order: the next-hop MTU for ICMP_FRAG_NEEDED,
        pointer << 24 for ICMP_PARAMETERPROB, the gateway for ICMP_REDIRECT, else 0.
        Nothing is sent about: a packet without a route, one whose header is not in
        the buffer, one not addressed to this host's link address (pkt_type), one
        routed as broadcast or multicast, a fragment other than the first, an ICMP
        error (or unknown ICMP type) when this is an error; nor when a rate limit says
        no, the options cannot be echoed, no route leads back, or the route's MTU
        leaves no room to quote an IP header. A martian source never gets here: the
        input route refuses the packet first (ip_route_input_slow)."""
        if not 0 <= icmp_type <= NR_ICMP_TYPES:
            raise ValueError(f"icmp_send: ICMP type {icmp_type} is not one the kernel sends")
        rt = skb_in.dst
        if rt is None:
            return
        nh = skb_in.network_header
        if nh == HEADER_UNSET or nh + _IPH > skb_in.tail:
            return
        head = skb_in.head
        ihl = (head[nh] & 0x0F) * 4
        tos, protocol = head[nh + 1], head[nh + 9]
        iph_saddr, iph_daddr = _BE32.unpack_from(head, nh + 12)[0], _BE32.unpack_from(head, nh + 16)[0]
        # RFC 1122 3.2.2: not to link-layer multicast or broadcast, ...
        if skb_in.pkt_type != PACKET_HOST:
            return
        # ... nor to IP broadcast or multicast, ...
        if rt.flags & (RTCF_BROADCAST | RTCF_MULTICAST) or rt.rt_type in (RTN_BROADCAST, RTN_MULTICAST):
            return
        # ... only about the first fragment, ...
        if _BE16.unpack_from(head, nh + 6)[0] & IP_OFFSET:
            return
        is_error = icmp_type in _ERROR_TYPES
        # ... and never an error about an error ("a mess would result").
        if is_error and protocol == IPPROTO_ICMP:
            inner = _skb_byte(skb_in, nh + ihl - skb_in.data)
            if inner is None or inner > NR_ICMP_TYPES or inner in _ERROR_TYPES:
                return
        apply_ratelimit = False
        # Errors about packets that came in on the loopback device skip the global
        # limit (and so the per-destination one).
        if skb_in.dev_ifindex != self.router.fib.loopback_ifindex:
            allowed, apply_ratelimit = self._global_allow(icmp_type, code)
            if not allowed:
                return
        saddr = iph_daddr
        if not (rt.flags & RTCF_LOCAL or rt.rt_type == RTN_LOCAL):
            saddr = 0
            # rt_is_input_route(): a packet that came in has skb_iif set.
            if skb_in.skb_iif and self.sysctl.get_int("net.ipv4.icmp_errors_use_inbound_ifaddr"):
                saddr = self.router.fib.select_addr(skb_in.skb_iif, iph_saddr)
        if is_error:
            tos = (tos & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL
        replyopts = self._echo_options(skb_in)
        if replyopts is None:
            return
        daddr = replyopts.faddr if replyopts.srr else iph_saddr
        routed = self._route(daddr, saddr, tos)
        if routed is None:
            return
        dst, src = routed
        if not self._xrlim_allow(dst, daddr, apply_ratelimit):
            return
        room = min(dst.mtu, _ICMP_ERROR_MAX) - _IPH - replyopts.optlen - ICMP_HLEN
        # Guard against a tiny MTU: the message must quote at least an IP header.
        if room <= _IPH:
            return
        quoted = _from_network_header(skb_in, room)
        message = bytearray(ICMP_HLEN)
        message[0], message[1] = icmp_type, code
        _BE32.pack_into(message, 4, info & 0xFFFFFFFF)
        message += quoted
        self._push_reply(message, src or INADDR_DUMMY, iph_saddr, tos, dst, replyopts)

    def _icmp_reply(self, skb: SkBuff, message: bytearray) -> None:
        """icmp_reply(): answer a request (echo, timestamp) to its sender, from the
        address it was sent to (fib_compute_spec_dst), with its TOS and options echoed."""
        replyopts = self._echo_options(skb)
        if replyopts is None:
            return
        allowed, apply_ratelimit = self._global_allow(message[0], message[1])
        if not allowed:
            return
        nh = skb.network_header
        tos = skb.head[nh + 1]
        iph_saddr = _BE32.unpack_from(skb.head, nh + 12)[0]
        saddr = self._spec_dst(skb)
        daddr = replyopts.faddr if replyopts.srr else iph_saddr
        routed = self._route(daddr, saddr, tos)
        if routed is None:
            return
        dst, src = routed
        if self._xrlim_allow(dst, daddr, apply_ratelimit):
            self._push_reply(message, src, iph_saddr, tos, dst, replyopts)

    def _spec_dst(self, skb: SkBuff) -> int:
        """fib_compute_spec_dst(): the IP layer leaves it in IPCB's spec_dst; failing
        that, a local (not broadcast) destination answers from itself."""
        spec = ipcb(skb.cb).spec_dst
        if spec:
            return spec
        nh = skb.network_header
        rt = skb.dst
        if rt is not None and rt.flags & (RTCF_BROADCAST | RTCF_MULTICAST | RTCF_LOCAL) == RTCF_LOCAL:
            return int(_BE32.unpack_from(skb.head, nh + 16)[0])
        return self.router.fib.select_addr(skb.skb_iif, _BE32.unpack_from(skb.head, nh + 12)[0])

    # Receiving.

    def icmp_rcv(self, skb: SkBuff) -> None:
        """icmp_rcv(): skb's data at the ICMP header, its network header at the IP header
        (IPCB in cb, the input route in dst). Takes the skb: it is answered, delivered to
        deliver_err, consumed or dropped with a reason."""
        mib = self.mib
        skb.reset_transport_header()
        mib.icmp.inc("InMsgs")
        # skb_checksum_simple_validate(): nothing to check once a device or loopback
        # vouched for it.
        if skb.ip_summed != CHECKSUM_UNNECESSARY and csum_fold(csum_partial(skb.payload())):
            mib.icmp.inc("InCsumErrors")
            mib.icmp.inc("InErrors")
            self.drops.drop(SkbDropReason.ICMP_CSUM, "icmp_rcv")
            return
        if skb.len < ICMP_HLEN:
            mib.icmp.inc("InErrors")
            self.drops.drop(SkbDropReason.NOT_SPECIFIED, "icmp_rcv")
            return
        if skb.headlen() < ICMP_HLEN:
            skb.linearize()
        skb.pull(ICMP_HLEN)
        icmp_type = skb.head[skb.transport_header]
        mib.icmpmsg.inc_in(icmp_type)
        reason: SkbDropReason | None
        if icmp_type == ICMP_EXT_ECHO:
            # PROBE (RFC 8335) goes to icmp_echo before the broadcast checks.
            reason = self._icmp_echo(skb)
        else:
            rt = skb.dst
            if rt is not None and (
                rt.flags & (RTCF_BROADCAST | RTCF_MULTICAST) or rt.rt_type in (RTN_BROADCAST, RTN_MULTICAST)
            ):
                # RFC 1122 3.2.2.6 and 3.2.2.8: echo and timestamp requests to broadcast
                # MAY be ignored (icmp_echo_ignore_broadcasts); nothing else is taken
                # from a broadcast but address mask messages.
                if icmp_type in (ICMP_ECHO, ICMP_TIMESTAMP) and self.sysctl.get_int(
                    "net.ipv4.icmp_echo_ignore_broadcasts"
                ):
                    return self._rcv_error(SkbDropReason.INVALID_PROTO)
                if icmp_type not in (ICMP_ECHO, ICMP_TIMESTAMP, ICMP_ADDRESS, ICMP_ADDRESSREPLY):
                    return self._rcv_error(SkbDropReason.INVALID_PROTO)
            if icmp_type in (ICMP_ECHOREPLY, ICMP_EXT_ECHOREPLY):
                # ping_rcv(): no ping socket (this stack has none) takes it.
                self.drops.drop(SkbDropReason.NO_SOCKET, "ping_rcv")
                return
            # RFC 1122 3.2.2: unknown types MUST be silently discarded.
            if icmp_type > NR_ICMP_TYPES:
                return self._rcv_error(SkbDropReason.UNHANDLED_PROTO)
            handler = self._handlers.get(icmp_type)
            # icmp_discard() for the rest: "pretend it was a success".
            reason = handler(skb) if handler is not None else None
        if reason is not None:
            self.drops.drop(reason, "icmp_rcv")

    def _rcv_error(self, reason: SkbDropReason) -> None:
        self.mib.icmp.inc("InErrors")
        self.drops.drop(reason, "icmp_rcv")

    def _icmp_unreach(self, skb: SkBuff) -> SkbDropReason | None:
        """icmp_unreach(): destination unreachable, source quench, time exceeded and
        parameter problem, checked and passed to the quoted protocol with their info."""
        if not self._may_pull(skb, _IPH):
            self.mib.icmp.inc("InErrors")
            return SkbDropReason.NOT_SPECIFIED
        head, th, inner = skb.head, skb.transport_header, skb.data
        if head[inner] & 0x0F < 5:
            self.mib.icmp.inc("InErrors")
            return SkbDropReason.IP_INHDR
        icmp_type, code = head[th], head[th + 1]
        info = 0
        if icmp_type == ICMP_DEST_UNREACH:
            if code & 15 == ICMP_FRAG_NEEDED:
                # Documentation/networking/ip-sysctl.rst, ip_no_pmtu_disc: 0 takes the
                # MTU, 2 ignores the message, 3 takes it only for protocols that check
                # it against their state (TCP), anything else delivers it without one.
                no_pmtu = self.sysctl.get_int("net.ipv4.ip_no_pmtu_disc")
                if no_pmtu == 2 or (no_pmtu == 3 and head[inner + 9] not in _STRICT_TAG_PROTOCOLS):
                    return None
                if no_pmtu in (0, 3):
                    info = _BE16.unpack_from(head, th + 6)[0]
            if code > NR_ICMP_UNREACH:
                return None
        elif icmp_type == ICMP_PARAMETERPROB:
            info = head[th + 4]
        elif icmp_type == ICMP_TIME_EXCEEDED and code == ICMP_EXC_FRAGTIME:
            # The kernel also counts ICMP_MIB_INTIMEEXCDS for every time exceeded, which
            # /proc never shows (the Icmp line's InTimeExcds is IcmpMsg InType11).
            return None
        # icmp_ignore_bogus_error_responses = 0: errors about a broadcast we sent are
        # refused (the default of 1 skips the check and delivers them).
        if not self.sysctl.get_int("net.ipv4.icmp_ignore_bogus_error_responses"):
            daddr = _BE32.unpack_from(head, inner + 16)[0]
            if inet_addr_type(self.router.fib, daddr, skb.dev_ifindex) == RTN_BROADCAST:
                return None
        self._socket_deliver(skb, info)
        return None

    def _icmp_redirect(self, skb: SkBuff) -> SkbDropReason | None:
        """icmp_redirect(): delivered with the gateway as info; the err_handler decides
        (udp_err only updates the route, ipv4_sk_redirect)."""
        if skb.len < _IPH:
            self.mib.icmp.inc("InErrors")
            return SkbDropReason.PKT_TOO_SMALL
        if not self._may_pull(skb, _IPH):
            return SkbDropReason.NOMEM
        self._socket_deliver(skb, _BE32.unpack_from(skb.head, skb.transport_header + 4)[0])
        return None

    def _socket_deliver(self, skb: SkBuff, info: int) -> None:
        """icmp_socket_deliver(): the quoted header plus 8 bytes of its protocol must be
        there, else InErrors (and the message is consumed)."""
        th = skb.transport_header
        if not self._may_pull(skb, (skb.head[skb.data] & 0x0F) * 4 + 8):
            self.mib.icmp.inc("InErrors")
            return
        self._deliver_err(skb, skb.head[th], skb.head[th + 1], info)

    def _icmp_echo(self, skb: SkBuff) -> SkbDropReason | None:
        """icmp_echo(): echo request → echo reply with the same code, id, sequence and
        data. An extended echo (PROBE) is answered only with icmp_echo_enable_probe,
        which this stack leaves at its default of 0."""
        if self.sysctl.get_int("net.ipv4.icmp_echo_ignore_all"):
            return None
        th = skb.transport_header
        if skb.head[th] != ICMP_ECHO:
            return None
        message = bytearray(skb.head[th : th + ICMP_HLEN])
        message[0] = ICMP_ECHOREPLY
        message += skb.payload()
        self._icmp_reply(skb, message)
        return None

    def _icmp_timestamp(self, skb: SkBuff) -> SkbDropReason | None:
        """icmp_timestamp(): the originate timestamp back, receive and transmit both now
        (ms since midnight UT)."""
        if skb.len < 4:
            self.mib.icmp.inc("InErrors")
            return SkbDropReason.PKT_TOO_SMALL
        th = skb.transport_header
        now = inet_current_timestamp(self._realtime_ns())
        message = bytearray(skb.head[th : th + ICMP_HLEN])
        message[0], message[1] = ICMP_TIMESTAMPREPLY, 0
        message += skb.payload()[:4] + _BE32.pack(now) + _BE32.pack(now)
        self._icmp_reply(skb, message)
        return None

    @staticmethod
    def _may_pull(skb: SkBuff, n: int) -> bool:
        """pskb_may_pull()."""
        if n > skb.len:
            return False
        if n > skb.headlen():
            skb.linearize()
        return True


def _skb_byte(skb: SkBuff, offset: int) -> int | None:
    """skb_header_pointer() of one byte at `offset` from skb->data (negative reaches
    back into the headers)."""
    if offset < 0:
        at = skb.data + offset
        return skb.head[at] if at >= 0 else None
    if offset < skb.headlen():
        return skb.head[skb.data + offset]
    if offset < skb.len:
        return skb.payload()[offset]
    return None


def _from_network_header(skb: SkBuff, room: int) -> bytes:
    """What __icmp_send quotes: skb->len - skb_network_offset() bytes from the network
    header, at most `room`."""
    offset = skb.network_header - skb.data
    if offset >= 0:
        return skb.payload()[offset : offset + room]
    prefix = bytes(skb.head[skb.network_header : skb.data])
    return (prefix + skb.payload())[:room]
