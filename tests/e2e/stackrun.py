"""Running the stackemu CLI against a stack of the test's own: free ports, the command."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys


def free_base() -> int:
    """A base port whose 20 ports are all free (the launcher uses base+0..3, +10..13)."""
    for _ in range(50):
        base = random.randrange(20000, 30000, 20)
        ok = True
        for p in range(base, base + 20):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackemu", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def stack_env(state_dir: str) -> dict[str, str]:
    """The environment of a stack of the test's own: its state directory, free ports, and
    no client settings inherited from whoever runs the tests."""
    env = {**os.environ, "STACKEMU_STATE_DIR": state_dir, "STACKEMU_BASE_PORT": str(free_base())}
    env.pop("STACKEMU_SOCKET_ADDR", None)
    env.pop("STACKEMU_HOST", None)
    return env
