"""DropMonitorService over one layer's DropStats: switching its flow ledger on and off
and reading it (the emulator's NET_DM_CMD_START/STOP, net/core/drop_monitor.c)."""

from __future__ import annotations

import grpc

from services.core.dropreason import DropStats
from services.core.flowledger import DEFAULT_MAX_FLOWS, DropKey, FlowCounts, FlowKey, FlowLedger
from stackemu.skb.v1 import dropmon_pb2, dropmon_pb2_grpc, skb_pb2

SERVICE_NAME = dropmon_pb2.DESCRIPTOR.services_by_name["DropMonitorService"].full_name


def _drops(drops: dict[DropKey, int]) -> list[skb_pb2.DropCount]:
    return [
        skb_pb2.DropCount(reason=reason.full_name, location=location, count=count)
        for (reason, location), count in drops.items()
    ]


def flow_to_proto(key: FlowKey | None, counts: FlowCounts) -> dropmon_pb2.FlowCount:
    proto, saddr, sport, daddr, dport = key if key is not None else (0, 0, 0, 0, 0)
    return dropmon_pb2.FlowCount(
        protocol=proto,
        saddr=saddr,
        sport=sport,
        daddr=daddr,
        dport=dport,
        sent=counts.sent,
        delivered=max(counts.delivered, 0),
        drops=_drops(counts.drops),
    )


class DropMonitor(dropmon_pb2_grpc.DropMonitorServiceServicer):
    def __init__(self, drops: DropStats) -> None:
        self.drops = drops

    async def SetFlowLedger(
        self, request: dropmon_pb2.SetFlowLedgerRequest, context: grpc.aio.ServicerContext
    ) -> dropmon_pb2.SetFlowLedgerResponse:
        was = self.drops.flows is not None
        self.drops.flows = FlowLedger(request.max_flows or DEFAULT_MAX_FLOWS) if request.enabled else None
        return dropmon_pb2.SetFlowLedgerResponse(was_enabled=was)

    async def GetFlowLedger(
        self, request: dropmon_pb2.GetFlowLedgerRequest, context: grpc.aio.ServicerContext
    ) -> dropmon_pb2.GetFlowLedgerResponse:
        ledger = self.drops.flows
        if ledger is None:
            return dropmon_pb2.GetFlowLedgerResponse(enabled=False)
        return dropmon_pb2.GetFlowLedgerResponse(
            enabled=True,
            flows=[flow_to_proto(key, counts) for key, counts in ledger.flows.items()],
            unattributed=_drops(ledger.unattributed),
            untracked=flow_to_proto(None, ledger.untracked),
        )


def add_to_server(drops: DropStats, server: grpc.aio.Server) -> None:
    dropmon_pb2_grpc.add_DropMonitorServiceServicer_to_server(DropMonitor(drops), server)
