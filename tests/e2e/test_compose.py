"""docker-compose.yml with a real container engine: rootful podman through the shared
compose-up.sh (podman-compose; a stand-in python:3.11-slim built from Debian packages),
driven from here with the `docker` SDK over podman's Docker-compatible API socket, as it
would drive Docker's on a user's machine.

One stack for the module, in order: every container becomes healthy through the image's
gRPC health check, the CLI and the drop-in reach it through compose/stack.json, the
`demo` profile's one-shot container exits 0, alice and bob exchange datagrams over the
wire and alice-udp's published metrics port counts them, a killed service's container is
restarted by its policy and the stack recovers, its counters starting again from zero.
Then everything comes down and the firewall is as it was (netavark leaves its
iptables chains and net.ipv4.ip_forward=1 behind; this removes and restores them).

The first run builds the stand-in base image (debootstrap, 1-2 minutes) into
/tmp/stackemu-compose (PE); later runs reuse it and the image's dependency layer.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stackemu.topology import HOSTS, LAYERS, metrics_port

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
STACK_FILE = REPO / "compose" / "stack.json"
# The shared tools beside the checkout (../shared/tools), or where STACKEMU_SHARED_TOOLS
# says, or this workplace's copy (a clone elsewhere, as CI makes, still finds it).
_TOOLS = [
    *([Path(os.environ["STACKEMU_SHARED_TOOLS"])] if os.environ.get("STACKEMU_SHARED_TOOLS") else []),
    REPO.parent / "shared" / "tools",
    Path("/work/shared/tools"),
]
COMPOSE_UP = next(
    (t / "compose-up.sh" for t in _TOOLS if (t / "compose-up.sh").is_file()), _TOOLS[0] / "compose-up.sh"
)
PE = Path(os.environ.get("PE") or "/tmp/stackemu-compose")
PROJECT = "stackemu"
IMAGE = "localhost/stackemu:latest"
IMAGE_LABEL = "org.opencontainers.image.title=stackemu"
SERVICES = [f"{h.name}-{layer}" for h in HOSTS for layer in LAYERS]
# docker-compose.yml's ports: those of `stackemu up` (topology.ports(50100)).
PORTS = {
    f"{h.name}-{layer}": 50100 + 10 * i + j for i, h in enumerate(HOSTS) for j, layer in enumerate(LAYERS)
}
# Each service's Prometheus endpoint (STACKEMU_METRICS): its gRPC port + 1000.
METRICS_PORTS = {service: metrics_port(port) for service, port in PORTS.items()}
# What compose-up.sh's podman needs; runc because its containers.conf names runc as the
# runtime but it installs only podman (which brings crun).
PACKAGES = {"podman": "podman", "debootstrap": "debootstrap", "runc": "runc"}
HEALTHY_WITHIN = 60.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# A process per host: the drop-in module talks to one socket service per process.
ECHO = textwrap.dedent(
    """
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.0.0.2", 9000))
    s.settimeout(20)
    print("ready", flush=True)
    data, addr = s.recvfrom(2048)
    s.sendto(data.upper(), addr)
    print(addr[0], len(data), flush=True)
    """
)
SEND = textwrap.dedent(
    """
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    s.sendto(b"hello bob", ("10.0.0.2", 9000))
    data, addr = s.recvfrom(2048)
    print(data.decode(), addr[0], addr[1])
    """
)


def _run(
    *cmd: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _engine_env() -> dict[str, str]:
    """compose-up.sh's podman configuration (its section 2), for podman and podman-compose."""
    return {
        **os.environ,
        "CONTAINERS_CONF": str(PE / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(PE / "storage.conf"),
        "TMPDIR": str(PE / "tmp"),
    }


def _client_env() -> dict[str, str]:
    """The CLI and the drop-in pointed at the compose stack from outside."""
    env = {**os.environ, "STACKEMU_STACK_FILE": str(STACK_FILE)}
    for name in ("STACKEMU_SOCKET_ADDR", "STACKEMU_HOST", "STACKEMU_UID", "STACKEMU_CAPS", "STACKEMU_NOFILE"):
        env.pop(name, None)
    return env


def _why_not_here() -> str | None:
    """Why podman cannot run here, or None; installs what compose-up.sh needs if it can."""
    if os.geteuid() != 0:
        return "compose-up.sh runs rootful podman: needs root"
    if not COMPOSE_UP.is_file():
        return f"{COMPOSE_UP} is missing (the shared tools are not beside the repository)"
    if shutil.which("apt-get") is None:
        return "compose-up.sh installs podman with apt-get, which this machine lacks"
    missing = [pkg for cmd, pkg in PACKAGES.items() if shutil.which(cmd) is None]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        update = _run("apt-get", "update", "-qq", timeout=300, env=env)
        install = _run(
            "apt-get", "install", "-y", "-qq", *missing, "netavark", "aardvark-dns", timeout=600, env=env
        )
        if update.returncode or install.returncode:
            tail = (update.stderr + install.stderr).strip().splitlines()[-3:]
            return f"cannot install {' '.join(missing)} from Debian: {' / '.join(tail)}"
    return None


# The firewall: what netavark leaves behind.


@dataclass
class Firewall:
    rules: dict[str, str]
    nft_tables: set[str]
    ip_forward: str

    @staticmethod
    def read() -> Firewall:
        rules = {t: _run("iptables", "-t", t, "-S").stdout for t in ("filter", "nat")}
        nft = _run("nft", "list", "tables").stdout if shutil.which("nft") else ""
        tables = set(filter(None, nft.splitlines()))
        return Firewall(rules, tables, Path("/proc/sys/net/ipv4/ip_forward").read_text().strip())


def _restore_firewall(before: Firewall) -> None:
    """Remove netavark's chains (jumps to them first), the nftables tables iptables-nft
    made for them, and put net.ipv4.ip_forward back."""
    for table in ("filter", "nat"):
        lines = _run("iptables", "-t", table, "-S").stdout.splitlines()
        chains = [line.split()[1] for line in lines if line.startswith("-N NETAVARK")]
        for line in lines:
            args = shlex.split(line)
            if args[0] == "-A" and not args[1].startswith("NETAVARK") and args[-1].startswith("NETAVARK"):
                _run("iptables", "-t", table, "-D", *args[1:])
        for chain in chains:
            _run("iptables", "-t", table, "-F", chain)
        for chain in chains:
            _run("iptables", "-t", table, "-X", chain)
    for table in Firewall.read().nft_tables - before.nft_tables:
        lines = [line.strip() for line in _run("nft", "list", *table.split()).stdout.splitlines()]
        # Only base chains with no rules left: what iptables-nft created for netavark.
        if not [line for line in lines if line and not line.startswith(("table ", "chain ", "type ", "}"))]:
            _run("nft", "delete", *table.split())
    Path("/proc/sys/net/ipv4/ip_forward").write_text(before.ip_forward + "\n")


# The engine.


@dataclass
class Compose:
    client: Any  # docker.DockerClient

    def containers(self, service: str | None = None, all: bool = False) -> list[Any]:
        labels = [f"com.docker.compose.project={PROJECT}"]
        if service is not None:
            labels.append(f"com.docker.compose.service={service}")
        return list(self.client.containers.list(all=all, filters={"label": labels}))

    def container(self, service: str) -> Any:
        found = self.containers(service, all=True)
        assert len(found) == 1, (service, [c.name for c in found])
        return found[0]

    def healthcheck(self, container: Any) -> str:
        """Run the container's HEALTHCHECK once, as the engine's timer would: podman
        schedules it with systemd timers, and this machine has no systemd."""
        url = f"{self.client.api.base_url}/v4.0.0/libpod/containers/{container.id}/healthcheck"
        resp = self.client.api.get(url)
        if resp.status_code != 200:
            return f"http {resp.status_code}: {resp.text.strip()}"
        container.reload()
        return str(container.attrs["State"]["Health"]["Status"])

    def wait_healthy(self, services: list[str]) -> dict[str, Any]:
        deadline = time.monotonic() + HEALTHY_WITHIN
        status: dict[str, str] = {}
        while True:
            containers = {s: self.container(s) for s in services}
            status = {s: self.healthcheck(c) for s, c in containers.items()}
            if all(v == "healthy" for v in status.values()):
                return containers
            if time.monotonic() > deadline:
                logs = {s: c.logs(tail=5).decode(errors="replace") for s, c in containers.items()}
                pytest.fail(f"not healthy after {HEALTHY_WITHIN:.0f} s: {status}\n{logs}")
            time.sleep(0.5)

    def podman_compose(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(PE / "venv" / "bin" / "podman-compose"), "-f", str(COMPOSE_FILE), *args]
        return _run(*cmd, timeout=timeout, env=_engine_env())


def _api_service(sock: Path) -> subprocess.Popen[bytes]:
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        env=_engine_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if sock.exists():
            return proc
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    pytest.fail(f"podman system service made no socket {sock} in 5 s")


@pytest.fixture(scope="module")
def compose() -> Iterator[Compose]:
    reason = _why_not_here()
    if reason is not None:
        pytest.skip(reason)
    import docker  # type: ignore[import-untyped]

    busy = [
        p
        for p in [*PORTS.values(), *METRICS_PORTS.values()]
        if _run("ss", "-Hltn", f"sport = :{p}").stdout.strip()
    ]
    if busy:
        pytest.fail(
            f"ports {busy} are in use (a `stackemu up` on the default ports?): docker-compose.yml needs them"
        )
    before = Firewall.read()
    # BUILDAH_FORMAT=docker: podman's default OCI image format has no HEALTHCHECK.
    env = {**os.environ, "PE": str(PE), "SETTLE": "0", "BUILDAH_FORMAT": "docker"}
    api: subprocess.Popen[bytes] | None = None
    client: Any = None
    try:
        up = _run("bash", str(COMPOSE_UP), "up", str(COMPOSE_FILE), "python:3.11-slim", timeout=720, env=env)
        assert up.returncode == 0, f"compose-up.sh up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        api = _api_service(PE / "pytest-api.sock")
        client = docker.DockerClient(base_url=f"unix://{PE / 'pytest-api.sock'}", timeout=60)
        yield Compose(client)
    finally:
        down = _run("bash", str(COMPOSE_UP), "down", str(COMPOSE_FILE), timeout=180, env=env)
        if client is not None:
            leftovers = [c.name for c in Compose(client).containers(all=True)]
            nets = [
                n.name
                for n in client.networks.list(filters={"label": f"com.docker.compose.project={PROJECT}"})
            ]
            # Superseded builds of the image (the current one and the base stay, for the next run).
            client.images.prune(filters={"dangling": True, "label": IMAGE_LABEL})
            client.close()
        if api is not None:
            api.terminate()
            api.wait(timeout=30)
            (PE / "pytest-api.sock").unlink(missing_ok=True)
        _restore_firewall(before)
        after = Firewall.read()
    assert down.returncode == 0, down.stderr[-2000:]
    assert client is None or (leftovers, nets) == ([], []), (leftovers, nets)
    assert after == before, (before, after)


def test_every_container_becomes_healthy(compose: Compose) -> None:
    containers = compose.wait_healthy(SERVICES)
    assert compose.client.images.get(IMAGE).attrs["Config"]["User"] == "10001:10001"
    # The Dockerfile's HEALTHCHECK (the compose file repeats it for engines that drop it);
    # podman 4.3's Docker-compatible image inspection leaves it out, its own does not.
    image = compose.client.api.get(f"{compose.client.api.base_url}/v4.0.0/libpod/images/{IMAGE}/json")
    assert image.json()["Healthcheck"]["Test"] == ["CMD", "stackemu-healthcheck"]
    for service, c in containers.items():
        port = PORTS[service]
        assert c.attrs["State"]["Health"]["Log"][-1]["Output"].strip() == f"127.0.0.1:{port}: SERVING"
        assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        # Published on loopback only, each on its own port: gRPC and metrics.
        assert c.attrs["HostConfig"]["PortBindings"] == {
            f"{p}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(p)}] for p in (port, METRICS_PORTS[service])
        }
        assert sorted(c.attrs["NetworkSettings"]["Networks"]) == [f"{PROJECT}_edge", f"{PROJECT}_stack"]
    stack = compose.client.networks.get(f"{PROJECT}_stack")
    assert stack.attrs["Internal"] is True


def test_cli_reaches_the_stack_through_compose_stack_json(compose: Compose) -> None:
    env = _client_env()
    status = _run(sys.executable, "-m", "stackemu", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert [(r["host"], r["service"], r["addr"], r["metrics"], r["health"]) for r in rows] == [
        (
            h.name,
            layer,
            f"127.0.0.1:{PORTS[f'{h.name}-{layer}']}",
            f"127.0.0.1:{METRICS_PORTS[f'{h.name}-{layer}']}",
            "SERVING",
        )
        for h in HOSTS
        for layer in LAYERS
    ]
    link = _run(sys.executable, "-m", "stackemu", "ip", "link", "show", "bob:eth0", env=env)
    assert link.returncode == 0, link.stderr
    assert link.stdout.splitlines()[1].split() == [
        "link/ether",
        "02:00:0a:00:00:02",
        "brd",
        "ff:ff:ff:ff:ff:ff",
    ]
    # The containers are compose's, not the launcher's: `stackemu down` leaves them be.
    down = _run(sys.executable, "-m", "stackemu", "down", env=env)
    assert down.returncode == 1
    assert "names a stack that `stackemu up` did not start" in down.stderr
    assert all(c.status == "running" for c in compose.containers())


def test_demo_profile_container_exits_0(compose: Compose) -> None:
    run = compose.podman_compose("--profile", "demo", "up", "-d", "--no-deps", "demo")
    assert run.returncode == 0, run.stderr[-2000:]
    demo = compose.container("demo")
    try:
        assert demo.wait(timeout=120)["StatusCode"] == 0, demo.logs().decode(errors="replace")
        logs = demo.logs().decode()
        # `stackemu demo --host alice`, then `--host bob`: each sends 3 datagrams over
        # the wire to the other, which receives them with their cmsgs.
        for sender, receiver, peer in (("alice", "bob", "10.0.0.1"), ("bob", "alice", "10.0.0.2")):
            assert f"stackemu demo: 3 UDP datagrams {sender} → {receiver} over the wire" in logs
            assert f"  {receiver:<6} recvmsg() = b'hello {receiver} #3' from {peer}:" in logs
        # Its `stackemu status`, by service name on the internal network (no pids in a
        # stack file).
        row = r"\nalice +socket +alice-socket:50103 +alice-socket:51103 +- +- +SERVING\n"
        assert re.search(row, logs), logs
        assert demo.attrs["NetworkSettings"]["Networks"].keys() == {f"{PROJECT}_stack"}
    finally:
        demo.remove(force=True)


def _exchange() -> tuple[str, str]:
    """bob echoes one datagram from alice back in capitals; both sides' output."""
    env = _client_env()
    echo = subprocess.Popen(
        [sys.executable, "-c", ECHO],
        env={**env, "STACKEMU_HOST": "bob"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert echo.stdout is not None
        assert echo.stdout.readline() == "ready\n", echo.stderr.read() if echo.stderr else ""
        send = _run(sys.executable, "-c", SEND, env={**env, "STACKEMU_HOST": "alice"}, timeout=60)
        assert send.returncode == 0, send.stderr
        got, err = echo.communicate(timeout=30)
        assert echo.returncode == 0, err
        return send.stdout, got
    finally:
        if echo.poll() is None:
            echo.kill()
            echo.wait()


def _udp_counters(service: str) -> dict[str, float]:
    """service's SNMP counters from its published metrics port, at the address
    compose/stack.json gives (never through a proxy)."""
    host, layer = service.split("-")
    addr = json.loads(STACK_FILE.read_text())["hosts"][host][layer]["metrics"]
    assert addr == f"127.0.0.1:{METRICS_PORTS[service]}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{addr}/metrics", timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {
        s.name.removeprefix("stackemu_snmp_").removesuffix("_total"): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("stackemu_snmp_Udp") and s.labels == {"host": host, "service": layer}
    }


def test_alice_and_bob_exchange_from_outside(compose: Compose) -> None:
    before = _udp_counters("alice-udp")
    sent, echoed = _exchange()
    assert sent == "HELLO BOB 10.0.0.2 9000\n"
    assert echoed == "10.0.0.1 9\n"
    # alice's UDP layer, scraped on its published port: the datagram it sent, the echo
    # it read (udp_recvmsg counts InDatagrams), nothing else.
    after = _udp_counters("alice-udp")
    assert {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)} == {
        "UdpOutDatagrams": 1,
        "UdpInDatagrams": 1,
    }


def _wait_attached(host: str) -> list[str]:
    """Open a socket on host until it works (10 s at most); the errors before that."""
    code = "import stackemu.socket as s\ntry:\n    s.socket(s.AF_INET, s.SOCK_DGRAM).close()\n"
    code += "except OSError as e:\n    print('OSError', e.errno)\n"
    errors: list[str] = []
    deadline = time.monotonic() + 10
    while True:
        out = _run(sys.executable, "-c", code, env={**_client_env(), "STACKEMU_HOST": host})
        assert out.returncode == 0, out.stderr
        if not out.stdout.strip():
            return errors
        errors.append(out.stdout.strip())
        assert time.monotonic() < deadline, errors
        time.sleep(0.2)


def test_a_killed_service_is_restarted_and_the_stack_recovers(compose: Compose) -> None:
    udp = compose.container("alice-udp")
    pid, restarts = udp.attrs["State"]["Pid"], udp.attrs["RestartCount"]
    os.kill(pid, signal.SIGKILL)  # a crash, not a `docker stop`: the policy restarts it
    deadline = time.monotonic() + 30
    while True:
        udp.reload()
        if (
            udp.status == "running"
            and udp.attrs["RestartCount"] > restarts
            and udp.attrs["State"]["Pid"] != pid
        ):
            break
        assert time.monotonic() < deadline, (udp.status, udp.attrs["State"])
        time.sleep(0.1)
    assert udp.attrs["RestartCount"] == restarts + 1
    # The new UDP layer attaches to IP again (its health says so), the socket service to
    # it (retry_forever, backoff up to 0.25 s); until then a system call fails with EIO,
    # "the UDP layer is not attached", while the socket service stays SERVING.
    compose.wait_healthy(["alice-udp", "alice-socket"])
    errors = _wait_attached("alice")
    assert set(errors) <= {"OSError 5"}, errors
    sent, echoed = _exchange()
    assert sent == "HELLO BOB 10.0.0.2 9000\n"
    assert echoed == "10.0.0.1 9\n"
    # A new process: its metrics endpoint is back, its counters count from zero.
    counters = _udp_counters("alice-udp")
    assert {k: v for k, v in counters.items() if v} == {"UdpOutDatagrams": 1, "UdpInDatagrams": 1}
    # Only the killed one restarted.
    assert {s: compose.container(s).attrs["RestartCount"] for s in SERVICES if s != "alice-udp"} == {
        s: 0 for s in SERVICES if s != "alice-udp"
    }
