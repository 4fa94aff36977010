"""`stackemu demo` (what `make run` runs): datagrams from alice to bob through every
layer of both hosts, and what the stack shows of them.

bob's socket asks for receive timestamps (SO_TIMESTAMPING, software) and IP_PKTINFO;
bob's filter table counts the flow (iptables -A INPUT ... -j ACCEPT); alice's socket
has the emulator's SO_EMU_TRACE on, so each datagram carries its trace from
udp_sendmsg over the wire to udp_recvmsg. The demo prints the journey of one datagram,
the cmsgs it came with (decoded), and the counters that moved on both hosts (nstat's
names, `ip -s link`'s, the rule's). The two ends are emulated processes opened over
the socket service's gRPC API: the drop-in module serves one host per Python process.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from services.core.server import open_channel
from services.core.skbuff import TraceStep, trace_from_proto
from services.core.sockaddr import AF_INET, make_sockaddr_in, parse_sockaddr_in
from services.core.socket_uapi import (
    SCM_TIMESTAMPING,
    SO_EMU_TRACE,
    SO_TIMESTAMPING_OLD,
    SOCK_DGRAM,
    SOL_IP,
    SOL_SOCKET,
)
from services.core.tstamp import SOF_TIMESTAMPING_RX_SOFTWARE, SOF_TIMESTAMPING_SOFTWARE
from services.ip.sockglue import IP_PKTINFO
from stackemu import state
from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
from stackemu.socket._cmsg import decode_ancdata
from stackemu.socket.v1 import socket_pb2, socket_pb2_grpc

Echo = Callable[[str], None]
DATAGRAMS = 3
RECV_TIMEOUT_NS = 3_000_000_000


class Process:
    """An emulated process on one host, driven through SocketService (pid and fds are
    the emulated host's)."""

    def __init__(self, host: str, comm: str) -> None:
        self.host = host
        self._channel = open_channel(state.service_addr("socket", host))
        self.stub: Any = socket_pb2_grpc.SocketServiceStub(self._channel)
        self.pid: int = self.stub.OpenProcess(socket_pb2.OpenProcessRequest(comm=comm), timeout=5).pid

    def call(self, rpc: str, **fields: Any) -> Any:
        resp = getattr(self.stub, rpc)(
            getattr(socket_pb2, f"{rpc}Request")(pid=self.pid, **fields), timeout=10
        )
        if resp.errno:
            raise OSError(resp.errno, f"{self.host} {rpc}: {os.strerror(resp.errno)}")
        return resp

    def socket(self) -> int:
        fd: int = self.call("Socket", domain=AF_INET, type=SOCK_DGRAM, protocol=0).fd
        return fd

    def setsockopt(self, fd: int, level: int, optname: int, value: int) -> None:
        self.call("SetSockOpt", fd=fd, level=level, optname=optname, optval=struct.pack("=i", value))

    def close(self) -> None:
        try:
            self.stub.ExitProcess(socket_pb2.ExitProcessRequest(pid=self.pid), timeout=5)
        finally:
            self._channel.close()


def _ip(addr: int) -> str:
    return ".".join(str(b) for b in addr.to_bytes(4, "big"))


def _addr_of(host: str) -> int:
    """The host's eth0 address (its IP layer's ListAddrs), or its first one not on lo."""
    with open_channel(state.service_addr("ip", host)) as ch:
        addrs = ip_pb2_grpc.IpServiceStub(ch).ListAddrs(ip_pb2.ListAddrsRequest(), timeout=5).addrs
    ours = sorted((a.label != "eth0", a.ifindex, a.address) for a in addrs if a.address >> 24 != 127)
    if not ours:
        raise RuntimeError(f"host {host} has no address but loopback")
    addr: int = ours[0][2]
    return addr


def _peer_of(host: str) -> str:
    data = state.load() or {}
    others = [h for h in data.get("hosts", {}) if h != host]
    return others[0] if others else host


def decode_cmsgs(control: bytes, ifnames: dict[int, str]) -> list[str]:
    """The cmsgs as `level type: fields` lines (SCM_TIMESTAMPING's three timespecs,
    IP_PKTINFO's struct in_pktinfo; others in hex)."""
    lines = []
    for level, type_, data in decode_ancdata(control):
        if level == SOL_SOCKET and type_ == SCM_TIMESTAMPING and len(data) >= 48:
            ts = struct.unpack_from("=6q", data)
            when = datetime.fromtimestamp(ts[0], UTC).strftime("%Y-%m-%dT%H:%M:%S")
            lines.append(
                f"SOL_SOCKET SCM_TIMESTAMPING: software {ts[0]}.{ts[1]:09d} ({when}.{ts[1]:09d}Z),"
                f" hardware {ts[4]}.{ts[5]:09d}"
            )
        elif level == SOL_IP and type_ == IP_PKTINFO and len(data) >= 12:
            ifindex, spec_dst, addr = struct.unpack_from("=i4s4s", data)
            name = ifnames.get(ifindex, "?")
            lines.append(
                f"SOL_IP IP_PKTINFO: ipi_ifindex {ifindex} ({name}), ipi_spec_dst "
                f"{_ip(int.from_bytes(spec_dst, 'big'))}, ipi_addr {_ip(int.from_bytes(addr, 'big'))}"
            )
        else:
            lines.append(f"level {level} type {type_}: {data.hex()}")
    return lines


def journey(steps: list[TraceStep]) -> list[str]:
    """One line per kernel function: +microseconds since the first, host, service."""
    t0 = steps[0].ts_ns if steps else 0
    return [f"{(s.ts_ns - t0) / 1000:+10.1f} us  {s.host:<6} {s.service:<6} {s.func}" for s in steps]


def _links(host: str) -> dict[str, int]:
    out: dict[str, int] = {}
    with open_channel(state.service_addr("nic", host)) as ch:
        links = nic_pb2_grpc.NicServiceStub(ch).ListLinks(nic_pb2.ListLinksRequest(), timeout=5).links
    for link in links:
        for field in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "rx_dropped", "tx_dropped"):
            out[f"{link.name}:{field}"] = getattr(link.stats, field)
    return out


