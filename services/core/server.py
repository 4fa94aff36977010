"""The gRPC server bootstrap every service shares: grpc.aio on uvloop, the standard
health and reflection services, a Prometheus endpoint when STACKEMU_METRICS is set,
and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterable

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.core import metrics
from services.core.config import ConfigError, env_addr, env_str, fail

log = logging.getLogger("stackemu")

# Frames carry whole batches of skbs; a GSO skb alone can be 64 KiB.
MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
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


async def _serve(service: Service, listen: str, metrics_addr: str | None = None) -> None:
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    service.register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service.service_names)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    if server.add_insecure_port(listen) == 0:
        raise ConfigError(f"cannot listen on {listen}")
    exporter = None
    if metrics_addr is not None:
        host = env_str("STACKEMU_HOSTNAME")
        reg = metrics.registry(host, service.name, service.collectors(), asyncio.get_running_loop())
        exporter = metrics.MetricsServer(metrics_addr, reg)
        log.info("%s metrics on http://%s/metrics", service.name, metrics_addr)
    status = ServingStatus(health_servicer, names)
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


async def retry_forever(connect: Callable[[], Awaitable[None]], what: str) -> None:
    """Run a neighbour connection, reconnecting with capped exponential backoff."""
    delay = 0.05
    while True:
        try:
            await connect()
            delay = 0.05
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as err:
            log.warning("%s: %s", what, err.code().name)
        except Exception:
            log.exception("%s failed", what)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
