"""A stack `stackemu up` started with mutual TLS (STACKEMU_TLS_*, certificates made here
with the openssl CLI), and the host secrets it gives each host's services: a datagram
from alice to bob through the drop-in over TLS, clients without a certificate the CA
signed refused, and the layer-internal RPCs refused to anyone but the host's own
services (services/core/auth.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core import auth
from services.core.server import Service, make_server, open_aio_channel, open_channel
from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
from stackemu.udp.v1 import udp_pb2, udp_pb2_grpc
from tests.e2e.stackrun import DROPIN_RECV, DROPIN_SEND, launched, service_addr

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("openssl") is None, reason="the openssl CLI is missing (scripts/bootstrap.sh)"
    ),
]

# A minimal OpenSSL configuration, so that the machine's openssl.cnf does not matter.
CA_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = stackemu test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""
# The services' certificate serves and is presented as a client (each service dials the
# layer below); the user's is a client's only.
LEAF = "basicConstraints = CA:FALSE\nextendedKeyUsage = {}\n"
SERVICES_EXT = LEAF.format("serverAuth, clientAuth") + "subjectAltName = IP:127.0.0.1\n"
CLIENT_EXT = LEAF.format("clientAuth")
# One certificate for services wherever they run, by name (STACKEMU_TLS_SERVER_NAME).
NAMED_EXT = LEAF.format("serverAuth, clientAuth") + "subjectAltName = DNS:stackemu.test\n"


def _openssl(cwd: Path, *args: str) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def _ca(d: Path, name: str) -> None:
    (d / "ca.cnf").write_text(CA_CNF)
    _openssl(
        d, "req", "-x509", "-config", "ca.cnf", "-extensions", "v3_ca", "-newkey", "ec",
        "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.pem",
    )  # fmt: skip


def _leaf(d: Path, ca: str, name: str, ext: str, serial: int) -> None:
    (d / f"{name}.ext").write_text(ext)
    _openssl(
        d, "req", "-new", "-config", "ca.cnf", "-subj", f"/CN=stackemu {name}", "-newkey", "ec",
        "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
    )  # fmt: skip
    _openssl(
        d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-set_serial", str(serial), "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA, the services' certificate, a user's, and a user's from another CA."""
    d = tmp_path_factory.mktemp("tls")
    _ca(d, "ca")
    _leaf(d, "ca", "services", SERVICES_EXT, 2)
    _leaf(d, "ca", "client", CLIENT_EXT, 3)
    _leaf(d, "ca", "named", NAMED_EXT, 4)
    _ca(d, "rogue-ca")
    _leaf(d, "rogue-ca", "rogue", CLIENT_EXT, 2)
    return d


def _tls_env(d: Path, who: str, ca: str = "ca") -> dict[str, str]:
    return {
        auth.TLS_CERT: str(d / f"{who}.pem"),
        auth.TLS_KEY: str(d / f"{who}.key"),
        auth.TLS_CA: str(d / f"{ca}.pem"),
    }


