"""`stackemu ip`: iproute2's `ip link` and `ip neigh` against a host's NicService,
`ip addr`, `ip route` and `ip rule` against its IpService.

Parsing, messages and exit codes follow iproute2 6.1 (ip/iplink.c, ip/ipaddress.c,
ip/ipneigh.c, ip/iproute.c, ip/iprule.c, lib/utils.c, lib/rt_names.c); the output is
what `ip` prints for the same kernel state (Linux 6.18). A refusal the kernel explains
is `Error: <extack>.` (exit 2), one it does not `RTNETLINK answers: <strerror>` (exit
2), a device iproute2 cannot resolve `Cannot find device "X"` (exit 1).

With -j (-json, --json) the show commands print what iproute2's JSON mode prints for
the same state: the same keys, nesting and order, values typed as it types them (-p
pretty-prints in json_writer's layout); messages and errors stay text on stderr.
"""

from __future__ import annotations

import errno as E
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.nic.neigh import (
    NUD_DELAY,
    NUD_FAILED,
    NUD_INCOMPLETE,
    NUD_NOARP,
    NUD_NONE,
    NUD_PERMANENT,
    NUD_PROBE,
    NUD_REACHABLE,
    NUD_STALE,
)
from stackemu.ip.v1 import ip_pb2
from stackemu.nic.v1 import nic_pb2
from stackemu.tools.common import Ip, Nic, err, fail, iproute2_json, matches, out, rtnl_error, split_dev

# include/uapi/linux/if.h, in the order print_link_flags() prints them.
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40
IFF_LOWER_UP = 0x10000
_FLAG_NAMES = (
    ("LOOPBACK", 0x8),
    ("BROADCAST", 0x2),
    ("POINTOPOINT", 0x10),
    ("MULTICAST", 0x1000),
    ("NOARP", 0x80),
    ("ALLMULTI", 0x200),
    ("PROMISC", 0x100),
    ("MASTER", 0x400),
    ("SLAVE", 0x800),
    ("DEBUG", 0x4),
    ("DYNAMIC", 0x8000),
    ("AUTOMEDIA", 0x4000),
    ("PORTSEL", 0x2000),
    ("NOTRAILERS", 0x20),
    ("UP", 0x1),
    ("LOWER_UP", 0x10000),
    ("DORMANT", 0x20000),
    ("ECHO", 0x40000),
)

# print_neigh_state() order.
_NUD_NAMES = (
    ("INCOMPLETE", NUD_INCOMPLETE),
    ("REACHABLE", NUD_REACHABLE),
    ("STALE", NUD_STALE),
    ("DELAY", NUD_DELAY),
    ("PROBE", NUD_PROBE),
    ("FAILED", NUD_FAILED),
    ("NOARP", NUD_NOARP),
    ("PERMANENT", NUD_PERMANENT),
)

IP_USAGE = """\
Usage: stackemu ip [ --host HOST ] [ OPTIONS ] OBJECT { COMMAND | help }
where  OBJECT := { address | link | neighbour | route | rule }
       OPTIONS := { -s[tatistics] | -j[son] | -p[retty] }"""

LINK_USAGE = """\
Usage: ip link set { DEVICE | dev DEVICE }
                [ { up | down } ]
                [ mtu MTU ]
                [ promisc { on | off } ]
                [ txqueuelen PACKETS ]
                [ rps_cpus HEXMASK ]
                [ napi_weight WEIGHT ]
       ip link show [ DEVICE | dev DEVICE ] [ up ]
DEVICE := [HOST:]NAME
rps_cpus is the emulator's stand-in for /sys/class/net/DEV/queues/rx-0/rps_cpus;
napi_weight (an emulator extra) sets the weight of the driver's NAPI poll (64)."""

NEIGH_USAGE = """\
Usage: ip neigh { add | del | change | replace }
                { ADDR [ lladdr LLADDR ] [ nud STATE ] }
                [ dev DEV ]

       ip neigh { show | flush } [ to PREFIX ] [ dev DEV ] [ nud STATE ]

STATE := { delay | failed | incomplete | noarp | none |
           permanent | probe | reachable | stale }"""

# Objects `ip` knows that are not built.
_OTHER_OBJECTS = (
    "addrlabel",
    "maddress",
    "ntable",
    "tunnel",
    "tuntap",
    "monitor",
    "netns",
    "netconf",
    "nexthop",
)


@dataclass(frozen=True, slots=True)
class Opts:
    """The options of ip.c that shape what the show commands print."""

    stats: int = 0
    json: bool = False
    pretty: bool = False


def show_json(rows: list[dict[str, object]], opts: Opts) -> None:
    """The array a show command prints under -j, even an empty one (`[]`)."""
    out(iproute2_json(rows, opts.pretty))


def main(host: str | None, argv: Sequence[str]) -> int:
    args = list(argv)
    stats = 0
    as_json = pretty = False
    while args and args[0].startswith("-") and len(args[0]) > 1:
        opt = args.pop(0)
        # ip.c: "--stats" is "-stats"
        o = opt[1:] if opt.startswith("--") else opt
        if matches(o, "-stats") or matches(o, "-statistics"):
            stats += 1
        elif matches(o, "-json"):
            as_json = True
        elif matches(o, "-pretty"):
            pretty = True
        elif o == "-4":
            pass  # the emulated stack is IPv4 only
        elif matches(o, "-help"):
            fail(255, IP_USAGE)
        else:
            fail(255, f'Option "{opt}" is unknown, try "ip -help".')
    if not args:
        fail(255, IP_USAGE)
    obj, rest = args[0], args[1:]
    opts = Opts(stats, as_json, pretty)
    # do_cmd() takes the first object of its table the word is a prefix of.
    if matches(obj, "address"):
        return address(host, rest, opts)
    if matches(obj, "route"):
        return route(host, rest, opts)
    if matches(obj, "rule"):
        return rule(host, rest, opts)
    if matches(obj, "neighbor") or matches(obj, "neighbour"):
        return neigh(host, rest, opts)
    if matches(obj, "link"):
        return link(host, rest, opts)
    if matches(obj, "help"):
        fail(255, IP_USAGE)
    for other in _OTHER_OBJECTS:
        if matches(obj, other):
            fail(255, f'stackemu ip: "ip {other}" is not emulated.')
    fail(255, f'Object "{obj}" is unknown, try "ip help".')


def _next(args: list[str], i: int) -> str:
    """NEXT_ARG(): the word after args[i], or iproute2's incomplete-command exit."""
    if i + 1 >= len(args):
        fail(255, 'Command line is not complete. Try option "help"')
    return args[i + 1]


# ---- ip link ---------------------------------------------------------------------


def link(host: str | None, args: list[str], opts: Opts) -> int:
    if not args:
        return link_show(host, [], opts)
    cmd, rest = args[0], args[1:]
    # do_iplink()'s order, so "s" is set as in iproute2.
    if matches(cmd, "add"):
        fail(255, "stackemu ip: ip link add is not emulated: `stackemu up` makes the devices.")
    if matches(cmd, "set") or matches(cmd, "change"):
        return link_set(host, rest)
    if matches(cmd, "replace") or matches(cmd, "delete"):
        fail(255, f"stackemu ip: ip link {cmd} is not emulated: `stackemu up` makes the devices.")
    if matches(cmd, "show") or matches(cmd, "lst") or matches(cmd, "list"):
        return link_show(host, rest, opts)
    if matches(cmd, "help"):
        fail(255, LINK_USAGE)
    fail(255, f'Command "{cmd}" is unknown, try "ip link help".')


def _u32_arg(v: str, key: str) -> int:
    """get_unsigned(): a u32 argument, or iproute2's invarg() message."""
    n = _parse_int(v)
    if n is None or not 0 <= n < 1 << 32:
        fail(255, f'Error: argument "{v}" is wrong: Invalid "{key}" value\n')
    return n


def _link_dev_arg(args: list[str], i: int, dev: str | None) -> tuple[str, int]:
    """The device of `ip link set/show`, named with or without `dev`, given once."""
    a = args[i]
    if a == "dev":
        a = _next(args, i)
        i += 1
    elif matches(a, "help"):
        fail(255, LINK_USAGE)
    if dev is not None:
        fail(255, f'Error: either "dev" is duplicate, or "{a}" is a garbage.')
    return a, i


def link_show(host: str | None, args: list[str], opts: Opts) -> int:
    dev: str | None = None
    up_only = False
    i = 0
    while i < len(args):
        a = args[i]
        if a == "up":
            up_only = True
        else:
            dev, i = _link_dev_arg(args, i, dev)
        i += 1
    name = None
    if dev is not None:
        host, name = split_dev(dev, host)
    with Nic(host) as nic:
        resp: nic_pb2.ListLinksResponse = nic.call("ListLinks", nic_pb2.ListLinksRequest())
    links = list(resp.links)
    if name is not None:
        links = [lk for lk in links if lk.name == name]
        if not links:
            fail(1, f'Device "{name}" does not exist.')
    links = [lk for lk in links if not up_only or lk.flags & IFF_UP]
    if opts.json:
        show_json([link_json(lk, opts.stats) for lk in links], opts)
        return 0
    for lk in links:
        out(format_link(lk, opts.stats))
    return 0


