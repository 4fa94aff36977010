"""The `stackemu` command."""

from __future__ import annotations

import json
import sys

import click

from services.core.config import ConfigError
from stackemu import launcher, state
from stackemu.bench.command import bench
from stackemu.tools.common import Progress, colour, run_tool


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The Linux UDP/IPv4 stack, emulated as four gRPC services per host.

    \b
    Examples:
      stackemu up          start hosts alice and bob
      stackemu demo        send a datagram through every layer and show its path
      stackemu status      every service's address and health
      stackemu down        stop everything

    \b
    The NIC layer's tools, shaped like the real ones (--host NAME, or HOST:DEV):
      stackemu ip -s link show eth0            stackemu ip neigh
      stackemu ethtool -k eth0                 stackemu tc qdisc show dev eth0
      stackemu sysctl net.core.netdev_budget   stackemu tcpdump -i bob:eth0 -w x.pcap
      stackemu hwstamp_ctl -i eth0 -t 1 -r 1

    \b
    The read commands print JSON too: ip -j, tc -j, iptables -L --json, ss --json,
    nstat -j, netstat -s --json, sysctl --json, ethtool --json -S,
    softnet_stat --json, status --json, trace --json, dropwatch --json.
    Colours only on a terminal, and never with NO_COLOR set.
    """


@main.command()
@click.option(
    "--base-port", type=int, default=None, help="First TCP port (default 50100 or STACKEMU_BASE_PORT)."
)
@click.option(
    "--tap",
    metavar="NAME",
    default=None,
    help="Attach alice's eth1 (10.99.0.2/24) to a TAP device NAME whose kernel side "
    "(10.99.0.1/24) lives in a new network namespace NAME (root only).",
)
def up(base_port: int | None, tap: str | None) -> None:
    """Start the default topology (alice and bob, eth0 joined by a wire) as local processes.

    \b
    A line per service as it answers its health check SERVING; on a terminal a
    spinner below them names the services still awaited.

    \b
    Examples:
      stackemu up                        alice on ports 50100-50103, bob on 50110-50113
      stackemu up --base-port 40000      another range, for a second stack
      sudo stackemu up --tap tap0        alice's eth1 reaches the kernel through tap0
    """
    _refuse_external()
    progress = Progress()
    total = 0

    def serving(name: str, svc: dict[str, str]) -> None:
        nonlocal total
        total += 1
        progress.line(f"{name:<13} {colour('SERVING', 'green')}  {svc['addr']}  pid {svc['pid']}")

    def waiting(pending: list[str]) -> None:
        progress.spin(f"{total} SERVING, waiting for {' '.join(pending)}")

    try:
        launcher.up(base_port, log=progress.line, tap=tap, on_serving=serving, on_wait=waiting)
    except launcher.LaunchError as err:
        raise click.ClickException(str(err)) from None
    finally:
        progress.done()
    click.echo(f"stack is up ({state.state_file()}); stop it with `stackemu down`")


@main.command()
def down() -> None:
    """Stop every service of the running stack (SIGTERM, then SIGKILL after 5 s).

    \b
    Example:
      stackemu down
    """
    _refuse_external()
    if not launcher.down(log=click.echo):
        click.echo("no stack is running")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Show every service's address, pid, restarts and health; exit 1 unless all are SERVING.

    \b
    RESTARTS counts the times `stackemu up`'s supervisor started the service again
    after it ended (restart: unless-stopped); its log is logs/supervise.log.

    \b
    Examples:
      stackemu status
      stackemu status --json | jq -r '.[] | select(.health != "SERVING") | .service'
    """
    try:
        rows = _external_status() if state.external_file() else launcher.status()
    except ConfigError as err:
        # Half-set STACKEMU_TLS_*, an unreadable certificate: the health checks cannot dial.
        raise click.ClickException(str(err)) from None
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no stack is running; start one with `stackemu up`")
        sys.exit(1)
    width = max(17, *(len(r["addr"]) for r in rows))
    mwidth = max(17, *(len(r.get("metrics", "-")) for r in rows))
    click.echo(
        f"{'HOST':<7} {'SERVICE':<8} {'ADDRESS':<{width}} {'METRICS':<{mwidth}} {'PID':<8} "
        f"{'RESTARTS':<8} HEALTH"
    )
    for r in rows:
        click.echo(
            f"{r['host']:<7} {r['service']:<8} {r['addr']:<{width}} {r.get('metrics', '-'):<{mwidth}} "
            f"{r['pid']:<8} {r.get('restarts', '-'):<8} "
            f"{colour(r['health'], 'green' if r['health'] == 'SERVING' else 'red')}"
        )
    if any(r["health"] != "SERVING" for r in rows):
        sys.exit(1)


