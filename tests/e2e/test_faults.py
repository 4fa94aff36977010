"""Faults (issue 10, part 3): a service killed with SIGKILL mid-traffic and started again
by `stackemu up`'s supervisor (restart: unless-stopped), and a service stalled with
SIGSTOP while its host floods.

Kills: alice sends to bob in lockstep, one datagram at a time, each acknowledged by bob's
receiver out of band (a real UDP socket on 127.0.0.1), so that at most one datagram is
ever inside the stack. Each of alice's four services is killed in turn while that runs.
The neighbours reconnect, the supervisor restarts the service on its port, and the host
serves again: a datagram alice sends after the restart reaches bob. Meanwhile alice's
sender gets errors (EIO while a layer is away, EBADF for a descriptor the restarted
service no longer has), never a hang; every datagram bob reads has the bytes alice sent;
and what alice sent that bob never read was counted as a drop by a surviving layer, but
for the one datagram that may have been inside the killed process.

Stalls: a layer of one host stops while alice floods bob; its neighbours hold back (the
sender's send buffer fills: EAGAIN) instead of buffering without bound, every service's
memory stays put, and after SIGCONT every datagram is accounted for (the per-flow ledger)
and a fresh exchange goes through.

Run as `python -m tests.e2e.test_faults ROLE ...` it is one of the peers (send, recv,
block), a process of the host STACKEMU_HOST names.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.core import errno
from services.core.server import open_channel, retry_forever
from services.core.sockaddr import AF_INET
from services.core.socket_uapi import SOCK_DGRAM
from stackemu import launcher
from stackemu.skb.v1 import dropmon_pb2
from stackemu.socket.v1 import socket_pb2, socket_pb2_grpc
from stackemu.supervise import RESET_AFTER, RESTART_DELAY, RESTART_DELAY_MAX, Backoff, describe_exit
from stackemu.tools.dropwatch import LAYERS as LEDGER_LAYERS
from stackemu.tools.dropwatch import DropMon
from tests.e2e.overload_common import (
    Flood,
    flow_key,
    flows_on,
    ledger,
    payload,
    peer,
    pointed_at,
    receiving,
    rss_kb,
    settle,
    static_neighbours,
)
from tests.e2e.stackrun import cli, launched, stack_env

ALICE, BOB = "10.0.0.1", "10.0.0.2"
SIZE = 64
# The sender's wait for bob's acknowledgement of each datagram, and its pause between
# datagrams.
ACK_WAIT = 0.2
PACE = 0.01
# Acknowledged datagrams before the kill, and after the first one past the restart.
WARMUP, COOLDOWN = 20, 10
# How long a peer or the test waits for anything at most.
LIMIT = 30.0
# From the restart to the first datagram through, at most: Python's start of the service
# (a second or two on a loaded machine) and the neighbours' reconnection.
SERVE_LIMIT = 10.0
# The errors a system call may get while a layer is away or after it came back.
FAULT_ERRNOS = {errno.EIO, errno.EBADF, errno.ECONNREFUSED}
# A service's memory may grow this much over a stall and its flood, in kB.
RSS_SLACK_KB = 10 * 1024


# The peers.


def _stop_requested() -> bool:
    """A line on stdin (the test's "stop") is waiting."""
    ready, _, _ = select.select([sys.stdin], [], [], 0)
    return bool(ready)


def _emit(doc: dict[str, Any]) -> None:
    print(json.dumps(doc), flush=True)


def _send(dst: str, port: str) -> None:
    """Lockstep sends of payload(seq) to dst:port until told to stop: each waits up to
    ACK_WAIT for its acknowledgement on a real UDP socket of 127.0.0.1, whose port it
    prints first. A failed send is reported with its errno, and the next goes from a
    new socket. Each datagram gets a new sequence number. Prints an event per ack and
    per error, then a summary."""
    import socket as std

    import stackemu.socket as socket

    acks = std.socket(std.AF_INET, std.SOCK_DGRAM)
    acks.bind(("127.0.0.1", 0))
    _emit({"ack_port": acks.getsockname()[1]})
    assert sys.stdin.readline() == "go\n"
    s: Any = None
    sent: list[int] = []
    failed: list[int] = []
    acked: set[int] = set()
    seq = 0
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline and not _stop_requested():
        t = time.time()
        try:
            if s is None:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(payload(seq, SIZE), (dst, int(port)))
        except OSError as e:
            _emit({"ev": "err", "seq": seq, "errno": e.errno, "t": t})
            failed.append(seq)
            seq += 1
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
            s = None
            time.sleep(PACE)
            continue
        sent.append(seq)
        acks.settimeout(ACK_WAIT)
        try:
            while True:
                got = int.from_bytes(acks.recv(4), "big")
                acked.add(got)
                if got == seq:
                    _emit({"ev": "ack", "seq": seq, "t": t, "t_ack": time.time()})
                    break
        except TimeoutError:
            pass
        seq += 1
        time.sleep(PACE)
    # Late acknowledgements.
    acks.settimeout(ACK_WAIT)
    try:
        while True:
            acked.add(int.from_bytes(acks.recv(4), "big"))
    except TimeoutError:
        pass
    _emit({"ev": "done", "sent": sent, "failed": failed, "acked": sorted(acked)})


def _recv(addr: str, port: str, ack_port: str) -> None:
    """Reads addr:port until told to stop, acknowledging each datagram (its first four
    bytes) to 127.0.0.1:ack_port; prints the sequence numbers read and how many were
    not exactly the payload their number names."""
    import socket as std

    import stackemu.socket as socket

    acks = std.socket(std.AF_INET, std.SOCK_DGRAM)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    s.settimeout(0.1)
    _emit({"ev": "ready"})
    seqs: list[int] = []
    bad = 0
    deadline = time.monotonic() + 2 * LIMIT
    while time.monotonic() < deadline and not _stop_requested():
        try:
            data = s.recv(SIZE + 1)
        except TimeoutError:
            continue
        seq = int.from_bytes(data[:4], "big")
        seqs.append(seq)
        bad += data != payload(seq, SIZE)
        acks.sendto(data[:4], ("127.0.0.1", int(ack_port)))
    _emit({"ev": "done", "seqs": seqs, "bad": bad})


def _block(addr: str, port: str) -> None:
    """A socket bound to addr:port blocked in recvfrom() without a timeout: prints the
    error that ends it. Then, told `again`, what the same socket's getsockname() and
    recv() get, and what binding a new socket to the same address gets."""
    import stackemu.socket as socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    _emit({"ev": "ready"})
    try:
        s.recvfrom(100)
        _emit({"ev": "blocked", "errno": 0})
    except OSError as e:
        _emit({"ev": "blocked", "errno": e.errno})
    assert sys.stdin.readline() == "again\n"
    after: dict[str, int] = {}
    calls: list[tuple[str, Callable[[], object]]] = [
        ("getsockname", s.getsockname),
        ("recv", lambda: s.recv(100, socket.MSG_DONTWAIT)),
        ("bind", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind((addr, int(port)))),
    ]
    for name, call in calls:
        # EIO until the socket service has attached to a restarted UDP layer.
        for _ in range(int(LIMIT / PACE)):
            try:
                call()
                after[name] = 0
            except OSError as e:
                if e.errno == errno.EIO:
                    time.sleep(PACE)
                    continue
                after[name] = e.errno or 0
            break
    _emit({"ev": "after", **after})


PEERS: dict[str, Callable[..., None]] = {"send": _send, "recv": _recv, "block": _block}


class Peer:
    """A peer process of a host, its stdout read by a thread into a queue of events."""

    def __init__(self, env: dict[str, str], host: str, role: str, *args: object) -> None:
        self.proc = peer(env, host, role, *args, module="tests.e2e.test_faults")
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def next(self, ok: Callable[[dict[str, Any]], bool], timeout: float = LIMIT) -> dict[str, Any]:
        """The next event for which ok() holds, within timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such event in {timeout} s; last: {self.seen[-3:]}") from None
            if event is None:
                raise AssertionError(f"peer ended: {self.stderr()}; last: {self.seen[-3:]}")
            self.seen.append(event)
            if ok(event):
                return event

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-2000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


# The stack.


def _state(env: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(env["STACKEMU_STATE_DIR"]) / "stack.json").read_text())
    return data


def _services(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every service's entry in the state file, by "host/service"."""
    return {f"{h}/{layer}": svc for h, host in _state(env)["hosts"].items() for layer, svc in host.items()}


def _service(env: dict[str, str], name: str) -> dict[str, Any]:
    host, layer = name.split("/")
    svc: dict[str, Any] = _state(env)["hosts"][host][layer]
    return svc


def _serving(env: dict[str, str]) -> None:
    """Every service answers SERVING, and each host's socket service opens sockets (it
    stays SERVING while its UDP layer is away, and answers EIO): 10 s at most."""
    deadline = time.monotonic() + 10
    for svc in _services(env).values():
        while launcher.health(svc["addr"], timeout=0.5) != "SERVING":
            assert time.monotonic() < deadline, svc
            time.sleep(0.05)
    for host in _state(env)["hosts"].values():
        with open_channel(host["socket"]["addr"]) as channel:
            stub = socket_pb2_grpc.SocketServiceStub(channel)
            pid = stub.OpenProcess(socket_pb2.OpenProcessRequest(comm="test_faults"), timeout=5).pid
            try:
                while True:
                    req = socket_pb2.SocketRequest(pid=pid, domain=AF_INET, type=SOCK_DGRAM)
                    resp = stub.Socket(req, timeout=5)
                    if resp.errno == 0:
                        break
                    assert resp.errno == errno.EIO and time.monotonic() < deadline, resp
                    time.sleep(0.02)
            finally:
                stub.ExitProcess(socket_pb2.ExitProcessRequest(pid=pid), timeout=5)


class Restart:
    """A service killed with SIGKILL and the supervisor's restart of it: when each
    happened (time.time()), and the state file's entry for the new process."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        old = _service(env, name)
        self.killed = time.time()
        os.kill(old["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:
            svc = _service(env, name)
            if svc["pid"] != old["pid"] and svc.get("restarts", 0) == old.get("restarts", 0) + 1:
                break
            assert time.monotonic() < deadline, f"{name} not restarted: {svc}"
            time.sleep(0.02)
        self.svc = svc
        self.restarted: float = svc["restarted_at"]
        while launcher.health(svc["addr"], timeout=0.5) != "SERVING":
            assert time.monotonic() < deadline + 10, f"{name} restarted but not SERVING"
            time.sleep(0.02)
        self.serving = time.time()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    for env in launched(str(tmp_path_factory.mktemp("faults"))):
        with pointed_at(env):
            static_neighbours([("alice", "eth0", BOB, "bob"), ("bob", "eth0", ALICE, "alice")])
            yield env


# The restart policy.


def test_backoff_is_the_restart_managers() -> None:
    """moby's restartmanager: 100 ms, doubled at each restart up to a minute, and back to
    100 ms after a run of 10 s."""
    b = Backoff()
    delays = [b.next(ran_for=0.5) for _ in range(12)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 60.0, 60.0]
    assert (RESTART_DELAY, RESTART_DELAY_MAX, RESET_AFTER) == (0.1, 60.0, 10.0)
    assert b.next(ran_for=10.0) == 0.1
    assert b.next(ran_for=9.9) == 0.2


def test_exit_statuses_read_as_a_shell_says_them() -> None:
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(2) == "exited with status 2"
    assert describe_exit(None) == "ended"


def test_retry_forever_backs_off_and_starts_over_after_a_connection_that_lasted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Failures wait 50 ms doubled up to 250 ms; a connection that lasted reset_after
    (1 s) was up, and the wait after it is 50 ms again. The loop's clock is the test's."""
    waits: list[float] = []
    clock = [0.0]
    # Four failures, a connection that lasts, three failures, then the test ends.
    script = ["fail", "fail", "fail", "fail", "last", "fail", "fail", "fail"]

    async def sleep(delay: float) -> None:
        waits.append(delay)
        if len(waits) == len(script):
            raise asyncio.CancelledError

    async def connect() -> None:
        if script[len(waits)] == "last":
            clock[0] += 1.0
        raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata())

    async def main() -> None:
        monkeypatch.setattr(asyncio.get_running_loop(), "time", lambda: clock[0])
        with pytest.raises(asyncio.CancelledError):
            await retry_forever(connect, "attach to test")

    monkeypatch.setattr(asyncio, "sleep", sleep)
    asyncio.run(main())
    assert waits == [0.05, 0.1, 0.2, 0.25, 0.05, 0.1, 0.2, 0.25]


