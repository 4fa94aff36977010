"""The per-CPU receive backlog and the NET_RX softirq (net/core/dev.c).

netif_rx() → enqueue_to_backlog() → the backlog NAPI's process_backlog(), run by
net_rx_action() within netdev_budget packets and netdev_budget_usecs.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from services.core.dropreason import DropStats, SkbDropReason
from services.core.skbuff import SkBuff

NET_RX_SUCCESS = 0
NET_RX_DROP = 1


@dataclass(slots=True)
class SoftnetData:
    """struct softnet_data, one per CPU: the columns of /proc/net/softnet_stat."""

    cpu: int
    input_pkt_queue: deque[SkBuff] = field(default_factory=deque)
    processed: int = 0
    dropped: int = 0
    time_squeeze: int = 0


class Softnet:
    def __init__(
        self,
        ncpus: int,
        drops: DropStats,
        max_backlog: Callable[[], int],
        budget: Callable[[], int],
        budget_usecs: Callable[[], int],
        dev_weight: Callable[[], int],
    ) -> None:
        self.cpus = [SoftnetData(cpu) for cpu in range(ncpus)]
        self.drops = drops
        self._max_backlog = max_backlog
        self._budget = budget
        self._budget_usecs = budget_usecs
        self._dev_weight = dev_weight

    def enqueue_to_backlog(self, skb: SkBuff, cpu: int) -> int:
        sd = self.cpus[cpu]
        # `qlen <= max_backlog` admits one more than the sysctl, as the kernel does.
        if len(sd.input_pkt_queue) <= self._max_backlog():
            sd.input_pkt_queue.append(skb)
            return NET_RX_SUCCESS
        sd.dropped += 1
        self.drops.drop(SkbDropReason.CPU_BACKLOG, "enqueue_to_backlog")
        return NET_RX_DROP

    def pending(self) -> bool:
        return any(sd.input_pkt_queue for sd in self.cpus)

    def net_rx_action(self, receive: Callable[[SkBuff, SoftnetData], None]) -> bool:
        """One NET_RX softirq: poll each CPU's backlog by dev_weight until the budget or
        the time limit runs out. Returns True when work is left (the softirq is raised
        again, as after a time_squeeze)."""
        budget = self._budget()
        time_limit = time.monotonic_ns() + self._budget_usecs() * 1000
        weight = self._dev_weight()
        while True:
            progressed = False
            for sd in self.cpus:
                q = sd.input_pkt_queue
                if not q:
                    continue  # its backlog NAPI is not on the poll list
                # process_backlog(): at most `weight` packets per poll.
                work = 0
                while q and work < weight:
                    receive(q.popleft(), sd)
                    work += 1
                progressed = True
                budget -= work
                if budget <= 0 or time.monotonic_ns() > time_limit:
                    # net_rx_action() counts the squeeze whenever the budget or the time
                    # runs out after a poll, even if that poll emptied the queue.
                    sd.time_squeeze += 1
                    return self.pending()
            if not progressed:
                return False
