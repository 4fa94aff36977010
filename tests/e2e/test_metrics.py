"""Every service of a launched stack serves Prometheus metrics, and after known traffic
each one equals what the CLI's tools print under the same Linux name: nstat's SNMP
counters, `ethtool -S`, /proc/net/softnet_stat, the drop reasons of GetStats, and the
sockets' skmem of ListSockets."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
from stackemu.udp.v1 import udp_pb2, udp_pb2_grpc
from tests.e2e.stackrun import cli, launched, service_addr

pytestmark = pytest.mark.slow

HOSTS = ("alice", "bob")
LAYERS = ("nic", "ip", "udp", "socket")

# bob: a socket bound to 10.0.0.2:7000 that reads one datagram when told to, and is held
# until stdin closes.
HOLD = textwrap.dedent(
    """
    import sys
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.0.0.2", 7000))
    print("ready", flush=True)
    sys.stdin.readline()
    print(len(s.recv(2048)), flush=True)
    sys.stdin.read()
    """
)
# alice: three datagrams to the held socket, one to a port nobody has.
SEND = textwrap.dedent(
    """
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(3):
        s.sendto(b"x" * 100, ("10.0.0.2", 7000))
    s.sendto(b"y" * 10, ("10.0.0.2", 7001))
    """
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
T = TypeVar("T")


def _scrape(addr: str) -> Samples:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _metrics_addrs(env: dict[str, str]) -> dict[tuple[str, str], str]:
    hosts = json.loads((Path(env["STACKEMU_STATE_DIR"]) / "stack.json").read_text())["hosts"]
    return {(h, layer): hosts[h][layer]["metrics"] for h in HOSTS for layer in LAYERS}


def _pick(samples: Samples, prefix: str, **labels: str) -> dict[str, float]:
    """name (less prefix and _total) → value, for the samples carrying these labels."""
    out = {}
    for (name, lbls), value in samples.items():
        d = dict(lbls)
        if name.startswith(prefix) and all(d.get(k) == v for k, v in labels.items()):
            out[name[len(prefix) :].removesuffix("_total")] = value
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = next(gen := launched(str(tmp_path_factory.mktemp("state"))))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD],
        env={**env, "STACKEMU_HOST": "bob"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "ready\n"
        sent = subprocess.run(
            [sys.executable, "-c", SEND],
            env={**env, "STACKEMU_HOST": "alice"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sent.returncode == 0, sent.stderr
        # The datagrams cross the wire asynchronously: wait (bounded) until bob's IP
        # layer received all four, and alice has the port unreachable bob sent back.
        # IpExtInNoECTPkts counts segments; IpInReceives counts skbs, fewer when GRO
        # merged some (the NIC merges whatever arrived in one poll).
        addrs = _metrics_addrs(env)
        for _ in range(200):
            ip = _pick(_scrape(addrs[("bob", "ip")]), "stackemu_snmp_Ip")
            icmp = _pick(_scrape(addrs[("alice", "ip")]), "stackemu_snmp_Icmp")
            if ip["ExtInNoECTPkts"] == 4 and icmp["InDestUnreachs"] == 1:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"the traffic did not arrive: {ip}, {icmp}")
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "100\n"
        yield env
    finally:
        holder.communicate("", timeout=30)
        next(gen, None)


def _stable(read: Callable[[bool], T]) -> tuple[T, T]:
    """(metrics, tool) read between two equal scrapes, so both saw the same counters."""
    for _ in range(5):
        before, tool, after = read(True), read(False), read(True)
        if before == after:
            return before, tool
    raise AssertionError("the counters kept moving")


def test_status_names_every_metrics_endpoint(stack: dict[str, str]) -> None:
    rows = json.loads(cli(stack, "status", "--json").stdout)
    grpc_ports = {(r["host"], r["service"]): int(r["addr"].rsplit(":", 1)[1]) for r in rows}
    assert {(r["host"], r["service"]): r["metrics"] for r in rows} == {
        key: f"127.0.0.1:{port + 1000}" for key, port in grpc_ports.items()
    }
    for key, addr in _metrics_addrs(stack).items():
        samples = _scrape(addr)
        assert samples, key
        assert {dict(lbls)["host"] for _, lbls in samples} == {key[0]}
        assert {dict(lbls)["service"] for _, lbls in samples} == {key[1]}


def _nstat(env: dict[str, str], host: str) -> dict[str, int]:
    out = cli(env, "nstat", "--host", host, "-azs", "--json")
    assert out.returncode == 0, out.stderr
    counters: dict[str, int] = json.loads(out.stdout)["kernel"]
    return counters


@pytest.mark.parametrize("host", HOSTS)
def test_snmp_counters_equal_nstats(stack: dict[str, str], host: str) -> None:
    addrs = _metrics_addrs(stack)

    def read(metrics: bool) -> dict[str, float]:
        if not metrics:
            return {k: float(v) for k, v in _nstat(stack, host).items()}
        # nstat adds the counter both layers keep (IcmpInErrors): sum over services.
        total: dict[str, float] = {}
        for layer in ("ip", "udp"):
            for name, value in _pick(_scrape(addrs[(host, layer)]), "stackemu_snmp_").items():
                total[name] = total.get(name, 0) + value
        return total

    metrics, nstat = _stable(read)
    # nstat -z prints every counter but the two settings, which are gauges here.
    assert {k: v for k, v in metrics.items() if k not in ("IpForwarding", "IpDefaultTTL")} == nstat
    assert metrics["IpDefaultTTL"] == 64
    if host == "alice":
        assert nstat["UdpOutDatagrams"] == 4
        assert nstat["IcmpInDestUnreachs"] == 1
    else:
        # udp_recvmsg() counts InDatagrams: one of the three was read (Linux 6.18 says
        # the same: 0 for queued datagrams, 1 after one recv).
        assert nstat["UdpInDatagrams"] == 1
        assert nstat["UdpNoPorts"] == 1
        assert nstat["IcmpOutDestUnreachs"] == 1


def _ethtool(env: dict[str, str], host: str, dev: str) -> dict[str, float]:
    out = cli(env, "ethtool", "--host", host, "-S", dev)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "NIC statistics:"
    return {name.strip(): float(value) for name, value in (line.split(":") for line in lines[1:])}


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("dev", ["lo", "eth0"])
def test_ethtool_stats_equal_ethtool_S(stack: dict[str, str], host: str, dev: str) -> None:
    addr = _metrics_addrs(stack)[(host, "nic")]

    def read(metrics: bool) -> dict[str, float]:
        if metrics:
            return _pick(_scrape(addr), "stackemu_ethtool_", device=dev)
        return _ethtool(stack, host, dev)

    metrics, ethtool = _stable(read)
    assert metrics == ethtool
    if dev == "eth0":
        # The four datagrams, one way or the other, and ARP's two frames at least.
        key = "tx_packets" if host == "alice" else "rx_packets"
        assert ethtool[key] >= 5


@pytest.mark.parametrize("host", HOSTS)
def test_softnet_equals_softnet_stat(stack: dict[str, str], host: str) -> None:
    addr = _metrics_addrs(stack)[(host, "nic")]

    def read(metrics: bool) -> dict[str, dict[str, float]]:
        if metrics:
            samples = _scrape(addr)
            cpus = {dict(lbls)["cpu"] for name, lbls in samples if name.startswith("stackemu_softnet_")}
            return {cpu: _pick(samples, "stackemu_softnet_", cpu=cpu) for cpu in cpus}
        out = cli(stack, "softnet_stat", "--host", host)
        assert out.returncode == 0, out.stderr
        table: dict[str, dict[str, float]] = {}
        for line in out.stdout.splitlines():
            col = [int(c, 16) for c in line.split()]
            # softnet_seq_show(): processed, dropped, time_squeeze, 6 zeros,
            # received_rps, flow_limit_count, backlog length, cpu.
            table[str(col[12])] = {
                "processed": col[0],
                "dropped": col[1],
                "time_squeeze": col[2],
                "received_rps": col[9],
                "flow_limit_count": col[10],
                "backlog_len": col[11],
            }
        return table

    metrics, softnet = _stable(read)
    assert metrics == softnet
    # skbs after GRO: alice the ARP reply and the port unreachable; bob the ARP request,
    # the three to port 7000 (perhaps merged into one) and the one to 7001. A neighbour
    # probe may add more while the test runs.
    assert softnet["0"]["processed"] >= (2 if host == "alice" else 3)


def _get_stats(env: dict[str, str], host: str, layer: str) -> dict[tuple[str, str], float]:
    with grpc.insecure_channel(service_addr(env, host, layer)) as ch:
        if layer == "nic":
            resp = nic_pb2_grpc.NicServiceStub(ch).GetStats(nic_pb2.GetStatsRequest(), timeout=10)
        elif layer == "ip":
            resp = ip_pb2_grpc.IpServiceStub(ch).GetStats(ip_pb2.GetStatsRequest(), timeout=10)
        else:
            resp = udp_pb2_grpc.UdpServiceStub(ch).GetStats(udp_pb2.GetStatsRequest(), timeout=10)
    # The gRPC API names the C enumerator; the label carries the name the kfree_skb
    # tracepoint and the drop monitor print.
    return {(d.reason.removeprefix("SKB_DROP_REASON_"), d.location): float(d.count) for d in resp.drops}


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("layer", ["nic", "ip", "udp"])
def test_drops_equal_get_stats(stack: dict[str, str], host: str, layer: str) -> None:
    addr = _metrics_addrs(stack)[(host, layer)]

    def read(metrics: bool) -> dict[tuple[str, str], float]:
        if not metrics:
            return _get_stats(stack, host, layer)
        return {
            (dict(lbls)["reason"], dict(lbls)["location"]): value
            for (name, lbls), value in _scrape(addr).items()
            if name == "stackemu_skb_drops_total"
        }

    metrics, drops = _stable(read)
    assert metrics == drops
    if (host, layer) == ("bob", "udp"):
        assert {r: c for (r, _), c in drops.items()} == {"NO_SOCKET": 1}


def test_sockets_equal_list_sockets(stack: dict[str, str]) -> None:
    addr = _metrics_addrs(stack)[("bob", "udp")]

    def read(metrics: bool) -> dict[str, dict[str, float]]:
        if metrics:
            samples = _scrape(addr)
            sks = {dict(lbls)["sk"] for name, lbls in samples if name.startswith("stackemu_sock_")}
            return {sk: _pick(samples, "stackemu_sock_", sk=sk) for sk in sks}
        with grpc.insecure_channel(service_addr(stack, "bob", "udp")) as ch:
            resp = udp_pb2_grpc.UdpServiceStub(ch).ListSockets(udp_pb2.ListSocketsRequest(), timeout=10)
        return {
            str(s.sk): {"rmem_alloc": s.rmem_alloc, "rcvbuf": s.rcvbuf, "drops": s.drops}
            for s in resp.sockets
            if s.local_port
        }

    metrics, listed = _stable(read)
    assert {sk: {k: v[k] for k in ("rmem_alloc", "rcvbuf", "drops")} for sk, v in metrics.items()} == listed
    (sk,) = listed
    samples = _scrape(addr)
    labels = {
        dict(lbls)["local"]: dict(lbls)["peer"] for name, lbls in samples if name.startswith("stackemu_sock_")
    }
    assert labels == {"10.0.0.2:7000": "0.0.0.0:*"}
    # Two datagrams wait unread: two skbs' truesize.
    assert listed[sk]["rmem_alloc"] > 0 and listed[sk]["drops"] == 0


def test_processes_of_the_socket_layer(stack: dict[str, str]) -> None:
    samples = _scrape(_metrics_addrs(stack)[("bob", "socket")])
    assert samples[("stackemu_processes", (("host", "bob"), ("service", "socket")))] == 1
    files = {dict(lbls)["comm"]: v for (name, lbls), v in samples.items() if name == "stackemu_process_files"}
    assert list(files.values()) == [1]
