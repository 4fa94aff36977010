"""Fakes and helpers for the UDP and socket service tests.

The service under test runs for real (its servicer on a grpc.aio server on 127.0.0.1:0);
its neighbours are faked in-process: FakeIp answers the UDP service's IP-side calls,
ProtoStream plays the socket layer on the UDP service's Attach stream, and LoopbackUdp
is a UdpProto over an in-process UdpLayer for the socket service. The real_* helpers
ask the machine's own kernel the same question, for differential assertions.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import itertools
import json
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Self, TypeVar

import grpc

from services.core import errno
from services.core.cred import CAP_FULL_SET, ROOT, Cred
from services.core.ipcb import InetSkbParm, IpOptions, set_ipcb
from services.core.server import CHANNEL_OPTIONS, ServingStatus
from services.core.skbuff import Dst, SkBuff, dst_to_proto
from services.core.snmp import SNMP4_UDP_LIST
from services.core.sockaddr import AF_INET, make_sockaddr_in
from services.core.stream import BatchQueue, serve_bidi
from services.core.sysctl import Sysctl
from services.core.wire.ipv4 import IPPROTO_ICMP, IPPROTO_UDP, Ipv4Repr, ip_from_str
from services.ip.options import ip_options_build, ip_options_compile, ip_options_from_cork
from services.ip.sockglue import RecvMsg
from services.socket.servicer import SocketServicer
from services.socket.syscalls import SocketLayer
from services.udp.layer import IcmpError, UdpLayer
from services.udp.output import MmsgSend
from services.udp.poll import udp_poll, udp_poll_wait
from services.udp.servicer import IpRoutes, UdpService
from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc
from stackemu.skb.v1 import skb_pb2
from stackemu.socket.v1 import socket_pb2, socket_pb2_grpc
from stackemu.udp.v1 import udp_pb2, udp_pb2_grpc

T = TypeVar("T")

# include/uapi/linux/rtnetlink.h, include/uapi/linux/in_route.h
RTN_LOCAL = 2
RTN_BROADCAST = 3
RTCF_LOCAL = 0x80000000
LO_IFINDEX = 1
LO_MTU = 65536
ETH_HLEN = 14
ETH_P_IP = 0x0800
LOOPBACK = 0x7F000001

MSG_OOB = 0x1
MSG_PEEK = 0x2
MSG_TRUNC = 0x20
MSG_DONTWAIT = 0x40

# Every test's whole run, and any single wait inside it: generous against a loaded
# machine, small enough that a hang fails in seconds.
TEST_TIMEOUT = 20.0
WAIT = 5.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one test's coroutine on a fresh event loop, failing it if it hangs."""
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


