"""Who may talk to a host's services: the host secret on its layer-internal RPCs, and
TLS on every connection. Both are off until configured.

The host secret. The layers of one host hold streams to the layer below them
(INTERNAL_METHODS): skbs and socket calls go through them as `struct sk_buff *` and
`struct proto` calls go between kernel functions, and nothing outside the host's kernel
may inject into them. A service given the host's secret (STACKEMU_HOST_SECRET, or the
file STACKEMU_HOST_SECRET_FILE names: hex digits, `secrets.token_hex()`) answers an
internal RPC that does not carry it in its metadata (METADATA_KEY), or carries another,
with UNAUTHENTICATED, and its own channels to the layer below carry it. Everything else
stays open: the socket API (what clients are for), health, reflection, and the control
and inspection RPCs the CLI calls (GetStats, SetSysctl, Capture, ...). So does the NIC's
Wire: it is the cable between two hosts, which carries the other host's frames, and
what arrives on a cable is the input the receive path checks anyway (a host's secret
never leaves its own services). `stackemu up` makes one secret per host, for that host's
four services alone; docker-compose.yml and k8s/ make one per host too. A service
started without one (by hand, or by the tests' in-process harnesses) checks nothing.

TLS. With STACKEMU_TLS_CERT, STACKEMU_TLS_KEY and STACKEMU_TLS_CA (PEM files: this
side's certificate chain, its private key, and the CA that signed every side's
certificate), every server port is TLS and wants a client certificate the CA signed,
and every channel presents its certificate and checks the server's: mutual TLS, for
hosts whose services run on different machines. The server's certificate must name the
host part of the address dialled, unless STACKEMU_TLS_SERVER_NAME names what it must
carry instead (one certificate for every service, whatever its address). Some of the
three set and not all is a configuration error, as is a file that cannot be read.

services/core/server.py applies both: add_port() for servers, open_channel() and
open_aio_channel() for clients.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc

from services.core.config import ConfigError, env_file, env_secret

SECRET_ENV: Final = "STACKEMU_HOST_SECRET"
# gRPC metadata keys are lower case; a "-bin" suffix would make it binary.
METADATA_KEY: Final = "stackemu-host-secret"

# The RPCs a host's layer calls on the layer below it, and only it does. (IP also calls
# the NIC's ListLinks, which is `ip link` too: open.)
INTERNAL_METHODS: Final = frozenset(
    {
        # ip → nic: what netif_receive_skb() hands up and dev_queue_xmit() takes down.
        "/stackemu.nic.v1.NicService/Attach",
        # udp → ip: datagrams both ways, and ip_route_output_flow() for connect/sendmsg.
        "/stackemu.ip.v1.IpService/Attach",
        "/stackemu.ip.v1.IpService/RouteOutput",
        # socket → udp: the protocol's operations (struct proto) behind every system call.
        "/stackemu.udp.v1.UdpService/Attach",
    }
)

TLS_CERT: Final = "STACKEMU_TLS_CERT"
TLS_KEY: Final = "STACKEMU_TLS_KEY"
TLS_CA: Final = "STACKEMU_TLS_CA"
TLS_SERVER_NAME: Final = "STACKEMU_TLS_SERVER_NAME"


def host_secret() -> str | None:
    """This process's host secret (lower-case hex), None when it has none; ConfigError
    for a malformed one."""
    return env_secret(SECRET_ENV)


def has_internal_methods(service_names: Iterable[str]) -> bool:
    """Whether a server with these gRPC services serves an internal RPC."""
    prefixes = tuple(f"/{name}/" for name in service_names)
    return any(method.startswith(prefixes) for method in INTERNAL_METHODS)


Handler = Any  # grpc.RpcMethodHandler; grpc has no type hints


class HostSecretCheck(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """The server side: INTERNAL_METHODS want the secret, the other methods pass."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Handler]], details: Any
    ) -> Handler:
        handler = await continuation(details)
        method = details.method
        if handler is None or method not in INTERNAL_METHODS:
            return handler
        given = [v for k, v in details.invocation_metadata or () if k == METADATA_KEY]
        if len(given) == 1 and hmac.compare_digest(str(given[0]).encode(), self._secret):
            return handler
        why = "it carries no host secret" if not given else "its host secret is not this host's"
        return _refusal(
            handler,
            f"{method} is for this host's own layers only ({METADATA_KEY} metadata, "
            f"{SECRET_ENV} of the host): {why}",
        )