def link_flags(lk: nic_pb2.Link) -> int:
    """dev_get_flags(): IFF_RUNNING and IFF_LOWER_UP come from the carrier of a running
    device, whatever the stored flags say."""
    flags = lk.flags & ~(IFF_RUNNING | IFF_LOWER_UP)
    if flags & IFF_UP and lk.carrier:
        flags |= IFF_RUNNING | IFF_LOWER_UP
    return flags


def flags_list(flags: int) -> list[str]:
    """print_link_flags(): the names, then what no name covers in hex."""
    names = []
    if flags & IFF_UP and not flags & IFF_RUNNING:
        names.append("NO-CARRIER")
    flags &= ~IFF_RUNNING
    for name, bit in _FLAG_NAMES:
        if flags & bit:
            names.append(name)
            flags &= ~bit
    if flags:
        names.append(f"{flags:x}")
    return names


def flags_str(flags: int) -> str:
    return ",".join(flags_list(flags))


def operstate(lk: nic_pb2.Link) -> str:
    """IFLA_OPERSTATE as the kernel derives it (rfc2863_policy): a device that is not up
    is DOWN; loopback never reports a carrier state, so it is UNKNOWN; an Ethernet
    device is UP with a carrier and DOWN without."""
    if not lk.flags & IFF_UP:
        return "DOWN"
    if lk.flags & IFF_LOOPBACK:
        return "UNKNOWN"
    return "UP" if lk.carrier else "DOWN"


def link_qdisc(lk: nic_pb2.Link) -> str:
    """IFLA_QDISC: a device that is down has noop_qdisc attached (dev_deactivate) unless
    a qdisc was configured on it, which stays."""
    if not lk.flags & IFF_UP and lk.qdisc != "netem":
        return "noop"
    return lk.qdisc or "noqueue"


def mac_str(addr: bytes) -> str:
    return ":".join(f"{b:02x}" for b in (addr or bytes(6)))


def format_link(lk: nic_pb2.Link, stats: int = 0) -> str:
    head = (
        f"{lk.ifindex}: {lk.name}: <{flags_str(link_flags(lk))}> mtu {lk.mtu} qdisc {link_qdisc(lk)} "
        f"state {operstate(lk)} mode DEFAULT group default "
    )
    if lk.txqueuelen:
        head += f"qlen {lk.txqueuelen}"
    if lk.flags & IFF_LOOPBACK:
        l2 = f"    link/loopback {mac_str(lk.address)} brd {mac_str(bytes(6))}"
    else:
        l2 = f"    link/ether {mac_str(lk.address)} brd ff:ff:ff:ff:ff:ff"
    lines = [head, l2]
    if stats:
        lines += stats64(lk.stats, stats)
    return "\n".join(lines)


def link_json(lk: nic_pb2.Link, stats: int = 0, linkmode: bool = True) -> dict[str, object]:
    """print_linkinfo() under -j; `ip addr` leaves out the linkmode."""
    loopback = lk.flags & IFF_LOOPBACK
    d: dict[str, object] = {
        "ifindex": lk.ifindex,
        "ifname": lk.name,
        "flags": flags_list(link_flags(lk)),
        "mtu": lk.mtu,
        "qdisc": link_qdisc(lk),
        "operstate": operstate(lk),
    }
    if linkmode:
        d["linkmode"] = "DEFAULT"
    d["group"] = "default"
    if lk.txqueuelen:
        d["txqlen"] = lk.txqueuelen
    d["link_type"] = "loopback" if loopback else "ether"
    d["address"] = mac_str(lk.address)
    d["broadcast"] = mac_str(bytes(6)) if loopback else "ff:ff:ff:ff:ff:ff"
    if stats:
        d["stats64"] = stats64_json(lk.stats, stats)
    return d


def stats64_json(s: nic_pb2.LinkStats, level: int) -> dict[str, object]:
    """print_stats64() under -j. Its names are not the text's columns: the first RX
    line has over_errors (rx_over_errors, which the emulator does not keep) where the
    text has missed, and rx_missed_errors comes with -s -s as missed_errors."""
    rx: dict[str, object] = {
        "bytes": s.rx_bytes,
        "packets": s.rx_packets,
        "errors": s.rx_errors,
        "dropped": s.rx_dropped,
        "over_errors": 0,
        "multicast": s.multicast,
    }
    tx: dict[str, object] = {
        "bytes": s.tx_bytes,
        "packets": s.tx_packets,
        "errors": s.tx_errors,
        "dropped": s.tx_dropped,
        "carrier_errors": s.tx_carrier_errors,
        "collisions": 0,
    }
    if level > 1:
        rx |= {"length_errors": 0, "crc_errors": 0, "frame_errors": 0, "fifo_errors": 0}
        rx["missed_errors"] = s.rx_missed_errors
        if s.rx_nohandler:
            rx["nohandler"] = s.rx_nohandler
        tx |= {"aborted_errors": 0, "fifo_errors": 0, "window_errors": 0, "heartbeat_errors": 0}
    return {"rx": rx, "tx": tx}


def stats64(s: nic_pb2.LinkStats, level: int) -> list[str]:
    """print_stats64() of ip/ipaddress.c, columns sized to the widest number. Counters
    the emulator does not keep (compressed, collisions, the detailed error kinds) are
    zero, as on a driver that does not count them."""
    cols = [len("*X errors:"), len("packets"), len("errors"), len("dropped")]
    cols += [len("heartbt"), len("overrun"), len("compressed"), len("otherhost")]

    def size(*vals: int) -> None:
        for i, v in enumerate(vals):
            cols[i] = max(cols[i], len(str(v)))

    rx = (s.rx_bytes, s.rx_packets, s.rx_errors, s.rx_dropped, s.rx_missed_errors, s.multicast)
    tx = (s.tx_bytes, s.tx_packets, s.tx_errors, s.tx_dropped, s.tx_carrier_errors, 0)
    size(*rx, 0, 0)
    if level > 1:
        size(0, 0, 0, 0, 0, 0, s.rx_nohandler, 0)
    size(*tx, 0, 0)
    if level > 1:
        size(0, 0, 0, 0, 0, 0, 0, 0)

    def nums(vals: Sequence[int], first: int = 0) -> str:
        return "".join(f"{v:>{cols[first + i]}} " for i, v in enumerate(vals))

    lines = [
        f"    RX: {'bytes':>{cols[0] - 4}} {'packets':>{cols[1]}} {'errors':>{cols[2]}} "
        f"{'dropped':>{cols[3]}} {'missed':>{cols[4]}} {'mcast':>{cols[5]}} {'':>{cols[6]}}",
        "    " + nums(rx),
    ]
    if level > 1:
        nohandler = f"{' nohandler':>{cols[6] + 1}}" if s.rx_nohandler else ""
        lines.append(
            f"    RX errors:{'':>{cols[0] - 10}} {'length':>{cols[1]}} {'crc':>{cols[2]}} "
            f"{'frame':>{cols[3]}} {'fifo':>{cols[4]}} {'overrun':>{cols[5]}}{nohandler}"
        )
        extra = [s.rx_nohandler] if s.rx_nohandler else []
        lines.append(" " * (cols[0] + 5) + nums([0, 0, 0, 0, 0, *extra], 1))
    lines += [
        f"    TX: {'bytes':>{cols[0] - 4}} {'packets':>{cols[1]}} {'errors':>{cols[2]}} "
        f"{'dropped':>{cols[3]}} {'carrier':>{cols[4]}} {'collsns':>{cols[5]}} {'':>{cols[6]}}",
        "    " + nums(tx),
    ]
    if level > 1:
        lines.append(
            f"    TX errors:{'':>{cols[0] - 10}} {'aborted':>{cols[1]}} {'fifo':>{cols[2]}} "
            f"{'window':>{cols[3]}} {'heartbt':>{cols[4]}} {'':>{cols[5]}}"
        )
        lines.append(" " * (cols[0] + 5) + nums([0, 0, 0, 0], 1))
    return lines


def _parse_int(arg: str) -> int | None:
    """get_integer(): strtol base 0, the whole word."""
    try:
        return int(arg, 0)
    except ValueError:
        return None


def parse_cpumask(arg: str) -> int | None:
    """bitmap_parse() of a cpumask write: 32-bit hex groups separated by commas."""
    groups = arg.strip().split(",")
    value = 0
    for g in groups:
        if not 1 <= len(g) <= 8 or any(c not in "0123456789abcdefABCDEF" for c in g):
            return None
        value = value << 32 | int(g, 16)
    return value if value < 1 << 64 else None


