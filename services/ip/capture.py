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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from services.core import tap as core_tap
from services.core.bpf import AncillaryData, BpfProg, run_filter
from services.core.skbuff import SkBuff
from services.core.tap import TAP_QUEUE, TapSet, captured
from services.core.tap import filter_from_proto as filter_from_proto
from services.core.wire.ethernet import ETH_P_IP
from services.core.wire.ipv4 import IPPROTO_UDP, IPPROTO_UDPLITE
from stackemu.ip.v1 import ip_pb2


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


def boundary_filter(prog: BpfProg, c: Crossed) -> bool:
    """The program over the packet from its IPv4 header (offset 0 is the network
    header, there is no MAC header: libpcap's LINKTYPE_IPV4 code loads nothing below
    it). libpcap returns 0 or the snapshot length, so a packet is kept whole or not."""
    anc = AncillaryData(protocol=ETH_P_IP, pkt_type=c.pkt_type, ifindex=c.ifindex)
    return run_filter(prog, c.packet, 0, len(c.packet), 0, None, anc) != 0


class BoundaryTap(core_tap.Tap[Crossed]):
    def __init__(self, wake: Callable[[], None], limit: int = TAP_QUEUE, prog: BpfProg | None = None) -> None:
        super().__init__(wake, None if prog is None else lambda c: boundary_filter(prog, c), limit)


class BoundaryTaps(TapSet[Crossed]):
    def deliver(self, skb: SkBuff, pkt_type: int, ifindex: int) -> None:
        """`skb` crosses the boundary: its network header is the IPv4 header, data is
        at it (going down) or at the UDP header (going up)."""
        protocol = skb.head[skb.network_header + 9]
        if protocol not in (IPPROTO_UDP, IPPROTO_UDPLITE):
            return
        packet = bytes(skb.head[skb.network_header : skb.data]) + skb.payload()
        self.offer(
            Crossed(time.time_ns(), pkt_type, ifindex, packet, skb.ip_summed, skb.gso_size, skb.gso_segs)
        )


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
    try:
        async for c in captured(tap, wake, request.count):
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