@pytest.fixture(scope="module")
def stack(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`stackemu up` with the services' certificate: every service listens with TLS and
    dials with it, as do the launcher's health checks."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in _tls_env(certs, "services").items():
            mp.setenv(name, value)
        mp.delenv(auth.TLS_SERVER_NAME, raising=False)
        yield from launched(str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def as_client(certs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as a user with a certificate the CA signed (open_channel's TLS)."""
    for name, value in _tls_env(certs, "client").items():
        monkeypatch.setenv(name, value)


def _check(channel: grpc.Channel) -> tuple[grpc.StatusCode, str]:
    try:
        resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.RpcError as err:
        return err.code(), "refused"
    return grpc.StatusCode.OK, health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def test_a_datagram_alice_to_bob_through_the_drop_in_over_tls(stack: dict[str, str], certs: Path) -> None:
    env = {**stack, **_tls_env(certs, "client")}
    recv = subprocess.Popen(
        [sys.executable, "-c", DROPIN_RECV],
        env={**env, "STACKEMU_HOST": "bob"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert recv.stdout is not None
        assert recv.stdout.readline() == "bound\n"
        send = subprocess.run(
            [sys.executable, "-c", DROPIN_SEND, "over mutual TLS"],
            env={**env, "STACKEMU_HOST": "alice"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (send.returncode, send.stdout) == (0, "15\n"), send.stderr
        out, _ = recv.communicate(timeout=30)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    assert (recv.returncode, out) == (0, "over mutual TLS 10.0.0.1 40000\n")


def test_clients_without_a_certificate_of_the_ca_are_refused(stack: dict[str, str], certs: Path) -> None:
    addr = service_addr(stack, "alice", "socket")
    with grpc.insecure_channel(addr) as plain:
        assert _check(plain) == (grpc.StatusCode.UNAVAILABLE, "refused")
    ca = (certs / "ca.pem").read_bytes()
    with grpc.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=ca)) as no_cert:
        assert _check(no_cert) == (grpc.StatusCode.UNAVAILABLE, "refused")
    rogue = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=(certs / "rogue.key").read_bytes(),
        certificate_chain=(certs / "rogue.pem").read_bytes(),
    )
    with grpc.secure_channel(addr, rogue) as other_ca:
        assert _check(other_ca) == (grpc.StatusCode.UNAVAILABLE, "refused")
    client = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=(certs / "client.key").read_bytes(),
        certificate_chain=(certs / "client.pem").read_bytes(),
    )
    with grpc.secure_channel(addr, client) as ours:
        assert _check(ours) == (grpc.StatusCode.OK, "SERVING")


def _service(stack: dict[str, str], host: str, layer: str) -> dict[str, Any]:
    """The launcher's state entry of a service: its pid, its log."""
    entry: dict[str, Any] = json.loads((Path(stack["STACKEMU_STATE_DIR"]) / "stack.json").read_text())
    return dict(entry["hosts"][host][layer])


class _HealthOnly(Service):
    name = "named"
    service_names: list[str] = []

    def register(self, server: grpc.aio.Server) -> None:
        pass


def test_a_certificate_for_a_name_with_stackemu_tls_server_name(
    certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose certificate names stackemu.test, dialled at 127.0.0.1: refused
    unless STACKEMU_TLS_SERVER_NAME says which name to check (open_aio_channel)."""
    for name, value in _tls_env(certs, "named").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(auth.TLS_SERVER_NAME, raising=False)

    async def check(addr: str) -> str:
        async with open_aio_channel(addr) as ch:
            try:
                resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            except grpc.aio.AioRpcError as err:
                return str(err.code().name)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))

    async def body() -> list[str]:
        server, health, port = make_server(_HealthOnly(), "127.0.0.1:0")
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        await server.start()
        try:
            seen = [await check(f"127.0.0.1:{port}")]
            monkeypatch.setenv(auth.TLS_SERVER_NAME, "stackemu.test")
            seen.append(await check(f"127.0.0.1:{port}"))
        finally:
            await server.stop(None)
        return seen

    assert asyncio.run(asyncio.wait_for(body(), 20)) == ["UNAVAILABLE", "SERVING"]


def _secret(stack: dict[str, str], host: str, layer: str) -> str:
    """What the launcher gave that service (root reads its environment)."""
    environ = Path(f"/proc/{_service(stack, host, layer)['pid']}/environ").read_bytes().split(b"\0")
    (value,) = [v.split(b"=", 1)[1] for v in environ if v.startswith(b"STACKEMU_HOST_SECRET=")]
    return value.decode()


def _unauthenticated(call: object) -> str:
    assert isinstance(call, grpc.RpcError) and isinstance(call, grpc.Call)
    assert call.code() == grpc.StatusCode.UNAUTHENTICATED
    return str(call.details())


def test_the_internal_streams_want_the_hosts_own_secret(stack: dict[str, str], as_client: None) -> None:
    """A client that TLS lets in still cannot attach to a layer as if it were the layer
    above, nor route through IP; the layers' control RPCs stay open to it."""
    why = (
        "{} is for this host's own layers only (stackemu-host-secret metadata, "
        "STACKEMU_HOST_SECRET of the host): {}"
    )
    with open_channel(service_addr(stack, "alice", "ip")) as ch:
        ip = ip_pb2_grpc.IpServiceStub(ch)
        # A fake upper layer on alice's IP: refused at once, before its first message.
        with pytest.raises(grpc.RpcError) as info:
            list(ip.Attach(iter([ip_pb2.AttachRequest()]), timeout=5))
        assert _unauthenticated(info.value) == why.format(
            "/stackemu.ip.v1.IpService/Attach", "it carries no host secret"
        )
        route = ip_pb2.RouteOutputRequest(daddr=0x0A000002)
        with pytest.raises(grpc.RpcError) as info:
            ip.RouteOutput(route, timeout=5)
        assert _unauthenticated(info.value) == why.format(
            "/stackemu.ip.v1.IpService/RouteOutput", "it carries no host secret"
        )
        # Each host has its own: bob's does not open alice's, alice's does.
        alice, bob = _secret(stack, "alice", "ip"), _secret(stack, "bob", "ip")
        assert len(alice) == len(bob) == 64 and alice != bob
        assert _secret(stack, "alice", "udp") == _secret(stack, "alice", "socket") == alice
        with pytest.raises(grpc.RpcError) as info:
            ip.RouteOutput(route, metadata=((auth.METADATA_KEY, bob),), timeout=5)
        assert _unauthenticated(info.value) == why.format(
            "/stackemu.ip.v1.IpService/RouteOutput", "its host secret is not this host's"
        )
        resp = ip.RouteOutput(route, metadata=((auth.METADATA_KEY, alice),), timeout=5)
        assert (resp.errno, resp.saddr) == (0, 0x0A000001)
        # Open: what the CLI calls.
        labels = sorted(a.label for a in ip.ListAddrs(ip_pb2.ListAddrsRequest(), timeout=5).addrs)
        assert labels == ["eth0", "lo"]
    with open_channel(service_addr(stack, "alice", "nic")) as ch:
        with pytest.raises(grpc.RpcError) as info:
            list(nic_pb2_grpc.NicServiceStub(ch).Attach(iter([nic_pb2.AttachRequest()]), timeout=5))
        assert "it carries no host secret" in _unauthenticated(info.value)
    with open_channel(service_addr(stack, "alice", "udp")) as ch:
        with pytest.raises(grpc.RpcError) as info:
            list(udp_pb2_grpc.UdpServiceStub(ch).Attach(iter([udp_pb2.AttachRequest()]), timeout=5))
        assert "it carries no host secret" in _unauthenticated(info.value)
    # And each service said so when it started.
    for layer, says in [
        ("nic", "internal RPCs need the host secret"),
        ("ip", "internal RPCs need the host secret"),
        ("udp", "internal RPCs need the host secret"),
        ("socket", "no host secret checked"),
    ]:
        log = Path(_service(stack, "alice", layer)["log"]).read_text()
        assert f"{layer} on {service_addr(stack, 'alice', layer)}: mutual TLS, {says}" in log, layer
