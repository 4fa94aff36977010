"""A per-flow ledger of datagrams sent, delivered and dropped: the emulator's check of
the rule "sent = delivered + the sum of drops" for every UDP flow.

The kernel has no such ledger; its drop monitor (net/core/drop_monitor.c) and the
skb:kfree_skb tracepoint report a drop's reason and location with the packet, and a
tool that wants flows parses the headers itself (dropwatch -l kas, bpftrace on
kfree_skb). This module does the same at each drop point that holds the skb: the IPv4
header at skb->network_header (or after the Ethernet header at skb->mac_header or
skb->data, before eth_type_trans has run), then the UDP ports; where no skb exists (a
frame the RX ring had no descriptor for) it reads the Ethernet frame. A drop before any
of that is "unattributed", as are drops of fragments after the first (no ports) and of
anything that is not UDP or UDP-Lite over IPv4. A fragmented datagram is lost once in
the ledger: whichever layer drops its first fragment (the RX ring, or ip_expire, which
frees the queue's head) names the flow; its other fragments' drops are unattributed.

Feed points (each a single attribute test when the ledger is off, DropStats.flows):
udp_send_skb counts a datagram sent, __udp_enqueue_schedule_skb one delivered (queued
on a socket), and DropStats.drop (or drop_frame) one dropped. A datagram dropped
after it was queued (udp_recvmsg's checksum, udp_destruct_common) leaves "delivered"
again.

Memory is bounded: max_flows flows are tracked; a datagram of any further flow is
counted only in the untracked totals, which tell that the check is not complete.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from services.core.dropreason import SkbDropReason
from services.core.skbuff import HEADER_UNSET, SkBuff
from services.core.wire.ethernet import ETH_HLEN, ETH_P_IP
from services.core.wire.ipv4 import IP_OFFSET, IPPROTO_UDP, IPPROTO_UDPLITE

# (protocol, saddr, sport, daddr, dport); addresses in host byte order.
FlowKey = tuple[int, int, int, int, int]
DropKey = tuple[SkbDropReason, str]

DEFAULT_MAX_FLOWS: Final = 1024
_UDP_PROTOS: Final = frozenset((IPPROTO_UDP, IPPROTO_UDPLITE))
_IP: Final = struct.Struct("!BBHHHBBHII")
_PORTS: Final = struct.Struct("!HH")
_ETHERTYPE: Final = struct.Struct("!H")


@dataclass
class FlowCounts:
    sent: int = 0
    delivered: int = 0
    drops: dict[DropKey, int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    @property
    def balanced(self) -> bool:
        return self.sent == self.delivered + self.dropped


def _network_header(skb: SkBuff) -> int | None:
    """Where the IPv4 header starts in skb.head, or None: network_header once ip_rcv or
    the output path set it; else after an Ethernet header at mac_header or data (the
    NIC's receive path before eth_type_trans)."""
    if skb.network_header != HEADER_UNSET:
        return skb.network_header
    mac = skb.mac_header if skb.mac_header != HEADER_UNSET else skb.data
    head = skb.head
    if mac + ETH_HLEN > skb.tail or _ETHERTYPE.unpack_from(head, mac + 12)[0] != ETH_P_IP:
        return None
    return mac + ETH_HLEN


def _flow_at(buf: bytes | bytearray, nh: int, end: int) -> FlowKey | None:
    """The flow of the IPv4 header at buf[nh:], the packet ending at end."""
    if nh + _IP.size > end:
        return None
    ver_ihl, _tos, _tot, _id, frag, _ttl, proto, _check, saddr, daddr = _IP.unpack_from(buf, nh)
    if ver_ihl >> 4 != 4 or proto not in _UDP_PROTOS or frag & IP_OFFSET:
        return None
    th = nh + (ver_ihl & 0xF) * 4
    if th + _PORTS.size > end:
        return None
    sport, dport = _PORTS.unpack_from(buf, th)
    return (proto, saddr, sport, daddr, dport)


def flow_of(skb: SkBuff) -> FlowKey | None:
    """The UDP/UDP-Lite flow of an IPv4 skb from its headers; None when they are not
    there (not IPv4, truncated, a fragment past the first, another protocol). An skb
    UDP built that has no IPv4 header yet (between udp_send_skb and ip_send_skb)
    names its flow by its cork and UDP header, as udp_send_skb's own count does."""
    cork = skb.cork
    if cork is not None and skb.network_header == HEADER_UNSET:
        th = skb.transport_header
        if cork.protocol not in _UDP_PROTOS or th == HEADER_UNSET or th + _PORTS.size > skb.tail:
            return None
        sport, dport = _PORTS.unpack_from(skb.head, th)
        return (cork.protocol, cork.saddr, sport, cork.daddr, dport)
    nh = _network_header(skb)
    return None if nh is None else _flow_at(skb.head, nh, skb.tail)


def flow_of_frame(frame: bytes) -> FlowKey | None:
    """flow_of() for an Ethernet frame that no skb holds: one the RX ring had no free
    descriptor for (the hardware drops it before the driver allocates an skb), or one
    segment of a GSO skb that a qdisc drops frame by frame."""
    if len(frame) < ETH_HLEN or _ETHERTYPE.unpack_from(frame, 12)[0] != ETH_P_IP:
        return None
    return _flow_at(frame, ETH_HLEN, len(frame))


def datagrams(skb: SkBuff) -> int:
    """How many datagrams one skb stands for: a GSO/GRO skb its segments, else one."""
    return skb.gso_segs if skb.gso_size and skb.gso_segs > 1 else 1


class FlowLedger:
    """Per-flow sent / delivered / dropped (by reason and location), bounded."""

    __slots__ = ("flows", "max_flows", "unattributed", "untracked")

    def __init__(self, max_flows: int = DEFAULT_MAX_FLOWS) -> None:
        if max_flows < 1:
            raise ValueError(f"max_flows must be positive, got {max_flows}")
        self.max_flows = max_flows
        self.flows: dict[FlowKey, FlowCounts] = {}
        # Drops whose flow could not be told from the packet.
        self.unattributed: dict[DropKey, int] = {}
        # What was counted for flows beyond max_flows: sent, delivered, dropped.
        self.untracked = FlowCounts()

    def _counts(self, key: FlowKey) -> FlowCounts:
        counts = self.flows.get(key)
        if counts is None:
            if len(self.flows) >= self.max_flows:
                return self.untracked
            counts = self.flows[key] = FlowCounts()
        return counts

    def sent(self, key: FlowKey, n: int = 1) -> None:
        """udp_send_skb(): n datagrams of a flow left the socket (UDP has not built the
        IP header yet: flow_of() names the flow by the skb's cork)."""
        self._counts(key).sent += n

    def delivered(self, skb: SkBuff) -> None:
        """__udp_enqueue_schedule_skb(): the datagram(s) reached a socket's queue."""
        key = flow_of(skb)
        if key is not None:
            self._counts(key).delivered += datagrams(skb)

    def drop(self, reason: SkbDropReason, location: str, skb: SkBuff | None, n: int, queued: bool) -> None:
        """A drop DropStats counted: n skbs, for the flow of skb when it is given and its
        headers tell one. queued: the skb had been counted as delivered."""
        key = flow_of(skb) if skb is not None else None
        if skb is None or key is None:
            self._unattributed(reason, location, n)
            return
        counts = self._counts(key)
        n *= datagrams(skb)
        counts.drops[(reason, location)] = counts.drops.get((reason, location), 0) + n
        if queued:
            counts.delivered -= n

    def drop_frame(self, reason: SkbDropReason, location: str, frame: bytes, n: int) -> None:
        """A drop DropStats counted of n copies of an Ethernet frame (flow_of_frame):
        each is one datagram, or one fragment of one."""
        key = flow_of_frame(frame)
        if key is None:
            self._unattributed(reason, location, n)
            return
        drops = self._counts(key).drops
        drops[(reason, location)] = drops.get((reason, location), 0) + n

    def _unattributed(self, reason: SkbDropReason, location: str, n: int) -> None:
        self.unattributed[(reason, location)] = self.unattributed.get((reason, location), 0) + n

    def clear(self) -> None:
        self.flows.clear()
        self.unattributed.clear()
        self.untracked = FlowCounts()
