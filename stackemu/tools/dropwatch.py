"""`stackemu dropwatch`: the kernel's drop monitor (dropwatch, net/core/drop_monitor.c)
over the emulated stack, and the emulator's per-flow conservation check.

Live, it polls the drops every layer's service counts (GetStats: SKB_DROP_REASON_*
and the dropping function, as the skb:kfree_skb tracepoint reports them) and prints
what is new each interval, as dropwatch -l kas prints "N drops at LOCATION": here
"N drops at LOCATION (REASON) [SERVICE HOST]". --summary adds the totals per reason and
per location, since dropwatch started and since the stack did.

--flows on|off switches every service's per-flow ledger (services.core.flowledger);
--check then reads them all and prints, per UDP flow (5-tuple), the datagrams sent,
delivered and dropped (by reason, location and service), and whether
sent = delivered + dropped; it exits 1 if any flow does not balance."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from services.core.flowledger import FlowKey
from stackemu import state
from stackemu.ip.v1 import ip_pb2
from stackemu.nic.v1 import nic_pb2
from stackemu.skb.v1 import dropmon_pb2, dropmon_pb2_grpc
from stackemu.tools.common import Ip, Nic, Service, Udp, default_host, err, has_service, out
from stackemu.udp.v1 import udp_pb2

# The layers that count drops, in the order a received packet meets them.
LAYERS = ("nic", "ip", "udp")
_STATS: dict[str, tuple[type[Service], Any]] = {
    "nic": (Nic, nic_pb2.GetStatsRequest),
    "ip": (Ip, ip_pb2.GetStatsRequest),
    "udp": (Udp, udp_pb2.GetStatsRequest),
}
_PROTO_NAMES = {17: "udp", 136: "udplite"}

# (host, service, reason, location)
DropKey = tuple[str, str, str, str]


class DropMon(Service):
    """A host's DropMonitorService, served next to the layer's own service."""

    def __init__(self, layer: str, host: str | None) -> None:
        self.layer = layer
        self.title = f"{layer.upper()} drop monitor"
        super().__init__(host)

    def make_stub(self, channel: grpc.Channel) -> Any:
        return dropmon_pb2_grpc.DropMonitorServiceStub(channel)


@dataclass
class Options:
    hosts: tuple[str, ...] = ()
    lookup: str = "kas"
    interval: float = 1.0
    count: int | None = None
    as_json: bool = False
    summary: bool = False
    flows: str | None = None
    check: bool = False


def stack_hosts(hosts: Sequence[str]) -> list[str]:
    """The hosts named, else every host of the running stack."""
    if hosts:
        return list(hosts)
    data = state.load()
    if data is None:
        return [default_host(None)]
    return list(data.get("hosts", {}))


def _services(hosts: Sequence[str]) -> list[tuple[str, str]]:
    return [(h, layer) for h in hosts for layer in LAYERS if has_service(layer, h)]


def snapshot(hosts: Sequence[str]) -> dict[DropKey, int]:
    """Every drop counter of the hosts' layers, since the stack started."""
    counts: dict[DropKey, int] = {}
    for host, layer in _services(hosts):
        cls, request = _STATS[layer]
        with cls(host) as svc:
            resp = svc.call("GetStats", request())
        for d in resp.drops:
            counts[(host, layer, d.reason, d.location)] = d.count
    return counts


