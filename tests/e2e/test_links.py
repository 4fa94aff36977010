"""The NIC's links on a launched stack: alice and bob over the wire, alice's eth1 on a
TAP device talking with this machine's real kernel (in a namespace the launcher makes
and removes), and the NIC tools of the CLI on the running services, with a capture
read back by tshark."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stackrun import cli, stack_env

CAN_TAP = os.geteuid() == 0 and Path("/dev/net/tun").exists() and shutil.which("ip") is not None

# A process per host: the drop-in module talks to one socket service per process.
ECHO = textwrap.dedent(
    """
    import sys
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], int(sys.argv[2])))
    s.settimeout(20)
    print("ready", flush=True)
    for _ in range(int(sys.argv[3])):
        data, addr = s.recvfrom(65535)
        s.sendto(data[::-1], addr)
        print(addr[0], addr[1], len(data), flush=True)
    """
)
SEND = textwrap.dedent(
    """
    import sys
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    if len(sys.argv) > 3:
        s.bind((sys.argv[3], 0))
    out = []
    for size in (1, 100, 1472):
        payload = bytes(i % 251 for i in range(size))
        s.sendto(payload, (sys.argv[1], int(sys.argv[2])))
        data, addr = s.recvfrom(65535)
        assert data == payload[::-1], (len(data), size)
        out.append(f"{addr[0]} {addr[1]} {len(data)}")
    print(s.getsockname()[0])
    print("\\n".join(out))
    """
)


def _py(
    env: dict[str, str], host: str, code: str, *args: str, netns: str | None = None
) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-c", code, *args]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return subprocess.Popen(
        cmd,
        env={**env, "STACKEMU_HOST": host},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.stderr.read() if proc.stderr else "")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = stack_env(str(tmp_path_factory.mktemp("state")))
    args = ["up"]
    tap = ""
    if CAN_TAP:
        tap = "setap" + secrets.token_hex(4)
        args += ["--tap", tap]
    up = cli(env, *args)
    assert up.returncode == 0, up.stderr
    env["TEST_TAP"] = tap
    try:
        yield env
    finally:
        down = cli(env, "down")
        assert down.returncode == 0, down.stderr
        if tap:
            # `stackemu down` removed the namespace and with it the device.
            assert tap not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
            assert subprocess.run(["ip", "link", "show", tap], capture_output=True).returncode != 0


def _link_stats(env: dict[str, str], host: str, dev: str) -> dict[str, int]:
    out = cli(env, "ethtool", "-S", f"{host}:{dev}")
    assert out.returncode == 0, out.stderr
    return {k.strip(): int(v) for k, v in (line.split(":") for line in out.stdout.splitlines()[1:])}


def test_alice_and_bob_exchange_datagrams_over_the_wire(stack: dict[str, str]) -> None:
    before = _link_stats(stack, "bob", "eth0")
    echo = _py(stack, "bob", ECHO, "10.0.0.2", "9000", "3")
    _wait_ready(echo)
    send = _py(stack, "alice", SEND, "10.0.0.2", "9000")
    out, err = send.communicate(timeout=60)
    assert send.returncode == 0, err
    # Unbound: autobind picks the port, the address stays the wildcard (as Linux).
    assert out.splitlines() == ["0.0.0.0", "10.0.0.2 9000 1", "10.0.0.2 9000 100", "10.0.0.2 9000 1472"]
    got, err = echo.communicate(timeout=30)
    assert echo.returncode == 0, err
    assert [line.split()[0] for line in got.splitlines()] == ["10.0.0.1"] * 3
    after = _link_stats(stack, "bob", "eth0")
    # Three datagrams in and three out (ARP on top, if the neighbours were not known yet).
    assert after["rx_packets"] - before["rx_packets"] >= 3
    assert after["tx_packets"] - before["tx_packets"] >= 3
    assert after["rx_missed_errors"] == after["rx_dropped"] == 0
    neigh = cli(stack, "ip", "neigh", "show", "dev", "eth0", "--host", "alice")
    # With `dev` given, iproute2 leaves the device out of each line.
    assert neigh.stdout.startswith("10.0.0.2 lladdr 02:00:0a:00:00:02 "), neigh.stdout


@pytest.mark.skipif(not CAN_TAP, reason="the TAP link needs root, /dev/net/tun and iproute2")
def test_tap_exchanges_datagrams_with_the_real_kernel_both_ways(stack: dict[str, str]) -> None:
    tap = stack["TEST_TAP"]
    # The kernel's side: address and state as the launcher left it, in its namespace.
    addr = subprocess.run(["ip", "-n", tap, "-br", "addr", "show", tap], capture_output=True, text=True)
    assert addr.stdout.split()[2] == "10.99.0.1/24", addr.stdout
    # Emulated alice answers a real kernel socket (the kernel ARPs for 10.99.0.2 first).
    echo = _py(stack, "alice", ECHO, "10.99.0.2", "9100", "3")
    _wait_ready(echo)
    kernel = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            tap,
            sys.executable,
            "-c",
            SEND.replace("stackemu.socket", "socket"),
            "10.99.0.2",
            "9100",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert kernel.returncode == 0, kernel.stderr
    assert kernel.stdout.splitlines()[1:] == ["10.99.0.2 9100 1", "10.99.0.2 9100 100", "10.99.0.2 9100 1472"]
    got, err = echo.communicate(timeout=30)
    assert [line.split()[0] for line in got.splitlines()] == ["10.99.0.1"] * 3, err
    # And the other way: a real kernel socket answers emulated alice.
    kecho = _py(
        stack, "alice", ECHO.replace("stackemu.socket", "socket"), "10.99.0.1", "9200", "3", netns=tap
    )
    _wait_ready(kecho)
    send = _py(stack, "alice", SEND, "10.99.0.1", "9200", "10.99.0.2")
    out, err = send.communicate(timeout=60)
    assert send.returncode == 0, err
    assert out.splitlines() == ["10.99.0.2", "10.99.0.1 9200 1", "10.99.0.1 9200 100", "10.99.0.1 9200 1472"]
    kecho.communicate(timeout=30)
    # Both learned each other by ARP.
    ours = cli(stack, "ip", "neigh", "show", "dev", "eth1", "--host", "alice").stdout
    assert ours.startswith("10.99.0.1 lladdr "), ours
    theirs = subprocess.run(["ip", "-n", tap, "neigh", "show", "10.99.0.2"], capture_output=True, text=True)
    assert "lladdr 02:00:0a:63:00:02" in theirs.stdout, theirs.stdout


def _roundtrip(env: dict[str, str], port: str, timeout_s: str = "2") -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(
        """
        import sys
        import stackemu.socket as socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(float(sys.argv[2]))
        s.sendto(b"ping", ("10.0.0.2", int(sys.argv[1])))
        try:
            print(s.recvfrom(100)[0].decode())
        except TimeoutError:
            print("timeout")
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code, port, timeout_s],
        env={**env, "STACKEMU_HOST": "alice"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_every_knob_from_the_cli(stack: dict[str, str], tmp_path: Path) -> None:
    def ok(*args: str) -> str:
        out = cli(stack, *args)
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        return out.stdout

    ok("ethtool", "-G", "eth0", "rx", "512", "tx", "128")
    ring = ok("ethtool", "-g", "eth0")
    assert ring.endswith(
        "Current hardware settings:\nRX:\t\t512\n"
        "RX Mini:\tn/a\nRX Jumbo:\tn/a\nTX:\t\t128\n"
        "RX Buf Len:\t\tn/a\nCQE Size:\t\tn/a\nTX Push:\toff\nTCP data split:\tn/a\n"
    ), ring
    assert cli(stack, "ethtool", "-G", "eth0", "rx", "9999").returncode != 0
    ok("ethtool", "-C", "eth0", "rx-usecs", "20", "rx-frames", "8")
    coalesce = ok("ethtool", "-c", "eth0")
    assert "rx-usecs:\t20" in coalesce or "rx-usecs: 20" in coalesce
    ok("ethtool", "-K", "eth0", "gro", "off")
    assert "generic-receive-offload: off" in ok("ethtool", "-k", "eth0")
    ok("ethtool", "-K", "eth0", "gro", "on")
    ok("ip", "link", "set", "dev", "eth0", "mtu", "1400")
    assert " mtu 1400 " in ok("ip", "link", "show", "eth0")
    ok("ip", "link", "set", "dev", "eth0", "mtu", "1500")
    ok("ip", "link", "set", "dev", "eth0", "promisc", "on")
    assert "PROMISC" in ok("ip", "link", "show", "eth0")
    ok("ip", "link", "set", "dev", "eth0", "promisc", "off")
    ok("ip", "neigh", "replace", "10.0.0.77", "lladdr", "02:00:00:00:00:77", "dev", "eth0")
    assert "10.0.0.77 dev eth0 lladdr 02:00:00:00:00:77 PERMANENT" in ok("ip", "neigh", "show")
    ok("ip", "neigh", "del", "10.0.0.77", "dev", "eth0")
    assert "10.0.0.77" not in ok("ip", "neigh", "show")
    ok("sysctl", "-w", "net.core.netdev_budget=100")
    assert ok("sysctl", "net.core.netdev_budget") == "net.core.netdev_budget = 100\n"
    ok("sysctl", "-w", "net.core.netdev_budget=300")
    [softnet] = ok("softnet_stat", "--host", "bob").splitlines()
    cols = [int(c, 16) for c in softnet.split()]
    # processed, and nothing dropped. time_squeeze (cols[2]) is left out: it also
    # counts a softirq that ran past netdev_budget_usecs, which the emulator measures
    # in real time, so a busy 2-core machine can make it 1 (a fresh-clone CI run did).
    assert len(cols) == 15 and cols[0] > 0 and cols[1] == 0, softnet
    ok("ip", "link", "set", "dev", "eth0", "napi_weight", "32")
    bad = cli(stack, "ip", "link", "set", "dev", "eth0", "napi_weight", "0")
    # Like iproute2 printing the kernel's extack message.
    assert (bad.returncode, bad.stderr) == (2, "Error: napi weight 0 outside 1..65536.\n")
    ok("ip", "link", "set", "dev", "eth0", "napi_weight", "64")
    ok("ip", "link", "set", "dev", "eth0", "txqueuelen", "500")
    assert " qlen 500" in ok("ip", "link", "show", "eth0")

    # netem on alice's egress: everything lost, counted; then taken away again. Bob's
    # address is made permanent first so that no ARP is lost with the datagram (an
    # INCOMPLETE entry would fail after 3 lost requests and drop what it holds).
    ok("ip", "neigh", "replace", "10.0.0.2", "lladdr", "02:00:0a:00:00:02", "dev", "eth0")
    echo = _py(stack, "bob", ECHO, "10.0.0.2", "9300", "1")
    _wait_ready(echo)
    ok("tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "loss", "100%")
    assert "netem" in ok("tc", "qdisc", "show", "dev", "eth0")
    assert _roundtrip(stack, "9300", "1").stdout == "timeout\n"
    assert "(dropped 1, overlimits 0 requeues 0)" in ok("tc", "-s", "qdisc", "show", "dev", "eth0")
    ok("tc", "qdisc", "del", "dev", "eth0", "root")
    assert _roundtrip(stack, "9300").stdout == "gnip\n"
    echo.communicate(timeout=30)

    # A capture of real traffic, read back by tshark with every checksum checked.
    pcap = tmp_path / "wire.pcap"
    dump = subprocess.Popen(
        [sys.executable, "-m", "stackemu", "tcpdump", "-i", "bob:eth0", "-w", str(pcap)],
        env=stack,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    echo = _py(stack, "bob", ECHO, "10.0.0.2", "9400", "1")
    _wait_ready(echo)
    deadline = time.monotonic() + 10
    while (
        "listening on" not in (dump.stderr.readline() if dump.stderr else "") and time.monotonic() < deadline
    ):
        pass
    assert _roundtrip(stack, "9400").stdout == "gnip\n"
    dump.send_signal(signal.SIGINT)
    dump.communicate(timeout=30)
    echo.communicate(timeout=30)
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (scripts/bootstrap.sh installs it)")
    fields = subprocess.run(
        [
            "tshark",
            "-r",
            str(pcap),
            "-Y",
            "udp",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "udp.length",
            "-e",
            "ip.checksum.status",
            "-e",
            "udp.checksum.status",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fields.returncode == 0, fields.stderr
    # Status 1 is tshark's "Good" (0 bad, 2 unverified). bob's reply is captured on its
    # way out, before the device completes its CHECKSUM_PARTIAL checksum: the field holds
    # the pseudo-header sum, "bad" to tshark, as a capture on a Linux veth shows it.
    assert fields.stdout.splitlines() == [
        "10.0.0.1\t10.0.0.2\t12\t1\t1",
        "10.0.0.2\t10.0.0.1\t12\t1\t0",
    ], fields.stdout
