"""Where a running stack is written down, and how clients find a host's socket service.

`stackemu up` writes $STACKEMU_STATE_DIR/stack.json (default ~/.stackemu): every
service's address and pid. A stack that something else runs is named by
STACKEMU_STACK_FILE instead: a file of the same shape without pids, such as
compose/stack.json for docker-compose.yml's published ports. Clients pick a host with
STACKEMU_HOST (default alice), or name a socket service directly with
STACKEMU_SOCKET_ADDR=host:port.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def state_dir() -> Path:
    return Path(os.environ.get("STACKEMU_STATE_DIR") or Path.home() / ".stackemu")


def external_file() -> Path | None:
    """STACKEMU_STACK_FILE: a stack `stackemu up` did not start (and `down` must not stop)."""
    named = os.environ.get("STACKEMU_STACK_FILE")
    return Path(named) if named else None


def state_file() -> Path:
    """The stack file clients read: STACKEMU_STACK_FILE if set, else the one `stackemu up` writes."""
    return external_file() or own_file()


def own_file() -> Path:
    return state_dir() / "stack.json"


def load() -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(state_file().read_text())
    except FileNotFoundError:
        return None
    return data


def save(data: dict[str, Any]) -> None:
    state_dir().mkdir(parents=True, exist_ok=True)
    tmp = own_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(own_file())


def remove() -> None:
    own_file().unlink(missing_ok=True)


class NoStack(RuntimeError):
    """No stack to talk to: say how to start one."""


def service_addr(layer: str, host: str | None = None) -> str:
    """The address of one host's service, from the environment or the state file."""
    if layer == "socket" and os.environ.get("STACKEMU_SOCKET_ADDR"):
        return os.environ["STACKEMU_SOCKET_ADDR"]
    host = host or os.environ.get("STACKEMU_HOST") or "alice"
    data = load()
    if data is None:
        raise NoStack(
            f"no emulated stack is running (no {state_file()}): start one with `stackemu up`, "
            "or set STACKEMU_SOCKET_ADDR=host:port"
        )
    hosts = data["hosts"]
    if host not in hosts:
        raise NoStack(f"no host {host!r} in the running stack (hosts: {', '.join(hosts)})")
    addr: str = hosts[host][layer]["addr"]
    return addr
