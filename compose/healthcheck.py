#!/usr/bin/env python
"""The image's HEALTHCHECK: ask the gRPC health service (grpc.health.v1.Health/Check,
service "") of the stackemu service in this container, on STACKEMU_LISTEN's port over
loopback, with TLS when the container's STACKEMU_TLS_* say so (as the service listens).
Exit 0 when it answers SERVING, 1 otherwise, as HEALTHCHECK wants."""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.config import ConfigError
from services.core.server import open_channel


def main() -> int:
    listen = os.environ.get("STACKEMU_LISTEN", "")
    _, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        print(f"STACKEMU_LISTEN={listen!r} is not host:port", file=sys.stderr)
        return 1
    try:
        channel = open_channel(f"127.0.0.1:{port}")
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    with channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError as err:
            code = err.code().name if isinstance(err, grpc.Call) else "error"
            print(f"127.0.0.1:{port}: {code}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    print(f"127.0.0.1:{port}: {status}")
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
