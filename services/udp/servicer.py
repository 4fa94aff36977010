"""gRPC adapter for the UDP layer: client of the IP layer's Attach and RouteOutput,
server of the socket layer's multiplexed calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from services.core import dropmon, errno
from services.core.convert import drops_to_proto, skbs_from_proto, skbs_to_proto
from services.core.cred import Cred
from services.core.datagram import datagram_to_proto
from services.core.dropreason import SkbDropReason
from services.core.metrics import SOCK_GAUGES, Collector, DropCollector, SnmpCollector, TableCollector
from services.core.server import Service, ServingStatus, open_aio_channel, retry_forever
from services.core.skbuff import Dst, SkbError, SkBuff, dst_from_proto
from services.core.snmp import to_flat_dict
from services.core.socket_uapi import MSG_DONTWAIT, MSG_ERRQUEUE, UIO_MAXIOV
from services.core.stream import AttachGate, BadMessage, BatchQueue, messages
from services.core.sysctl import SYSCTLS, get_sysctls, set_sysctl
from services.core.trace import ring_to_proto
from services.core.wire.ipv4 import ip_to_str
from services.ip.sockglue import RecvMsg
from services.udp.errors import IcmpError
from services.udp.layer import UdpLayer
from services.udp.output import MmsgSend
from services.udp.poll import udp_poll, udp_poll_wait
from services.udp.sock import UdpSock
from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc
from stackemu.skb.v1 import skb_pb2
from stackemu.udp.v1 import udp_pb2, udp_pb2_grpc

# Routes looked up for unconnected sends, by (daddr, saddr, oif): the kernel's
# per-nexthop cached routes. Bounded; emptied when full or when the FIB changes.
ROUTE_CACHE_MAX = 4096


def _reply_error(call_id: int, err: OSError) -> udp_pb2.ProtoReply:
    return udp_pb2.ProtoReply(id=call_id, errno=err.errno or errno.EINVAL)


def _recv_result(r: RecvMsg) -> udp_pb2.RecvmsgResult:
    result = datagram_to_proto(r)
    result.control = r.control
    return result


def _recv_reply(call_id: int, got: list[RecvMsg], err: int) -> udp_pb2.ProtoReply:
    return udp_pb2.ProtoReply(id=call_id, recvmsg=_recv_result(got[0]))


def _recvmmsg_reply(call_id: int, got: list[RecvMsg], err: int) -> udp_pb2.ProtoReply:
    result = udp_pb2.RecvmmsgResult(msgs=[_recv_result(r) for r in got], errno=err)
    return udp_pb2.ProtoReply(id=call_id, recvmmsg=result)


def _icmp_to_proto(e: IcmpError) -> ip_pb2.IcmpError:
    return ip_pb2.IcmpError(skb=e.skb.to_proto(), type=e.type, code=e.code, info=e.info)


def _icmp_from_proto(m: ip_pb2.IcmpError) -> IcmpError:
    try:
        skb = SkBuff.from_proto(m.skb)
    except SkbError as err:
        raise BadMessage(f"udp_err: {err}") from None
    return IcmpError(skb, m.type, m.code, m.info)


def _attach_request(batch: list[SkBuff | IcmpError]) -> ip_pb2.AttachRequest:
    """One transmit batch: the datagrams, and the ICMP errors udp_rcv asks IP to send."""
    return ip_pb2.AttachRequest(
        skbs=skbs_to_proto(x for x in batch if isinstance(x, SkBuff)),
        icmp_send=[_icmp_to_proto(x) for x in batch if isinstance(x, IcmpError)],
    )


class IpRoutes:
    """ip_route_output_key over the IP service's RouteOutput, with a route cache that
    the FIB generation invalidates."""

    def __init__(self) -> None:
        self.stub: ip_pb2_grpc.IpServiceStub | None = None
        self.genid = 0
        self._cache: dict[tuple[int, ...], tuple[Dst, int, int]] = {}
        self.on_genid: Callable[[int], None] | None = None

    def set_genid(self, genid: int) -> None:
        if genid != self.genid:
            self.genid = genid
            self._cache.clear()
            if self.on_genid is not None:
                self.on_genid(genid)

    async def __call__(
        self, daddr: int, saddr: int, oif: int, *, tos: int = 0, scope: int = 0, mark: int = 0
    ) -> tuple[Dst, int, int]:
        key = (daddr, saddr, oif, tos, scope, mark)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if self.stub is None:
            raise errno.kernel_error(errno.ENETUNREACH, "the IP layer is not attached")
        resp = await self.stub.RouteOutput(
            ip_pb2.RouteOutputRequest(daddr=daddr, saddr=saddr, oif=oif, tos=tos, scope=scope, mark=mark)
        )
        self.set_genid(resp.fib_genid)
        if resp.errno:
            raise errno.kernel_error(resp.errno)
        result = (dst_from_proto(resp.dst), resp.saddr, resp.fib_genid)
        if len(self._cache) >= ROUTE_CACHE_MAX:
            self._cache.clear()
        self._cache[key] = result
        return result


class UdpServicer(udp_pb2_grpc.UdpServiceServicer):
    def __init__(self, layer: UdpLayer, routes: IpRoutes) -> None:
        self.layer = layer
        self.routes = routes
        # The layer's connected-socket routes and this cache follow one FIB generation,
        # whichever message (Attach or RouteOutput) brings news of it.
        routes.on_genid = self._fib_changed
        self.down: BatchQueue[SkBuff | IcmpError] = BatchQueue()
        self.replies: BatchQueue[udp_pb2.ProtoReply] = BatchQueue()
        self._pending: dict[int, asyncio.Task[None]] = {}
        self.gate = AttachGate("a socket layer")

    def _fib_changed(self, genid: int) -> None:
        self.layer.fib_genid = genid

    # The IP side.

    async def attach_ip(self, channel: grpc.aio.Channel, on_ready: Callable[[], Awaitable[None]]) -> None:
        stub = ip_pb2_grpc.IpServiceStub(channel)
        # A fresh queue per stream (see services.ip.servicer.attach_nic).
        down: BatchQueue[SkBuff | IcmpError] = BatchQueue()
        self.down = down
        try:
            await self._ip_stream(stub, down, on_ready)
        finally:
            down.close(self._ip_lost)

    def _ip_lost(self, batch: list[SkBuff | IcmpError]) -> None:
        """What was queued for an IP layer whose stream broke, or is sent before it is
        back: lost below udp_send_skb (ip_send_skb has nowhere to go)."""
        for x in batch:
            skb = x.skb if isinstance(x, IcmpError) else x
            self.layer.drops.drop(SkbDropReason.NOT_SPECIFIED, "attach_ip (the IP layer went away)", skb=skb)

    async def _ip_stream(
        self,
        stub: ip_pb2_grpc.IpServiceStub,
        down: BatchQueue[SkBuff | IcmpError],
        on_ready: Callable[[], Awaitable[None]],
    ) -> None:
        call = stub.Attach(messages(down, _attach_request))
        # Datagrams sent over a stream that broke will never be reported freed: their
        # charges go, or the senders would wait for room forever.
        self.layer.forget_tx_charges()
        first = True
        ready = False
        async for resp in call:
            self.routes.set_genid(resp.fib_genid)
            if first:
                self.routes.stub = stub
                first = False
            for skb in skbs_from_proto(resp.skbs, self.layer.drops, "udp_rcv"):
                self.layer.udp_rcv(skb)
            for err in resp.errors:
                self.layer.udp_err(_icmp_from_proto(err))
            if resp.devices:
                self.layer.devices = {d.ifindex: d.name for d in resp.devices}
            if not ready and self.layer.devices:
                # Serving once the host's devices are known (a host always has lo):
                # SO_BINDTODEVICE and IP_UNICAST_IF resolve against them.
                await on_ready()
                ready = True
            # TX timestamps the NIC took (__skb_tstamp_tx's clones), for their sockets'
            # error queues.
            stamped = skbs_from_proto([x.skb for x in resp.tx_timestamps], self.layer.drops, "skb_tstamp_tx")
            for skb, stamp in zip(stamped, resp.tx_timestamps, strict=True):
                self.layer.skb_tstamp_tx(skb, stamp.tstype)
            for done in resp.tx_done:
                self.layer.tx_done(done.sk, done.wmem, done.enobufs)
            await self._flush_down()

    # The socket side.

    async def _call(self, call: udp_pb2.ProtoCall, out: list[udp_pb2.ProtoReply]) -> None:
        layer = self.layer
        op = call.WhichOneof("op")
        if op is None:
            raise BadMessage(f"call {call.id}: no operation")
        try:
            if op == "create":
                c = call.create
                s = layer.create(c.protocol, c.owner_pid, c.owner_fd, Cred(c.uid, c.capabilities))
                out.append(udp_pb2.ProtoReply(id=call.id, create=udp_pb2.CreateResult(sk=s.sk)))
                return
            if op == "cancel":
                task = self._pending.pop(call.cancel.call_id, None)
                if task is not None:
                    task.cancel()
                out.append(udp_pb2.ProtoReply(id=call.id))
                return
            s = layer.sock(call.sk)
            if op == "bind":
                if call.bind.addr > 0xFFFFFFFF or call.bind.port > 0xFFFF:
                    raise BadMessage(f"call {call.id}: bind address or port out of range")
                await layer.bind(s, call.bind.addr, call.bind.port)
                out.append(udp_pb2.ProtoReply(id=call.id))
            elif op == "connect":
                await layer.connect(s, call.connect.addr)
                out.append(udp_pb2.ProtoReply(id=call.id))
            elif op == "disconnect":
                layer.disconnect(s)
                out.append(udp_pb2.ProtoReply(id=call.id))
            elif op == "sendmsg":
                m = call.sendmsg
                timeout = 0 if m.flags & MSG_DONTWAIT else m.timeout_ns
                if timeout and s.wmem_full() and s.pending is None:
                    # It will wait for send buffer room: answer when it is done, so that
                    # the calls after it on the stream go on meanwhile.
                    self._later(call.id, lambda: self._sendmsg_reply(call.id, s, m, m.timeout_ns))
                    return
                out.append(await self._sendmsg_reply(call.id, s, m, timeout))
            elif op == "sendmmsg":
                sending = self._sendmmsg(call.id, s, call.sendmmsg)
                if sending is not None:
                    out.append(await sending)
            elif op == "recvmsg":
                reply = await self._recv(call.id, s, call.recvmsg, 1, _recv_reply)
                if reply is not None:
                    out.append(reply)
            elif op == "recvmmsg":
                vlen = call.recvmmsg.vlen
                if not 0 < vlen <= UIO_MAXIOV:
                    raise BadMessage(f"call {call.id}: recvmmsg vlen {vlen} is not in 1..{UIO_MAXIOV}")
                reply = await self._recv(call.id, s, call.recvmmsg.msg, vlen, _recvmmsg_reply)
                if reply is not None:
                    out.append(reply)
            elif op == "release":
                layer.release(s)
                out.append(udp_pb2.ProtoReply(id=call.id))
            elif op == "getname":
                addr, port = layer.getname(s, call.getname.peer)
                out.append(udp_pb2.ProtoReply(id=call.id, name=udp_pb2.NameResult(addr=addr, port=port)))
            elif op == "setsockopt":
                o = call.setsockopt
                await layer.setsockopt(s, o.level, o.optname, o.optval)
                out.append(udp_pb2.ProtoReply(id=call.id))
            elif op == "shutdown":
                layer.shutdown(s, call.shutdown.how)
                out.append(udp_pb2.ProtoReply(id=call.id))
            elif op == "poll":
                reply = self._poll(call.id, s, call.poll)
                if reply is not None:
                    out.append(reply)
            elif op == "set_err":
                if call.set_err.err <= 0:
                    raise BadMessage(f"call {call.id}: set_err needs a positive errno")
                s.sk_err = call.set_err.err
                out.append(udp_pb2.ProtoReply(id=call.id))
            elif op == "getsockopt":
                g = call.getsockopt
                val, optlen = await layer.getsockopt(s, g.level, g.optname, g.optlen)
                out.append(
                    udp_pb2.ProtoReply(
                        id=call.id, getsockopt=udp_pb2.GetsockoptResult(optval=val, optlen=optlen)
                    )
                )
        except OSError as err:
            out.append(_reply_error(call.id, err))

    async def _recv(
        self,
        call_id: int,
        s: UdpSock,
        m: udp_pb2.RecvmsgOp,
        vlen: int,
        reply: Callable[[int, list[RecvMsg], int], udp_pb2.ProtoReply],
    ) -> udp_pb2.ProtoReply | None:
        """recvmsg (vlen 1) or recvmmsg: the reply at once when a datagram is queued or
        the call must not wait; else None, and a task answers when the first datagram
        comes (udp_recvmsg returns)."""
        # ip_recv_error() never waits.
        blocking = m.timeout_ns != 0 and not m.flags & (MSG_DONTWAIT | MSG_ERRQUEUE)
        try:
            got, err = await self.layer.recvmmsg(s, m.len, m.flags | MSG_DONTWAIT, 0, m.controllen, vlen)
            return reply(call_id, got, err)
        except OSError as e:
            if not blocking or e.errno != errno.EAGAIN:
                return _reply_error(call_id, e)

        async def recv() -> udp_pb2.ProtoReply:
            got, err = await self.layer.recvmmsg(s, m.len, m.flags, m.timeout_ns, m.controllen, vlen)
            return reply(call_id, got, err)

        self._later(call_id, recv)
        return None

    def _poll(self, call_id: int, s: UdpSock, m: udp_pb2.PollOp) -> udp_pb2.ProtoReply | None:
        """udp_poll() at once, or, with a mask already known, a task that answers when
        the mask is another or the time is up (the calls after it go on meanwhile)."""
        layer = self.layer
        mask = udp_poll(layer, s, m.nonblock)
        if not m.HasField("known") or mask != m.known or m.timeout_ns == 0:
            return udp_pb2.ProtoReply(id=call_id, poll=udp_pb2.PollResult(mask=mask))

        async def wait() -> udp_pb2.ProtoReply:
            mask = await udp_poll_wait(layer, s, m.known, m.timeout_ns, m.nonblock)
            return udp_pb2.ProtoReply(id=call_id, poll=udp_pb2.PollResult(mask=mask))

        self._later(call_id, wait)
        return None

    def _sendmmsg(
        self, call_id: int, s: UdpSock, m: udp_pb2.SendmmsgOp
    ) -> Awaitable[udp_pb2.ProtoReply] | None:
        """sendmmsg: at once when no message may wait for send buffer room, else in a
        task (the calls after it on the stream go on meanwhile)."""
        msgs = [
            MmsgSend(x.data, x.name, x.control, x.flags, 0 if x.flags & MSG_DONTWAIT else x.timeout_ns)
            for x in m.msgs
        ]
        if len(msgs) > UIO_MAXIOV:
            raise BadMessage(f"call {call_id}: sendmmsg of {len(msgs)} messages, more than {UIO_MAXIOV}")

        async def send() -> udp_pb2.ProtoReply:
            sent = await self.layer.sendmmsg(s, msgs)
            return udp_pb2.ProtoReply(id=call_id, sendmmsg=udp_pb2.SendmmsgResult(sent=sent))

        if any(x.timeout_ns for x in msgs):
            self._later(call_id, send)
            return None
        return send()

    async def _sendmsg_reply(
        self, call_id: int, s: UdpSock, m: udp_pb2.SendmsgOp, timeout_ns: int
    ) -> udp_pb2.ProtoReply:
        sent = await self.layer.sendmsg(s, m.data, m.name, m.flags, m.trace, m.control, timeout_ns)
        return udp_pb2.ProtoReply(id=call_id, sendmsg=udp_pb2.SendmsgResult(sent=sent))

    async def _answer_later(
        self,
        call_id: int,
        work: Callable[[], Awaitable[udp_pb2.ProtoReply]],
        replies: BatchQueue[udp_pb2.ProtoReply],
    ) -> None:
        """A call that waits (a recvmsg for data, a sendmsg for send buffer room),
        answered on its own when it is done; a cancelled one with EINTR."""
        try:
            reply = await work()
        except OSError as err:
            reply = _reply_error(call_id, err)
        except asyncio.CancelledError:
            reply = _reply_error(call_id, errno.kernel_error(errno.EINTR))
        finally:
            if self._pending.get(call_id) is asyncio.current_task():
                del self._pending[call_id]
        # Only to the stream the call came on, while it lasts: a later caller must not
        # get it, as its call ids may repeat this one's.
        if replies is self.replies and self.gate.busy:
            await replies.put([reply])
        await self._flush_down()

    def _later(self, call_id: int, work: Callable[[], Awaitable[udp_pb2.ProtoReply]]) -> None:
        self._pending[call_id] = asyncio.create_task(self._answer_later(call_id, work, self.replies))

    async def _flush_down(self) -> None:
        layer = self.layer
        batch: list[SkBuff | IcmpError] = [*layer.to_ip, *layer.icmp_out]
        layer.to_ip, layer.icmp_out = [], []
        await self.down.put(batch)

    async def _calls(self, req: udp_pb2.AttachRequest) -> None:
        out: list[udp_pb2.ProtoReply] = []
        for call in req.calls:
            await self._call(call, out)
        await self._flush_down()
        await self.replies.put(out)

    async def Attach(
        self, request_iterator: AsyncIterator[udp_pb2.AttachRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[udp_pb2.AttachResponse]:
        async for resp in self.gate.serve(
            context,
            request_iterator,
            self.replies,
            self._calls,
            lambda b: udp_pb2.AttachResponse(replies=b),
            closed=self._closed,
        ):
            yield resp

    def _closed(self) -> None:
        """The caller went away: abandon its pending calls, release its sockets, and give
        the next caller a fresh reply queue, so that replies owed to this one (the EINTR
        of a recvmsg its end abandoned) cannot reach it, whose call ids may repeat these."""
        for task in list(self._pending.values()):
            task.cancel()
        self._pending.clear()
        self.replies = BatchQueue()
        # The socket layer's files named these sockets; it forgets them when the stream
        # ends (a restarted socket service has no processes left), so they go, as its
        # processes' exit would close them.
        for s in list(self.layer.socks.values()):
            self.layer.release(s)

    async def GetTraces(
        self, request: udp_pb2.GetTracesRequest, context: grpc.aio.ServicerContext
    ) -> udp_pb2.GetTracesResponse:
        return udp_pb2.GetTracesResponse(traces=ring_to_proto(self.layer.trace, request.last))

    async def GetStats(
        self, request: udp_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> udp_pb2.GetStatsResponse:
        flat = to_flat_dict(self.layer.mib)
        return udp_pb2.GetStatsResponse(
            # The Udp and UdpLite MIBs, and the ICMP error no socket took (__udp4_lib_err
            # counts ICMP_MIB_INERRORS; nstat adds it to the IP layer's).
            counters=[
                skb_pb2.Counter(name=k, value=v)
                for k, v in flat.items()
                if k.startswith("Udp") or k == "IcmpInErrors"
            ],
            drops=drops_to_proto(self.layer.drops),
        )

    async def ListSockets(
        self, request: udp_pb2.ListSocketsRequest, context: grpc.aio.ServicerContext
    ) -> udp_pb2.ListSocketsResponse:
        # udp_dump(): each table slot by slot (udp_table, then udplite_table), then the
        # sockets in none (no local port yet), which no dump reaches.
        hashed = [s for table in self.layer.tables.values() for s in table]
        seen = {s.sk for s in hashed}
        rest = [s for s in self.layer.socks.values() if s.sk not in seen]
        return udp_pb2.ListSocketsResponse(sockets=[self._sock_info(s) for s in hashed + rest])

    def _sock_info(self, s: UdpSock) -> udp_pb2.SocketInfo:
        """inet_sk_diag_fill() for udp_diag: the diag message, udp_diag_get_info()'s
        queues and sock_diag_put_meminfo()'s skmem."""
        # inet_diag_msg_common_fill() → sock_gen_cookie(): the dump gives a cookie to a
        # socket that has none yet, from the counter SO_COOKIE draws on.
        self.layer.opts.sock_gen_cookie(s)
        return udp_pb2.SocketInfo(
            sk=s.sk,
            local_addr=s.rcv_saddr,
            local_port=s.num,
            remote_addr=s.daddr,
            remote_port=s.dport,
            rmem_alloc=s.rmem_alloc,
            rcvbuf=s.rcvbuf,
            drops=s.drops,
            owner_pid=s.owner_pid,
            owner_fd=s.owner_fd,
            protocol=s.protocol,
            state=s.state,
            wmem_alloc=s.wmem_alloc,
            sndbuf=s.sndbuf,
            forward_alloc=s.forward_alloc,
            # UDP queues nothing for later transmission (sk_wmem_queued) and takes no
            # backlog: the emulated socket is never owned by a user while data comes in.
            wmem_queued=0,
            omem_alloc=s.omem_alloc,
            backlog=0,
            # udp_rqueue_get(): no forward_deficit is kept, reclaimed at once.
            rqueue=s.rmem_alloc,
            uid=s.uid,
            cookie=s.cookie,
            mark=s.mark,
            bound_dev_if=s.bound_dev_if,
            shutdown=s.shutdown,
        )

    # Sysctls: the UDP layer's and the socket layer's, which this service applies.

    async def GetSysctl(
        self, request: udp_pb2.GetSysctlRequest, context: grpc.aio.ServicerContext
    ) -> udp_pb2.GetSysctlResponse:
        own = udp_sysctl_names()
        code, message, values = get_sysctls(
            self.layer.sysctl, request.names, set(own).__contains__, own, "the UDP layer"
        )
        return udp_pb2.GetSysctlResponse(errno=code, message=message, values=values)

    async def SetSysctl(
        self, request: udp_pb2.SetSysctlRequest, context: grpc.aio.ServicerContext
    ) -> udp_pb2.SetSysctlResponse:
        own = set(udp_sysctl_names()).__contains__
        code, message = set_sysctl(self.layer.sysctl, request.name, request.value, own, "the UDP layer")
        return udp_pb2.SetSysctlResponse(errno=code, message=message)


