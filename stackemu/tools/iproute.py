"""`stackemu ip`: iproute2's `ip link` and `ip neigh` against a host's NicService.

Parsing, messages and exit codes follow iproute2 6.1 (ip/iplink.c, ip/ipaddress.c,
ip/ipneigh.c, lib/utils.c); the output is what `ip` prints for the same kernel state.
"""

from __future__ import annotations

import errno as E
import ipaddress
from collections.abc import Sequence

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
from stackemu.nic.v1 import nic_pb2
from stackemu.tools.common import Nic, fail, matches, out, rtnl_error, split_dev

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
Usage: stackemu ip [ --host HOST ] [ -s[tatistics] ] OBJECT { COMMAND | help }
where  OBJECT := { link | neighbour }"""

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

# Objects `ip` knows that belong to other layers or are not built yet.
_OTHER_OBJECTS = (
    "address",
    "addrlabel",
    "maddress",
    "route",
    "rule",
    "ntable",
    "tunnel",
    "tuntap",
    "monitor",
    "netns",
    "netconf",
    "nexthop",
)


def main(host: str | None, argv: Sequence[str]) -> int:
    args = list(argv)
    stats = 0
    while args and args[0].startswith("-") and len(args[0]) > 1:
        opt = args.pop(0)
        # ip.c: "--stats" is "-stats"
        o = opt[1:] if opt.startswith("--") else opt
        if matches(o, "-stats") or matches(o, "-statistics"):
            stats += 1
        elif o == "-4":
            pass  # the emulated stack is IPv4 only
        elif matches(o, "-help"):
            fail(255, IP_USAGE)
        else:
            fail(255, f'Option "{opt}" is unknown, try "ip -help".')
    if not args:
        fail(255, IP_USAGE)
    obj, rest = args[0], args[1:]
    if matches(obj, "neighbor") or matches(obj, "neighbour"):
        return neigh(host, rest, stats)
    if matches(obj, "link"):
        return link(host, rest, stats)
    if matches(obj, "help"):
        fail(255, IP_USAGE)
    for other in _OTHER_OBJECTS:
        if matches(obj, other):
            fail(255, f'stackemu ip: "ip {other}" is not part of the NIC tools; they have link and neigh.')
    fail(255, f'Object "{obj}" is unknown, try "ip help".')


def _next(args: list[str], i: int) -> str:
    """NEXT_ARG(): the word after args[i], or iproute2's incomplete-command exit."""
    if i + 1 >= len(args):
        fail(255, 'Command line is not complete. Try option "help"')
    return args[i + 1]


# ---- ip link ---------------------------------------------------------------------


def link(host: str | None, args: list[str], stats: int) -> int:
    if not args:
        return link_show(host, [], stats)
    cmd, rest = args[0], args[1:]
    # do_iplink()'s order, so "s" is set as in iproute2.
    if matches(cmd, "add"):
        fail(255, "stackemu ip: ip link add is not emulated: `stackemu up` makes the devices.")
    if matches(cmd, "set") or matches(cmd, "change"):
        return link_set(host, rest)
    if matches(cmd, "replace") or matches(cmd, "delete"):
        fail(255, f"stackemu ip: ip link {cmd} is not emulated: `stackemu up` makes the devices.")
    if matches(cmd, "show") or matches(cmd, "lst") or matches(cmd, "list"):
        return link_show(host, rest, stats)
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


def link_show(host: str | None, args: list[str], stats: int) -> int:
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
    for lk in links:
        if up_only and not lk.flags & IFF_UP:
            continue
        out(format_link(lk, stats))
    return 0


def link_flags(lk: nic_pb2.Link) -> int:
    """dev_get_flags(): IFF_RUNNING and IFF_LOWER_UP come from the carrier of a running
    device, whatever the stored flags say."""
    flags = lk.flags & ~(IFF_RUNNING | IFF_LOWER_UP)
    if flags & IFF_UP and lk.carrier:
        flags |= IFF_RUNNING | IFF_LOWER_UP
    return flags


def flags_str(flags: int) -> str:
    names = []
    if flags & IFF_UP and not flags & IFF_RUNNING:
        names.append("NO-CARRIER")
    flags &= ~IFF_RUNNING
    for name, bit in _FLAG_NAMES:
        if flags & bit:
            names.append(name)
            flags &= ~bit
    s = ",".join(names)
    if flags:
        s += ("," if s else "") + f"{flags:x}"
    return s


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


def neigh(host: str | None, args: list[str], stats: int) -> int:
    if not args:
        return neigh_show(host, [], stats, flush=False)
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
        return neigh_show(host, rest, stats, flush=False)
    if matches(cmd, "flush"):
        return neigh_show(host, rest, stats, flush=True)
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


def nud_str(state: int) -> str:
    return "".join(f"{name} " for name, bit in _NUD_NAMES if state & bit)


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


def neigh_show(host: str | None, args: list[str], stats: int, flush: bool) -> int:
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
            return _flush(nic, name, stats)
        resp: nic_pb2.ListNeighboursResponse = nic.call(
            "ListNeighbours", nic_pb2.ListNeighboursRequest(device=name)
        )
    for n in resp.neighbours:
        if name and n.device != name:
            continue
        if not state_filter & n.state and (n.state or not state_filter & 0x100):
            continue
        if prefix is not None and ipaddress.IPv4Address(n.address) not in prefix:
            continue
        out(format_neigh(n, show_dev=not name, stats=stats))
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