def link_set(host: str | None, args: list[str]) -> int:
    req = nic_pb2.SetLinkRequest()
    dev: str | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "up":
            req.up = True
        elif a == "down":
            req.up = False
        elif a == "mtu":
            v = _next(args, i)
            i += 1
            if req.HasField("mtu"):
                fail(255, f'Error: duplicate "mtu": "{v}" is the second value.')
            req.mtu = _u32_arg(v, "mtu")
        elif a in ("txqueuelen", "qlen", "txqlen"):
            v = _next(args, i)
            i += 1
            if req.HasField("txqueuelen"):
                fail(255, f'Error: duplicate "txqueuelen": "{v}" is the second value.')
            req.txqueuelen = _u32_arg(v, "txqueuelen")
        elif a == "promisc":
            v = _next(args, i)
            i += 1
            if v not in ("on", "off"):
                fail(1, f'Error: argument of "promisc" must be "on" or "off", not "{v}"')
            req.promisc = v == "on"
        elif a == "rps_cpus":
            v = _next(args, i)
            i += 1
            mask = parse_cpumask(v)
            if mask is None:
                fail(255, f'Error: argument "{v}" is wrong: Invalid "rps_cpus" value\n')
            req.rps_cpus = mask
        elif a == "napi_weight":
            v = _next(args, i)
            i += 1
            req.napi_weight = _u32_arg(v, "napi_weight")
        else:
            dev, i = _link_dev_arg(args, i, dev)
        i += 1
    if dev is None:
        fail(255, 'Not enough information: "dev" argument is required.')
    host, req.device = split_dev(dev, host)
    with Nic(host) as nic:
        resp: nic_pb2.SetLinkResponse = nic.call("SetLink", req)
    if resp.errno == E.ENODEV:
        fail(1, f'Cannot find device "{req.device}"')
    if resp.errno:
        fail(2, rtnl_error(resp.errno, resp.message))
    return 0


# ---- ip neigh --------------------------------------------------------------------


def neigh(host: str | None, args: list[str], opts: Opts) -> int:
    if not args:
        return neigh_show(host, [], opts, flush=False)
    cmd, rest = args[0], args[1:]
    if matches(cmd, "add"):
        return neigh_modify(host, rest, "add")
    if matches(cmd, "change") or cmd == "chg":
        return neigh_modify(host, rest, "change")
    if matches(cmd, "replace"):
        return neigh_modify(host, rest, "replace")
    if matches(cmd, "delete"):
        return neigh_modify(host, rest, "delete")
    if matches(cmd, "show") or matches(cmd, "lst") or matches(cmd, "list"):
        return neigh_show(host, rest, opts, flush=False)
    if matches(cmd, "flush"):
        return neigh_show(host, rest, opts, flush=True)
    if matches(cmd, "help"):
        fail(255, NEIGH_USAGE)
    fail(255, f'Command "{cmd}" is unknown, try "ip neigh help".')


def nud_state(arg: str) -> int | None:
    """nud_state_a2n(): a name, or a number that is a single NUD bit."""
    if matches(arg, "permanent"):
        return NUD_PERMANENT
    if matches(arg, "reachable"):
        return NUD_REACHABLE
    named = {
        "noarp": NUD_NOARP,
        "none": NUD_NONE,
        "stale": NUD_STALE,
        "incomplete": NUD_INCOMPLETE,
        "delay": NUD_DELAY,
        "probe": NUD_PROBE,
    }
    if arg in named:
        return named[arg]
    if matches(arg, "failed"):
        return NUD_FAILED
    n = _parse_int(arg)
    if n is None or n < 0 or n >= 0x100 or n & (n - 1):
        return None
    return n


def nud_names(state: int) -> list[str]:
    return [name for name, bit in _NUD_NAMES if state & bit]


def nud_str(state: int) -> str:
    return "".join(f"{name} " for name in nud_names(state))


def _ipv4(arg: str) -> int:
    try:
        return int(ipaddress.IPv4Address(arg))
    except ValueError:
        fail(1, f'Error: any valid address is expected rather than "{arg}".')


def _lladdr(arg: str) -> bytes:
    """ll_addr_a2n(): hex bytes separated by colons."""
    try:
        parts = [int(p, 16) for p in arg.split(":")]
    except ValueError:
        parts = []
    if not parts or any(not 0 <= p <= 255 for p in parts) or any(not p for p in arg.split(":")):
        fail(255, f'"{arg}" is invalid lladdr.')
    return bytes(parts)


def _links(nic: Nic) -> list[nic_pb2.Link]:
    resp: nic_pb2.ListLinksResponse = nic.call("ListLinks", nic_pb2.ListLinksRequest())
    return list(resp.links)


def neigh_show(host: str | None, args: list[str], opts: Opts, flush: bool) -> int:
    if flush and not args:
        fail(255, "Flush requires arguments.")
    # do_show_or_flush(): show hides NOARP entries, flush leaves permanent ones.
    state_filter = ~(NUD_PERMANENT | NUD_NOARP) if flush else 0xFF & ~NUD_NOARP
    state_given = False
    dev: str | None = None
    prefix: ipaddress.IPv4Network | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "dev":
            v = _next(args, i)
            i += 1
            if dev is not None:
                fail(255, f'Error: duplicate "dev": "{v}" is the second value.')
            dev = v
        elif a == "nud":
            v = _next(args, i)
            i += 1
            if not state_given:
                state_given = True
                state_filter = 0
            st = nud_state(v)
            if st is None:
                if v != "all":
                    fail(255, f'Error: argument "{v}" is wrong: nud state is bad')
                st = ~0 & ~NUD_NOARP if flush else ~0
            state_filter |= st if st else 0x100
        else:
            if a == "to":
                a = _next(args, i)
                i += 1
            if matches(a, "help"):
                fail(255, NEIGH_USAGE)
            if a in ("all", "default", "any"):
                prefix = ipaddress.IPv4Network("0.0.0.0/0")
            else:
                try:
                    prefix = ipaddress.IPv4Network(a, strict=False)
                except ValueError:
                    fail(255, f'Error: argument "{a}" is wrong: to value is invalid\n')
        i += 1
    name = ""
    if dev is not None:
        host, name = split_dev(dev, host)
    with Nic(host) as nic:
        if name and all(lk.name != name for lk in _links(nic)):
            fail(1, f'Cannot find device "{name}"')
        if flush:
            if state_given or (prefix is not None and prefix.prefixlen):
                fail(255, "stackemu ip: flush takes dev DEV or all; flushing by nud or prefix is not built.")
            return _flush(nic, name, opts.stats)
        resp: nic_pb2.ListNeighboursResponse = nic.call(
            "ListNeighbours", nic_pb2.ListNeighboursRequest(device=name)
        )
    shown = [
        n
        for n in resp.neighbours
        if (not name or n.device == name)
        and (state_filter & n.state or (not n.state and state_filter & 0x100))
        and (prefix is None or ipaddress.IPv4Address(n.address) in prefix)
    ]
    if opts.json:
        show_json([neigh_json(n, show_dev=not name, stats=opts.stats) for n in shown], opts)
        return 0
    for n in shown:
        out(format_neigh(n, show_dev=not name, stats=opts.stats))
    return 0


def format_neigh(n: nic_pb2.Neighbour, show_dev: bool = True, stats: int = 0) -> str:
    s = f"{ipaddress.IPv4Address(n.address)} "
    if show_dev:
        s += f"dev {n.device} "
    if n.lladdr:
        s += f"lladdr {mac_str(n.lladdr)} "
    if stats:
        s += f"probes {n.probes} "
    return s + nud_str(n.state)


def neigh_json(n: nic_pb2.Neighbour, show_dev: bool = True, stats: int = 0) -> dict[str, object]:
    """print_neigh() under -j: no "state" key for NUD_NONE, as no word in the text."""
    d: dict[str, object] = {"dst": str(ipaddress.IPv4Address(n.address))}
    if show_dev:
        d["dev"] = n.device
    if n.lladdr:
        d["lladdr"] = mac_str(n.lladdr)
    if stats:
        d["probes"] = n.probes
    if n.state:
        d["state"] = nud_names(n.state)
    return d


def _flush(nic: Nic, dev: str, stats: int) -> int:
    resp: nic_pb2.FlushNeighboursResponse = nic.call(
        "FlushNeighbours", nic_pb2.FlushNeighboursRequest(device=dev)
    )
    if stats:
        if resp.flushed:
            out(f"\n*** Round 1, deleting {resp.flushed} entries ***")
            out("*** Flush is complete after 1 round ***")
        else:
            out("Nothing to flush.")
    return 0


