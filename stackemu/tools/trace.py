"""`stackemu trace`: one packet's journey through the emulated stack, as a timeline.

Each NIC, IP and UDP service keeps the traces of the skbs that passed it in a ring
(services/core/trace.py; GetTraces reads it). An entry holds the steps as far as the
skb had come when it left that service, the earlier services' included, so a packet's
journey is the longest entry that starts with its first step; the entries are gathered
from every service of the hosts asked about and merged that way. A wire carries the
trace with the frame, so alice → bob is one journey from udp_sendmsg to udp_recvmsg.

What is traced: a send that asks (SendMsgRequest.trace, the drop-in's sock.emu_trace,
the socket option SO_EMU_TRACE), every packet an iptables TRACE rule matches (raw
table: `stackemu iptables -t raw -A PREROUTING -p udp --dport 9000 -j TRACE`), and one
skb in N where skbs enter (udp_sendmsg, the NIC's receive) with `--sample N` (the
sysctl net.core.emu_trace_sample).

`--flow` takes a tcpdump filter expression, compiled by libpcap (`tcpdump -y RAW
-dd`) and run on the packet's IPv4 and UDP headers. `--export FILE` writes the
Chrome trace-event JSON that Perfetto (ui.perfetto.dev) and chrome://tracing open:
one process per host, one thread per service, a complete ("X") event per step
lasting until the next step, and an instant ("i") event for the last.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from services.core.bpf import AncillaryData, BpfProg, bpf_prepare_filter, parse_tcpdump_dd, run_filter
from services.core.skbuff import TraceStep, trace_from_proto
from services.core.trace import SAMPLE_SYSCTL
from stackemu import state
from stackemu.ip.v1 import ip_pb2
from stackemu.nic.v1 import nic_pb2
from stackemu.tools.common import Ip, Nic, Service, Udp, default_host, err, fail, out
from stackemu.udp.v1 import udp_pb2

USAGE = """\
Usage: stackemu trace [--host HOST] [--last N] [--flow FILTER] [--export FILE]
       stackemu trace [--host HOST] --sample N

Shows the newest traced packet's journey (--last N: the N newest), one line per
kernel function: microseconds since its first step, host, service, function.
  --host HOST      only this host's services (default: every host of the stack)
  --last N         the N newest journeys (default 1)
  --flow FILTER    only packets a tcpdump filter matches ('udp dst port 9000')
  --export FILE    also write them as Chrome trace-event JSON (Perfetto opens it)
  --sample N       trace 1 packet in N where packets enter (0: stop); on --host,
                   or every host
  --json           the journeys as JSON instead of the timeline

Examples:
  stackemu iptables --host bob -t raw -A PREROUTING -p udp --dport 9000 -j TRACE
  stackemu trace --host bob --flow 'udp dst port 9000'
  stackemu trace --sample 100 && stackemu trace --last 3 --export trace.json"""

# The services that keep a trace ring, in the order a datagram goes down.
SERVICES: tuple[tuple[str, type[Service], Any], ...] = (
    ("udp", Udp, udp_pb2),
    ("ip", Ip, ip_pb2),
    ("nic", Nic, nic_pb2),
)
# Chrome trace-event thread ids, a datagram's order on the way up.
_TIDS = {"nic": 1, "ip": 2, "udp": 3, "socket": 4}


@dataclass(slots=True)
class Journey:
    """One packet's trace: its steps and, when some service saw them, its IPv4 and
    UDP headers."""

    steps: list[TraceStep]
    headers: bytes = b""

    @property
    def start_ns(self) -> int:
        return self.steps[0].ts_ns


def merge(entries: Iterable[tuple[list[TraceStep], bytes]]) -> list[Journey]:
    """The journeys in ring entries, oldest first: entries that begin with the same
    step are one packet, whose journey is the longest of them."""
    by_first: dict[tuple[str, str, str, int], Journey] = {}
    for steps, headers in entries:
        if not steps:
            continue
        first = steps[0]
        key = (first.func, first.service, first.host, first.ts_ns)
        j = by_first.get(key)
        if j is None:
            by_first[key] = Journey(list(steps), headers)
            continue
        if len(steps) > len(j.steps):
            j.steps = list(steps)
        if headers and not j.headers:
            j.headers = headers
    return sorted(by_first.values(), key=lambda j: j.start_ns)


def compile_flow(expr: str) -> BpfProg:
    """libpcap's program for a tcpdump expression over raw IPv4 packets."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        fail(1, "stackemu trace: --flow needs tcpdump (libpcap) to compile the filter")
    r = subprocess.run([tcpdump, "-y", "RAW", "-dd", expr], capture_output=True, text=True, check=False)
    if r.returncode:
        fail(1, f"stackemu trace: bad --flow filter: {r.stderr.strip()}")
    return bpf_prepare_filter(parse_tcpdump_dd(r.stdout))


