"""gRPC adapter for the socket layer: one RPC per system call, the errno in the
response, INVALID_ARGUMENT for requests that name no process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from services.core import errno
from services.core.server import CHANNEL_OPTIONS, Service, ServingStatus, retry_forever
from services.core.skbuff import TraceStep, trace_to_proto
from services.core.sockaddr import make_sockaddr_in
from services.core.socket_uapi import MSG_TRUNC
from services.socket.files import UnknownProcess
from services.socket.syscalls import SocketLayer
from services.socket.udp_client import UdpClient
from stackemu.socket.v1 import socket_pb2 as pb
from stackemu.socket.v1 import socket_pb2_grpc

R = TypeVar("R")


async def _syscall(
    context: grpc.aio.ServicerContext, make: Callable[[int], R], body: Callable[[], Awaitable[R]]
) -> R:
    """Run one system call: its result, `make(errno)` for an OSError, or an aborted
    RPC for a request the kernel could not even express."""
    try:
        return await body()
    except OSError as err:
        # An OSError without an errno is a fault of the emulator, reported as EIO.
        return make(err.errno or errno.EIO)
    except UnknownProcess as err:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        raise


class SocketServicer(socket_pb2_grpc.SocketServiceServicer):
    def __init__(self, layer: SocketLayer, hostname: str) -> None:
        self.layer = layer
        self.hostname = hostname

    async def OpenProcess(
        self, request: pb.OpenProcessRequest, context: grpc.aio.ServicerContext
    ) -> pb.OpenProcessResponse:
        try:
            proc = self.layer.open_process(request.comm or "python3")
        except OSError as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
            raise
        return pb.OpenProcessResponse(pid=proc.pid)

    async def ExitProcess(
        self, request: pb.ExitProcessRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExitProcessResponse:
        try:
            await self.layer.exit_process(request.pid)
        except KeyError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no process {request.pid}")
        return pb.ExitProcessResponse()

    async def Socket(self, request: pb.SocketRequest, context: grpc.aio.ServicerContext) -> pb.SocketResponse:
        async def body() -> pb.SocketResponse:
            fd = await self.layer.socket(request.pid, request.domain, request.type, request.protocol)
            return pb.SocketResponse(fd=fd)

        return await _syscall(context, lambda e: pb.SocketResponse(errno=e, fd=-1), body)

    async def Bind(self, request: pb.BindRequest, context: grpc.aio.ServicerContext) -> pb.BindResponse:
        async def body() -> pb.BindResponse:
            await self.layer.bind(request.pid, request.fd, request.addr)
            return pb.BindResponse()

        return await _syscall(context, lambda e: pb.BindResponse(errno=e), body)

    async def Connect(
        self, request: pb.ConnectRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConnectResponse:
        async def body() -> pb.ConnectResponse:
            await self.layer.connect(request.pid, request.fd, request.addr)
            return pb.ConnectResponse()

        return await _syscall(context, lambda e: pb.ConnectResponse(errno=e), body)

    async def SendMsg(
        self, request: pb.SendMsgRequest, context: grpc.aio.ServicerContext
    ) -> pb.SendMsgResponse:
        async def body() -> pb.SendMsgResponse:
            sent = await self.layer.sendmsg(
                request.pid,
                request.fd,
                request.data,
                request.addr,
                request.flags,
                request.trace,
                request.control,
            )
            return pb.SendMsgResponse(sent=sent)

        return await _syscall(context, lambda e: pb.SendMsgResponse(errno=e), body)

    async def RecvMsg(
        self, request: pb.RecvMsgRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecvMsgResponse:
        async def body() -> pb.RecvMsgResponse:
            timeout = request.timeout_ns if request.HasField("timeout_ns") else None
            d = await self.layer.recvmsg(
                request.pid, request.fd, request.bufsize, request.flags, timeout, request.controllen
            )
            steps = list(d.trace)
            if steps:
                steps.append(TraceStep("sock_recvmsg", "socket", self.hostname, time.time_ns()))
            return pb.RecvMsgResponse(
                data=d.data,
                length=d.ulen if request.flags & MSG_TRUNC else len(d.data),
                addr=make_sockaddr_in(d.saddr, d.sport),
                msg_flags=d.msg_flags,
                trace=trace_to_proto(steps),
                control=d.control,
            )

        return await _syscall(context, lambda e: pb.RecvMsgResponse(errno=e), body)

    async def GetSockName(
        self, request: pb.GetSockNameRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSockNameResponse:
        async def body() -> pb.GetSockNameResponse:
            return pb.GetSockNameResponse(addr=await self.layer.getsockname(request.pid, request.fd))

        return await _syscall(context, lambda e: pb.GetSockNameResponse(errno=e), body)

    async def GetPeerName(
        self, request: pb.GetPeerNameRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPeerNameResponse:
        async def body() -> pb.GetPeerNameResponse:
            return pb.GetPeerNameResponse(addr=await self.layer.getpeername(request.pid, request.fd))

        return await _syscall(context, lambda e: pb.GetPeerNameResponse(errno=e), body)

    async def SetSockOpt(
        self, request: pb.SetSockOptRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetSockOptResponse:
        async def body() -> pb.SetSockOptResponse:
            await self.layer.setsockopt(
                request.pid, request.fd, request.level, request.optname, request.optval
            )
            return pb.SetSockOptResponse()

        return await _syscall(context, lambda e: pb.SetSockOptResponse(errno=e), body)

    async def GetSockOpt(
        self, request: pb.GetSockOptRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSockOptResponse:
        async def body() -> pb.GetSockOptResponse:
            val, optlen = await self.layer.getsockopt(
                request.pid, request.fd, request.level, request.optname, request.optlen
            )
            return pb.GetSockOptResponse(optval=val, optlen=optlen)

        return await _syscall(context, lambda e: pb.GetSockOptResponse(errno=e), body)

    async def Close(self, request: pb.CloseRequest, context: grpc.aio.ServicerContext) -> pb.CloseResponse:
        async def body() -> pb.CloseResponse:
            await self.layer.close(request.pid, request.fd)
            return pb.CloseResponse()

        return await _syscall(context, lambda e: pb.CloseResponse(errno=e), body)


class SocketService(Service):
    name = "socket"
    service_names = [pb.DESCRIPTOR.services_by_name["SocketService"].full_name]

    def __init__(self, hostname: str, udp_addr: str) -> None:
        self.client = UdpClient()
        self.servicer = SocketServicer(SocketLayer(self.client), hostname)
        self.udp_addr = udp_addr
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None

    def register(self, server: grpc.aio.Server) -> None:
        socket_pb2_grpc.add_SocketServiceServicer_to_server(self.servicer, server)

    async def start(self, health: ServingStatus) -> None:
        self._channel = grpc.aio.insecure_channel(self.udp_addr, options=CHANNEL_OPTIONS)
        channel = self._channel
        self._task = asyncio.create_task(
            retry_forever(lambda: self.client.run(channel, health.serving), "attach to udp")
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._channel is not None:
            await self._channel.close()
