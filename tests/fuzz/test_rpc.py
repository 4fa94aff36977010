"""Nonsense straight to every RPC of alice's NIC, IP (and netfilter), UDP and socket
services, run in this process (tests/fuzz/inprocess.py) and called through raw
channels (`channel.unary_unary(method, request_serializer=None, ...)`): random bytes
that decode as the request, and well-formed requests with hostile values (every field
at zero, one, all ones, the edges of its type, long strings, skbs whose offsets
contradict each other or that look like traffic with a field gone wrong).

Property: each call ends OK (the errno, if any, in the reply), or with
INVALID_ARGUMENT and a message saying what is wrong, or with a status the service
documents for the case: FAILED_PRECONDITION for a second caller of an Attach stream,
ALREADY_EXISTS for an NFQUEUE queue already bound, RESOURCE_EXHAUSTED when a process
limit is reached; calls that wait by design (a stream, RecvMsg, Poll) may still be
waiting when the test's deadline ends them. Never UNKNOWN (an exception in a servicer)
or INTERNAL. Afterwards every service still answers its health check SERVING and a
real call, and a datagram still goes from one socket to another.

The layers' own streams (Attach) are fuzzed on a host that stops below the layer
whose stream it is, so that the test is the one caller. Bytes that do not decode as the
request at all are test_undecodable_requests_are_invalid_argument's (grpc.aio answers
them itself)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import grpc
import pytest
from google.protobuf import descriptor as pbd
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import event, given
from hypothesis import strategies as st

from services.core import errno
from services.core.server import CHANNEL_OPTIONS
from services.core.skbuff import CHECKSUM_PARTIAL, IpCork, alloc_skb
from services.core.sockaddr import make_sockaddr_in
from stackemu.ip.v1 import ip_pb2, netfilter_pb2
from stackemu.nic.v1 import nic_pb2
from stackemu.skb.v1 import dropmon_pb2, skb_pb2
from stackemu.socket.v1 import socket_pb2
from stackemu.udp.v1 import udp_pb2
from tests.fuzz import fuzz_settings
from tests.fuzz.inprocess import InProcessHost
from tests.fuzz.test_skbuff_proto import skb_protos
from tests.services.nicframes import tx_skb, udp_packet
from tests.services.test_ip import frame as received

SERVICES = {
    "nic": [(nic_pb2, "NicService"), (dropmon_pb2, "DropMonitorService")],
    "ip": [(ip_pb2, "IpService"), (netfilter_pb2, "NetfilterService")],
    "udp": [(udp_pb2, "UdpService")],
    "socket": [(socket_pb2, "SocketService")],
}
# What a read-only call of each layer's looks like: it must still answer afterwards.
STILL_SERVING = {
    "nic": ("/stackemu.nic.v1.NicService/ListLinks", nic_pb2.ListLinksRequest()),
    "ip": ("/stackemu.ip.v1.IpService/GetStats", ip_pb2.GetStatsRequest()),
    "udp": ("/stackemu.udp.v1.UdpService/ListSockets", udp_pb2.ListSocketsRequest()),
    "socket": ("/stackemu.socket.v1.SocketService/ListProcesses", socket_pb2.ListProcessesRequest()),
}
# Calls that wait by design: for data (RecvMsg, Poll), for the caller (a stream), for
# packets to capture or queue.
WAITING = {
    "Attach",
    "Wire",
    "Queue",
    "Capture",
    "KeepAlive",
    "Poll",
    "RecvMsg",
    "RecvMmsg",
    "SendMsg",
    "SendMmsg",
}
DOCUMENTED = {
    grpc.StatusCode.FAILED_PRECONDITION: {"Attach"},
    grpc.StatusCode.ALREADY_EXISTS: {"Queue"},
    grpc.StatusCode.RESOURCE_EXHAUSTED: {"OpenProcess"},
}
UNARY_DEADLINE = 5.0
STREAM_DEADLINE = 0.3
MAX_RESPONSES = 4


@dataclass(frozen=True)
class Method:
    layer: str
    path: str
    name: str
    request: type[Message]
    client_streaming: bool
    server_streaming: bool


def methods(layers: tuple[str, ...]) -> list[Method]:
    out = []
    for layer in layers:
        for module, name in SERVICES[layer]:
            svc = module.DESCRIPTOR.services_by_name[name]
            for m in svc.methods:
                out.append(
                    Method(
                        layer,
                        f"/{svc.full_name}/{m.name}",
                        m.name,
                        GetMessageClass(m.input_type),
                        m.client_streaming,
                        m.server_streaming,
                    )
                )
    return out


# Hostile scalars by protobuf type.
_I32 = st.sampled_from([0, 1, 2, 3, -1, 2**31 - 1, -(2**31)]) | st.integers(-(2**31), 2**31 - 1)
_I64 = st.sampled_from([0, 1, 2, 3, -1, 2**63 - 1, -(2**63)]) | st.integers(-(2**63), 2**63 - 1)
_U32 = st.sampled_from([0, 1, 2, 3, 8, 0xFFFF, 0x7F000001, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1)
_U64 = st.sampled_from([0, 1, 2, 3, 2**32, 2**64 - 1]) | st.integers(0, 2**64 - 1)
_STR = st.sampled_from(
    ["", "lo", "eth0", "eth9", "alice", "net.ipv4.ip_forward", "net.core.rmem_default", "filter", "INPUT",
     "nat", "x" * 300, "\0", "../..", "é"]
) | st.text(max_size=12)  # fmt: skip
_BYTES = st.sampled_from([b"", make_sockaddr_in(0x7F000001, 9), bytes(16), b"\xff" * 40]) | st.binary(
    max_size=64
)
_SCALARS = {
    pbd.FieldDescriptor.CPPTYPE_INT32: _I32,
    pbd.FieldDescriptor.CPPTYPE_INT64: _I64,
    pbd.FieldDescriptor.CPPTYPE_UINT32: _U32,
    pbd.FieldDescriptor.CPPTYPE_UINT64: _U64,
    pbd.FieldDescriptor.CPPTYPE_BOOL: st.booleans(),
    pbd.FieldDescriptor.CPPTYPE_DOUBLE: st.floats(allow_nan=True),
    pbd.FieldDescriptor.CPPTYPE_FLOAT: st.floats(width=32, allow_nan=True),
}


@st.composite
def transmit_skbs(draw: st.DrawFn) -> skb_pb2.SkBuff:
    """Traffic as the layer above hands it down (an IPv4 packet with its route, or a
    UDP segment with its cork), with some of it gone wrong."""
    if draw(st.booleans()):
        skb = tx_skb(
            udp_packet(b"x" * draw(st.integers(0, 3000))), headroom=draw(st.sampled_from([0, 2, 64]))
        )
    else:
        seg = b"\x13\x88\x23\x28" + bytes(4) + b"y" * draw(st.integers(0, 3000))
        skb = alloc_skb(len(seg), draw(st.sampled_from([0, 8, 20, 128])))
        skb.put_data(seg)
        skb.reset_transport_header()
        options = draw(st.sampled_from([b"", b"\1\1\1\1", bytes([7, 7, 4, 0, 0, 0, 0, 0]), b"\x83\3\4"]))
        skb.cork = IpCork(
            0x7F000001, 0x7F000001, 17, draw(st.integers(0, 255)), 0, draw(st.integers(0, 6)), options
        )
        skb.dst = tx_skb(b"").dst
        assert skb.dst is not None
        skb.dst.ifindex = draw(st.sampled_from([1, 2, 0, 99]))
        skb.dst.mtu = draw(st.sampled_from([65536, 1500, 68, 0]))
    if draw(st.booleans()):
        skb.ip_summed = CHECKSUM_PARTIAL
        skb.csum_start = skb.data + draw(st.sampled_from([0, 20, 4000]))
        skb.csum_offset = draw(st.sampled_from([6, 16, 0xFFFF]))
    skb.gso_size = draw(st.sampled_from([0, 0, 1, 1472, 0xFFFF]))
    skb.gso_type = draw(st.sampled_from([0, 1 << 17]))
    skb.protocol = draw(st.sampled_from([0x0800, 0x0806, 0]))
    skb.sk = draw(st.sampled_from([0, 1, 2**63]))
    return skb.to_proto()


@st.composite
def messages(draw: st.DrawFn, desc: pbd.Descriptor, depth: int = 0) -> Message:
    """A well-formed message of type `desc` with hostile values in some fields."""
    if desc.full_name == "stackemu.skb.v1.SkBuff":
        proto: Message = draw(transmit_skbs() | skb_protos())
        return proto
    msg = GetMessageClass(desc)()
    for f in desc.fields:
        if not draw(st.booleans()):
            continue
        sub = f.message_type
        if sub is not None and sub.GetOptions().map_entry:
            key_f, value_f = sub.fields_by_name["key"], sub.fields_by_name["value"]
            target = getattr(msg, f.name)
            for _ in range(draw(st.integers(0, 3))):
                key = draw(_scalar(key_f))
                if value_f.message_type is not None:
                    target[key].CopyFrom(draw(messages(value_f.message_type, depth + 1)))
                else:
                    target[key] = draw(_scalar(value_f))
            continue
        if sub is not None:
            if depth >= 3:
                continue
            values = draw(st.lists(messages(sub, depth + 1), min_size=1, max_size=3 if _repeated(f) else 1))
            if _repeated(f):
                getattr(msg, f.name).extend(values)
            else:
                getattr(msg, f.name).CopyFrom(values[0])
            continue
        value_s = _scalar(f)
        if _repeated(f):
            getattr(msg, f.name).extend(draw(st.lists(value_s, max_size=3)))
        else:
            setattr(msg, f.name, draw(value_s))
    return msg


def _scalar(f: pbd.FieldDescriptor) -> st.SearchStrategy[object]:
    if f.enum_type is not None:
        return st.sampled_from([v.number for v in f.enum_type.values]) | _I32
    if f.cpp_type == pbd.FieldDescriptor.CPPTYPE_STRING:
        return _BYTES if f.type == pbd.FieldDescriptor.TYPE_BYTES else _STR
    return _SCALARS[f.cpp_type]


def _repeated(f: pbd.FieldDescriptor) -> bool:
    return bool(f.is_repeated)


# Fields set to a live process and its descriptors most of the time, so that the
# calls get past "no process" to the socket layer; not for the two calls that end the
# process (ExitProcess, and KeepAlive, whose end is the process's).
Fixups = dict[str, st.SearchStrategy[int]]
ENDS_PROCESS = {"ExitProcess", "KeepAlive"}


@st.composite
def requests(draw: st.DrawFn, method: Method, fixups: Fixups | None = None) -> list[bytes]:
    """What one call sends: one request, or a few on a stream; each a hostile message
    or random bytes that decode as the request type."""
    count = draw(st.integers(1, 3)) if method.client_streaming else 1
    out = []
    for _ in range(count):
        if draw(st.integers(0, 3)):
            msg = draw(messages(cast(pbd.Descriptor, method.request.DESCRIPTOR)))
            for name, value in (fixups or {}).items():
                if (
                    name in msg.DESCRIPTOR.fields_by_name
                    and method.name not in ENDS_PROCESS
                    and draw(st.integers(0, 3))
                ):
                    setattr(msg, name, draw(value))
            out.append(msg.SerializeToString())
            continue
        raw = draw(st.binary(max_size=64))
        try:
            method.request.FromString(raw)
        except DecodeError:
            raw = b""
        out.append(raw)
    return out


def call(channel: grpc.Channel, method: Method, reqs: list[bytes]) -> tuple[grpc.StatusCode, str]:
    """Make the call; (status, details) of how it ended, reading at most
    MAX_RESPONSES responses of a stream before cancelling it (then OK)."""
    kw = {"request_serializer": None, "response_deserializer": None}
    waits = method.client_streaming or method.server_streaming or method.name in WAITING
    deadline = STREAM_DEADLINE if waits else UNARY_DEADLINE
    try:
        if not method.client_streaming and not method.server_streaming:
            channel.unary_unary(method.path, **kw)(reqs[0], timeout=deadline)
        elif not method.server_streaming:
            channel.stream_unary(method.path, **kw)(iter(reqs), timeout=deadline)
        else:
            if method.client_streaming:
                stream = channel.stream_stream(method.path, **kw)(iter(reqs), timeout=deadline)
            else:
                stream = channel.unary_stream(method.path, **kw)(reqs[0], timeout=deadline)
            for n, _ in enumerate(stream):
                if n + 1 >= MAX_RESPONSES:
                    stream.cancel()
                    break
    except grpc.RpcError as err:
        code = err.code()
        if code == grpc.StatusCode.CANCELLED:
            return grpc.StatusCode.OK, ""
        return code, err.details() or ""
    return grpc.StatusCode.OK, ""


def check_answer(method: Method, code: grpc.StatusCode, details: str) -> None:
    event(f"{method.name}: {code.name}")
    if code == grpc.StatusCode.OK:
        return
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert details.strip(), f"{method.path}: INVALID_ARGUMENT without a message"
        return
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        assert method.client_streaming or method.server_streaming or method.name in WAITING, (
            f"{method.path} did not answer within {UNARY_DEADLINE}s"
        )
        return
    assert method.name in DOCUMENTED.get(code, set()), f"{method.path}: {code.name}: {details}"


class Host:
    """An InProcessHost with a blocking channel to each of its services."""

    def __init__(self, top: str) -> None:
        self.host = InProcessHost(top)
        self.channels = {
            layer: grpc.insecure_channel(addr, options=CHANNEL_OPTIONS)
            for layer, addr in self.host.addrs.items()
        }

    def close(self) -> None:
        for c in self.channels.values():
            c.close()
        self.host.stop()

    def still_serving(self) -> None:
        for layer, channel in self.channels.items():
            name = self.host.service_name(layer)
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=name), timeout=5
            )
            assert status.status == health_pb2.HealthCheckResponse.SERVING, layer
            path, req = STILL_SERVING[layer]
            channel.unary_unary(path)(req.SerializeToString(), timeout=5)

    def rpc(self, name: str, req: Message) -> bytes:
        """A socket service call, its response's bytes."""
        method = self.channels["socket"].unary_unary(f"/stackemu.socket.v1.SocketService/{name}")
        raw: bytes = method(req.SerializeToString(), timeout=5)
        return raw

    def process(self, sockets: int) -> tuple[int, list[int]]:
        """A new process with this many UDP sockets: (pid, fds)."""
        rpc = self.rpc
        pid = socket_pb2.OpenProcessResponse.FromString(
            rpc("OpenProcess", socket_pb2.OpenProcessRequest())
        ).pid
        fds = []
        for _ in range(sockets):
            r = socket_pb2.SocketResponse.FromString(
                rpc("Socket", socket_pb2.SocketRequest(pid=pid, domain=2, type=2))
            )
            assert r.errno == 0
            fds.append(r.fd)
        return pid, fds

    def fixups(self) -> Fixups:
        """A live process with sockets, one bound, one connected to it, for requests()."""
        pid, fds = self.process(4)
        rpc = self.rpc
        rpc("Bind", socket_pb2.BindRequest(pid=pid, fd=fds[0], addr=make_sockaddr_in(0x7F000001, 0)))
        name = socket_pb2.GetSockNameResponse.FromString(
            rpc("GetSockName", socket_pb2.GetSockNameRequest(pid=pid, fd=fds[0]))
        ).addr
        rpc("Connect", socket_pb2.ConnectRequest(pid=pid, fd=fds[1], addr=name))
        return {"pid": st.just(pid), "fd": st.sampled_from([*fds, 0, -1, 1 << 20])}

    def datagram_goes_through(self) -> None:
        rpc = self.rpc
        pid, fds = self.process(2)
        addr = make_sockaddr_in(0x7F000001, 0)
        assert (
            socket_pb2.BindResponse.FromString(
                rpc("Bind", socket_pb2.BindRequest(pid=pid, fd=fds[0], addr=addr))
            ).errno
            == 0
        )
        name = socket_pb2.GetSockNameResponse.FromString(
            rpc("GetSockName", socket_pb2.GetSockNameRequest(pid=pid, fd=fds[0]))
        ).addr
        sent = socket_pb2.SendMsgResponse.FromString(
            rpc("SendMsg", socket_pb2.SendMsgRequest(pid=pid, fd=fds[1], data=b"still here", addr=name))
        )
        assert (sent.errno, sent.sent) == (0, 10)
        got = socket_pb2.RecvMsgResponse.FromString(
            rpc("RecvMsg", socket_pb2.RecvMsgRequest(pid=pid, fd=fds[0], bufsize=100))
        )
        assert (got.errno, got.data) == (0, b"still here")
        rpc("ExitProcess", socket_pb2.ExitProcessRequest(pid=pid))


