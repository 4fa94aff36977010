"""`stackemu up/down/status`: the default topology as local processes."""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core import auth
from services.core.config import ConfigError
from services.core.server import open_channel
from services.nic.tap import netns_exists, netns_remove
from stackemu import state, supervise
from stackemu.topology import HOSTS, LAYERS, TAP_DEV, TAP_HOST, TAP_KERNEL_ADDR, metrics_port, ports

REPO_ROOT = Path(__file__).resolve().parent.parent
UP_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


class LaunchError(RuntimeError):
    pass


def health(addr: str, timeout: float = 1.0) -> str:
    """The overall health of the service at addr: SERVING, NOT_SERVING, or UNREACHABLE."""
    with open_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the gRPC server binds: connections left in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wanted_ports(base: int) -> list[int]:
    """Every port a stack on `base` listens on: each service's gRPC port and its
    metrics port."""
    return [q for host in ports(base).values() for p in host.values() for q in (p, metrics_port(p))]


def free_base() -> int:
    """A random base port whose wanted_ports are all free (a test's or a benchmark's
    stack of its own; random, so that two of them do not race for one)."""
    for _ in range(50):
        base = random.randrange(20000, 30000, 20)
        if all(port_free(p) for p in wanted_ports(base)):
            return base
    raise LaunchError("no free port range for a stack")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is one.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


def running() -> dict[str, Any] | None:
    data = state.load()
    if data is None:
        return None
    pids = [svc["pid"] for host in data["hosts"].values() for svc in host.values()]
    if "supervisor" in data:
        # Between a service's end and its restart, only the supervisor runs.
        pids.append(data["supervisor"]["pid"])
    return data if any(_alive(p) for p in pids) else None


# Progress of `up`: a service turned SERVING ("alice/nic", its state entry), and the
# services still awaited, once per poll.
OnServing = Callable[[str, dict[str, Any]], None]
OnWait = Callable[[list[str]], None]


def up(
    base_port: int | None = None,
    log: Any = print,
    tap: str | None = None,
    on_serving: OnServing | None = None,
    on_wait: OnWait | None = None,
) -> dict[str, Any]:
    """Start alice and bob, their NICs joined by a wire; with `tap`, alice's eth1 is
    attached to a TAP device of that name whose kernel side lives in a network
    namespace of the same name (root only). `log` says what starts; on_serving hears
    of each service as it answers its health check SERVING, on_wait of those still
    awaited while it polls."""
    if running() is not None:
        raise LaunchError(f"a stack is already running ({state.state_file()}); `stackemu down` first")
    try:
        # The services and the health checks below take STACKEMU_TLS_* from here.
        auth.tls_from_env()
    except ConfigError as err:
        raise LaunchError(str(err)) from None
    base = base_port or int(os.environ.get("STACKEMU_BASE_PORT", "50100"))
    layout = ports(base)
    busy = [p for p in wanted_ports(base) if not port_free(p)]
    if busy:
        raise LaunchError(
            f"ports {', '.join(map(str, busy))} are in use: choose another base with "
            "--base-port or STACKEMU_BASE_PORT"
        )
    logdir = state.state_dir() / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    if tap is not None:
        _check_tap(tap)
    data: dict[str, Any] = {"base_port": base, "hosts": {}, "tap": tap}
    procs: list[subprocess.Popen[bytes]] = []
    specs: list[supervise.Spec] = []
    names = " and ".join(spec.name for spec in HOSTS)
    log(f"starting {len(HOSTS) * len(LAYERS)} services of {names} (logs in {logdir})")
    try:
        for spec in HOSTS:
            p = layout[spec.name]
            env_common = {
                **os.environ,
                "PYTHONPATH": str(REPO_ROOT),
                "STACKEMU_HOSTNAME": spec.name,
                # The secret of this host's layer-internal RPCs (services/core/auth.py):
                # its four services alone have it.
                auth.SECRET_ENV: secrets.token_hex(32),
            }
            env_common.pop(f"{auth.SECRET_ENV}_FILE", None)
            with_tap = tap is not None and spec.name == TAP_HOST
            nic_env = {
                "STACKEMU_LINKS": spec.links(with_tap),
                "STACKEMU_WIRES": f"eth0=127.0.0.1:{layout[spec.peer]['nic']}/eth0",
            }
            if with_tap:
                nic_env["STACKEMU_TAP"] = f"{TAP_DEV}={tap}@{TAP_KERNEL_ADDR}"
            envs = {
                "nic": nic_env,
                "ip": {"STACKEMU_NIC": f"127.0.0.1:{p['nic']}", "STACKEMU_ADDRS": spec.addrs(with_tap)},
                "udp": {"STACKEMU_IP": f"127.0.0.1:{p['ip']}"},
                "socket": {"STACKEMU_UDP": f"127.0.0.1:{p['udp']}"},
            }
            host: dict[str, Any] = {}
            for layer in LAYERS:
                addr = f"127.0.0.1:{p[layer]}"
                metrics = f"127.0.0.1:{metrics_port(p[layer])}"
                listen = {"STACKEMU_LISTEN": addr, "STACKEMU_METRICS": metrics}
                logfile = logdir / f"{spec.name}-{layer}.log"
                how = supervise.Spec(
                    host=spec.name,
                    layer=layer,
                    argv=[sys.executable, "-m", f"services.{layer}"],
                    env={**env_common, **envs[layer], **listen},
                    cwd=str(REPO_ROOT),
                    log=str(logfile),
                )
                proc = supervise.start(how)
                procs.append(proc)
                specs.append(how)
                host[layer] = {"addr": addr, "metrics": metrics, "pid": proc.pid, "log": str(logfile)}
            data["hosts"][spec.name] = host
        state.save(data)
        _wait_serving(data, procs, on_serving, on_wait)
        # restart: unless-stopped, as docker-compose.yml has it: from now on a service
        # that ends is started again (stackemu/supervise.py) until `stackemu down`.
        supervisor_log = logdir / "supervise.log"
        supervisor = supervise.launch(
            specs, str(supervisor_log), {**os.environ, "PYTHONPATH": str(REPO_ROOT)}, str(REPO_ROOT)
        )
        procs.insert(0, supervisor)
        data["supervisor"] = {"pid": supervisor.pid, "log": str(supervisor_log)}
        state.save(data)
    except BaseException:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            proc.wait()
        state.remove()
        if tap is not None:
            netns_remove(tap)
        raise
    return data