def neigh_modify(host: str | None, args: list[str], cmd: str) -> int:
    lladdr: bytes | None = None
    lladdr_given = False
    state = NUD_PERMANENT
    dev: str | None = None
    dst: int | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if matches(a, "lladdr"):
            v = _next(args, i)
            i += 1
            if lladdr_given:
                fail(255, f'Error: duplicate "lladdr": "{v}" is the second value.')
            lladdr_given = True
            lladdr = None if v == "null" else _lladdr(v)
        elif a == "nud":
            v = _next(args, i)
            i += 1
            st = nud_state(v)
            if st is None:
                fail(255, f'Error: argument "{v}" is wrong: nud state is bad')
            state = st
        elif a == "dev":
            dev = _next(args, i)
            i += 1
        elif a in ("router", "use", "managed", "extern_learn", "proxy", "protocol"):
            fail(255, f'stackemu ip: neighbour option "{a}" is not emulated.')
        else:
            if a == "to":
                a = _next(args, i)
                i += 1
            if matches(a, "help"):
                fail(255, NEIGH_USAGE)
            if dst is not None:
                fail(255, f'Error: either "to" is duplicate, or "{a}" is a garbage.')
            dst = _ipv4(a)
        i += 1
    if dev is None or dst is None:
        fail(255, "Device and destination are required arguments.")
    host, name = split_dev(dev, host)
    with Nic(host) as nic:
        if cmd in ("add", "change"):
            # NLM_F_EXCL / no NLM_F_CREATE: the RPC replaces, so look first.
            have: nic_pb2.ListNeighboursResponse = nic.call(
                "ListNeighbours", nic_pb2.ListNeighboursRequest(device=name)
            )
            exists = any(n.address == dst and n.device == name for n in have.neighbours)
            if not exists and all(lk.name != name for lk in _links(nic)):
                fail(1, f'Cannot find device "{name}"')
            if cmd == "add" and exists:
                fail(2, rtnl_error(E.EEXIST, ""))
            if cmd == "change" and not exists:
                fail(2, rtnl_error(E.ENOENT, ""))
        if cmd == "delete":
            dresp: nic_pb2.DeleteNeighbourResponse = nic.call(
                "DeleteNeighbour", nic_pb2.DeleteNeighbourRequest(device=name, address=dst)
            )
            code, message = dresp.errno, dresp.message
        else:
            areq = nic_pb2.AddNeighbourRequest(device=name, address=dst, lladdr=lladdr or b"", state=state)
            aresp: nic_pb2.AddNeighbourResponse = nic.call("AddNeighbour", areq)
            code, message = aresp.errno, aresp.message
    if code == E.ENODEV:
        fail(1, f'Cannot find device "{name}"')
    if code:
        fail(2, rtnl_error(code, message))
    return 0


# ---- ip address, ip route, ip rule ----------------------------------------------

# lib/rt_names.c and /etc/iproute2/rt_{protos,scopes,tables,dsfield}.
TYPE_NAMES = (
    "unspec",
    "unicast",
    "local",
    "broadcast",
    "anycast",
    "multicast",
    "blackhole",
    "unreachable",
    "prohibit",
    "throw",
    "nat",
    "xresolve",
)
PROTO_NAMES = {
    0: "unspec",
    1: "redirect",
    2: "kernel",
    3: "boot",
    4: "static",
    8: "gated",
    9: "ra",
    10: "mrt",
    11: "zebra",
    12: "bird",
    13: "dnrouted",
    14: "xorp",
    15: "ntk",
    16: "dhcp",
    18: "keepalived",
    42: "babel",
    99: "openr",
    186: "bgp",
    187: "isis",
    188: "ospf",
    189: "rip",
    192: "eigrp",
}
SCOPE_NAMES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
TABLE_NAMES = {0: "unspec", 253: "default", 254: "main", 255: "local"}
DSFIELD_NAMES = {
    0x00: "default",
    0x28: "AF11",
    0x30: "AF12",
    0x38: "AF13",
    0x48: "AF21",
    0x50: "AF22",
    0x58: "AF23",
    0x68: "AF31",
    0x70: "AF32",
    0x78: "AF33",
    0x88: "AF41",
    0x90: "AF42",
    0x98: "AF43",
    0x20: "CS1",
    0x40: "CS2",
    0x60: "CS3",
    0x80: "CS4",
    0xA0: "CS5",
    0xC0: "CS6",
    0xE0: "CS7",
    0xB8: "EF",
}
RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST, RTN_ANYCAST, RTN_MULTICAST, RTN_NAT = 1, 2, 3, 4, 5, 10
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST, RT_SCOPE_NOWHERE = 0, 253, 254, 255
RT_TABLE_MAIN, RT_TABLE_LOCAL = 254, 255
RTPROT_BOOT = 3
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800
RTNH_F_ONLINK = 4
IFA_F_SECONDARY, IFA_F_NOPREFIXROUTE = 0x01, 0x200
FR_ACT_TO_TBL, FR_ACT_NOP = 1, 3
RTCF_NAMES = ((0x80000000, "local"), (0x20000000, "mc"), (0x10000000, "brd"))
ENODEV = 19

ADDR_USAGE = """\
Usage: ip address {add|change|replace} IFADDR dev IFNAME [ LIFETIME ]
                                                      [ CONFFLAG-LIST ]
       ip address del IFADDR dev IFNAME [mngtmpaddr]
       ip address {save|flush} [ dev IFNAME ] [ scope SCOPE-ID ]
                            [ to PREFIX ] [ FLAG-LIST ] [ label LABEL ] [up]
       ip address [ show [ dev IFNAME ] [ scope SCOPE-ID ] [ master DEVICE ]
                         [ nomaster ]
                         [ type TYPE ] [ to PREFIX ] [ FLAG-LIST ]
                         [ label LABEL ] [up] [ vrf NAME ] ]
       ip address {showdump|restore}
IFADDR := PREFIX | ADDR peer PREFIX
          [ broadcast ADDR ] [ anycast ADDR ]
          [ label IFNAME ] [ scope SCOPE-ID ] [ metric METRIC ]
SCOPE-ID := [ host | link | global | NUMBER ]
FLAG-LIST := [ FLAG-LIST ] FLAG
FLAG  := [ permanent | dynamic | secondary | primary |
           [-]tentative | [-]deprecated | [-]dadfailed | temporary |
           CONFFLAG-LIST ]
CONFFLAG-LIST := [ CONFFLAG-LIST ] CONFFLAG
CONFFLAG  := [ home | nodad | mngtmpaddr | noprefixroute | autojoin ]
LIFETIME := [ valid_lft LFT ] [ preferred_lft LFT ]
LFT := forever | SECONDS
TYPE := { bareudp | bond | bond_slave | bridge | bridge_slave |
          dummy | erspan | geneve | gre | gretap | ifb |
          ip6erspan | ip6gre | ip6gretap | ip6tnl |
          ipip | ipoib | ipvlan | ipvtap |
          macsec | macvlan | macvtap |
          netdevsim | nlmon | rmnet | sit | team | team_slave |
          vcan | veth | vlan | vrf | vti | vxcan | vxlan | wwan |
          xfrm }"""

ROUTE_USAGE = """\
Usage: ip route { list | flush } SELECTOR
       ip route save SELECTOR
       ip route restore
       ip route showdump
       ip route get [ ROUTE_GET_FLAGS ] ADDRESS
                            [ from ADDRESS iif STRING ]
                            [ oif STRING ] [ tos TOS ]
                            [ mark NUMBER ] [ vrf NAME ]
                            [ uid NUMBER ] [ ipproto PROTOCOL ]
                            [ sport NUMBER ] [ dport NUMBER ]
       ip route { add | del | change | append | replace } ROUTE
SELECTOR := [ root PREFIX ] [ match PREFIX ] [ exact PREFIX ]
            [ table TABLE_ID ] [ vrf NAME ] [ proto RTPROTO ]
            [ type TYPE ] [ scope SCOPE ]
ROUTE := NODE_SPEC [ INFO_SPEC ]
NODE_SPEC := [ TYPE ] PREFIX [ tos TOS ]
             [ table TABLE_ID ] [ proto RTPROTO ]
             [ scope SCOPE ] [ metric METRIC ]
             [ ttl-propagate { enabled | disabled } ]
INFO_SPEC := { NH | nhid ID } OPTIONS FLAGS [ nexthop NH ]...
NH := [ encap ENCAPTYPE ENCAPHDR ] [ via [ FAMILY ] ADDRESS ]
\t    [ dev STRING ] [ weight NUMBER ] NHFLAGS
FAMILY := [ inet | inet6 | mpls | bridge | link ]
OPTIONS := FLAGS [ mtu NUMBER ] [ advmss NUMBER ] [ as [ to ] ADDRESS ]
           [ rtt TIME ] [ rttvar TIME ] [ reordering NUMBER ]
           [ window NUMBER ] [ cwnd NUMBER ] [ initcwnd NUMBER ]
           [ ssthresh NUMBER ] [ realms REALM ] [ src ADDRESS ]
           [ rto_min TIME ] [ hoplimit NUMBER ] [ initrwnd NUMBER ]
           [ features FEATURES ] [ quickack BOOL ] [ congctl NAME ]
           [ pref PREF ] [ expires TIME ] [ fastopen_no_cookie BOOL ]
TYPE := { unicast | local | broadcast | multicast | throw |
          unreachable | prohibit | blackhole | nat }
TABLE_ID := [ local | main | default | all | NUMBER ]
SCOPE := [ host | link | global | NUMBER ]
NHFLAGS := [ onlink | pervasive ]
RTPROTO := [ kernel | boot | static | NUMBER ]
PREF := [ low | medium | high ]
TIME := NUMBER[s|ms]
BOOL := [1|0]
FEATURES := ecn
ENCAPTYPE := [ mpls | ip | ip6 | seg6 | seg6local | rpl | ioam6 ]
ENCAPHDR := [ MPLSLABEL | SEG6HDR | SEG6LOCAL | IOAM6HDR ]
SEG6HDR := [ mode SEGMODE ] segs ADDR1,ADDRi,ADDRn [hmac HMACKEYID] [cleanup]
SEGMODE := [ encap | inline ]
SEG6LOCAL := action ACTION [ OPTIONS ] [ count ]
ACTION := { End | End.X | End.T | End.DX2 | End.DX6 | End.DX4 |
            End.DT6 | End.DT4 | End.DT46 | End.B6 | End.B6.Encaps |
            End.BM | End.S | End.AS | End.AM | End.BPF }
OPTIONS := OPTION [ OPTIONS ]
OPTION := { srh SEG6HDR | nh4 ADDR | nh6 ADDR | iif DEV | oif DEV |
            table TABLEID | vrftable TABLEID | endpoint PROGNAME }
IOAM6HDR := trace prealloc type IOAM6_TRACE_TYPE ns IOAM6_NAMESPACE size IOAM6_TRACE_SIZE
ROUTE_GET_FLAGS := [ fibmatch ]"""