@pytest.fixture(scope="module")
def alice() -> Iterator[tuple[Host, Fixups]]:
    h = Host("socket")
    yield h, h.fixups()
    h.close()


# The host's IP layer picks IP IDs with `random` in its own thread while hypothesis
# draws, which hypothesis takes for a strategy using `random`.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

ALL = methods(("nic", "ip", "udp", "socket"))
SOCKET_CALLS = methods(("socket",))


@fuzz_settings(250)
@given(st.data())
def test_every_rpc_answers_with_a_status(alice: tuple[Host, Fixups], data: st.DataObject) -> None:
    host, fixups = alice
    method = data.draw(st.sampled_from(ALL), label="method")
    reqs = data.draw(requests(method, fixups), label="requests")
    check_answer(method, *call(host.channels[method.layer], method, reqs))
    host.still_serving()


def test_socket_calls_then_a_datagram_still_goes_through() -> None:
    host = Host("socket")
    try:
        fixups = host.fixups()

        @fuzz_settings(200)
        @given(st.data())
        def fuzz(data: st.DataObject) -> None:
            method = data.draw(st.sampled_from(SOCKET_CALLS), label="method")
            reqs = data.draw(requests(method, fixups))
            check_answer(method, *call(host.channels["socket"], method, reqs))

        fuzz()
        host.still_serving()
        host.datagram_goes_through()
    finally:
        host.close()