def async_test(fn: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """A sync pytest test that runs the coroutine function `fn` with run()."""

    @functools.wraps(fn)
    def test() -> None:
        run(fn())

    return test


async def eventually(pred: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll pred() until it holds; fail with `what` at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def ip(text: str) -> int:
    return ip_from_str(text)


def sockaddr(addr: str | int, port: int, family: int = AF_INET) -> bytes:
    return make_sockaddr_in(ip(addr) if isinstance(addr, str) else addr, port, family)


def udp_mib(**nonzero: int) -> dict[str, int]:
    """The whole Udp line of /proc/net/snmp under nstat names, zeros included."""
    unknown = set(nonzero) - set(SNMP4_UDP_LIST)
    assert not unknown, f"not Udp counters: {unknown}"
    return {f"Udp{field}": nonzero.get(field, 0) for field in SNMP4_UDP_LIST}


def rfc1071(data: bytes) -> int:
    """The Internet checksum, written out independently of services.core.checksum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_checksum(saddr: int, daddr: int, segment: bytes) -> int:
    """RFC 768: over the pseudo-header and the segment (its checksum field zero); a
    computed 0 is sent as 0xFFFF."""
    pseudo = struct.pack("!IIBBH", saddr, daddr, 0, IPPROTO_UDP, len(segment))
    zeroed = segment[:6] + b"\0\0" + segment[8:]
    return rfc1071(pseudo + zeroed) or 0xFFFF


def udp_segment(
    saddr: int,
    daddr: int,
    sport: int,
    dport: int,
    payload: bytes,
    *,
    check: int | None = None,
    length: int | None = None,
) -> bytes:
    """A UDP header and payload; the checksum is right unless `check` says otherwise,
    and the length field is the real one unless `length` says otherwise."""
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload) if length is None else length, 0) + payload
    if check is None:
        check = udp_checksum(saddr, daddr, seg)
    return seg[:6] + struct.pack("!H", check) + seg[8:]


def delivered_skb(
    saddr: int,
    daddr: int,
    segment: bytes,
    *,
    ttl: int = 64,
    tos: int = 0,
    truesize: int | None = None,
    rt_type: int = RTN_LOCAL,
    options: bytes = b"",
    iif: int = LO_IFINDEX,
    spec_dst: int | None = None,
) -> skb_pb2.SkBuff:
    """What ip_local_deliver_finish hands udp_rcv: an Ethernet and an IPv4 header in
    the head, data at the UDP header, the input route in dst, IPCB in cb (the arrival
    interface, where the options are, fib_compute_spec_dst: the destination itself for
    a local route)."""
    hlen = 20 + len(options)
    head = bytearray(ETH_HLEN + hlen + len(segment))
    Ipv4Repr(
        src=saddr,
        dst=daddr,
        protocol=IPPROTO_UDP,
        payload_len=len(segment),
        ttl=ttl,
        tos=tos,
        options=options,
    ).emit(head, ETH_HLEN)
    head[ETH_HLEN + hlen :] = segment
    skb = SkBuff(head)
    skb.mac_header = 0
    skb.network_header = ETH_HLEN
    skb.transport_header = skb.data = ETH_HLEN + hlen
    set_ipcb(
        skb.cb,
        InetSkbParm(
            iif=iif, opt=IpOptions(optlen=len(options)), spec_dst=daddr if spec_dst is None else spec_dst
        ),
    )
    skb.tail = len(head)
    skb.len = len(segment)
    skb.protocol = ETH_P_IP
    skb.skb_iif = skb.dev_ifindex = LO_IFINDEX
    skb.dst = Dst(LO_IFINDEX, daddr, 0, rt_type, RTCF_LOCAL)
    if truesize is not None:
        skb.truesize = truesize
    return skb.to_proto()


def lo_route(daddr: int, saddr: int, oif: int = 0) -> tuple[Dst, int]:
    """ip_route_output_key on a host whose only address is 127.0.0.1/8 on lo: an output
    interface that does not exist is ENODEV, a source that is not local ENETUNREACH
    (ip_route_output_key_hash_rcu); no destination means loopback
    (__ip_route_output_key), 127/8 is local with prefsrc 127.0.0.1, anything else is
    unreachable."""
    if oif and oif != LO_IFINDEX:
        raise errno.kernel_error(errno.ENODEV)
    if saddr and saddr >> 24 != 127:
        raise errno.kernel_error(errno.ENETUNREACH)
    daddr = daddr or saddr or LOOPBACK
    if daddr >> 24 != 127:
        raise errno.kernel_error(errno.ENETUNREACH)
    return Dst(LO_IFINDEX, daddr, LO_MTU, RTN_LOCAL, RTCF_LOCAL), saddr or LOOPBACK


def icmp_message(icmp_type: int, code: int, info: int, quoted: bytes, length_words: int = 0) -> bytes:
    """An ICMP error message (RFC 792, RFC 4884's length octet) with its checksum: the
    second word holds the next-hop MTU for ICMP_FRAG_NEEDED, the pointer for
    ICMP_PARAMETERPROB, the gateway for ICMP_REDIRECT."""
    if icmp_type == 3 and code == 4:
        rest = struct.pack("!BBH", 0, length_words, info)
    elif icmp_type == 12:
        rest = struct.pack("!BBH", info, length_words, 0)
    elif icmp_type == 5:
        rest = struct.pack("!I", info)
    else:
        rest = struct.pack("!BBH", 0, length_words, 0)
    msg = bytearray(struct.pack("!BBH", icmp_type, code, 0) + rest + quoted)
    msg[2:4] = struct.pack("!H", rfc1071(bytes(msg)))
    return bytes(msg)


def icmp_skb(src: int, dst: int, message: bytes, tos: int, ttl: int = 64) -> SkBuff:
    """An ICMP error as icmp_unreach hands it to udp_err: the outer header at
    network_header, the ICMP header at transport_header, data at the quoted IP header,
    IPCB iif lo."""
    head = bytearray(20 + len(message))
    Ipv4Repr(src=src, dst=dst, protocol=IPPROTO_ICMP, payload_len=len(message), ttl=ttl, tos=tos).emit(
        head, 0
    )
    head[20:] = message
    out = SkBuff(head)
    out.network_header = 0
    out.transport_header = 20
    out.data = 28
    out.tail = len(head)
    out.len = len(head) - 28
    out.skb_iif = out.dev_ifindex = LO_IFINDEX
    set_ipcb(out.cb, InetSkbParm(iif=LO_IFINDEX))
    return out


def icmp_error(skb: SkBuff, icmp_type: int, code: int, info: int = 0, quote_max: int = 548) -> IcmpError:
    """What the IP layer delivers to udp_err for the ICMP error icmp_send(skb, type, code,
    info) of a loopback host makes about `skb` (IP header at network_header), as the
    kernel builds it: from the original destination to its source, TTL 64, tos
    (tos & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL, quoting the original datagram
    up to 576 bytes in all (548 of it)."""
    original = bytes(skb.head[skb.network_header : skb.tail])
    message = icmp_message(icmp_type, code, info, original[:quote_max])
    orig_src = int.from_bytes(original[12:16], "big")
    orig_dst = int.from_bytes(original[16:20], "big")
    out = icmp_skb(orig_dst, orig_src, message, (original[1] & 0x1E) | 0xC0)
    return IcmpError(out, icmp_type, code, info)


# What a FakeIp sends up the Attach stream.
UpItem = skb_pb2.SkBuff | ip_pb2.IcmpError | skb_pb2.TxCompletion | skb_pb2.TxTimestamp

# The devices the real IP service names in its first Attach message: a host of lo alone.
LO_DEVICES = [ip_pb2.Device(ifindex=LO_IFINDEX, name="lo", mtu=LO_MTU)]


class FakeIp(ip_pb2_grpc.IpServiceServicer):
    """The IP service as the UDP service sees it."""

    def __init__(self) -> None:
        self.genid = 1
        self.sent: asyncio.Queue[SkBuff] = asyncio.Queue()
        self.icmp_sent: asyncio.Queue[ip_pb2.IcmpError] = asyncio.Queue()
        self.up: BatchQueue[UpItem] = BatchQueue()
        self.route_requests: list[ip_pb2.RouteOutputRequest] = []
        # The number of skbs in each AttachRequest that carried any: the batches.
        self.batches: list[int] = []

    async def Attach(
        self, request_iterator: AsyncIterator[ip_pb2.AttachRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ip_pb2.AttachResponse]:
        yield ip_pb2.AttachResponse(fib_genid=self.genid, devices=LO_DEVICES)

        async def on_request(req: ip_pb2.AttachRequest) -> None:
            if req.skbs:
                self.batches.append(len(req.skbs))
            for m in req.skbs:
                self.sent.put_nowait(SkBuff.from_proto(m))
            for e in req.icmp_send:
                self.icmp_sent.put_nowait(e)

        def wrap(batch: list[UpItem]) -> ip_pb2.AttachResponse:
            # What the test put on self.up, each kind in its field, as the IP service
            # sends datagrams, ICMP errors, TX completions and TX timestamps up.
            return ip_pb2.AttachResponse(
                skbs=[x for x in batch if isinstance(x, skb_pb2.SkBuff)],
                errors=[x for x in batch if isinstance(x, ip_pb2.IcmpError)],
                tx_done=[x for x in batch if isinstance(x, skb_pb2.TxCompletion)],
                tx_timestamps=[x for x in batch if isinstance(x, skb_pb2.TxTimestamp)],
                fib_genid=self.genid,
            )

        async for resp in serve_bidi(request_iterator, self.up, on_request, wrap):
            yield resp

    async def RouteOutput(
        self, request: ip_pb2.RouteOutputRequest, context: grpc.aio.ServicerContext
    ) -> ip_pb2.RouteOutputResponse:
        self.route_requests.append(request)
        try:
            d, saddr = lo_route(request.daddr, request.saddr, request.oif)
        except OSError as err:
            return ip_pb2.RouteOutputResponse(errno=err.errno or 0, fib_genid=self.genid)
        return ip_pb2.RouteOutputResponse(
            dst=dst_to_proto(d),
            saddr=saddr,
            fib_genid=self.genid,
        )

    def deliver(self, *skbs: skb_pb2.SkBuff | ip_pb2.IcmpError) -> None:
        """ip_local_deliver_finish → udp_rcv (and icmp_unreach → udp_err), as one batch."""
        assert self.up.put_nowait(list(skbs))

    async def next_sent(self) -> SkBuff:
        return await asyncio.wait_for(self.sent.get(), WAIT)

    async def next_icmp(self) -> ip_pb2.IcmpError:
        return await asyncio.wait_for(self.icmp_sent.get(), WAIT)


class ReadyStatus(ServingStatus):
    def __init__(self) -> None:
        self.ready = asyncio.Event()

    async def serving(self) -> None:
        self.ready.set()

    async def not_serving(self) -> None:
        self.ready.clear()


class ProtoStream:
    """The socket layer's end of the UDP service's Attach stream: calls numbered by
    the test, replies collected by id."""

    def __init__(self, stub: udp_pb2_grpc.UdpServiceStub) -> None:
        self._out: asyncio.Queue[udp_pb2.AttachRequest | None] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[udp_pb2.ProtoReply]] = {}
        self.duplicates: list[udp_pb2.ProtoReply] = []
        self.rpc = stub.Attach(self._requests())
        self.reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[udp_pb2.AttachRequest]:
        while (req := await self._out.get()) is not None:
            yield req

    def _future(self, call_id: int) -> asyncio.Future[udp_pb2.ProtoReply]:
        fut = self._replies.get(call_id)
        if fut is None:
            fut = self._replies[call_id] = asyncio.get_running_loop().create_future()
        return fut

    async def _read(self) -> None:
        async for resp in self.rpc:
            for reply in resp.replies:
                fut = self._future(reply.id)
                if fut.done():
                    self.duplicates.append(reply)
                else:
                    fut.set_result(reply)

    def next_id(self) -> int:
        return next(self._ids)

    def send(self, *calls: udp_pb2.ProtoCall) -> None:
        """One AttachRequest carrying these calls."""
        self._out.put_nowait(udp_pb2.AttachRequest(calls=calls))

    async def reply(self, call_id: int) -> udp_pb2.ProtoReply:
        fut = self._future(call_id)
        waiting: set[asyncio.Future[Any]] = {fut, self.reader}
        done, _ = await asyncio.wait(waiting, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        if fut in done:
            return fut.result()
        if self.reader in done:
            self.reader.result()  # the stream's error
            raise AssertionError(f"the stream ended before the reply to call {call_id}")
        raise AssertionError(f"no reply to call {call_id}")

    def has_reply(self, call_id: int) -> bool:
        fut = self._replies.get(call_id)
        return fut is not None and fut.done()

    def start(self, sk: int = 0, **op: Any) -> int:
        call_id = self.next_id()
        self.send(udp_pb2.ProtoCall(id=call_id, sk=sk, **op))
        return call_id

    async def call(self, sk: int = 0, **op: Any) -> udp_pb2.ProtoReply:
        return await self.reply(self.start(sk, **op))

    async def create(self) -> int:
        # Root's capabilities, as the default process has them (0 would be none).
        op = udp_pb2.CreateOp(protocol=IPPROTO_UDP, owner_pid=100, owner_fd=3, capabilities=CAP_FULL_SET)
        r = await self.call(create=op)
        assert r.errno == 0 and r.WhichOneof("result") == "create"
        return int(r.create.sk)

    async def bind(self, sk: int, addr: str, port: int) -> int:
        return int((await self.call(sk, bind=udp_pb2.BindOp(addr=ip(addr), port=port))).errno)

    async def connect(self, sk: int, name: bytes) -> int:
        return int((await self.call(sk, connect=udp_pb2.ConnectOp(addr=name))).errno)

    async def disconnect(self, sk: int) -> int:
        return int((await self.call(sk, disconnect=udp_pb2.DisconnectOp())).errno)

    async def sendmsg(
        self, sk: int, data: bytes, name: bytes = b"", flags: int = 0, control: bytes = b""
    ) -> udp_pb2.ProtoReply:
        return await self.call(
            sk, sendmsg=udp_pb2.SendmsgOp(data=data, name=name, flags=flags, control=control)
        )

    async def recvmsg(
        self,
        sk: int,
        length: int = 65536,
        flags: int = MSG_DONTWAIT,
        timeout_ns: int = 0,
        controllen: int = 0,
    ) -> udp_pb2.ProtoReply:
        return await self.call(
            sk,
            recvmsg=udp_pb2.RecvmsgOp(len=length, flags=flags, timeout_ns=timeout_ns, controllen=controllen),
        )

    async def setsockopt(self, sk: int, level: int, optname: int, optval: bytes) -> int:
        op = udp_pb2.SetsockoptOp(level=level, optname=optname, optval=optval)
        return int((await self.call(sk, setsockopt=op)).errno)

    async def getsockopt(self, sk: int, level: int, optname: int, optlen: int = 4) -> tuple[int, bytes]:
        r = await self.call(sk, getsockopt=udp_pb2.GetsockoptOp(level=level, optname=optname, optlen=optlen))
        return int(r.errno), bytes(r.getsockopt.optval)

    async def getname(self, sk: int, peer: bool = False) -> tuple[int, int, int]:
        """(errno, addr, port)."""
        r = await self.call(sk, getname=udp_pb2.GetnameOp(peer=peer))
        return int(r.errno), int(r.name.addr), int(r.name.port)

    async def close(self) -> None:
        self._out.put_nowait(None)
        try:
            await asyncio.wait_for(self.reader, WAIT)
        except grpc.aio.AioRpcError:
            pass

    async def failure(self) -> grpc.aio.AioRpcError:
        """The error the stream ended with."""
        try:
            await asyncio.wait_for(self.reader, WAIT)
        except grpc.aio.AioRpcError as err:
            return err
        raise AssertionError("the stream ended without an error")


class UdpHarness:
    """A UDP service (UdpService: UdpServicer, IpRoutes, UdpLayer) on 127.0.0.1:0,
    attached to a FakeIp, with a ProtoStream as its socket layer."""

    # The IP service's stand-in (a subclass for tests that need more of it).
    ip_class: type[FakeIp] = FakeIp

    ip: FakeIp
    layer: UdpLayer
    service: UdpService
    stub: udp_pb2_grpc.UdpServiceStub
    sock: ProtoStream

    def __init__(self, sysctl: Sysctl | None = None) -> None:
        self._sysctl = sysctl or Sysctl()
        self._servers: list[grpc.aio.Server] = []
        self._channel: grpc.aio.Channel | None = None

    async def _serve(self, register: Callable[[grpc.aio.Server], None]) -> str:
        server = grpc.aio.server(options=CHANNEL_OPTIONS)
        register(server)
        port = server.add_insecure_port("127.0.0.1:0")
        assert port
        await server.start()
        self._servers.append(server)
        return f"127.0.0.1:{port}"

    async def __aenter__(self) -> Self:
        self.ip = self.ip_class()
        ip_addr = await self._serve(lambda s: ip_pb2_grpc.add_IpServiceServicer_to_server(self.ip, s))
        routes = IpRoutes()
        self.layer = UdpLayer("alice", self._sysctl, routes)
        # Count udp_rcv calls, so a test knows when its injected skbs have been taken.
        self.rcv_calls = 0
        udp_rcv = self.layer.udp_rcv

        def counting_udp_rcv(skb: SkBuff) -> None:
            udp_rcv(skb)
            self.rcv_calls += 1

        self.layer.udp_rcv = counting_udp_rcv  # type: ignore[method-assign]
        self.service = UdpService(self.layer, routes, ip_addr)
        udp_addr = await self._serve(self.service.register)
        status = ReadyStatus()
        await self.service.start(status)
        await asyncio.wait_for(status.ready.wait(), WAIT)
        self._channel = grpc.aio.insecure_channel(udp_addr, options=CHANNEL_OPTIONS)
        self.stub = udp_pb2_grpc.UdpServiceStub(self._channel)
        self.sock = ProtoStream(self.stub)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sock.close()
        await self.service.stop()
        if self._channel is not None:
            await self._channel.close()
        for server in self._servers:
            await server.stop(None)

    def reattach(self) -> ProtoStream:
        self.sock = ProtoStream(self.stub)
        return self.sock

    async def deliver(self, *skbs: skb_pb2.SkBuff) -> None:
        """Hand the UDP service these skbs from IP and wait until udp_rcv took them."""
        want = self.rcv_calls + len(skbs)
        self.ip.deliver(*skbs)
        await eventually(lambda: self.rcv_calls >= want, f"udp_rcv of {len(skbs)} skbs")

    async def counters(self) -> dict[str, int]:
        """The Udp counters GetStats reports."""
        resp = await self.stub.GetStats(udp_pb2.GetStatsRequest())
        return {c.name: c.value for c in resp.counters if c.name.startswith("Udp") and "Lite" not in c.name}

    async def drops(self) -> dict[tuple[str, str], int]:
        resp = await self.stub.GetStats(udp_pb2.GetStatsRequest())
        return {(d.reason, d.location): d.count for d in resp.drops}

    async def socket_info(self, sk: int) -> udp_pb2.SocketInfo:
        resp = await self.stub.ListSockets(udp_pb2.ListSocketsRequest())
        (info,) = [s for s in resp.sockets if s.sk == sk]
        assert isinstance(info, udp_pb2.SocketInfo)
        return info

    async def queued(self, sk: int, n: int) -> None:
        """Wait until sk's receive queue holds n datagrams."""
        await eventually(lambda: len(self.layer.socks[sk].receive_queue) == n, f"{n} queued on {sk}")

    async def counted(self, field: str, n: int) -> None:
        await eventually(lambda: self.layer.mib.udp.get(field) == n, f"Udp{field} == {n}")


class LoopbackUdp:
    """UdpProto over an in-process UdpLayer, its datagrams looped back through a fake
    IP layer (ip_send_skb → lo → ip_rcv → ip_local_deliver) into its own udp_rcv, and
    the port unreachables udp_rcv asks for back into its udp_err (icmp_send → lo →
    icmp_rcv → icmp_unreach)."""

    def __init__(self, sysctl: Sysctl | None = None) -> None:
        self.layer = UdpLayer("alice", sysctl or Sysctl(), self._route)

    async def _route(
        self, daddr: int, saddr: int, oif: int, *, tos: int = 0, scope: int = 0, mark: int = 0
    ) -> tuple[Dst, int, int]:
        dst, src = lo_route(daddr, saddr, oif)
        return dst, src, 0

    async def create(self, protocol: int, pid: int, fd: int, cred: Cred = ROOT) -> int:
        return self.layer.create(protocol, pid, fd, cred).sk

    async def bind(self, sk: int, addr: int, port: int) -> None:
        await self.layer.bind(self.layer.sock(sk), addr, port)

    async def connect(self, sk: int, name: bytes) -> None:
        await self.layer.connect(self.layer.sock(sk), name)

    async def disconnect(self, sk: int) -> None:
        self.layer.disconnect(self.layer.sock(sk))

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
        sent = await self.layer.sendmsg(self.layer.sock(sk), data, name, flags, trace, control, timeout_ns)
        self._loop()
        return sent

    def _loop(self) -> None:
        batch, self.layer.to_ip = self.layer.to_ip, []
        for skb in batch:
            cork = skb.cork
            assert cork is not None
            # ip_options_build() on the way out (the first hop of a source route in the
            # header), ip_options_compile() on the way in (record route and timestamps
            # get this host's address), as the IP layer does.
            opt = ip_options_from_cork(skb.cb, cork.options) if cork.options else IpOptions()
            hdr = Ipv4Repr(
                src=cork.saddr,
                dst=opt.faddr if opt.srr else cork.daddr,
                protocol=cork.protocol,
                payload_len=skb.len,
                ttl=cork.ttl or 64,
                tos=cork.tos,
                options=opt.data,
            )
            header = skb.push(hdr.header_len)
            hdr.emit(header)
            if opt.optlen:
                ip_options_build(header, opt, cork.daddr, cork.saddr, 0)
            skb.reset_network_header()
            skb.pull(hdr.header_len)
            skb.reset_transport_header()
            skb.dst = Dst(LO_IFINDEX, cork.daddr, 0, RTN_LOCAL, RTCF_LOCAL)
            skb.skb_iif = skb.dev_ifindex = LO_IFINDEX
            skb.sk = 0
            skb.cork = None
            rcv_opt = IpOptions(optlen=hdr.header_len - 20)
            if rcv_opt.optlen:
                ip_options_compile(header, rcv_opt, local_addr=cork.daddr, now_ms=0)
            set_ipcb(skb.cb, InetSkbParm(iif=LO_IFINDEX, opt=rcv_opt, spec_dst=cork.daddr))
            self.layer.udp_rcv(skb)
        icmp, self.layer.icmp_out = self.layer.icmp_out, []
        for req in icmp:
            self.layer.udp_err(icmp_error(req.skb, req.type, req.code, req.info))

    async def sendmmsg(self, sk: int, msgs: list[MmsgSend]) -> list[int]:
        try:
            return await self.layer.sendmmsg(self.layer.sock(sk), msgs)
        finally:
            self._loop()

    async def recvmsg(
        self, sk: int, length: int, flags: int, timeout_ns: int, controllen: int = 0
    ) -> RecvMsg:
        return await self.layer.udp_recvmsg(self.layer.sock(sk), length, flags, timeout_ns, controllen)

    async def recvmmsg(
        self, sk: int, length: int, flags: int, timeout_ns: int, controllen: int, vlen: int
    ) -> tuple[list[RecvMsg], int]:
        return await self.layer.recvmmsg(self.layer.sock(sk), length, flags, timeout_ns, controllen, vlen)

    async def setsockopt(self, sk: int, level: int, optname: int, optval: bytes) -> None:
        await self.layer.setsockopt(self.layer.sock(sk), level, optname, optval)

    async def getsockopt(self, sk: int, level: int, optname: int, optlen: int) -> tuple[bytes, int]:
        return await self.layer.getsockopt(self.layer.sock(sk), level, optname, optlen)

    async def getname(self, sk: int, peer: bool) -> tuple[int, int]:
        return self.layer.getname(self.layer.sock(sk), peer)

    async def release(self, sk: int) -> None:
        self.layer.release(self.layer.sock(sk))

    async def shutdown(self, sk: int, how: int) -> None:
        self.layer.shutdown(self.layer.sock(sk), how)

    async def poll(self, sk: int, known: int | None, timeout_ns: int, nonblock: bool) -> int:
        s = self.layer.sock(sk)
        if known is None:
            return udp_poll(self.layer, s, nonblock)
        return await udp_poll_wait(self.layer, s, known, timeout_ns, nonblock)

    async def set_err(self, sk: int, err: int) -> None:
        self.layer.sock(sk).sk_err = err


class SocketHarness:
    """A socket service (SocketServicer over SocketLayer) on 127.0.0.1:0, its UDP layer
    a LoopbackUdp."""

    udp: LoopbackUdp
    layer: SocketLayer
    stub: socket_pb2_grpc.SocketServiceStub

    def __init__(self) -> None:
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> SocketHarness:
        self.udp = LoopbackUdp()
        self.layer = SocketLayer(self.udp)
        self._server = grpc.aio.server(options=CHANNEL_OPTIONS)
        socket_pb2_grpc.add_SocketServiceServicer_to_server(SocketServicer(self.layer, "alice"), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        assert port
        await self._server.start()
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
        self.stub = socket_pb2_grpc.SocketServiceStub(self._channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._channel is not None:
            await self._channel.close()
        if self._server is not None:
            await self._server.stop(None)

    async def process(self, comm: str = "test") -> int:
        return int((await self.stub.OpenProcess(socket_pb2.OpenProcessRequest(comm=comm))).pid)

    async def socket(
        self, pid: int, type_: int = 2, domain: int = AF_INET, protocol: int = 0
    ) -> tuple[int, int]:
        """(errno, fd)."""
        r = await self.stub.Socket(
            socket_pb2.SocketRequest(pid=pid, domain=domain, type=type_, protocol=protocol)
        )
        return int(r.errno), int(r.fd)

    async def udp_fd(self, pid: int, type_: int = 2) -> int:
        err, fd = await self.socket(pid, type_)
        assert err == 0
        return fd

    async def bind(self, pid: int, fd: int, addr: bytes) -> int:
        return int((await self.stub.Bind(socket_pb2.BindRequest(pid=pid, fd=fd, addr=addr))).errno)

    async def connect(self, pid: int, fd: int, addr: bytes) -> int:
        return int((await self.stub.Connect(socket_pb2.ConnectRequest(pid=pid, fd=fd, addr=addr))).errno)

    async def sendmsg(
        self, pid: int, fd: int, data: bytes, addr: bytes = b"", flags: int = 0, control: bytes = b""
    ) -> tuple[int, int]:
        r = await self.stub.SendMsg(
            socket_pb2.SendMsgRequest(pid=pid, fd=fd, data=data, addr=addr, flags=flags, control=control)
        )
        return int(r.errno), int(r.sent)

    async def recvmsg(
        self,
        pid: int,
        fd: int,
        bufsize: int = 65536,
        flags: int = 0,
        timeout_ns: int | None = None,
        controllen: int = 0,
    ) -> socket_pb2.RecvMsgResponse:
        r = await self.stub.RecvMsg(
            socket_pb2.RecvMsgRequest(
                pid=pid, fd=fd, bufsize=bufsize, flags=flags, timeout_ns=timeout_ns, controllen=controllen
            )
        )
        assert isinstance(r, socket_pb2.RecvMsgResponse)
        return r

    async def getsockname(self, pid: int, fd: int) -> tuple[int, bytes]:
        r = await self.stub.GetSockName(socket_pb2.GetSockNameRequest(pid=pid, fd=fd))
        return int(r.errno), bytes(r.addr)

    async def getpeername(self, pid: int, fd: int) -> tuple[int, bytes]:
        r = await self.stub.GetPeerName(socket_pb2.GetPeerNameRequest(pid=pid, fd=fd))
        return int(r.errno), bytes(r.addr)

    async def getsockopt(
        self, pid: int, fd: int, level: int, optname: int, optlen: int = 4
    ) -> tuple[int, bytes]:
        r = await self.stub.GetSockOpt(
            socket_pb2.GetSockOptRequest(pid=pid, fd=fd, level=level, optname=optname, optlen=optlen)
        )
        return int(r.errno), bytes(r.optval)

    async def setsockopt(self, pid: int, fd: int, level: int, optname: int, optval: bytes) -> int:
        r = await self.stub.SetSockOpt(
            socket_pb2.SetSockOptRequest(pid=pid, fd=fd, level=level, optname=optname, optval=optval)
        )
        return int(r.errno)

    async def close(self, pid: int, fd: int) -> int:
        return int((await self.stub.Close(socket_pb2.CloseRequest(pid=pid, fd=fd))).errno)


# The real kernel.

_libc = ctypes.CDLL(None, use_errno=True)


def _errno_of(result: int) -> int:
    return 0 if result >= 0 else ctypes.get_errno()


def real_sendto(sock: socket.socket, data: bytes, name: bytes | None, flags: int = 0) -> int:
    """sendto(2) with exactly these sockaddr bytes; the errno, 0 on success."""
    if name is None:
        return _errno_of(_libc.sendto(sock.fileno(), data, len(data), flags, None, 0))
    return _errno_of(_libc.sendto(sock.fileno(), data, len(data), flags, name, len(name)))


def real_bind(sock: socket.socket | int, name: bytes) -> int:
    fd = sock if isinstance(sock, int) else sock.fileno()
    return _errno_of(_libc.bind(fd, name, len(name)))


def real_connect(sock: socket.socket | int, name: bytes) -> int:
    fd = sock if isinstance(sock, int) else sock.fileno()
    return _errno_of(_libc.connect(fd, name, len(name)))


def real_socket(domain: int, type_: int, protocol: int) -> int:
    """socket(2)'s errno, 0 when it succeeds (the descriptor is closed again)."""
    fd = _libc.socket(domain, type_, protocol)
    if fd < 0:
        return ctypes.get_errno()
    _libc.close(fd)
    return 0


def real_setsockopt(sock: socket.socket, level: int, optname: int, optval: bytes) -> int:
    """setsockopt(2) with exactly these optval bytes (optlen their length); the errno."""
    buf = ctypes.create_string_buffer(optval, len(optval)) if optval else None
    return _errno_of(_libc.setsockopt(sock.fileno(), level, optname, buf, len(optval)))


def real_getsockopt(sock: socket.socket, level: int, optname: int, optlen: int) -> tuple[int, bytes]:
    """getsockopt(2) with this optlen (an int, may be negative): (errno, the bytes
    copied out, as many as the returned optlen says)."""
    buf = ctypes.create_string_buffer(max(optlen, 0) + 8)
    length = ctypes.c_int(optlen)
    if _libc.getsockopt(sock.fileno(), level, optname, buf, ctypes.byref(length)) < 0:
        return ctypes.get_errno(), b""
    return 0, buf.raw[: length.value]


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_Iovec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


def real_sendmsg(sock: socket.socket, data: bytes, name: bytes | None, control: bytes, flags: int = 0) -> int:
    """sendmsg(2) with exactly this msg_control; the errno, 0 on success."""
    buf = ctypes.create_string_buffer(data, max(len(data), 1))
    iov = _Iovec(ctypes.cast(buf, ctypes.c_void_p), len(data))
    nbuf = ctypes.create_string_buffer(name, len(name)) if name else None
    cbuf = ctypes.create_string_buffer(control, len(control)) if control else None
    msg = _Msghdr(
        ctypes.cast(nbuf, ctypes.c_void_p) if nbuf else None,
        len(name) if name else 0,
        ctypes.pointer(iov),
        1,
        ctypes.cast(cbuf, ctypes.c_void_p) if cbuf else None,
        len(control),
        0,
    )
    return _errno_of(_libc.sendmsg(sock.fileno(), ctypes.byref(msg), flags))


def real_recvmsg(
    sock: socket.socket, bufsize: int, controllen: int, flags: int = 0
) -> tuple[int, bytes, bytes, int, bytes]:
    """recvmsg(2): (errno, data, msg_control as the kernel left it (msg_controllen
    bytes), msg_flags, msg_name), or the errno and empties."""
    buf = ctypes.create_string_buffer(max(bufsize, 1))
    iov = _Iovec(ctypes.cast(buf, ctypes.c_void_p), bufsize)
    nbuf = ctypes.create_string_buffer(16)
    cbuf = ctypes.create_string_buffer(max(controllen, 1))
    msg = _Msghdr(
        ctypes.cast(nbuf, ctypes.c_void_p),
        16,
        ctypes.pointer(iov),
        1,
        ctypes.cast(cbuf, ctypes.c_void_p) if controllen else None,
        controllen,
        0,
    )
    n = _libc.recvmsg(sock.fileno(), ctypes.byref(msg), flags)
    if n < 0:
        return ctypes.get_errno(), b"", b"", 0, b""
    return 0, buf.raw[: min(n, bufsize)], cbuf.raw[: msg.controllen], msg.flags, nbuf.raw[: msg.namelen]


def real_udp() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def real_name(sock: socket.socket) -> tuple[int, int]:
    addr, port = sock.getsockname()
    return ip(addr), port


def real_errno(call: Callable[[], object]) -> int:
    try:
        call()
    except OSError as err:
        return err.errno or 0
    return 0


# The prologue of every script run in a network namespace of its own: lo up, the Udp
# counters readable, and a UDP segment sendable verbatim over a raw socket.
_NETNS_PROLOGUE = """
import json, socket, struct, subprocess
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
def udp_mib():
    head, values = [line.split() for line in open("/proc/net/snmp") if line.startswith("Udp:")]
    return {"Udp" + k: int(v) for k, v in zip(head[1:], values[1:])}
def raw_send(segment, dst="127.0.0.1"):
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    raw.sendto(segment, (dst, 0))
    raw.close()
def rx_queue(port):
    for line in open("/proc/net/udp").readlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == port:
            return int(f[4].split(":")[1], 16), int(f[-1])
out = {}
"""


def real_in_netns(script: str) -> dict[str, Any] | None:
    """Run `script` (after a prologue; it fills the dict `out`) in a new network
    namespace, where the counters start at zero and nothing else sends; its `out`, or
    None where no namespace can be made (not root, no unshare): the caller then checks
    the emulator against its expected values alone."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    code = _NETNS_PROLOGUE + script + "\nprint(json.dumps(out))\n"
    proc = subprocess.run(
        [unshare, "--net", sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    if proc.returncode != 0:
        if "unshare failed" in proc.stderr or "Operation not permitted" in proc.stderr:
            return None
        raise AssertionError(f"netns script failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result
