"""What every packet tap shares (the ptype_all handler an AF_PACKET reader registers,
and the emulator's taps at layer boundaries): a bounded queue per reader that drops
and counts what its reader cannot keep up with (a packet socket's rcvbuf overflow,
which tcpdump reports as "dropped by kernel"), an optional classic BPF program
(tcpdump's compiled filter, attached with SO_ATTACH_FILTER) that refuses packets before
anything is queued or counted, as packet_rcv() runs it, and the stream of a capture."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Generic, Protocol, TypeVar

from services.core.bpf import BpfProg, SockFilter, bpf_prepare_filter

# A capture queue of this many packets per reader.
TAP_QUEUE = 4096

T = TypeVar("T")


class SockFilterFields(Protocol):
    """struct sock_filter as a protobuf message carries it."""

    code: int
    jt: int
    jf: int
    k: int


def filter_from_proto(insns: Iterable[SockFilterFields]) -> BpfProg | None:
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


class Tap(Generic[T]):
    """One reader's tap: `accept` (its device, its filter) decides what it sees; what
    it sees is queued up to `limit`, the rest counted in `dropped`; `wake` is called
    when something is queued."""

    def __init__(
        self, wake: Callable[[], None], accept: Callable[[T], bool] | None = None, limit: int = TAP_QUEUE
    ) -> None:
        self.q: deque[T] = deque()
        self.limit = limit
        self.dropped = 0
        self._accept = accept
        self._wake = wake

    def offer(self, c: T) -> None:
        if self._accept is not None and not self._accept(c):
            return
        if len(self.q) >= self.limit:
            self.dropped += 1
            return
        self.q.append(c)
        self._wake()


class TapSet(Generic[T]):
    """The taps of one place packets pass; false while nobody listens, so the hot path
    pays one truth test."""

    def __init__(self) -> None:
        self.taps: list[Tap[T]] = []

    def __bool__(self) -> bool:
        return bool(self.taps)

    def add(self, tap: Tap[T]) -> None:
        self.taps.append(tap)

    def remove(self, tap: Tap[T]) -> None:
        self.taps.remove(tap)

    def offer(self, c: T) -> None:
        for tap in self.taps:
            tap.offer(c)


async def captured(tap: Tap[T], ready: asyncio.Event, count: int) -> AsyncIterator[T]:
    """A capture's packets as they come (`ready` is the event the tap's wake sets),
    until `count` of them (0: until the reader goes away)."""
    sent = 0
    while not count or sent < count:
        await ready.wait()
        ready.clear()
        while tap.q and (not count or sent < count):
            sent += 1
            yield tap.q.popleft()
