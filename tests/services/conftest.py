"""Shared fixtures for the per-service integration tests: the service under test runs
for real on a grpc.aio server bound to 127.0.0.1:0, its neighbours are faked in the
same process, and each test drives everything from one asyncio.run.

pytest-asyncio is not a dependency: a sync test takes `run_async` and hands it its
coroutine. Inside, `grpc_test_server(register, ...)` serves servicers and yields the
"127.0.0.1:PORT" address, and `poll_until(predicate)` waits for a condition with a
bounded deadline instead of sleeping a guessed time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import grpc
import pytest

from services.core.server import CHANNEL_OPTIONS

T = TypeVar("T")

# A whole test's coroutine must finish within this; a hang fails fast with a traceback
# instead of waiting for pytest-timeout.
RUN_TIMEOUT = 20.0
POLL_TIMEOUT = 5.0

Register = Callable[[grpc.aio.Server], None]


def _run_async(coro: Coroutine[Any, Any, T], timeout: float = RUN_TIMEOUT) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@asynccontextmanager
async def _grpc_test_server(*register: Register) -> AsyncIterator[str]:
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    for add in register:
        add(server)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port, "could not bind 127.0.0.1:0"
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def _poll_until(
    predicate: Callable[[], bool | Awaitable[bool]], what: str = "condition", timeout: float = POLL_TIMEOUT
) -> None:
    """Re-check predicate (sync or async) every millisecond until it holds; AssertionError
    naming `what` when the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.001)


@pytest.fixture
def run_async() -> Callable[..., Any]:
    """run_async(coro, timeout=RUN_TIMEOUT): asyncio.run with a deadline."""
    return _run_async


@pytest.fixture
def grpc_test_server() -> Callable[..., AbstractAsyncContextManager[str]]:
    """`async with grpc_test_server(add_fn, ...) as addr`: a real grpc.aio server on an
    ephemeral 127.0.0.1 port with the given add_*_to_server registrations."""
    return _grpc_test_server


@pytest.fixture
def poll_until() -> Callable[..., Awaitable[None]]:
    """`await poll_until(predicate, what, timeout)`: bounded polling, no fixed sleeps."""
    return _poll_until