def _ifnames(host: str) -> dict[int, str]:
    with open_channel(state.service_addr("nic", host)) as ch:
        links = nic_pb2_grpc.NicServiceStub(ch).ListLinks(nic_pb2.ListLinksRequest(), timeout=5).links
    return {link.ifindex: link.name for link in links}


def snapshot(hosts: list[str]) -> dict[tuple[str, str], int]:
    """nstat's counters and the links' statistics of each host."""
    from stackemu.tools.nstat import counters

    out: dict[tuple[str, str], int] = {}
    for h in hosts:
        out.update({(h, k): v for k, v in counters(h).items()})
        out.update({(h, k): v for k, v in _links(h).items()})
    return out


def moved(before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]) -> list[str]:
    """nstat-style deltas: `host name delta`, in the order the counters were read."""
    rows = [(h, k, v - before.get((h, k), 0)) for (h, k), v in after.items() if v != before.get((h, k), 0)]
    width = max((len(k) for _, k, _ in rows), default=0)
    return [f"{h:<6} {k:<{width}} {d:+d}" for h, k, d in rows]


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield buf


def _iptables(host: str, *args: str) -> str:
    from stackemu.tools import iptables

    with _quiet() as buf:
        code = iptables.main(host, list(args))
    if code:
        raise RuntimeError(f"iptables {' '.join(args)} on {host} failed ({code}): {buf.getvalue()}")
    return buf.getvalue()


def run(host: str | None, echo: Echo) -> None:
    sender = host or os.environ.get("STACKEMU_HOST") or "alice"
    state.service_addr("socket", sender)  # fail early, with the message, if nothing runs
    receiver = _peer_of(sender)
    daddr = _addr_of(receiver)
    tx, rx = Process(sender, "demo-send"), Process(receiver, "demo-recv")
    rule: list[str] = []
    try:
        rfd = rx.socket()
        rx.call("Bind", fd=rfd, addr=make_sockaddr_in(daddr, 0))
        port = parse_sockaddr_in(rx.call("GetSockName", fd=rfd).addr)[2]
        rx.setsockopt(
            rfd, SOL_SOCKET, SO_TIMESTAMPING_OLD, SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE
        )
        rx.setsockopt(rfd, SOL_IP, IP_PKTINFO, 1)
        rule = ["INPUT", "-p", "udp", "-d", _ip(daddr), "--dport", str(port), "-j", "ACCEPT"]
        _iptables(receiver, "-A", *rule)
        tfd = tx.socket()
        tx.setsockopt(tfd, SOL_SOCKET, SO_EMU_TRACE, 1)

        echo(f"stackemu demo: {DATAGRAMS} UDP datagrams {sender} → {receiver} over the wire")
        echo("")
        echo("Set up")
        echo(f"  {receiver:<6} socket(AF_INET, SOCK_DGRAM) = {rfd}; bind({_ip(daddr)}:{port})")
        echo(f"  {receiver:<6} setsockopt(SO_TIMESTAMPING, SOF_TIMESTAMPING_RX_SOFTWARE|SOFTWARE)")
        echo(f"  {receiver:<6} setsockopt(IP_PKTINFO, 1)")
        echo(f"  {receiver:<6} iptables -A {' '.join(rule)}")
        echo(f"  {sender:<6} socket(AF_INET, SOCK_DGRAM) = {tfd}; setsockopt(SO_EMU_TRACE, 1) (trace sends)")

        hosts = [sender] if receiver == sender else [sender, receiver]
        before = snapshot(hosts)
        echo("")
        echo("Sent and received")
        last: Any = None
        for n in range(1, DATAGRAMS + 1):
            payload = f"hello {receiver} #{n}".encode()
            sent = tx.call("SendMsg", fd=tfd, data=payload, addr=make_sockaddr_in(daddr, port)).sent
            echo(f"  {sender:<6} sendto({payload!r}, {_ip(daddr)}:{port}) = {sent}")
            last = rx.call("RecvMsg", fd=rfd, bufsize=2048, controllen=256, timeout_ns=RECV_TIMEOUT_NS)
            _, src, sport = parse_sockaddr_in(last.addr)
            echo(f"  {receiver:<6} recvmsg() = {last.data!r} from {_ip(src)}:{sport}")
        after = snapshot(hosts)
        rule_line = _iptables(receiver, "-L", "INPUT", "-v", "-n", "-x").splitlines()
    finally:
        if rule:
            with contextlib.suppress(Exception):
                _iptables(receiver, "-D", *rule)
        tx.close()
        rx.close()

    echo("")
    echo(f"The journey of datagram #{DATAGRAMS} through every layer (kernel functions; +us since the first)")
    for line in journey(trace_from_proto(last.trace)):
        echo(f"  {line}")
    echo("")
    echo(f"The cmsgs recvmsg() returned with it ({len(last.control)} bytes of control data)")
    for line in decode_cmsgs(last.control, _ifnames(receiver)):
        echo(f"  {line}")
    echo("")
    echo(f"Counters that moved (nstat and ip -s link names; {', '.join(hosts)})")
    for line in moved(before, after):
        echo(f"  {line}")
    echo("")
    echo(f"{receiver}'s rule (iptables -L INPUT -v -n -x)")
    for line in rule_line:
        echo(f"  {line}")