RULE_USAGE = """\
Usage: ip rule [ list [ SELECTOR ]]
       ip rule { add | del } SELECTOR ACTION
       ip rule { flush | save | restore }
SELECTOR := [ not ] [ from PREFIX ] [ to PREFIX ] [ tos TOS ]
            [ fwmark FWMARK[/MASK] ]
            [ iif STRING ] [ oif STRING ] [ pref NUMBER ] [ l3mdev ]
            [ uidrange NUMBER-NUMBER ]
            [ ipproto PROTOCOL ]
            [ sport [ NUMBER | NUMBER-NUMBER ]
            [ dport [ NUMBER | NUMBER-NUMBER ] ]
ACTION := [ table TABLE_ID ]
          [ protocol PROTO ]
          [ nat ADDRESS ]
          [ realms [SRCREALM/]DSTREALM ]
          [ goto NUMBER ]
          SUPPRESSOR
SUPPRESSOR := [ suppress_prefixlength NUMBER ]
              [ suppress_ifgroup DEVGROUP ]
TABLE_ID := [ local | main | default | NUMBER ]"""


def _a(addr: int) -> str:
    return str(ipaddress.IPv4Address(addr))


def invarg(msg: str, arg: str) -> None:
    """invarg(): `Error: argument "X" is wrong: MSG` and exit(-1)."""
    fail(255, f'Error: argument "{arg}" is wrong: {msg}\n')


def _num(arg: str) -> int | None:
    """get_u32()/get_unsigned(): strtoul base 0 of the whole word."""
    try:
        n = int(arg, 0)
    except ValueError:
        return None
    return n if 0 <= n < 1 << 32 else None


def get_addr(arg: str) -> int:
    try:
        return int(ipaddress.IPv4Address(arg))
    except ValueError:
        fail(1, f'Error: inet address is expected rather than "{arg}".')


def get_prefix(arg: str) -> tuple[int, int]:
    """get_prefix(): ADDR[/LEN], `default`/`all`/`any` for 0/0; the address is not
    masked (the kernel judges a prefix with host bits)."""
    if arg in ("default", "all", "any"):
        return 0, 0
    addr, slash, plen = arg.partition("/")
    try:
        value = int(ipaddress.IPv4Address(addr))
        length = int(plen) if slash else 32
        if not 0 <= length <= 32 or (slash and not plen.isdigit()):
            raise ValueError(arg)
    except ValueError:
        fail(1, f'Error: inet prefix is expected rather than "{arg}".')
    return value, length


def table_a2n(arg: str) -> int | None:
    for n, name in TABLE_NAMES.items():
        if arg == name:
            return n
    return _num(arg)


def table_n2a(n: int) -> str:
    return TABLE_NAMES.get(n, str(n))


def proto_a2n(arg: str) -> int | None:
    for n, name in PROTO_NAMES.items():
        if arg == name:
            return n
    v = _num(arg)
    return v if v is not None and v < 256 else None


def scope_a2n(arg: str) -> int | None:
    for n, name in SCOPE_NAMES.items():
        if arg == name:
            return n
    v = _num(arg)
    return v if v is not None and v < 256 else None


def type_a2n(arg: str) -> int | None:
    if arg in TYPE_NAMES:
        return TYPE_NAMES.index(arg)
    n = _num(arg)
    return n if n is not None and n < 256 else None


def dsfield_a2n(arg: str) -> int | None:
    for n, name in DSFIELD_NAMES.items():
        if arg == name:
            return n
    try:
        n = int(arg, 16)
    except ValueError:
        return None
    return n if 0 <= n < 256 else None


def dsfield_n2a(n: int) -> str:
    return DSFIELD_NAMES.get(n, f"0x{n:02x}")


def _check(resp: object) -> None:
    """A refused request: the device iproute2 could not resolve, or rtnetlink's answer."""
    code, message = getattr(resp, "errno", 0), getattr(resp, "message", "")
    if code == ENODEV and message.startswith("Cannot find device"):
        fail(1, message)
    if code:
        fail(2, rtnl_error(code, message))


def _host_dev(host: str | None, dev: str | None) -> tuple[str | None, str]:
    if dev is None:
        return host, ""
    return split_dev(dev, host)


# ---- ip address --------------------------------------------------------------------


def address(host: str | None, args: list[str], opts: Opts) -> int:
    return _show_add_del(host, args, opts, addr_show, addr_modify, ADDR_USAGE, "address")


def _show_add_del(
    host: str | None,
    args: list[str],
    opts: Opts,
    show: Callable[[str | None, list[str], Opts], int],
    modify: Callable[..., int],
    usage: str,
    obj: str,
) -> int:
    """The commands `ip address` and `ip rule` share: show (the default), add, delete."""
    if not args:
        return show(host, [], opts)
    cmd, rest = args[0], args[1:]
    if matches(cmd, "add"):
        return modify(host, rest, delete=False)
    if matches(cmd, "delete"):
        return modify(host, rest, delete=True)
    if matches(cmd, "show") or matches(cmd, "lst") or matches(cmd, "list"):
        return show(host, rest, opts)
    if matches(cmd, "help"):
        fail(255, usage)
    fail(255, f'Command "{cmd}" is unknown, try "ip {obj} help".')


def addr_modify(host: str | None, args: list[str], delete: bool) -> int:
    local: tuple[int, int] | None = None
    plen_given = False
    brd: str | None = None
    scope: int | None = None
    label = ""
    flags = 0
    metric = 0
    dev: str | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("broadcast", "brd") or matches(a, "broadcast"):
            brd = _next(args, i)
            i += 1
        elif a == "scope":
            v = _next(args, i)
            i += 1
            scope = scope_a2n(v)
            if scope is None:
                invarg("invalid scope value.", v)
        elif a == "dev":
            dev = _next(args, i)
            i += 1
        elif a == "label":
            label = _next(args, i)
            i += 1
        elif a == "noprefixroute":
            flags |= IFA_F_NOPREFIXROUTE
        elif a in ("metric", "priority", "preference"):
            v = _next(args, i)
            i += 1
            n = _num(v)
            if n is None:
                invarg('"metric" value is invalid\n', v)
                n = 0
            metric = n
        else:
            if a == "local":
                a = _next(args, i)
                i += 1
            if matches(a, "help"):
                fail(255, ADDR_USAGE)
            if local is not None:
                fail(255, f'Error: either "local" is duplicate, or "{a}" is a garbage.')
            local = get_prefix(a)
            plen_given = "/" in a
        i += 1
    if dev is None:
        fail(1, 'Not enough information: "dev" argument is required.')
    if local is None:
        fail(1, "Not enough information: address is required.")
    addr, plen = local
    host, name = split_dev(dev, host)
    with Ip(host) as ip:
        if delete:
            if not plen_given:
                err(
                    "Warning: Executing wildcard deletion to stay compatible with old scripts.\n"
                    f"         Explicitly specify the prefix length ({_a(addr)}/32) to avoid this warning.\n"
                    "         This special behaviour is likely to disappear in further releases,\n"
                    "         fix your scripts!"
                )
            dreq = ip_pb2.DelAddrRequest(device=name, address=addr)
            if plen_given:
                dreq.prefixlen = plen
            _check(ip.call("DelAddr", dreq))
            return 0
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
        broadcast = 0
        if brd in ("+", "-"):
            # ipaddr_modify(): `brd +` is the all-ones host part, `-` the network, for /30 and wider.
            if plen < 31:
                broadcast = addr | (~mask & 0xFFFFFFFF) if brd == "+" else addr & mask
        elif brd is not None:
            broadcast = get_addr(brd)
        req = ip_pb2.AddAddrRequest(
            device=name,
            address=addr,
            prefixlen=plen,
            broadcast=broadcast,
            scope=(RT_SCOPE_HOST if addr >> 24 == 127 else RT_SCOPE_UNIVERSE) if scope is None else scope,
            flags=flags,
            metric=metric,
            label=label,
        )
        _check(ip.call("AddAddr", req))
    return 0


def _ifa_flags(flags: int) -> str:
    s = ""
    if flags & IFA_F_SECONDARY:
        s += "secondary "
    if not flags & 0x80:
        s += "dynamic "
    if flags & IFA_F_NOPREFIXROUTE:
        s += "noprefixroute "
    return s


def format_addr(a: ip_pb2.InterfaceAddress) -> list[str]:
    """print_addrinfo() for one IPv4 address."""
    s = f"    inet {_a(a.address)}/{a.prefixlen} "
    if a.metric:
        s += f"metric {a.metric} "
    if a.broadcast:
        s += f"brd {_a(a.broadcast)} "
    s += f"scope {SCOPE_NAMES.get(a.scope, str(a.scope))} " + _ifa_flags(a.flags) + a.label
    return [s, "       valid_lft forever preferred_lft forever"]