def _refuse_external() -> None:
    """A stack named by STACKEMU_STACK_FILE is run by something else (docker compose):
    its pids are not ours to signal, and its file is not ours to write."""
    named = state.external_file()
    if named is not None:
        raise click.ClickException(
            f"STACKEMU_STACK_FILE={named} names a stack that `stackemu up` did not start; "
            "manage it with what started it (`docker compose up/down` for compose/stack.json), "
            "or unset STACKEMU_STACK_FILE"
        )


def _external_status() -> list[dict[str, str]]:
    """launcher.status() for a stack file without pids: health only."""
    data = state.load()
    if data is None:
        return []
    return [
        {
            "host": name,
            "service": layer,
            "addr": svc["addr"],
            **({"metrics": svc["metrics"]} if "metrics" in svc else {}),
            "pid": "-",
            "health": launcher.health(svc["addr"]),
        }
        for name, host in data["hosts"].items()
        for layer, svc in host.items()
    ]


@main.command()
@click.option("--host", default=None, help="Host to send from (default STACKEMU_HOST or alice).")
def demo(host: str | None) -> None:
    """Send datagrams to the other host and show one's journey through every layer,
    the cmsgs it came with (a receive timestamp, IP_PKTINFO) and the counters that
    moved (with a netfilter rule counting them on the receiver).

    \b
    Examples:
      stackemu demo                 alice sends to bob
      stackemu demo --host bob      bob sends to alice
    """
    from stackemu.demo import run

    try:
        run(host, click.echo)
    except state.NoStack as err:
        raise click.ClickException(str(err)) from None


main.add_command(bench)


# The tools parse their own arguments the way the real ones do; only --host is click's.
_TOOL = {"ignore_unknown_options": True, "help_option_names": ["--help"]}
_HOST_HELP = "Host whose NIC to use (default STACKEMU_HOST or alice); HOST:DEV names one too."


