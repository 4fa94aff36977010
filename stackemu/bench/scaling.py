"""Scenario e, scaling: a and b again with many sockets, routes and netfilter rules in
place, against the same run without them (issue 9: within 10 % with the sockets and
routes, within 2x with the rules).

The loads, on alice and on bob alike:
- sockets: UDP sockets of one process (RLIMIT_NOFILE raised for them), each bound to
  INADDR_ANY on a port of its own from SOCKET_PORT up, below ip_local_port_range, so
  they spread over udp_table's slots (udp_hashslot is by port) and the benchmark's
  ephemeral ports stay free: every __udp4_lib_lookup searches a full table;
- routes: /24s of 100.64.0.0/10 on eth0 (`ip route add 100.64.X.Y/24 dev eth0`), where
  no benchmark packet goes: every fib_table_lookup searches a table of that size;
- rules: half in filter INPUT (`-s 198.18.X.Y/32 -j DROP`), half in filter OUTPUT
  (`-d 198.18.X.Y/32 -j DROP`), addresses of 198.18.0.0/15 no benchmark packet has:
  ipt_do_table compares each packet with every rule of its chain (ip_packet_match) and
  none matches. A datagram of a (alice's OUTPUT, then alice's INPUT) or of b (alice's
  OUTPUT, bob's INPUT) walks all of them.
The emulated stack gets them through the public RPCs (OpenProcess/Socket/Bind, AddRoute
as `stackemu ip route add` sends it, AppendRule as `stackemu iptables -A`), many calls
in flight at once. The kernel gets them in a network namespace of the benchmark's own
(lo up): routes with `ip -batch`, rules with iptables-restore, the sockets bound by the
process that samples (python -m stackemu.bench.loaded) before it sends.

The loads go in, in the order of LOADS, so that the sockets and routes are installed
once and the rules added and removed once; LOADS[0] (none) at the end removes them all.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import uvloop

from services.core.server import open_aio_channel
from services.core.sockaddr import AF_INET, make_sockaddr_in
from services.core.socket_uapi import SOCK_DGRAM
from services.ip.fib import (
    NLM_F_CREATE,
    NLM_F_EXCL,
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_TABLE_MAIN,
    RTN_UNICAST,
    RTPROT_BOOT,
)
from services.nic.tap import netns_remove
from stackemu.bench.emulated import check
from stackemu.bench.loaded import SOCKET_PORT
from stackemu.bench.sample import Budget, Transfer
from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc, netfilter_pb2, netfilter_pb2_grpc
from stackemu.socket.v1 import socket_pb2 as pb
from stackemu.socket.v1 import socket_pb2_grpc

MAX_SOCKETS = 32_768 - SOCKET_PORT
ROUTE_NET = 0x64400000  # 100.64.0.0/10: 16,384 /24s
MAX_ROUTES = 1 << 14
RULE_NET = 0xC6120000  # 198.18.0.0/15
MAX_RULES = 1 << 17
ROUTE_DEV = "eth0"
FILTER = "filter"
# RPCs in flight at once while loads go in or out.
WIDTH = 128
# The sockets are spread over this many processes, each making its socket() calls one
# at a time: the socket service gives two calls of one process in flight together the
# same fd (it picks the fd before it awaits the UDP socket, where the kernel's
# get_unused_fd_flags reserves it), so a process's calls must not overlap.
PROCESSES = 64
RPC_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Counts:
    """How much of each load goes on each host; rules are split between INPUT and
    OUTPUT (INPUT gets the extra one of an odd count)."""

    sockets: int
    routes: int
    rules: int

    def __post_init__(self) -> None:
        for name, have, most in (
            ("sockets", self.sockets, MAX_SOCKETS),
            ("routes", self.routes, MAX_ROUTES),
            ("rules", self.rules, MAX_RULES),
        ):
            if not 0 <= have <= most:
                raise ValueError(f"{have} {name}: scenario e has room for 0 to {most}")


FULL = Counts(sockets=10_000, routes=10_000, rules=1_000)
QUICK = Counts(sockets=100, routes=100, rules=10)


@dataclass(frozen=True, slots=True)
class Load:
    """Which loads are in place, and the least fraction of the no-load rate the
    emulator is held to with them (None: no target)."""

    key: str
    sockets: bool
    routes: bool
    rules: bool
    bound: float | None


NONE = Load("none", False, False, False, None)
LOADS = (
    NONE,
    Load("netfilter", False, False, True, 0.5),
    Load("all", True, True, True, 0.5),
    Load("sock+route", True, True, False, 0.9),
)
# How the table lists them.
SHOWN = ("sock+route", "netfilter", "all")


def describe(load: Load, counts: Counts) -> str:
    """What `load` has on each host, in words."""
    parts = [
        f"{n:,} {what}"
        for n, what, on in (
            (counts.sockets, "sockets", load.sockets),
            (counts.routes, "routes", load.routes),
            (counts.rules, "rules", load.rules),
        )
        if on
    ]
    return ", ".join(parts) or "no load"


def route_prefix(i: int) -> int:
    return ROUTE_NET + (i << 8)


def rule_addr(i: int) -> int:
    return RULE_NET + i


def rule_chains(count: int) -> list[tuple[str, int]]:
    """(chain, address) of each of `count` rules: INPUT and OUTPUT in turn."""
    return [("INPUT" if i % 2 == 0 else "OUTPUT", rule_addr(i)) for i in range(count)]


def nf_rule(chain: str, addr: int) -> netfilter_pb2.NfRule:
    """`-s ADDR/32 -j DROP` in INPUT, `-d ADDR/32 -j DROP` in OUTPUT."""
    drop = netfilter_pb2.NfTarget(standard=netfilter_pb2.STANDARD_TARGET_DROP)
    if chain == "INPUT":
        return netfilter_pb2.NfRule(src=addr, src_mask=0xFFFFFFFF, target=drop)
    return netfilter_pb2.NfRule(dst=addr, dst_mask=0xFFFFFFFF, target=drop)


def _dotted(addr: int) -> str:
    return socket.inet_ntoa(addr.to_bytes(4, "big"))


async def _all(calls: Sequence[Callable[[], Awaitable[None]]]) -> None:
    """Every call, at most WIDTH in flight."""
    for start in range(0, len(calls), WIDTH):
        await asyncio.gather(*(call() for call in calls[start : start + WIDTH]))


@dataclass(frozen=True, slots=True)
class Host:
    """One emulated host's socket service and IP service (which serves netfilter too)."""

    name: str
    socket: str
    ip: str


