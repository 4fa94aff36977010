"""A NIC's RX descriptor ring, its interrupt with coalescing, and its NAPI instance.

The "hardware" DMAs each arriving frame into the next free RX descriptor; a full ring
drops the frame (rx_missed_errors). The interrupt is raised when the coalescing
thresholds say so (ethtool -C rx-usecs / rx-frames) unless it is masked; the hard IRQ
handler masks it and schedules NAPI (napi_schedule_irqoff); napi_complete_done()
unmasks it when a poll finishes under its weight.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from services.core.skbuff import TraceStep

# What most drivers offer (ethtool -g "Pre-set maximums") and their defaults.
RX_RING_MAX = 4096
TX_RING_MAX = 4096
RX_RING_DEFAULT = 256
TX_RING_DEFAULT = 256
# include/linux/netdevice.h: NAPI_POLL_WEIGHT, what netif_napi_add() gives a driver.
NAPI_POLL_WEIGHT = 64
# The largest weight netif_napi_add_weight() accepts without a warning.
NAPI_MAX_WEIGHT = 64 * 1024


@dataclass(slots=True)
class RxDesc:
    """One filled RX descriptor: the frame, when it landed, and its hardware timestamp;
    and the emulator's trace of the skb the peer sent it from, when it was traced."""

    frame: bytes
    arrival_ns: int
    hwtstamp: int
    trace: list[TraceStep] | None = None


class Napi:
    """struct napi_struct plus the RX ring and IRQ line it serves."""

    def __init__(self, name: str, ifindex: int = 0) -> None:
        self.name = name
        self.ifindex = ifindex
        self.weight = NAPI_POLL_WEIGHT
        self.rx_pending = RX_RING_DEFAULT
        self.tx_pending = TX_RING_DEFAULT
        self.rx_usecs = 0
        self.rx_max_frames = 0
        self.ring: deque[RxDesc] = deque()
        # NAPI_STATE_SCHED: on a CPU's poll list (or being polled).
        self.scheduled = False
        self.irq_masked = False
        # When the oldest frame not yet signalled arrived: the coalescing timer's start.
        self._pending_since: int | None = None
        self.irqs = 0

    def dma(self, desc: RxDesc) -> bool:
        """The device writes a frame into the ring; False when no descriptor is free."""
        if len(self.ring) >= self.rx_pending:
            return False
        self.ring.append(desc)
        if self._pending_since is None and not self.irq_masked:
            self._pending_since = desc.arrival_ns
        return True

    def irq_due(self, now_ns: int) -> bool:
        """Whether the interrupt fires now: unmasked, frames waiting, and the coalescing
        thresholds met. rx-usecs 0 means no delay; rx-frames 0 means no frame limit."""
        if self.irq_masked or not self.ring or self._pending_since is None:
            return False
        if self.rx_max_frames and len(self.ring) >= self.rx_max_frames:
            return True
        return now_ns >= self._pending_since + self.rx_usecs * 1000

    def irq_deadline(self) -> int | None:
        """When the coalescing timer fires, if an interrupt is being held back."""
        if self.irq_masked or not self.ring or self._pending_since is None:
            return None
        return self._pending_since + self.rx_usecs * 1000

    def hard_irq(self) -> bool:
        """The driver's interrupt handler: mask the line and schedule NAPI. True if NAPI
        was not already scheduled (napi_schedule_prep)."""
        self.irqs += 1
        self.irq_masked = True
        self._pending_since = None
        if self.scheduled:
            return False
        self.scheduled = True
        return True

    def complete_done(self, now_ns: int) -> None:
        """napi_complete_done(): off the poll list, interrupt unmasked. Frames that came
        while it was masked start the coalescing timer now."""
        self.scheduled = False
        self.irq_masked = False
        if self.ring:
            self._pending_since = now_ns

    def resize(self, rx_pending: int | None, tx_pending: int | None) -> None:
        """ethtool -G: the driver reallocates its rings. Frames still in the old RX ring
        past the new size are lost, as a driver's ring teardown loses them; the caller
        counts them."""
        if rx_pending is not None:
            self.rx_pending = rx_pending
        if tx_pending is not None:
            self.tx_pending = tx_pending

    def trim_ring(self) -> list[RxDesc]:
        lost = []
        while len(self.ring) > self.rx_pending:
            lost.append(self.ring.pop())
        return lost