def test_a_killed_service_is_restarted_on_its_port_and_status_counts_it(stack: dict[str, str]) -> None:
    before = _services(stack)
    r = Restart(stack, "alice/udp")
    assert r.svc["addr"] == before["alice/udp"]["addr"]
    _serving(stack)
    out = cli(stack, "status", "--json")
    assert out.returncode == 0, out.stderr
    rows = {f"{row['host']}/{row['service']}": row for row in json.loads(out.stdout)}
    assert {n: row["restarts"] for n, row in rows.items()} == {
        n: str(int(svc.get("restarts", 0)) + (n == "alice/udp")) for n, svc in before.items()
    }
    assert rows["alice/udp"]["pid"] == str(r.svc["pid"])
    assert {row["health"] for row in rows.values()} == {"SERVING"}
    text = cli(stack, "status")
    header = ["HOST", "SERVICE", "ADDRESS", "METRICS", "PID", "RESTARTS", "HEALTH"]
    assert text.stdout.splitlines()[0].split() == header
    log = Path(_state(stack)["supervisor"]["log"]).read_text()
    old = before["alice/udp"]["pid"]
    assert f"alice/udp (pid {old}) " in log
    assert f"alice/udp restarted as pid {r.svc['pid']}" in log


@pytest.mark.slow
def test_down_stops_the_supervisor_first_and_everything_with_it(tmp_path: Path) -> None:
    """Killed twice: the second restart waits twice as long (the first run was short),
    and the supervisor, its child this time, knows how it ended. Then `down`."""
    env = stack_env(str(tmp_path / "state"))
    up = cli(env, "up")
    assert up.returncode == 0, up.stderr
    try:
        data = _state(env)
        first = Restart(env, "bob/nic")
        second = Restart(env, "bob/nic")
        pids = [data["supervisor"]["pid"], first.svc["pid"], *(svc["pid"] for svc in _services(env).values())]
    finally:
        down = cli(env, "down")
    assert down.returncode == 0, down.stderr
    assert "stopped 8 services" in down.stdout
    assert not (Path(env["STACKEMU_STATE_DIR"]) / "stack.json").exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    log = Path(data["supervisor"]["log"]).read_text().splitlines()
    old = data["hosts"]["bob"]["nic"]["pid"]
    assert [line.split(" ", 3)[3] for line in log[1:5]] == [
        f"bob/nic (pid {old}) ended: restart 1 in 0.1 s",
        f"bob/nic restarted as pid {first.svc['pid']}",
        f"bob/nic (pid {first.svc['pid']}) killed by SIGKILL: restart 2 in 0.2 s",
        f"bob/nic restarted as pid {second.svc['pid']}",
    ]
    # The supervisor took no end of `down` for a crash.
    assert log[5:] == [log[5]]
    assert log[5].endswith("stopping: the services are left to `stackemu down`")


