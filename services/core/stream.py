"""The hand-off between a layer and the stream to its neighbour.

A layer puts whole batches (one NAPI poll, one batch of sends) on a bounded queue; the
stream's writer takes every batch waiting and sends them as one message. The bound is
the backpressure: a producer awaits space instead of buffering without limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

import grpc

T = TypeVar("T")
M = TypeVar("M")

# Batches waiting for the stream; each holds up to a NAPI poll's budget of skbs.
QUEUE_BATCHES = 64
# Items per message: big enough to amortise the per-message cost, small enough to
# keep a message well under the gRPC frame limit.
MAX_ITEMS_PER_MESSAGE = 256


class BatchQueue(Generic[T]):
    def __init__(self, max_batches: int = QUEUE_BATCHES) -> None:
        self._q: asyncio.Queue[list[T]] = asyncio.Queue(max_batches)

    async def put(self, batch: list[T]) -> None:
        if batch:
            await self._q.put(batch)

    def put_nowait(self, batch: list[T]) -> bool:
        """Queue without waiting; False when full (the caller counts the drop)."""
        if not batch:
            return True
        try:
            self._q.put_nowait(batch)
        except asyncio.QueueFull:
            return False
        return True

    async def get(self) -> list[T]:
        """Wait for one batch, then take every batch already waiting, up to the limit."""
        items = await self._q.get()
        while len(items) < MAX_ITEMS_PER_MESSAGE and not self._q.empty():
            items.extend(self._q.get_nowait())
        return items

    def drain(self) -> list[T]:
        items: list[T] = []
        while not self._q.empty():
            items.extend(self._q.get_nowait())
        return items

    def qsize(self) -> int:
        return self._q.qsize()


async def messages(queue: BatchQueue[T], wrap: Callable[[list[T]], M]) -> AsyncIterator[M]:
    """The request or response iterator of a stream: one message per get()."""
    while True:
        yield wrap(await queue.get())


class BadMessage(ValueError):
    """A neighbour sent a message that contradicts itself; the stream is aborted with
    INVALID_ARGUMENT and this message."""


Req = TypeVar("Req")
Resp = TypeVar("Resp")


async def serve_bidi(
    requests: AsyncIterator[Req],
    outgoing: BatchQueue[T],
    on_request: Callable[[Req], Awaitable[None]],
    wrap: Callable[[list[T]], Resp],
) -> AsyncIterator[Resp]:
    """The server half of an Attach stream: read requests into on_request while sending
    whatever the layer queues on `outgoing`. Ends when the peer closes; a BadMessage
    from on_request propagates (the servicer turns it into INVALID_ARGUMENT)."""

    async def read() -> None:
        async for req in requests:
            await on_request(req)

    reader = asyncio.create_task(read())
    try:
        while True:
            getter = asyncio.create_task(outgoing.get())
            done, _ = await asyncio.wait({reader, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield wrap(getter.result())
                continue
            getter.cancel()
            reader.result()  # re-raises BadMessage or a stream error
            return
    finally:
        reader.cancel()


async def run_bidi(
    call: AsyncIterator[Resp],
    on_response: Callable[[Resp], Awaitable[None]],
) -> None:
    """The client half: feed each response to on_response until the stream ends."""
    async for resp in call:
        await on_response(resp)


class AttachGate:
    """Admits one caller at a time to a layer's Attach stream: a host has one layer
    above each layer, and a second would steal its traffic."""

    def __init__(self, upper: str) -> None:
        self.upper = upper
        self.busy = False

    async def serve(
        self,
        context: grpc.aio.ServicerContext,
        requests: AsyncIterator[Req],
        outgoing: BatchQueue[T],
        on_request: Callable[[Req], Awaitable[None]],
        wrap: Callable[[list[T]], Resp],
        first: Resp | None = None,
        closed: Callable[[], None] | None = None,
    ) -> AsyncIterator[Resp]:
        """serve_bidi() for the one admitted caller: FAILED_PRECONDITION for a second,
        INVALID_ARGUMENT with its message for a BadMessage; `first` is sent before any
        batch and `closed` runs when the stream ends, however it ends."""
        if self.busy:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{self.upper} is already attached")
        self.busy = True
        try:
            if first is not None:
                yield first
            async for resp in serve_bidi(requests, outgoing, on_request, wrap):
                yield resp
        except BadMessage as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        finally:
            self.busy = False
            if closed is not None:
                closed()
