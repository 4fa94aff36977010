"""Requests whose bytes are not their message: INVALID_ARGUMENT with the decoder's
words, for unary and streaming methods alike (grpc.aio alone answers UNKNOWN)."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2

from services.core.server import Service, make_server

# A field 1 of wire type 7, which protobuf does not have.
GARBAGE = b"\x0f\x01\x02"
CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
REFLECT = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


class _Nothing(Service):
    name = "nothing"
    service_names: list[str] = []

    def register(self, server: grpc.aio.Server) -> None:
        pass


def test_undecodable_requests_are_invalid_argument() -> None:
    async def main() -> None:
        server, _, port = make_server(_Nothing(), "127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                ok = await channel.unary_unary(CHECK)(health_pb2.HealthCheckRequest().SerializeToString())
                assert (
                    health_pb2.HealthCheckResponse.FromString(ok).status
                    == health_pb2.HealthCheckResponse.SERVING
                )
                calls = {
                    "unary": channel.unary_unary(CHECK)(GARBAGE),
                    "server stream": channel.unary_stream(WATCH)(GARBAGE).read(),
                    "bidi stream": channel.stream_stream(REFLECT)(iter([GARBAGE])).read(),
                }
                for kind, call in calls.items():
                    try:
                        await asyncio.wait_for(call, 5)
                    except grpc.aio.AioRpcError as err:
                        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, kind
                        assert err.details().startswith("the request does not decode: "), err.details()
                    else:
                        raise AssertionError(f"{kind}: answered")
        finally:
            await server.stop(None)

    asyncio.run(main())
