"""struct sk_buff and its helpers (include/linux/skbuff.h, net/core/skbuff.c).

The linear buffer is one bytearray `head`; data, tail and the header marks are offsets
into it, so headroom and tailroom keep their meaning and skb_push/skb_pull move `data`
without copying. Ownership follows the kernel: whoever holds an SkBuff may change it;
a layer that hands it on (a stream, a queue) no longer touches it.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from stackemu.skb.v1 import skb_pb2

# include/linux/skbuff.h: (typeof(skb->mac_header))~0U marks an unset header.
HEADER_UNSET = 0xFFFF
# NET_SKB_PAD: max(32, L1_CACHE_BYTES) on x86_64.
NET_SKB_PAD = 64
SMP_CACHE_BYTES = 64
SKB_CB_SIZE = 48
# SKB_DATA_ALIGN(sizeof(struct sk_buff)) + SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
# on x86_64 6.x: 256 + 320.
SKB_TRUESIZE_OVERHEAD = 256 + 320

# skb->pkt_type (include/uapi/linux/if_packet.h)
PACKET_HOST = 0
PACKET_BROADCAST = 1
PACKET_MULTICAST = 2
PACKET_OTHERHOST = 3
PACKET_OUTGOING = 4
PACKET_LOOPBACK = 5

# skb->ip_summed
CHECKSUM_NONE = 0
CHECKSUM_UNNECESSARY = 1
CHECKSUM_COMPLETE = 2
CHECKSUM_PARTIAL = 3

# include/linux/skbuff.h: SKB_GSO_UDP (UFO, gone) kept 1 << 16; UDP_L4 is 1 << 17.
SKB_GSO_UDP_L4 = 1 << 17

# include/linux/skbuff.h: enum { SKBTX_HW_TSTAMP = 1 << 0, SKBTX_SW_TSTAMP = 1 << 1,
# SKBTX_IN_PROGRESS = 1 << 2, ..., SKBTX_SCHED_TSTAMP = 1 << 6 }, skb_shinfo(skb)->tx_flags.
SKBTX_HW_TSTAMP = 1 << 0
SKBTX_SW_TSTAMP = 1 << 1
SKBTX_IN_PROGRESS = 1 << 2
SKBTX_SCHED_TSTAMP = 1 << 6
# include/linux/skbuff.h, 6.18: SKBTX_ANY_TSTAMP is every tx_flags bit that asks for a
# timestamp (HW_TSTAMP_NOBPF 1<<0, SW 1<<1, COMPLETION 1<<3, HW_TSTAMP_NETDEV 1<<5,
# SCHED 1<<6, BPF 1<<7); IN_PROGRESS (1<<2) and WIFI_STATUS (1<<4) are not carried over.
SKBTX_ANY_TSTAMP = 0xEB


class SkbError(ValueError):
    """An skb whose offsets contradict each other, or an operation the kernel would BUG on."""


def skb_data_align(size: int) -> int:
    return (size + SMP_CACHE_BYTES - 1) & ~(SMP_CACHE_BYTES - 1)


def skb_truesize(size: int) -> int:
    """SKB_TRUESIZE(): what an skb with a `size`-byte buffer charges a socket."""
    return skb_data_align(size) + SKB_TRUESIZE_OVERHEAD


# include/linux/skbuff.h on x86_64: SKB_DATA_ALIGN(sizeof(struct skb_shared_info)),
# SKB_DATA_ALIGN(sizeof(struct sk_buff)), the small-head cache __alloc_skb uses
# (SKB_SMALL_HEAD_CACHE_SIZE), and SKB_MAX_ALLOC (an order-2 head less the shinfo).
SKB_SHINFO_SIZE = 320
SKB_STRUCT_SIZE = 256
SKB_SMALL_HEAD_CACHE_SIZE = 576
SKB_MAX_ALLOC = (4096 << 2) - SKB_SHINFO_SIZE


def alloc_skb_truesize(size: int) -> int:
    """The truesize __alloc_skb() gives a linear skb asked for `size` bytes: the head is
    the small-head cache's object or a kmalloc bucket (kmalloc_size_roundup: powers of
    two past 576), which includes the shared info, plus the sk_buff. On this machine's
    6.18 a 0-byte UDP datagram over lo charges 832, a 500-byte one 1280, a 1000-byte
    one 2304 (SO_MEMINFO)."""
    obj = skb_data_align(size) + SKB_SHINFO_SIZE
    obj = SKB_SMALL_HEAD_CACHE_SIZE if obj <= SKB_SMALL_HEAD_CACHE_SIZE else 1 << (obj - 1).bit_length()
    return obj + SKB_STRUCT_SIZE


@dataclass(slots=True)
class Dst:
    """The parts of struct rtable a lower layer reads."""

    ifindex: int = 0
    nexthop: int = 0
    mtu: int = 0
    rt_type: int = 0
    flags: int = 0
    # dst->dev->features: the output device's active NETIF_F_* bits (services.core.netdev).
    dev_features: int = 0


@dataclass(slots=True)
class IpCork:
    """ipcm_cookie + flowi4 travelling from udp_sendmsg to ip_make_skb."""

    saddr: int = 0
    daddr: int = 0
    protocol: int = 0
    ttl: int = 0
    tos: int = 0
    pmtudisc: int = 0
    options: bytes = b""
    inet_id: int | None = None


@dataclass(slots=True, frozen=True)
class TraceStep:
    func: str
    service: str
    host: str
    ts_ns: int


def dst_to_proto(d: Dst) -> skb_pb2.Dst:
    return skb_pb2.Dst(
        ifindex=d.ifindex,
        nexthop=d.nexthop,
        mtu=d.mtu,
        rt_type=d.rt_type,
        flags=d.flags,
        dev_features=d.dev_features,
    )


def dst_from_proto(d: skb_pb2.Dst) -> Dst:
    return Dst(d.ifindex, d.nexthop, d.mtu, d.rt_type, d.flags, d.dev_features)


def trace_to_proto(steps: Iterable[TraceStep]) -> list[skb_pb2.TraceStep]:
    return [skb_pb2.TraceStep(func=t.func, service=t.service, host=t.host, ts_ns=t.ts_ns) for t in steps]


def trace_from_proto(msgs: Iterable[skb_pb2.TraceStep]) -> list[TraceStep]:
    return [TraceStep(t.func, t.service, t.host, t.ts_ns) for t in msgs]


# The scalar fields SkBuff and its protobuf message share, by the same names.
_SCALARS: Final = (
    "data",
    "tail",
    "mac_header",
    "network_header",
    "transport_header",
    "len",
    "data_len",
    "protocol",
    "pkt_type",
    "ip_summed",
    "csum",
    "csum_start",
    "csum_offset",
    "tstamp",
    "hwtstamp",
    "mark",
    "priority",
    "skb_iif",
    "dev_ifindex",
    "hash",
    "queue_mapping",
    "vlan_tci",
    "gso_size",
    "gso_segs",
    "gso_type",
    "tx_flags",
    "tskey",
    "sk",
    "truesize",
    "ignore_df",
    "wmem",
    "dst_pending_confirm",
)
_get_scalars = operator.attrgetter(*_SCALARS)


class SkBuff:
    __slots__ = (
        "cb",
        "cork",
        "csum",
        "csum_offset",
        "csum_start",
        "data",
        "data_len",
        "dev_ifindex",
        "dst",
        "dst_pending_confirm",
        "frag_list",
        "frags",
        "gso_segs",
        "gso_size",
        "gso_type",
        "hash",
        "head",
        "hwtstamp",
        "ignore_df",
        "ip_summed",
        "len",
        "mac_header",
        "mark",
        "network_header",
        "pkt_type",
        "priority",
        "protocol",
        "queue_mapping",
        "sk",
        "skb_iif",
        "tail",
        "trace",
        "transport_header",
        "truesize",
        "tskey",
        "tstamp",
        "tx_flags",
        "vlan_tci",
        "wmem",
    )

    def __init__(self, head: bytearray) -> None:
        self.head = head
        self.data = 0
        self.tail = 0
        self.mac_header = HEADER_UNSET
        self.network_header = HEADER_UNSET
        self.transport_header = HEADER_UNSET
        self.len = 0
        self.data_len = 0
        self.frags: list[bytes] = []
        self.frag_list: list[SkBuff] = []
        self.protocol = 0
        self.pkt_type = PACKET_HOST
        self.ip_summed = CHECKSUM_NONE
        self.csum = 0
        self.csum_start = 0
        self.csum_offset = 0
        self.tstamp = 0
        self.hwtstamp = 0
        self.mark = 0
        self.priority = 0
        self.skb_iif = 0
        self.dev_ifindex = 0
        self.hash = 0
        self.queue_mapping = 0
        self.vlan_tci = 0
        self.gso_size = 0
        self.gso_segs = 0
        self.gso_type = 0
        self.tx_flags = 0
        self.tskey = 0
        self.sk = 0
        self.cb = bytearray(SKB_CB_SIZE)
        self.truesize = skb_truesize(len(head))
        self.ignore_df = False
        self.dst: Dst | None = None
        self.cork: IpCork | None = None
        self.trace: list[TraceStep] | None = None
        # The bytes charged to the owning socket sk (sk_wmem_alloc), given back by
        # sock_wfree when the skb is freed (services.core.wmem).
        self.wmem = 0
        # skb->dst_pending_confirm (MSG_CONFIRM): neigh_confirm() on output.
        self.dst_pending_confirm = False

    @property
    def end(self) -> int:
        return len(self.head)

    def __repr__(self) -> str:
        return (
            f"SkBuff(len={self.len}, data={self.data}, tail={self.tail}, end={self.end}, "
            f"protocol={self.protocol:#06x}, pkt_type={self.pkt_type})"
        )

    # Buffer geometry (skb_headroom, skb_tailroom, skb_headlen, skb_is_nonlinear).

    def headroom(self) -> int:
        return self.data

    def tailroom(self) -> int:
        # skb_tailroom(): a nonlinear skb has no usable tailroom.
        return 0 if self.data_len else self.end - self.tail

    def headlen(self) -> int:
        return self.len - self.data_len

    def is_nonlinear(self) -> bool:
        return self.data_len != 0

    # Moving data and tail.

    def reserve(self, n: int) -> None:
        """skb_reserve(): make headroom in an empty skb."""
        if self.len or self.tail + n > self.end or n < 0:
            raise SkbError(f"skb_reserve({n}) on len={self.len} tail={self.tail} end={self.end}")
        self.data += n
        self.tail += n

    def put(self, n: int) -> memoryview:
        """skb_put(): extend the data at the tail; returns the new area."""
        if self.data_len or self.tail + n > self.end or n < 0:
            raise SkbError(f"skb_over_panic: put {n} with tailroom {self.tailroom()}")
        start = self.tail
        self.tail += n
        self.len += n
        return memoryview(self.head)[start : self.tail]

    def put_data(self, payload: bytes | bytearray | memoryview) -> None:
        """skb_put_data()."""
        n = len(payload)
        if self.data_len or self.tail + n > self.end:
            raise SkbError(f"skb_over_panic: put {n} with tailroom {self.tailroom()}")
        self.head[self.tail : self.tail + n] = payload
        self.tail += n
        self.len += n

    def push(self, n: int) -> memoryview:
        """skb_push(): prepend n bytes of header into the headroom; returns them."""
        if n > self.data or n < 0:
            raise SkbError(f"skb_under_panic: push {n} with headroom {self.data}")
        self.data -= n
        self.len += n
        return memoryview(self.head)[self.data : self.data + n]

    def pull(self, n: int) -> bool:
        """skb_pull(): consume n bytes from the front; False (the kernel's NULL) if too short."""
        if n > self.len or n < 0:
            return False
        if n > self.headlen():
            raise SkbError(f"skb_pull {n} beyond the linear part of {self.headlen()}")
        self.data += n
        self.len -= n
        return True

    def may_pull(self, n: int) -> bool:
        """pskb_may_pull(): are the first n bytes present (linear here, the emulator's
        receive skbs are linear)?"""
        return n <= self.headlen()

    def trim(self, length: int) -> None:
        """pskb_trim(): drop bytes past `length` (Ethernet padding on receive)."""
        if length >= self.len:
            return
        if self.data_len:
            self.linearize()
        self.tail = self.data + length
        self.len = length

    def linearize(self) -> None:
        """skb_linearize() → __pskb_pull_tail(): pull paged frags and the frag_list into
        the linear buffer, a new one (the head may be a clone's too). What fits in the
        tailroom goes there; else pskb_expand_head() grows the end by what is missing
        plus 128, keeping every offset into the head, so header marks stay inside it."""
        if not self.data_len:
            return
        rest = b"".join(self.frags) + b"".join(s.payload() for s in self.frag_list)
        tail = self.tail
        eat = tail + len(rest) - self.end
        after = bytes(eat + 128) if eat > 0 else self.head[tail + len(rest) :]
        self.head = self.head[:tail] + rest + after
        self.tail += len(rest)
        self.data_len = 0
        self.frags = []
        self.frag_list = []

    # Header marks (skb_reset_*_header, skb_set_*_header).

    def reset_mac_header(self) -> None:
        self.mac_header = self.data

    def reset_network_header(self) -> None:
        self.network_header = self.data

    def reset_transport_header(self) -> None:
        self.transport_header = self.data

    def set_network_header(self, offset: int) -> None:
        self.network_header = self.data + offset

    def set_transport_header(self, offset: int) -> None:
        self.transport_header = self.data + offset

    def network_offset(self) -> int:
        """skb_network_offset(): network header relative to data (may be negative)."""
        return self.network_header - self.data

    def transport_offset(self) -> int:
        return self.transport_header - self.data

    # Reading.

    def linear(self) -> memoryview:
        """The linear data, skb->data .. skb->tail."""
        return memoryview(self.head)[self.data : self.tail]

    def payload(self) -> bytes:
        """All len bytes from data on: the linear part, then frags, then the frag_list."""
        if not self.data_len:
            return bytes(self.head[self.data : self.tail])
        parts: list[bytes | bytearray] = [self.head[self.data : self.tail], *self.frags]
        parts.extend(s.payload() for s in self.frag_list)
        return b"".join(parts)

    # Copies.

    def clone(self) -> SkBuff:
        """skb_clone(): a new sk_buff sharing the data buffer (head) with this one. The
        clone owes its socket nothing (__skb_clone: destructor NULL): wmem stays here."""
        c = SkBuff.__new__(SkBuff)
        for name in SkBuff.__slots__:
            setattr(c, name, getattr(self, name))
        c.wmem = 0
        c.cb = bytearray(self.cb)
        c.frags = list(self.frags)
        c.frag_list = list(self.frag_list)
        c.trace = None if self.trace is None else list(self.trace)
        return c

    def copy(self) -> SkBuff:
        """skb_copy(): a private copy of header and data."""
        c = self.clone()
        c.head = bytearray(self.head)
        c.frag_list = [s.copy() for s in self.frag_list]
        return c

    # The protobuf form.

    def to_proto(self) -> skb_pb2.SkBuff:
        # Only the fields that differ from proto3's zero default are passed: the
        # conversion runs for every skb at every service boundary.
        m = skb_pb2.SkBuff(
            head=bytes(self.head),
            frags=self.frags,
            **{n: v for n, v in zip(_SCALARS, _get_scalars(self), strict=True) if v},
        )
        if any(self.cb):
            m.cb = bytes(self.cb)
        if self.frag_list:
            m.frag_list.extend(s.to_proto() for s in self.frag_list)
        if self.dst is not None:
            m.dst.CopyFrom(dst_to_proto(self.dst))
        if self.cork is not None:
            k = self.cork
            m.cork.CopyFrom(
                skb_pb2.IpCork(
                    saddr=k.saddr,
                    daddr=k.daddr,
                    protocol=k.protocol,
                    ttl=k.ttl,
                    tos=k.tos,
                    pmtudisc=k.pmtudisc,
                    options=k.options,
                    inet_id=k.inet_id,
                )
            )
        if self.trace is not None:
            m.traced = True
            m.trace.extend(trace_to_proto(self.trace))
        return m

    @classmethod
    def from_proto(cls, m: skb_pb2.SkBuff, depth: int = 0) -> SkBuff:
        """Build an SkBuff from untrusted bytes; SkbError says which field contradicts."""
        skb = cls.__new__(cls)
        # In _SCALARS' order: one C call reads them all, one statement stores them.
        (
            skb.data,
            skb.tail,
            skb.mac_header,
            skb.network_header,
            skb.transport_header,
            skb.len,
            skb.data_len,
            skb.protocol,
            skb.pkt_type,
            skb.ip_summed,
            skb.csum,
            skb.csum_start,
            skb.csum_offset,
            skb.tstamp,
            skb.hwtstamp,
            skb.mark,
            skb.priority,
            skb.skb_iif,
            skb.dev_ifindex,
            skb.hash,
            skb.queue_mapping,
            skb.vlan_tci,
            skb.gso_size,
            skb.gso_segs,
            skb.gso_type,
            skb.tx_flags,
            skb.tskey,
            skb.sk,
            skb.truesize,
            skb.ignore_df,
            skb.wmem,
            skb.dst_pending_confirm,
        ) = _get_scalars(m)
        skb.head = bytearray(m.head)
        skb.dst = skb.cork = skb.trace = None
        end = len(skb.head)
        if not skb.data <= skb.tail <= end:
            raise SkbError(f"skb: need data <= tail <= end, got {skb.data}, {skb.tail}, {end}")
        for name in ("mac_header", "network_header", "transport_header"):
            v = getattr(skb, name)
            if v != HEADER_UNSET and v > end:
                raise SkbError(f"skb: {name} {v} beyond end {end}")
        cb = m.cb
        if len(cb) > SKB_CB_SIZE:
            raise SkbError(f"skb: cb of {len(cb)} bytes, at most {SKB_CB_SIZE}")
        skb.cb = bytearray(cb) + bytes(SKB_CB_SIZE - len(cb))
        if depth > 1 and m.frag_list:
            raise SkbError("skb: frag_list nested more than one level")
        skb.frag_list = [cls.from_proto(s, depth + 1) for s in m.frag_list]
        skb.frags = list(m.frags)
        data_len = sum(len(f) for f in skb.frags) + sum(s.len for s in skb.frag_list)
        if skb.data_len != data_len:
            raise SkbError(f"skb: data_len {skb.data_len} but frags and frag_list hold {data_len}")
        if skb.len != skb.tail - skb.data + data_len:
            raise SkbError(f"skb: len {skb.len} != linear {skb.tail - skb.data} + data_len {data_len}")
        if m.HasField("dst"):
            skb.dst = dst_from_proto(m.dst)
        if m.HasField("cork"):
            k = m.cork
            skb.cork = IpCork(
                k.saddr,
                k.daddr,
                k.protocol,
                k.ttl,
                k.tos,
                k.pmtudisc,
                k.options,
                k.inet_id if k.HasField("inet_id") else None,
            )
        if m.traced:
            skb.trace = trace_from_proto(m.trace)
        return skb


def alloc_skb(size: int, headroom: int = 0) -> SkBuff:
    """alloc_skb() + skb_reserve(headroom): an empty skb with room for size bytes."""
    skb = SkBuff(bytearray(headroom + size))
    skb.data = skb.tail = headroom
    return skb
