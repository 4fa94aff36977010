"""The per-CPU receive state and the NET_RX softirq (net/core/dev.c).

Each emulated CPU has a softnet_data: a poll list of scheduled NAPI instances (device
NAPIs raised by their IRQ, and the CPU's backlog NAPI) and the backlog queue
(input_pkt_queue) that netif_rx() and RPS fill through enqueue_to_backlog().
net_rx_action() polls the list within netdev_budget packets and netdev_budget_usecs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from services.core.dropreason import DropStats, SkbDropReason
from services.core.skbuff import SkBuff

NET_RX_SUCCESS = 0
NET_RX_DROP = 1


class PollTarget(Protocol):
    """What a poll list holds: a struct napi_struct."""

    scheduled: bool


@dataclass(eq=False, slots=True)
class BacklogNapi:
    """softnet_data.backlog: the NAPI instance whose poll is process_backlog()."""

    cpu: int
    scheduled: bool = False


@dataclass(slots=True)
class SoftnetData:
    """struct softnet_data, one per CPU: the columns of /proc/net/softnet_stat."""

    cpu: int
    backlog: BacklogNapi
    input_pkt_queue: deque[SkBuff] = field(default_factory=deque)
    poll_list: deque[PollTarget] = field(default_factory=deque)
    processed: int = 0
    dropped: int = 0
    time_squeeze: int = 0
    received_rps: int = 0
    flow_limit_count: int = 0


class Softnet:
    def __init__(
        self,
        ncpus: int,
        drops: DropStats,
        max_backlog: Callable[[], int],
        budget: Callable[[], int],
        budget_usecs: Callable[[], int],
        clock: Callable[[], int],
    ) -> None:
        self.cpus = [SoftnetData(cpu, BacklogNapi(cpu)) for cpu in range(ncpus)]
        self.drops = drops
        self._max_backlog = max_backlog
        self._budget = budget
        self._budget_usecs = budget_usecs
        self._clock = clock

    def napi_schedule(self, cpu: int, napi: PollTarget) -> None:
        """____napi_schedule(): onto the CPU's poll list (the caller set `scheduled`)."""
        self.cpus[cpu].poll_list.append(napi)

    def enqueue_to_backlog(self, skb: SkBuff, cpu: int, this_cpu: int) -> int:
        sd = self.cpus[cpu]
        # `qlen <= max_backlog` admits one more than the sysctl, as the kernel does.
        if len(sd.input_pkt_queue) > self._max_backlog():
            sd.dropped += 1
            self.drops.drop(SkbDropReason.CPU_BACKLOG, "enqueue_to_backlog", skb=skb)
            return NET_RX_DROP
        sd.input_pkt_queue.append(skb)
        if not sd.backlog.scheduled:
            sd.backlog.scheduled = True
            sd.poll_list.append(sd.backlog)
            if cpu != this_cpu:
                # rps_ipi_queued(): another CPU's backlog is kicked by an IPI, which
                # the target counts in received_rps when it runs.
                sd.received_rps += 1
        return NET_RX_SUCCESS

    def pending(self) -> bool:
        return any(sd.poll_list for sd in self.cpus)

    def net_rx_action(self, cpu: int, poll: Callable[[PollTarget], int]) -> bool:
        """One NET_RX softirq on `cpu`. poll(napi) runs one napi_poll and returns the
        work done; a NAPI that used its whole weight stays scheduled (the caller leaves
        `scheduled` set) and goes to the tail of the list. Returns True when the list
        is not empty afterwards (the softirq is raised again)."""
        sd = self.cpus[cpu]
        budget = self._budget()
        time_limit = self._clock() + self._budget_usecs() * 1000
        work_list, sd.poll_list = sd.poll_list, deque()
        repoll: deque[PollTarget] = deque()
        while True:
            if not work_list:
                if not repoll and sd.poll_list:
                    # NAPIs scheduled while we ran (`goto start`).
                    work_list, sd.poll_list = sd.poll_list, deque()
                    continue
                break
            n = work_list.popleft()
            budget -= poll(n)
            if n.scheduled:
                repoll.append(n)
            if budget <= 0 or self._clock() >= time_limit:
                sd.time_squeeze += 1
                break
        # list_splice_tail_init(&sd->poll_list, &list); list_splice_tail(&repoll, &list);
        # list_splice(&list, &sd->poll_list): what was not reached, then the newly
        # scheduled, then those that want more.
        work_list.extend(sd.poll_list)
        work_list.extend(repoll)
        sd.poll_list = work_list
        return bool(sd.poll_list)
