"""UdpProto over the UDP service's Attach stream: calls are numbered, batched into
messages while the stream is busy, and matched to their replies by id."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import fields

import grpc

from services.core import errno
from services.core.cred import ROOT, Cred
from services.core.datagram import datagram_from_proto
from services.core.stream import BatchQueue, messages
from services.socket.proto import MmsgSend, RecvMsg
from stackemu.udp.v1 import udp_pb2, udp_pb2_grpc


def _recv_msg(m: udp_pb2.RecvmsgResult) -> RecvMsg:
    d = datagram_from_proto(m)
    return RecvMsg(**{f.name: getattr(d, f.name) for f in fields(d)}, control=m.control)


class UdpClient:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[udp_pb2.ProtoReply]] = {}
        self._out: BatchQueue[udp_pb2.ProtoCall] = BatchQueue()
        self.connected = asyncio.Event()
        # Called when a stream that was up ends: the UDP layer releases the sockets of a
        # stream that ended, so the files naming them must go too.
        self.on_lost: Callable[[], None] | None = None

    async def run(self, channel: grpc.aio.Channel, on_ready: Callable[[], Awaitable[None]]) -> None:
        """Hold the stream open, resolving replies; on loss every pending call fails
        with EIO (the emulator's "the layer below went away")."""
        stub = udp_pb2_grpc.UdpServiceStub(channel)
        # A fresh queue per stream: a failed stream's request iterator may still be
        # waiting on the old one and must not take calls meant for the new stream.
        self._out = BatchQueue()
        call = stub.Attach(messages(self._out, lambda b: udp_pb2.AttachRequest(calls=b)))
        try:
            await call.wait_for_connection()
            self.connected.set()
            await on_ready()
            async for resp in call:
                for reply in resp.replies:
                    fut = self._pending.pop(reply.id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(reply)
        finally:
            was_up = self.connected.is_set()
            self.connected.clear()
            self._out.drain()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(errno.kernel_error(errno.EIO, "the UDP layer went away"))
            self._pending.clear()
            if was_up and self.on_lost is not None:
                self.on_lost()

    async def _call(self, sk: int, **op: object) -> udp_pb2.ProtoReply:
        if not self.connected.is_set():
            raise errno.kernel_error(errno.EIO, "the UDP layer is not attached")
        call_id = next(self._ids)
        fut: asyncio.Future[udp_pb2.ProtoReply] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = fut
        await self._out.put([udp_pb2.ProtoCall(id=call_id, sk=sk, **op)])  # type: ignore[arg-type]
        try:
            reply = await fut
        except asyncio.CancelledError:
            # The caller gave up (its deadline passed): abandon the call below too.
            self._pending.pop(call_id, None)
            if self.connected.is_set():
                self._out.put_nowait(
                    [udp_pb2.ProtoCall(id=next(self._ids), cancel=udp_pb2.CancelOp(call_id=call_id))]
                )
            raise
        if reply.errno:
            raise errno.kernel_error(reply.errno)
        return reply

    async def create(self, protocol: int, pid: int, fd: int, cred: Cred = ROOT) -> int:
        reply = await self._call(
            0,
            create=udp_pb2.CreateOp(
                protocol=protocol, owner_pid=pid, owner_fd=fd, uid=cred.uid, capabilities=cred.caps
            ),
        )
        return int(reply.create.sk)

    async def bind(self, sk: int, addr: int, port: int) -> None:
        await self._call(sk, bind=udp_pb2.BindOp(addr=addr, port=port))

    async def connect(self, sk: int, name: bytes) -> None:
        await self._call(sk, connect=udp_pb2.ConnectOp(addr=name))

    async def disconnect(self, sk: int) -> None:
        await self._call(sk, disconnect=udp_pb2.DisconnectOp())

    async def sendmsg(
        self,
        sk: int,
        data: bytes,
        name: bytes,
        flags: int,
        trace: bool,
        control: bytes = b"",
        timeout_ns: int = -1,
    ) -> int:
        reply = await self._call(
            sk,
            sendmsg=udp_pb2.SendmsgOp(
                data=data, name=name, flags=flags, trace=trace, control=control, timeout_ns=timeout_ns
            ),
        )
        return int(reply.sendmsg.sent)

    async def sendmmsg(self, sk: int, msgs: list[MmsgSend]) -> list[int]:
        ops = [
            udp_pb2.SendmsgOp(
                data=m.data, name=m.name, flags=m.flags, control=m.control, timeout_ns=m.timeout_ns
            )
            for m in msgs
        ]
        reply = await self._call(sk, sendmmsg=udp_pb2.SendmmsgOp(msgs=ops))
        return list(reply.sendmmsg.sent)

    async def recvmsg(
        self, sk: int, length: int, flags: int, timeout_ns: int, controllen: int = 0
    ) -> RecvMsg:
        reply = await self._call(
            sk,
            recvmsg=udp_pb2.RecvmsgOp(len=length, flags=flags, timeout_ns=timeout_ns, controllen=controllen),
        )
        return _recv_msg(reply.recvmsg)

    async def recvmmsg(
        self, sk: int, length: int, flags: int, timeout_ns: int, controllen: int, vlen: int
    ) -> tuple[list[RecvMsg], int]:
        op = udp_pb2.RecvmsgOp(len=length, flags=flags, timeout_ns=timeout_ns, controllen=controllen)
        reply = await self._call(sk, recvmmsg=udp_pb2.RecvmmsgOp(msg=op, vlen=vlen))
        return [_recv_msg(m) for m in reply.recvmmsg.msgs], reply.recvmmsg.errno

    async def setsockopt(self, sk: int, level: int, optname: int, optval: bytes) -> None:
        await self._call(sk, setsockopt=udp_pb2.SetsockoptOp(level=level, optname=optname, optval=optval))

    async def getsockopt(self, sk: int, level: int, optname: int, optlen: int) -> tuple[bytes, int]:
        reply = await self._call(
            sk, getsockopt=udp_pb2.GetsockoptOp(level=level, optname=optname, optlen=optlen)
        )
        return bytes(reply.getsockopt.optval), reply.getsockopt.optlen

    async def getname(self, sk: int, peer: bool) -> tuple[int, int]:
        reply = await self._call(sk, getname=udp_pb2.GetnameOp(peer=peer))
        return reply.name.addr, reply.name.port

    async def release(self, sk: int) -> None:
        await self._call(sk, release=udp_pb2.ReleaseOp())

    async def shutdown(self, sk: int, how: int) -> None:
        await self._call(sk, shutdown=udp_pb2.ShutdownOp(how=how))

    async def poll(self, sk: int, known: int | None, timeout_ns: int, nonblock: bool) -> int:
        reply = await self._call(
            sk, poll=udp_pb2.PollOp(known=known, timeout_ns=timeout_ns, nonblock=nonblock)
        )
        return int(reply.poll.mask)

    async def set_err(self, sk: int, err: int) -> None:
        await self._call(sk, set_err=udp_pb2.SetErrOp(err=err))