def diff(before: dict[DropKey, int], after: dict[DropKey, int]) -> dict[DropKey, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def _short(reason: str) -> str:
    return reason.removeprefix("SKB_DROP_REASON_")


def live_line(key: DropKey, n: int) -> str:
    host, layer, reason, location = key
    return f"{n} drops at {location} ({reason}) [{layer} {host}]"


def totals(counts: dict[DropKey, int]) -> dict[str, dict[str, int]]:
    """Sums per reason and per location (LOCATION [SERVICE HOST]), largest first."""
    by_reason: dict[str, int] = {}
    by_location: dict[str, int] = {}
    for (host, layer, reason, location), n in counts.items():
        by_reason[reason] = by_reason.get(reason, 0) + n
        where = f"{location} [{layer} {host}]"
        by_location[where] = by_location.get(where, 0) + n

    def ordered(d: dict[str, int]) -> dict[str, int]:
        return dict(sorted(d.items(), key=lambda kv: (-kv[1], kv[0])))

    return {
        "total": {"drops": sum(counts.values())},
        "by_reason": ordered(by_reason),
        "by_location": ordered(by_location),
    }


def _print_totals(title: str, t: dict[str, dict[str, int]]) -> None:
    out(f"{title}: {t['total']['drops']} drops")
    for reason, n in t["by_reason"].items():
        out(f"  {n:>8}  {reason}")
    for where, n in t["by_location"].items():
        out(f"  {n:>8}  at {where}")


def monitor(opts: Options, sleep: Callable[[float], None] = time.sleep) -> int:
    hosts = stack_hosts(opts.hosts)
    start = snapshot(hosts)
    last = start
    if not opts.as_json:
        out(f"Initializing {opts.lookup} lookup method")
        out("Kernel monitoring activated.")
        if opts.count is None:
            out("Issue Ctrl-C to stop monitoring")
    done = 0
    try:
        while opts.count is None or done < opts.count:
            sleep(opts.interval)
            now = snapshot(hosts)
            for key, n in diff(last, now).items():
                if opts.as_json:
                    host, layer, reason, location = key
                    row = {"host": host, "service": layer, "reason": reason, "location": location}
                    out(json.dumps({**row, "count": n}))
                else:
                    out(live_line(key, n))
            last = now
            done += 1
    except KeyboardInterrupt:
        pass
    if opts.summary:
        since_start, since_boot = totals(diff(start, last)), totals(last)
        if opts.as_json:
            out(json.dumps({"since_start": since_start, "since_stack_start": since_boot}, indent=2))
        else:
            _print_totals("Since dropwatch started", since_start)
            _print_totals("Since the stack started", since_boot)
    return 0


def set_flows(hosts: Sequence[str], enabled: bool) -> None:
    for host, layer in _services(hosts):
        with DropMon(layer, host) as svc:
            svc.call("SetFlowLedger", dropmon_pb2.SetFlowLedgerRequest(enabled=enabled))


def ledgers(hosts: Sequence[str]) -> list[tuple[str, str, dropmon_pb2.GetFlowLedgerResponse]]:
    result = []
    for host, layer in _services(hosts):
        with DropMon(layer, host) as svc:
            result.append((host, layer, svc.call("GetFlowLedger", dropmon_pb2.GetFlowLedgerRequest())))
    return result


@dataclass
class FlowReport:
    key: FlowKey
    sent: int = 0
    delivered: int = 0
    # (reason, location, service, host) -> datagrams
    drops: dict[tuple[str, str, str, str], int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    @property
    def balanced(self) -> bool:
        return self.sent == self.delivered + self.dropped

    def name(self) -> str:
        proto, saddr, sport, daddr, dport = self.key
        src, dst = ipaddress.IPv4Address(saddr), ipaddress.IPv4Address(daddr)
        return f"{_PROTO_NAMES.get(proto, str(proto))} {src}:{sport} > {dst}:{dport}"

    def to_json(self) -> dict[str, Any]:
        proto, saddr, sport, daddr, dport = self.key
        return {
            "protocol": _PROTO_NAMES.get(proto, str(proto)),
            "saddr": str(ipaddress.IPv4Address(saddr)),
            "sport": sport,
            "daddr": str(ipaddress.IPv4Address(daddr)),
            "dport": dport,
            "sent": self.sent,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "balanced": self.balanced,
            "drops": [
                {"reason": r, "location": loc, "service": svc, "host": h, "count": n}
                for (r, loc, svc, h), n in self.drops.items()
            ],
        }


@dataclass
class Conservation:
    flows: list[FlowReport]
    # (reason, location, service, host) -> drops no flow could be named for
    unattributed: dict[tuple[str, str, str, str], int]
    untracked: int
    off: list[str]

    @property
    def ok(self) -> bool:
        return not self.off and not self.untracked and all(f.balanced for f in self.flows)


def conservation(answers: Sequence[tuple[str, str, dropmon_pb2.GetFlowLedgerResponse]]) -> Conservation:
    """One stack-wide view: a flow's sent (its sender's UDP layer), delivered (its
    receiver's) and the drops of every layer of every host in between."""
    flows: dict[FlowKey, FlowReport] = {}
    unattributed: dict[tuple[str, str, str, str], int] = {}
    untracked = 0
    off = []
    for host, layer, resp in answers:
        if not resp.enabled:
            off.append(f"{layer} {host}")
            continue
        for f in resp.flows:
            key = (f.protocol, f.saddr, f.sport, f.daddr, f.dport)
            report = flows.setdefault(key, FlowReport(key))
            report.sent += f.sent
            report.delivered += f.delivered
            for d in f.drops:
                k = (d.reason, d.location, layer, host)
                report.drops[k] = report.drops.get(k, 0) + d.count
        for d in resp.unattributed:
            k = (d.reason, d.location, layer, host)
            unattributed[k] = unattributed.get(k, 0) + d.count
        u = resp.untracked
        untracked += u.sent + u.delivered + sum(d.count for d in u.drops)
    ordered = sorted(flows.values(), key=lambda r: r.key)
    return Conservation(ordered, unattributed, untracked, off)


def print_check(c: Conservation, as_json: bool) -> None:
    if as_json:
        doc = {
            "flows": [f.to_json() for f in c.flows],
            "unattributed": [
                {"reason": r, "location": loc, "service": svc, "host": h, "count": n}
                for (r, loc, svc, h), n in c.unattributed.items()
            ],
            "untracked": c.untracked,
            "ledger_off": c.off,
            "balanced": c.ok,
        }
        out(json.dumps(doc, indent=2))
        return
    width = max([len("FLOW"), *(len(f.name()) for f in c.flows)])
    out(f"{'FLOW':<{width}}  {'SENT':>8} {'DELIVERED':>9} {'DROPPED':>8}  BALANCE")
    for f in c.flows:
        verdict = "ok" if f.balanced else f"MISSING {f.sent - f.delivered - f.dropped:+d}"
        out(f"{f.name():<{width}}  {f.sent:>8} {f.delivered:>9} {f.dropped:>8}  {verdict}")
        for (reason, location, layer, host), n in f.drops.items():
            out(f"    {n} drops at {location} ({reason}) [{layer} {host}]")
    if c.unattributed:
        out(f"unattributed: {sum(c.unattributed.values())} drops (no flow could be told from the packet)")
        for (reason, location, layer, host), n in c.unattributed.items():
            out(f"    {n} drops at {location} ({reason}) [{layer} {host}]")
    if c.untracked:
        err(f"dropwatch: {c.untracked} datagrams of flows past the ledger's bound were not tracked")
    if c.off:
        err(f"dropwatch: the flow ledger is off on {', '.join(c.off)}: `stackemu dropwatch --flows on`")
    if not c.flows and not c.off:
        out("(no flows since the ledger was switched on)")


def main(opts: Options) -> int:
    hosts = stack_hosts(opts.hosts)
    if opts.flows is not None:
        set_flows(hosts, opts.flows == "on")
        if not opts.as_json:
            out(f"flow ledger {opts.flows} on {', '.join(hosts)}")
        if not opts.check and opts.count is None and not opts.summary:
            return 0
    if opts.check:
        c = conservation(ledgers(hosts))
        print_check(c, opts.as_json)
        return 0 if c.ok else 1
    return monitor(opts)
