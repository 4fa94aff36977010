"""`stackemu softnet_stat`: a host's /proc/net/softnet_stat, one row per emulated CPU,
in the layout of net/core/net-procfs.c softnet_seq_show() (6.18: fifteen columns)."""

from __future__ import annotations

from collections.abc import Sequence

from stackemu.nic.v1 import nic_pb2
from stackemu.tools.common import Nic, fail, out

USAGE = "Usage: stackemu softnet_stat [ --host HOST ]"


def row(sd: nic_pb2.SoftnetStat) -> str:
    """processed, dropped, time_squeeze, five zeros (was fastroute), 0 (was
    cpu_collision), received_rps, flow_limit_count, the backlog length, the CPU, and
    the backlog split into input_pkt_queue and process_queue (the emulator has one)."""
    cols = (
        sd.processed,
        sd.dropped,
        sd.time_squeeze,
        0,
        0,
        0,
        0,
        0,
        0,
        sd.received_rps,
        sd.flow_limit_count,
        sd.backlog_len,
        sd.cpu,
        sd.backlog_len,
        0,
    )
    return " ".join(f"{c & 0xFFFFFFFF:08x}" for c in cols)


def main(host: str | None, argv: Sequence[str]) -> int:
    if argv:
        fail(1, USAGE)
    with Nic(host) as nic:
        resp = nic.call("GetStats", nic_pb2.GetStatsRequest())
    for sd in resp.softnet:
        out(row(sd))
    return 0