def flow_matches(prog: BpfProg, headers: bytes) -> bool:
    if not headers:
        return False
    anc = AncillaryData(protocol=0x0800)
    return run_filter(prog, headers, 0, len(headers), 0, None, anc) != 0


def describe(headers: bytes) -> str:
    """A tcpdump-like line for the packet: `UDP 10.0.0.1.40000 > 10.0.0.2.9000, length 5`."""
    if len(headers) < 20:
        return "(headers not seen)"
    ihl = (headers[0] & 0x0F) * 4
    src = ".".join(map(str, headers[12:16]))
    dst = ".".join(map(str, headers[16:20]))
    proto = headers[9]
    frag = int.from_bytes(headers[6:8], "big") & 0x1FFF
    if proto in (17, 136) and not frag and len(headers) >= ihl + 8:
        sport = int.from_bytes(headers[ihl : ihl + 2], "big")
        dport = int.from_bytes(headers[ihl + 2 : ihl + 4], "big")
        if proto == 17:
            length = int.from_bytes(headers[ihl + 4 : ihl + 6], "big") - 8
            return f"UDP {src}.{sport} > {dst}.{dport}, length {length}"
        # UDP-Lite's length field is its checksum coverage.
        return f"UDP-Lite {src}.{sport} > {dst}.{dport}"
    return f"IP {src} > {dst}, proto {proto}"


def timeline(j: Journey) -> list[str]:
    """One line per step: +microseconds since the first step, host, service, function."""
    t0 = j.start_ns
    return [f"  {(s.ts_ns - t0) / 1000:+10.1f} us  {s.host:<6} {s.service:<4} {s.func}" for s in j.steps]


def chrome_trace(journeys: Sequence[Journey]) -> dict[str, Any]:
    """The Chrome trace-event format (JSON object form): pid per host, tid per service,
    an "X" event per step lasting until the packet's next step, "i" for its last;
    timestamps in microseconds from the first journey's first step."""
    hosts = sorted({s.host for j in journeys for s in j.steps})
    pids = {h: i for i, h in enumerate(hosts, 1)}
    events: list[dict[str, Any]] = []
    for h in hosts:
        events.append({"name": "process_name", "ph": "M", "pid": pids[h], "tid": 0, "args": {"name": h}})
        for service in sorted({s.service for j in journeys for s in j.steps if s.host == h}, key=_tid):
            events.append(
                {
                    "name": "thread_name",
                    "ph": "M",
                    "pid": pids[h],
                    "tid": _tid(service),
                    "args": {"name": service},
                }
            )
    t0 = journeys[0].start_ns if journeys else 0
    for n, j in enumerate(journeys, 1):
        packet = describe(j.headers)
        for i, s in enumerate(j.steps):
            ev: dict[str, Any] = {
                "name": s.func,
                "cat": "packet",
                "ts": (s.ts_ns - t0) / 1000,
                "pid": pids[s.host],
                "tid": _tid(s.service),
                "args": {"packet": n, "flow": packet},
            }
            if i + 1 < len(j.steps):
                ev["ph"] = "X"
                ev["dur"] = (j.steps[i + 1].ts_ns - s.ts_ns) / 1000
            else:
                ev["ph"] = "i"
                ev["s"] = "t"
            events.append(ev)
    return {"traceEvents": events, "displayTimeUnit": "ns"}