def addr_json(a: ip_pb2.InterfaceAddress) -> dict[str, object]:
    """print_addrinfo() under -j for one IPv4 address; lifetimes are INFINITY_LIFE_TIME."""
    d: dict[str, object] = {"family": "inet", "local": _a(a.address), "prefixlen": a.prefixlen}
    if a.metric:
        d["metric"] = a.metric
    if a.broadcast:
        d["broadcast"] = _a(a.broadcast)
    d["scope"] = SCOPE_NAMES.get(a.scope, str(a.scope))
    # print_ifa_flags()' order: secondary, dynamic (IFA_F_PERMANENT clear), noprefixroute.
    if a.flags & IFA_F_SECONDARY:
        d["secondary"] = True
    if not a.flags & 0x80:
        d["dynamic"] = True
    if a.flags & IFA_F_NOPREFIXROUTE:
        d["noprefixroute"] = True
    if a.label:
        d["label"] = a.label
    d["valid_life_time"] = d["preferred_life_time"] = 0xFFFFFFFF
    return d


def addr_show(host: str | None, args: list[str], opts: Opts) -> int:
    dev: str | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "dev":
            a = _next(args, i)
            i += 1
        elif matches(a, "help"):
            fail(255, ADDR_USAGE)
        if dev is not None:
            fail(255, f'Error: either "dev" is duplicate, or "{a}" is a garbage.')
        dev = a
        i += 1
    host, name = _host_dev(host, dev)
    with Nic(host) as nic:
        links: nic_pb2.ListLinksResponse = nic.call("ListLinks", nic_pb2.ListLinksRequest())
    with Ip(host) as ip:
        addrs: ip_pb2.ListAddrsResponse = ip.call("ListAddrs", ip_pb2.ListAddrsRequest())
    shown = [lk for lk in links.links if not name or lk.name == name]
    if name and not shown:
        fail(1, f'Device "{name}" does not exist.')
    if opts.json:
        rows = []
        for lk in shown:
            d = link_json(lk, linkmode=False)
            d["addr_info"] = [addr_json(ifa) for ifa in addrs.addrs if ifa.ifindex == lk.ifindex]
            if opts.stats:
                d["stats64"] = stats64_json(lk.stats, opts.stats)
            rows.append(d)
        show_json(rows, opts)
        return 0
    for lk in shown:
        head = (
            f"{lk.ifindex}: {lk.name}: <{flags_str(link_flags(lk))}> mtu {lk.mtu} qdisc {link_qdisc(lk)} "
            f"state {operstate(lk)} group default "
        )
        if lk.txqueuelen:
            head += f"qlen {lk.txqueuelen}"
        out(head)
        if lk.flags & 0x8:
            out(f"    link/loopback {mac_str(lk.address)} brd {mac_str(bytes(6))}")
        else:
            out(f"    link/ether {mac_str(lk.address)} brd ff:ff:ff:ff:ff:ff")
        for ifa in addrs.addrs:
            if ifa.ifindex == lk.ifindex:
                for line in format_addr(ifa):
                    out(line)
    return 0


# ---- ip route ----------------------------------------------------------------------


def route(host: str | None, args: list[str], opts: Opts) -> int:
    if not args:
        return route_show(host, [], opts, flush=False)
    cmd, rest = args[0], args[1:]
    if matches(cmd, "add"):
        return route_modify(host, rest, NLM_F_CREATE | NLM_F_EXCL)
    if matches(cmd, "change") or cmd == "chg":
        return route_modify(host, rest, NLM_F_REPLACE)
    if matches(cmd, "replace"):
        return route_modify(host, rest, NLM_F_CREATE | NLM_F_REPLACE)
    if matches(cmd, "prepend"):
        return route_modify(host, rest, NLM_F_CREATE)
    if matches(cmd, "append"):
        return route_modify(host, rest, NLM_F_CREATE | NLM_F_APPEND)
    if matches(cmd, "delete"):
        return route_modify(host, rest, 0, delete=True)
    if matches(cmd, "show") or matches(cmd, "lst") or matches(cmd, "list"):
        return route_show(host, rest, opts, flush=False)
    if matches(cmd, "get"):
        return route_get(host, rest, opts)
    if matches(cmd, "flush"):
        return route_show(host, rest, opts, flush=True)
    if matches(cmd, "help"):
        fail(255, ROUTE_USAGE)
    fail(255, f'Command "{cmd}" is unknown, try "ip route help".')


def route_modify(host: str | None, args: list[str], nlflags: int, delete: bool = False) -> int:
    """iproute_modify(): the request as iproute2 builds it, defaults included."""
    r = ip_pb2.Route(table=RT_TABLE_MAIN, scope=RT_SCOPE_NOWHERE)
    if not delete:
        r.protocol, r.scope, r.type = RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST
    gw_ok = dst_ok = scope_ok = table_ok = False
    dev: str | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "src":
            r.prefsrc = get_addr(_next(args, i))
            i += 1
        elif a == "via":
            v = _next(args, i)
            i += 1
            if v == "inet":
                v = _next(args, i)
                i += 1
            r.gateway = get_addr(v)
            gw_ok = True
        elif a == "tos" or matches(a, "dsfield"):
            v = _next(args, i)
            i += 1
            tos = dsfield_a2n(v)
            if tos is None:
                invarg('"tos" value is invalid\n', v)
                tos = 0
            r.tos = tos
        elif matches(a, "metric") or matches(a, "priority") or a == "preference":
            v = _next(args, i)
            i += 1
            n = _num(v)
            if n is None:
                invarg('"metric" value is invalid\n', v)
                n = 0
            r.priority = n
        elif a == "scope":
            v = _next(args, i)
            i += 1
            s = scope_a2n(v)
            if s is None:
                invarg('invalid "scope" value\n', v)
                s = 0
            r.scope, scope_ok = s, True
        elif a == "mtu":
            v = _next(args, i)
            i += 1
            if v == "lock":
                r.mtu_locked = True
                v = _next(args, i)
                i += 1
            n = _num(v)
            if n is None:
                invarg('"mtu" value is invalid\n', v)
                n = 0
            r.mtu = n
        elif a == "onlink":
            r.flags |= RTNH_F_ONLINK
        elif matches(a, "protocol"):
            v = _next(args, i)
            i += 1
            p = proto_a2n(v)
            if p is None:
                invarg('"protocol" value is invalid\n', v)
                p = 0
            r.protocol = p
        elif matches(a, "table"):
            v = _next(args, i)
            i += 1
            t = table_a2n(v)
            if t is None:
                invarg('"table" value is invalid\n', v)
                t = 0
            r.table, table_ok = t, True
        elif a in ("dev", "oif"):
            dev = _next(args, i)
            i += 1
        else:
            if a == "to":
                a = _next(args, i)
                i += 1
            if (not a[:1].isdigit()) and a in TYPE_NAMES:
                r.type = TYPE_NAMES.index(a)
                a = _next(args, i)
                i += 1
            if matches(a, "help"):
                fail(255, ROUTE_USAGE)
            if dst_ok:
                fail(255, f'Error: either "to" is duplicate, or "{a}" is a garbage.')
            r.dst, r.prefixlen = get_prefix(a)
            dst_ok = True
        i += 1
    if not dst_ok:
        fail(255, ROUTE_USAGE)
    if not table_ok and r.type in (RTN_LOCAL, RTN_BROADCAST, RTN_NAT, RTN_ANYCAST):
        r.table = RT_TABLE_LOCAL
    if not scope_ok:
        if r.type in (RTN_LOCAL, RTN_NAT):
            r.scope = RT_SCOPE_HOST
        elif r.type in (RTN_BROADCAST, RTN_MULTICAST, RTN_ANYCAST):
            r.scope = RT_SCOPE_LINK
        elif r.type in (RTN_UNICAST, 0):
            if delete:
                r.scope = RT_SCOPE_NOWHERE
            elif not gw_ok:
                r.scope = RT_SCOPE_LINK
    if dev is not None:
        host, r.device = split_dev(dev, host)
    with Ip(host) as ip:
        if delete:
            _check(ip.call("DelRoute", ip_pb2.DelRouteRequest(route=r)))
        else:
            _check(ip.call("AddRoute", ip_pb2.AddRouteRequest(route=r, nlm_flags=nlflags)))
    return 0


class RouteFilter:
    def __init__(self) -> None:
        self.table = RT_TABLE_MAIN
        self.dev = ""
        self.proto: int | None = None
        self.scope: int | None = None
        self.type: int | None = None
        self.prefix: tuple[int, int] | None = None
        self.cache = False

    def keep(self, r: ip_pb2.Route) -> bool:
        if self.dev and r.device != self.dev:
            return False
        if self.proto is not None and r.protocol != self.proto:
            return False
        if self.scope is not None and r.scope != self.scope:
            return False
        if self.type is not None and r.type != self.type:
            return False
        if self.prefix is not None:
            addr, plen = self.prefix
            mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
            if r.prefixlen != plen or (r.dst ^ addr) & mask:
                return False
        return True


