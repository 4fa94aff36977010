"""SKB drop reasons, as kfree_skb_reason() records them, and a per-site drop tally.

The numbering is that of include/net/dropreason-core.h in Linux 6.18 (checked against
the skb:kfree_skb tracepoint of a running 6.18.44 kernel). It is not stable across
releases: recent kernels moved SOCKET_FILTER and SOCKET_RCVBUFF up next to NO_SOCKET
and keep inserting reasons, so tools must go by name, not by number, as dropwatch and
perf do with the tracepoint's symbolic output.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from services.core.flowledger import FlowLedger
    from services.core.skbuff import SkBuff


class SkbDropReason(enum.IntEnum):
    """enum skb_drop_reason. Members are named as the kfree_skb tracepoint prints them
    (without the SKB_DROP_REASON_ prefix); full_name gives the C identifier."""

    NOT_DROPPED_YET = 0
    CONSUMED = 1
    NOT_SPECIFIED = 2
    NO_SOCKET = 3
    SOCKET_CLOSE = 4
    SOCKET_FILTER = 5
    SOCKET_RCVBUFF = 6
    UNIX_DISCONNECT = 7
    UNIX_SKIP_OOB = 8
    PKT_TOO_SMALL = 9
    TCP_CSUM = 10
    UDP_CSUM = 11
    NETFILTER_DROP = 12
    OTHERHOST = 13
    IP_CSUM = 14
    IP_INHDR = 15
    IP_RPFILTER = 16
    UNICAST_IN_L2_MULTICAST = 17
    XFRM_POLICY = 18
    IP_NOPROTO = 19
    PROTO_MEM = 20
    TCP_AUTH_HDR = 21
    TCP_MD5NOTFOUND = 22
    TCP_MD5UNEXPECTED = 23
    TCP_MD5FAILURE = 24
    TCP_AONOTFOUND = 25
    TCP_AOUNEXPECTED = 26
    TCP_AOKEYNOTFOUND = 27
    TCP_AOFAILURE = 28
    SOCKET_BACKLOG = 29
    TCP_FLAGS = 30
    TCP_ABORT_ON_DATA = 31
    TCP_ZEROWINDOW = 32
    TCP_OLD_DATA = 33
    TCP_OVERWINDOW = 34
    TCP_OFOMERGE = 35
    TCP_RFC7323_PAWS = 36
    TCP_RFC7323_PAWS_ACK = 37
    TCP_RFC7323_TW_PAWS = 38
    TCP_RFC7323_TSECR = 39
    TCP_LISTEN_OVERFLOW = 40
    TCP_OLD_SEQUENCE = 41
    TCP_INVALID_SEQUENCE = 42
    TCP_INVALID_END_SEQUENCE = 43
    TCP_INVALID_ACK_SEQUENCE = 44
    TCP_RESET = 45
    TCP_INVALID_SYN = 46
    TCP_CLOSE = 47
    TCP_FASTOPEN = 48
    TCP_OLD_ACK = 49
    TCP_TOO_OLD_ACK = 50
    TCP_ACK_UNSENT_DATA = 51
    TCP_OFO_QUEUE_PRUNE = 52
    TCP_OFO_DROP = 53
    IP_OUTNOROUTES = 54
    BPF_CGROUP_EGRESS = 55
    IPV6DISABLED = 56
    NEIGH_CREATEFAIL = 57
    NEIGH_FAILED = 58
    NEIGH_QUEUEFULL = 59
    NEIGH_DEAD = 60
    NEIGH_HH_FILLFAIL = 61
    TC_EGRESS = 62
    SECURITY_HOOK = 63
    QDISC_DROP = 64
    QDISC_OVERLIMIT = 65
    QDISC_CONGESTED = 66
    CAKE_FLOOD = 67
    FQ_BAND_LIMIT = 68
    FQ_HORIZON_LIMIT = 69
    FQ_FLOW_LIMIT = 70
    CPU_BACKLOG = 71
    XDP = 72
    TC_INGRESS = 73
    UNHANDLED_PROTO = 74
    SKB_CSUM = 75
    SKB_GSO_SEG = 76
    SKB_UCOPY_FAULT = 77
    DEV_HDR = 78
    DEV_READY = 79
    FULL_RING = 80
    NOMEM = 81
    HDR_TRUNC = 82
    TAP_FILTER = 83
    TAP_TXFILTER = 84
    ICMP_CSUM = 85
    INVALID_PROTO = 86
    IP_INADDRERRORS = 87
    IP_INNOROUTES = 88
    IP_LOCAL_SOURCE = 89
    IP_INVALID_SOURCE = 90
    IP_LOCALNET = 91
    IP_INVALID_DEST = 92
    PKT_TOO_BIG = 93
    DUP_FRAG = 94
    FRAG_REASM_TIMEOUT = 95
    FRAG_TOO_FAR = 96
    TCP_MINTTL = 97
    IPV6_BAD_EXTHDR = 98
    IPV6_NDISC_FRAG = 99
    IPV6_NDISC_HOP_LIMIT = 100
    IPV6_NDISC_BAD_CODE = 101
    IPV6_NDISC_BAD_OPTIONS = 102
    IPV6_NDISC_NS_OTHERHOST = 103
    QUEUE_PURGE = 104
    TC_COOKIE_ERROR = 105
    PACKET_SOCK_ERROR = 106
    TC_CHAIN_NOTFOUND = 107
    TC_RECLASSIFY_LOOP = 108
    VXLAN_INVALID_HDR = 109
    VXLAN_VNI_NOT_FOUND = 110
    MAC_INVALID_SOURCE = 111
    VXLAN_ENTRY_EXISTS = 112
    NO_TX_TARGET = 113
    IP_TUNNEL_ECN = 114
    TUNNEL_TXINFO = 115
    LOCAL_MAC = 116
    ARP_PVLAN_DISABLE = 117
    MAC_IEEE_MAC_CONTROL = 118
    BRIDGE_INGRESS_STP_STATE = 119
    CAN_RX_INVALID_FRAME = 120
    CANFD_RX_INVALID_FRAME = 121
    CANXL_RX_INVALID_FRAME = 122
    PFMEMALLOC = 123
    DUALPI2_STEP_DROP = 124
    PSP_INPUT = 125
    PSP_OUTPUT = 126
    RECURSION_LIMIT = 127

    @property
    def full_name(self) -> str:
        # The first two are not drop reasons and carry no _DROP_REASON_ in their name.
        if self.value <= SkbDropReason.CONSUMED:
            return f"SKB_{self.name}"
        return f"SKB_DROP_REASON_{self.name}"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]

    @property
    def is_drop(self) -> bool:
        """False for NOT_DROPPED_YET and CONSUMED: kfree_skb_reason() turns CONSUMED into
        consume_skb's tracepoint, so neither counts as a drop."""
        return self.value >= SkbDropReason.NOT_SPECIFIED


