"""Reading every layer's counters of one host over gRPC."""

from __future__ import annotations

from services.core.server import open_channel
from stackemu import state
from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
from stackemu.udp.v1 import udp_pb2, udp_pb2_grpc


def snapshot(host: str) -> dict[str, int]:
    """Every counter of the host's layers as "layer name": value."""
    out: dict[str, int] = {}
    with open_channel(state.service_addr("nic", host)) as ch:
        stub = nic_pb2_grpc.NicServiceStub(ch)
        for link in stub.ListLinks(nic_pb2.ListLinksRequest(), timeout=5).links:
            for field in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped"):
                out[f"nic {link.name} {field}"] = getattr(link.stats, field)
        nic = stub.GetStats(nic_pb2.GetStatsRequest(), timeout=5)
        for sd in nic.softnet:
            out[f"nic softnet cpu{sd.cpu} processed"] = sd.processed
            out[f"nic softnet cpu{sd.cpu} dropped"] = sd.dropped
            out[f"nic softnet cpu{sd.cpu} time_squeeze"] = sd.time_squeeze
        for d in nic.drops:
            out[f"nic drop {d.reason} at {d.location}"] = d.count
    with open_channel(state.service_addr("ip", host)) as ch:
        ip = ip_pb2_grpc.IpServiceStub(ch).GetStats(ip_pb2.GetStatsRequest(), timeout=5)
        out.update({f"ip {c.name}": c.value for c in ip.counters})
        out.update({f"ip drop {d.reason} at {d.location}": d.count for d in ip.drops})
    with open_channel(state.service_addr("udp", host)) as ch:
        udp = udp_pb2_grpc.UdpServiceStub(ch).GetStats(udp_pb2.GetStatsRequest(), timeout=5)
        out.update({f"udp {c.name}": c.value for c in udp.counters})
        out.update({f"udp drop {d.reason} at {d.location}": d.count for d in udp.drops})
    return out


class Counters:
    @staticmethod
    def diff(before: dict[str, int], after: dict[str, int]) -> list[str]:
        return [
            f"{name:<48} +{after[name] - before.get(name, 0)}"
            for name in after
            if after[name] != before.get(name, 0)
        ]
