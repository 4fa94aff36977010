"""NFQUEUE across languages on a launched stack: an iptables rule on bob queues UDP to
port 9000, a Node.js program (tests/e2e/nfqueue_verdict.js: @grpc/grpc-js and
@grpc/proto-loader over protos/) is the queue's listener and drops what starts with
"drop", and datagrams sent from alice with the drop-in socket module arrive, or not,
accordingly; the rule's counters and the drop reasons account for every one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stackemu.ip.v1 import ip_pb2, ip_pb2_grpc, netfilter_pb2, netfilter_pb2_grpc
from tests.e2e.stackrun import cli, launched, service_addr

ROOT = Path(__file__).resolve().parent.parent.parent
NODE = shutil.which("node")
NODE_PATH = ROOT / ".venv" / "node_modules"
LISTENER = Path(__file__).with_name("nfqueue_verdict.js")

pytestmark = pytest.mark.skipif(
    NODE is None or not (NODE_PATH / "@grpc" / "grpc-js").is_dir(),
    reason="needs node and @grpc/grpc-js in .venv/node_modules: run `make install`",
)

RECV = textwrap.dedent(
    """
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 9000))
    s.settimeout(20)
    print("ready", flush=True)
    while True:
        data, addr = s.recvfrom(100)
        print(data.decode(), addr[0], flush=True)
        if data == b"end":
            break
    """
)
SEND = textwrap.dedent(
    """
    import sys
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for word in sys.argv[1:]:
        s.sendto(word.encode(), ("10.0.0.2", 9000))
    """
)
WORDS = ["keep1", "drop1", "keep2", "drop2", "end"]
NOT_SPECIFIED = "SKB_DROP_REASON_NOT_SPECIFIED"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield from launched(str(tmp_path_factory.mktemp("state")))


def _py(env: dict[str, str], host: str, code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env={**env, "STACKEMU_HOST": host},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _drops(addr: str) -> dict[tuple[str, str], int]:
    with grpc.insecure_channel(addr) as ch:
        stats = ip_pb2_grpc.IpServiceStub(ch).GetStats(ip_pb2.GetStatsRequest(), timeout=5)
    return {(d.reason, d.location): d.count for d in stats.drops}


def _queues(addr: str) -> list[netfilter_pb2.QueueStats]:
    with grpc.insecure_channel(addr) as ch:
        stub = netfilter_pb2_grpc.NetfilterServiceStub(ch)
        return list(stub.ListQueues(netfilter_pb2.ListQueuesRequest(), timeout=5).queues)


def test_a_node_listener_decides_which_datagrams_bob_receives(stack: dict[str, str]) -> None:
    bob_ip = service_addr(stack, "bob", "ip")
    rule = ["iptables", "--host", "bob", "-A", "INPUT", "-p", "udp", "--dport", "9000", "-j", "NFQUEUE"]
    added = cli(stack, *rule, "--queue-num", "0")
    assert added.returncode == 0, added.stderr
    before = _drops(bob_ip)

    assert NODE is not None
    node = subprocess.Popen(
        [NODE, str(LISTENER), bob_ip, "0", str(len(WORDS))],
        env={"PATH": "/usr/bin:/bin", "NODE_PATH": str(NODE_PATH)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    recv = None
    try:
        assert node.stdout is not None
        line = node.stdout.readline()
        assert json.loads(line or "null") == {"bound": 0}, (line, node.stderr.read() if node.stderr else "")
        recv = _py(stack, "bob", RECV)
        assert recv.stdout is not None and recv.stdout.readline() == "ready\n"
        send = _py(stack, "alice", SEND, *WORDS)
        _, err = send.communicate(timeout=60)
        assert send.returncode == 0, err

        got, err = recv.communicate(timeout=60)
        assert recv.returncode == 0, err
        assert got.splitlines() == ["keep1 10.0.0.1", "keep2 10.0.0.1", "end 10.0.0.1"]

        out, err = node.communicate(timeout=30)
        assert node.returncode == 0, err
        decisions = [json.loads(x) for x in out.splitlines()]
        assert [(d["id"], d["payload"], d["verdict"]) for d in decisions] == [
            (1, "keep1", "NF_VERDICT_ACCEPT"),
            (2, "drop1", "NF_VERDICT_DROP"),
            (3, "keep2", "NF_VERDICT_ACCEPT"),
            (4, "drop2", "NF_VERDICT_DROP"),
            (5, "end", "NF_VERDICT_ACCEPT"),
        ]
        assert {(d["hook"], d["indev"]) for d in decisions} == {(1, "eth0")}
    finally:
        for proc in (node, recv):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    # The listener ended its stream: the queue is unbound, and with no --queue-bypass
    # a datagram for it is dropped in nf_queue.
    deadline = time.monotonic() + 10
    while _queues(bob_ip) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _queues(bob_ip) == []
    late = _py(stack, "alice", SEND, "late")
    assert late.wait(60) == 0

    counters = cli(stack, "iptables", "--host", "bob", "-L", "INPUT", "-v", "-n", "-x")
    assert counters.returncode == 0, counters.stderr
    rule_line = counters.stdout.splitlines()[2].split()
    sizes = [28 + len(w) for w in [*WORDS, "late"]]
    assert rule_line[:3] == [str(len(sizes)), str(sum(sizes)), "NFQUEUE"]
    assert counters.stdout.splitlines()[2].endswith("udp dpt:9000 NFQUEUE num 0")

    deadline = time.monotonic() + 10
    while True:
        after = _drops(bob_ip)
        grew = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        if grew.get((NOT_SPECIFIED, "nf_queue"), 0) >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    # The listener's two DROPs, and the datagram nobody listened for.
    assert grew.get((NOT_SPECIFIED, "nfqnl_reinject")) == 2, after
    assert grew.get((NOT_SPECIFIED, "nf_queue")) == 1, after

    flushed = cli(stack, "iptables", "--host", "bob", "-F", "INPUT")
    assert flushed.returncode == 0, flushed.stderr
