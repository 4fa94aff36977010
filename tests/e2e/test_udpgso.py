"""The kernel selftest udpgso (tools/testing/selftests/net/udpgso.c and udpgso.sh, IPv4
runs; tests/e2e/udpgso_cases.py has the port and says which version), run on this
machine's kernel and on an emulated stack alice → bob over the MTU-1500 wire.

The kernel runs it as udpgso.sh does, in namespaces of the test's own, over 127.0.0.1
instead of the selftest's 10.0.0.1 on lo: lo with MTU 1500 (test_dev_mtu) for the cmsg,
setsockopt and MSG_MORE runs, and the local route with MTU 1500 (test_route_mtu) for the
connected one (run in the first namespace too, which is what the emulated wire is like).
Its answers must be the selftest's table: this checks the port. The emulated stack must
answer the same table.

Beyond the selftest, a cmsg run towards a receiver with UDP_GRO. On this kernel's lo the
GSO skb is not segmented (lo has NETIF_F_GSO_UDP_L4) and reaches a UDP_GRO socket whole
(udp_unexpected_gso() is false), so each send is one datagram with gso_size as its
UDP_GRO cmsg; except "send MAX bytes", which gso_features_check() segments because
skb->len (65535 + the 14-byte Ethernet header) reaches lo's gso_max_size 65536. The
emulated eth0 puts segments on the wire and bob's GRO merges what one NAPI poll finds,
so how many datagrams bob reads depends on timing: the test asserts only that they are
the case's segments, in order, merged into runs that carry gso_size (the first
segment's length) when a run has more than one.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stackrun import cli, stack_env
from tests.e2e.udpgso_cases import (
    CASES,
    CONST_HDRLEN_V4,
    SELFTEST_VARIANTS,
    VARIANTS,
    Case,
    expected,
    gro_grouping_ok,
)

CAN_NETNS = os.geteuid() == 0 and shutil.which("ip") is not None
ROOT = Path(__file__).resolve().parents[2]
MODULE = "tests.e2e.udpgso_cases"
PORT = 9000
GRO = "ipv4 cmsg, UDP_GRO receiver"
ALL = (*SELFTEST_VARIANTS, GRO)
# One step of the emulated run (a case's send, or its receive) takes at most this long.
STEP_TIMEOUT = 30.0
ETH_HLEN, GSO_MAX_SIZE = 14, 65536

Records = dict[str, list[dict[str, Any]]]


def _by_variant(records: list[dict[str, Any]]) -> Records:
    out: Records = {}
    for rec in records:
        out.setdefault(rec["variant"], []).append(rec)
    return out


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _kernel_run(route_mtu: bool, names: tuple[str, ...]) -> Records:
    """udpgso.sh's `in_netns.sh udpgso.sh test_dev_mtu|test_route_mtu -- udpgso ...`."""
    ns = f"gso{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", ns)
        if route_mtu:
            _ip("-n", ns, "link", "set", "lo", "up")
            route = ("local", "127.0.0.1/32", "table", "local", "dev", "lo")
            _ip("-n", ns, "route", "del", *route)
            _ip("-n", ns, "route", "add", *route, "mtu", "1500")
        else:
            _ip("-n", ns, "link", "set", "lo", "mtu", "1500", "up")
        script = (sys.executable, "-m", MODULE, "kernel", "127.0.0.1", str(PORT), *names)
        run = subprocess.run(
            ["ip", "netns", "exec", ns, *script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        return _by_variant(json.loads(run.stdout))
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(scope="module")
def kernel() -> Records:
    if not CAN_NETNS:
        pytest.skip("network namespaces need root and iproute2")
    return _kernel_run(False, ALL)


@pytest.fixture(scope="module")
def kernel_route_mtu() -> Records:
    if not CAN_NETNS:
        pytest.skip("network namespaces need root and iproute2")
    return _kernel_run(True, ("ipv4 connected",))


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's stdout lines, "" at its end: read with a timeout, never hang."""
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)
        q.put("")

    threading.Thread(target=pump, daemon=True).start()
    return q


def _next(q: queue.Queue[str], proc: subprocess.Popen[str], who: str) -> dict[str, Any]:
    try:
        line = q.get(timeout=STEP_TIMEOUT)
    except queue.Empty:
        pytest.fail(f"the {who} said nothing for {STEP_TIMEOUT} s")
    if not line:
        proc.wait(timeout=10)
        assert proc.stderr is not None
        pytest.fail(f"the {who} exited with {proc.returncode}: {proc.stderr.read()}")
    rec: dict[str, Any] = json.loads(line)
    return rec


def _emulated_run(env: dict[str, str], names: tuple[str, ...], port: int = PORT) -> tuple[int, Records, str]:
    """The sender on alice and the receiver on bob, in lockstep through this process:
    each sender record goes to the receiver, which receives what the send put on the
    wire before the sender goes on. What setting UDP_GRO answered on bob, the records,
    and the datagram bob found after the last case."""

    def start(host: str, mode: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", MODULE, mode, "10.0.0.2", str(port), *args],
            cwd=ROOT,
            env={**env, "STACKEMU_HOST": host},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    recv = start("bob", "recv")
    send: subprocess.Popen[str] | None = None
    try:
        rq = _lines(recv)
        udp_gro = _next(rq, recv, "receiver")["udp_gro"]
        send = start("alice", "send", *names)
        sq = _lines(send)
        assert send.stdin is not None and recv.stdin is not None
        records: list[dict[str, Any]] = []
        for _ in range(len(names) * len(CASES) + 1):
            rec = _next(sq, send, "sender")
            recv.stdin.write(json.dumps(rec) + "\n")
            recv.stdin.flush()
            back = _next(rq, recv, "receiver")
            if rec.get("end"):
                return udp_gro, _by_variant(records), back["end"]
            records.append(back)
            send.stdin.write("next\n")
            send.stdin.flush()
        pytest.fail("the sender did not end")
    finally:
        for proc in (send, recv):
            if proc is not None:
                proc.kill()
                proc.communicate(timeout=10)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Records, str]]:
    env = stack_env(str(tmp_path_factory.mktemp("udpgso") / "state"))
    up = cli(env, "up")
    assert up.returncode == 0, up.stderr
    try:
        # The selftest checks segmentation, not GRO: bob's GRO is off for it. With GRO on,
        # a last segment short enough to be padded on the wire (a 1-byte one makes a
        # 43-byte frame, padded to 60) is refused by udp_gro_receive_segment ("padded
        # or malicious") and goes up before the held segments, as on a Linux NIC; the
        # UDP_GRO receiver's run below has GRO on.
        gro = ("ethtool", "--host", "bob", "-K", "eth0", "gro")
        assert cli(env, *gro, "off").returncode == 0
        udp_gro, records, end = _emulated_run(env, tuple(n for n in ALL if n != GRO))
        assert cli(env, *gro, "on").returncode == 0
        # Ports of its own: the first run's killed receiver still holds its sockets.
        _, gro_records, _ = _emulated_run(env, (GRO,), PORT + 10)
        yield udp_gro, {**records, **gro_records}, end
    finally:
        assert cli(env, "down").returncode == 0


