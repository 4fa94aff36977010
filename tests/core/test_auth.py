"""Isolation and access (issue 10, part 4) in one process: the host secret on the
layer-internal RPCs (services/core/auth.py) over a real grpc.aio server made as every
service makes its own (server.make_server), the secret's and TLS's configuration errors,
the message size every server takes, and the socket layer's limits on processes
(kernel.pid_max) and files (fs.file-max) with the kernel's errnos."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.core import auth
from services.core.config import ConfigError, env_secret
from services.core.cred import CAP_FULL_SET, CAP_NET_ADMIN, CAP_SYS_ADMIN, Cred
from services.core.server import MAX_MESSAGE, Service, make_server, open_aio_channel
from services.core.sysctl import Sysctl
from services.socket.files import RESERVED_PIDS, ProcessTable, SocketFile
from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc
from stackemu.nic.v1 import nic_pb2  # noqa: F401  (its services in the descriptor pool)
from stackemu.socket.v1 import socket_pb2
from stackemu.udp.v1 import udp_pb2  # noqa: F401

T = TypeVar("T")

SECRET = "0123456789abcdef" * 4
OTHER = "fedcba9876543210" * 4
IP_SERVICE = ip_pb2.DESCRIPTOR.services_by_name["IpService"].full_name
ROUTE_OUTPUT = f"/{IP_SERVICE}/RouteOutput"
ATTACH = f"/{IP_SERVICE}/Attach"


def _refused(method: str, why: str) -> str:
    return (
        f"{method} is for this host's own layers only (stackemu-host-secret metadata, "
        f"STACKEMU_HOST_SECRET of the host): {why}"
    )


class _Ip(ip_pb2_grpc.IpServiceServicer):
    """An IP layer's RPCs, two internal (Attach, RouteOutput) and one open (ListAddrs)."""

    async def RouteOutput(self, request: Any, context: Any) -> ip_pb2.RouteOutputResponse:
        return ip_pb2.RouteOutputResponse(saddr=request.daddr + 1)

    async def Attach(self, requests: Any, context: Any) -> AsyncIterator[ip_pb2.AttachResponse]:
        async for req in requests:
            yield ip_pb2.AttachResponse(fib_genid=100 + len(req.skbs))
            return

    async def ListAddrs(self, request: Any, context: Any) -> ip_pb2.ListAddrsResponse:
        return ip_pb2.ListAddrsResponse(addrs=[ip_pb2.InterfaceAddress(label="lo")])


class _IpService(Service):
    name = "ip"
    service_names = [IP_SERVICE]

    def register(self, server: grpc.aio.Server) -> None:
        ip_pb2_grpc.add_IpServiceServicer_to_server(_Ip(), server)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 20))


