"""The UDP socket table against this machine's kernel: the same bind/connect/close
sequences run with stdlib sockets in a network namespace of our own (lo up, and a veth
pair eth0/eth1 for SO_BINDTODEVICE) and on UdpTable, and both must answer as the kernel
6.18 did, which is written next to each case. Where the kernel's answer depends on its
random hash secret (which SO_REUSEPORT socket a datagram picks), the facts that do not
are compared: a four-tuple always goes to the same socket, every socket gets some, and
what detaching a socket does to the others' share.

The kernel side needs root and unshare(1); without them only the emulator is checked
against the recorded answers."""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
from typing import Any

import pytest

from services.ip.sockglue import InetOpts
from services.udp.sock import TCP_ESTABLISHED, UdpSock
from services.udp.table import UdpTable

Step = list[Any]
Result = Any

UNSHARE = shutil.which("unshare")
HAVE_KERNEL = os.geteuid() == 0 and UNSHARE is not None and shutil.which("ip") is not None
PORT = 5000
BCAST = "127.255.255.255"

# The kernel side: every sequence in a fresh set of sockets (closed at its end) in one
# new network namespace. A sender for each source port is a socket on 127.0.0.1.
_PROBE = r"""
import json, os, select, socket, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"], check=True)
RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
default_range = open(RANGE).read()

def run(steps):
    socks, senders, out = {}, {}, []
    open(RANGE, "w").write(default_range)
    def receivers():
        ready, _, _ = select.select(list(socks.values()), [], [], 0.2)
        got = []
        for name, s in sorted(socks.items()):
            try:
                s.recv(64, socket.MSG_DONTWAIT)
                got.append(name)
            except BlockingIOError:
                pass
        return got
    for step in steps:
        op, args = step[0], step[1:]
        try:
            if op == "socket":
                name, opts = args
                if opts.get("uid"):
                    os.seteuid(opts["uid"])
                try:
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                finally:
                    os.seteuid(0)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                if opts.get("ra"):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if opts.get("rp"):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if opts.get("dev"):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, opts["dev"].encode())
                socks[name] = s
                out.append(0)
            elif op == "bind":
                socks[args[0]].bind((args[1], args[2]))
                out.append(0)
            elif op == "port":
                out.append(socks[args[0]].getsockname()[1])
            elif op == "connect":
                socks[args[0]].connect((args[1], args[2]))
                out.append(0)
            elif op == "device":
                socks[args[0]].setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args[1].encode())
                out.append(0)
            elif op == "close":
                socks.pop(args[0]).close()
                out.append(0)
            elif op == "range":
                open(RANGE, "w").write(f"{args[0]} {args[1]}")
                out.append(0)
            elif op == "send":
                sport, daddr, dport = args
                if sport not in senders:
                    t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    t.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                    t.bind(("127.0.0.1", sport))
                    senders[sport] = t
                senders[sport].sendto(b"x", (daddr, dport))
                out.append(receivers())
            else:
                raise ValueError(op)
        except OSError as e:
            out.append(e.errno)
    for s in [*socks.values(), *senders.values()]:
        s.close()
    return out

print(json.dumps({
    "ifindex": {n: socket.if_nametoindex(n) for n in ("lo", "eth0")},
    "results": [run(steps) for steps in json.load(sys.stdin)],
}))
"""


