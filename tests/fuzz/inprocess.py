"""alice's services in this process, for tests that call them over gRPC from the test's
own thread: each service on a grpc.aio server of its own on 127.0.0.1 (with health, as
services/core/server.py serves it), wired as `stackemu up` wires them (the NIC below
IP below UDP below the socket layer), in an event loop on a thread of its own.

`top` names the highest layer started: with "ip" no UDP layer attaches to IP, so a
test may hold IP's Attach stream itself, as the layer above would."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.core.decode import DecodeCheck
from services.core.server import CHANNEL_OPTIONS, Service, ServingStatus
from services.core.sysctl import Sysctl
from services.core.wire.ipv4 import ip_from_str
from services.ip.layer import IpLayer
from services.ip.servicer import IpService
from services.nic.device import ether_dev, loopback_dev
from services.nic.layer import NicLayer
from services.nic.servicer import NicService
from services.socket.servicer import SocketService
from services.udp.layer import UdpLayer
from services.udp.servicer import IpRoutes, UdpService

T = TypeVar("T")

LAYERS = ("nic", "ip", "udp", "socket")
ALICE_MAC = "02:00:0a:00:00:01"
ADDRESSES = [("lo", ip_from_str("127.0.0.1"), 8), ("eth0", ip_from_str("10.0.0.1"), 24)]
READY_TIMEOUT = 10.0


def _make(layer: str, below: str) -> Service:
    """What services/<layer>/__main__.py's make_service() builds from alice's settings."""
    if layer == "nic":
        devices = [loopback_dev(), ether_dev(2, "eth0", bytes.fromhex(ALICE_MAC.replace(":", "")))]
        return NicService(NicLayer("alice", devices, Sysctl()))
    if layer == "ip":
        return IpService(IpLayer("alice", Sysctl()), list(ADDRESSES), below)
    if layer == "udp":
        routes = IpRoutes()
        return UdpService(UdpLayer("alice", Sysctl(), routes), routes, below)
    return SocketService("alice", below)


class InProcessHost:
    """The services from the NIC up to `top`, serving; addrs[layer] is "127.0.0.1:PORT"
    and services[layer] the Service (its servicer and layer, to look inside)."""

    def __init__(self, top: str = "socket") -> None:
        self.layers = LAYERS[: LAYERS.index(top) + 1]
        self.addrs: dict[str, str] = {}
        self.services: dict[str, Service] = {}
        self._servers: list[grpc.aio.Server] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        try:
            self.run(self._start(), READY_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the host's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        ports = {}
        for layer in self.layers:
            # As make_server: undecodable requests are INVALID_ARGUMENT.
            server = grpc.aio.server(options=CHANNEL_OPTIONS, interceptors=[DecodeCheck()])
            port = server.add_insecure_port("127.0.0.1:0")
            assert port, "could not bind 127.0.0.1:0"
            self._servers.append(server)
            ports[layer] = (server, port)
            self.addrs[layer] = f"127.0.0.1:{port}"
        statuses = []
        for i, layer in enumerate(self.layers):
            service = _make(layer, self.addrs[self.layers[i - 1]] if i else "")
            server = ports[layer][0]
            service.register(server)
            health_servicer = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
            status = ServingStatus(health_servicer, service.service_names)
            await status.not_serving()
            await server.start()
            self.services[layer] = service
            statuses.append(status)
        for layer, status in zip(self.layers, statuses, strict=True):
            await self.services[layer].start(status)
        for layer in self.layers:
            await self._serving(layer)

    def service_name(self, layer: str) -> str:
        """The layer's own gRPC service, whose health the host reports."""
        return next(iter(self.services[layer].service_names))

    async def _serving(self, layer: str) -> None:
        name = self.service_name(layer)
        async with grpc.aio.insecure_channel(self.addrs[layer]) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = self.loop.time() + READY_TIMEOUT
            while (await stub.Check(health_pb2.HealthCheckRequest(service=name))).status != (
                health_pb2.HealthCheckResponse.SERVING
            ):
                if self.loop.time() > deadline:
                    raise AssertionError(f"{layer} not serving after {READY_TIMEOUT}s")
                await asyncio.sleep(0.005)

    async def _stop(self) -> None:
        for layer in reversed(list(self.services)):
            await self.services[layer].stop()
        for server in self._servers:
            await server.stop(None)

    def stop(self) -> None:
        if self.loop.is_running():
            try:
                self.run(self._stop())
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(5)
        self.loop.close()
