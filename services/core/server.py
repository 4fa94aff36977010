"""The gRPC server bootstrap every service shares: grpc.aio on uvloop, the standard
health and reflection services, a Prometheus endpoint when STACKEMU_METRICS is set,
and a clean stop on SIGTERM; and the one way every server port and every client channel
is made (add_port, open_channel, open_aio_channel), with TLS and the host secret when
the environment configures them (services/core/auth.py):

STACKEMU_HOST_SECRET      the host's secret for its layer-internal RPCs (hex digits), or
STACKEMU_HOST_SECRET_FILE the file holding it; unset: internal RPCs are not checked
STACKEMU_TLS_CERT, STACKEMU_TLS_KEY, STACKEMU_TLS_CA   PEM files: mutual TLS everywhere
STACKEMU_TLS_SERVER_NAME  the name the servers' certificate carries (optional)
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.core import auth
from services.core.config import ConfigError, env_addr, env_str, fail
from services.core.decode import DecodeCheck

if TYPE_CHECKING:
    # Imported where a service serves: the clients that only open channels (the drop-in,
    # the CLI) need not load prometheus_client.
    from services.core import metrics

log = logging.getLogger("stackemu")

# The largest message either side of any channel takes; a bigger one is refused with
# RESOURCE_EXHAUSTED before a servicer sees it. Frames carry whole batches of skbs (a GSO
# skb alone can be 64 KiB), and a SendMmsg of UIO_MAXIOV (1024) datagrams of 64 KiB is
# 64 MiB.
MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    # A restarted neighbour is dialled again within half a second, not gRPC's default
    # backoff (1 s growing to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


class Service:
    """What a service's __main__ hands to serve(): its servicers and its lifecycle."""

    name: str
    service_names: Iterable[str]

    def register(self, server: grpc.aio.Server) -> None:
        raise NotImplementedError

    async def start(self, health: ServingStatus) -> None:
        """Connect to neighbours; call health.serving() once ready."""

    async def stop(self) -> None:
        """Release neighbours and background tasks."""

    def collectors(self) -> Iterable[metrics.Collector]:
        """What the metrics endpoint reads at each scrape (services/core/metrics.py)."""
        return ()


class ServingStatus:
    """The health service's view of one process: NOT_SERVING until ready."""

    def __init__(self, servicer: health.aio.HealthServicer, names: Iterable[str]) -> None:
        self._servicer = servicer
        self._names = ["", *names]

    async def _set(self, status: int) -> None:
        for n in self._names:
            await self._servicer.set(n, status)

    async def serving(self) -> None:
        await self._set(health_pb2.HealthCheckResponse.SERVING)

    async def not_serving(self) -> None:
        await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)


def add_port(server: grpc.aio.Server, listen: str) -> int:
    """Listen on `listen` (its port 0: any), mutual TLS when STACKEMU_TLS_* configure
    it, else plaintext; the port."""
    tls = auth.tls_from_env()
    try:
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, auth.server_credentials(tls))
    except RuntimeError as err:
        raise ConfigError(f"cannot listen on {listen}: {err}") from None
    if port == 0:
        raise ConfigError(f"cannot listen on {listen}")
    return int(port)


def open_channel(addr: str) -> grpc.Channel:
    """A channel to the service at addr, for the clients that are not services (the CLI,
    the drop-in socket module, the launcher's health checks): TLS with this side's
    certificate when STACKEMU_TLS_* configure it, else plaintext."""
    tls = auth.tls_from_env()
    if tls is None:
        return grpc.insecure_channel(addr, options=CHANNEL_OPTIONS)
    options = CHANNEL_OPTIONS + auth.channel_options(tls)
    return grpc.secure_channel(addr, auth.channel_credentials(tls), options=options)