def _table(variant: str) -> list[dict[str, Any]]:
    return [expected(case, VARIANTS[variant]) for case in CASES]


def _lo_gro(case: Case) -> list[list[int]]:
    """What a UDP_GRO socket reads on this kernel's lo for the case (see the docstring)."""
    if case.tfail:
        return []
    if not case.gso_len or case.tlen <= case.gso_len:
        return [[case.tlen, 0]]
    if case.tlen + CONST_HDRLEN_V4 + ETH_HLEN >= GSO_MAX_SIZE:
        return [[n, 0] for n in case.segments()]
    return [[case.tlen, case.gso_len]]


@pytest.mark.parametrize("variant", SELFTEST_VARIANTS)
def test_kernel_passes_the_selftest(kernel: Records, variant: str) -> None:
    assert kernel[variant] == _table(variant)


def test_kernel_connected_with_the_route_mtu(kernel_route_mtu: Records) -> None:
    assert kernel_route_mtu["ipv4 connected"] == _table("ipv4 connected")


def test_kernel_udp_gro_receiver_gets_each_gso_send_whole(kernel: Records) -> None:
    # 6.18: [[1473, 1472]] for "a single MSS + 1B", [[128, 1]] for 128 1-byte segments.
    got = kernel[GRO]
    assert [r["recv"] for r in got] == [_lo_gro(c) for c in CASES]
    assert all(gro_grouping_ok(c, r["recv"]) for c, r in zip(CASES, got, strict=True))
    assert [{**r, "recv": []} for r in got] == [{**e, "recv": []} for e in _table(GRO)]


@pytest.mark.parametrize("variant", SELFTEST_VARIANTS)
def test_emulated_stack_passes_the_selftest(emulated: tuple[int, Records, str], variant: str) -> None:
    _, records, end = emulated
    assert records[variant] == _table(variant)
    assert end == "end"


def test_emulated_udp_gro_receiver_gets_merged_runs(emulated: tuple[int, Records, str]) -> None:
    udp_gro, records, _ = emulated
    assert udp_gro == 0
    got = records[GRO]
    assert [{**r, "recv": []} for r in got] == [{**e, "recv": []} for e in _table(GRO)]
    assert [(i, r["recv"]) for i, r in enumerate(got) if not _gro_ok(CASES[i], r["recv"])] == []


def _gro_ok(case: Case, recv: list[list[int]]) -> bool:
    return gro_grouping_ok(case, recv) or gro_grouping_ok(case, _unpad(recv))


# The smallest Ethernet payload: a frame is padded to ETH_ZLEN (60 bytes with the header).
ETH_MIN_PAYLOAD = 46


def _unpad(recv: list[list[int]]) -> list[list[int]]:
    """bob's datagrams with a padded last segment put back at the end. A segment whose
    IP packet (28 bytes of headers and the payload) is shorter than the minimum Ethernet
    payload reaches bob padded; udp_gro_receive_segment refuses padded packets ("Do not
    deal with padded or malicious packets") and dev_gro_receive passes it up at once,
    ahead of the segments GRO holds until the end of the poll, as Linux does on a NIC."""
    if len(recv) > 1 and recv[0][1] == 0 and recv[0][0] + 28 < ETH_MIN_PAYLOAD:
        return [*recv[1:], recv[0]]
    return recv


def test_gro_grouping_accepts_only_runs_of_the_segments() -> None:
    max_segs, two_plus_1, fail = CASES[8], CASES[7], CASES[15]
    assert gro_grouping_ok(max_segs, [[20 * 1472, 1472], [1472, 0], [23 * 1472, 1472]])
    assert gro_grouping_ok(two_plus_1, [[1472, 0], [1473, 1472]])
    assert gro_grouping_ok(fail, [])
    assert not gro_grouping_ok(two_plus_1, [[1472, 0], [1473, 0]])  # a run without gso_size
    assert not gro_grouping_ok(two_plus_1, [[2944, 1472]])  # a segment missing
    assert not gro_grouping_ok(two_plus_1, [[1473, 1472], [1472, 0]])  # out of order
    assert not gro_grouping_ok(max_segs, [[1000, 0]])  # not whole segments
    assert not gro_grouping_ok(fail, [[1, 0]])