class EmulatedLoads:
    """The loads on the emulated hosts, through their public RPCs."""

    def __init__(self, hosts: Sequence[Host], counts: Counts) -> None:
        self.hosts = hosts
        self.counts = counts
        self.now = NONE
        # The processes holding each host's sockets, while they are in place.
        self.pids: dict[str, list[int]] = {}

    def apply(self, load: Load, tolerant: bool = False) -> None:
        """Add or remove what differs between the loads in place and `load`. tolerant:
        what is to be removed may be missing (a change that failed half-way), which is
        no error."""
        uvloop.run(self._apply(load, tolerant))

    async def _apply(self, load: Load, tolerant: bool) -> None:
        jobs: list[Awaitable[None]] = []
        for host in self.hosts:
            if load.sockets != self.now.sockets:
                jobs.append(self._sockets(host, load.sockets, tolerant))
            if load.routes != self.now.routes:
                jobs.append(self._routes(host, load.routes, tolerant))
            if load.rules != self.now.rules:
                jobs.append(self._rules(host, load.rules, tolerant))
        # Until every change is through, anything either load has may be in place.
        was = self.now
        self.now = Load(
            "partial", was.sockets or load.sockets, was.routes or load.routes, was.rules or load.rules, None
        )
        await asyncio.gather(*jobs)
        self.now = load

    async def _sockets(self, host: Host, add: bool, tolerant: bool) -> None:
        async with open_aio_channel(host.socket) as channel:
            stub: Any = socket_pb2_grpc.SocketServiceStub(channel)
            if not add:
                pids = self.pids.pop(host.name, [])
                await asyncio.gather(
                    *(stub.ExitProcess(pb.ExitProcessRequest(pid=pid), timeout=RPC_TIMEOUT) for pid in pids),
                    return_exceptions=tolerant,
                )
                return
            self.pids[host.name] = pids = []
            # fds 0-2 are stdio (OpenProcess), the first socket is fd 3.
            share = -(-self.counts.sockets // PROCESSES)
            req = pb.OpenProcessRequest(comm="stackemu-bench", nofile=share + 3)

            async def process(first: int) -> None:
                pid = (await stub.OpenProcess(req, timeout=RPC_TIMEOUT)).pid
                pids.append(pid)
                for i in range(first, min(first + share, self.counts.sockets)):
                    sock = pb.SocketRequest(pid=pid, domain=AF_INET, type=SOCK_DGRAM)
                    fd = check(await stub.Socket(sock, timeout=RPC_TIMEOUT)).fd
                    name = make_sockaddr_in(0, SOCKET_PORT + i)
                    resp = await stub.Bind(pb.BindRequest(pid=pid, fd=fd, addr=name), timeout=RPC_TIMEOUT)
                    try:
                        check(resp)
                    except OSError as err:
                        raise OSError(
                            err.errno, f"{host.name}: bind 0.0.0.0:{SOCKET_PORT + i}: {err}"
                        ) from None

            await asyncio.gather(*(process(first) for first in range(0, self.counts.sockets, share)))

    async def _routes(self, host: Host, add: bool, tolerant: bool) -> None:
        async with open_aio_channel(host.ip) as channel:
            stub: Any = ip_pb2_grpc.IpServiceStub(channel)

            def change(i: int) -> Callable[[], Awaitable[None]]:
                async def call() -> None:
                    # iproute_modify()'s request: `ip route add P/24 dev eth0` is
                    # NLM_F_CREATE|NLM_F_EXCL, proto boot, scope link (no gateway);
                    # `ip route del P/24 dev eth0` leaves type, proto and scope open.
                    if add:
                        route = ip_pb2.Route(
                            dst=route_prefix(i),
                            prefixlen=24,
                            type=RTN_UNICAST,
                            table=RT_TABLE_MAIN,
                            scope=RT_SCOPE_LINK,
                            protocol=RTPROT_BOOT,
                            device=ROUTE_DEV,
                        )
                        req = ip_pb2.AddRouteRequest(route=route, nlm_flags=NLM_F_CREATE | NLM_F_EXCL)
                        resp = await stub.AddRoute(req, timeout=RPC_TIMEOUT)
                    else:
                        route = ip_pb2.Route(
                            dst=route_prefix(i),
                            prefixlen=24,
                            table=RT_TABLE_MAIN,
                            scope=RT_SCOPE_NOWHERE,
                            device=ROUTE_DEV,
                        )
                        resp = await stub.DelRoute(ip_pb2.DelRouteRequest(route=route), timeout=RPC_TIMEOUT)
                    if resp.errno and not tolerant:
                        what = "add" if add else "del"
                        raise OSError(
                            resp.errno,
                            f"{host.name}: ip route {what} {_dotted(route_prefix(i))}/24: {resp.message}",
                        )

                return call

            await _all([change(i) for i in range(self.counts.routes)])

    async def _rules(self, host: Host, add: bool, tolerant: bool) -> None:
        async with open_aio_channel(host.ip) as channel:
            stub: Any = netfilter_pb2_grpc.NetfilterServiceStub(channel)

            def change(chain: str, addr: int) -> Callable[[], Awaitable[None]]:
                async def call() -> None:
                    rule = nf_rule(chain, addr)
                    if add:
                        req = netfilter_pb2.AppendRuleRequest(table=FILTER, chain=chain, rule=rule)
                        resp = await stub.AppendRule(req, timeout=RPC_TIMEOUT)
                    else:
                        gone = netfilter_pb2.DeleteRuleRequest(table=FILTER, chain=chain, rule=rule)
                        resp = await stub.DeleteRule(gone, timeout=RPC_TIMEOUT)
                    if resp.errno and not tolerant:
                        what = "-A" if add else "-D"
                        raise OSError(resp.errno, f"{host.name}: iptables {what} {chain}: {resp.message}")

                return call

            await _all([change(chain, addr) for chain, addr in rule_chains(self.counts.rules)])


def kernel_unavailable() -> str | None:
    """Why the kernel's side of e cannot run here, or None: it needs root (a network
    namespace), iproute2 and iptables-restore."""
    if os.geteuid() != 0:
        return "the kernel's side of e needs root (a network namespace of its own)"
    for tool in ("ip", "iptables-restore"):
        if shutil.which(tool) is None:
            return f"the kernel's side of e needs `{tool}`, which is not installed"
    return None


class KernelLoads:
    """The same loads in a network namespace of the benchmark's own, removed with it."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.now = NONE
        self.ns = f"stackemu-bench-{os.getpid()}"

    def _run(self, *cmd: str, stdin: str | None = None) -> None:
        try:
            r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired:
            raise OSError(f"`{' '.join(cmd)}` did not finish in 60 s") from None
        if r.returncode != 0:
            raise OSError(
                f"`{' '.join(cmd)}` failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}"
            )

    def __enter__(self) -> Self:
        self._run("ip", "netns", "add", self.ns)
        try:
            self._run("ip", "-n", self.ns, "link", "set", "lo", "up")
        except OSError:
            netns_remove(self.ns)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        netns_remove(self.ns)

    def apply(self, load: Load) -> None:
        """The routes and rules of `load`; its sockets are bound by each sample."""
        if load.routes != self.now.routes:
            verb = "add" if load.routes else "del"
            batch = "".join(
                f"route {verb} {_dotted(route_prefix(i))}/24 dev lo\n" for i in range(self.counts.routes)
            )
            self._run("ip", "-n", self.ns, "-batch", "-", stdin=batch)
        if load.rules != self.now.rules:
            lines = ["*filter"]
            if load.rules:
                for chain, addr in rule_chains(self.counts.rules):
                    flag = "-s" if chain == "INPUT" else "-d"
                    lines.append(f"-A {chain} {flag} {_dotted(addr)}/32 -j DROP")
            # Without --noflush the table is replaced: no rules is a flush.
            lines.append("COMMIT")
            self._run("ip", "netns", "exec", self.ns, "iptables-restore", stdin="\n".join(lines) + "\n")
        self.now = load

    def throughput(self, budget: Budget, payload: int = 64, batch: int = 64) -> Transfer:
        """kernel.throughput inside the namespace, from a process that first binds the
        load's sockets (if it has them)."""
        sockets = self.counts.sockets if self.now.sockets else 0
        cmd = [
            "ip",
            "netns",
            "exec",
            self.ns,
            sys.executable,
            "-m",
            "stackemu.bench.loaded",
            *(str(v) for v in (sockets, payload, batch, budget.count, budget.seconds, budget.timeout)),
        ]
        limit = budget.seconds + budget.timeout + 30
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False)
        except subprocess.TimeoutExpired:
            raise OSError(f"the kernel's sample in {self.ns} did not finish in {limit:.0f} s") from None
        if r.returncode != 0:
            raise OSError(f"the kernel's sample in {self.ns} failed ({r.returncode}): {r.stderr.strip()}")
        return Transfer(**json.loads(r.stdout))
