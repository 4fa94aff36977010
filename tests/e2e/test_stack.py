"""The whole stack as a user runs it: `stackemu up`, the drop-in socket module, the
demo, `stackemu down` — and the same UDP scenario against the real kernel."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core import errno
from tests.e2e.stackrun import cli, launched, stack_env

HERE = Path(__file__).parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield from launched(str(tmp_path_factory.mktemp("state")))


def test_status_shows_eight_serving_services(stack: dict[str, str]) -> None:
    out = cli(stack, "status", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert sorted((r["host"], r["service"]) for r in rows) == sorted(
        (h, s) for h in ("alice", "bob") for s in ("nic", "ip", "udp", "socket")
    )
    assert {r["health"] for r in rows} == {"SERVING"}


def test_a_second_up_refuses(stack: dict[str, str]) -> None:
    out = cli(stack, "up")
    assert out.returncode != 0
    assert "already running" in out.stderr


def _scenario(module: str, env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, str(HERE / "scenario.py"), module],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_drop_in_module_matches_the_real_kernel(stack: dict[str, str]) -> None:
    kernel = _scenario("socket", stack)
    emulated = _scenario("stackemu.socket", stack)
    assert emulated == kernel
    # And the values are the ones Linux gives, so the comparison cannot pass vacuously.
    assert emulated["recvfrom"] == ["0123456789", "127.0.0.1", True]
    assert emulated["unbound_name"] == ["0.0.0.0", 0]
    assert emulated["autobound"] == ["0.0.0.0", True]
    assert emulated["bind_twice"] == errno.EINVAL
    assert emulated["bind_in_use"] == errno.EADDRINUSE
    assert emulated["bind_wildcard_in_use"] == errno.EADDRINUSE
    assert emulated["bind_other_loopback"] == 0
    assert emulated["bind_nonlocal"] == errno.EADDRNOTAVAIL
    assert emulated["sendto_port_0"] == errno.EINVAL
    assert emulated["send_unconnected"] == errno.EDESTADDRREQ
    assert emulated["getpeername_unconnected"] == errno.ENOTCONN
    assert emulated["sendto_65508"] == errno.EMSGSIZE
    assert emulated["sendto_65507"] == 65507
    assert emulated["recv_65507"] == [65507, True]
    assert emulated["recv_short_buffer"] == "trun"
    assert emulated["peek_then_recv"] == ["peek", "peek"]
    assert emulated["nonblocking_empty"] == errno.EAGAIN
    assert emulated["timeout_empty"] == "timeout"
    assert emulated["connected_recv"] == ["connected", True, True]
    assert emulated["so_type"] == socket.SOCK_DGRAM
    assert emulated["closed_fileno"] == -1
    assert emulated["closed_sendto"] == errno.EBADF
    assert emulated["recv_into"] == [4, "into"]


def test_hosts_are_separate(stack: dict[str, str]) -> None:
    """A port bound on alice is free on bob: each host has its own socket table."""
    code = (
        "import stackemu.socket as s, json\n"
        "a = s.socket(s.AF_INET, s.SOCK_DGRAM); a.bind(('127.0.0.1', 40000))\n"
        "print(json.dumps(a.getsockname()))\n"
        "import time; time.sleep(3)\n"
    )
    alice = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**stack, "STACKEMU_HOST": "alice"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert alice.stdout is not None
        assert json.loads(alice.stdout.readline()) == ["127.0.0.1", 40000]
        bob = subprocess.run(
            [sys.executable, "-c", code.replace("time.sleep(3)", "")],
            env={**stack, "STACKEMU_HOST": "bob"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert bob.returncode == 0, bob.stderr
        again = subprocess.run(
            [sys.executable, "-c", code.replace("time.sleep(3)", "")],
            env={**stack, "STACKEMU_HOST": "alice"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "Errno 98" in again.stderr  # EADDRINUSE on alice, where the first still holds it
    finally:
        alice.kill()
        alice.wait()


def test_demo_shows_the_path_through_every_layer(stack: dict[str, str]) -> None:
    out = cli(stack, "demo")
    assert out.returncode == 0, out.stderr
    # The journey's lines: "+12.3 us  HOST SERVICE FUNCTION" (tests/e2e/test_trace.py
    # checks the rest of what the demo prints).
    funcs = [line.split()[-1] for line in out.stdout.splitlines() if line.lstrip().startswith("+")]
    assert funcs == [
        "udp_sendmsg",
        "ip_send_skb",
        "ip_local_out",
        "nf_hook(LOCAL_OUT)",
        "ip_output",
        "nf_hook(POST_ROUTING)",
        "dev_queue_xmit",
        "dev_hard_start_xmit",
        "napi_gro_receive",
        "__netif_receive_skb_core",
        "ip_rcv",
        "nf_hook(PRE_ROUTING)",
        "ip_local_deliver",
        "nf_hook(LOCAL_IN)",
        "udp_rcv",
        "__udp4_lib_lookup",
        "sock_queue_rcv_skb",
        "udp_recvmsg",
        "sock_recvmsg",
    ]
    assert "  bob    recvmsg() = b'hello bob #1' from 10.0.0.1:" in out.stdout
    assert any(line.split() == ["bob", "UdpInDatagrams", "+3"] for line in out.stdout.splitlines())


def test_stackemu_socket_addr_points_at_any_socket_service(stack: dict[str, str]) -> None:
    state = json.loads((Path(stack["STACKEMU_STATE_DIR"]) / "stack.json").read_text())
    addr = state["hosts"]["bob"]["socket"]["addr"]
    code = (
        "import stackemu.socket as s\n"
        "a = s.socket(s.AF_INET, s.SOCK_DGRAM); a.bind(('127.0.0.1', 0)); a.settimeout(5)\n"
        "b = s.socket(s.AF_INET, s.SOCK_DGRAM); b.sendto(b'via addr', a.getsockname())\n"
        "print(a.recv(100))\n"
    )
    env = {**stack, "STACKEMU_SOCKET_ADDR": addr, "STACKEMU_STATE_DIR": "/nonexistent"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "b'via addr'"


def test_no_stack_gives_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "STACKEMU_STATE_DIR": str(tmp_path)}
    env.pop("STACKEMU_SOCKET_ADDR", None)
    code = "import stackemu.socket as s\ns.socket(s.AF_INET, s.SOCK_DGRAM)\n"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "no emulated stack is running" in out.stderr and "stackemu up" in out.stderr


def test_down_leaves_no_process_behind(tmp_path: Path) -> None:
    env = stack_env(str(tmp_path))
    assert cli(env, "up").returncode == 0
    state = json.loads((tmp_path / "stack.json").read_text())
    pids = [svc["pid"] for host in state["hosts"].values() for svc in host.values()]
    assert len(pids) == 8 and all(_alive(p) for p in pids)
    down = cli(env, "down")
    assert down.returncode == 0 and "stopped 8 services" in down.stdout
    assert not any(_alive(p) for p in pids)
    assert not (tmp_path / "stack.json").exists()
    assert "no stack is running" in cli(env, "down").stdout


def test_every_service_serves_health_and_reflection(stack: dict[str, str]) -> None:
    import grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    state = json.loads((Path(stack["STACKEMU_STATE_DIR"]) / "stack.json").read_text())
    expected = {
        "nic": "stackemu.nic.v1.NicService",
        "ip": "stackemu.ip.v1.IpService",
        "udp": "stackemu.udp.v1.UdpService",
        "socket": "stackemu.socket.v1.SocketService",
    }
    for layer, service in expected.items():
        with grpc.insecure_channel(state["hosts"]["alice"][layer]["addr"]) as ch:
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            req = reflection_pb2.ServerReflectionRequest(list_services="")
            resp = next(iter(stub.ServerReflectionInfo(iter([req]), timeout=5)))
            names = {s.name for s in resp.list_services_response.service}
            extra = {"stackemu.ip.v1.NetfilterService"} if layer == "ip" else set()
            if layer != "socket":
                extra.add("stackemu.skb.v1.DropMonitorService")
            assert names == {
                service,
                *extra,
                "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection",
            }