@main.command(context_settings=_TOOL)
@click.option("--host", default=None, help="Only this host's services (default: every host).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def trace(host: str | None, args: tuple[str, ...]) -> None:
    """One packet's journey through the layers: a timeline of kernel functions.

    \b
    stackemu trace [--host H] [--last N] [--flow FILTER] [--export FILE] [--json]
    stackemu trace [--host H] --sample N

    \b
    Examples:
      stackemu iptables --host bob -t raw -A PREROUTING -p udp --dport 9000 -j TRACE
      stackemu trace --host bob --flow 'udp dst port 9000'
      stackemu trace --sample 100             trace 1 packet in 100 (0: stop)
      stackemu trace --last 3 --export trace.json   Chrome trace JSON for Perfetto
    `stackemu trace -h` prints the full help.
    """
    from stackemu.tools import trace as tool

    run_tool(tool.main, host, args)


@main.command(context_settings=_TOOL)
@click.option("--host", default=None, help=_HOST_HELP)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ip(host: str | None, args: tuple[str, ...]) -> None:
    """iproute2's `ip link`, `ip neigh`, `ip addr`, `ip route` and `ip rule` on an
    emulated host; -j (-json, --json) prints iproute2's JSON, -p pretty-prints it.

    \b
    stackemu ip [-s[tatistics]] [-j [-p]] link [show [dev] [HOST:]DEV] [up]
    stackemu ip link set [dev] [HOST:]DEV [up|down] [mtu N] [promisc on|off]
                         [txqueuelen N] [rps_cpus HEXMASK]
    stackemu ip neigh [show] [dev DEV] [nud STATE] [PREFIX]
    stackemu ip neigh add|replace|change ADDR lladdr MAC dev DEV
                         [nud permanent|reachable|stale|noarp]
    stackemu ip neigh del ADDR dev DEV
    stackemu ip neigh flush dev DEV | all
    stackemu ip [-j [-p]] addr|route|rule [show ...]     (`stackemu ip route help`)
    stackemu ip [-j] route get ADDR [from ADDR] [iif DEV] [oif DEV] [mark N] [tos T]

    \b
    Examples:
      stackemu ip -s link show bob:eth0          bob's eth0 and its counters
      stackemu ip --host bob neigh
      stackemu ip -j route | jq -r '.[].dst'
      stackemu ip -j -p -s addr show dev eth0
      stackemu ip route add 192.0.2.0/24 via 10.0.0.2
      stackemu ip link set eth0 mtu 9000

    \b
    rps_cpus is the emulator's stand-in for writing the hex CPU mask to
    /sys/class/net/DEV/queues/rx-0/rps_cpus (Receive Packet Steering):
    `stackemu ip link set eth0 rps_cpus 3` spreads eth0's receive work over CPUs 0-1.
    """
    from stackemu.tools import iproute

    run_tool(iproute.main, host, args)


@main.command(context_settings=_TOOL)
@click.option("--host", default=None, help=_HOST_HELP)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def tc(host: str | None, args: tuple[str, ...]) -> None:
    """iproute2's `tc qdisc` for the root netem qdisc of an emulated device.

    \b
    stackemu tc [-s] [-j [-p]] qdisc show [dev [HOST:]DEV]
    stackemu tc qdisc add|replace|change dev DEV root netem [limit N]
        [delay TIME [JITTER]] [loss PCT] [duplicate PCT] [reorder PCT [gap N]]
        [corrupt PCT] [rate RATE] [seed N]
    stackemu tc qdisc del dev DEV root

    \b
    TIME is tc's: 10ms, 100us, 1s (a bare number is microseconds). PCT is a
    percentage, 5% or 5. RATE is tc's: bit kbit mbit gbit (and Kibit...) are bits
    per second, Bps KBps MBps GBps are BYTES per second.

    \b
    Examples:
      stackemu tc qdisc add dev eth0 root netem delay 10ms 2ms loss 1%
      stackemu tc -s qdisc show dev bob:eth0
      stackemu tc qdisc del dev eth0 root
    """
    from stackemu.tools import tc as tool

    run_tool(tool.main, host, args)


@main.command(context_settings=_TOOL)
@click.option("--host", default=None, help=_HOST_HELP)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ethtool(host: str | None, args: tuple[str, ...]) -> None:
    """ethtool on an emulated device.

    \b
    stackemu ethtool [HOST:]DEV                     link detected yes/no
    stackemu ethtool -g|--show-ring DEV
    stackemu ethtool -G|--set-ring DEV [rx N] [tx N]
    stackemu ethtool -c|--show-coalesce DEV
    stackemu ethtool -C|--coalesce DEV [rx-usecs N] [rx-frames N]
    stackemu ethtool -k|--show-features DEV
    stackemu ethtool -K|--features DEV NAME on|off ...
    stackemu ethtool -S|--statistics DEV
    stackemu ethtool -T|--show-time-stamping DEV
    stackemu ethtool --json -S DEV                 the statistics as JSON

    \b
    Examples:
      stackemu ethtool -S bob:eth0
      stackemu ethtool -K eth0 rx-gro off
      stackemu ethtool -G eth0 rx 64
    """
    from stackemu.tools import ethtool as tool

    run_tool(tool.main, host, args)


@main.command(name="hwstamp_ctl", context_settings=_TOOL)
@click.option("--host", default=None, help=_HOST_HELP)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def hwstamp_ctl(host: str | None, args: tuple[str, ...]) -> None:
    """linuxptp's hwstamp_ctl: a device's hardware time stamping (SIOCSHWTSTAMP).

    \b
    stackemu hwstamp_ctl -i [HOST:]DEV [-t 0|1] [-r 0..14]

    \b
    Examples:
      stackemu hwstamp_ctl -i eth0                  the current settings
      stackemu hwstamp_ctl -i bob:eth0 -t 1 -r 1    stamp every frame, both ways
    """
    from stackemu.tools import hwstamp

    run_tool(hwstamp.main, host, args)


@main.command(context_settings=_TOOL)
@click.option("--host", default=None, help=_HOST_HELP)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sysctl(host: str | None, args: tuple[str, ...]) -> None:
    """procps sysctl over every layer's sysctls (NIC, IP, UDP and socket layers).

    \b
    stackemu sysctl [-n] [-N] [-e] [--json] NAME ...
    stackemu sysctl -a [--json]
    stackemu sysctl [-q] -w NAME=VALUE ...

    \b
    Examples:
      stackemu sysctl -a                              every sysctl of alice
      stackemu sysctl --host bob net.core.rmem_default
      stackemu sysctl -w net.ipv4.udp_rmem_min=8192
    """
    from stackemu.tools import sysctl as tool

    run_tool(tool.main, host, args)


@main.command(context_settings=_TOOL)
@click.option("--host", default=None, help=_HOST_HELP)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def tcpdump(host: str | None, args: tuple[str, ...]) -> None:
    """tcpdump on an emulated device's packet taps, or between two layers.

    \b
    stackemu tcpdump [-d] [-e] [-n] [-c COUNT] [-i [HOST:]DEV|any|ip-udp]
                     [--layer ip-udp] [-w FILE] [--pcapng] [EXPRESSION]

    \b
    Lines are tcpdump -n's; -w writes a pcap file (nanosecond timestamps), or pcapng
    when FILE ends in .pcapng or with --pcapng (an interface per device, direction,
    comments), for tcpdump -r, tshark or Wireshark. EXPRESSION is a tcpdump filter,
    compiled by libpcap (the real tcpdump -dd) and run in the service; -d prints it.
    -i HOST:ip-udp captures what IP hands UDP and gets from it (raw IPv4).
    Ctrl-C stops and prints the counts.

    \b
    Examples:
      stackemu tcpdump -i bob:eth0 udp port 9000
      stackemu tcpdump -i alice:ip-udp -w boundary.pcapng
    """
    from stackemu.tools import tcpdump as tool

    run_tool(tool.main, host, args)


@main.command(name="softnet_stat", context_settings=_TOOL)
@click.option("--host", default=None, help=_HOST_HELP)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def softnet_stat(host: str | None, args: tuple[str, ...]) -> None:
    """/proc/net/softnet_stat of a host: per CPU processed, dropped, time_squeeze, ...,
    received_rps, flow_limit_count, backlog length (hex, as the kernel prints it).

    \b
    Examples:
      stackemu softnet_stat --host bob
      stackemu softnet_stat --json          the same counters by name
    """
    from stackemu.tools import softnet

    run_tool(softnet.main, host, args)


@main.command(context_settings=_TOOL)
@click.option("--host", default=None, help=_HOST_HELP)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def nstat(host: str | None, args: tuple[str, ...]) -> None:
    """iproute2 nstat over a host's Ip, Icmp, IcmpMsg, Udp, UdpLite and IpExt counters.

    \b
    stackemu nstat [-a] [-z] [-j [-p]] [-r] [-s] [-n] [PATTERN ...]
    stackemu nstat -az 'IpFrag*'      absolute values, zeros too, one group

    \b
    Without -a it prints the increments since its last run on that host.

    \b
    Examples:
      stackemu nstat --host bob             what changed on bob since the last run
      stackemu nstat -az 'Udp*'             every Udp counter, zeros too
      stackemu nstat -aj                    as JSON
    """
    from stackemu.tools import nstat as tool

    run_tool(tool.main, host, args)


@main.command(context_settings=_TOOL)
@click.option("--host", default=None, help="Host whose sockets to list (default STACKEMU_HOST or alice).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ss(host: str | None, args: tuple[str, ...]) -> None:
    """iproute2 ss over a host's UDP (and UDP-Lite) sockets: queues, owner, memory.

    \b
    stackemu ss [-u] [-a|-l] [-n] [-p] [-m] [-e] [-H] [-O] [--json] [state STATE]
    stackemu ss -A udp,udplite -an        UDP-Lite sockets too (the emulator's)

    \b
    Examples:
      stackemu ss -uanpm                  every UDP socket, its process, its skmem
      stackemu ss --host bob -ul          bob's unconnected UDP sockets
      stackemu ss -uan state established  the connected ones
    `stackemu ss -h` prints ss's full help.
    """
    from stackemu.tools import ss as tool

    run_tool(tool.main, host, args)


@main.command(context_settings=_TOOL)
@click.option("--host", default=None, help="Host whose counters to read (default STACKEMU_HOST or alice).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def netstat(host: str | None, args: tuple[str, ...]) -> None:
    """net-tools netstat -s: the Ip, Icmp, IcmpMsg, Udp, UdpLite and IpExt counters
    in netstat's sentences.

    \b
    stackemu netstat -s [-u|-w] [--json]

    \b
    Examples:
      stackemu netstat -s                 every group of alice
      stackemu netstat --host bob -su     bob's Udp counters
    """
    from stackemu.tools import netstat as tool

    run_tool(tool.main, host, args)


@main.command(context_settings=_TOOL)
@click.option("--host", default=None, help="Host whose netfilter to use (default STACKEMU_HOST or alice).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def iptables(host: str | None, args: tuple[str, ...]) -> None:
    """iptables (1.8.9, legacy) on an emulated host's IP layer: tables raw, mangle, filter.

    \b
    stackemu iptables [-t TABLE] -[ACD] CHAIN RULE-SPECIFICATION
    stackemu iptables [-t TABLE] -I CHAIN [RULENUM] RULE-SPECIFICATION
    stackemu iptables [-t TABLE] -R CHAIN RULENUM RULE-SPECIFICATION
    stackemu iptables [-t TABLE] -D CHAIN RULENUM
    stackemu iptables [-t TABLE] -[LS] [CHAIN [RULENUM]] [-v] [-n] [-x] [--line-numbers]
    stackemu iptables [-t TABLE] -L [CHAIN [RULENUM]] --json    (the emulator's JSON)
    stackemu iptables [-t TABLE] -[FZ] [CHAIN] | -[NX] CHAIN | -E OLD NEW | -P CHAIN TARGET

    \b
    Examples:
      stackemu iptables -A INPUT -p udp --dport 9000 -j NFQUEUE --queue-num 0
      stackemu iptables --host bob -I INPUT -s 10.0.0.1 -j DROP
      stackemu iptables -L -v -n --line-numbers
      stackemu iptables -L INPUT --json | jq '.chains[0].rules[].counters'
    `stackemu iptables -h` prints iptables' full help and the --json document.
    """
    from stackemu.tools import iptables as tool

    run_tool(tool.main, host, args)


@main.command()
@click.option("--host", "hosts", multiple=True, help="Host to watch (repeatable; default every host).")
@click.option(
    "-l", "lookup", type=click.Choice(["kas", "none"]), default="kas", help="Symbol lookup (as dropwatch -l)."
)
@click.option(
    "--interval", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Seconds between polls."
)
@click.option(
    "--count", type=click.IntRange(min=0), default=None, help="Stop after N polls (default: Ctrl-C)."
)
@click.option("--summary", is_flag=True, help="At the end, totals per reason and location.")
@click.option("--flows", type=click.Choice(["on", "off"]), default=None, help="Switch the per-flow ledger.")
@click.option("--check", is_flag=True, help="Per flow: sent = delivered + dropped? Exit 1 if not.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def dropwatch(
    hosts: tuple[str, ...],
    lookup: str,
    interval: float,
    count: int | None,
    summary: bool,
    flows: str | None,
    check: bool,
    as_json: bool,
) -> None:
    """The kernel's drop monitor over every layer: new drops each interval, as
    "N drops at LOCATION (SKB_DROP_REASON_*) [SERVICE HOST]".

    \b
    Examples:
      stackemu dropwatch                           live, until Ctrl-C
      stackemu dropwatch --count 5 --summary       five seconds, then totals
      stackemu dropwatch --flows on                start the per-flow ledger
      stackemu dropwatch --check                   sent = delivered + drops, per flow
    """
    from stackemu.tools import dropwatch as tool

    opts = tool.Options(hosts, lookup, interval, count, as_json, summary, flows, check)
    try:
        run_tool(tool.main, opts)
    except state.NoStack as err:
        raise click.ClickException(str(err)) from None