def _tid(service: str) -> int:
    return _TIDS.get(service, len(_TIDS) + 1)


def collect(hosts: Sequence[str], last: int = 0) -> list[Journey]:
    """Every service's ring on these hosts, merged into journeys."""
    entries: list[tuple[list[TraceStep], bytes]] = []
    for host in hosts:
        for _, cls, pb in SERVICES:
            with cls(host) as svc:
                resp = svc.call("GetTraces", pb.GetTracesRequest(last=last))
            entries.extend((trace_from_proto(t.steps), t.headers) for t in resp.traces)
    return merge(entries)


def set_sample(hosts: Sequence[str], n: int) -> int:
    """net.core.emu_trace_sample on each host's NIC and UDP services (the two places
    skbs enter)."""
    for host in hosts:
        for cls, pb in ((Nic, nic_pb2), (Udp, udp_pb2)):
            with cls(host) as svc:
                resp = svc.call("SetSysctl", pb.SetSysctlRequest(name=SAMPLE_SYSCTL, value=str(n)))
            if resp.errno:
                fail(1, f"stackemu trace: {host} {cls.layer}: {SAMPLE_SYSCTL}: {resp.message}")
    out(f"{SAMPLE_SYSCTL} = {n} on {', '.join(hosts)}")
    return 0


def _hosts(host: str | None) -> list[str]:
    if host:
        return [host]
    data = state.load()
    if data is None:
        return [default_host(None)]
    return list(data["hosts"])


def _int_arg(name: str, value: str | None) -> int:
    if value is None or not value.isdigit():
        fail(2, f"stackemu trace: {name} takes a number", USAGE)
    return int(value)


def main(host: str | None, argv: Sequence[str]) -> int:
    last, flow, export, sample, as_json = 1, "", "", None, False
    args = list(argv)
    while args:
        a = args.pop(0)
        if a in ("-h", "--help"):
            out(USAGE)
            return 0
        if a == "--json":
            as_json = True
            continue
        if a not in ("--last", "--flow", "--export", "--sample"):
            fail(2, f"stackemu trace: unknown argument {a!r}", USAGE)
        if not args:
            fail(2, f"stackemu trace: {a} needs a value", USAGE)
        v = args.pop(0)
        if a == "--last":
            last = _int_arg(a, v)
        elif a == "--flow":
            flow = v
        elif a == "--export":
            export = v
        else:
            sample = _int_arg(a, v)
    hosts = _hosts(host)
    if sample is not None:
        return set_sample(hosts, sample)
    prog = compile_flow(flow) if flow else None
    journeys = collect(hosts)
    if prog is not None:
        journeys = [j for j in journeys if flow_matches(prog, j.headers)]
    journeys = journeys[-last:] if last else journeys
    if export:
        with open(export, "w") as f:
            json.dump(chrome_trace(journeys), f, indent=1)
    if as_json:
        out(json.dumps([_journey_json(j) for j in journeys], indent=2))
        return 0
    if not journeys:
        err("no traced packet" + (" matches the filter" if flow else "") + ": trace some first (see --help)")
        return 1
    for n, j in enumerate(journeys, 1):
        if n > 1:
            out()
        span = (j.steps[-1].ts_ns - j.start_ns) / 1000
        out(f"packet {n}/{len(journeys)}: {describe(j.headers)}: {len(j.steps)} steps in {span:.1f} us")
        for line in timeline(j):
            out(line)
    if export:
        out(f"\nwrote {len(journeys)} journey(s) to {export} (open it in ui.perfetto.dev)")
    return 0


def _journey_json(j: Journey) -> dict[str, Any]:
    return {
        "packet": describe(j.headers),
        "steps": [{"func": s.func, "service": s.service, "host": s.host, "ts_ns": s.ts_ns} for s in j.steps],
    }
