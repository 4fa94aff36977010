"""Requests that do not decode as their message get INVALID_ARGUMENT with what the
decoder said, as any other malformed request does. grpc.aio itself would answer UNKNOWN
("Unexpected DecodeError") and log a traceback."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc


class Undecodable:
    """What the wrapped deserializer returns for bytes its message cannot be read from."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def _checked_deserializer(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def checked(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception as err:  # DecodeError, and whatever a custom decoder raises
            return Undecodable(str(err) or type(err).__name__)

    return checked


async def _refuse(context: grpc.aio.ServicerContext, request: Undecodable) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request does not decode: {request.why}")


async def _requests(it: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
    async for request in it:
        if isinstance(request, Undecodable):
            await _refuse(context, request)
        yield request


async def _each(result: Any) -> AsyncIterator[Any]:
    """A streaming behaviour's responses, whether it is an async generator or a coroutine
    that writes them itself (its result then is None)."""
    if inspect.isasyncgen(result):
        async for response in result:
            yield response
    else:
        await result


def _wrap(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    deserializer = _checked_deserializer(handler.request_deserializer)
    serializer = handler.response_serializer
    if handler.unary_unary is not None:
        uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                await _refuse(context, request)
            return await uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, deserializer, serializer)
    if handler.unary_stream is not None:
        us = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if isinstance(request, Undecodable):
                await _refuse(context, request)
            async for response in _each(us(request, context)):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, deserializer, serializer)
    if handler.stream_unary is not None:
        su = handler.stream_unary

        async def stream_unary(it: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            return await su(_requests(it, context), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, deserializer, serializer)
    ss = handler.stream_stream

    async def stream_stream(it: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for response in _each(ss(_requests(it, context), context)):
            yield response

    return grpc.stream_stream_rpc_method_handler(stream_stream, deserializer, serializer)


class DecodeCheck(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Every method's request deserializer made to hand back Undecodable instead of
    raising, and the method to answer it INVALID_ARGUMENT."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        return handler if handler is None else _wrap(handler)
