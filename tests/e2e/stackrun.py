"""Running the stackemu CLI against a stack of the test's own: free ports, the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stackemu import launcher


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackemu", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def stack_env(state_dir: str) -> dict[str, str]:
    """The environment of a stack of the test's own: its state directory, free ports, and
    no client settings inherited from whoever runs the tests."""
    env = {**os.environ, "STACKEMU_STATE_DIR": state_dir, "STACKEMU_BASE_PORT": str(launcher.free_base())}
    for name in ("STACKEMU_SOCKET_ADDR", "STACKEMU_HOST", "STACKEMU_UID", "STACKEMU_CAPS", "STACKEMU_NOFILE"):
        env.pop(name, None)
    return env


def launched(state_dir: str) -> Iterator[dict[str, str]]:
    """A module fixture's body: `stackemu up` in state_dir (stack_env), the environment
    that reaches it, then `stackemu down`."""
    env = stack_env(state_dir)
    up = cli(env, "up")
    assert up.returncode == 0, up.stderr
    try:
        yield env
    finally:
        down = cli(env, "down")
        assert down.returncode == 0, down.stderr


def _hosts(env: dict[str, str]) -> dict[str, dict[str, dict[str, Any]]]:
    """The hosts of the stack file in env's state directory."""
    hosts: dict[str, dict[str, dict[str, Any]]] = json.loads(
        (Path(env["STACKEMU_STATE_DIR"]) / "stack.json").read_text()
    )["hosts"]
    return hosts


def service_addr(env: dict[str, str], host: str, service: str) -> str:
    """host:port of a host's service in the stack env's state directory names."""
    addr: str = _hosts(env)[host][service]["addr"]
    return addr


def service_pids(env: dict[str, str]) -> dict[str, int]:
    """The pid of every service of the stack in env's state directory, by "host/service"."""
    return {
        f"{h}/{name}": svc["pid"] for h, services in _hosts(env).items() for name, svc in services.items()
    }


# A drop-in receiver on bob (10.0.0.2:9000) that says "bound", then prints the one
# datagram it reads and its sender; and a sender on alice (from 10.0.0.1:40000) of its
# first argument, printing sendto's count. Run with `python -c` against any stack.
DROPIN_RECV = textwrap.dedent(
    """
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.0.0.2", 9000))
    s.settimeout(10)
    print("bound", flush=True)
    data, addr = s.recvfrom(100)
    print(data.decode(), addr[0], addr[1])
    """
)
DROPIN_SEND = textwrap.dedent(
    """
    import sys
    import stackemu.socket as socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.0.0.1", 40000))
    print(s.sendto(sys.argv[1].encode(), ("10.0.0.2", 9000)))
    """
)