def kernel(sequences: list[list[Step]]) -> tuple[dict[str, int], list[list[Result]]]:
    assert UNSHARE is not None
    proc = subprocess.run(
        [UNSHARE, "--net", sys.executable, "-c", _PROBE],
        input=json.dumps(sequences),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    return answer["ifindex"], answer["results"]


def _ip(addr: str) -> int:
    return int(ipaddress.IPv4Address(addr))


def emulate(sequences: list[list[Step]], ifindex: dict[str, int], seed: int = 1) -> list[list[Result]]:
    """The same steps on a UdpTable, with what __inet_bind, __ip4_datagram_connect,
    __udp_disconnect, SO_BINDTODEVICE and close() do to it (all addresses are on lo, so
    a connect's source is 127.0.0.1 and datagrams arrive on lo)."""
    ids = itertools.count(1)
    rng = random.Random(seed)
    results = []
    for steps in sequences:
        table = UdpTable(rng=rng)
        port_range = (32768, 60999)
        socks: dict[str, UdpSock] = {}
        out: list[Result] = []
        for op, *args in steps:
            try:
                if op == "socket":
                    name, opts = args
                    socks[name] = UdpSock(
                        sk=next(ids),
                        protocol=17,
                        rcvbuf=212992,
                        sndbuf=212992,
                        inet=InetOpts(),
                        reuse=opts.get("ra", 0),
                        reuseport=bool(opts.get("rp")),
                        bound_dev_if=ifindex[opts["dev"]] if opts.get("dev") else 0,
                        uid=opts.get("uid", 0),
                    )
                    out.append(0)
                elif op == "bind":
                    sk = socks[args[0]]
                    sk.rcv_saddr = sk.saddr = _ip(args[1])
                    try:
                        table.get_port(sk, args[2], port_range)
                    except OSError:
                        sk.rcv_saddr = sk.saddr = 0
                        raise
                    out.append(0)
                elif op == "port":
                    out.append(socks[args[0]].num)
                elif op == "connect":
                    sk = socks[args[0]]
                    if not sk.num:
                        table.get_port(sk, 0, port_range)
                    sk.daddr, sk.dport = _ip(args[1]), args[2]
                    if not sk.saddr:
                        sk.saddr = _ip("127.0.0.1")
                    if not sk.rcv_saddr:
                        table.rehash(sk, sk.saddr)
                    sk.state = TCP_ESTABLISHED
                    table.connected(sk)
                    out.append(0)
                elif op == "device":
                    sk = socks[args[0]]
                    sk.bound_dev_if = ifindex[args[1]]
                    table.rehash(sk)
                    out.append(0)
                elif op == "close":
                    table.unhash(socks.pop(args[0]))
                    out.append(0)
                elif op == "range":
                    port_range = (args[0], args[1])
                    out.append(0)
                elif op == "send":
                    sport, daddr, dport = args[0], _ip(args[1]), args[2]
                    lo, src = ifindex["lo"], _ip("127.0.0.1")
                    if args[1] == BCAST:
                        got = table.mcast_sockets(src, sport, daddr, dport, lo)
                    else:
                        one = table.lookup(src, sport, daddr, dport, lo)
                        got = [one] if one is not None else []
                    out.append(sorted(name for name, sk in socks.items() if sk in got))
                else:
                    raise ValueError(op)
            except OSError as e:
                out.append(e.errno)
        results.append(out)
    return results


@pytest.fixture(scope="module")
def ifindex_and_kernel() -> tuple[dict[str, int], bool]:
    """The namespace's ifindexes (lo 1; eth0 as the kernel numbers it), and whether the
    kernel side runs."""
    if not HAVE_KERNEL:
        return {"lo": 1, "eth0": 3}, False
    ifindex, _ = kernel([])
    return ifindex, True


def both(sequences: list[list[Step]], env: tuple[dict[str, int], bool]) -> list[tuple[list[Result], ...]]:
    """Each sequence's results: the emulator's, and the kernel's when it runs."""
    ifindex, have = env
    emu = emulate(sequences, ifindex)
    if not have:
        return [(e,) for e in emu]
    _, real = kernel(sequences)
    return list(zip(emu, real, strict=True))


# The conflict matrix: every (SO_REUSEADDR, SO_REUSEPORT) of the first socket and the
# second, by their addresses, by their SO_BINDTODEVICE, the second bound to the first's port.
OPTS = {"--": {}, "RA": {"ra": 1}, "RP": {"rp": 1}, "RA+RP": {"ra": 1, "rp": 1}}
# The second socket also as another user (uid 65534, sk_uid from the creator's fsuid).
OPTS2 = {**OPTS, "RP/u": {"rp": 1, "uid": 65534}, "RA+RP/u": {"ra": 1, "rp": 1, "uid": 65534}}
ADDRS = {
    "any/any": ("0.0.0.0", "0.0.0.0"),
    "any/lo1": ("0.0.0.0", "127.0.0.1"),
    "lo1/any": ("127.0.0.1", "0.0.0.0"),
    "lo1/lo1": ("127.0.0.1", "127.0.0.1"),
    "lo1/lo2": ("127.0.0.1", "127.0.0.2"),
}
DEVS = {
    "-/-": (None, None),
    "lo/lo": ("lo", "lo"),
    "lo/eth0": ("lo", "eth0"),
    "-/lo": (None, "lo"),
    "lo/-": ("lo", None),
}

# What 6.18 answered to the second bind: per row (first's options / second's), for each
# address pair in ADDRS' order a group of five, one per device pair in DEVS' order.
# "." bound, "E" EADDRINUSE.
MATRIX_6_18 = {
    ("--", "--"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("--", "RA"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("--", "RP"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("--", "RA+RP"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("--", "RP/u"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("--", "RA+RP/u"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("RA", "--"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("RA", "RA"): "..... ..... ..... ..... ..... ",
    ("RA", "RP"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("RA", "RA+RP"): "..... ..... ..... ..... ..... ",
    ("RA", "RP/u"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("RA", "RA+RP/u"): "..... ..... ..... ..... ..... ",
    ("RP", "--"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("RP", "RA"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("RP", "RP"): "..... ..... ..... ..... ..... ",
    ("RP", "RA+RP"): "..... ..... ..... ..... ..... ",
    ("RP", "RP/u"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("RP", "RA+RP/u"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("RA+RP", "--"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("RA+RP", "RA"): "..... ..... ..... ..... ..... ",
    ("RA+RP", "RP"): "..... ..... ..... ..... ..... ",
    ("RA+RP", "RA+RP"): "..... ..... ..... ..... ..... ",
    ("RA+RP", "RP/u"): "EE.EE EE.EE EE.EE EE.EE ..... ",
    ("RA+RP", "RA+RP/u"): "..... ..... ..... ..... ..... ",
}


def _matrix_sequences() -> tuple[list[tuple[str, str]], list[list[Step]]]:
    rows: list[tuple[str, str]] = []
    seqs: list[list[Step]] = []
    for o1, o2 in itertools.product(OPTS, OPTS2):
        rows.append((o1, o2))
        for (a1, a2), (d1, d2) in itertools.product(ADDRS.values(), DEVS.values()):
            seqs.append(
                [
                    ["socket", "a", {**OPTS[o1], "dev": d1}],
                    ["socket", "b", {**OPTS2[o2], "dev": d2}],
                    ["bind", "a", a1, PORT],
                    ["bind", "b", a2, PORT],
                ]
            )
    return rows, seqs


def _grid(results: list[list[Result]]) -> dict[tuple[str, str], str]:
    rows, _ = _matrix_sequences()
    per_row = len(ADDRS) * len(DEVS)
    grid = {}
    for i, row in enumerate(rows):
        cells = results[i * per_row : (i + 1) * per_row]
        assert all(r[:3] == [0, 0, 0] for r in cells)
        marks = "".join("." if r[3] == 0 else "E" if r[3] == 98 else "?" for r in cells)
        grid[row] = " ".join(marks[j : j + len(DEVS)] for j in range(0, per_row, len(DEVS))) + " "
    return grid


def test_bind_conflict_matrix(ifindex_and_kernel: tuple[dict[str, int], bool]) -> None:
    _, seqs = _matrix_sequences()
    for results in zip(*both(seqs, ifindex_and_kernel), strict=True):
        assert _grid(list(results)) == MATRIX_6_18


L1, ANY = "127.0.0.1", "0.0.0.0"


def sock(name: str, **opts: Any) -> Step:
    return ["socket", name, opts]


def _fillers(n: int) -> list[Step]:
    """n SO_REUSEADDR sockets on the port, on addresses of their own (127.0.1.x)."""
    steps: list[Step] = []
    for i in range(n):
        steps += [sock(f"f{i}", ra=1), ["bind", f"f{i}", f"127.0.1.{i + 1}", PORT]]
    return steps


def _hash2_bind(fillers: int) -> list[Step]:
    # x (127.0.0.1, SO_REUSEADDR) and y (wildcard, SO_REUSEADDR+SO_REUSEPORT), then z
    # (127.0.0.1, SO_REUSEPORT): the primary chain's first pick is y (allowed), hash2's
    # is x (conflict).
    return [
        sock("x", ra=1),
        sock("y", ra=1, rp=1),
        ["bind", "x", L1, PORT],
        ["bind", "y", ANY, PORT],
        *_fillers(fillers),
        sock("z", rp=1),
        ["bind", "z", L1, PORT],
    ]


def _sends(sports: range, daddr: str = L1) -> list[Step]:
    return [["send", sport, daddr, PORT] for sport in sports]


# Sequences whose every answer is fixed, and what 6.18 answered (0: the call succeeded,
# an errno, the port getsockname() gave, or the sockets a datagram reached).
CASES: dict[str, tuple[list[Step], list[Result]]] = {
    # Equal scores: the first of the secondary chain wins, the socket bound last.
    "reuseaddr_last_bound_wins": (
        [
            sock("a", ra=1),
            sock("b", ra=1),
            ["bind", "a", L1, PORT],
            ["bind", "b", L1, PORT],
            ["send", 6000, L1, PORT],
            ["close", "b"],
            ["send", 6000, L1, PORT],
        ],
        [0, 0, 0, 0, ["b"], 0, ["a"]],
    ),
    # The destination address's chain before INADDR_ANY's.
    "exact_address_before_wildcard": (
        [
            sock("s", ra=1),
            sock("w", ra=1),
            ["bind", "s", L1, PORT],
            ["bind", "w", ANY, PORT],
            ["send", 6000, L1, PORT],
            ["send", 6000, "127.0.0.2", PORT],
        ],
        [0, 0, 0, 0, ["s"], ["w"]],
    ),
    # A socket bound to the arrival device scores 6, an unbound one 2, one bound to
    # another device never matches.
    "device_bound_first": (
        [
            sock("l", ra=1, dev="lo"),
            sock("p", ra=1),
            sock("e", ra=1, dev="eth0"),
            ["bind", "l", ANY, PORT],
            ["bind", "p", ANY, PORT],
            ["bind", "e", ANY, PORT],
            ["send", 6000, L1, PORT],
        ],
        [0, 0, 0, 0, 0, 0, ["l"]],
    ),
    "device_bound_only_for_its_device": (
        [
            sock("l", ra=1, dev="lo"),
            sock("p", ra=1),
            sock("e", ra=1, dev="eth0"),
            ["bind", "e", ANY, PORT],
            ["bind", "p", ANY, PORT],
            ["bind", "l", ANY, PORT],
            ["send", 6000, L1, PORT],
            ["close", "l"],
            ["send", 6000, L1, PORT],
            ["close", "p"],
            ["send", 6000, L1, PORT],
        ],
        [0, 0, 0, 0, 0, 0, ["l"], 0, ["p"], 0, []],
    ),
    # The connected socket (hash4, score 10) for its peer only, though bound first.
    "connected_preferred": (
        [
            sock("a", ra=1),
            sock("b", ra=1),
            ["bind", "a", L1, PORT],
            ["bind", "b", L1, PORT],
            ["connect", "a", L1, 6001],
            ["send", 6001, L1, PORT],
            ["send", 6002, L1, PORT],
        ],
        [0, 0, 0, 0, 0, ["a"], ["b"]],
    ),
    # connect() fills a wildcard address in: the rehash moves the socket to 127.0.0.1's
    # chain.
    "connected_wildcard_rehashed": (
        [
            sock("a", ra=1),
            sock("b", ra=1),
            ["bind", "a", ANY, PORT],
            ["bind", "b", L1, PORT],
            ["connect", "a", L1, 6001],
            ["send", 6001, L1, PORT],
            ["send", 6002, L1, PORT],
        ],
        [0, 0, 0, 0, 0, ["a"], ["b"]],
    ),
    # udp_lib_lport_inuse() answers at the first socket it picks (newest first).
    "first_pick_is_a_reuseport_mate": (
        [
            sock("p", ra=1),
            sock("r", ra=1, rp=1),
            sock("z", rp=1),
            ["bind", "p", L1, PORT],
            ["bind", "r", L1, PORT],
            ["bind", "z", L1, PORT],
        ],
        [0, 0, 0, 0, 0, 0],
    ),
    "first_pick_is_a_conflict": (
        [
            sock("p", ra=1),
            sock("r", ra=1, rp=1),
            sock("z", rp=1),
            ["bind", "r", L1, PORT],
            ["bind", "p", L1, PORT],
            ["bind", "z", L1, PORT],
        ],
        [0, 0, 0, 0, 0, 98],
    ),
    # 10 sockets in the port's slot: the primary chain decides; 11: hash2 does.
    "bind_with_10_in_the_slot": (_hash2_bind(8), [0] * 22),
    "bind_with_11_in_the_slot": (_hash2_bind(9), [0] * 23 + [98]),
    # SO_BINDTODEVICE rehashes, which takes f out of its group; s, unconnected and
    # reuseport, answers at once wherever it is in the chain, and f never gets one.
    "bindtodevice_leaves_the_group_head_answers": (
        [
            sock("f", rp=1),
            sock("s", rp=1),
            ["bind", "f", L1, PORT],
            ["bind", "s", L1, PORT],
            ["device", "f", "lo"],
            *_sends(range(7000, 7016)),
        ],
        [0, 0, 0, 0, 0] + [["s"]] * 16,
    ),
    "bindtodevice_head_scores_higher": (
        [
            sock("f", rp=1),
            sock("s", rp=1),
            ["bind", "f", L1, PORT],
            ["bind", "s", L1, PORT],
            ["device", "s", "lo"],
            *_sends(range(7000, 7016)),
        ],
        [0, 0, 0, 0, 0] + [["s"]] * 16,
    ),
    # a left its group on connect; b's bind gives a a new group and joins it; selection
    # skips the connected a.
    "connected_mate_is_regrouped": (
        [
            sock("a", rp=1),
            ["bind", "a", L1, PORT],
            ["connect", "a", L1, 6001],
            sock("b", rp=1),
            ["bind", "b", L1, PORT],
            ["send", 6001, L1, PORT],
            *_sends(range(7000, 7016)),
        ],
        [0, 0, 0, 0, 0, ["a"]] + [["b"]] * 16,
    ),
    # Every socket bound to the port on the broadcast address or the wildcard, not
    # connected elsewhere (connect() gave the wildcard one 127.0.0.1), on lo or no device.
    "broadcast": (
        [
            sock("w", ra=1),
            sock("b", ra=1),
            sock("s", ra=1),
            sock("k", ra=1),
            sock("kb", ra=1),
            sock("c", ra=1),
            sock("e", ra=1, dev="eth0"),
            ["bind", "w", ANY, PORT],
            ["bind", "b", BCAST, PORT],
            ["bind", "s", L1, PORT],
            ["bind", "k", BCAST, PORT],
            ["bind", "kb", BCAST, PORT],
            ["bind", "c", ANY, PORT],
            ["bind", "e", ANY, PORT],
            ["connect", "k", L1, 6000],
            ["connect", "kb", L1, 6099],
            ["connect", "c", L1, 6000],
            ["send", 6000, BCAST, PORT],
            ["send", 6001, BCAST, PORT],
        ],
        [0] * 17 + [["b", "k", "w"], ["b", "w"]],
    ),
}


@pytest.fixture(scope="module")
def case_results(ifindex_and_kernel: tuple[dict[str, int], bool]) -> dict[str, tuple[list[Result], ...]]:
    names = list(CASES)
    runs = both([CASES[n][0] for n in names], ifindex_and_kernel)
    return dict(zip(names, runs, strict=True))


@pytest.mark.parametrize("name", list(CASES))
def test_sequence_answers_as_6_18(name: str, case_results: dict[str, tuple[list[Result], ...]]) -> None:
    expected = CASES[name][1]
    for got in case_results[name]:
        assert got == expected


def _autobind(n: int, opts: dict[str, int], low: int, high: int) -> list[Step]:
    steps: list[Step] = [["range", low, high]]
    for i in range(n):
        steps += [sock(f"a{i}", **opts), ["bind", f"a{i}", ANY, 0], ["port", f"a{i}"]]
    return steps


def test_autobind_in_the_port_range(ifindex_and_kernel: tuple[dict[str, int], bool]) -> None:
    # 6.18: the four ports of 40000-40003 in a random order (e.g. 40002, 40003, 40001,
    # 40000), then EADDRINUSE; SO_REUSEADDR sockets share 40000-40001, eight of them.
    seqs = [_autobind(5, {}, 40000, 40003), _autobind(8, {"ra": 1}, 40000, 40001)]
    for plain, shared in zip(*both(seqs, ifindex_and_kernel), strict=True):
        ports = plain[3::3]
        assert sorted(ports[:4]) == [40000, 40001, 40002, 40003]
        assert plain[14:] == [98, 0]
        assert shared[2::3] == [0] * 8 and {*shared[3::3]} <= {40000, 40001}


def _receiver(result: Result) -> str:
    assert isinstance(result, list) and len(result) == 1
    name = result[0]
    assert isinstance(name, str)
    return name


def test_reuseport_spreads_by_four_tuple_and_detach_moves_the_last_into_the_hole(
    ifindex_and_kernel: tuple[dict[str, int], bool],
) -> None:
    # The hash secret is random, so which socket a source gets is not fixed; these are:
    # the same four-tuple always gets the same socket, every one of 4 gets some of 128
    # sources, and after r1 leaves (socks [r0, r3, r2]: the last moved into the hole,
    # reciprocal_scale now over 3) r0 keeps all its sources and r3's all go to r2.
    sources = range(7000, 7128)
    steps = [*(sock(f"r{i}", rp=1) for i in range(4)), *(["bind", f"r{i}", L1, PORT] for i in range(4))]
    steps += [*_sends(sources), *_sends(sources), ["close", "r1"], *_sends(sources)]
    n = len(sources)
    for (result,) in zip(*both([steps], ifindex_and_kernel), strict=True):
        assert result[:8] == [0] * 8
        first = [_receiver(r) for r in result[8 : 8 + n]]
        again = [_receiver(r) for r in result[8 + n : 8 + 2 * n]]
        after = [_receiver(r) for r in result[9 + 2 * n :]]
        assert first == again
        assert {*first} == {"r0", "r1", "r2", "r3"}
        assert "r1" not in after
        for b, a in zip(first, after, strict=True):
            if b == "r0":
                assert a == "r0"
            if b == "r3":
                assert a == "r2"


def test_reuseport_group_with_a_connected_member(ifindex_and_kernel: tuple[dict[str, int], bool]) -> None:
    # 6.18: r2 connected gets its peer's datagrams and no other's; the other sources
    # spread over r0, r1, r3, each the same every time.
    sources = range(7000, 7064)
    steps = [*(sock(f"r{i}", rp=1) for i in range(4)), *(["bind", f"r{i}", L1, PORT] for i in range(4))]
    steps += [["connect", "r2", L1, 6001], ["send", 6001, L1, PORT], *_sends(sources), *_sends(sources)]
    n = len(sources)
    for (result,) in zip(*both([steps], ifindex_and_kernel), strict=True):
        assert result[:10] == [0] * 9 + [["r2"]]
        first = [_receiver(r) for r in result[10 : 10 + n]]
        assert first == [_receiver(r) for r in result[10 + n :]]
        assert {*first} == {"r0", "r1", "r3"}
