"""`stackemu softnet_stat`: a host's /proc/net/softnet_stat, one row per emulated CPU,
in the layout of net/core/net-procfs.c softnet_seq_show() (6.18: fifteen columns)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from stackemu.nic.v1 import nic_pb2
from stackemu.tools.common import Nic, fail, out

USAGE = """Usage: stackemu softnet_stat [ --host HOST ] [ --json ]

Examples:
  stackemu softnet_stat --host bob      bob's rows, as /proc/net/softnet_stat has them
  stackemu softnet_stat --json          the same counters by name, one object per CPU"""


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


def as_dict(sd: nic_pb2.SoftnetStat) -> dict[str, int]:
    """A row's counters by their struct softnet_data names."""
    return {
        "cpu": sd.cpu,
        "processed": sd.processed,
        "dropped": sd.dropped,
        "time_squeeze": sd.time_squeeze,
        "received_rps": sd.received_rps,
        "flow_limit_count": sd.flow_limit_count,
        "backlog_len": sd.backlog_len,
    }


def main(host: str | None, argv: Sequence[str]) -> int:
    if list(argv) in (["-h"], ["--help"]):
        out(USAGE)
        return 0
    as_json = list(argv) == ["--json"]
    if argv and not as_json:
        fail(1, USAGE)
    with Nic(host) as nic:
        resp = nic.call("GetStats", nic_pb2.GetStatsRequest())
    if as_json:
        out(json.dumps([as_dict(sd) for sd in resp.softnet], indent=2))
        return 0
    for sd in resp.softnet:
        out(row(sd))
    return 0