# Kills mid-traffic.


def _counted(port: int) -> int:
    """Drops of alice's datagrams to bob's port that the stack's layers counted."""
    dst = flow_key(ALICE, 0, BOB, port)[3:]
    return sum(f.dropped for f in ledger().flows if f.key[3:] == dst)


def _ledger_on(name: str) -> None:
    """The flow ledger of a restarted layer (a new process has it off)."""
    host, layer = name.split("/")
    if layer in LEDGER_LAYERS:
        with DropMon(layer, host) as svc:
            svc.call("SetFlowLedger", dropmon_pb2.SetFlowLedgerRequest(enabled=True))


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["nic", "ip", "udp", "socket"])
def test_kill_a_layer_of_alice_mid_traffic(stack: dict[str, str], layer: str) -> None:
    name = f"alice/{layer}"
    port = 9500 + ["nic", "ip", "udp", "socket"].index(layer)
    flows_on()
    sender = Peer(stack, "alice", "send", BOB, port)
    receiver: Peer | None = None
    try:
        ack_port = sender.next(lambda e: "ack_port" in e)["ack_port"]
        receiver = Peer(stack, "bob", "recv", BOB, port, ack_port)
        receiver.next(lambda e: e["ev"] == "ready")
        sender.tell("go")
        warm = [0]

        def warmed(e: dict[str, Any]) -> bool:
            warm[0] += e["ev"] == "ack"
            return warm[0] >= WARMUP

        sender.next(warmed)
        r = Restart(stack, name)
        if layer in LEDGER_LAYERS:
            _ledger_on(name)
        # Served again: a datagram sent after the restart reached bob.
        first = sender.next(lambda e: e["ev"] == "ack" and e["t"] > r.restarted, SERVE_LIMIT)
        cool = [0]

        def cooled(e: dict[str, Any]) -> bool:
            cool[0] += e["ev"] == "ack"
            return cool[0] >= COOLDOWN

        sender.next(cooled)
        sender.tell("stop")
        sent = sender.next(lambda e: e["ev"] == "done")
        receiver.tell("stop")
        got = receiver.next(lambda e: e["ev"] == "done")
    finally:
        sender.close()
        if receiver is not None:
            receiver.close()
    errors = [e for e in sender.seen if e.get("ev") == "err"]
    lost = set(sent["sent"]) - set(got["seqs"])
    counted = _counted(port)
    print(
        f"\n{name}: restarted {r.restarted - r.killed:.2f} s after the kill, SERVING "
        f"{r.serving - r.restarted:.2f} s after the restart, first datagram through "
        f"{first['t_ack'] - r.restarted:.2f} s after the restart ({first['t_ack'] - r.killed:.2f} s "
        f"after the kill); {len(errors)} failed sends {sorted({e['errno'] for e in errors})}, "
        f"{len(lost)} lost, {counted} counted"
    )
    # Every datagram bob read is one alice tried to send, intact, once.
    assert got["bad"] == 0
    assert set(got["seqs"]) <= set(sent["sent"]) | set(sent["failed"])
    assert len(got["seqs"]) == len(set(got["seqs"]))
    assert {e["errno"] for e in errors} <= FAULT_ERRNOS
    # What was lost was counted, but for the one datagram the killed process may have
    # held (the sender had no other in the stack).
    assert counted <= len(lost) <= counted + 1
    _serving(stack)


