"""bind() and autobind under the SOL_IP options that change them, compared between this
machine's kernel and an emulated host through the drop-in (the harness of
test_udp_kernel_send.py: the same script with `socket` in a network namespace of its own
and with `stackemu.socket` on alice): IP_FREEBIND and IP_TRANSPARENT binds to an address
that is not the host's (inet_can_nonlocal_bind), a transparent socket sending from it
(FLOWI_FLAG_ANYSRC), IP_BIND_ADDRESS_NO_PORT (the port left to inet_autobind) and
IP_LOCAL_PORT_RANGE (inet_sk_get_local_port_range in udp_lib_get_port).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from services.core import errno
from tests.e2e.test_udp_kernel_send import LO, PORT, SOL_IP, Both, Host, compare, errno_of, main, run_both

IP_FREEBIND, IP_TRANSPARENT, IP_BIND_ADDRESS_NO_PORT, IP_LOCAL_PORT_RANGE = 15, 19, 24, 51
NONLOCAL = "10.9.9.9"
# Inside the default ip_local_port_range (32768 60999), far from its start.
LOW, HIGH = 40000, 40003


def nonlocal_binds(h: Host) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rx = h.sock(0)
    plain = h.sock()
    out["plain bind"] = errno_of(lambda: plain.bind((NONLOCAL, PORT + 1)))
    plain.close()
    for name, opt, offset in (("freebind", IP_FREEBIND, 1), ("transparent", IP_TRANSPARENT, 2)):
        s = h.sock()
        s.setsockopt(SOL_IP, opt, 1)
        out[f"{name} bind"] = [errno_of(partial(s.bind, (NONLOCAL, PORT + offset))), h.port(s.getsockname())]
        out[f"{name} sendto"] = errno_of(partial(s.sendto, name.encode(), (LO, PORT)))
        out[f"{name} got"] = h.got(rx)
        s.close()
    rx.close()
    return out


def bind_address_no_port(h: Host) -> dict[str, Any]:
    rx = h.sock(0)
    s = h.sock()
    s.setsockopt(SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    seq = [errno_of(lambda: s.bind((LO, 0))), s.getsockname(), errno_of(lambda: s.bind((LO, 0)))]
    seq += [errno_of(lambda: s.sendto(b"banp", (LO, PORT))), h.port(s.getsockname())]
    seq += [errno_of(lambda: s.bind((LO, 0))), h.got(rx)]
    s.close()
    rx.close()
    return {"IP_BIND_ADDRESS_NO_PORT": seq}


def local_port_range(h: Host) -> dict[str, Any]:
    rx = h.sock(0)
    rng = struct.pack("=I", HIGH << 16 | LOW)
    socks, ports = [], []
    for _ in range(HIGH - LOW + 1):
        s = h.sock()
        s.setsockopt(SOL_IP, IP_LOCAL_PORT_RANGE, rng)
        s.sendto(b"lpr", (LO, PORT))
        ports.append(s.getsockname()[1])
        socks.append(s)
    full = h.sock()
    full.setsockopt(SOL_IP, IP_LOCAL_PORT_RANGE, rng)
    seq = [
        sorted(ports),
        errno_of(lambda: full.sendto(b"full", (LO, PORT))),
        errno_of(lambda: full.bind((LO, 0))),
        errno_of(lambda: full.bind((LO, PORT + 3))),
        h.port(full.getsockname()),
        len(h.got(rx)),
    ]
    for s in [*socks, full]:
        s.close()
    one = h.sock()
    one.setsockopt(SOL_IP, IP_LOCAL_PORT_RANGE, struct.pack("=I", HIGH << 16 | 1))
    seq += [errno_of(lambda: one.bind((LO, 0))), one.getsockname()[1]]
    one.close()
    rx.close()
    return {"IP_LOCAL_PORT_RANGE": seq}


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    yield from run_both(__name__, str(tmp_path_factory.mktemp("state")))


def test_nonlocal_binds(both: Both) -> None:
    """6.18: a plain bind to 10.9.9.9 is EADDRNOTAVAIL; IP_FREEBIND binds but cannot send
    from it (ENETUNREACH: the route wants a source of ours); IP_TRANSPARENT binds and
    sends, and the receiver sees 10.9.9.9 as the sender."""
    kernel, emulated = both
    assert kernel["plain bind"] == ["errno", errno.EADDRNOTAVAIL]
    assert kernel["freebind bind"] == [None, [NONLOCAL, 1]]
    assert kernel["freebind sendto"] == ["errno", errno.ENETUNREACH]
    assert kernel["freebind got"] == []
    assert kernel["transparent bind"] == [None, [NONLOCAL, 2]]
    assert kernel["transparent sendto"] == 11
    assert kernel["transparent got"] == [[11, b"transpar".hex(), [NONLOCAL, 2], []]]
    keys = ("plain bind", "freebind bind", "freebind sendto", "freebind got")
    compare(kernel, emulated, *keys, "transparent bind", "transparent sendto", "transparent got")


def test_bind_address_no_port(both: Both) -> None:
    """6.18: bind(127.0.0.1:0) leaves port 0 and may be repeated; the send autobinds on
    127.0.0.1; then bind() is EINVAL."""
    kernel, emulated = both
    assert kernel["IP_BIND_ADDRESS_NO_PORT"] == [
        None,
        [LO, 0],
        None,
        4,
        [LO, "other"],
        ["errno", errno.EINVAL],
        [[4, b"banp".hex(), [LO, "other"], []]],
    ]
    compare(kernel, emulated, "IP_BIND_ADDRESS_NO_PORT")


def test_local_port_range(both: Both) -> None:
    """6.18: four sockets limited to 40000..40003 autobind to those four ports; a fifth
    finds none (EAGAIN from sendto, EADDRINUSE from bind to port 0) but may bind a port
    of its choosing; hi 40003 with lo 1 (outside ip_local_port_range) is 32768..40003."""
    kernel, emulated = both
    assert kernel["IP_LOCAL_PORT_RANGE"] == [
        [40000, 40001, 40002, 40003],
        ["errno", errno.EAGAIN],
        ["errno", errno.EADDRINUSE],
        None,
        [LO, 3],
        4,
        None,
        kernel["IP_LOCAL_PORT_RANGE"][-1],
    ]
    assert 32768 <= kernel["IP_LOCAL_PORT_RANGE"][-1] <= HIGH
    seq = emulated.get("IP_LOCAL_PORT_RANGE") or []
    assert len(seq) == 8 and 32768 <= seq[-1] <= HIGH, seq
    compare({"head": kernel["IP_LOCAL_PORT_RANGE"][:-1]}, {"head": seq[:-1]}, "head")


if __name__ == "__main__":
    main(nonlocal_binds, bind_address_no_port, local_port_range)
