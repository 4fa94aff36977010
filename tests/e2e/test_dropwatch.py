"""`stackemu dropwatch` on a launched stack: a dropped datagram's reason, location and
SNMP counter agree; the live view and its summary sum what happened; and the per-flow
conservation check balances exactly for alice -> bob traffic that bob's netfilter and a
small receive buffer thin out, and fails when a layer loses drops from its ledger."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from stackemu.skb.v1 import dropmon_pb2, dropmon_pb2_grpc
from tests.e2e.overload_common import nstat, until
from tests.e2e.stackrun import cli, launched, service_addr

SEND = textwrap.dedent(
    """
    import sys
    import stackemu.socket as socket
    port, dport, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.0.0.1", port))
    for _ in range(n):
        s.sendto(b"x" * 100, ("10.0.0.2", dport))
    """
)
# SO_RCVBUF 1 is SOCK_MIN_RCVBUF (2304): room for a couple of datagrams. It reads one
# datagram when told to, then closes the socket with the rest still queued.
RECV = textwrap.dedent(
    """
    import sys
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    s.bind(("10.0.0.2", int(sys.argv[1])))
    print("ready", flush=True)
    sys.stdin.readline()
    print(len(s.recv(2000)), flush=True)
    s.close()
    """
)


WATCH = ("--interval", "0.1", "--count", "40", "--summary")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield from launched(str(tmp_path_factory.mktemp("dropwatch")))


def _send(env: dict[str, str], port: int, dport: int, n: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SEND, str(port), str(dport), str(n)],
        env={**env, "STACKEMU_HOST": "alice"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def _summary(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = cli(env, "dropwatch", "--count", "0", "--summary", "--json", *args)
    assert done.returncode == 0, done.stderr
    doc: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return doc["since_stack_start"]


def _check(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    done = cli(env, "dropwatch", "--check", "--json")
    doc: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, doc


def _flow(doc: dict[str, Any], sport: int) -> dict[str, Any]:
    flows: list[dict[str, Any]] = [f for f in doc["flows"] if f["sport"] == sport]
    (flow,) = flows
    return flow


def test_no_socket_reason_location_and_counter_agree(stack: dict[str, str]) -> None:
    before_drops = _summary(stack, "--host", "bob")
    before = nstat(stack, "bob")
    _send(stack, 42000, 9999, 1)
    after = until(lambda: nstat(stack, "bob"), lambda c: c["UdpNoPorts"] > before["UdpNoPorts"])
    assert after["UdpNoPorts"] - before["UdpNoPorts"] == 1
    assert after["UdpInErrors"] == before["UdpInErrors"]
    drops = _summary(stack, "--host", "bob")
    assert drops["total"]["drops"] - before_drops["total"]["drops"] == 1
    key = "SKB_DROP_REASON_NO_SOCKET"
    assert drops["by_reason"][key] - before_drops["by_reason"].get(key, 0) == 1
    where = "__udp4_lib_rcv [udp bob]"
    assert drops["by_location"][where] - before_drops["by_location"].get(where, 0) == 1


def test_live_view_and_summary(stack: dict[str, str]) -> None:
    rule = ["iptables", "--host", "bob", "-A", "INPUT", "-p", "udp", "--dport", "9001", "-j", "DROP"]
    assert cli(stack, *rule).returncode == 0
    try:
        watch = subprocess.Popen(
            [sys.executable, "-m", "stackemu", "dropwatch", "--host", "bob", *WATCH],
            env=stack,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert watch.stdout is not None
        assert watch.stdout.readline() == "Initializing kas lookup method\n"
        assert watch.stdout.readline() == "Kernel monitoring activated.\n"
        _send(stack, 42001, 9001, 3)
        _send(stack, 42001, 9998, 2)
        out, errs = watch.communicate(timeout=30)
        assert watch.returncode == 0, errs
    finally:
        rule[3] = "-D"
        assert cli(stack, *rule).returncode == 0
    lines = out.splitlines()
    # Each poll prints what is new; the datagrams may straddle two polls.
    live = [ln for ln in lines if " drops at " in ln and not ln.startswith(" ")]
    per_line: dict[str, int] = {}
    for ln in live:
        n, _, rest = ln.partition(" drops at ")
        per_line[rest] = per_line.get(rest, 0) + int(n)
    assert per_line == {
        "nf_hook_slow (SKB_DROP_REASON_NETFILTER_DROP) [ip bob]": 3,
        "__udp4_lib_rcv (SKB_DROP_REASON_NO_SOCKET) [udp bob]": 2,
    }
    start = lines.index("Since dropwatch started: 5 drops")
    assert lines[start + 1 : start + 5] == [
        "         3  SKB_DROP_REASON_NETFILTER_DROP",
        "         2  SKB_DROP_REASON_NO_SOCKET",
        "         3  at nf_hook_slow [ip bob]",
        "         2  at __udp4_lib_rcv [udp bob]",
    ]
    assert lines[start + 5].startswith("Since the stack started: ")


def _set_ledger(stack: dict[str, str], host: str, layer: str, enabled: bool) -> None:
    with grpc.insecure_channel(service_addr(stack, host, layer)) as ch:
        stub = dropmon_pb2_grpc.DropMonitorServiceStub(ch)
        stub.SetFlowLedger(dropmon_pb2.SetFlowLedgerRequest(enabled=enabled), timeout=5)


def test_conservation_check_balances_exactly(stack: dict[str, str]) -> None:
    on = cli(stack, "dropwatch", "--flows", "on")
    assert on.returncode == 0, on.stderr
    assert on.stdout == "flow ledger on on alice, bob\n"
    rule = ["iptables", "--host", "bob", "-A", "INPUT", "-p", "udp", "--sport", "42010", "-j", "DROP"]
    assert cli(stack, *rule).returncode == 0
    recv = subprocess.Popen(
        [sys.executable, "-c", RECV, "9010"],
        env={**stack, "STACKEMU_HOST": "bob"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert recv.stdin is not None and recv.stdout is not None
    try:
        assert recv.stdout.readline() == "ready\n"
        before = nstat(stack, "bob")
        _send(stack, 42010, 9010, 10)  # all dropped by bob's INPUT rule
        _send(stack, 42011, 9010, 30)  # the socket's small rcvbuf keeps a few

        def settled(doc: tuple[int, dict[str, Any]]) -> bool:
            return doc[0] == 0 and sum(f["sent"] for f in doc[1]["flows"]) == 40

        code, doc = until(lambda: _check(stack), settled)
        dropped = _flow(doc, 42010)
        assert (dropped["sent"], dropped["delivered"], dropped["dropped"]) == (10, 0, 10)
        assert dropped["drops"] == [
            {
                "reason": "SKB_DROP_REASON_NETFILTER_DROP",
                "location": "nf_hook_slow",
                "service": "ip",
                "host": "bob",
                "count": 10,
            }
        ]
        thinned = _flow(doc, 42011)
        after = nstat(stack, "bob")
        rcvbuf_errors = after["UdpRcvbufErrors"] - before["UdpRcvbufErrors"]
        assert after["UdpInDatagrams"] == before["UdpInDatagrams"]  # counted by recvmsg
        queued = 30 - rcvbuf_errors
        assert 0 < queued < 30
        assert (thinned["sent"], thinned["delivered"], thinned["dropped"]) == (30, queued, rcvbuf_errors)
        assert [(d["reason"], d["location"], d["count"]) for d in thinned["drops"]] == [
            ("SKB_DROP_REASON_SOCKET_RCVBUFF", "__udp_queue_rcv_skb", rcvbuf_errors)
        ]
        assert all(f["balanced"] for f in doc["flows"]) and doc["balanced"]

        # Read one, close with the rest queued: udp_destruct_common frees them.
        recv.stdin.write("go\n")
        recv.stdin.flush()
        assert recv.stdout.readline() == "100\n"
        assert recv.wait(timeout=10) == 0
        code, doc = until(lambda: _check(stack), lambda d: _flow(d[1], 42011)["delivered"] == 1)
        assert code == 0
        thinned = _flow(doc, 42011)
        assert (thinned["sent"], thinned["delivered"], thinned["dropped"]) == (30, 1, 29)
        assert {(d["location"], d["count"]) for d in thinned["drops"]} == {
            ("__udp_queue_rcv_skb", rcvbuf_errors),
            ("udp_destruct_common", queued - 1),
        }

        # bob's IP loses its ledger (a layer that does not report its drops): the
        # datagrams it drops from now on are missing from the sum, and the check fails.
        _set_ledger(stack, "bob", "ip", False)
        _set_ledger(stack, "bob", "ip", True)
        _send(stack, 42010, 9010, 4)
        code, doc = until(lambda: _check(stack), lambda d: _flow(d[1], 42010)["dropped"] == 4)
        assert code == 1 and not doc["balanced"]
        dropped = _flow(doc, 42010)
        assert (dropped["sent"], dropped["delivered"], dropped["dropped"], dropped["balanced"]) == (
            14,
            0,
            4,
            False,
        )
        text = cli(stack, "dropwatch", "--check")
        assert text.returncode == 1
        assert "udp 10.0.0.1:42010 > 10.0.0.2:9010        14         0        4  MISSING +10" in text.stdout
    finally:
        recv.kill()
        recv.wait()
        rule[3] = "-D"
        cli(stack, *rule)
        cli(stack, "dropwatch", "--flows", "off")