# Blocked callers.


def _blocked(stack: dict[str, str], name: str, port: int) -> dict[str, Any]:
    """A process of alice blocked in recvfrom() on port while `name` is killed: the
    error it got, and what its socket and a new one get after the restart."""
    p = Peer(stack, "alice", "block", ALICE, port)
    try:
        p.next(lambda e: e["ev"] == "ready")
        # The call is in the service, waiting (a datagram-less recvfrom never returns).
        time.sleep(0.3)
        Restart(stack, name)
        blocked = p.next(lambda e: e["ev"] == "blocked", timeout=5)
        _serving(stack)
        p.tell("again")
        after = p.next(lambda e: e["ev"] == "after")
    finally:
        p.close()
    return {"blocked": blocked["errno"], **{k: v for k, v in after.items() if k != "ev"}}


@pytest.mark.slow
def test_a_recvfrom_blocked_when_udp_dies_gets_eio_and_the_descriptor_is_gone(stack: dict[str, str]) -> None:
    """The socket service fails the calls pending below with EIO ("the layer below went
    away"); the restarted UDP layer has none of the old sockets, so the descriptor's
    calls get EBADF, and the address is free again."""
    assert _blocked(stack, "alice/udp", 9510) == {
        "blocked": errno.EIO,
        "getsockname": errno.EBADF,
        "recv": errno.EBADF,
        "bind": 0,
    }