@asynccontextmanager
async def _serving() -> AsyncIterator[str]:
    """The fake IP service as serve() would build it, from this process's environment."""
    server, health, port = make_server(_IpService(), "127.0.0.1:0")
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def _route(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> int:
    stub = ip_pb2_grpc.IpServiceStub(channel)
    resp = await stub.RouteOutput(ip_pb2.RouteOutputRequest(daddr=41), metadata=metadata, timeout=5)
    return int(resp.saddr)


async def _attach(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> list[int]:
    stub = ip_pb2_grpc.IpServiceStub(channel)

    async def requests() -> AsyncIterator[ip_pb2.AttachRequest]:
        yield ip_pb2.AttachRequest()

    call = stub.Attach(requests(), metadata=metadata, timeout=5)
    return [resp.fib_genid async for resp in call]


async def _code(coro: Coroutine[Any, Any, object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    return info.value.code(), info.value.details()


def test_internal_rpcs_want_this_hosts_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKEMU_HOST_SECRET", SECRET)
    unauth = grpc.StatusCode.UNAUTHENTICATED

    async def body() -> None:
        async with _serving() as addr, grpc.aio.insecure_channel(addr) as plain:
            # No secret, another host's secret: refused, unary and stream alike.
            assert await _code(_route(plain)) == (unauth, _refused(ROUTE_OUTPUT, "it carries no host secret"))
            wrong = (("stackemu-host-secret", OTHER),)
            not_ours = "its host secret is not this host's"
            assert await _code(_route(plain, wrong)) == (unauth, _refused(ROUTE_OUTPUT, not_ours))
            assert await _code(_attach(plain)) == (unauth, _refused(ATTACH, "it carries no host secret"))
            assert await _code(_attach(plain, wrong)) == (unauth, _refused(ATTACH, not_ours))
            # The secret twice (one right) is not the secret.
            twice = (("stackemu-host-secret", OTHER), ("stackemu-host-secret", SECRET))
            assert await _code(_route(plain, twice)) == (unauth, _refused(ROUTE_OUTPUT, not_ours))
            # The right one, by hand or as the layer above's channel adds it.
            assert await _route(plain, (("stackemu-host-secret", SECRET),)) == 42
            async with open_aio_channel(addr, internal=True) as own:
                assert await _route(own) == 42
                assert await _attach(own) == [100]
            # A channel that is not to the host's own layer (the NIC's wire to the other
            # host) never carries it.
            async with open_aio_channel(addr) as other:
                assert (await _code(_route(other)))[0] == unauth
            # Open without a secret: the control RPCs, health and reflection.
            addrs = await ip_pb2_grpc.IpServiceStub(plain).ListAddrs(ip_pb2.ListAddrsRequest(), timeout=5)
            assert [a.label for a in addrs.addrs] == ["lo"]
            health = await health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            refl = reflection_pb2_grpc.ServerReflectionStub(plain).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            (reply,) = [r async for r in refl]
            assert IP_SERVICE in {s.name for s in reply.list_services_response.service}

    _run(body())


def test_without_a_secret_nothing_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service started by hand, or by a test harness: no secret, no check."""
    monkeypatch.delenv("STACKEMU_HOST_SECRET", raising=False)
    monkeypatch.delenv("STACKEMU_HOST_SECRET_FILE", raising=False)

    async def body() -> None:
        async with _serving() as addr, grpc.aio.insecure_channel(addr) as plain:
            assert await _route(plain) == 42
            assert await _attach(plain) == [100]

    _run(body())
    assert auth.server_interceptors([IP_SERVICE], None) == []


def test_internal_methods_are_the_lower_layers_streams() -> None:
    pool = descriptor_pool.Default()
    for method in auth.INTERNAL_METHODS:
        service, name = method.strip("/").split("/")
        assert name in pool.FindServiceByName(service).methods_by_name, method
    assert sorted(auth.INTERNAL_METHODS) == [
        "/stackemu.ip.v1.IpService/Attach",
        "/stackemu.ip.v1.IpService/RouteOutput",
        "/stackemu.nic.v1.NicService/Attach",
        "/stackemu.udp.v1.UdpService/Attach",
    ]
    # The socket API is what clients are for: the socket service has no internal RPC,
    # and its server no interceptor to pay for on every system call.
    socket_service = socket_pb2.DESCRIPTOR.services_by_name["SocketService"].full_name
    assert not auth.has_internal_methods([socket_service])
    assert auth.server_interceptors([socket_service], SECRET) == []
    assert len(auth.server_interceptors([IP_SERVICE], SECRET)) == 1


def test_the_secret_from_the_environment_or_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    name = "STACKEMU_HOST_SECRET"
    monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(f"{name}_FILE", raising=False)
    assert env_secret(name) is None
    monkeypatch.setenv(name, SECRET.upper())
    assert env_secret(name) == SECRET
    cases = [
        (
            "0123456789abcdeg" * 4,
            f"{name}: the secret is not hex digits (make one with `openssl rand -hex 32`)",
        ),
        ("ab" * 15, f"{name}: the secret has 30 hex digits, fewer than 32"),
    ]
    for value, message in cases:
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as info:
            env_secret(name)
        assert str(info.value) == message
    secret_file = tmp_path / "host-secret"
    secret_file.write_text(OTHER + "\n")
    monkeypatch.setenv(f"{name}_FILE", str(secret_file))
    with pytest.raises(ConfigError) as info:
        env_secret(name)
    assert str(info.value) == f"{name} and {name}_FILE are both set: choose one"
    monkeypatch.delenv(name)
    assert env_secret(name) == OTHER
    monkeypatch.setenv(f"{name}_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError) as info:
        env_secret(name)
    assert (
        str(info.value)
        == f"{name}_FILE={str(tmp_path / 'missing')!r} cannot be read: No such file or directory"
    )


def test_tls_is_all_three_files_or_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in (auth.TLS_CERT, auth.TLS_KEY, auth.TLS_CA, auth.TLS_SERVER_NAME):
        monkeypatch.delenv(var, raising=False)
    assert auth.tls_from_env() is None
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n")

    def error() -> str:
        with pytest.raises(ConfigError) as info:
            auth.tls_from_env()
        return str(info.value)

    monkeypatch.setenv(auth.TLS_SERVER_NAME, "stackemu")
    assert error() == (
        "STACKEMU_TLS_SERVER_NAME is set without STACKEMU_TLS_CERT, STACKEMU_TLS_KEY, STACKEMU_TLS_CA"
    )
    monkeypatch.setenv(auth.TLS_CERT, str(cert))
    assert error() == (
        "STACKEMU_TLS_CERT set but not STACKEMU_TLS_KEY, STACKEMU_TLS_CA: TLS needs the certificate, "
        "its key and the CA"
    )
    monkeypatch.setenv(auth.TLS_KEY, str(cert))
    monkeypatch.setenv(auth.TLS_CA, str(tmp_path / "ca.pem"))
    assert error() == f"STACKEMU_TLS_KEY={str(cert)!r} holds no PEM private key"
    monkeypatch.setenv(auth.TLS_KEY, str(key))
    assert (
        error() == f"STACKEMU_TLS_CA={str(tmp_path / 'ca.pem')!r} cannot be read: No such file or directory"
    )
    monkeypatch.setenv(auth.TLS_CA, str(cert))
    tls = auth.tls_from_env()
    assert tls == auth.Tls(cert.read_bytes(), key.read_bytes(), cert.read_bytes(), "stackemu")
    assert auth.channel_options(tls) == [("grpc.ssl_target_name_override", "stackemu")]


def test_a_message_past_max_message_is_refused_before_the_servicer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every server takes MAX_MESSAGE (64 MiB) at most; gRPC refuses more, unread."""
    monkeypatch.delenv("STACKEMU_HOST_SECRET", raising=False)
    assert MAX_MESSAGE == 64 * 1024 * 1024

    async def body() -> tuple[grpc.StatusCode, str]:
        async with (
            _serving() as addr,
            grpc.aio.insecure_channel(addr, options=[("grpc.max_send_message_length", -1)]) as ch,
        ):
            call = ch.unary_unary(f"/{IP_SERVICE}/ListAddrs")
            return await _code(call(b"\x00" * (MAX_MESSAGE + 1), timeout=10))

    code, details = _run(body())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"Received message larger than max ({MAX_MESSAGE + 1} vs. {MAX_MESSAGE})" in details


# The socket layer's limits (services/socket/files.py).


def test_pid_max_bounds_the_processes_eagain() -> None:
    """As this machine's kernel does in a pid namespace whose pid_max is 310 (checked
    with fork()): pids climb to pid_max - 1, fork() is then EAGAIN (alloc_pid turns
    idr's ENOSPC into it), and once some exit the next pid starts again at
    RESERVED_PIDS (300), never below it."""
    procs = ProcessTable(Sysctl({"kernel.pid_max": 310}))
    pids = [procs.open("p").pid for _ in range(310 - 100)]
    assert pids == list(range(100, 310))
    with pytest.raises(OSError) as info:
        procs.open("p")
    assert info.value.errno == errno.EAGAIN
    # 150 is free, but below RESERVED_PIDS: after the wrap it is not given again.
    procs.remove(150)
    with pytest.raises(OSError) as info:
        procs.open("p")
    assert info.value.errno == errno.EAGAIN
    for pid in (305, 300):
        procs.remove(pid)
    assert [procs.open("p").pid, procs.open("p").pid] == [RESERVED_PIDS, 305]
    # A higher pid_max: the cursor goes on from where it was.
    procs.sysctl.set("kernel.pid_max", "400")
    assert procs.open("p").pid == 310


def test_file_max_bounds_the_hosts_files_enfile_but_not_for_cap_sys_admin() -> None:
    """alloc_empty_file(): ENFILE once the host holds fs.file-max files, unless the
    caller has CAP_SYS_ADMIN; sock_map_fd() takes the descriptor first, so a process
    at its RLIMIT_NOFILE gets EMFILE whatever the host's count."""
    procs = ProcessTable(Sysctl({"fs.file-max": 3}))
    user = procs.open("user", Cred(1000, 1 << CAP_NET_ADMIN), nofile=5)
    root = procs.open("root", Cred(0, CAP_FULL_SET))
    assert CAP_FULL_SET >> CAP_SYS_ADMIN & 1

    def install(proc: Any) -> int:
        """socket()'s part here: the descriptor, then the file in it."""
        fd = proc.alloc_fd()
        proc.fd_install(fd, SocketFile(sk=1000 + fd, type=2, protocol=17))
        return int(fd)

    def fails(proc: Any) -> int:
        with pytest.raises(OSError) as info:
            install(proc)
        return int(info.value.errno or 0)

    assert [install(user), install(user), install(root)] == [3, 4, 3]
    assert procs.nr_files() == 3
    # "Privileged users can go above max_files".
    assert install(root) == 4
    assert procs.nr_files() == 4
    # Both limits reached: the descriptor's comes first.
    assert fails(user) == errno.EMFILE
    # A descriptor free, the host still at its limit.
    del user.files[4]
    assert fails(user) == errno.ENFILE
    assert sorted(user.files) == [3]
    del root.files[4]
    assert install(user) == 4
    assert procs.nr_files() == 3
