"""A 4000-byte datagram from alice to bob over the MTU-1500 wire: alice fragments it,
bob reassembles it, and the fragments on the wire are byte-identical (IP ID aside) to
what this machine's kernel puts on a veth with MTU 1500 for the same send, between
namespaces the test makes with alice's and bob's addresses."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import dpkt  # type: ignore[import-untyped]
import pytest

from services.core.checksum import ip_fast_csum
from tests.e2e.stackrun import cli, stack_env

CAN_NETNS = os.geteuid() == 0 and shutil.which("ip") is not None
SPORT, DPORT, SIZE = 40001, 9000, 4000
PAYLOAD = bytes(i % 251 for i in range(SIZE))

# Runs inside bob's namespace: an AF_PACKET capture of the UDP fragments for 10.0.0.2,
# printed as hex, one IP packet per line.
KERNEL_CAPTURE = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    s.bind((sys.argv[1], 0))
    s.settimeout(10)
    print("ready", flush=True)
    got = []
    while len(got) < 3:
        frame, addr = s.recvfrom(65535)
        ip = frame[14:]
        if addr[2] == socket.PACKET_HOST and ip[9] == 17:
            got.append(ip[: int.from_bytes(ip[2:4], "big")].hex())
    print("\\n".join(got), flush=True)
    """
)
KERNEL_SEND = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.0.0.1", int(sys.argv[1])))
    s.sendto(bytes(i % 251 for i in range(int(sys.argv[2]))), ("10.0.0.2", int(sys.argv[3])))
    """
)
EMU_RECV = textwrap.dedent(
    """
    import sys
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.0.0.2", int(sys.argv[1])))
    s.settimeout(20)
    print("ready", flush=True)
    data, addr = s.recvfrom(65535)
    print(addr[0], addr[1], len(data), data == bytes(i % 251 for i in range(len(data))), flush=True)
    """
)
EMU_SEND = textwrap.dedent(
    """
    import sys
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.0.0.1", int(sys.argv[1])))
    print(s.sendto(bytes(i % 251 for i in range(int(sys.argv[2]))), ("10.0.0.2", int(sys.argv[3]))))
    """
)


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def kernel_fragments() -> Iterator[list[bytes]]:
    """The fragments this machine's kernel sends for the datagram, veth MTU 1500."""
    if not CAN_NETNS:
        pytest.skip("namespaces and veth need root and iproute2")
    tag = secrets.token_hex(3)
    a, b = f"fra{tag}", f"frb{tag}"
    try:
        _run("ip", "netns", "add", a)
        _run("ip", "netns", "add", b)
        _run("ip", "link", "add", f"va{tag}", "netns", a, "type", "veth", "peer", f"vb{tag}", "netns", b)
        for ns, dev, addr in ((a, f"va{tag}", "10.0.0.1/24"), (b, f"vb{tag}", "10.0.0.2/24")):
            _run("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "mtu", "1500", "up")
        capture = subprocess.Popen(
            ["ip", "netns", "exec", b, sys.executable, "-c", KERNEL_CAPTURE, f"vb{tag}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert capture.stdout is not None
        assert capture.stdout.readline() == "ready\n"
        _run("ip", "netns", "exec", a, sys.executable, "-c", KERNEL_SEND, str(SPORT), str(SIZE), str(DPORT))
        out, err = capture.communicate(timeout=30)
        assert capture.returncode == 0, err
        yield [bytes.fromhex(line) for line in out.split()]
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = stack_env(str(tmp_path / "state"))
    up = cli(env, "up")
    assert up.returncode == 0, up.stderr
    try:
        yield env
    finally:
        assert cli(env, "down").returncode == 0


def _with_ident(packet: bytes, ident: int) -> bytes:
    """The packet with another IP ID and its header checksum made right for it."""
    hdr = bytearray(packet[: (packet[0] & 0x0F) * 4])
    hdr[4:6] = ident.to_bytes(2, "big")
    hdr[10:12] = b"\0\0"
    hdr[10:12] = ip_fast_csum(bytes(hdr)).to_bytes(2, "big")
    return bytes(hdr) + packet[len(hdr) :]


def _nstat(env: dict[str, str], host: str) -> dict[str, int]:
    out = cli(env, "nstat", "-a", "-z", "--host", host)
    assert out.returncode == 0, out.stderr
    return {f: int(v) for f, v, *_ in (line.split() for line in out.stdout.splitlines()[1:])}


def _py(env: dict[str, str], host: str, code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env={**env, "STACKEMU_HOST": host},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_4000_bytes_cross_the_wire_in_the_kernels_fragments(
    kernel_fragments: list[bytes], stack: dict[str, str], tmp_path: Path
) -> None:
    # The kernel: 1480 + 1480 + 1048 bytes of IP payload (UDP header included), offsets
    # 0, 185, 370 in 8-byte units, MF on the first two, DF clear (IP_PMTUDISC_WANT and
    # the datagram does not fit), TTL 64.
    assert [len(p) for p in kernel_fragments] == [1500, 1500, 1068]
    pcap = tmp_path / "bob.pcap"
    dump = subprocess.Popen(
        [sys.executable, "-m", "stackemu", "tcpdump", "-i", "bob:eth0", "-w", str(pcap)],
        env=stack,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert dump.stderr is not None
    assert "listening on" in dump.stderr.readline()
    recv = _py(stack, "bob", EMU_RECV, str(DPORT))
    assert recv.stdout is not None
    assert recv.stdout.readline() == "ready\n"
    send = _py(stack, "alice", EMU_SEND, str(SPORT), str(SIZE), str(DPORT))
    out, err = send.communicate(timeout=30)
    assert (out, send.returncode) == (f"{SIZE}\n", 0), err
    got, err = recv.communicate(timeout=30)
    assert got == f"10.0.0.1 {SPORT} {SIZE} True\n", err
    time.sleep(0.3)
    dump.terminate()
    dump.communicate(timeout=10)
    with pcap.open("rb") as f:
        frames = [bytes(buf) for _, buf in dpkt.pcap.Reader(f)]
    ours = [f[14:] for f in frames if f[12:14] == b"\x08\x00" and f[14 + 9] == 17]
    assert len(ours) == 3
    ident = int.from_bytes(kernel_fragments[0][4:6], "big")
    assert [_with_ident(p, ident) for p in ours] == kernel_fragments
    alice, bob = _nstat(stack, "alice"), _nstat(stack, "bob")
    assert (alice["IpFragOKs"], alice["IpFragCreates"], alice["IpFragFails"]) == (1, 3, 0)
    assert (bob["IpReasmReqds"], bob["IpReasmOKs"], bob["IpReasmFails"]) == (3, 1, 0)