def format_route(r: ip_pb2.Route, f: RouteFilter | None = None) -> str:
    """print_route() of a FIB entry."""
    f = f or RouteFilter()
    s = ""
    if r.type != RTN_UNICAST and f.type is None:
        s += f"{TYPE_NAMES[r.type] if r.type < len(TYPE_NAMES) else r.type} "
    if r.prefixlen == 32:
        s += f"{_a(r.dst)} "
    elif r.prefixlen == 0 and r.dst == 0:
        s += "default "
    else:
        s += f"{_a(r.dst)}/{r.prefixlen} "
    if r.tos:
        s += f"tos {dsfield_n2a(r.tos)} "
    if r.gateway:
        s += f"via {_a(r.gateway)} "
    if r.device and not f.dev:
        s += f"dev {r.device} "
    if r.table != RT_TABLE_MAIN and not f.table:
        s += f"table {table_n2a(r.table)} "
    if r.protocol != RTPROT_BOOT and f.proto is None:
        s += f"proto {PROTO_NAMES.get(r.protocol, str(r.protocol))} "
    if r.scope != RT_SCOPE_UNIVERSE and f.scope is None:
        s += f"scope {SCOPE_NAMES.get(r.scope, str(r.scope))} "
    if r.prefsrc:
        s += f"src {_a(r.prefsrc)} "
    if r.priority:
        s += f"metric {r.priority} "
    if r.flags & RTNH_F_ONLINK:
        s += "onlink "
    if r.mtu:
        s += "mtu " + ("lock " if r.mtu_locked else "") + f"{r.mtu} "
    return s


def route_json(r: ip_pb2.Route, f: RouteFilter | None = None) -> dict[str, object]:
    """print_route() under -j: the keys format_route() prints words for, what a filter
    fixes left out as there; the flags are always there, a list."""
    f = f or RouteFilter()
    d: dict[str, object] = {}
    if r.type != RTN_UNICAST and f.type is None:
        d["type"] = TYPE_NAMES[r.type] if r.type < len(TYPE_NAMES) else str(r.type)
    if r.prefixlen == 32:
        d["dst"] = _a(r.dst)
    elif r.prefixlen == 0 and r.dst == 0:
        d["dst"] = "default"
    else:
        d["dst"] = f"{_a(r.dst)}/{r.prefixlen}"
    if r.tos:
        d["tos"] = dsfield_n2a(r.tos)
    if r.gateway:
        d["gateway"] = _a(r.gateway)
    if r.device and not f.dev:
        d["dev"] = r.device
    if r.table != RT_TABLE_MAIN and not f.table:
        d["table"] = table_n2a(r.table)
    if r.protocol != RTPROT_BOOT and f.proto is None:
        d["protocol"] = PROTO_NAMES.get(r.protocol, str(r.protocol))
    if r.scope != RT_SCOPE_UNIVERSE and f.scope is None:
        d["scope"] = SCOPE_NAMES.get(r.scope, str(r.scope))
    if r.prefsrc:
        d["prefsrc"] = _a(r.prefsrc)
    if r.priority:
        d["metric"] = r.priority
    d["flags"] = ["onlink"] if r.flags & RTNH_F_ONLINK else []
    if r.mtu:
        # print_rta_metrics(): "lock" is a word of the text only.
        d["metrics"] = [{"mtu": r.mtu}]
    return d


def cached_json(c: ip_pb2.CachedRoute) -> dict[str, object]:
    """A cached route as print_route() prints an RTM_F_CLONED entry under -j."""
    d: dict[str, object] = {"dst": _a(c.dst)}
    if c.gateway:
        d["gateway"] = _a(c.gateway)
    d |= {"dev": c.device, "flags": [], "cache": []}
    if c.expires_sec:
        d["expires"] = c.expires_sec
    if c.mtu:
        d["metrics"] = [{"mtu": c.mtu}]
    return d


def route_show(host: str | None, args: list[str], opts: Opts, flush: bool) -> int:
    """iproute_list_flush_or_save()."""
    if flush and not args:
        fail(255, '"ip route flush" requires arguments.')
    f = RouteFilter()
    i = 0
    while i < len(args):
        a = args[i]
        if matches(a, "table"):
            v = _next(args, i)
            i += 1
            t = table_a2n(v)
            if t is None:
                if v == "all":
                    t = 0
                elif v == "cache":
                    f.cache = True
                    t = 0
                elif v == "help":
                    fail(255, ROUTE_USAGE)
                else:
                    invarg("table id value is invalid\n", v)
                    t = 0
            f.table = t
        elif matches(a, "cached") or matches(a, "cloned"):
            f.cache = True
        elif matches(a, "protocol"):
            v = _next(args, i)
            i += 1
            f.proto = proto_a2n(v)
            if f.proto is None and v != "all":
                invarg('invalid "protocol"\n', v)
        elif matches(a, "scope"):
            v = _next(args, i)
            i += 1
            f.scope = scope_a2n(v)
            if f.scope is None and v != "all":
                invarg('invalid "scope"\n', v)
        elif matches(a, "type"):
            v = _next(args, i)
            i += 1
            f.type = type_a2n(v)
            if f.type is None:
                invarg("node type value is invalid\n", v)
        elif a in ("dev", "oif"):
            v = _next(args, i)
            i += 1
            host, f.dev = split_dev(v, host)
        else:
            if matches(a, "to"):
                a = _next(args, i)
                i += 1
            if matches(a, "exact"):
                a = _next(args, i)
                i += 1
            if matches(a, "help"):
                fail(255, ROUTE_USAGE)
            f.prefix = get_prefix(a)
        i += 1
    with Ip(host) as ip:
        if flush and f.cache:
            ip.call("FlushCache", ip_pb2.FlushCacheRequest())
            return 0
        resp: ip_pb2.ListRoutesResponse = ip.call(
            "ListRoutes", ip_pb2.ListRoutesRequest(table=f.table, cache=f.cache)
        )
        if f.cache:
            cached = [c for c in resp.cached if not f.dev or c.device == f.dev]
            if opts.json:
                show_json([cached_json(c) for c in cached], opts)
                return 0
            for c in cached:
                line = f"{_a(c.dst)} " + (f"via {_a(c.gateway)} " if c.gateway else "") + f"dev {c.device} "
                out(line)
                tail = f"expires {c.expires_sec}sec " if c.expires_sec else ""
                tail += "mtu " + ("lock " if c.mtu_locked else "") + f"{c.mtu} "
                out(f"    cache {tail}")
            return 0
        routes = [r for r in resp.routes if f.keep(r)]
        if flush:
            # iproute2 flushes by dumping and sending RTM_DELROUTE for each entry.
            for r in routes:
                _check(ip.call("DelRoute", ip_pb2.DelRouteRequest(route=r)))
            return 0
    if opts.json:
        show_json([route_json(r, f) for r in routes], opts)
        return 0
    for r in routes:
        out(format_route(r, f))
    return 0


def _cache_flags(flags: int) -> str:
    names = [name for bit, name in RTCF_NAMES if flags & bit]
    return f"<{','.join(names)}> " if names else ""


def format_get(g: ip_pb2.GetRouteResponse) -> str:
    """print_route() of an RTM_F_CLONED answer to RTM_GETROUTE."""
    s = ""
    if g.type != RTN_UNICAST:
        s += f"{TYPE_NAMES[g.type] if g.type < len(TYPE_NAMES) else g.type} "
    s += f"{_a(g.daddr)} "
    if g.saddr:
        s += f"from {_a(g.saddr)} "
    if g.gateway:
        s += f"via {_a(g.gateway)} "
    if g.device:
        s += f"dev {g.device} "
    if g.table and g.table != RT_TABLE_MAIN:
        s += f"table {table_n2a(g.table)} "
    if not g.input and g.prefsrc != g.saddr:
        s += f"src {_a(g.prefsrc)} "
    if g.flags & 0x20000000:
        # RTCF_MULTICAST shares its bit with RTM_F_OFFLOAD_FAILED in rtm_flags.
        s += "rt_offload_failed "
    if g.mark:
        s += f"mark 0x{g.mark:x} " if g.mark >= 16 else f"mark {g.mark} "
    if not g.input:
        s += "uid 0 "
    tail = "    cache " + _cache_flags(g.flags)
    if g.expires_sec:
        tail += f"expires {g.expires_sec}sec "
    if g.mtu:
        tail += "mtu " + ("lock " if g.mtu_locked else "") + f"{g.mtu} "
    if g.input:
        tail += f"iif {g.iif} "
    return s + "\n" + tail


def get_json(g: ip_pb2.GetRouteResponse) -> dict[str, object]:
    """print_route() of the RTM_GETROUTE answer under -j: the cache flags are a list,
    the mtu a metric, iif after them, as the text has them on its cache line."""
    d: dict[str, object] = {}
    if g.type != RTN_UNICAST:
        d["type"] = TYPE_NAMES[g.type] if g.type < len(TYPE_NAMES) else str(g.type)
    d["dst"] = _a(g.daddr)
    if g.saddr:
        d["from"] = _a(g.saddr)
    if g.gateway:
        d["gateway"] = _a(g.gateway)
    if g.device:
        d["dev"] = g.device
    if g.table and g.table != RT_TABLE_MAIN:
        d["table"] = table_n2a(g.table)
    if not g.input and g.prefsrc != g.saddr:
        d["prefsrc"] = _a(g.prefsrc)
    d["flags"] = ["rt_offload_failed"] if g.flags & 0x20000000 else []
    if g.mark:
        d["mark"] = g.mark
    if not g.input:
        d["uid"] = 0
    d["cache"] = [name for bit, name in RTCF_NAMES if g.flags & bit]
    if g.expires_sec:
        d["expires"] = g.expires_sec
    if g.mtu:
        d["metrics"] = [{"mtu": g.mtu}]
    if g.input:
        d["iif"] = g.iif
    return d


