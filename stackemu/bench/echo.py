"""python -m stackemu.bench.echo TIMEOUT COUNT: the kernel's side of the ping-pong, a
peer in a process of its own. It binds 127.0.0.1 on a free port, prints the port, and
sends each datagram back to its sender, at most COUNT of them, until an empty one comes
or none for TIMEOUT seconds."""

from __future__ import annotations

import socket
import sys


def main(argv: list[str]) -> int:
    timeout, count = float(argv[0]), int(argv[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        print(s.getsockname()[1], flush=True)
        for _ in range(count + 1):
            try:
                data, peer = s.recvfrom(65535)
            except TimeoutError:
                return 1
            if not data:
                return 0
            s.sendto(data, peer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
