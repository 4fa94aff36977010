"""Packet taps at the boundary between IP and UDP, an emulator-only extra: the kernel
has taps only at the device (ptype_all), but here the layers are services and the
boundary is a stream, so `stackemu tcpdump -i HOST:ip-udp` can watch it.

Going up, the tap sees what ip_local_deliver_finish() hands to udp_rcv() (after
LOCAL_IN and reassembly); going down, what ip_send_skb() gets from udp_send_skb(),
with the IP header __ip_make_skb() builds just put in front (before LOCAL_OUT, so
before any mangling or fragmentation). Both as raw IPv4 packets. ICMP that IP sends
itself does not cross this boundary and is not seen.

Each tap has a bounded queue, drops what its reader cannot keep up with and counts
it, and may carry a classic BPF program (tcpdump -dd -y IPV4) that refuses packets
before they are queued, like a packet socket's filter.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

import grpc

from services.core.bpf import AncillaryData, BpfProg, SockFilter, bpf_prepare_filter, run_filter
from services.core.skbuff import SkBuff
from services.core.wire.ethernet import ETH_P_IP
from services.core.wire.ipv4 import IPPROTO_UDP, IPPROTO_UDPLITE
from stackemu.ip.v1 import ip_pb2
from stackemu.nic.v1 import nic_pb2

# A queue of this many packets per reader, as the NIC's taps.
TAP_QUEUE = 4096


@dataclass(frozen=True, slots=True)
class Crossed:
    """One packet that crossed the boundary, copied when it did."""

    tstamp: int
    pkt_type: int
    ifindex: int
    packet: bytes
    ip_summed: int
    gso_size: int
    gso_segs: int


def filter_from_proto(insns: Iterable[nic_pb2.SockFilter]) -> BpfProg | None:
    """The tap's program: None for none, else checked and compiled; ValueError for a
    field wider than struct sock_filter's and OSError(EINVAL) for what
    bpf_prepare_filter refuses."""
    prog = [SockFilter(f.code, f.jt, f.jf, f.k) for f in insns]
    if not prog:
        return None
    for pc, f in enumerate(prog):
        if f.code > 0xFFFF or f.jt > 0xFF or f.jf > 0xFF:
            raise ValueError(f"bpf: insn {pc}: a field too wide for struct sock_filter")
    return bpf_prepare_filter(prog)


def boundary_filter(prog: BpfProg, c: Crossed) -> bool:
    """The program over the packet from its IPv4 header (offset 0 is the network
    header, there is no MAC header: libpcap's LINKTYPE_IPV4 code loads nothing below
    it). libpcap returns 0 or the snapshot length, so a packet is kept whole or not."""
    anc = AncillaryData(protocol=ETH_P_IP, pkt_type=c.pkt_type, ifindex=c.ifindex)
    return run_filter(prog, c.packet, 0, len(c.packet), 0, None, anc) != 0


class BoundaryTap:
    def __init__(self, wake: Callable[[], None], limit: int = TAP_QUEUE, prog: BpfProg | None = None) -> None:
        self.q: deque[Crossed] = deque()
        self.limit = limit
        self.dropped = 0
        self.prog = prog
        self._wake = wake

    def offer(self, c: Crossed) -> None:
        if self.prog is not None and not boundary_filter(self.prog, c):
            return
        if len(self.q) >= self.limit:
            self.dropped += 1
            return
        self.q.append(c)
        self._wake()


class BoundaryTaps:
    def __init__(self) -> None:
        self.taps: list[BoundaryTap] = []

    def __bool__(self) -> bool:
        return bool(self.taps)

    def add(self, tap: BoundaryTap) -> None:
        self.taps.append(tap)

    def remove(self, tap: BoundaryTap) -> None:
        self.taps.remove(tap)

    def deliver(self, skb: SkBuff, pkt_type: int, ifindex: int) -> None:
        """`skb` crosses the boundary: its network header is the IPv4 header, data is
        at it (going down) or at the UDP header (going up)."""
        protocol = skb.head[skb.network_header + 9]
        if protocol not in (IPPROTO_UDP, IPPROTO_UDPLITE):
            return
        packet = bytes(skb.head[skb.network_header : skb.data]) + skb.payload()
        c = Crossed(time.time_ns(), pkt_type, ifindex, packet, skb.ip_summed, skb.gso_size, skb.gso_segs)
        for tap in self.taps:
            tap.offer(c)


async def boundary_capture(
    taps: BoundaryTaps, request: ip_pb2.CaptureRequest, context: grpc.aio.ServicerContext
) -> AsyncIterator[ip_pb2.CaptureResponse]:
    """The Capture RPC: a tap in place (said with the response headers, so the
    caller knows it is listening), then its packets until `count` or the caller
    cancels."""
    try:
        prog = filter_from_proto(request.filter)
    except (OSError, ValueError) as e:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"filter: {e}")
    wake = asyncio.Event()
    tap = BoundaryTap(wake.set, prog=prog)
    taps.add(tap)
    await context.send_initial_metadata(())
    sent = 0
    try:
        while not request.count or sent < request.count:
            await wake.wait()
            wake.clear()
            while tap.q and (not request.count or sent < request.count):
                c = tap.q.popleft()
                sent += 1
                yield ip_pb2.CaptureResponse(
                    tstamp=c.tstamp,
                    pkt_type=c.pkt_type,
                    ifindex=c.ifindex,
                    packet=c.packet,
                    dropped=tap.dropped,
                    ip_summed=c.ip_summed,
                    gso_size=c.gso_size,
                    gso_segs=c.gso_segs,
                )
    finally:
        taps.remove(tap)