@pytest.mark.parametrize("layer", ["nic", "ip", "udp"])
def test_hostile_attach_streams(layer: str) -> None:
    """The layer's Attach stream held by the test, as the layer above would hold it:
    hostile batches end the stream OK or with INVALID_ARGUMENT, the gate lets the next
    caller in, and the services below keep serving."""
    host = Host(layer)
    try:
        attach = next(m for m in methods((layer,)) if m.name == "Attach")

        @fuzz_settings(100)
        @given(requests(attach))
        def fuzz(reqs: list[bytes]) -> None:
            check_answer(attach, *call(host.channels[layer], attach, reqs))
            host.still_serving()

        fuzz()
        # The gate admits a new caller: a stream of nothing ends OK, not
        # FAILED_PRECONDITION.
        assert call(host.channels[layer], attach, [])[0] == grpc.StatusCode.OK
    finally:
        host.close()


def test_undecodable_requests_are_invalid_argument(alice: tuple[Host, Fixups]) -> None:
    method = next(m for m in SOCKET_CALLS if m.name == "Socket")
    assert call(alice[0].channels["socket"], method, [b"\xff\xff\xff"])[0] == grpc.StatusCode.INVALID_ARGUMENT


def _looped_back() -> skb_pb2.SkBuff:
    """A datagram from 127.0.0.1 to itself as lo delivered it (with its route)."""
    return received(udp_packet(b"x", src=0x7F000001, dst=0x7F000001), ifindex=1).to_proto()