def route_get(host: str | None, args: list[str], opts: Opts) -> int:
    """iproute_get()."""
    req = ip_pb2.GetRouteRequest()
    dst_ok = False
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("tos",) or matches(a, "dsfield"):
            v = _next(args, i)
            i += 1
            tos = dsfield_a2n(v)
            if tos is None:
                invarg("TOS value is invalid\n", v)
                tos = 0
            req.tos = tos
        elif matches(a, "from"):
            v = _next(args, i)
            i += 1
            req.saddr = get_prefix(v)[0]
        elif a in ("iif", "oif", "dev"):
            v = _next(args, i)
            i += 1
            host, name = split_dev(v, host)
            if a == "iif":
                req.iif = name
            else:
                req.oif = name
        elif matches(a, "mark"):
            v = _next(args, i)
            i += 1
            n = _num(v)
            if n is None:
                invarg("mark value is invalid\n", v)
                n = 0
            req.mark = n
        else:
            if a == "to":
                a = _next(args, i)
                i += 1
            if matches(a, "help"):
                fail(255, ROUTE_USAGE)
            if dst_ok:
                fail(255, f'Error: either "to" is duplicate, or "{a}" is a garbage.')
            req.daddr = get_prefix(a)[0]
            dst_ok = True
        i += 1
    if not dst_ok:
        fail(255, ROUTE_USAGE)
    with Ip(host) as ip:
        resp: ip_pb2.GetRouteResponse = ip.call("GetRoute", req)
    _check(resp)
    if opts.json:
        show_json([get_json(resp)], opts)
        return 0
    out(format_get(resp))
    return 0


# ---- ip rule -----------------------------------------------------------------------


def rule(host: str | None, args: list[str], opts: Opts) -> int:
    return _show_add_del(host, args, opts, rule_show, rule_modify, RULE_USAGE, "rule")


_RULE_ACTIONS = {"blackhole": 6, "unreachable": 7, "prohibit": 8, "nop": FR_ACT_NOP}


def rule_modify(host: str | None, args: list[str], delete: bool) -> int:
    """iprule_modify(): add is action `lookup` (table main) unless another is given."""
    r = ip_pb2.Rule(action=0 if delete else FR_ACT_TO_TBL)
    priority_given = table_ok = False
    i = 0
    while i < len(args):
        a = args[i]
        if a == "not":
            r.invert = True
        elif a == "from":
            v = _next(args, i)
            i += 1
            r.src, r.src_len = get_prefix(v)
        elif a == "to":
            v = _next(args, i)
            i += 1
            r.dst, r.dst_len = get_prefix(v)
        elif matches(a, "preference") or matches(a, "order") or matches(a, "priority"):
            v = _next(args, i)
            i += 1
            n = _num(v)
            if n is None:
                invarg('Invalid "priority" value\n', v)
                n = 0
            r.priority, priority_given = n, True
        elif a == "tos" or matches(a, "dsfield"):
            v = _next(args, i)
            i += 1
            tos = dsfield_a2n(v)
            if tos is None:
                invarg("TOS value is invalid\n", v)
                tos = 0
            r.tos = tos
        elif a == "fwmark":
            v = _next(args, i)
            i += 1
            mark, slash, mask = v.partition("/")
            m = _num(mark)
            if m is None:
                invarg("fwmark value is invalid\n", v)
                m = 0
            r.fwmark = m
            if slash:
                k = _num(mask)
                if k is None:
                    invarg("fwmask value is invalid\n", mask)
                    k = 0
                r.fwmask = k
        elif matches(a, "table") or a == "lookup":
            v = _next(args, i)
            i += 1
            t = table_a2n(v)
            if t is None:
                invarg("invalid table ID\n", v)
                t = 0
            r.table, table_ok = t, True
            r.action = FR_ACT_TO_TBL
        elif a in ("dev", "iif") or matches(a, "iif"):
            v = _next(args, i)
            i += 1
            r.iif = v
        elif a == "oif":
            r.oif = _next(args, i)
            i += 1
        elif matches(a, "protocol"):
            v = _next(args, i)
            i += 1
            p = proto_a2n(v)
            if p is None:
                invarg('"protocol" value is invalid\n', v)
                p = 0
            r.protocol = p
        elif a in _RULE_ACTIONS or (a == "type" and i + 1 < len(args)):
            if a == "type":
                a = _next(args, i)
                i += 1
            if a not in _RULE_ACTIONS:
                invarg("Failed to parse rule type", a)
            r.action = _RULE_ACTIONS[a]
        elif matches(a, "help"):
            fail(255, RULE_USAGE)
        else:
            invarg("Failed to parse rule type", a)
        i += 1
    if not delete and not table_ok and r.action == FR_ACT_TO_TBL:
        r.table = RT_TABLE_MAIN
    with Ip(host) as ip:
        if delete:
            _check(ip.call("DelRule", ip_pb2.DelRuleRequest(rule=r, priority_given=priority_given)))
        else:
            _check(ip.call("AddRule", ip_pb2.AddRuleRequest(rule=r, priority_given=priority_given)))
    return 0


def format_rule(r: ip_pb2.Rule) -> str:
    """print_rule()."""
    s = f"{r.priority}:\t"
    if r.invert:
        s += "not "
    if r.src_len:
        s += f"from {_a(r.src)}" + (f"/{r.src_len}" if r.src_len != 32 else "")
    else:
        s += "from all"
    if r.dst_len:
        s += f" to {_a(r.dst)}" + (f"/{r.dst_len}" if r.dst_len != 32 else "")
    if r.tos:
        s += f" tos {dsfield_n2a(r.tos)}"
    if r.fwmark or r.fwmask:
        # print_0xhex("%#llx"): 0 prints as 0.
        s += f" fwmark {r.fwmark:#x}" if r.fwmark else " fwmark 0"
        if r.fwmask != 0xFFFFFFFF:
            s += f"/{r.fwmask:#x}" if r.fwmask else "/0"
    if r.iif:
        s += f" iif {r.iif}" + (" [detached]" if r.iif_detached else "")
    if r.oif:
        s += f" oif {r.oif}" + (" [detached]" if r.oif_detached else "")
    if r.table and r.action == FR_ACT_TO_TBL:
        s += f" lookup {table_n2a(r.table)}"
    if r.action == FR_ACT_NOP:
        s += " nop"
    elif r.action != FR_ACT_TO_TBL:
        s += f" {TYPE_NAMES[r.action] if r.action < len(TYPE_NAMES) else r.action}"
    if r.protocol and r.protocol != 2:
        s += f" proto {PROTO_NAMES.get(r.protocol, str(r.protocol))}"
    return s


def rule_json(r: ip_pb2.Rule) -> dict[str, object]:
    """print_rule() under -j: `not`, `nop` and `[detached]` are keys with null values,
    fwmark and fwmask hex strings."""
    d: dict[str, object] = {"priority": r.priority}
    if r.invert:
        d["not"] = None
    if r.src_len:
        d["src"] = _a(r.src)
        if r.src_len != 32:
            d["srclen"] = r.src_len
    else:
        d["src"] = "all"
    if r.dst_len:
        d["dst"] = _a(r.dst)
        if r.dst_len != 32:
            d["dstlen"] = r.dst_len
    if r.tos:
        d["tos"] = dsfield_n2a(r.tos)
    if r.fwmark or r.fwmask:
        d["fwmark"] = f"{r.fwmark:#x}" if r.fwmark else "0"
        if r.fwmask != 0xFFFFFFFF:
            d["fwmask"] = f"{r.fwmask:#x}" if r.fwmask else "0"
    if r.iif:
        d["iif"] = r.iif
        if r.iif_detached:
            d["iif_detached"] = None
    if r.oif:
        d["oif"] = r.oif
        if r.oif_detached:
            d["oif_detached"] = None
    if r.table and r.action == FR_ACT_TO_TBL:
        d["table"] = table_n2a(r.table)
    if r.action == FR_ACT_NOP:
        d["nop"] = None
    elif r.action != FR_ACT_TO_TBL:
        d["action"] = TYPE_NAMES[r.action] if r.action < len(TYPE_NAMES) else str(r.action)
    if r.protocol and r.protocol != 2:
        d["protocol"] = PROTO_NAMES.get(r.protocol, str(r.protocol))
    return d


def rule_show(host: str | None, args: list[str], opts: Opts) -> int:
    if args and matches(args[0], "help"):
        fail(255, RULE_USAGE)
    with Ip(host) as ip:
        resp: ip_pb2.ListRulesResponse = ip.call("ListRules", ip_pb2.ListRulesRequest())
    if opts.json:
        show_json([rule_json(r) for r in resp.rules], opts)
        return 0
    for r in resp.rules:
        out(format_rule(r))
    return 0
