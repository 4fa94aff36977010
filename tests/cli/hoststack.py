"""A host's socket and UDP services for real, for the CLI tools that read them (ss,
netstat, sysctl): a SocketServicer over a SocketLayer whose UDP layer is the
in-process LoopbackUdp (datagrams looped back through a fake IP layer into its own
udp_rcv), and a UdpServicer over that same UdpLayer, both on one grpc.aio server in a
thread of its own. A FakeIpStats answers the IP layer's GetStats with a SnmpMib the
test fills. The stack.json of `stack` (tests/cli/conftest.py) gets alice's socket,
udp and ip entries, so the CLI talks to them; the test drives the socket layer with
the blocking stub, as a client process would. A test module imports
hoststack_fixture to use the `hoststack` fixture."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from services.core.snmp import SnmpMib, to_flat_dict
from services.core.sockaddr import make_sockaddr_in
from services.socket.servicer import SocketServicer
from services.socket.syscalls import SocketLayer
from services.udp.layer import UdpLayer
from services.udp.servicer import IpRoutes, UdpServicer
from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc
from stackemu.skb.v1 import skb_pb2
from stackemu.socket.v1 import socket_pb2, socket_pb2_grpc
from stackemu.udp.v1 import udp_pb2_grpc
from tests.cli.conftest import AioThread, IpStack, Stack
from tests.services.fakes_udp import LoopbackUdp

SOCK_DGRAM = 2
IPPROTO_UDPLITE = 136


class FakeIpStats(ip_pb2_grpc.IpServiceServicer):
    """The IP layer's GetStats over a SnmpMib, as services/ip/servicer.py answers it."""

    def __init__(self) -> None:
        self.mib = SnmpMib()

    async def GetStats(self, request: Any, context: Any) -> ip_pb2.GetStatsResponse:
        return ip_pb2.GetStatsResponse(
            counters=[
                skb_pb2.Counter(name=k, value=v)
                for k, v in to_flat_dict(self.mib).items()
                if k.startswith(("Ip", "Icmp")) and v >= 0
            ]
        )


@dataclass
class HostStack:
    stack: Stack
    udp: UdpLayer
    ip: FakeIpStats
    sock: socket_pb2_grpc.SocketServiceStub

    def run(self, *args: str) -> Any:
        return self.stack.run(*args)

    def process(self, comm: str, uid: int = 0) -> int:
        return int(self.sock.OpenProcess(socket_pb2.OpenProcessRequest(comm=comm, uid=uid)).pid)

    def socket(self, pid: int, protocol: int = 0) -> int:
        r = self.sock.Socket(socket_pb2.SocketRequest(pid=pid, domain=2, type=SOCK_DGRAM, protocol=protocol))
        assert r.errno == 0
        return int(r.fd)

    def bind(self, pid: int, fd: int, addr: int, port: int) -> None:
        r = self.sock.Bind(socket_pb2.BindRequest(pid=pid, fd=fd, addr=make_sockaddr_in(addr, port)))
        assert r.errno == 0

    def connect(self, pid: int, fd: int, addr: int, port: int) -> None:
        r = self.sock.Connect(socket_pb2.ConnectRequest(pid=pid, fd=fd, addr=make_sockaddr_in(addr, port)))
        assert r.errno == 0

    def sendto(self, pid: int, fd: int, data: bytes, addr: int, port: int) -> None:
        r = self.sock.SendMsg(
            socket_pb2.SendMsgRequest(pid=pid, fd=fd, data=data, addr=make_sockaddr_in(addr, port))
        )
        assert (r.errno, r.sent) == (0, len(data))

    def close(self, pid: int, fd: int) -> None:
        assert self.sock.Close(socket_pb2.CloseRequest(pid=pid, fd=fd)).errno == 0

    def shutdown(self, pid: int, fd: int, how: int) -> int:
        return int(self.sock.Shutdown(socket_pb2.ShutdownRequest(pid=pid, fd=fd, how=how)).errno)

    def recv(self, pid: int, fd: int) -> bytes:
        r = self.sock.RecvMsg(socket_pb2.RecvMsgRequest(pid=pid, fd=fd, bufsize=65536))
        assert r.errno == 0
        return bytes(r.data)


def _host(stack: Stack, ip: FakeIpStats | None) -> Iterator[HostStack]:
    udp = LoopbackUdp()
    socket_servicer = SocketServicer(SocketLayer(udp), "alice")
    udp_servicer = UdpServicer(udp.layer, IpRoutes())
    register = [
        lambda s: socket_pb2_grpc.add_SocketServiceServicer_to_server(socket_servicer, s),
        lambda s: udp_pb2_grpc.add_UdpServiceServicer_to_server(udp_servicer, s),
    ]
    if ip is not None:
        register.append(lambda s: ip_pb2_grpc.add_IpServiceServicer_to_server(ip, s))
    server = AioThread(*register)
    addr = f"127.0.0.1:{server.port}"
    state_file = stack.state_dir / "stack.json"
    data = json.loads(state_file.read_text())
    for layer in ("socket", "udp", "ip") if ip is not None else ("socket", "udp"):
        data["hosts"]["alice"][layer] = {"addr": addr, "pid": os.getpid(), "log": ""}
    state_file.write_text(json.dumps(data))
    channel = grpc.insecure_channel(addr)
    try:
        yield HostStack(stack, udp.layer, ip or FakeIpStats(), socket_pb2_grpc.SocketServiceStub(channel))
    finally:
        channel.close()
        server.stop()


@pytest.fixture(name="hoststack")
def hoststack_fixture(stack: Stack) -> Iterator[HostStack]:
    """`stack` plus alice's socket and UDP services (one UdpLayer) and an IP GetStats."""
    yield from _host(stack, FakeIpStats())


@pytest.fixture(name="fullstack")
def fullstack_fixture(ipstack: IpStack) -> Iterator[HostStack]:
    """`ipstack` (the NIC fakes, the real IP control service) plus alice's socket and
    UDP services: every layer's sysctls."""
    yield from _host(ipstack, None)