def _headroomless(headroom: int = 0, mtu: int = 65536, size: int = 4) -> skb_pb2.SkBuff:
    """A UDP segment to 127.0.0.1 with its cork and lo's route (no headroom unless
    asked, the route's MTU as asked)."""
    seg = struct.pack("!HHHH", 5000, 9000, 8 + size, 0) + bytes(size)
    skb = alloc_skb(len(seg), headroom)
    skb.put_data(seg)
    skb.cork = IpCork(0x7F000001, 0x7F000001, 17)
    skb.dst = tx_skb(b"", ifindex=1, nexthop=0x7F000001).dst
    assert skb.dst is not None
    skb.dst.mtu = mtu
    return skb.to_proto()


@pytest.mark.parametrize(
    ("layer", "request_", "what"),
    [
        pytest.param(
            "nic",
            nic_pb2.AttachRequest(
                addrs=nic_pb2.InetAddrs(addrs=[nic_pb2.InetAddr(ifindex=2, address=1, prefixlen=33)])
            ),
            "nic-attach-prefixlen",
        ),
        pytest.param(
            "ip",
            ip_pb2.AttachRequest(icmp_send=[ip_pb2.IcmpError(type=19)]),
            "ip-attach-icmp-type",
        ),
        pytest.param(
            "ip",
            ip_pb2.AttachRequest(icmp_send=[ip_pb2.IcmpError(skb=_looped_back(), type=3, code=256)]),
            "ip-attach-icmp-type",
        ),
        pytest.param(
            "ip",
            ip_pb2.AttachRequest(skbs=[_headroomless()]),
            "ip-attach-headroom",
        ),
        pytest.param(
            "ip",
            ip_pb2.AttachRequest(skbs=[_headroomless(headroom=64, mtu=0, size=100)]),
            "ip-attach-dst-mtu",
        ),
    ],
)
def test_contradicting_attach_requests_are_invalid_argument(layer: str, request_: Message, what: str) -> None:
    """What no layer above sends (a /33 address, an ICMP type past NR_ICMP_TYPES or a
    code past a u8, an skb without headroom for its IPv4 header, a route MTU below
    IPV4_MIN_MTU): INVALID_ARGUMENT with a message, not a crash of the stream."""
    host = Host(layer)
    try:
        attach = next(m for m in methods((layer,)) if m.name == "Attach")
        raw = [request_.SerializeToString()]
        code, details = call(host.channels[layer], attach, raw)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details, (code, details)
    finally:
        host.close()


@pytest.mark.parametrize("name", ["SendMsg", "RecvMsg"])
def test_negative_flags_are_einval(name: str) -> None:
    """sendmsg and recvmsg with flags -1: EINVAL, as 6.18 answers (__sys_sendmsg and
    __sys_recvmsg refuse MSG_CMSG_COMPAT, bit 31)."""
    host = Host("socket")
    try:
        pid, fds = host.process(1)
        if name == "SendMsg":
            req: Message = socket_pb2.SendMsgRequest(
                pid=pid, fd=fds[0], data=b"x", addr=make_sockaddr_in(0x7F000001, 9), flags=-1
            )
            response: type[Message] = socket_pb2.SendMsgResponse
        else:
            req, response = (
                socket_pb2.RecvMsgRequest(pid=pid, fd=fds[0], flags=-1),
                socket_pb2.RecvMsgResponse,
            )
        reply = response.FromString(host.rpc(name, req))
        assert isinstance(reply, socket_pb2.SendMsgResponse | socket_pb2.RecvMsgResponse)
        assert reply.errno == errno.EINVAL
    finally:
        host.close()
