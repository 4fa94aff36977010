"""`stackemu netstat -s`: net-tools 2.10 netstat's statistics (statistics.c) over a
host's SNMP MIBs, the same counters `stackemu nstat` reads.

netstat reads /proc/net/snmp and /proc/net/netstat line pair by line pair and prints
each value with its table's sentence; this feeds it the emulated files' groups (Ip,
Icmp, IcmpMsg, Udp, UdpLite, then IpExt: the stack has no TCP, so no Tcp or TcpExt).
Its quirks are kept: a title bsearch() does not find in its (not quite sorted) table
is printed as `Name: value` when non-zero (Forwarding, OutTransmits, InCsumErrors,
...), the static values (DefaultTTL) are not printed, the ICMP histogram titles are,
and a group it has no table for (IcmpMsg, UdpLite, IpExt) keeps the indentation of
the line before it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from stackemu.tools import nstat
from stackemu.tools.common import default_host, err, out

USAGE = """usage: stackemu netstat [ --host HOST ] -s [-t|-u|-w] [--json]
        -s, --statistics         display networking statistics (like SNMP)
        -u, --udp                only the Udp groups (and those netstat has no table for)
        -w, --raw                only the Ip and Icmp groups (and those netstat has no table for)
        -t, --tcp                only Tcp (the emulator has none)
        --json                   the groups as JSON objects (the emulator's)

Examples:
        stackemu netstat -s                 every group of alice
        stackemu netstat --host bob -su     bob's Udp counters"""

# statistics.c's enum State and their indents; I_STATIC and I_TITLE are flags.
NUMBER, OPT_NUMBER, I_FORWARD, I_INP_ICMP, I_OUTP_ICMP, I_RTO_ALG = range(6)
I_STATIC = 1 << 16
I_TITLE = 1 << 17
INDENT = {NUMBER: 4, OPT_NUMBER: 4, I_FORWARD: 4, I_INP_ICMP: 8, I_OUTP_ICMP: 8, I_RTO_ALG: 0}
TITLE = {I_INP_ICMP: "ICMP input histogram:", I_OUTP_ICMP: "ICMP output histogram:"}

Entry = tuple[str, str, int]

# Iptab[], Icmptab[], Udptab[] in their source order ("Keep the entries sorted!", but
# "Forwarding" sorts after "ForwDatagrams", so bsearch() misses it).
IPTAB: tuple[Entry, ...] = (
    ("DefaultTTL", "Default TTL is {}", NUMBER | I_STATIC),
    ("Forwarding", "Forwarding is {}", I_FORWARD | I_STATIC),
    ("ForwDatagrams", "{} forwarded", NUMBER),
    ("FragCreates", "{} fragments created", OPT_NUMBER),
    ("FragFails", "{} outgoing packets failed fragmentation", OPT_NUMBER),
    ("FragOKs", "{} outgoing packets fragmented ok", OPT_NUMBER),
    ("InAddrErrors", "{} with invalid addresses", OPT_NUMBER),
    ("InDelivers", "{} incoming packets delivered", NUMBER),
    ("InDiscards", "{} incoming packets discarded", NUMBER),
    ("InHdrErrors", "{} with invalid headers", OPT_NUMBER),
    ("InReceives", "{} total packets received", NUMBER),
    ("InUnknownProtos", "{} with unknown protocol", OPT_NUMBER),
    ("OutDiscards", "{} outgoing packets dropped", OPT_NUMBER),
    ("OutNoRoutes", "{} dropped because of missing route", OPT_NUMBER),
    ("OutRequests", "{} requests sent out", NUMBER),
    ("ReasmFails", "{} packet reassemblies failed", OPT_NUMBER),
    ("ReasmOKs", "{} packets reassembled ok", OPT_NUMBER),
    ("ReasmReqds", "{} reassemblies required", OPT_NUMBER),
    ("ReasmTimeout", "{} fragments dropped after timeout", OPT_NUMBER),
)
ICMPTAB: tuple[Entry, ...] = (
    ("InAddrMaskReps", "address mask replies: {}", I_INP_ICMP | I_TITLE),
    ("InAddrMasks", "address mask request: {}", I_INP_ICMP | I_TITLE),
    ("InDestUnreachs", "destination unreachable: {}", I_INP_ICMP | I_TITLE),
    ("InEchoReps", "echo replies: {}", I_INP_ICMP | I_TITLE),
    ("InEchos", "echo requests: {}", I_INP_ICMP | I_TITLE),
    ("InErrors", "{} input ICMP message failed", NUMBER),
    ("InMsgs", "{} ICMP messages received", NUMBER),
    ("InParmProbs", "wrong parameters: {}", I_INP_ICMP | I_TITLE),
    ("InRedirects", "redirects: {}", I_INP_ICMP | I_TITLE),
    ("InSrcQuenchs", "source quenches: {}", I_INP_ICMP | I_TITLE),
    ("InTimeExcds", "timeout in transit: {}", I_INP_ICMP | I_TITLE),
    ("InTimestampReps", "timestamp reply: {}", I_INP_ICMP | I_TITLE),
    ("InTimestamps", "timestamp request: {}", I_INP_ICMP | I_TITLE),
    ("OutAddrMaskReps", "address mask replies: {}", I_OUTP_ICMP | I_TITLE),
    ("OutAddrMasks", "address mask requests: {}", I_OUTP_ICMP | I_TITLE),
    ("OutDestUnreachs", "destination unreachable: {}", I_OUTP_ICMP | I_TITLE),
    ("OutEchoReps", "echo replies: {}", I_OUTP_ICMP | I_TITLE),
    ("OutEchos", "echo requests: {}", I_OUTP_ICMP | I_TITLE),
    ("OutErrors", "{} ICMP messages failed", NUMBER),
    ("OutMsgs", "{} ICMP messages sent", NUMBER),
    ("OutParmProbs", "wrong parameters: {}", I_OUTP_ICMP | I_TITLE),
    ("OutRedirects", "redirect: {}", I_OUTP_ICMP | I_TITLE),
    ("OutSrcQuenchs", "source quench: {}", I_OUTP_ICMP | I_TITLE),
    ("OutTimeExcds", "time exceeded: {}", I_OUTP_ICMP | I_TITLE),
    ("OutTimestampReps", "timestamp replies: {}", I_OUTP_ICMP | I_TITLE),
    ("OutTimestamps", "timestamp requests: {}", I_OUTP_ICMP | I_TITLE),
)
UDPTAB: tuple[Entry, ...] = (
    ("InDatagrams", "{} packets received", NUMBER),
    ("InErrors", "{} packet receive errors", NUMBER),
    ("NoPorts", "{} packets to unknown port received", NUMBER),
    ("OutDatagrams", "{} packets sent", NUMBER),
    ("RcvbufErrors", "{} receive buffer errors", NUMBER),
    ("SndbufErrors", "{} send buffer errors", NUMBER),
)
# snmptabs[]: the groups netstat has a table for, and the -s flag each needs.
SNMPTABS: dict[str, tuple[tuple[Entry, ...], str]] = {
    "Ip": (IPTAB, "raw"),
    "Icmp": (ICMPTAB, "raw"),
    "Tcp": ((), "tcp"),
    "Udp": (UDPTAB, "udp"),
    "TcpExt": ((), "tcp"),
}
# The groups of the emulated /proc/net/snmp and /proc/net/netstat, longest prefix first
# when splitting nstat's names ("IpExtInOctets" is IpExt's, "IcmpMsgInType3" IcmpMsg's).
GROUPS = ("Ip", "Icmp", "IcmpMsg", "Udp", "UdpLite", "IpExt")
_BY_PREFIX = sorted(GROUPS, key=len, reverse=True)
# icmpmsg_put(): the IcmpMsg line pairs hold 16 types each.
ICMPMSG_PERLINE = 16


def bsearch(tab: Sequence[Entry], title: str) -> Entry | None:
    """glibc bsearch() with strcmp: what it finds in a table, sorted or not."""
    lo, hi = 0, len(tab)
    while lo < hi:
        mid = (lo + hi) // 2
        name = tab[mid][0]
        if title < name:
            hi = mid
        elif title > name:
            lo = mid + 1
        else:
            return tab[mid]
    return None


def groups(counters: dict[str, int]) -> dict[str, dict[str, int]]:
    """nstat's flat names split back into the kernel's groups, in order."""
    out_: dict[str, dict[str, int]] = {g: {} for g in GROUPS}
    for name, value in counters.items():
        group = next((g for g in _BY_PREFIX if name.startswith(g)), None)
        if group is not None:
            out_[group][name[len(group) :]] = value
    return out_


def line_pairs(g: dict[str, dict[str, int]]) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """The line pairs of the emulated /proc/net/snmp then /proc/net/netstat: IcmpMsg
    only for its non-zero types, 16 to a pair, and not at all when there are none."""
    for name in GROUPS:
        items = list(g[name].items())
        if name == "IcmpMsg":
            items = [(k, v) for k, v in items if v]
            for i in range(0, len(items), ICMPMSG_PERLINE):
                yield name, items[i : i + ICMPMSG_PERLINE]
        else:
            yield name, items


@dataclass
class Printer:
    """process_fd() → newtable() and printval(), with statistics.c's one `state`."""

    flags: set[str]
    state: int = NUMBER

    def lines(self, pairs: Iterator[tuple[str, list[tuple[str, int]]]]) -> Iterator[str]:
        for title, items in pairs:
            tab = SNMPTABS.get(title)
            shown = tab is None or tab[1] in self.flags
            if tab is not None:
                if shown:
                    yield f"{title}:"
                self.state = NUMBER
            else:
                yield f"{title}:"
            if not shown:
                continue
            for name, value in items:
                yield from self.printval(tab[0] if tab is not None else (), name, value)

    def printval(self, tab: Sequence[Entry], title: str, val: int) -> Iterator[str]:
        ent = bsearch(tab, title) if tab else None
        if ent is None:
            if val:
                yield f"{' ' * INDENT[self.state]}{title}: {val}"
            return
        _, fmt, kind = ent
        if kind & I_STATIC:
            # print_static is never set: the settings are not printed.
            return
        if not fmt:
            return
        if kind & I_TITLE:
            kind &= ~I_TITLE
            if self.state != kind:
                yield f"{' ' * INDENT[self.state]}{TITLE[kind]}"
        text = ""
        if kind in (NUMBER, OPT_NUMBER):
            if val or kind == NUMBER:
                text = fmt.format(val)
        elif kind in (I_INP_ICMP, I_OUTP_ICMP) and val > 0:
            text = fmt.format(val)
        if text:
            yield f"{' ' * INDENT[kind]}{text}"
        self.state = kind


def statistics(counters: dict[str, int], flags: set[str]) -> list[str]:
    """parsesnmp(): the lines `netstat -s` prints for these counters."""
    return list(Printer(flags).lines(line_pairs(groups(counters))))


def main(host: str | None, argv: Sequence[str]) -> int:
    flags: set[str] = set()
    stats = as_json = False
    for a in argv:
        if a in ("-h", "--help"):
            out(USAGE)
            return 0
        if a == "--json":
            as_json = True
        elif a == "--statistics":
            stats = True
        elif a in ("--udp", "--raw", "--tcp"):
            flags.add(a[2:])
        elif a.startswith("-") and not a.startswith("--") and len(a) > 1:
            for c in a[1:]:
                if c == "s":
                    stats = True
                elif c in "uwt":
                    flags.add({"u": "udp", "w": "raw", "t": "tcp"}[c])
                else:
                    err(f"netstat: invalid option -- '{c}'")
                    err(USAGE)
                    return 1
        else:
            err(f"netstat: the emulator has no '{a}'")
            err(USAGE)
            return 1
    if not stats:
        err("netstat: the emulator has -s (statistics) only")
        err(USAGE)
        return 1
    if not flags:
        flags = {"raw", "tcp", "udp"}
    counters = nstat.counters(default_host(host))
    if as_json:
        out(json.dumps(groups(counters), indent=2))
        return 0
    for line in statistics(counters, flags):
        out(line)
    return 0
