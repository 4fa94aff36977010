"""`stackemu ss`: iproute2 6.x ss (misc/ss.c) over a host's UDP and UDP-Lite sockets.

The sockets come from the UDP service's ListSockets (what inet_diag's udp_diag dump
reports), their owners from the socket service's ListProcesses (what ss reads from
/proc/PID/fd). Options, state filters and the column layout are ss's: the same
buffer of fields (out(), field_next(), render()) with widths measured from the
contents, padded to the terminal's width only on a terminal. The emulated host has
UDP and UDP-Lite sockets only, so other tables (-t, -x, -w, ...) list nothing;
ss itself cannot ask for UDP-Lite sockets, `-A udplite` (or --udplite) is the
emulator's way to show them (Netid `udplite`). Without an inode, `ino:` is the
socket's id in the UDP layer; the emulated processes have no cgroup.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
import grpc

from services.core.wire.ipv4 import ip_to_str
from stackemu.nic.v1 import nic_pb2
from stackemu.socket.v1 import socket_pb2, socket_pb2_grpc
from stackemu.tools.common import Nic, Service, Udp, err, fail, has_service, out
from stackemu.udp.v1 import udp_pb2

USAGE = """Usage: stackemu ss [ --host HOST ] [ OPTIONS ]
       stackemu ss [ --host HOST ] [ OPTIONS ] [ FILTER ]
   -h, --help          this message
   -V, --version       output version information
   -n, --numeric       don't resolve service names
   -r, --resolve       resolve host names (the emulator prints addresses)
   -a, --all           display all sockets
   -l, --listening     display listening sockets
   -o, --options       show timer information
   -e, --extended      show detailed socket information
   -m, --memory        show socket memory usage
   -p, --processes     show process using socket
   -T, --threads       show thread using socket
   -i, --info          show internal TCP information

   -4, --ipv4          display only IP version 4 sockets
   -6, --ipv6          display only IP version 6 sockets
   -t, --tcp           display only TCP sockets
   -u, --udp           display only UDP sockets
   -w, --raw           display only RAW sockets
   -x, --unix          display only Unix domain sockets
       --udplite       display only UDP-Lite sockets (the emulator's)
   -f, --family=FAMILY display sockets of type FAMILY
       FAMILY := {inet|inet6|link|unix|netlink}

   -H, --no-header     Suppress header line
   -O, --oneline       socket's data printed on a single line
   -j, --json          the sockets as JSON (the emulator's)

   -A, --query=QUERY, --socket=QUERY
       QUERY := {all|inet|tcp|udp|udplite|raw|unix|packet|netlink}[,QUERY]

       FILTER := [ state STATE-FILTER ] [ exclude STATE-FILTER ]
       STATE-FILTER := {all|connected|synchronized|bucket|big|TCP-STATES}
         TCP-STATES := {established|syn-sent|syn-recv|fin-wait-{1,2}|time-wait|closed|
                        close-wait|last-ack|listening|closing}
       UDP sockets are `established` (ESTAB, connected) or `closed` (UNCONN).

Examples:
   stackemu ss -uanpm                  every UDP socket, its owner and its memory
   stackemu ss --host bob -ul          bob's bound, unconnected UDP sockets
   stackemu ss -uan state established  the connected ones
   stackemu ss -A udp,udplite -an      UDP and UDP-Lite sockets, Netid column"""

VERSION = "ss utility, iproute2-6.1.0 (stackemu)"

IPPROTO_UDP = 17
IPPROTO_UDPLITE = 136
AF_INET = 2

# The SS_* states (the TCP_* numbers), as ss names and filters them.
SS_ESTABLISHED, SS_SYN_SENT, SS_SYN_RECV, SS_FIN_WAIT1, SS_FIN_WAIT2 = 1, 2, 3, 4, 5
SS_TIME_WAIT, SS_CLOSE, SS_CLOSE_WAIT, SS_LAST_ACK, SS_LISTEN, SS_CLOSING = 6, 7, 8, 9, 10, 11
SS_MAX = 12
SS_ALL = (1 << SS_MAX) - 1
SS_CONN = SS_ALL & ~((1 << SS_LISTEN) | (1 << SS_CLOSE) | (1 << SS_TIME_WAIT) | (1 << SS_SYN_RECV))

SSTATE_NAME = {
    0: "UNKNOWN",
    SS_ESTABLISHED: "ESTAB",
    SS_SYN_SENT: "SYN-SENT",
    SS_SYN_RECV: "SYN-RECV",
    SS_FIN_WAIT1: "FIN-WAIT-1",
    SS_FIN_WAIT2: "FIN-WAIT-2",
    SS_TIME_WAIT: "TIME-WAIT",
    SS_CLOSE: "UNCONN",
    SS_CLOSE_WAIT: "CLOSE-WAIT",
    SS_LAST_ACK: "LAST-ACK",
    SS_LISTEN: "LISTEN",
    SS_CLOSING: "CLOSING",
}
# scan_state()'s sstate_namel[].
_SSTATE_NAMEL = {
    "established": SS_ESTABLISHED,
    "syn-sent": SS_SYN_SENT,
    "syn-recv": SS_SYN_RECV,
    "fin-wait-1": SS_FIN_WAIT1,
    "fin-wait-2": SS_FIN_WAIT2,
    "time-wait": SS_TIME_WAIT,
    "unconnected": SS_CLOSE,
    "close-wait": SS_CLOSE_WAIT,
    "last-ack": SS_LAST_ACK,
    "listening": SS_LISTEN,
    "closing": SS_CLOSING,
}

# The socket tables (ss's *_DB) with the states each shows by default (default_dbs[])
# and its family; udplite is the emulator's.
_FAM = {"inet": 2, "inet6": 10, "unix": 1, "link": 17, "netlink": 16}
_DB_STATES = {
    "tcp": SS_CONN,
    "mptcp": SS_CONN,
    "dccp": SS_CONN,
    "sctp": SS_CONN,
    "udp": 1 << SS_ESTABLISHED,
    "udplite": 1 << SS_ESTABLISHED,
    "raw": 1 << SS_ESTABLISHED,
    "u_dgr": 1 << SS_CLOSE,
    "u_str": SS_CONN,
    "u_seq": SS_CONN,
    "p_raw": 1 << SS_CLOSE,
    "p_dgr": 1 << SS_CLOSE,
    "nl": 1 << SS_CLOSE,
}
_INET_DBS = ("tcp", "mptcp", "udp", "dccp", "sctp", "raw")
_DB_FAMILIES = {db: (1 << 2) | (1 << 10) for db in (*_INET_DBS, "udplite")}
_DB_FAMILIES.update({"u_dgr": 1 << 1, "u_str": 1 << 1, "u_seq": 1 << 1, "p_raw": 1 << 17, "p_dgr": 1 << 17})
_DB_FAMILIES["nl"] = 1 << 16
# default_afs[]: the tables and states a family brings.
_AF_DBS = {
    2: (_INET_DBS, SS_CONN),
    10: (_INET_DBS, SS_CONN),
    1: (("u_str", "u_dgr", "u_seq"), SS_CONN),
    17: (("p_raw", "p_dgr"), 1 << SS_CLOSE),
    16: (("nl",), 1 << SS_CLOSE),
}
# filter_db_parse()'s names (the ones this emulator has tables for).
_QUERIES = {
    "all": ("udp", "dccp", "tcp", "mptcp", "raw", "u_str", "u_dgr", "u_seq", "p_raw", "p_dgr", "nl", "sctp"),
    "inet": ("udp", "dccp", "tcp", "mptcp", "sctp", "raw"),
    "udp": ("udp",),
    "udplite": ("udplite",),
    "dccp": ("dccp",),
    "tcp": ("tcp",),
    "mptcp": ("mptcp",),
    "sctp": ("sctp",),
    "raw": ("raw",),
    "unix": ("u_str", "u_dgr", "u_seq"),
    "unix_stream": ("u_str",),
    "u_str": ("u_str",),
    "unix_dgram": ("u_dgr",),
    "u_dgr": ("u_dgr",),
    "unix_seqpacket": ("u_seq",),
    "u_seq": ("u_seq",),
    "packet": ("p_raw", "p_dgr"),
    "packet_raw": ("p_raw",),
    "p_raw": ("p_raw",),
    "packet_dgram": ("p_dgr",),
    "p_dgr": ("p_dgr",),
    "netlink": ("nl",),
}

_LONG = {
    "--numeric": "n",
    "--resolve": "r",
    "--options": "o",
    "--extended": "e",
    "--memory": "m",
    "--info": "i",
    "--processes": "p",
    "--threads": "T",
    "--tcp": "t",
    "--udp": "u",
    "--raw": "w",
    "--unix": "x",
    "--all": "a",
    "--listening": "l",
    "--ipv4": "4",
    "--ipv6": "6",
    "--packet": "0",
    "--version": "V",
    "--help": "h",
    "--no-header": "H",
    "--oneline": "O",
    "--json": "j",
}
_WITH_ARG = {"--family": "f", "--query": "A", "--socket": "A"}
_SHORT_FLAGS = "hnroempTiutwx4l0aVHOj6"
_UNSUPPORTED = "sbEKDFNZzSMd"


class Socket(Service):
    layer, title = "socket", "socket"

    def make_stub(self, channel: grpc.Channel) -> Any:
        return socket_pb2_grpc.SocketServiceStub(channel)


@dataclass
class Filter:
    """ss's struct filter: tables, families and states."""

    dbs: set[str] = field(default_factory=set)
    families: int = 0
    states: int = 0
    do_default: bool = True

    def db_set(self, db: str) -> None:
        """filter_db_set()."""
        self.states |= _DB_STATES[db]
        self.dbs.add(db)
        self.do_default = False

    def af_set(self, af: int) -> None:
        """filter_af_set()."""
        self.states |= _AF_DBS[af][1]
        self.families |= 1 << af
        self.do_default = False

    def merge_defaults(self) -> None:
        """filter_merge_defaults()."""
        for db in list(self.dbs):
            if not _DB_FAMILIES[db] & self.families:
                self.families |= _DB_FAMILIES[db]
        for af, (dbs, _) in _AF_DBS.items():
            # UDP-Lite counts as one of inet's tables, though not one it brings.
            mine = {*dbs, "udplite"} if "udp" in dbs else set(dbs)
            if self.families & (1 << af) and not self.dbs & mine:
                self.dbs |= set(dbs)


@dataclass
class Options:
    numeric: bool = False
    details: bool = False
    mem: bool = False
    processes: bool = False
    header: bool = True
    oneline: bool = False
    as_json: bool = False
    filter: Filter = field(default_factory=Filter)


def scan_state(name: str) -> int:
    """scan_state(): one state name, or a group of them."""
    s = name.lower()
    if s in ("close", "closed"):
        return 1 << SS_CLOSE
    if s == "syn-rcv":
        return 1 << SS_SYN_RECV
    groups = {
        "all": SS_ALL,
        "connected": SS_ALL & ~((1 << SS_CLOSE) | (1 << SS_LISTEN)),
        "synchronized": SS_ALL & ~((1 << SS_CLOSE) | (1 << SS_LISTEN) | (1 << SS_SYN_SENT)),
        "bucket": (1 << SS_SYN_RECV) | (1 << SS_TIME_WAIT),
        "big": SS_ALL & ~((1 << SS_SYN_RECV) | (1 << SS_TIME_WAIT)),
    }
    if s in groups:
        return groups[s]
    if s in _SSTATE_NAMEL:
        return 1 << _SSTATE_NAMEL[s]
    fail(255, f"ss: wrong state name: {name}")


def _usage_error() -> int:
    err(USAGE)
    return 255


def parse(argv: Sequence[str]) -> Options | int:
    """getopt_long() over ss's options, then the state filter words; an exit code
    when ss would stop there (help, version, a usage error)."""
    o = Options()
    f = o.filter
    state_filter = 0
    saw_query = False
    args = list(argv)
    rest: list[str] = []

    def opt(c: str, arg: str | None) -> int | None:
        nonlocal state_filter, saw_query
        if c == "h":
            out(USAGE)
            return 0
        if c == "V":
            out(VERSION)
            return 0
        if c == "n":
            o.numeric = True
        elif c == "e":
            o.details = True
        elif c == "m":
            o.mem = True
        elif c in "pT":
            o.processes = True
        elif c == "u":
            f.db_set("udp")
        elif c == "t":
            f.db_set("tcp")
        elif c == "w":
            f.db_set("raw")
        elif c == "x":
            f.af_set(_FAM["unix"])
        elif c == "a":
            state_filter = SS_ALL
        elif c == "l":
            state_filter = (1 << SS_LISTEN) | (1 << SS_CLOSE)
        elif c == "4":
            f.af_set(_FAM["inet"])
        elif c == "6":
            f.af_set(_FAM["inet6"])
        elif c == "0":
            f.af_set(_FAM["link"])
        elif c == "H":
            o.header = False
        elif c == "O":
            o.oneline = True
        elif c == "j":
            o.as_json = True
        elif c == "L":
            f.db_set("udplite")
        elif c == "f":
            assert arg is not None
            if arg == "help":
                out(USAGE)
                return 0
            if arg not in _FAM:
                err(f'ss: "{arg}" is invalid family')
                return _usage_error()
            f.af_set(_FAM[arg])
        elif c == "A":
            assert arg is not None
            if not saw_query:
                f.dbs = set()
                state_filter = state_filter or SS_CONN
                saw_query = True
                f.do_default = False
            for name in arg.split(","):
                if name not in _QUERIES:
                    err(f'ss: "{name}" is illegal socket table id')
                    return _usage_error()
                for db in _QUERIES[name]:
                    f.db_set(db)
        # -r (no resolver for emulated addresses), -o and -i (no TCP timers or info
        # for UDP sockets) change nothing here.
        return None

    while args:
        a = args.pop(0)
        if a == "--":
            rest += args
            break
        if a == "--udplite":
            code = opt("L", None)
        elif a.startswith("--"):
            name, eq, value = a.partition("=")
            if name in _LONG and not eq:
                code = opt(_LONG[name], None)
            elif name in _WITH_ARG:
                if not eq:
                    if not args:
                        err(f"ss: option '{name}' requires an argument")
                        return _usage_error()
                    value = args.pop(0)
                code = opt(_WITH_ARG[name], value)
            else:
                err(f"ss: unrecognized option '{a}'")
                return _usage_error()
        elif a.startswith("-") and len(a) > 1:
            code = None
            i = 1
            while i < len(a) and code is None:
                c = a[i]
                i += 1
                if c in "fA":
                    value = a[i:]
                    if not value:
                        if not args:
                            err(f"ss: option requires an argument -- '{c}'")
                            return _usage_error()
                        value = args.pop(0)
                    code = opt(c, value)
                    break
                if c in _UNSUPPORTED:
                    err(f"ss: -{c} is not supported by the emulator")
                    return 255
                if c not in _SHORT_FLAGS:
                    err(f"ss: invalid option -- '{c}'")
                    return _usage_error()
                code = opt(c, None)
        else:
            rest.append(a)
            continue
        if code is not None:
            return code
    saw_states = False
    while rest:
        word = rest.pop(0)
        if word not in ("state", "exclude", "excl"):
            err(f"ss: the emulator takes state filters only, not '{word}'")
            return 255
        if not rest:
            err('Command line is not complete. Try option "help"')
            return 255
        name = rest.pop(0)
        if word == "state":
            if not saw_states:
                state_filter = 0
            state_filter |= scan_state(name)
        else:
            if not saw_states:
                state_filter = SS_ALL
            state_filter &= ~scan_state(name)
        saw_states = True
    if f.do_default:
        state_filter = state_filter or SS_CONN
        for db in _QUERIES["all"]:
            f.dbs.add(db)
    if state_filter:
        f.states = state_filter
    f.merge_defaults()
    return o


# The columns of ss's output (struct column columns[]): alignment, header, left delimiter.
LEFT, RIGHT = 0, 1
COLUMNS = (
    (LEFT, "Netid", ""),
    (LEFT, "State", " "),
    (LEFT, "Recv-Q", " "),
    (LEFT, "Send-Q", " "),
    (RIGHT, "Local Address:", " "),
    (LEFT, "Port", ""),
    (RIGHT, "Peer Address:", " "),
    (LEFT, "Port", ""),
    (LEFT, "Process", ""),
    (LEFT, "", ""),
)
COL_NETID, COL_STATE, COL_RECVQ, COL_SENDQ, COL_ADDR, COL_SERV = 0, 1, 2, 3, 4, 5
COL_RADDR, COL_RSERV, COL_PROC, COL_EXT = 6, 7, 8, 9
COL_MAX = len(COLUMNS)


class Fields:
    """ss's output buffer: out() appends to the current field, field_next() closes it
    (measuring it) and moves on; render() lays the fields out. The field still open
    when render() runs is printed but, as in ss, not measured."""

    def __init__(self, disabled: set[int]) -> None:
        self.disabled = disabled
        self.max_len = [0] * COL_MAX
        self.tokens: list[str] = []
        self.cur: str | None = None
        self.current = 0

    def out(self, text: str) -> None:
        if self.current in self.disabled:
            return
        self.cur = (self.cur or "") + text

    def _flush(self) -> None:
        if self.current in self.disabled:
            return
        token = self.cur or ""
        self.max_len[self.current] = max(self.max_len[self.current], len(token))
        self.tokens.append(token)
        self.cur = ""

    def next(self) -> None:
        self._flush()
        self.current = 0 if self.current == COL_MAX - 1 else self.current + 1

    def set(self, col: int) -> None:
        while self.current != col:
            self.next()

    def header(self) -> None:
        """print_header()."""
        while self.current != COL_MAX - 1:
            self.out(COLUMNS[self.current][1])
            self.next()

    def _widths(self, screen: int | None) -> list[int]:
        """render_calc_width(): measured widths, spread over the screen's width on a
        terminal (screen is None when stdout is not one)."""
        width = [0] * COL_MAX
        first = True
        for c in range(COL_MAX):
            if c in self.disabled:
                continue
            m = self.max_len[c]
            width[c] = m + len(COLUMNS[c][2]) if not first and m else m
            if screen is not None:
                width[c] = min(width[c], screen)
            if width[c]:
                first = False
        if screen is None:
            return width
        length = linecols = 0
        eol = -1
        c = 0
        while c < COL_MAX:
            if not width[c]:
                c += 1
                continue
            linecols += 1
            length += width[c]
            last = not any(width[t] for t in range(c + 1, COL_MAX))
            if not last and length < screen:
                c += 1
                continue
            if length != screen:
                if length > screen:
                    length -= width[c]
                    c -= 1
                    linecols -= 1
                pad = screen - length
                spacing, rem = divmod(pad, linecols) if linecols else (0, 0)
                for t in range(c, eol, -1):
                    if not width[t]:
                        continue
                    width[t] += spacing
                    if rem:
                        width[t] += 1
                        rem -= 1
            eol = c
            length = linecols = 0
            c += 1
        return width

    def render(self, screen: int | None) -> str:
        tokens = self.tokens + ([self.cur] if self.cur is not None else [])
        if not tokens:
            return ""
        width = self._widths(screen)
        parts: list[str] = []
        f = 0
        while not width[f]:
            f += 1
        line_started = False
        for token in tokens:
            align, _, ldelim = COLUMNS[f]
            printed = 0
            if line_started:
                parts.append(ldelim)
                printed = len(ldelim)
            line_started = True
            if width[f] and align == RIGHT:
                s = width[f] - len(token) - printed
                if s > 0:
                    parts.append(" " * s)
                    printed += s
            parts.append(token)
            printed += len(token)
            if width[f] and align == LEFT and width[f] - printed > 0:
                parts.append(" " * (width[f] - printed))
            while True:
                if f == COL_MAX - 1:
                    parts.append("\n")
                    f = 0
                    line_started = False
                else:
                    f += 1
                if f not in self.disabled:
                    break
        if line_started:
            parts.append("\n")
        return "".join(parts)


@dataclass
class Owner:
    comm: str
    pid: int
    fd: int


def _owners(host: str | None) -> dict[int, list[Owner]]:
    """user_ent_hash_build() + find_entry(): the processes holding each socket, in
    the order ss lists them (each new one put at the head of its hash chain)."""
    owners: dict[int, list[Owner]] = {}
    if not has_service("socket", host):
        return owners
    with Socket(host) as sock:
        resp: socket_pb2.ListProcessesResponse = sock.call("ListProcesses", socket_pb2.ListProcessesRequest())
    for p in resp.processes:
        for f in p.files:
            owners.setdefault(f.sk, []).insert(0, Owner(p.comm, p.pid, f.fd))
    return owners


def _devices(host: str | None) -> dict[int, str]:
    if not has_service("nic", host):
        return {}
    with Nic(host) as nic:
        resp: nic_pb2.ListLinksResponse = nic.call("ListLinks", nic_pb2.ListLinksRequest())
    return {lk.ifindex: lk.name for lk in resp.links}


class Services:
    """resolve_service(): a port's name from the services database, unless -n, for
    ports outside the host's ephemeral range (ip_local_port_range)."""

    def __init__(self, numeric: bool, port_range: tuple[int, int]) -> None:
        self.numeric = numeric
        self.low, self.high = port_range

    def __call__(self, port: int) -> str:
        if port == 0:
            return "*"
        if self.numeric or self.low <= port <= self.high:
            return str(port)
        try:
            return socket.getservbyport(port, "udp")
        except OSError:
            return str(port)


def _port_range(udp: Udp) -> tuple[int, int]:
    """is_ephemeral()'s range; 1024-4999 when the file cannot be read, as ss has it."""
    try:
        resp: udp_pb2.GetSysctlResponse = udp.stub.GetSysctl(
            udp_pb2.GetSysctlRequest(names=["net.ipv4.ip_local_port_range"]), timeout=5.0
        )
        low, high = (int(v) for v in resp.values["net.ipv4.ip_local_port_range"].split())
        return low, high
    except (grpc.RpcError, KeyError, ValueError):
        return 1024, 4999


def shown(o: Options, sockets: Sequence[udp_pb2.SocketInfo]) -> Iterator[udp_pb2.SocketInfo]:
    """The sockets the filter lets through, in the dump's order: udp_show() before the
    emulator's UDP-Lite; only those in the hash tables, of the asked states."""
    f = o.filter
    if not f.families & (1 << AF_INET):
        return
    for db, proto in (("udp", IPPROTO_UDP), ("udplite", IPPROTO_UDPLITE)):
        if db not in f.dbs:
            continue
        for s in sockets:
            if s.protocol == proto and s.local_port and f.states & (1 << s.state):
                yield s


def _netid(s: udp_pb2.SocketInfo) -> str:
    return "udplite" if s.protocol == IPPROTO_UDPLITE else "udp"


def _skmem(s: udp_pb2.SocketInfo) -> dict[str, int]:
    """sk_meminfo[] in print_skmeminfo()'s order."""
    return {
        "r": s.rmem_alloc,
        "rb": s.rcvbuf,
        "t": s.wmem_alloc,
        "tb": s.sndbuf,
        "f": s.forward_alloc,
        "w": s.wmem_queued,
        "o": s.omem_alloc,
        "bl": s.backlog,
        "d": s.drops,
    }


def _shutdown(mask: int) -> str:
    return f"{'-' if mask & 1 else '<'}-{'-' if mask & 2 else '>'}"


def render(
    o: Options,
    sockets: Sequence[udp_pb2.SocketInfo],
    owners: dict[int, list[Owner]],
    devices: dict[int, str],
    service: Services,
    screen: int | None = None,
) -> str:
    """What ss prints: the header, then inet_show_sock() for each socket shown."""
    f = o.filter
    disabled = set()
    if len(f.dbs) <= 1:
        disabled.add(COL_NETID)
    if not f.states & (f.states - 1):
        disabled.add(COL_STATE)
    b = Fields(disabled)
    if o.header:
        b.header()
    for s in shown(o, sockets):
        b.set(COL_NETID)
        b.out(_netid(s))
        b.set(COL_STATE)
        b.out(SSTATE_NAME.get(s.state, "UNKNOWN"))
        b.set(COL_RECVQ)
        b.out(f"{s.rqueue:<6d}")
        b.set(COL_SENDQ)
        b.out(f"{s.wmem_alloc:<6d}")
        b.set(COL_ADDR)
        dev = f"%{devices.get(s.bound_dev_if, f'if{s.bound_dev_if}')}" if s.bound_dev_if else ""
        for addr, port, ifname in ((s.local_addr, s.local_port, dev), (s.remote_addr, s.remote_port, "")):
            b.out(f"{ip_to_str(addr)}{ifname}:")
            b.next()
            b.out(service(port))
            b.next()
        if o.processes and owners.get(s.sk):
            users = ",".join(f'("{u.comm}",pid={u.pid},fd={u.fd})' for u in owners[s.sk])
            b.out(f" users:({users})")
        if o.details:
            if s.uid:
                b.out(f" uid:{s.uid}")
            b.out(f" ino:{s.sk}")
            b.out(f" sk:{s.cookie:x}")
            if s.mark:
                b.out(f" fwmark:0x{s.mark:x}")
            b.out(f" {_shutdown(s.shutdown)}")
        if o.mem:
            if not o.oneline:
                b.out("\n\t")
            m = _skmem(s)
            b.out(" skmem:(" + ",".join(f"{k}{v}" for k, v in m.items()) + ")")
    return b.render(screen)


def to_json(
    o: Options,
    sockets: Sequence[udp_pb2.SocketInfo],
    owners: dict[int, list[Owner]],
    devices: dict[int, str],
) -> list[dict[str, Any]]:
    """The sockets ss would print, as objects (the emulator's: ss has no JSON)."""
    rows = []
    for s in shown(o, sockets):
        row: dict[str, Any] = {
            "netid": _netid(s),
            "state": SSTATE_NAME.get(s.state, "UNKNOWN"),
            "recv_q": s.rqueue,
            "send_q": s.wmem_alloc,
            "local": {"address": ip_to_str(s.local_addr), "port": s.local_port},
            "peer": {"address": ip_to_str(s.remote_addr), "port": s.remote_port},
        }
        if s.bound_dev_if:
            row["local"]["dev"] = devices.get(s.bound_dev_if, f"if{s.bound_dev_if}")
        if o.processes:
            row["users"] = [{"comm": u.comm, "pid": u.pid, "fd": u.fd} for u in owners.get(s.sk, [])]
        if o.details:
            row.update(uid=s.uid, ino=s.sk, sk=s.cookie, fwmark=s.mark, shutdown=_shutdown(s.shutdown))
        if o.mem:
            row["skmem"] = _skmem(s)
        rows.append(row)
    return rows


def main(host: str | None, argv: Sequence[str]) -> int:
    parsed = parse(argv)
    if isinstance(parsed, int):
        return parsed
    o = parsed
    f = o.filter
    if not f.states:
        err("ss: no socket states to show with such filter.")
        return 0
    with Udp(host) as udp:
        resp: udp_pb2.ListSocketsResponse = udp.call("ListSockets", udp_pb2.ListSocketsRequest())
        service = Services(True, (0, 0)) if o.numeric else Services(False, _port_range(udp))
    sockets = list(resp.sockets)
    owners = _owners(host) if o.processes else {}
    devices = _devices(host) if any(s.bound_dev_if for s in sockets) else {}
    if o.as_json:
        out(json.dumps(to_json(o, sockets, owners, devices), indent=2))
        return 0
    screen = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    text = render(o, sockets, owners, devices, service, screen)
    if text:
        click.echo(text, nl=False)
    return 0
