"""The emulated side: the same scenarios through a host's socket service, called the
fastest way it offers (sendmmsg/recvmmsg batches over grpc.aio, as a client in any
language would), from one asyncio loop. A throughput sample keeps at most `window`
bytes in flight (sent, not yet read), below the receiver's rcvbuf, so the figure is
what the stack delivers, not what it drops."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from types import TracebackType
from typing import Any, Self

import grpc

from services.core import errno
from services.core.server import open_aio_channel
from services.core.sockaddr import AF_INET, make_sockaddr_in, parse_sockaddr_in
from services.core.socket_uapi import (
    MSG_WAITFORONE,
    SO_RCVTIMEO_OLD,
    SOCK_DGRAM,
    SOL_SOCKET,
    SOL_UDP,
    UDP_GRO,
    UDP_SEGMENT,
)
from stackemu.bench.sample import Budget, RoundTrips, Transfer
from stackemu.socket.v1 import socket_pb2 as pb
from stackemu.socket.v1 import socket_pb2_grpc

RECV_BUFSIZE = 65535
# A call that outlives the budget's timeout by this much is abandoned (the service is
# stuck): the sample fails instead of hanging.
RPC_GRACE = 10.0


def ip(text: str) -> int:
    return int.from_bytes(socket.inet_aton(text), "big")


def check(resp: Any) -> Any:
    """resp, or OSError with the errno it carries."""
    if resp.errno:
        raise OSError(resp.errno, f"emulated stack: {errno.strerror(resp.errno)}")
    return resp


class Process:
    """One emulated process on a host's socket service (OpenProcess … ExitProcess,
    which closes its sockets and releases calls blocked on them)."""

    def __init__(self, addr: str, timeout: float) -> None:
        self.addr = addr
        self.deadline = timeout + RPC_GRACE
        self.channel = open_aio_channel(addr)
        self.stub: Any = socket_pb2_grpc.SocketServiceStub(self.channel)
        self.pid = 0

    async def __aenter__(self) -> Self:
        try:
            resp = await self.stub.OpenProcess(pb.OpenProcessRequest(comm="stackemu-bench"), timeout=10)
        except grpc.RpcError:
            await self.channel.close()
            raise
        self.pid = resp.pid
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self.stub.ExitProcess(pb.ExitProcessRequest(pid=self.pid), timeout=10)
        except grpc.RpcError:
            pass
        await self.channel.close()

    async def socket(self) -> int:
        resp = await self.stub.Socket(
            pb.SocketRequest(pid=self.pid, domain=AF_INET, type=SOCK_DGRAM), timeout=self.deadline
        )
        return int(check(resp).fd)

    async def bind(self, fd: int, addr: int, port: int = 0) -> int:
        """bind(2), then the port it got (getsockname: port 0 picks one)."""
        name = make_sockaddr_in(addr, port)
        check(await self.stub.Bind(pb.BindRequest(pid=self.pid, fd=fd, addr=name), timeout=self.deadline))
        resp = await self.stub.GetSockName(pb.GetSockNameRequest(pid=self.pid, fd=fd), timeout=self.deadline)
        return parse_sockaddr_in(check(resp).addr)[2]

    async def setsockopt(self, fd: int, level: int, optname: int, optval: bytes) -> None:
        req = pb.SetSockOptRequest(pid=self.pid, fd=fd, level=level, optname=optname, optval=optval)
        check(await self.stub.SetSockOpt(req, timeout=self.deadline))

    async def rcvtimeo(self, fd: int, seconds: float) -> None:
        """SO_RCVTIMEO (struct timeval): a read that waits longer answers EAGAIN."""
        sec = int(seconds)
        await self.setsockopt(
            fd, SOL_SOCKET, SO_RCVTIMEO_OLD, struct.pack("=qq", sec, int((seconds - sec) * 1e6))
        )


async def throughput(
    src: str,
    dst: str,
    dst_ip: int,
    budget: Budget,
    payload: int = 64,
    batch: int = 64,
    window: int = 256,
    gso_size: int = 0,
) -> Transfer:
    """Datagrams of `payload` bytes from a socket on the socket service at src to one
    bound to dst_ip on the service at dst (the same service for lo), SendMmsg `batch`
    at a time, RecvMmsg up to `batch` at a time (MSG_WAITFORONE), at most `window`
    datagrams in flight; until budget.count are sent or budget.seconds pass. With
    gso_size, each send is a UDP_SEGMENT send and the receiver has UDP_GRO on."""
    async with Process(src, budget.timeout) as tx_proc, Process(dst, budget.timeout) as rx_proc:
        rx = await rx_proc.socket()
        port = await rx_proc.bind(rx, dst_ip)
        await rx_proc.rcvtimeo(rx, budget.timeout)
        tx = await tx_proc.socket()
        if gso_size:
            await tx_proc.setsockopt(tx, SOL_UDP, UDP_SEGMENT, struct.pack("=i", gso_size))
            await rx_proc.setsockopt(rx, SOL_UDP, UDP_GRO, struct.pack("=i", 1))
        name = make_sockaddr_in(dst_ip, port)
        msg = pb.Mmsghdr(data=bytes(payload), addr=name)
        recv_req = pb.RecvMmsgRequest(
            pid=rx_proc.pid, fd=rx, vlen=batch, bufsize=RECV_BUFSIZE, flags=MSG_WAITFORONE
        )
        got = Transfer()
        room = asyncio.Event()
        stopped = False
        reading: Any = None
        window_bytes = window * payload

        async def send() -> None:
            nonlocal stopped
            while not stopped and got.sent < budget.count and time.perf_counter() - start < budget.seconds:
                n = min(batch, budget.count - got.sent)
                while not stopped and got.sent_bytes - got.received_bytes + n * payload > window_bytes:
                    room.clear()
                    await room.wait()
                if stopped:
                    break
                req = pb.SendMmsgRequest(pid=tx_proc.pid, fd=tx, msgs=[msg] * n)
                resp = check(await tx_proc.stub.SendMmsg(req, timeout=tx_proc.deadline))
                got.sent += len(resp.sent)
                got.sent_bytes += sum(resp.sent)
            stopped = True
            if reading is not None and got.received_bytes >= got.sent_bytes:
                # All came in before the sender knew it was done: the read waiting
                # for more would only wait out its timeout.
                reading.cancel()

        async def receive() -> None:
            nonlocal stopped, reading
            end = start
            while not (stopped and got.received_bytes >= got.sent_bytes):
                reading = rx_proc.stub.RecvMmsg(recv_req, timeout=rx_proc.deadline)
                try:
                    resp = await reading
                except asyncio.CancelledError:
                    if not (stopped and reading.cancelled()):
                        raise
                    break
                finally:
                    reading = None
                if resp.errno == errno.EAGAIN:
                    # Nothing for budget.timeout: what is still missing was lost.
                    break
                check(resp)
                got.received += len(resp.msgs)
                got.received_bytes += sum(m.length for m in resp.msgs)
                end = time.perf_counter()
                room.set()
            stopped = True
            room.set()
            got.seconds = end - start

        start = time.perf_counter()
        await asyncio.gather(send(), receive())
    return got


async def ping_pong(ping: str, echo: str, echo_ip: int, budget: Budget) -> RoundTrips:
    """One datagram (64 bytes) at a time from a socket on the service at `ping` to an
    echo socket bound to echo_ip on the service at `echo`, and back: SendMsg, then
    RecvMsg; each round trip from before the send to after the read. The echo is a
    task of the same loop reading with RecvMsg and answering with SendMsg."""
    result = RoundTrips()
    async with Process(ping, budget.timeout) as pinger, Process(echo, budget.timeout) as echoer:
        efd = await echoer.socket()
        port = await echoer.bind(efd, echo_ip)
        await echoer.rcvtimeo(efd, budget.timeout)
        pfd = await pinger.socket()
        await pinger.rcvtimeo(pfd, budget.timeout)

        async def answer() -> None:
            for _ in range(budget.count):
                req = pb.RecvMsgRequest(pid=echoer.pid, fd=efd, bufsize=RECV_BUFSIZE)
                resp = await echoer.stub.RecvMsg(req, timeout=echoer.deadline)
                if resp.errno:
                    return
                back = pb.SendMsgRequest(pid=echoer.pid, fd=efd, data=resp.data, addr=resp.addr)
                check(await echoer.stub.SendMsg(back, timeout=echoer.deadline))

        echo_task = asyncio.create_task(answer())
        send_req = pb.SendMsgRequest(
            pid=pinger.pid, fd=pfd, data=bytes(64), addr=make_sockaddr_in(echo_ip, port)
        )
        recv_req = pb.RecvMsgRequest(pid=pinger.pid, fd=pfd, bufsize=RECV_BUFSIZE)
        try:
            start = time.perf_counter()
            while len(result.rtts_us) < budget.count and time.perf_counter() - start < budget.seconds:
                t0 = time.perf_counter_ns()
                check(await pinger.stub.SendMsg(send_req, timeout=pinger.deadline))
                resp = await pinger.stub.RecvMsg(recv_req, timeout=pinger.deadline)
                if resp.errno == errno.EAGAIN:
                    result.lost += 1
                    break
                check(resp)
                result.rtts_us.append((time.perf_counter_ns() - t0) / 1e3)
        finally:
            echo_task.cancel()
            try:
                await echo_task
            except (asyncio.CancelledError, grpc.RpcError):
                pass
    return result
