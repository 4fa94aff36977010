"""BatchQueue: bounded, coalescing, interruptible; serve_bidi ends with its peer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.core.stream import MAX_ITEMS_PER_MESSAGE, BadMessage, BatchQueue, StreamEnded, serve_bidi


def test_get_coalesces_waiting_batches_up_to_the_message_limit() -> None:
    async def main() -> None:
        q: BatchQueue[int] = BatchQueue(max_batches=1000)
        for i in range(300):
            await q.put([i])
        first = await q.get()
        assert first == list(range(MAX_ITEMS_PER_MESSAGE))
        assert await q.get() == list(range(MAX_ITEMS_PER_MESSAGE, 300))
        assert q.qsize() == 0

    asyncio.run(main())


def test_the_bound_makes_producers_wait_and_put_nowait_refuse() -> None:
    async def main() -> None:
        q: BatchQueue[int] = BatchQueue(max_batches=2)
        await q.put([1])
        await q.put([2])
        assert q.put_nowait([3]) is False
        blocked = asyncio.create_task(q.put([4]))
        await asyncio.sleep(0)
        assert not blocked.done() and q.qsize() == 2
        assert await q.get() == [1, 2]
        await asyncio.wait_for(blocked, 1)
        assert await q.get() == [4]
        assert q.put_nowait([]) is True and q.qsize() == 0  # an empty batch is nothing

    asyncio.run(main())


def test_close_hands_what_is_queued_and_every_later_batch_to_the_dropper() -> None:
    """A stream that broke: its queue's batches are counted lost, a waiting get() and a
    producer waiting for room end, and nothing put later waits or stays."""

    async def main() -> None:
        q: BatchQueue[int] = BatchQueue(max_batches=1)
        lost: list[list[int]] = []
        await q.put([1, 2])
        blocked = asyncio.create_task(q.put([3]))
        await asyncio.sleep(0)
        assert not blocked.done()
        q.close(lost.append)
        await asyncio.wait_for(blocked, 1)
        assert lost == [[1, 2], [3]]
        await q.put([4])
        assert q.put_nowait([5]) is True
        assert lost == [[1, 2], [3], [4], [5]] and q.qsize() == 0
        with pytest.raises(StreamEnded):
            await q.get()
        getter = BatchQueue[int]()
        waiting = asyncio.create_task(getter.get())
        await asyncio.sleep(0)
        getter.close(lost.append)
        with pytest.raises(StreamEnded):
            await waiting

    asyncio.run(main())


def test_interrupt_ends_a_waiting_get_or_the_next_empty_one() -> None:
    async def main() -> None:
        q: BatchQueue[int] = BatchQueue()
        waiting = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.interrupt(StreamEnded())
        with pytest.raises(StreamEnded):
            await waiting
        q.interrupt(StreamEnded())
        await q.put([7])
        assert await q.get() == [7]  # queued data goes first
        with pytest.raises(StreamEnded):
            await q.get()
        q.interrupt(StreamEnded())
        q.clear_interrupt()
        await q.put([8])
        assert await q.get() == [8]

    asyncio.run(main())


async def _requests(items: list[int]) -> AsyncIterator[int]:
    for i in items:
        yield i
        await asyncio.sleep(0)


def test_serve_bidi_sends_what_is_queued_and_ends_with_the_peer() -> None:
    async def main() -> None:
        out: BatchQueue[int] = BatchQueue()

        async def on_request(req: int) -> None:
            await out.put([req * 10])

        got = [m async for m in serve_bidi(_requests([1, 2, 3]), out, on_request, lambda b: b)]
        assert [x for batch in got for x in batch] == [10, 20, 30]

    asyncio.run(main())


def test_serve_bidi_raises_the_readers_bad_message() -> None:
    async def main() -> None:
        out: BatchQueue[int] = BatchQueue()

        async def on_request(req: int) -> None:
            raise BadMessage(f"request {req} is wrong")

        with pytest.raises(BadMessage, match="request 1 is wrong"):
            async for _ in serve_bidi(_requests([1]), out, on_request, lambda b: b):
                pass

    asyncio.run(main())