# SKB_DROP_REASON_MAX ends the core list (only for tracing code generation, never a
# reason). Reasons at or above 1 << SKB_DROP_REASON_SUBSYS_SHIFT belong to subsystems
# (mac80211, openvswitch) whose lists this stack does not model.
SKB_DROP_REASON_MAX: Final = 128
SKB_DROP_REASON_SUBSYS_SHIFT: Final = 16
SKB_DROP_REASON_SUBSYS_MASK: Final = 0xFFFF0000

# The kernel-doc comment of each enumerator, whitespace folded onto one line.
_DESCRIPTIONS: Final[dict[SkbDropReason, str]] = {
    SkbDropReason.NOT_DROPPED_YET: "skb is not dropped yet (used for no-drop case)",
    SkbDropReason.CONSUMED: "packet has been consumed",
    SkbDropReason.NOT_SPECIFIED: "drop reason is not specified",
    SkbDropReason.NO_SOCKET: (
        "no valid socket that can be used. Reason could be one of three cases: 1) no "
        "established/listening socket found during lookup process 2) no valid request socket "
        "during 3WHS process 3) no valid child socket during 3WHS process"
    ),
    SkbDropReason.SOCKET_CLOSE: "socket is close()d",
    SkbDropReason.SOCKET_FILTER: "dropped by socket filter",
    SkbDropReason.SOCKET_RCVBUFF: "socket receive buff is full",
    SkbDropReason.UNIX_DISCONNECT: (
        "recv queue is purged when SOCK_DGRAM or SOCK_SEQPACKET socket re-connect()s to "
        "another socket or notices during send() that the peer has been close()d."
    ),
    SkbDropReason.UNIX_SKIP_OOB: ("Out-Of-Band data is skipped by recv() without MSG_OOB so dropped."),
    SkbDropReason.PKT_TOO_SMALL: "packet size is too small",
    SkbDropReason.TCP_CSUM: "TCP checksum error",
    SkbDropReason.UDP_CSUM: "UDP checksum error",
    SkbDropReason.NETFILTER_DROP: "dropped by netfilter",
    SkbDropReason.OTHERHOST: "packet don't belong to current host (interface is in promisc mode)",
    SkbDropReason.IP_CSUM: "IP checksum error",
    SkbDropReason.IP_INHDR: "there is something wrong with IP header (see IPSTATS_MIB_INHDRERRORS)",
    SkbDropReason.IP_RPFILTER: (
        "IP rpfilter validate failed. see the document for rp_filter in ip-sysctl.rst for more information"
    ),
    SkbDropReason.UNICAST_IN_L2_MULTICAST: ("destination address of L2 is multicast, but L3 is unicast."),
    SkbDropReason.XFRM_POLICY: "xfrm policy check failed",
    SkbDropReason.IP_NOPROTO: "no support for IP protocol",
    SkbDropReason.PROTO_MEM: (
        "proto memory limitation, such as udp packet drop out of udp_memory_allocated."
    ),
    SkbDropReason.TCP_AUTH_HDR: "TCP-MD5 or TCP-AO hashes are met twice or set incorrectly.",
    SkbDropReason.TCP_MD5NOTFOUND: (
        "no MD5 hash and one expected, corresponding to LINUX_MIB_TCPMD5NOTFOUND"
    ),
    SkbDropReason.TCP_MD5UNEXPECTED: (
        "MD5 hash and we're not expecting one, corresponding to LINUX_MIB_TCPMD5UNEXPECTED"
    ),
    SkbDropReason.TCP_MD5FAILURE: ("MD5 hash and its wrong, corresponding to LINUX_MIB_TCPMD5FAILURE"),
    SkbDropReason.TCP_AONOTFOUND: (
        "no TCP-AO hash and one was expected, corresponding to LINUX_MIB_TCPAOREQUIRED"
    ),
    SkbDropReason.TCP_AOUNEXPECTED: (
        "TCP-AO hash is present and it was not expected, corresponding to LINUX_MIB_TCPAOKEYNOTFOUND"
    ),
    SkbDropReason.TCP_AOKEYNOTFOUND: ("TCP-AO key is unknown, corresponding to LINUX_MIB_TCPAOKEYNOTFOUND"),
    SkbDropReason.TCP_AOFAILURE: "TCP-AO hash is wrong, corresponding to LINUX_MIB_TCPAOBAD",
    SkbDropReason.SOCKET_BACKLOG: ("failed to add skb to socket backlog ( see LINUX_MIB_TCPBACKLOGDROP)"),
    SkbDropReason.TCP_FLAGS: "TCP flags invalid",
    SkbDropReason.TCP_ABORT_ON_DATA: "abort on data, corresponding to LINUX_MIB_TCPABORTONDATA",
    SkbDropReason.TCP_ZEROWINDOW: ("TCP receive window size is zero, see LINUX_MIB_TCPZEROWINDOWDROP"),
    SkbDropReason.TCP_OLD_DATA: (
        "the TCP data received is already received before (spurious retrans may happened), "
        "see LINUX_MIB_DELAYEDACKLOST"
    ),
    SkbDropReason.TCP_OVERWINDOW: (
        "the TCP data is out of window, the seq of the first byte exceed the right edges of receive window"
    ),
    SkbDropReason.TCP_OFOMERGE: (
        "the data of skb is already in the ofo queue, corresponding to LINUX_MIB_TCPOFOMERGE"
    ),
    SkbDropReason.TCP_RFC7323_PAWS: (
        "PAWS check, corresponding to LINUX_MIB_PAWSESTABREJECTED, LINUX_MIB_PAWSACTIVEREJECTED"
    ),
    SkbDropReason.TCP_RFC7323_PAWS_ACK: (
        "PAWS check, old ACK packet. Corresponds to LINUX_MIB_PAWS_OLD_ACK."
    ),
    SkbDropReason.TCP_RFC7323_TW_PAWS: "PAWS check, socket is in TIME_WAIT state.",
    SkbDropReason.TCP_RFC7323_TSECR: ("PAWS check, invalid TSEcr. Corresponds to LINUX_MIB_TSECRREJECTED."),
    SkbDropReason.TCP_LISTEN_OVERFLOW: "listener queue full.",
    SkbDropReason.TCP_OLD_SEQUENCE: "Old SEQ field (duplicate packet)",
    SkbDropReason.TCP_INVALID_SEQUENCE: ("Not acceptable SEQ field. Corresponds to LINUX_MIB_BEYOND_WINDOW."),
    SkbDropReason.TCP_INVALID_END_SEQUENCE: (
        "Not acceptable END_SEQ field. Corresponds to LINUX_MIB_BEYOND_WINDOW."
    ),
    SkbDropReason.TCP_INVALID_ACK_SEQUENCE: (
        "Not acceptable ACK SEQ field because ack sequence is not in the window between snd_una and snd_nxt"
    ),
    SkbDropReason.TCP_RESET: "Invalid RST packet",
    SkbDropReason.TCP_INVALID_SYN: "Incoming packet has unexpected SYN flag",
    SkbDropReason.TCP_CLOSE: "TCP socket in CLOSE state",
    SkbDropReason.TCP_FASTOPEN: "dropped by FASTOPEN request socket",
    SkbDropReason.TCP_OLD_ACK: "TCP ACK is old, but in window",
    SkbDropReason.TCP_TOO_OLD_ACK: "TCP ACK is too old",
    SkbDropReason.TCP_ACK_UNSENT_DATA: "TCP ACK for data we haven't sent yet",
    SkbDropReason.TCP_OFO_QUEUE_PRUNE: "pruned from TCP OFO queue",
    SkbDropReason.TCP_OFO_DROP: "data already in receive queue",
    SkbDropReason.IP_OUTNOROUTES: "route lookup failed",
    SkbDropReason.BPF_CGROUP_EGRESS: "dropped by BPF_PROG_TYPE_CGROUP_SKB eBPF program",
    SkbDropReason.IPV6DISABLED: "IPv6 is disabled on the device",
    SkbDropReason.NEIGH_CREATEFAIL: "failed to create neigh entry",
    SkbDropReason.NEIGH_FAILED: "neigh entry in failed state",
    SkbDropReason.NEIGH_QUEUEFULL: "arp_queue for neigh entry is full",
    SkbDropReason.NEIGH_DEAD: "neigh entry is dead",
    SkbDropReason.NEIGH_HH_FILLFAIL: "failed to fill the device hard header",
    SkbDropReason.TC_EGRESS: "dropped in TC egress HOOK",
    SkbDropReason.SECURITY_HOOK: "dropped due to security HOOK",
    SkbDropReason.QDISC_DROP: (
        "dropped by qdisc when packet outputting ( failed to enqueue to current qdisc)"
    ),
    SkbDropReason.QDISC_OVERLIMIT: (
        "dropped by qdisc when a qdisc instance exceeds its total buffer size limit."
    ),
    SkbDropReason.QDISC_CONGESTED: "dropped by a qdisc AQM algorithm due to congestion.",
    SkbDropReason.CAKE_FLOOD: ("dropped by the flood protection part of CAKE qdisc AQM algorithm (BLUE)."),
    SkbDropReason.FQ_BAND_LIMIT: "dropped by fq qdisc when per band limit is reached.",
    SkbDropReason.FQ_HORIZON_LIMIT: ("dropped by fq qdisc when packet timestamp is too far in the future."),
    SkbDropReason.FQ_FLOW_LIMIT: "dropped by fq qdisc when a flow exceeds its limits.",
    SkbDropReason.CPU_BACKLOG: (
        "failed to enqueue the skb to the per CPU backlog queue. This can be caused by "
        "backlog queue full (see netdev_max_backlog in net.rst) or RPS flow limit"
    ),
    SkbDropReason.XDP: "dropped by XDP in input path",
    SkbDropReason.TC_INGRESS: "dropped in TC ingress HOOK",
    SkbDropReason.UNHANDLED_PROTO: "protocol not implemented or not supported",
    SkbDropReason.SKB_CSUM: "sk_buff checksum computation error",
    SkbDropReason.SKB_GSO_SEG: "gso segmentation error",
    SkbDropReason.SKB_UCOPY_FAULT: (
        "failed to copy data from user space, e.g., via zerocopy_sg_from_iter() or skb_orphan_frags_rx()"
    ),
    SkbDropReason.DEV_HDR: "device driver specific header/metadata is invalid",
    SkbDropReason.DEV_READY: (
        "the device is not ready to xmit/recv due to any of its data structure that is not "
        "up/ready/initialized, e.g., the IFF_UP is not set, or driver specific "
        "tun->tfiles[txq] is not initialized"
    ),
    SkbDropReason.FULL_RING: "ring buffer is full",
    SkbDropReason.NOMEM: "error due to OOM",
    SkbDropReason.HDR_TRUNC: (
        "failed to trunc/extract the header from networking data, e.g., failed to pull the "
        "protocol header from frags via pskb_may_pull()"
    ),
    SkbDropReason.TAP_FILTER: (
        "dropped by (ebpf) filter directly attached to tun/tap, e.g., via TUNSETFILTEREBPF"
    ),
    SkbDropReason.TAP_TXFILTER: "dropped by tx filter implemented at tun/tap, e.g., check_filter()",
    SkbDropReason.ICMP_CSUM: "ICMP checksum error",
    SkbDropReason.INVALID_PROTO: ("the packet doesn't follow RFC 2211, such as a broadcasts ICMP_TIMESTAMP"),
    SkbDropReason.IP_INADDRERRORS: "host unreachable, corresponding to IPSTATS_MIB_INADDRERRORS",
    SkbDropReason.IP_INNOROUTES: "network unreachable, corresponding to IPSTATS_MIB_INADDRERRORS",
    SkbDropReason.IP_LOCAL_SOURCE: "the source ip is local",
    SkbDropReason.IP_INVALID_SOURCE: (
        "the source ip is invalid: 1) source ip is multicast or limited broadcast 2) source "
        "ip is zero and not IGMP"
    ),
    SkbDropReason.IP_LOCALNET: "source or dest ip is local net",
    SkbDropReason.IP_INVALID_DEST: "the dest ip is invalid: 1) dest ip is 0",
    SkbDropReason.PKT_TOO_BIG: "packet size is too big (maybe exceed the MTU)",
    SkbDropReason.DUP_FRAG: "duplicate fragment",
    SkbDropReason.FRAG_REASM_TIMEOUT: "fragment reassembly timeout",
    SkbDropReason.FRAG_TOO_FAR: "ipv4 fragment too far. (/proc/sys/net/ipv4/ipfrag_max_dist)",
    SkbDropReason.TCP_MINTTL: (
        "ipv4 ttl or ipv6 hoplimit below the threshold (IP_MINTTL or IPV6_MINHOPCOUNT)."
    ),
    SkbDropReason.IPV6_BAD_EXTHDR: "Bad IPv6 extension header.",
    SkbDropReason.IPV6_NDISC_FRAG: "invalid frag (suppress_frag_ndisc).",
    SkbDropReason.IPV6_NDISC_HOP_LIMIT: "invalid hop limit.",
    SkbDropReason.IPV6_NDISC_BAD_CODE: "invalid NDISC icmp6 code.",
    SkbDropReason.IPV6_NDISC_BAD_OPTIONS: "invalid NDISC options.",
    SkbDropReason.IPV6_NDISC_NS_OTHERHOST: "NEIGHBOUR SOLICITATION for another host.",
    SkbDropReason.QUEUE_PURGE: "bulk free.",
    SkbDropReason.TC_COOKIE_ERROR: "An error occurred whilst processing a tc ext cookie.",
    SkbDropReason.PACKET_SOCK_ERROR: (
        "generic packet socket errors after its filter matches an incoming packet."
    ),
    SkbDropReason.TC_CHAIN_NOTFOUND: "tc chain lookup failed.",
    SkbDropReason.TC_RECLASSIFY_LOOP: "tc exceeded max reclassify loop iterations.",
    SkbDropReason.VXLAN_INVALID_HDR: (
        'VXLAN header is invalid. E.g.: 1) reserved fields are not zero 2) "I" flag is not set'
    ),
    SkbDropReason.VXLAN_VNI_NOT_FOUND: "no VXLAN device found for VNI",
    SkbDropReason.MAC_INVALID_SOURCE: "source mac is invalid",
    SkbDropReason.VXLAN_ENTRY_EXISTS: ("trying to migrate a static entry or an entry pointing to a nexthop."),
    SkbDropReason.NO_TX_TARGET: "no target found for xmit",
    SkbDropReason.IP_TUNNEL_ECN: (
        "skb is dropped according to RFC 6040 4.2, see __INET_ECN_decapsulate() for detail."
    ),
    SkbDropReason.TUNNEL_TXINFO: (
        'packet without necessary metadata reached a device which is in "external" mode.'
    ),
    SkbDropReason.LOCAL_MAC: ("the source MAC address is equal to the MAC address of the local netdev."),
    SkbDropReason.ARP_PVLAN_DISABLE: (
        "packet which is not IP is forwarded to the in_dev, and the proxy_arp_pvlan is not enabled."
    ),
    SkbDropReason.MAC_IEEE_MAC_CONTROL: ("the destination MAC address is an IEEE MAC Control address."),
    SkbDropReason.BRIDGE_INGRESS_STP_STATE: (
        "the STP state of the ingress bridge port does not allow frames to be forwarded."
    ),
    SkbDropReason.CAN_RX_INVALID_FRAME: (
        "received non conform CAN frame (or device is unable to receive CAN frames)"
    ),
    SkbDropReason.CANFD_RX_INVALID_FRAME: (
        "received non conform CAN-FD frame (or device is unable to receive CAN frames)"
    ),
    SkbDropReason.CANXL_RX_INVALID_FRAME: (
        "received non conform CAN-XL frame (or device is unable to receive CAN frames)"
    ),
    SkbDropReason.PFMEMALLOC: (
        "packet allocated from memory reserve reached a path or socket not eligible for use "
        "of memory reserves"
    ),
    SkbDropReason.DUALPI2_STEP_DROP: "dropped by the step drop threshold of DualPI2 qdisc.",
    SkbDropReason.PSP_INPUT: "PSP input checks failed",
    SkbDropReason.PSP_OUTPUT: "PSP output checks failed",
    SkbDropReason.RECURSION_LIMIT: "Dead loop on virtual device.",
}


