"""Packet taps: the ptype_all handlers an AF_PACKET socket (tcpdump) registers.

Each tap holds a bounded queue of captured frames; a reader that falls behind loses
the oldest frames and the loss is counted (a packet socket's rcvbuf overflow, which
tcpdump reports as "dropped by kernel").

A tap may carry a classic BPF program (tcpdump's compiled filter, attached with
SO_ATTACH_FILTER): packet_rcv() runs it before anything is queued or counted, so a
frame it refuses costs the reader nothing and is not a drop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.core.bpf import AncillaryData, BpfProg, SockFilter, bpf_prepare_filter, run_filter
from stackemu.nic.v1 import nic_pb2

# A capture ring of this many frames per reader.
TAP_QUEUE = 4096

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


def filter_from_proto(insns: Iterable[nic_pb2.SockFilter]) -> BpfProg | None:
    """SO_ATTACH_FILTER on the tap's packet socket: None for no program, else the
    checked and compiled one; ValueError for a field wider than struct sock_filter's
    and OSError(EINVAL) for what bpf_prepare_filter refuses."""
    prog = [SockFilter(f.code, f.jt, f.jf, f.k) for f in insns]
    if not prog:
        return None
    for pc, f in enumerate(prog):
        if f.code > 0xFFFF or f.jt > 0xFF or f.jf > 0xFF:
            raise ValueError(f"bpf: insn {pc}: a field too wide for struct sock_filter")
    return bpf_prepare_filter(prog)


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


class Tap:
    def __init__(
        self,
        ifindex: int,
        wake: Callable[[], None],
        limit: int = TAP_QUEUE,
        prog: BpfProg | None = None,
        hatype: Callable[[int], int] = lambda ifindex: ARPHRD_ETHER,
    ) -> None:
        # ifindex 0: every device (tcpdump -i any).
        self.ifindex = ifindex
        self.q: deque[Captured] = deque()
        self.limit = limit
        self.dropped = 0
        self.prog = prog
        self.hatype = hatype
        self._wake = wake

    def offer(self, c: Captured) -> None:
        if self.ifindex and c.ifindex != self.ifindex:
            return
        if self.prog is not None and not tap_filter(self.prog, c, self.hatype(c.ifindex)):
            return
        if len(self.q) >= self.limit:
            self.dropped += 1
            return
        self.q.append(c)
        self._wake()


class Taps:
    def __init__(self) -> None:
        self.taps: list[Tap] = []

    def __bool__(self) -> bool:
        return bool(self.taps)

    def add(self, tap: Tap) -> None:
        self.taps.append(tap)

    def remove(self, tap: Tap) -> None:
        self.taps.remove(tap)

    def deliver(self, ifindex: int, tstamp: int, pkt_type: int, frame: bytes) -> None:
        c = Captured(ifindex, tstamp, pkt_type, frame)
        for tap in self.taps:
            tap.offer(c)
