"""The IP layer's control RPCs (rtnetlink's job in the kernel): addresses, routes,
rules and the net.ipv4 sysctls. IpServicer inherits them."""

from __future__ import annotations

from services.ip.layer import IpLayer
from stackemu.ip.v1 import ip_pb2_grpc


class IpControl(ip_pb2_grpc.IpServiceServicer):
    layer: IpLayer
