"""Packet taps: the ptype_all handlers an AF_PACKET socket (tcpdump) registers.

Each tap holds a bounded queue of captured frames; a reader that falls behind loses
the oldest frames and the loss is counted (a packet socket's rcvbuf overflow, which
tcpdump reports as "dropped by kernel").

A tap may carry a classic BPF program (tcpdump's compiled filter, attached with
SO_ATTACH_FILTER): packet_rcv() runs it before anything is queued or counted, so a
frame it refuses costs the reader nothing and is not a drop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.core import tap as core_tap
from services.core.bpf import AncillaryData, BpfProg, run_filter
from services.core.tap import TAP_QUEUE, TapSet
from services.core.tap import filter_from_proto as filter_from_proto

ETH_HLEN = 14
# include/uapi/linux/if_arp.h
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772


@dataclass(frozen=True, slots=True)
class Captured:
    ifindex: int
    tstamp: int
    pkt_type: int
    frame: bytes


def tap_filter(prog: BpfProg, c: Captured, hatype: int) -> bool:
    """run_filter() of packet_rcv(): the program sees the frame from its MAC header
    (the packet socket pushes it back for a device with header_ops, Ethernet and lo
    alike), the network header after it, and the skb's protocol, pkt_type and device.

    The kernel keeps min(result, len) bytes; libpcap's programs return 0 or the
    snapshot length (262144), more than any frame here, so a frame is kept whole or
    refused.
    """
    frame = c.frame
    protocol = int.from_bytes(frame[12:14], "big") if len(frame) >= ETH_HLEN else 0
    anc = AncillaryData(protocol=protocol, pkt_type=c.pkt_type, ifindex=c.ifindex, hatype=hatype)
    return run_filter(prog, frame, 0, len(frame), ETH_HLEN, 0, anc) != 0


class Tap(core_tap.Tap[Captured]):
    """A packet socket's tap on one device (ifindex 0: every device, tcpdump -i any),
    with its filter run as packet_rcv() runs it."""

    def __init__(
        self,
        ifindex: int,
        wake: Callable[[], None],
        limit: int = TAP_QUEUE,
        prog: BpfProg | None = None,
        hatype: Callable[[int], int] = lambda ifindex: ARPHRD_ETHER,
    ) -> None:
        def accept(c: Captured) -> bool:
            if ifindex and c.ifindex != ifindex:
                return False
            return prog is None or tap_filter(prog, c, hatype(c.ifindex))

        super().__init__(wake, accept, limit)
        self.ifindex = ifindex


class Taps(TapSet[Captured]):
    def deliver(self, ifindex: int, tstamp: int, pkt_type: int, frame: bytes) -> None:
        self.offer(Captured(ifindex, tstamp, pkt_type, frame))
