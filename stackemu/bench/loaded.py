"""python -m stackemu.bench.loaded SOCKETS PAYLOAD BATCH COUNT SECONDS TIMEOUT: one
sample of the kernel's side of scenario e, run inside its network namespace. It binds
SOCKETS UDP sockets to INADDR_ANY on ports from SOCKET_PORT up (raising
RLIMIT_NOFILE for them), keeps them open through one kernel.throughput sample, and
prints the sample as JSON."""

from __future__ import annotations

import json
import resource
import socket
import sys
from dataclasses import asdict

from stackemu.bench import kernel
from stackemu.bench.sample import Budget

# The first port of the sockets scenario e binds (scaling.py): below the default
# net.ipv4.ip_local_port_range (32768-60999), so the benchmark's ephemeral ports stay free.
SOCKET_PORT = 20_000


def main(argv: list[str]) -> int:
    sockets, payload, batch, count = (int(v) for v in argv[:4])
    seconds, timeout = float(argv[4]), float(argv[5])
    want = sockets + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    held = []
    try:
        for i in range(sockets):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(s)
            s.bind(("0.0.0.0", SOCKET_PORT + i))
        got = kernel.throughput(Budget(count, seconds, timeout), payload=payload, batch=batch)
    finally:
        for s in held:
            s.close()
    print(json.dumps(asdict(got)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
