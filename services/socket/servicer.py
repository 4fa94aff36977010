"""gRPC adapter for the socket layer: one RPC per system call, the errno in the
response, INVALID_ARGUMENT for requests that name no process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc

from services.core import errno
from services.core.cred import CAP_FULL_SET, Cred
from services.core.metrics import Collector, TableCollector
from services.core.server import Service, ServingStatus, open_aio_channel, retry_forever
from services.core.skbuff import TraceStep, trace_to_proto
from services.core.sockaddr import make_sockaddr_in
from services.core.socket_uapi import MSG_TRUNC
from services.socket import proto
from services.socket.files import UnknownProcess
from services.socket.syscalls import SocketLayer, recv_has_name
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
        self._exits: set[asyncio.Task[None]] = set()

    async def OpenProcess(
        self, request: pb.OpenProcessRequest, context: grpc.aio.ServicerContext
    ) -> pb.OpenProcessResponse:
        caps = request.capabilities if request.HasField("capabilities") else CAP_FULL_SET
        try:
            proc = self.layer.open_process(request.comm or "python3", Cred(request.uid, caps), request.nofile)
        except ValueError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise
        except OSError as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
            raise
        return pb.OpenProcessResponse(pid=proc.pid)

    async def ExitProcess(
        self, request: pb.ExitProcessRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExitProcessResponse:
        try:
            await self.layer.exit_process(request.pid)
        except UnknownProcess as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        return pb.ExitProcessResponse()

    async def KeepAlive(
        self, request: pb.KeepAliveRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.KeepAliveResponse]:
        """Held until the client goes (its call cancelled: the process exits) or the
        process exits by ExitProcess (the stream ends)."""
        try:
            proc = self.layer.procs.get(request.pid)
        except UnknownProcess as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise
        try:
            yield pb.KeepAliveResponse(pid=proc.pid)
            await proc.exited.wait()
        finally:
            if not proc.exited.is_set():
                # The exit runs on its own: this task is being cancelled.
                task = asyncio.create_task(self._exit(proc.pid))
                self._exits.add(task)
                task.add_done_callback(self._exits.discard)

    async def _exit(self, pid: int) -> None:
        try:
            await self.layer.exit_process(pid)
        except UnknownProcess:
            pass  # ExitProcess came first

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
                request.timeout_ns if request.HasField("timeout_ns") else None,
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
            return self._recv_response(d, request.flags)

        return await _syscall(context, lambda e: pb.RecvMsgResponse(errno=e), body)

    def _recv_response(self, d: proto.RecvMsg, flags: int) -> pb.RecvMsgResponse:
        steps = list(d.trace)
        if steps:
            steps.append(TraceStep("sock_recvmsg", "socket", self.hostname, time.time_ns()))
        return pb.RecvMsgResponse(
            data=d.data,
            length=d.ulen if flags & MSG_TRUNC else len(d.data),
            addr=make_sockaddr_in(d.saddr, d.sport) if recv_has_name(d) else b"",
            msg_flags=d.msg_flags,
            trace=trace_to_proto(steps),
            control=d.control,
        )

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

    async def SendMmsg(
        self, request: pb.SendMmsgRequest, context: grpc.aio.ServicerContext
    ) -> pb.SendMmsgResponse:
        async def body() -> pb.SendMmsgResponse:
            sent = await self.layer.sendmmsg(
                request.pid,
                request.fd,
                [(m.data, m.addr, m.control) for m in request.msgs],
                request.flags,
                request.timeout_ns if request.HasField("timeout_ns") else None,
            )
            return pb.SendMmsgResponse(sent=sent)

        return await _syscall(context, lambda e: pb.SendMmsgResponse(errno=e), body)

    async def RecvMmsg(
        self, request: pb.RecvMmsgRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecvMmsgResponse:
        async def body() -> pb.RecvMmsgResponse:
            got = await self.layer.recvmmsg(
                request.pid,
                request.fd,
                request.vlen,
                request.bufsize,
                request.controllen,
                request.flags,
                request.timeout_ns if request.HasField("timeout_ns") else None,
            )
            return pb.RecvMmsgResponse(msgs=[self._recv_response(d, request.flags) for d in got])

        return await _syscall(context, lambda e: pb.RecvMmsgResponse(errno=e), body)

    async def Shutdown(
        self, request: pb.ShutdownRequest, context: grpc.aio.ServicerContext
    ) -> pb.ShutdownResponse:
        async def body() -> pb.ShutdownResponse:
            await self.layer.shutdown(request.pid, request.fd, request.how)
            return pb.ShutdownResponse()

        return await _syscall(context, lambda e: pb.ShutdownResponse(errno=e), body)

    async def Fcntl(self, request: pb.FcntlRequest, context: grpc.aio.ServicerContext) -> pb.FcntlResponse:
        async def body() -> pb.FcntlResponse:
            return pb.FcntlResponse(value=self.layer.fcntl(request.pid, request.fd, request.cmd, request.arg))

        return await _syscall(context, lambda e: pb.FcntlResponse(errno=e), body)

    async def Poll(
        self, request: pb.PollRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.PollResponse]:
        """The responses are produced by the layer's poll loop; the stream ends (OK)
        when its time is up, and the loop's waits below end when the client cancels.
        A client slower than the changes gets the latest revents (one pending at most),
        so a stalled reader holds no growing backlog. More fds than the process's
        RLIMIT_NOFILE is INVALID_ARGUMENT (poll(2)'s EINVAL)."""
        try:
            nofile = self.layer.procs.get(request.pid).nofile
        except UnknownProcess as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise
        if len(request.fds) > nofile:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{len(request.fds)} fds is more than RLIMIT_NOFILE {nofile}",
            )
        # The revents not yet sent (only the latest is kept), and whether the poll loop
        # has ended.
        latest: list[int] | None = None
        done = False
        ready = asyncio.Event()

        async def report(revents: list[int]) -> None:
            nonlocal latest
            latest = revents
            ready.set()

        async def run() -> None:
            nonlocal done
            try:
                await self.layer.poll(
                    request.pid,
                    [(p.fd, p.events) for p in request.fds],
                    request.timeout_ns if request.HasField("timeout_ns") else None,
                    report,
                )
            finally:
                done = True
                ready.set()

        task = asyncio.create_task(run())
        try:
            while not done or latest is not None:
                await ready.wait()
                ready.clear()
                if latest is not None:
                    revents, latest = latest, None
                    yield pb.PollResponse(revents=revents)
            try:
                await task
            except UnknownProcess as err:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def ListProcesses(
        self, request: pb.ListProcessesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProcessesResponse:
        """What ss's user_ent_hash_build() gathers from /proc/PID/stat and /proc/PID/fd."""
        return pb.ListProcessesResponse(
            processes=[
                pb.ProcessInfo(
                    pid=p.pid,
                    comm=p.comm,
                    uid=p.cred.uid,
                    files=[
                        pb.FileInfo(fd=fd, sk=f.sk, type=f.type, protocol=f.protocol)
                        for fd, f in sorted(p.files.items())
                    ],
                )
                for p in sorted(self.layer.procs, key=lambda p: p.pid)
            ]
        )


class SocketService(Service):
    name = "socket"
    service_names = [pb.DESCRIPTOR.services_by_name["SocketService"].full_name]

    def __init__(self, hostname: str, udp_addr: str) -> None:
        self.client = UdpClient()
        layer = SocketLayer(self.client)
        self.client.on_lost = layer.lower_lost
        self.servicer = SocketServicer(layer, hostname)
        self.udp_addr = udp_addr
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None

    def register(self, server: grpc.aio.Server) -> None:
        socket_pb2_grpc.add_SocketServiceServicer_to_server(self.servicer, server)

    def collectors(self) -> list[Collector]:
        procs = self.servicer.layer.procs

        def count() -> list[tuple[list[str], list[tuple[str, int]]]]:
            return [([], [("processes", sum(1 for _ in procs))])]

        def files() -> list[tuple[list[str], list[tuple[str, int]]]]:
            return [([str(p.pid), p.comm], [("files", len(p.files))]) for p in procs]

        return [
            TableCollector("", [], count, frozenset({"processes"}), "the socket layer"),
            TableCollector("process", ["pid", "comm"], files, frozenset({"files"}), "the socket layer"),
        ]

    async def start(self, health: ServingStatus) -> None:
        self._channel = open_aio_channel(self.udp_addr, internal=True)
        channel = self._channel
        self._task = asyncio.create_task(
            retry_forever(lambda: self.client.run(channel, health.serving), "attach to udp")
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._channel is not None:
            await self._channel.close()