@pytest.mark.slow
def test_a_recvfrom_blocked_when_the_socket_service_dies_gets_eio_then_ebadf(stack: dict[str, str]) -> None:
    """The RPC fails (EIO); the restarted socket service has none of the process's
    descriptors (the drop-in answers EBADF for them, and opens a new process for new
    sockets)."""
    got = _blocked(stack, "alice/socket", 9511)
    assert {k: got[k] for k in ("blocked", "getsockname", "recv")} == {
        "blocked": errno.EIO,
        "getsockname": errno.EBADF,
        "recv": errno.EBADF,
    }


@pytest.mark.slow
def test_a_socket_service_restart_frees_the_addresses_of_its_processes(stack: dict[str, str]) -> None:
    assert _blocked(stack, "alice/socket", 9512)["bind"] == 0


@pytest.mark.slow
def test_a_descriptor_from_before_a_udp_restart_reaches_no_other_socket(stack: dict[str, str]) -> None:
    code = """
import json, sys
import stackemu.socket as socket
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind(("10.0.0.1", 9513))
print("ready", flush=True)
sys.stdin.readline()
for _ in range(100):
    try:
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        break
    except OSError:
        import time; time.sleep(0.1)
b.bind(("10.0.0.1", 9514))
try:
    print(json.dumps(a.getsockname()))
except OSError as e:
    print(json.dumps(e.errno))
"""
    # A fresh UDP layer: it numbers sockets from 1 (_serving()'s probe took one).
    Restart(stack, "alice/udp")
    _serving(stack)
    time.sleep(0.5)
    p = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**stack, "STACKEMU_HOST": "alice"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline() == "ready\n"
        # Another fresh one: the new socket b gets the number a had.
        Restart(stack, "alice/udp")
        _serving(stack)
        out, err = p.communicate("\n", timeout=LIMIT)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=10)
    assert json.loads(out) == errno.EBADF, err


