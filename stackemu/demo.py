"""`stackemu demo`: one datagram through the four services of a host, over lo."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from stackemu import state
from stackemu.stats import Counters, snapshot


def run(host: str | None, echo: Callable[[str], None]) -> None:
    if host:
        os.environ["STACKEMU_HOST"] = host
    host = os.environ.get("STACKEMU_HOST") or "alice"
    state.service_addr("socket", host)  # fail early, with the message, if nothing runs
    import stackemu.socket as socket

    before = snapshot(host)
    # Any: the emulator's extras (emu_trace) are not on the standard socket's type.
    rx: Any = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx: Any = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        tx.emu_trace = True
        payload = b"hello from the emulated stack"
        echo(f"[{host}] receiver bound to {rx.getsockname()}")
        sent = tx.sendto(payload, rx.getsockname())
        echo(f"[{host}] sendto({payload!r}) -> {sent} bytes, from {tx.getsockname()}")
        data, addr = rx.recvfrom(2048)
        echo(f"[{host}] recvfrom -> {data!r} from {addr}")
        trace = rx.emu_last_trace
    echo("")
    echo("The datagram's path (kernel function, service, microseconds since sendto):")
    t0 = trace[0].ts_ns if trace else 0
    for step in trace:
        echo(f"  {(step.ts_ns - t0) / 1000:9.1f} us  {step.service:<7} {step.func}")
    after = snapshot(host)
    echo("")
    echo("Counters that moved:")
    for line in Counters.diff(before, after):
        echo(f"  {line}")
