"""Packet taps: the ptype_all handlers an AF_PACKET socket (tcpdump) registers.

Each tap holds a bounded queue of captured frames; a reader that falls behind loses
the oldest frames and the loss is counted (a packet socket's rcvbuf overflow, which
tcpdump reports as "dropped by kernel").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# A capture ring of this many frames per reader.
TAP_QUEUE = 4096


@dataclass(frozen=True, slots=True)
class Captured:
    ifindex: int
    tstamp: int
    pkt_type: int
    frame: bytes


class Tap:
    def __init__(self, ifindex: int, wake: Callable[[], None], limit: int = TAP_QUEUE) -> None:
        # ifindex 0: every device (tcpdump -i any).
        self.ifindex = ifindex
        self.q: deque[Captured] = deque()
        self.limit = limit
        self.dropped = 0
        self._wake = wake

    def offer(self, c: Captured) -> None:
        if self.ifindex and c.ifindex != self.ifindex:
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
