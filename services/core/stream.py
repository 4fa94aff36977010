"""The hand-off between a layer and the stream to its neighbour.

A layer puts whole batches (one NAPI poll, one batch of sends) on a bounded queue; the
stream's writer takes every batch waiting and sends them as one message. The bound is
the backpressure: a producer awaits space instead of buffering without limit.
"""

from __future__ import annotations

import asyncio
from collections import deque
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


class StreamEnded(Exception):
    """The stream a queue was feeding is gone; its writer stops."""


class BatchQueue(Generic[T]):
    """A bounded deque of batches with one consumer. Cheaper than asyncio.Queue on this
    path, and interruptible: interrupt() ends the consumer's current or next get()."""

    def __init__(self, max_batches: int = QUEUE_BATCHES) -> None:
        self._batches: deque[list[T]] = deque()
        self._max = max_batches
        self._getter: asyncio.Future[None] | None = None
        self._putters: deque[asyncio.Future[None]] = deque()
        self._interrupt: BaseException | None = None
        # Set by close(): where batches go once the stream is gone.
        self._dropper: Callable[[list[T]], None] | None = None

    def _wake_getter(self) -> None:
        g = self._getter
        if g is not None and not g.done():
            g.set_result(None)

    async def put(self, batch: list[T]) -> None:
        """Queue a batch, waiting while max_batches are already queued."""
        if not batch:
            return
        while self._dropper is None and len(self._batches) >= self._max:
            fut = asyncio.get_running_loop().create_future()
            self._putters.append(fut)
            try:
                await fut
            finally:
                if not fut.done():
                    fut.cancel()
        if self._dropper is not None:
            self._dropper(batch)
            return
        self._batches.append(batch)
        self._wake_getter()

    def put_nowait(self, batch: list[T]) -> bool:
        """Queue without waiting; False when full (the caller counts the drop)."""
        if not batch:
            return True
        if self._dropper is not None:
            self._dropper(batch)
            return True
        if len(self._batches) >= self._max:
            return False
        self._batches.append(batch)
        self._wake_getter()
        return True

    async def get(self) -> list[T]:
        """Wait for one batch, then take every batch already waiting, up to the limit."""
        while not self._batches:
            if self._interrupt is not None:
                exc, self._interrupt = self._interrupt, None
                raise exc
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        items = self._batches.popleft()
        while len(items) < MAX_ITEMS_PER_MESSAGE and self._batches:
            items.extend(self._batches.popleft())
        while self._putters and len(self._batches) < self._max:
            p = self._putters.popleft()
            if not p.done():
                p.set_result(None)
        return items

    def interrupt(self, exc: BaseException) -> None:
        """End the consumer's get() with exc: now if it is waiting, else at its next
        get() that finds the queue empty."""
        self._interrupt = exc
        self._wake_getter()

    def close(self, dropper: Callable[[list[T]], None]) -> None:
        """The stream this queue fed is gone: what is queued, and whatever is put from
        now on, goes to dropper (which counts it lost) instead of waiting for a stream
        that will not come back; a get() waiting ends with StreamEnded."""
        self._dropper = dropper
        lost = self.drain()
        if lost:
            dropper(lost)
        self.interrupt(StreamEnded())

    def clear_interrupt(self) -> None:
        self._interrupt = None

    def drain(self) -> list[T]:
        items = [x for batch in self._batches for x in batch]
        self._batches.clear()
        while self._putters:
            p = self._putters.popleft()
            if not p.done():
                p.set_result(None)
        return items

    def qsize(self) -> int:
        return len(self._batches)


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
    from on_request propagates (the caller turns it into INVALID_ARGUMENT)."""
    outgoing.clear_interrupt()
    failure: list[BaseException] = []

    async def read() -> None:
        try:
            async for req in requests:
                await on_request(req)
        except asyncio.CancelledError:
            raise
        except BaseException as err:
            failure.append(err)
        outgoing.interrupt(StreamEnded())

    reader = asyncio.create_task(read())
    try:
        while True:
            try:
                batch = await outgoing.get()
            except StreamEnded:
                if failure:
                    raise failure[0] from None
                return
            yield wrap(batch)
    finally:
        reader.cancel()


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
