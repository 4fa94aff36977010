"""`stackemu nstat`: iproute2's nstat over a host's SNMP MIBs (the Ip, Icmp, IcmpMsg
and IpExt counters of its IP layer, the Udp and UdpLite counters of its UDP layer).

As nstat, it prints what changed since the last run (a history kept per host in the
stack's state directory), or absolute values with -a; zeros only with -z; the
patterns are shell globs over counter names. The rate column stays 0.0: the
emulator has no sampling daemon (nstat -d)."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from pathlib import Path

from services.core.snmp import NSTAT_USELESS, format_nstat_counters
from stackemu import state
from stackemu.ip.v1 import ip_pb2
from stackemu.tools.common import Ip, Udp, default_host, err, out
from stackemu.udp.v1 import udp_pb2

USAGE = """Usage: stackemu nstat [ --host HOST ] [OPTION] [ PATTERN [ PATTERN ] ]
   -h, --help          this message
   -a, --ignore        ignore history
   -j, --json          format output in JSON
   -n, --nooutput      do history only
   -p, --pretty        pretty print
   -r, --reset         reset history
   -s, --noupdate      don't update history
   -z, --zeros         show entries with zero activity

Examples:
   stackemu nstat -az 'IpFrag*' 'IpReasm*'    fragmentation counters of alice
   stackemu nstat --host bob                  what changed on bob since the last run"""

_LONG = {
    "--ignore": "a",
    "--json": "j",
    "--nooutput": "n",
    "--pretty": "p",
    "--reset": "r",
    "--noupdate": "s",
    "--zeros": "z",
}


def counters(host: str | None) -> dict[str, int]:
    """The host's counters in nstat's order: /proc/net/snmp (Ip, Icmp, IcmpMsg, Udp,
    UdpLite), then /proc/net/netstat (IpExt)."""
    with Ip(host) as ip:
        ip_stats = ip.call("GetStats", ip_pb2.GetStatsRequest())
    with Udp(host) as udp:
        udp_stats = udp.call("GetStats", udp_pb2.GetStatsRequest())
    ip_all = {c.name: c.value for c in ip_stats.counters}
    # A counter both layers keep (IcmpInErrors: the UDP layer counts ICMP errors no
    # socket took) is their sum, as the kernel's one per-netns MIB would hold.
    udp_all = {c.name: c.value for c in udp_stats.counters}
    shared = {k: ip_all[k] + udp_all.pop(k) for k in list(udp_all) if k in ip_all}
    ip_all.update(shared)
    ext = {k: v for k, v in ip_all.items() if k.startswith("IpExt")}
    snmp = {k: v for k, v in ip_all.items() if k not in ext}
    return {**snmp, **udp_all, **ext}


def _history(host: str) -> Path:
    return state.state_dir() / f"nstat-{host}.json"


def main(host: str | None, argv: Sequence[str]) -> int:
    flags: set[str] = set()
    patterns: list[str] = []
    for a in argv:
        if a in ("-h", "--help"):
            out(USAGE)
            return 0
        if a in _LONG:
            flags.add(_LONG[a])
        elif a.startswith("-") and len(a) > 1:
            for c in a[1:]:
                if c not in "ajnprsz":
                    err(f"nstat: invalid option -- '{c}'")
                    err(USAGE)
                    return 255
                flags.add(c)
        else:
            patterns.append(a)
    name = default_host(host)
    now = counters(name)
    path = _history(name)
    old: dict[str, int] = {}
    if "r" not in flags and path.exists():
        old = json.loads(path.read_text())
    shown = now if "a" in flags else {k: v - old.get(k, 0) for k, v in now.items()}
    if patterns:
        shown = {k: v for k, v in shown.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    if "n" not in flags:
        if "j" in flags:
            shown = {k: v for k, v in shown.items() if k not in NSTAT_USELESS and (v or "z" in flags)}
            out(json.dumps({"kernel": shown}, indent=4 if "p" in flags else None))
        else:
            out(format_nstat_counters(shown, zeros="z" in flags).rstrip("\n"))
    if "s" not in flags:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(now))
    return 0