def _refusal(handler: Handler, message: str) -> Handler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[bool(handler.request_streaming), bool(handler.response_streaming)]
    return make(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def server_interceptors(service_names: Iterable[str], secret: str | None) -> list[HostSecretCheck]:
    """What a server with these services checks: nothing without a secret or without
    an internal RPC (the socket service's calls pay no interceptor)."""
    if secret is None or not has_internal_methods(service_names):
        return []
    return [HostSecretCheck(secret)]


def _with_secret(details: Any, secret: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()), (METADATA_KEY, secret))
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _SecretUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, secret: str) -> None:
        self.secret = secret

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_secret(details, self.secret), request)


class _SecretUnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, secret: str) -> None:
        self.secret = secret

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_secret(details, self.secret), request)


class _SecretStreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, secret: str) -> None:
        self.secret = secret

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(_with_secret(details, self.secret), requests)


class _SecretStreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, secret: str) -> None:
        self.secret = secret

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(_with_secret(details, self.secret), requests)


def client_interceptors(secret: str) -> Sequence[grpc.aio.ClientInterceptor]:
    """Every call of a channel to the host's own layer below carries the secret (grpc.aio
    files an interceptor under one kind of call only: one per kind)."""
    return [
        cls(secret)
        for cls in (_SecretUnaryUnary, _SecretUnaryStream, _SecretStreamUnary, _SecretStreamStream)
    ]


@dataclass(frozen=True, slots=True)
class Tls:
    """The PEM files of STACKEMU_TLS_*: this side's chain and key, the CA."""

    cert: bytes
    key: bytes
    ca: bytes
    server_name: str | None = None


def tls_from_env() -> Tls | None:
    """The TLS configuration, None when none of STACKEMU_TLS_CERT/KEY/CA is set;
    ConfigError when only some are, or a file cannot be read or is not PEM."""
    names = (TLS_CERT, TLS_KEY, TLS_CA)
    given = [n for n in names if os.environ.get(n)]
    server_name = os.environ.get(TLS_SERVER_NAME) or None
    if not given:
        if server_name is not None:
            raise ConfigError(f"{TLS_SERVER_NAME} is set without {', '.join(names)}")
        return None
    if len(given) < len(names):
        missing = [n for n in names if n not in given]
        raise ConfigError(
            f"{', '.join(given)} set but not {', '.join(missing)}: TLS needs the certificate, "
            "its key and the CA"
        )
    cert, key, ca = (
        _pem(name, what)
        for name, what in ((TLS_CERT, b"CERTIFICATE"), (TLS_KEY, b"PRIVATE KEY"), (TLS_CA, b"CERTIFICATE"))
    )
    return Tls(cert, key, ca, server_name)


def _pem(name: str, what: bytes) -> bytes:
    data = env_file(name)
    if data is None or b"-----BEGIN " not in data or what not in data:
        raise ConfigError(f"{name}={os.environ.get(name)!r} holds no PEM {what.decode().lower()}")
    return data


def server_credentials(tls: Tls) -> grpc.ServerCredentials:
    """Mutual TLS: the client must present a certificate the CA signed."""
    return grpc.ssl_server_credentials(
        [(tls.key, tls.cert)], root_certificates=tls.ca, require_client_auth=True
    )


def channel_credentials(tls: Tls) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
    )


def channel_options(tls: Tls | None) -> list[tuple[str, str]]:
    """The server name the certificate must carry, when it is not the address's host."""
    if tls is None or tls.server_name is None:
        return []
    return [("grpc.ssl_target_name_override", tls.server_name)]