# Stalls.


def _stall(stack: dict[str, str], name: str, port: int, rounds: int) -> tuple[Any, Any, dict[str, int]]:
    """alice floods bob's port (sendmmsg batches of 32, nonblocking) while `name` is
    stopped; after SIGCONT, the ledger once the flood is accounted for, what the flood
    sent, and each service's memory growth (kB) at its peak over the stall."""
    pid = _service(stack, name)["pid"]
    before = rss_kb(stack)
    peak = dict(before)
    with receiving(stack, "bob", BOB, [port], 0, SIZE) as r:
        flows_on()
        # The route to bob is in alice's UDP route cache, so that no connect() waits on
        # a stopped IP layer's RouteOutput.
        assert r.exchange(stack, "alice", ALICE) == [f"after the flood {BOB}:{port}"]
        os.kill(pid, signal.SIGSTOP)
        try:
            flood = Flood(ALICE, r.targets, SIZE, rounds=rounds, batch=32)
            done = threading.Event()
            result: dict[str, Any] = {}

            def run() -> None:
                with flood.sending(stack, "alice") as sent:
                    result["sent"] = sent
                    done.wait(LIMIT)

            t = threading.Thread(target=run, daemon=True)
            t.start()
            for _ in range(20):
                for k, v in rss_kb(stack).items():
                    peak[k] = max(peak[k], v)
                time.sleep(0.1)
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + LIMIT
        while "sent" not in result:
            assert time.monotonic() < deadline, "the flood never ended"
            time.sleep(0.05)
        sent = result["sent"]
        settle(sent)
        read, bad = r.drain(ALICE)
        assert bad == 0
        c = ledger()
        done.set()
        t.join(LIMIT)
        assert r.exchange(stack, "alice", ALICE) == [f"after the flood {BOB}:{port}"]
    growth = {k: peak[k] - before[k] for k in before}
    print(
        f"\n{name} stopped: {sum(sent.values())} datagrams sent, {sent.eagain} sendmmsg calls got EAGAIN; "
        f"VmRSS before {before}, growth at the peak (kB) {growth}"
    )
    flows = {f.key: f for f in c.flows}
    for key, n in sent.items():
        f = flows[key]
        assert (f.sent, f.delivered) == (n, read.get(key, 0)), f.to_json()
        assert f.balanced, f.to_json()
    return c, sent, growth


@pytest.mark.slow
def test_a_stopped_ip_layer_fills_the_senders_send_buffer(stack: dict[str, str]) -> None:
    """alice's IP stops: nothing alice's UDP hands down completes, so the socket's send
    buffer fills and each further sendmmsg fails with EAGAIN (sock_alloc_send_skb),
    as a stalled device makes the kernel's; nothing piles up anywhere."""
    _, sent, growth = _stall(stack, "alice/ip", 9520, rounds=200)
    assert sent.eagain > 0
    assert sum(sent.values()) < 200 * 32
    assert max(growth.values()) < RSS_SLACK_KB, growth


@pytest.mark.slow
def test_a_stopped_receiving_udp_layer_holds_its_neighbours_memory(stack: dict[str, str]) -> None:
    """bob's UDP stops: bob's IP and NIC queue what they cannot hand up, within their
    bounds, and alice's sender is held back by her send buffer; after SIGCONT the
    datagrams are read or dropped where the kernel drops them, every one counted."""
    c, sent, growth = _stall(stack, "bob/udp", 9521, rounds=400)
    assert sum(sent.values()) > 0
    assert max(growth.values()) < RSS_SLACK_KB, growth
    assert c.unattributed == {}


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    PEERS[role](*args)
