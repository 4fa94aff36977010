"""The bootstrap every service shares: configuration that fails fast, health, and a
clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core.config import ConfigError, env_addr, env_addrs, env_int, env_links


def test_env_parsers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A", "127.0.0.1:5000")
    assert env_addr("A") == "127.0.0.1:5000"
    monkeypatch.setenv("A", "127.0.0.1")
    with pytest.raises(ConfigError, match=r"A='127.0.0.1' is not host:port"):
        env_addr("A")
    monkeypatch.delenv("A")
    with pytest.raises(ConfigError, match="A is not set"):
        env_addr("A")
    monkeypatch.setenv("N", "70")
    with pytest.raises(ConfigError, match=r"N=70 is outside 1\.\.64"):
        env_int("N", 1, 1, 64)
    monkeypatch.setenv("N", "x")
    with pytest.raises(ConfigError, match="N='x' is not an integer"):
        env_int("N", 1)
    monkeypatch.setenv("L", "eth0=02:00:0a:00:00:01,eth1=02:00:0a:00:00:02")
    assert env_links("L") == [
        ("eth0", bytes.fromhex("02000a000001")),
        ("eth1", bytes.fromhex("02000a000002")),
    ]
    monkeypatch.setenv("L", "eth0=zz:00:0a:00:00:01")
    with pytest.raises(ConfigError, match="not a MAC address"):
        env_links("L")
    monkeypatch.setenv("D", "lo=127.0.0.1/8,eth0=10.0.0.1/24")
    assert env_addrs("D") == [("lo", "127.0.0.1", 8), ("eth0", "10.0.0.1", 24)]
    monkeypatch.setenv("D", "eth0=10.0.0.1/33")
    with pytest.raises(ConfigError, match="is not IFNAME=ADDRESS/PREFIXLEN"):
        env_addrs("D")


def test_a_service_with_a_bad_environment_exits_2_saying_why() -> None:
    env = {**os.environ, "STACKEMU_HOSTNAME": "alice", "STACKEMU_LISTEN": "127.0.0.1:1"}
    env.pop("STACKEMU_NIC", None)
    out = subprocess.run(
        [sys.executable, "-m", "services.ip"], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2
    assert "stackemu-ip: configuration error: STACKEMU_NIC is not set" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serving_then_a_clean_stop_on_sigterm() -> None:
    addr = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "STACKEMU_HOSTNAME": "alice", "STACKEMU_LISTEN": addr}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.nic"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        status = None
        with grpc.insecure_channel(addr) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while time.monotonic() < deadline:
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    time.sleep(0.05)
            assert status == health_pb2.HealthCheckResponse.SERVING
            named = stub.Check(health_pb2.HealthCheckRequest(service="stackemu.nic.v1.NicService"), timeout=1)
            assert named.status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None
        log = proc.stdout.read().decode()
        assert f"nic listening on {addr}" in log and "nic stopping" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
