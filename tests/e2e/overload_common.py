"""Floods for the overload tests: the peers that flood and receive as processes of an
emulated host, and the test side's view of the stack while they do: its counters, the
per-flow ledger, the fill of every bounded queue, each service's memory, and knobs set
for one test and put back after it.

Peers run as `python -m tests.e2e.overload_common send|recv|ping ...` with STACKEMU_HOST
naming their host (peer()). A flood's datagram carries its sequence number in its first
four bytes and that number's low byte in every other (payload()), so a receiver checks
each datagram it reads byte for byte and that a flow's numbers only grow: nothing
corrupted, duplicated or reordered on the way.

The test side reads the stack in-process through the CLI's own tools (stackemu.tools:
nstat's counters, dropwatch's ledgers, the services' stubs), which find the stack from
STACKEMU_STATE_DIR; pointed_at(env) sets it for a test module.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar
from unittest import mock

from services.core.flowledger import FlowKey
from services.core.wire.ipv4 import IPPROTO_UDP
from stackemu.ip.v1 import ip_pb2
from stackemu.nic.v1 import nic_pb2
from stackemu.tools import dropwatch
from stackemu.tools.common import Ip, Nic, Service, Udp
from stackemu.tools.nstat import counters
from stackemu.udp.v1 import udp_pb2
from tests.e2e.stackrun import service_pids

T = TypeVar("T")

HOSTS: Final = ("alice", "bob")
ROOT: Final = Path(__file__).resolve().parents[2]
# How long a peer waits for the one datagram of an exchange after the flood.
EXCHANGE_TIMEOUT: Final = 20.0
# The most datagrams a receiver reads from one socket when draining it: far above what
# any receive buffer of these tests holds, so only a runaway queue reaches it.
MAX_DRAIN: Final = 100_000


def payload(seq: int, size: int) -> bytes:
    return seq.to_bytes(4, "big") + bytes([seq & 0xFF]) * (size - 4)


# The peers.


def _send(src: str, targets: str, nsock: str, rounds: str, size: str, batch: str, segs: str) -> None:
    """nsock connected, nonblocking sockets on src, socket i to the i-th target (round
    robin); `rounds` times, each socket sendmmsg()s `batch` messages, and EAGAIN (the
    send buffer full) skips its turn. A message is `segs` datagrams of `size` bytes,
    sent as one GSO datagram (UDP_SEGMENT size) when segs > 1. Prints each flow and how
    many datagrams the stack took."""
    import stackemu.socket as socket

    dests = [(a, int(p)) for a, p in (t.split(":") for t in targets.split(","))]
    n, width, k = int(batch), int(size), int(segs)
    # The drop-in's sockets (mypy sees the standard module's, which lack sendmmsg).
    socks: list[Any] = []
    for i in range(int(nsock)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.connect(dests[i % len(dests)])
        s.setblocking(False)
        if k > 1:
            s.setsockopt(socket.SOL_UDP, socket.UDP_SEGMENT, width)
        socks.append(s)
    sent = [0] * len(socks)
    # sendmmsg calls that stopped at EAGAIN, at the first message or later: each is a
    # udp_sendmsg that failed for lack of send buffer.
    eagain = 0
    for _ in range(int(rounds)):
        for i, s in enumerate(socks):
            msgs = [b"".join(payload(sent[i] + m * k + j, width) for j in range(k)) for m in range(n)]
            try:
                took = len(s.sendmmsg(msgs))
            except BlockingIOError:
                took = 0
            sent[i] += took * k
            eagain += took < n
    flows = [[src, s.getsockname()[1], *s.getpeername(), k] for s, k in zip(socks, sent, strict=True)]
    print(json.dumps({"flows": flows, "eagain": eagain}), flush=True)
    # The sockets stay until told: their transmit completions (and the errors they
    # carry) are still on the way.
    sys.stdin.readline()


def _recv(addr: str, ports: str, rcvbuf: str, size: str) -> None:
    """Sockets bound to addr's ports (SO_RCVBUF rcvbuf unless 0) that read nothing until
    told: `drain` reads every queued datagram and prints how many per flow and how many
    were wrong; `echo` answers one datagram per socket, in port order."""
    import stackemu.socket as socket

    socks = []
    for port in ports.split(","):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if int(rcvbuf):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(rcvbuf))
        s.bind((addr, int(port)))
        socks.append(s)
    print("ready", flush=True)
    width = int(size)
    for line in sys.stdin:
        if line == "drain\n":
            read: dict[tuple[int, int], int] = {}
            last: dict[tuple[int, int], int] = {}
            bad = 0
            for s in socks:
                s.setblocking(False)
                dport = s.getsockname()[1]
                for _ in range(MAX_DRAIN):
                    try:
                        data, (_, sport) = s.recvfrom(width + 1)
                    except BlockingIOError:
                        break
                    flow = (sport, dport)
                    seq = int.from_bytes(data[:4], "big")
                    bad += data != payload(seq, width) or seq <= last.get(flow, -1)
                    last[flow] = seq
                    read[flow] = read.get(flow, 0) + 1
            print(json.dumps({"read": [[*f, n] for f, n in read.items()], "bad": bad}), flush=True)
        elif line == "echo\n":
            for s in socks:
                s.settimeout(EXCHANGE_TIMEOUT)
                data, peer = s.recvfrom(65535)
                s.sendto(data, peer)
            print("echoed", flush=True)


def _ping(src: str, targets: str) -> None:
    """One datagram to each target in turn, each answered before the next goes; prints
    the answers."""
    import stackemu.socket as socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.settimeout(EXCHANGE_TIMEOUT)
    answers = []
    for target in targets.split(","):
        a, p = target.split(":")
        s.sendto(f"after the flood {target}".encode(), (a, int(p)))
        answers.append(s.recv(65535).decode())
    print(json.dumps(answers), flush=True)


PEERS: Final[dict[str, Callable[..., None]]] = {"send": _send, "recv": _recv, "ping": _ping}


def peer(
    env: dict[str, str], host: str, role: str, *args: object, module: str = "tests.e2e.overload_common"
) -> subprocess.Popen[str]:
    """A peer process of the host's (STACKEMU_HOST) running `python -m module role
    args...`, its stdin and stdout piped."""
    return subprocess.Popen(
        [sys.executable, "-m", module, role, *map(str, args)],
        env={**env, "STACKEMU_HOST": host},
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise AssertionError(f"peer exited {proc.returncode}: {proc.stderr.read()}")
    return line


def py(env: dict[str, str], host: str, code: str, *args: str) -> subprocess.Popen[str]:
    """`python -c code args` as a process of the host, its stdio piped."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env={**env, "STACKEMU_HOST": host},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def flow_key(saddr: str, sport: int, daddr: str, dport: int) -> FlowKey:
    return (IPPROTO_UDP, int(ipaddress.IPv4Address(saddr)), sport, int(ipaddress.IPv4Address(daddr)), dport)


class Receiver:
    """A `recv` peer: bound and reading nothing until drain()."""

    def __init__(
        self, env: dict[str, str], host: str, addr: str, ports: Sequence[int], rcvbuf: int, size: int
    ):
        self.addr = addr
        self.ports = list(ports)
        self.proc = peer(env, host, "recv", addr, ",".join(map(str, ports)), rcvbuf, size)
        assert _line(self.proc) == "ready\n"

    @property
    def targets(self) -> str:
        return ",".join(f"{self.addr}:{p}" for p in self.ports)

    def _command(self, what: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        return _line(self.proc)

    def drain(self, saddr: str) -> tuple[dict[FlowKey, int], int]:
        """Datagrams read per flow from saddr, and how many were wrong."""
        doc = json.loads(self._command("drain"))
        read = {flow_key(saddr, sport, self.addr, dport): n for sport, dport, n in doc["read"]}
        return read, doc["bad"]

    def exchange(self, env: dict[str, str], host: str, src: str) -> list[str]:
        """The sender's host pings each socket and the receiver echoes: the answers."""
        ping = peer(env, host, "ping", src, self.targets)
        assert self._command("echo") == "echoed\n"
        answers: list[str] = json.loads(_line(ping))
        assert ping.wait(timeout=EXCHANGE_TIMEOUT) == 0
        return answers

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


@contextmanager
def receiving(
    env: dict[str, str], host: str, addr: str, ports: Sequence[int], rcvbuf: int, size: int
) -> Iterator[Receiver]:
    r = Receiver(env, host, addr, ports, rcvbuf, size)
    try:
        yield r
    finally:
        r.close()


class Sent(dict[FlowKey, int]):
    """The datagrams a flood's senders handed the stack, per flow; and how many of their
    sendmmsg calls stopped short at EAGAIN."""

    eagain = 0


@dataclass(frozen=True)
class Flood:
    """What the senders on one host do: `procs` processes at once, each with `nsock`
    sockets on src, socket i sending to the i-th of targets ("ADDR:PORT,..."), round
    robin; `rounds` times, each socket sendmmsg()s `batch` messages, each `segs`
    datagrams of `size` bytes (one GSO datagram, UDP_SEGMENT, when segs > 1)."""

    src: str
    targets: str
    size: int
    rounds: int
    batch: int = 32
    nsock: int = 1
    procs: int = 1
    segs: int = 1

    @contextmanager
    def sending(self, env: dict[str, str], host: str) -> Iterator[Sent]:
        """Runs the flood; then what the stack took, while the senders keep their sockets
        open (until the block ends)."""
        args = (self.src, self.targets, self.nsock, self.rounds, self.size, self.batch, self.segs)
        senders = [peer(env, host, "send", *args) for _ in range(self.procs)]
        try:
            sent = Sent()
            for s in senders:
                doc = json.loads(_line(s))
                for saddr, sport, daddr, dport, n in doc["flows"]:
                    sent[flow_key(saddr, sport, daddr, dport)] = n
                sent.eagain += doc["eagain"]
            yield sent
            for s in senders:
                s.communicate("\n", timeout=10)
                assert s.returncode == 0, s.stderr
        finally:
            for s in senders:
                if s.poll() is None:
                    s.kill()
                    s.communicate(timeout=10)


# The test side.


@contextmanager
def pointed_at(env: dict[str, str]) -> Iterator[None]:
    """The in-process tools (stackemu.tools.*) talk to env's stack."""
    with mock.patch.dict(os.environ, {"STACKEMU_STATE_DIR": env["STACKEMU_STATE_DIR"]}):
        os.environ.pop("STACKEMU_SOCKET_ADDR", None)
        os.environ.pop("STACKEMU_STACK_FILE", None)
        yield


def until(what: Callable[[], T], ok: Callable[[T], bool], tries: int = 100, pause: float = 0.05) -> T:
    """what() until ok(it): the datagrams cross two hosts' services asynchronously."""
    for _ in range(tries):
        value = what()
        if ok(value):
            return value
        time.sleep(pause)
    raise AssertionError(f"never settled: {value!r}")


def nstat(env: dict[str, str], host: str) -> dict[str, int]:
    """What `stackemu nstat -az` prints for the host: every counter, by nstat's names."""
    with pointed_at(env):
        return counters(host)


def flows_on(hosts: Sequence[str] = HOSTS) -> None:
    """`stackemu dropwatch --flows on`: a fresh ledger in every layer."""
    dropwatch.set_flows(hosts, True)


def ledger(hosts: Sequence[str] = HOSTS) -> dropwatch.Conservation:
    """`stackemu dropwatch --check`'s stack-wide view."""
    return dropwatch.conservation(dropwatch.ledgers(hosts))


def _accounted(c: dropwatch.Conservation) -> tuple[int, ...]:
    return (
        *(n for f in c.flows for n in (f.sent, f.delivered, f.dropped)),
        sum(c.unattributed.values()),
    )


def settle(sent: dict[FlowKey, int], quiet: float = 1.0, limit: float = 20.0) -> dropwatch.Conservation:
    """The ledger once every datagram of a flood is accounted for: each flow of `sent`
    has sent what its sender counted and balances. When some never do, the ledger once
    nothing in it has moved for `quiet` seconds, for the caller's assertions to say
    what is missing."""
    pause = 0.05
    still = 0
    last: tuple[int, ...] = ()
    for _ in range(int(limit / pause)):
        c = ledger()
        flows = {f.key: f for f in c.flows}
        if all(k in flows and flows[k].sent == n and flows[k].balanced for k, n in sent.items()):
            return c
        now = _accounted(c)
        still = still + 1 if now == last else 0
        if still * pause >= quiet:
            return c
        last = now
        time.sleep(pause)
    return c


def static_neighbours(pairs: Sequence[tuple[str, str, str, str]]) -> None:
    """ip neigh replace ADDR lladdr MAC nud permanent dev DEV on HOST, for each (host,
    dev, addr, peer) with peer's DEV address: no ARP frame (a refresh that may come at
    any time) joins a flood and its drops."""
    for host, dev, addr, peer in pairs:
        with Nic(peer) as s:
            (link,) = (lk for lk in s.call("ListLinks", nic_pb2.ListLinksRequest()).links if lk.name == dev)
        address = int(ipaddress.IPv4Address(addr))
        with Nic(host) as s:
            _check(
                s.call(
                    "AddNeighbour",
                    nic_pb2.AddNeighbourRequest(device=dev, address=address, lladdr=link.address),
                )
            )


def rss_kb(env: dict[str, str]) -> dict[str, int]:
    """VmRSS of every service of the stack, by "host/service"."""
    out = {}
    for name, pid in service_pids(env).items():
        status = Path(f"/proc/{pid}/status").read_text()
        (line,) = (ln for ln in status.splitlines() if ln.startswith("VmRSS:"))
        out[name] = int(line.split()[1])
    return out


def _check(resp: Any) -> Any:
    assert not resp.errno, resp.message
    return resp


class Knobs:
    """Settings for one test (sysctls, rings, coalescing, link settings, netem), each
    put back as it was when the test ends."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> Knobs:
        return self

    def __exit__(self, *exc: object) -> None:
        while self._undo:
            self._undo.pop()()

    def sysctl(self, host: str, name: str, value: int) -> None:
        """net.core.* live in the NIC, net.ipv4.* in IP."""
        svc: type[Service] = Nic if name.startswith("net.core.") else Ip
        pb: Any = nic_pb2 if svc is Nic else ip_pb2
        with svc(host) as s:
            old = _check(s.call("GetSysctl", pb.GetSysctlRequest(names=[name]))).values[name]
            _check(s.call("SetSysctl", pb.SetSysctlRequest(name=name, value=str(value))))

        def undo() -> None:
            with svc(host) as s:
                _check(s.call("SetSysctl", pb.SetSysctlRequest(name=name, value=old)))

        self._undo.append(undo)

    def _nic(
        self, host: str, current: Callable[[Nic], Any], rpc: str, make: Callable[..., Any], **new: Any
    ) -> None:
        """rpc(make(**new)) on the host's NIC; the undo sets the fields back to what
        current() read before."""
        with Nic(host) as s:
            before = current(s)
            _check(s.call(rpc, make(**new)))
        old = make(**{f: getattr(before, f) for f in new})

        def undo() -> None:
            with Nic(host) as s:
                _check(s.call(rpc, old))

        self._undo.append(undo)

    def ring(self, host: str, dev: str, rx: int) -> None:
        """ethtool -G DEV rx N."""
        req = nic_pb2.GetRingParamRequest(device=dev)
        make = partial(nic_pb2.SetRingParamRequest, device=dev)
        self._nic(host, lambda s: _check(s.call("GetRingParam", req)), "SetRingParam", make, rx_pending=rx)

    def coalesce(self, host: str, dev: str, rx_usecs: int) -> None:
        """ethtool -C DEV rx-usecs N: the interrupt waits, so the ring fills in bursts."""
        req = nic_pb2.GetCoalesceRequest(device=dev)
        make = partial(nic_pb2.SetCoalesceRequest, device=dev)
        self._nic(host, lambda s: _check(s.call("GetCoalesce", req)), "SetCoalesce", make, rx_usecs=rx_usecs)

    def rps(self, host: str, dev: str, cpus: int) -> None:
        """ip link set DEV rps_cpus MASK: received skbs go through the backlog."""

        def link(s: Nic) -> Any:
            return next(lk for lk in s.call("ListLinks", nic_pb2.ListLinksRequest()).links if lk.name == dev)

        self._nic(host, link, "SetLink", partial(nic_pb2.SetLinkRequest, device=dev), rps_cpus=cpus)

    def features(self, host: str, dev: str, wanted: dict[str, bool]) -> None:
        """ethtool -K DEV NAME on|off ..., by ethtool's names ({"rx-gro": False})."""
        with Nic(host) as s:
            got = _check(s.call("GetFeatures", nic_pb2.GetFeaturesRequest(device=dev)))
            old = {f.name: f.active for f in got.features if f.name in wanted}
            assert set(old) == set(wanted), got
            _check(s.call("SetFeatures", nic_pb2.SetFeaturesRequest(device=dev, features=wanted)))

        def undo() -> None:
            with Nic(host) as s:
                _check(s.call("SetFeatures", nic_pb2.SetFeaturesRequest(device=dev, features=old)))

        self._undo.append(undo)

    def netem(self, host: str, dev: str, **config: Any) -> None:
        """tc qdisc add dev DEV root netem ...; deleted at the end."""
        with Nic(host) as s:
            _check(s.call("SetNetem", nic_pb2.SetNetemRequest(device=dev, netem=nic_pb2.Netem(**config))))

        def undo() -> None:
            with Nic(host) as s:
                _check(s.call("SetNetem", nic_pb2.SetNetemRequest(device=dev)))

        self._undo.append(undo)


class Peaks:
    """The fullest every bounded queue of the stack was while a flood ran: a thread
    samples them through the services' stats (what ethtool -S, softnet_stat, tc -s and
    ss -m show) until stopped. Names: "HOST:DEV rx_ring_used" (tx_ring_used,
    qdisc_backlog, netem_backlog), "HOST backlog_len", "HOST:PORT rmem_alloc" and
    "HOST:PORT rmem_over_rcvbuf" (sk_rmem_alloc less sk_rcvbuf)."""

    def __init__(self, hosts: Sequence[str] = HOSTS, devs: Sequence[str] = ("eth0",)) -> None:
        self.hosts = hosts
        self.devs = devs
        self.peak: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._error is not None:
            raise self._error

    def _see(self, name: str, value: int) -> None:
        self.peak[name] = max(value, self.peak.get(name, value))

    def _run(self) -> None:
        nics = {h: Nic(h) for h in self.hosts}
        udps = {h: Udp(h) for h in self.hosts}
        try:
            while not self._stop.is_set():
                self._sample(nics, udps)
                self.samples += 1
                self._stop.wait(0.01)
        except BaseException as e:
            self._error = e
        finally:
            for svc in [*nics.values(), *udps.values()]:
                svc.close()

    def _sample(self, nics: dict[str, Nic], udps: dict[str, Udp]) -> None:
        for host, nic in nics.items():
            for dev in self.devs:
                stats = nic.call("GetEthtoolStats", nic_pb2.GetEthtoolStatsRequest(device=dev)).stats
                for c in stats:
                    if c.name in ("rx_ring_used", "tx_ring_used", "qdisc_backlog"):
                        self._see(f"{host}:{dev} {c.name}", c.value)
                netem = nic.call("GetNetem", nic_pb2.GetNetemRequest(device=dev))
                if netem.HasField("netem"):
                    self._see(f"{host}:{dev} netem_backlog", netem.stats.backlog)
            for sd in nic.call("GetStats", nic_pb2.GetStatsRequest()).softnet:
                self._see(f"{host} backlog_len", sd.backlog_len)
            for sk in udps[host].call("ListSockets", udp_pb2.ListSocketsRequest()).sockets:
                self._see(f"{host}:{sk.local_port} rmem_alloc", sk.rmem_alloc)
                self._see(f"{host}:{sk.local_port} rmem_over_rcvbuf", sk.rmem_alloc - sk.rcvbuf)


def sockets(host: str) -> dict[int, udp_pb2.SocketInfo]:
    """ss -uam: the host's UDP sockets by local port."""
    with Udp(host) as s:
        return {sk.local_port: sk for sk in s.call("ListSockets", udp_pb2.ListSocketsRequest()).sockets}


def ethtool(host: str, dev: str) -> dict[str, int]:
    """ethtool -S HOST:DEV."""
    with Nic(host) as s:
        stats = s.call("GetEthtoolStats", nic_pb2.GetEthtoolStatsRequest(device=dev)).stats
    return {c.name: c.value for c in stats}


def softnet(host: str) -> dict[str, int]:
    """/proc/net/softnet_stat summed over the host's CPUs."""
    with Nic(host) as s:
        rows = s.call("GetStats", nic_pb2.GetStatsRequest()).softnet
    return {f: sum(getattr(r, f) for r in rows) for f in ("processed", "dropped", "time_squeeze")}


def netem_stats(host: str, dev: str) -> Any:
    """tc -s qdisc show dev DEV: netem's NetemStats."""
    with Nic(host) as s:
        return _check(s.call("GetNetem", nic_pb2.GetNetemRequest(device=dev))).stats


def main(argv: Sequence[str]) -> None:
    role, *args = argv
    PEERS[role](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
