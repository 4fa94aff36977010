"""The emulator's per-skb trace: which kernel function an skb passed, where and when.

Off unless the skb carries a trace list (skb.trace is None costs one comparison)."""

from __future__ import annotations

import time

from services.core.skbuff import SkBuff, TraceStep


class Tracer:
    __slots__ = ("host", "service")

    def __init__(self, service: str, host: str) -> None:
        self.service = service
        self.host = host

    def __call__(self, skb: SkBuff, func: str) -> None:
        if skb.trace is not None:
            skb.trace.append(TraceStep(func, self.service, self.host, time.time_ns()))
