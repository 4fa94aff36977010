"""One UDP scenario, run against a socket module named on the command line
(`socket` for the real kernel, `stackemu.socket` for the emulated host), printing what
happened as JSON. The end-to-end test runs both and compares."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from typing import Any


def errno_of(f: Callable[[], object]) -> int | str:
    try:
        f()
    except TimeoutError:
        return "timeout"
    except OSError as e:
        return e.errno or 0
    return 0


def run(sk: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    dgram = (sk.AF_INET, sk.SOCK_DGRAM)
    r = sk.socket(*dgram)
    r.bind(("127.0.0.1", 0))
    port = r.getsockname()[1]
    r.settimeout(5)
    s = sk.socket(*dgram)
    out["unbound_name"] = s.getsockname()
    out["sendto"] = s.sendto(b"0123456789", ("127.0.0.1", port))
    data, addr = r.recvfrom(100)
    out["recvfrom"] = [data.decode(), addr[0], addr[1] == s.getsockname()[1]]
    name = s.getsockname()
    out["autobound"] = [name[0], 32768 <= name[1] <= 60999]
    out["bind_twice"] = errno_of(lambda: r.bind(("127.0.0.1", 0)))
    out["bind_in_use"] = errno_of(lambda: sk.socket(*dgram).bind(("127.0.0.1", port)))
    out["bind_wildcard_in_use"] = errno_of(lambda: sk.socket(*dgram).bind(("", port)))
    out["bind_other_loopback"] = errno_of(lambda: sk.socket(*dgram).bind(("127.0.0.2", port)))
    out["bind_nonlocal"] = errno_of(lambda: sk.socket(*dgram).bind(("10.255.255.254", 0)))
    out["sendto_port_0"] = errno_of(lambda: s.sendto(b"x", ("127.0.0.1", 0)))
    out["send_unconnected"] = errno_of(lambda: s.send(b"x"))
    out["getpeername_unconnected"] = errno_of(s.getpeername)
    out["sendto_65508"] = errno_of(lambda: s.sendto(bytes(65508), ("127.0.0.1", port)))
    out["sendto_65507"] = s.sendto(bytes(range(256)) * 255 + bytes(227), ("127.0.0.1", port))
    big = r.recv(70000)
    out["recv_65507"] = [len(big), big[:300] == (bytes(range(256)) * 2)[:300]]
    s.sendto(b"truncated!", ("127.0.0.1", port))
    out["recv_short_buffer"] = r.recv(4).decode()
    s.sendto(b"peek", ("127.0.0.1", port))
    out["peek_then_recv"] = [r.recv(10, sk.MSG_PEEK).decode(), r.recv(10).decode()]
    r.setblocking(False)
    out["nonblocking_empty"] = errno_of(lambda: r.recv(10))
    r.settimeout(0.2)
    out["timeout_empty"] = errno_of(lambda: r.recv(10))
    r.settimeout(5)
    c = sk.socket(*dgram)
    c.connect(("127.0.0.1", port))
    out["connected_send"] = c.send(b"connected")
    data, addr = r.recvfrom(100)
    out["connected_recv"] = [data.decode(), addr == c.getsockname(), c.getpeername() == ("127.0.0.1", port)]
    out["so_type"] = s.getsockopt(sk.SOL_SOCKET, sk.SO_TYPE)
    with sk.socket(*dgram) as w:
        w.bind(("127.0.0.1", 0))
        out["ctx_bound"] = w.getsockname()[0]
    closed = sk.socket(*dgram)
    closed.close()
    out["closed_fileno"] = closed.fileno()
    out["closed_sendto"] = errno_of(lambda: closed.sendto(b"x", ("127.0.0.1", port)))
    buf = bytearray(16)
    s.sendto(b"into", ("127.0.0.1", port))
    n = r.recv_into(buf)
    out["recv_into"] = [n, bytes(buf[:n]).decode()]
    for x in (r, s, c):
        x.close()
    return out


if __name__ == "__main__":
    module = importlib.import_module(sys.argv[1])
    print(json.dumps(run(module)))
