"""The Node.js example (examples/node/udp_pair.js: @grpc/grpc-js and @grpc/proto-loader
over protos/) against a launched stack: two sockets on 127.0.0.1, a datagram from one to
the other with IP_PKTINFO on, and a third socket's bind to the receiver's port. Its
output must be what the machine's kernel answers to the same calls through the stdlib
socket module: the sender's sockaddr_in, the in_pktinfo cmsg, EADDRINUSE."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from stackemu.socket.v1 import socket_pb2 as pb
from stackemu.socket.v1 import socket_pb2_grpc
from tests.e2e.stackrun import launched, service_addr

ROOT = Path(__file__).resolve().parent.parent.parent
NODE = shutil.which("node")
CLIENT = ROOT / "examples" / "node" / "udp_pair.js"
SOL_IP, IP_PKTINFO = 0, 8
PAYLOAD = b"hello from node"

pytestmark = pytest.mark.skipif(
    NODE is None or not (ROOT / "node_modules" / "@grpc" / "grpc-js").is_dir(),
    reason="needs node and @grpc/grpc-js in node_modules: run `make install`",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield from launched(str(tmp_path_factory.mktemp("state")))


def _node(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    # No NODE_PATH: the example finds @grpc/* in the repository's node_modules.
    return subprocess.run(
        [NODE, str(CLIENT), *args],
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def kernel_pair() -> tuple[int, int, dict[str, Any]]:
    """The example's calls on the machine's kernel: the receiver's and the sender's
    ports, and what the example prints but the fds (which are this process's)."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as third,
    ):
        rx.bind(("127.0.0.1", 0))
        tx.bind(("127.0.0.1", 0))
        rx.setsockopt(SOL_IP, IP_PKTINFO, 1)
        sent = tx.sendto(PAYLOAD, rx.getsockname())
        data, anc, flags, (host, port) = rx.recvmsg(2048, 64)
        try:
            third.bind(rx.getsockname())
            rebind = 0
        except OSError as e:
            rebind = e.errno or 0
        control = b""
        cmsgs = []
        for level, type_, cdata in anc:
            raw = struct.pack("=Qii", socket.CMSG_LEN(len(cdata)), level, type_) + cdata
            control += raw + bytes(socket.CMSG_SPACE(len(cdata)) - len(raw))
            cmsg: dict[str, Any] = {"level": level, "type": type_, "data": cdata.hex()}
            if (level, type_) == (SOL_IP, IP_PKTINFO):
                ifindex, spec_dst, addr = struct.unpack("=i4s4s", cdata)
                cmsg["in_pktinfo"] = {
                    "ipi_ifindex": ifindex,
                    "ipi_spec_dst": socket.inet_ntoa(spec_dst),
                    "ipi_addr": socket.inet_ntoa(addr),
                }
            cmsgs.append(cmsg)
        out = {
            "sent": sent,
            "received": {
                "data": data.decode(),
                "length": len(data),
                "from": {"family": socket.AF_INET, "addr": host, "port": port},
                "msg_flags": flags,
                "control": control.hex(),
                "cmsgs": cmsgs,
            },
            "rebind_errno": rebind,
        }
        return rx.getsockname()[1], tx.getsockname()[1], out


def test_the_node_client_sees_what_the_kernel_answers(stack: dict[str, str]) -> None:
    recv_port, send_port, kernel = kernel_pair()
    # What 6.18 answered, so that both sides cannot go wrong the same way.
    assert kernel["received"]["cmsgs"] == [
        {
            "level": 0,
            "type": 8,
            "data": "010000007f0000017f000001",
            "in_pktinfo": {"ipi_ifindex": 1, "ipi_spec_dst": "127.0.0.1", "ipi_addr": "127.0.0.1"},
        }
    ]
    assert bytes.fromhex(kernel["received"]["control"]) == bytes.fromhex(
        "1c00000000000000 00000000 08000000 01000000 7f000001 7f000001 00000000"
    )
    assert kernel["rebind_errno"] == 98  # EADDRINUSE

    done = _node(service_addr(stack, "alice", "socket"), str(recv_port), str(send_port))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    # A new process's first descriptors are 3, 4, 5, as sock_map_fd gives them.
    assert json.loads(done.stdout) == {"fds": [3, 4, 5], **kernel}


def test_without_an_address_it_finds_the_host_in_the_state_file(stack: dict[str, str]) -> None:
    recv_port, send_port, kernel = kernel_pair()
    env = {"STACKEMU_STATE_DIR": stack["STACKEMU_STATE_DIR"], "STACKEMU_HOST": "bob"}
    done = _node("", str(recv_port), str(send_port), env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"fds": [3, 4, 5], **kernel}


def test_a_failed_call_is_its_errno_not_a_grpc_error(stack: dict[str, str]) -> None:
    """Another process holds the port: the example's Bind answers EADDRINUSE in the
    response's errno, and the example stops there and says so."""
    addr = service_addr(stack, "alice", "socket")
    with grpc.insecure_channel(addr) as ch:
        stub = socket_pb2_grpc.SocketServiceStub(ch)
        pid = stub.OpenProcess(pb.OpenProcessRequest(comm="holder"), timeout=10).pid
        try:
            udp = pb.SocketRequest(pid=pid, domain=socket.AF_INET, type=socket.SOCK_DGRAM)
            fd = stub.Socket(udp, timeout=10).fd
            sin = struct.pack("<H", socket.AF_INET) + struct.pack("!H", 9000) + socket.inet_aton("127.0.0.1")
            bound = stub.Bind(pb.BindRequest(pid=pid, fd=fd, addr=sin + bytes(8)), timeout=10)
            assert bound.errno == 0
            done = _node(addr, "9000", "9001")
        finally:
            stub.ExitProcess(pb.ExitProcessRequest(pid=pid), timeout=10)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "Bind: errno 98\n")