def _wait_serving(
    data: dict[str, Any],
    procs: list[subprocess.Popen[bytes]],
    on_serving: OnServing | None = None,
    on_wait: OnWait | None = None,
) -> None:
    deadline = time.monotonic() + UP_TIMEOUT
    pending = {(name, layer): svc for name, host in data["hosts"].items() for layer, svc in host.items()}
    while pending:
        if on_wait is not None:
            on_wait([f"{n}/{layer}" for n, layer in pending])
        for proc in procs:
            if proc.poll() is not None:
                which = next(
                    (f"{n}/{layer}" for (n, layer), s in pending.items() if s["pid"] == proc.pid),
                    str(proc.pid),
                )
                raise LaunchError(f"service {which} exited with {proc.returncode}: {_tail(proc.pid, data)}")
        for key, svc in list(pending.items()):
            if health(svc["addr"], timeout=0.5) == "SERVING":
                del pending[key]
                if on_serving is not None:
                    on_serving("/".join(key), svc)
        if pending and time.monotonic() > deadline:
            names = ", ".join(f"{n}/{layer}" for n, layer in pending)
            raise LaunchError(f"not SERVING after {UP_TIMEOUT:.0f} s: {names}")
        if pending:
            time.sleep(0.05)


def _tail(pid: int, data: dict[str, Any]) -> str:
    for host in data["hosts"].values():
        for svc in host.values():
            if svc["pid"] == pid:
                lines = Path(svc["log"]).read_text(errors="replace").splitlines()
                return "\n".join(lines[-15:])
    return ""


def down(log: Any = print) -> bool:
    """SIGTERM every service, SIGKILL what is left after STOP_TIMEOUT; False if none ran."""
    data = state.load()
    if data is None:
        return False
    if "supervisor" in data:
        # First, so that it does not restart the services stopped below ("unless
        # stopped"); then the state again, for the pids of those it restarted.
        _stop([data["supervisor"]["pid"]])
        data = state.load() or data
    pids = [svc["pid"] for host in data["hosts"].values() for svc in host.values()]
    _stop(pids)
    state.remove()
    if data.get("tap"):
        # The TAP device went with the NIC's file descriptor; its namespace is ours.
        netns_remove(data["tap"])
    log(f"stopped {len(pids)} services")
    return True


def _stop(pids: list[int]) -> None:
    """SIGTERM each process group, SIGKILL those left after STOP_TIMEOUT."""
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _check_tap(name: str) -> None:
    if os.geteuid() != 0:
        raise LaunchError("--tap needs root: it creates a TAP device and a network namespace")
    if not 0 < len(name) <= 15 or "/" in name or any(c.isspace() for c in name):
        raise LaunchError(f"--tap {name!r}: a device name is 1..15 characters without '/' or spaces")
    if not Path("/dev/net/tun").exists():
        raise LaunchError("--tap: /dev/net/tun is missing (modprobe tun)")
    if netns_exists(name):
        raise LaunchError(f"--tap {name}: network namespace {name!r} already exists; remove it first")


def status() -> list[dict[str, str]]:
    data = state.load()
    if data is None:
        return []
    rows = []
    for name, host in data["hosts"].items():
        for layer, svc in host.items():
            rows.append(
                {
                    "host": name,
                    "service": layer,
                    "addr": svc["addr"],
                    "metrics": svc.get("metrics", "-"),
                    "pid": str(svc["pid"]),
                    "restarts": str(svc.get("restarts", 0)),
                    "health": health(svc["addr"]) if _alive(svc["pid"]) else "EXITED",
                }
            )
    return rows