def open_aio_channel(addr: str, *, internal: bool = False) -> grpc.aio.Channel:
    """open_channel for asyncio. `internal`: the channel to this host's own layer below,
    whose every call carries the host secret when the service has one."""
    tls = auth.tls_from_env()
    secret = auth.host_secret() if internal else None
    interceptors = auth.client_interceptors(secret) if secret is not None else None
    if tls is None:
        return grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS, interceptors=interceptors)
    options = CHANNEL_OPTIONS + auth.channel_options(tls)
    return grpc.aio.secure_channel(
        addr, auth.channel_credentials(tls), options=options, interceptors=interceptors
    )


def make_server(service: Service, listen: str) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """A service's server, not started: its servicers, health and reflection, the host
    secret's check on its internal RPCs, listening on `listen` (add_port: the port)."""
    names = list(service.service_names)
    secret = auth.host_secret()
    interceptors = [DecodeCheck(), *auth.server_interceptors(names, secret)]
    server = grpc.aio.server(options=CHANNEL_OPTIONS, interceptors=interceptors)
    service.register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    port = add_port(server, listen)
    log.info(
        "%s on %s: %s, %s",
        service.name,
        listen,
        "plaintext" if auth.tls_from_env() is None else "mutual TLS",
        "internal RPCs need the host secret"
        if secret is not None and auth.has_internal_methods(names)
        else "no host secret checked",
    )
    return server, health_servicer, port


async def _serve(service: Service, listen: str, metrics_addr: str | None = None) -> None:
    server, health_servicer, _ = make_server(service, listen)
    exporter = None
    if metrics_addr is not None:
        from services.core import metrics

        host = env_str("STACKEMU_HOSTNAME")
        reg = metrics.registry(host, service.name, service.collectors(), asyncio.get_running_loop())
        exporter = metrics.MetricsServer(metrics_addr, reg)
        log.info("%s metrics on http://%s/metrics", service.name, metrics_addr)
    status = ServingStatus(health_servicer, service.service_names)
    await status.not_serving()
    await server.start()
    log.info("%s listening on %s", service.name, listen)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    starter = asyncio.create_task(service.start(status))
    await stopping.wait()
    log.info("%s stopping", service.name)
    starter.cancel()
    await status.not_serving()
    await service.stop()
    if exporter is not None:
        # Off the loop: a scrape in progress waits for the loop to read the counters.
        await asyncio.gather(server.stop(grace=1.0), asyncio.to_thread(exporter.close))
    else:
        await server.stop(grace=1.0)


def serve(name: str, make_service: Callable[[], Service], listen: Callable[[], str]) -> None:
    """Run a service until SIGTERM; configuration errors exit 2 with a message.
    STACKEMU_METRICS=host:port serves its Prometheus metrics there (/metrics)."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(message)s")
    try:
        metrics_addr = env_addr("STACKEMU_METRICS") if os.environ.get("STACKEMU_METRICS") else None
        uvloop.run(_serve(make_service(), listen(), metrics_addr))
    except ConfigError as err:
        fail(err, name)


async def retry_forever(
    connect: Callable[[], Awaitable[None]],
    what: str,
    *,
    delay_min: float = 0.05,
    delay_max: float = 0.25,
    reset_after: float = 1.0,
) -> None:
    """Run a neighbour connection, reconnecting with capped exponential backoff: after
    each failure, wait delay_min doubled up to delay_max; a connection that lasted
    reset_after seconds was up, and the wait after it ends starts again from delay_min.
    The neighbours are the host's own services (one machine, one Pod): a short cap
    costs little and reattaches a restarted one soon after it listens. The first
    failure of a kind is logged as a warning, its repeats at debug level."""
    loop = asyncio.get_running_loop()
    delay = delay_min
    last: str | None = None
    while True:
        started = loop.time()
        try:
            await connect()
            failure = None
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as err:
            failure = err.code().name
        except Exception:
            log.exception("%s failed", what)
            failure = "exception"
        if loop.time() - started >= reset_after:
            delay, last = delay_min, None
        if failure in (None, "exception"):
            pass
        elif failure == last:
            log.debug("%s: %s again", what, failure)
        else:
            log.warning("%s: %s", what, failure)
        last = failure
        await asyncio.sleep(delay)
        delay = min(delay * 2, delay_max)