def describe(reason: SkbDropReason | int) -> str:
    """The kernel's comment for a reason, e.g. describe(SkbDropReason.OTHERHOST)."""
    return _DESCRIPTIONS[SkbDropReason(reason)]


def parse(name: str) -> SkbDropReason:
    """A reason from the tracepoint's short name ("NO_SOCKET") or the C identifier
    ("SKB_DROP_REASON_NO_SOCKET", "SKB_CONSUMED"); anything else raises ValueError."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown drop reason: {name!r}") from None


# Short names never collide with full ones: the short names that start with SKB_
# (SKB_CSUM, SKB_GSO_SEG, SKB_UCOPY_FAULT) have no SKB_ full name of their own.
_BY_NAME: Final[dict[str, SkbDropReason]] = {
    **{member.name: member for member in SkbDropReason},
    **{member.full_name: member for member in SkbDropReason},
}


# Where DropStats counts drops once it holds max_keys distinct (reason, location) pairs.
OVERFLOW_LOCATION: Final = "(other)"


class DropStats:
    """Drops counted per (reason, location), the pair kfree_skb's tracepoint reports
    (location is the dropping function, e.g. "ip_rcv_core", "udp_queue_rcv_one_skb").

    Memory is bounded: after max_keys distinct pairs, new locations are folded into
    (reason, OVERFLOW_LOCATION), so at most max_keys + one entry per reason exist.
    drop() on a known pair is one dict update and one addition, and one test of
    `flows`: the per-flow ledger (services.core.flowledger), None unless switched on,
    to which a drop point that holds the packet passes it (drop_frame: its frame).
    """

    __slots__ = ("_counts", "_max_keys", "_total", "flows")

    def __init__(self, max_keys: int = 4096) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be positive, got {max_keys}")
        self._max_keys = max_keys
        self._counts: dict[tuple[SkbDropReason, str], int] = {}
        self._total = 0
        self.flows: FlowLedger | None = None

    def drop(
        self,
        reason: SkbDropReason,
        location: str,
        n: int = 1,
        skb: SkBuff | None = None,
        queued: bool = False,
    ) -> None:
        """Count n drops; skb is the dropped packet where the caller holds it (for the
        flow ledger), queued that it had reached a socket's receive queue."""
        self._count(reason, location, n)
        if self.flows is not None:
            self.flows.drop(reason, location, skb, n, queued)

    def drop_frame(self, reason: SkbDropReason, location: str, frame: bytes, n: int = 1) -> None:
        """drop() of n copies of an Ethernet frame that no skb holds (a full RX ring drops
        it in the hardware, before the driver allocates one); the ledger reads its flow
        from the frame (flowledger.flow_of_frame)."""
        self._count(reason, location, n)
        if self.flows is not None:
            self.flows.drop_frame(reason, location, frame, n)

    def _count(self, reason: SkbDropReason, location: str, n: int) -> None:
        if n < 0:
            raise ValueError(f"cannot count {n} drops")
        key = (reason, location)
        counts = self._counts
        if key in counts:
            counts[key] += n
        else:
            self._insert(reason, location, n)
        self._total += n

    def _insert(self, reason: SkbDropReason | int, location: str, n: int) -> None:
        member = SkbDropReason(reason)
        if not member.is_drop:
            # kfree_skb_reason(skb, SKB_CONSUMED) is consume_skb(), not a drop; counting
            # it would break sent == delivered + dropped.
            raise ValueError(f"{member.full_name} is not a drop reason")
        if not isinstance(location, str) or not location:
            raise ValueError(f"drop location must be a function name, got {location!r}")
        if len(self._counts) >= self._max_keys:
            location = OVERFLOW_LOCATION
        key = (member, location)
        self._counts[key] = self._counts.get(key, 0) + n

    def total(self) -> int:
        return self._total

    def get(self, reason: SkbDropReason, location: str | None = None) -> int:
        """Drops for a reason at one location, or at all locations when None."""
        if location is not None:
            return self._counts.get((reason, location), 0)
        return sum(c for (r, _), c in self._counts.items() if r == reason)

    def by_reason(self) -> dict[str, int]:
        """Totals keyed by the tracepoint's short name, in kernel enum order."""
        totals: dict[SkbDropReason, int] = {}
        for (reason, _), count in self._counts.items():
            totals[reason] = totals.get(reason, 0) + count
        return {reason.name: totals[reason] for reason in sorted(totals)}

    def by_location(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for (_, location), count in self._counts.items():
            totals[location] = totals.get(location, 0) + count
        return totals

    def items(self) -> Iterator[tuple[tuple[SkbDropReason, str], int]]:
        """((reason, location), count) for every pair seen, in first-seen order."""
        return iter(list(self._counts.items()))

    def clear(self) -> None:
        self._counts.clear()
        self._total = 0
