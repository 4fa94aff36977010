"""The emulator's per-skb trace: which kernel function an skb passed, where and when.

Off unless the skb carries a trace list: skb.trace is None costs one comparison per
step. A trace begins where an skb enters the stack, when the sending socket asks for
it (a traced send, or the emulator-only socket option SO_EMU_TRACE), when a sampling
counter says so (the emulator-only sysctl net.core.emu_trace_sample: 1 skb in N,
counted at udp_sendmsg and at the NIC's receive, never at random), or further in, at
a netfilter TRACE rule (xt_TRACE sets skb->nf_trace there).

Every service keeps the traces it saw in a bounded ring (the last TRACE_RING), for
`stackemu trace` to read: each entry is the skb's step list as it was when the skb
left the service or ended in it (the list is the skb's own, so the steps taken after
it was put in the ring are there), with the steps of the services it came through
before. A packet's journey is the longest entry whose first step is its first step.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Final, NamedTuple

from services.core.skbuff import HEADER_UNSET, SkBuff, TraceStep, trace_to_proto
from services.core.sysctl import Sysctl, SysctlValue
from stackemu.skb.v1 import skb_pb2

# How many traces a service keeps.
TRACE_RING: Final = 1024
# The sampling knob: 0 traces nothing, N one skb in N.
SAMPLE_SYSCTL: Final = "net.core.emu_trace_sample"


class TraceEntry(NamedTuple):
    """One entry of a service's ring: the trace, and the skb it belongs to (read for
    its headers when the ring is read, by then past the IP layer's parsing)."""

    steps: list[TraceStep]
    skb: SkBuff


class Tracer:
    """One service's tracer: records steps on traced skbs, keeps the ring, and decides
    the sampled skbs at the entry points it is asked about."""

    __slots__ = ("_seen", "host", "ring", "sample", "service")

    def __init__(self, service: str, host: str) -> None:
        self.service = service
        self.host = host
        self.ring: deque[TraceEntry] = deque(maxlen=TRACE_RING)
        # 1 in `sample` skbs entering here is traced; 0: none. The entry points test
        # this one attribute before anything else, so sampling off costs that test.
        self.sample = 0
        self._seen = 0

    def __call__(self, skb: SkBuff, func: str) -> None:
        steps = skb.trace
        if steps is not None:
            if not steps or steps[-1].service != self.service or steps[-1].host != self.host:
                # The skb's first step in this service: its trace goes into the ring.
                self.ring.append(TraceEntry(steps, skb))
            steps.append(TraceStep(func, self.service, self.host, time.time_ns()))

    def begin(self, skb: SkBuff, func: str) -> None:
        """Start skb's trace here (unless it has one) with the step `func`."""
        if skb.trace is None:
            skb.trace = []
        self(skb, func)

    def sampled(self) -> bool:
        """Whether the skb entering now is the one in `sample` to trace. The caller
        tests `sample` first. A counter, not a coin: N*k skbs give exactly k traces."""
        self._seen += 1
        if self._seen < self.sample:
            return False
        self._seen = 0
        return True

    def follow(self, sysctl: Sysctl) -> None:
        """Keep `sample` equal to net.core.emu_trace_sample; a change restarts the count."""
        self._set_sample(SAMPLE_SYSCTL, sysctl.get_int(SAMPLE_SYSCTL))
        sysctl.watch(SAMPLE_SYSCTL, self._set_sample)

    def _set_sample(self, name: str, value: SysctlValue) -> None:
        assert isinstance(value, int)
        self.sample = value
        self._seen = 0

    def last(self, n: int = 0) -> list[TraceEntry]:
        """The newest n entries of the ring (all for 0), oldest first."""
        entries = list(self.ring)
        return entries[-n:] if n else entries


def trace_headers(skb: SkBuff) -> bytes:
    """The skb's IPv4 header and the 8 bytes after it (the UDP header), where it has
    one (b"" before the IP layer has built or parsed it): what `stackemu trace --flow`
    filters on."""
    nh = skb.network_header
    head = skb.head
    if nh == HEADER_UNSET or nh + 20 > len(head) or head[nh] >> 4 != 4:
        return b""
    ihl = (head[nh] & 0x0F) * 4
    return bytes(head[nh : min(nh + ihl + 8, len(head))])


def ring_to_proto(tracer: Tracer, last: int) -> list[skb_pb2.PacketTrace]:
    """GetTraces: the newest `last` entries of a service's ring (all for 0)."""
    return [
        skb_pb2.PacketTrace(steps=trace_to_proto(e.steps), headers=trace_headers(e.skb))
        for e in tracer.last(last)
    ]
