"""`stackemu tcpdump` on a launched stack: a libpcap filter run by bob's NIC taps, and
captures at the boundary between bob's IP and UDP, as lines and as pcapng read back
by tshark.

One exchange feeds every capture: alice sends "to 9001" to bob's port 9001 (no socket
there: bob's UDP answers with a port unreachable) and "hello 9000" to port 9000, where
bob's socket answers "reply".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.stackrun import cli, launched

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("tcpdump", "tshark")),
        reason="tcpdump and tshark are not installed (scripts/bootstrap.sh installs them)",
    ),
]

BOB = textwrap.dedent(
    """
    import os, subprocess, sys
    import stackemu.socket as socket
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind(("0.0.0.0", 9000))
    r.settimeout(20)
    sender = '''
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(20)
    s.sendto(b"to 9001", ("10.0.0.2", 9001))
    s.sendto(b"hello 9000", ("10.0.0.2", 9000))
    print(s.getsockname()[1], s.recvfrom(100)[0].decode(), flush=True)
    '''
    env = {**os.environ, "STACKEMU_HOST": "alice"}
    p = subprocess.Popen([sys.executable, "-c", sender], env=env, stdout=subprocess.PIPE, text=True)
    data, addr = r.recvfrom(100)
    r.sendto(b"reply", addr)
    out, _ = p.communicate(timeout=20)
    assert p.returncode == 0
    print(out.strip(), data.decode(), addr[1])
    """
)


@dataclass
class Captures:
    port: int  # alice's ephemeral port
    eth_pcapng: Path
    boundary_pcapng: Path
    boundary_lines: str
    boundary_filtered: str
    boundary_pcap: Path
    boundary_e_lines: str


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "stackemu", "tcpdump", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # the tap is in place when tcpdump says it listens (its first or second line)
    assert proc.stderr is not None
    lines = [proc.stderr.readline()]
    if "listening on" not in lines[0]:
        lines.append(proc.stderr.readline())
    assert "listening on" in lines[-1], lines
    return proc


def _finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return out, err


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Captures]:
    state = tmp_path_factory.mktemp("state")
    files = tmp_path_factory.mktemp("captures")
    for env in launched(str(state)):
        env["TZ"] = "UTC"
        eth = files / "eth.pcapng"
        boundary = files / "boundary.pcapng"
        procs = [
            _start(env, "-i", "bob:eth0", "-c", "2", "-w", str(eth), "udp", "port", "9000"),
            _start(env, "-i", "bob:ip-udp", "-c", "3", "-w", str(boundary)),
            _start(env, "-i", "bob:ip-udp", "-c", "3"),
            _start(env, "--host", "bob", "--layer", "ip-udp", "-c", "1", "udp", "dst", "port", "9000"),
            _start(env, "-i", "bob:ip-udp", "-c", "3", "-w", str(files / "boundary.pcap")),
            _start(env, "-e", "-i", "bob:ip-udp", "-c", "3"),
        ]
        r = subprocess.run(
            [sys.executable, "-c", BOB],
            env={**env, "STACKEMU_HOST": "bob"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        port = r.stdout.split()[0]
        assert r.stdout == f"{port} reply hello 9000 {port}\n"
        outs = [_finish(p)[0] for p in procs]
        yield Captures(int(port), eth, boundary, outs[2], outs[3], files / "boundary.pcap", outs[5])


def _tshark(path: Path, *fields: str) -> list[list[str]]:
    cmd = ["tshark", "-r", str(path), "-T", "fields", "-o", "udp.check_checksum:TRUE"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def test_the_nic_filter_keeps_exactly_port_9000(captures: Captures) -> None:
    # not the ARP exchange, the datagram to 9001 or the ICMP error about it
    rows = _tshark(
        captures.eth_pcapng,
        "frame.interface_name",
        "frame.packet_flags_direction",
        "ip.src",
        "ip.dst",
        "udp.srcport",
        "udp.dstport",
        "data.data",
    )
    p = str(captures.port)
    assert rows == [
        ["bob:eth0", "0x00000001", "10.0.0.1", "10.0.0.2", p, "9000", b"hello 9000".hex()],
        ["bob:eth0", "0x00000002", "10.0.0.2", "10.0.0.1", "9000", p, b"reply".hex()],
    ]


def test_the_ip_udp_boundary_decodes_in_tshark(captures: Captures) -> None:
    rows = _tshark(
        captures.boundary_pcapng,
        "frame.interface_name",
        "frame.packet_flags_direction",
        "frame.comment",
        "ip.src",
        "ip.dst",
        "ip.ttl",
        "udp.srcport",
        "udp.dstport",
        "udp.length",
        "data.data",
    )
    p = str(captures.port)
    up = "ip_local_deliver_finish -> udp_rcv"
    # bob's eth0 offloads the checksum: the reply's is still the pseudo-header sum
    down = (
        "udp_send_skb -> ip_send_skb,"
        "CHECKSUM_PARTIAL: the UDP checksum is the pseudo-header sum; the device completes it"
    )
    assert [r[:3] for r in rows] == [
        ["bob:ip-udp", "0x00000001", up],
        ["bob:ip-udp", "0x00000001", up],
        ["bob:ip-udp", "0x00000002", down],
    ]
    assert [r[3:] for r in rows] == [
        ["10.0.0.1", "10.0.0.2", "64", p, "9001", "15", b"to 9001".hex()],
        ["10.0.0.1", "10.0.0.2", "64", p, "9000", "18", b"hello 9000".hex()],
        ["10.0.0.2", "10.0.0.1", "64", "9000", p, "13", b"reply".hex()],
    ]


def test_the_ip_udp_boundary_as_lines_with_and_without_a_filter(captures: Captures) -> None:
    p = captures.port
    lines = [line.split(" ", 1)[1] for line in captures.boundary_lines.splitlines()]
    assert lines == [
        f"IP 10.0.0.1.{p} > 10.0.0.2.9001: UDP, length 7",
        f"IP 10.0.0.1.{p} > 10.0.0.2.9000: UDP, length 10",
        f"IP 10.0.0.2.9000 > 10.0.0.1.{p}: UDP, length 5",
    ]
    [line] = captures.boundary_filtered.splitlines()
    assert line.split(" ", 1)[1] == f"IP 10.0.0.1.{p} > 10.0.0.2.9000: UDP, length 10"


def test_a_bad_filter_at_the_boundary() -> None:
    # refused by libpcap for raw IPv4 before any service is asked
    r = cli(dict(os.environ), "tcpdump", "-i", "bob:ip-udp", "ether", "host", "1:2:3:4:5:6")
    assert (r.returncode, r.stdout) == (1, "")
    lans = "ethernet/FDDI/token ring/802.11/ATM LANE/Fibre Channel"
    assert r.stderr == f"tcpdump: ethernet addresses supported only on {lans}\n"


def test_the_boundary_lines_are_what_tcpdump_prints_of_the_pcap(captures: Captures) -> None:
    """LINKTYPE_IPV4 in a classic pcap, read by the real tcpdump, with and without -e."""
    env = {**os.environ, "TZ": "UTC"}
    for flags, ours in (["-n"], captures.boundary_lines), (["-n", "-e"], captures.boundary_e_lines):
        real = subprocess.run(
            ["tcpdump", *flags, "-r", str(captures.boundary_pcap)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=True,
        )
        assert real.stderr.startswith("reading from file") and "link-type IPV4 (Raw IPv4)" in real.stderr
        assert real.stdout == ours, flags