def udp_sysctl_names() -> list[str]:
    """The sysctls the UDP service reads: the UDP layer's and the socket layer's (the
    socket-level code, sk_setsockopt and inet_bind's checks, runs here)."""
    return sorted(n for n, spec in SYSCTLS.items() if spec.layer in ("udp", "socket"))


class UdpService(Service):
    name = "udp"
    service_names = [udp_pb2.DESCRIPTOR.services_by_name["UdpService"].full_name, dropmon.SERVICE_NAME]

    def __init__(self, layer: UdpLayer, routes: IpRoutes, ip_addr: str) -> None:
        self.servicer = UdpServicer(layer, routes)
        self.ip_addr = ip_addr
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None

    def register(self, server: grpc.aio.Server) -> None:
        udp_pb2_grpc.add_UdpServiceServicer_to_server(self.servicer, server)
        dropmon.add_to_server(self.servicer.layer.drops, server)

    def collectors(self) -> list[Collector]:
        layer = self.servicer.layer

        def socks() -> list[tuple[list[str], list[tuple[str, int]]]]:
            # The sockets `ss -uanm` lists: those in the hash tables (a local port),
            # Local and Peer as ss prints them, the skmem values by sk_meminfo's names.
            rows = []
            for s in layer.socks.values():
                if not s.num:
                    continue
                local, peer = f"{ip_to_str(s.rcv_saddr)}:{s.num}", f"{ip_to_str(s.daddr)}:{s.dport or '*'}"
                skmem = [
                    ("rmem_alloc", s.rmem_alloc),
                    ("rcvbuf", s.rcvbuf),
                    ("wmem_alloc", s.wmem_alloc),
                    ("sndbuf", s.sndbuf),
                    ("drops", s.drops),
                ]
                rows.append(([str(s.sk), local, peer], skmem))
            return rows

        return [
            # What GetStats reports: Udp, UdpLite, and the ICMP errors no socket took.
            SnmpCollector(layer.mib, lambda k: k.startswith("Udp") or k == "IcmpInErrors"),
            DropCollector(layer.drops),
            TableCollector("sock", ["sk", "local", "peer"], socks, SOCK_GAUGES, "ss -m (sk_meminfo)"),
        ]

    async def start(self, health: ServingStatus) -> None:
        self._channel = open_aio_channel(self.ip_addr, internal=True)
        channel = self._channel
        self._task = asyncio.create_task(
            retry_forever(lambda: self.servicer.attach_ip(channel, health.serving), "attach to ip")
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._channel is not None:
            await self._channel.close()
