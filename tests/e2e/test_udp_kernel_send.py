"""UDP sendmsg and recvmsg through the drop-in module on a running stack (`stackemu up`),
compared with this machine's kernel: the same script runs once with `socket` in a network
namespace of its own (`unshare --net`, lo up, so that /proc/net/snmp counts only what the
script did) and once with `stackemu.socket` on alice, and both must print the same JSON:
what each call returned (or its errno), what the receivers got (length, data, sender,
cmsgs as hex), and which Udp/UdpLite counters moved and by how much.

This file is also the harness of the other test_udp_kernel_*.py files: `Host` (the
socket module, counters, a capture of lo and the settle sentinel) and `run_both`.

"Settled" means a sentinel that a socket of the script's own sent to itself over lo has
come back: lo delivers in order, so everything sent before it has been delivered or
dropped, and a receiver is then drained with MSG_DONTWAIT. "Nothing arrived" needs no
timeout, and a full receive queue does not stop the sentinel.

What 6.18 answered is written next to each comparison, so that a comparison cannot pass
because both sides went wrong the same way.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.core import errno

ROOT = Path(__file__).parents[2]
CAN_UNSHARE = os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("ip") is not None
LO = "127.0.0.1"
PORT = 20000  # below ip_local_port_range, so no autobind takes one of the script's ports
SETTLE = 99  # PORT + SETTLE is the settle sentinel's socket
SOL_SOCKET, SOL_IP, SOL_UDP, SOL_UDPLITE = 1, 0, 17, 136
IPPROTO_UDPLITE = 136
MSG_OOB, MSG_PEEK, MSG_DONTROUTE, MSG_PROBE, MSG_TRUNC = 0x1, 0x2, 0x4, 0x10, 0x20
MSG_DONTWAIT, MSG_CONFIRM = 0x40, 0x800
SO_DONTROUTE, SO_BROADCAST, SO_RCVTIMEO, SO_PEEK_OFF = 5, 6, 20, 42
PACKET_OUTGOING, ETH_P_ALL = 4, 3
INT = struct.Struct("=i")
Both = tuple[dict[str, Any], dict[str, Any]]  # (kernel, emulated)
TIMEVAL = struct.Struct("=qq")


def errno_of(f: Callable[[], object]) -> Any:
    """f()'s value, or ["errno", n] when it raised OSError."""
    try:
        return f()
    except OSError as e:
        return ["errno", e.errno]


def bounded(f: Callable[[], object], seconds: float = 2) -> Any:
    """errno_of(f) for a call that may block: "blocked" when it has not returned after
    `seconds` (it is left blocked in a daemon thread)."""
    result: list[Any] = ["blocked"]
    thread = threading.Thread(target=lambda: result.__setitem__(0, errno_of(f)), daemon=True)
    thread.start()
    thread.join(seconds)
    return result[0]


def get(s: Any, level: int, optname: int, buflen: int = 0) -> Any:
    """getsockopt's value (bytes as hex), or ["errno", n]."""
    v = errno_of(lambda: s.getsockopt(level, optname, buflen))
    return v.hex() if isinstance(v, bytes) else v


def put(s: Any, level: int, optname: int, value: int | bytes) -> Any:
    """setsockopt's value (None), or ["errno", n]."""
    return errno_of(lambda: s.setsockopt(level, optname, value))


def anc_hex(items: list[tuple[int, int, bytes]]) -> list[list[Any]]:
    return [[level, type_, data.hex()] for level, type_, data in items]


def _kernel_counters() -> dict[str, int]:
    """/proc/net/snmp's Udp and UdpLite lines, named as nstat names them."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    out: dict[str, int] = {}
    for head, values in zip(lines[::2], lines[1::2], strict=True):
        if head[0] in ("Udp:", "UdpLite:"):
            out |= {head[0][:-1] + k: int(v) for k, v in zip(head[1:], values[1:], strict=True)}
    return out


def _emulated_counters() -> dict[str, int]:
    from stackemu.tools.nstat import counters

    return {k: v for k, v in counters(None).items() if k.startswith("Udp")}


class _KernelCapture:
    """An AF_PACKET socket on lo (ETH_P_ALL): the frames that came in (not the
    PACKET_OUTGOING copies), as IP packets."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        self.sock.setblocking(False)

    def stop(self, marker: bytes) -> list[bytes]:
        got: list[bytes] = []
        for _ in range(10000):
            try:
                frame, addr = self.sock.recvfrom(70000)
            except BlockingIOError:
                break
            if addr[2] != PACKET_OUTGOING:
                got.append(frame[14:])
        self.sock.close()
        return got


class _EmulatedCapture:
    """The NIC service's Capture stream of alice's lo, read by a thread until the frame
    that carries `marker` (the settle sentinel) has come in."""

    def __init__(self) -> None:
        from stackemu.nic.v1 import nic_pb2
        from stackemu.tools.common import Nic

        self.nic = Nic(None)
        self.call = self.nic.stub.Capture(nic_pb2.CaptureRequest(device="lo"))
        self.call.initial_metadata()  # the tap is registered
        self.frames: list[tuple[int, bytes]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for resp in self.call:
                self.frames.append((resp.pkt_type, bytes(resp.frame)))
        except Exception:  # the stream cancelled by stop()
            pass

    def stop(self, marker: bytes) -> list[bytes]:
        for _ in range(500):
            if any(t != PACKET_OUTGOING and marker in f for t, f in list(self.frames)):
                break
            time.sleep(0.01)
        self.call.cancel()
        self.thread.join(5)
        self.nic.close()
        return [f[14:] for t, f in self.frames if t != PACKET_OUTGOING]


class Host:
    """What a scenario runs on: the socket module `sk`, sockets bound to PORT + offset,
    the settle sentinel, the Udp/UdpLite counters and a capture of lo."""

    def __init__(self, sk: Any) -> None:
        self.sk = sk
        self.kernel = sk is socket
        self.z = sk.socket(sk.AF_INET, sk.SOCK_DGRAM)
        self.z.bind((LO, PORT + SETTLE))
        self.z.settimeout(5)
        self.settles = 0

    def sock(self, offset: int | None = None, proto: int = 0, addr: str = LO) -> Any:
        """A datagram socket (UDP, or UDP-Lite with proto 136), bound to addr:PORT+offset."""
        s = self.sk.socket(self.sk.AF_INET, self.sk.SOCK_DGRAM, proto)
        if offset is not None:
            s.bind((addr, PORT + offset))
        return s

    def settle(self) -> bytes:
        """Send the sentinel to z and wait for it: what was sent before has landed."""
        self.settles += 1
        marker = b"settle %d" % self.settles
        self.z.sendto(marker, (LO, PORT + SETTLE))
        for _ in range(1000):
            if self.z.recv(100) == marker:
                break
        return marker

    def port(self, addr: tuple[str, int] | None) -> Any:
        """An address as [ip, port - PORT] for the script's ports, [ip, "other"] for
        the others (an autobound port differs between the runs)."""
        if addr is None:
            return None
        offset = addr[1] - PORT
        return [addr[0], offset if 0 <= offset < 1000 else "other"]

    def drain(self, r: Any, ancbufsize: int = 256, bufsize: int = 70000) -> list[Any]:
        """What is queued on r, each datagram as [len, first 8 bytes, sender, cmsgs]."""
        seen: list[Any] = []
        for _ in range(1000):
            try:
                data, anc, _, addr = r.recvmsg(bufsize, ancbufsize, MSG_DONTWAIT)
            except BlockingIOError:
                return seen
            except OSError as e:
                return [*seen, ["errno", e.errno]]
            seen.append([len(data), data[:8].hex(), self.port(addr), anc_hex(anc)])
        return seen

    def got(self, *rs: Any, ancbufsize: int = 256) -> list[Any]:
        """Settled, what each receiver got (a list per receiver; one receiver: its list)."""
        self.settle()
        out = [self.drain(r, ancbufsize) for r in rs]
        return out[0] if len(out) == 1 else out

    def stamping_on(self, sender: Any, offset: int = 98) -> bool:
        """Wait (bounded) until received skbs are stamped. net_enable_timestamp() turns
        receive stamping on from a work item: until it has run an skb comes in
        unstamped, and SO_TIMESTAMPING (unlike SO_TIMESTAMP, which stamps at recvmsg)
        reports nothing. A probe socket on PORT + offset asks for stamps and `sender`
        sends to it until one arrives stamped. True once it does."""
        probe = self.sock(offset)
        # SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE
        probe.setsockopt(SOL_SOCKET, 37, (1 << 3) | (1 << 4))
        stamped = False
        for _ in range(200):
            sender.sendto(b"probe", (LO, PORT + offset))
            self.settle()
            stamped = bool(probe.recvmsg(100, 1024, MSG_DONTWAIT)[1])
            if stamped:
                break
            time.sleep(0.005)
        probe.close()
        return stamped

    def counters(self) -> dict[str, int]:
        return _kernel_counters() if self.kernel else _emulated_counters()

    def moved(self, before: dict[str, int]) -> dict[str, int]:
        """The counters that moved since `before` (settled first), and by how much."""
        self.settle()
        after = self.counters()
        return {k: after[k] - v for k, v in before.items() if after[k] != v}

    def capture(self) -> Capture:
        return Capture(self)


class Capture:
    """The UDP and UDP-Lite packets that came in on lo between start and `packets()`
    (settled), but for the settle sentinels, as hex."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.impl = _KernelCapture() if host.kernel else _EmulatedCapture()

    def packets(self) -> list[str]:
        marker = self.host.settle()
        out = []
        for p in self.impl.stop(marker):
            if len(p) < 28 or p[9] not in (17, IPPROTO_UDPLITE):
                continue
            ihl = (p[0] & 0x0F) * 4
            if struct.unpack_from("!H", p, ihl + 2)[0] == PORT + SETTLE:
                continue
            out.append(p.hex())
        return out


def main(*groups: Callable[[Host], dict[str, Any]]) -> None:
    """The script: argv[1] is the module; for the kernel, in a namespace of its own. A
    group that raises is reported under "<name> raised" and the others still run."""
    mod = importlib.import_module(sys.argv[1])
    if mod is socket:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    h = Host(mod)
    out: dict[str, Any] = {}
    for group in groups:
        try:
            out |= group(h)
        except Exception as e:
            out[f"{group.__name__} raised"] = repr(e)
    print(json.dumps(out))


def _run(script: str, module: str, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", script, module]
    if module == "socket":
        cmd = ["unshare", "--net", *cmd]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run_both(script: str, state_dir: str) -> Iterator[Both]:
    """(kernel, emulated): the script (a module name) run with `socket` in a namespace of
    its own, then with `stackemu.socket` on alice of a stack of its own."""
    if not CAN_UNSHARE:
        pytest.skip("needs root, unshare and iproute2")
    from tests.e2e.stackrun import cli, stack_env

    env = stack_env(state_dir)
    up = cli(env, "up")
    assert up.returncode == 0, up.stderr
    try:
        kernel = _run(script, "socket", env)
        assert not [k for k in kernel if k.endswith(" raised")], kernel
        yield kernel, _run(script, "stackemu.socket", env)
    finally:
        cli(env, "down")


def dgram(payload: bytes, sender: int | str, anc: list[list[Any]] | None = None) -> list[Any]:
    """A datagram as Host.drain prints it, from 127.0.0.1:PORT + sender."""
    return [len(payload), payload[:8].hex(), [LO, sender], anc or []]


def compare(kernel: dict[str, Any], emulated: dict[str, Any], *keys: str) -> None:
    """Every key's emulated value is the kernel's (all differences reported at once,
    with any scenario group that raised on the emulator)."""
    diff = []
    for k in keys:
        if emulated.get(k) != kernel[k]:
            diff += [
                f"{k!r}",
                f"  kernel:   {json.dumps(kernel[k])}",
                f"  emulated: {json.dumps(emulated.get(k))}",
            ]
    raised = [f"{k} on the emulator: {v}" for k, v in emulated.items() if k.endswith(" raised")]
    assert not diff, "\n".join(diff + raised)


# The scenarios.


def sending(h: Host) -> dict[str, Any]:
    """udp_sendmsg's errnos and flags (test_sendmsg_errnos, test_sendmsg_flags)."""
    out: dict[str, Any] = {}
    send = errno_of
    r = h.sock(0)
    s = h.sock(1)
    to = (LO, PORT)
    before = h.counters()
    out["unconnected send"] = send(lambda: s.send(b"x"))
    out["MSG_OOB"] = send(lambda: s.sendto(b"x", MSG_OOB, to))
    out["65507 and 65508 bytes"] = [
        send(lambda: s.sendto(bytes(65507), to)),
        send(lambda: s.sendto(bytes(65508), to)),
        send(lambda: s.sendmsg([bytes(60000), bytes(5508)], [], 0, to)),
        h.got(r),
    ]
    out["port 0"] = send(lambda: s.sendto(b"x", (LO, 0)))
    out["to 0.0.0.0"] = [send(lambda: s.sendto(b"any", ("0.0.0.0", PORT))), h.got(r)]
    out["errors count"] = h.moved(before)

    w = h.sock(2, addr="0.0.0.0")
    only = h.sock(3)
    u = h.sock()
    bcast = ("255.255.255.255", PORT + 2)
    net = ("127.255.255.255", PORT + 2)
    before = h.counters()
    out["broadcast"] = [
        get(s, SOL_SOCKET, SO_BROADCAST),
        send(lambda: s.sendto(b"b1", bcast)),
        send(lambda: s.sendto(b"b2", net)),
        put(s, SOL_SOCKET, SO_BROADCAST, 1),
        get(s, SOL_SOCKET, SO_BROADCAST),
        send(lambda: s.sendto(b"b3", bcast)),
        send(lambda: s.sendto(b"b4", net)),
        put(u, SOL_SOCKET, SO_BROADCAST, 7),
        get(u, SOL_SOCKET, SO_BROADCAST),
        send(lambda: u.sendto(b"b5", bcast)),
        send(lambda: u.sendto(b"b6", net)),
        send(lambda: s.sendto(b"b7", ("255.255.255.255", PORT + 3))),
        send(lambda: s.sendto(b"b8", ("127.255.255.255", PORT + 3))),
        send(lambda: s.sendto(b"b9", ("255.255.255.255", PORT + 4))),
        h.got(r, w, only),
    ]
    out["broadcast counts"] = h.moved(before)

    before = h.counters()
    out["MSG_PROBE"] = [
        send(lambda: s.sendto(b"probe", MSG_PROBE, to)),
        send(lambda: s.sendto(bytes(65508), MSG_PROBE, to)),
        h.got(r),
    ]
    out["MSG_CONFIRM and MSG_DONTROUTE"] = [
        send(lambda: s.sendto(b"confirm", MSG_CONFIRM, to)),
        send(lambda: s.sendto(b"dontroute", MSG_DONTROUTE, to)),
        send(lambda: s.sendto(b"both", MSG_DONTROUTE | MSG_CONFIRM, to)),
        h.got(r),
    ]
    out["SO_DONTROUTE"] = [
        get(s, SOL_SOCKET, SO_DONTROUTE),
        put(s, SOL_SOCKET, SO_DONTROUTE, 5),
        get(s, SOL_SOCKET, SO_DONTROUTE),
        send(lambda: s.sendto(b"so_dontroute", to)),
        send(lambda: s.sendto(b"bcast", MSG_DONTROUTE, bcast)),
        put(s, SOL_SOCKET, SO_DONTROUTE, 0),
        get(s, SOL_SOCKET, SO_DONTROUTE),
        h.got(r, w),
    ]
    out["probe and flags count"] = h.moved(before)
    for x in (r, s, w, only, u):
        x.close()
    return out


def receiving(h: Host) -> dict[str, Any]:
    """udp_recvmsg's flags, SO_RCVTIMEO and SO_PEEK_OFF (test_recvmsg_*)."""
    out: dict[str, Any] = {}
    recv = errno_of
    r = h.sock(10)
    s = h.sock(11)
    to = (LO, PORT + 10)
    ten = b"0123456789"

    def msg(m: tuple[bytes, list[tuple[int, int, bytes]], int, Any]) -> list[Any]:
        return [m[0].hex(), anc_hex(m[1]), m[2], h.port(m[3])]

    def into(n: int, flags: int) -> list[Any]:
        buf = bytearray(n)
        return [r.recv_into(buf, n, flags), buf.hex()]

    s.sendto(ten, to)
    h.settle()
    out["MSG_TRUNC out"] = [recv(lambda: msg(r.recvmsg(4))), h.drain(r)]
    s.sendto(ten, to)
    s.sendto(ten, to)
    h.settle()
    out["MSG_TRUNC in"] = [
        recv(lambda: into(4, MSG_TRUNC | MSG_PEEK)),
        recv(lambda: msg(r.recvmsg(4, 0, MSG_TRUNC | MSG_PEEK))),
        recv(lambda: into(4, MSG_TRUNC)),
        recv(lambda: into(20, MSG_TRUNC)),
        h.drain(r),
    ]
    s.sendto(ten, to)
    h.settle()
    out["MSG_PEEK"] = [
        recv(lambda: msg(r.recvmsg(4, 0, MSG_PEEK))),
        recv(lambda: msg(r.recvmsg(100, 0, MSG_PEEK))),
        recv(lambda: msg(r.recvmsg(100))),
        recv(lambda: r.recv(100, MSG_DONTWAIT)),
        recv(lambda: r.recv(100, MSG_DONTWAIT | MSG_PEEK)),
    ]

    t = h.sock(12)
    out["SO_RCVTIMEO"] = [
        get(t, SOL_SOCKET, SO_RCVTIMEO, 16),
        put(t, SOL_SOCKET, SO_RCVTIMEO, TIMEVAL.pack(0, 50000)),
        get(t, SOL_SOCKET, SO_RCVTIMEO, 16),
        t.gettimeout(),
        bounded(lambda: t.recv(100)),
        put(t, SOL_SOCKET, SO_RCVTIMEO, TIMEVAL.pack(0, 50000)[:8]),
        put(t, SOL_SOCKET, SO_RCVTIMEO, TIMEVAL.pack(0, 1000000)),
        put(t, SOL_SOCKET, SO_RCVTIMEO, TIMEVAL.pack(-1, 0)),
        get(t, SOL_SOCKET, SO_RCVTIMEO, 16),
        put(t, SOL_SOCKET, SO_RCVTIMEO, TIMEVAL.pack(0, 0)),
        get(t, SOL_SOCKET, SO_RCVTIMEO, 16),
    ]
    t.close()

    peek: list[Any] = [get(r, SOL_SOCKET, SO_PEEK_OFF)]
    peek.append(put(r, SOL_SOCKET, SO_PEEK_OFF, 3))
    s.sendto(ten, to)
    s.sendto(b"abcdefghij", to)
    h.settle()
    for step in (
        lambda: msg(r.recvmsg(4, 0, MSG_PEEK)),
        lambda: msg(r.recvmsg(4, 0, MSG_PEEK)),
        lambda: msg(r.recvmsg(4, 0, MSG_PEEK)),
        lambda: msg(r.recvmsg(100)),
        lambda: msg(r.recvmsg(4, 0, MSG_PEEK)),
        lambda: msg(r.recvmsg(100, 0, MSG_PEEK)),
        lambda: msg(r.recvmsg(100)),
    ):
        peek += [recv(step), get(r, SOL_SOCKET, SO_PEEK_OFF)]
    peek.append(put(r, SOL_SOCKET, SO_PEEK_OFF, -5))
    peek.append(get(r, SOL_SOCKET, SO_PEEK_OFF))
    out["SO_PEEK_OFF"] = peek

    before = h.counters()
    sent = [s.sendto(b"", to), s.sendmsg([], [], 0, to)]
    h.settle()
    out["zero length"] = [
        *sent,
        recv(lambda: msg(r.recvmsg(100, 0, MSG_PEEK))),
        recv(lambda: into(4, MSG_TRUNC)),
        recv(lambda: msg(r.recvmsg(0))),
        recv(lambda: r.recv(1, MSG_DONTWAIT)),
    ]
    out["zero length counts"] = h.moved(before)
    for x in (r, s):
        x.close()
    return out


# The tests.


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    yield from run_both(__name__, str(tmp_path_factory.mktemp("state")))


def test_sendmsg_errnos(both: Both) -> None:
    kernel, emulated = both
    # 6.18: no peer EDESTADDRREQ; MSG_OOB EOPNOTSUPP; 65507 bytes is the most (65535 -
    # 20 - 8), one more EMSGSIZE, also when the iovecs add up to it; port 0 EINVAL;
    # 0.0.0.0 is this host (127.0.0.1 gets it). Counted: the two datagrams and the
    # three sentinels, nothing for the errors.
    assert kernel["unconnected send"] == ["errno", errno.EDESTADDRREQ]
    assert kernel["MSG_OOB"] == ["errno", errno.EOPNOTSUPP]
    assert kernel["65507 and 65508 bytes"] == [
        65507,
        ["errno", errno.EMSGSIZE],
        ["errno", errno.EMSGSIZE],
        [dgram(bytes(65507), 1)],
    ]
    assert kernel["port 0"] == ["errno", errno.EINVAL]
    assert kernel["to 0.0.0.0"] == [3, [dgram(b"any", 1)]]
    assert kernel["errors count"] == {"UdpInDatagrams": 5, "UdpOutDatagrams": 5}
    compare(kernel, emulated, "unconnected send", "MSG_OOB", "65507 and 65508 bytes", "port 0", "to 0.0.0.0")
    compare(kernel, emulated, "errors count")


def test_broadcast(both: Both) -> None:
    kernel, emulated = both
    # 6.18: without SO_BROADCAST both 255.255.255.255 and lo's 127.255.255.255 are
    # EACCES; with it (any nonzero value reads 1) they go out of lo and come back as
    # broadcasts: the socket bound to 0.0.0.0 gets them, one bound to 127.0.0.1 does
    # not, and a broadcast no socket takes is IgnoredMulti, not NoPorts. An unbound
    # sender has no route to 255.255.255.255 (ENETUNREACH: only a source address
    # picks lo for the limited broadcast) but reaches 127.255.255.255.
    eacces = ["errno", errno.EACCES]
    assert kernel["broadcast"] == [
        0,
        eacces,
        eacces,
        None,
        1,
        2,
        2,
        None,
        1,
        ["errno", errno.ENETUNREACH],
        2,
        2,
        2,
        2,
        [[], [dgram(b"b3", 1), dgram(b"b4", 1), dgram(b"b6", "other")], []],
    ]
    assert kernel["broadcast counts"] == {"UdpInDatagrams": 5, "UdpOutDatagrams": 8, "UdpIgnoredMulti": 3}
    compare(kernel, emulated, "broadcast", "broadcast counts")


def test_sendmsg_flags(both: Both) -> None:
    kernel, emulated = both
    # 6.18: MSG_PROBE returns the length (even 65508) and sends nothing; MSG_CONFIRM
    # and MSG_DONTROUTE are taken on 127.0.0.1 and deliver; SO_DONTROUTE reads 1 for
    # any nonzero value and lo is on link, so sends still arrive, broadcasts too.
    assert kernel["MSG_PROBE"] == [5, 65508, []]
    assert kernel["MSG_CONFIRM and MSG_DONTROUTE"] == [
        7,
        9,
        4,
        [dgram(b"confirm", 1), dgram(b"dontroute", 1), dgram(b"both", 1)],
    ]
    assert kernel["SO_DONTROUTE"] == [
        0,
        None,
        1,
        12,
        5,
        None,
        0,
        [[dgram(b"so_dontroute", 1)], [dgram(b"bcast", 1)]],
    ]
    assert kernel["probe and flags count"] == {"UdpInDatagrams": 9, "UdpOutDatagrams": 9}
    compare(
        kernel,
        emulated,
        "MSG_PROBE",
        "MSG_CONFIRM and MSG_DONTROUTE",
        "SO_DONTROUTE",
        "probe and flags count",
    )


def _got(payload: bytes, flags: int = 0) -> list[Any]:
    """A recvmsg as receiving() prints it: data, no cmsgs, msg_flags, from port 11."""
    return [payload.hex(), [], flags, [LO, 11]]


def test_recvmsg_trunc_and_peek(both: Both) -> None:
    kernel, emulated = both
    # 6.18: a short buffer gets the start and MSG_TRUNC in msg_flags, the rest is gone;
    # MSG_TRUNC asked for returns the datagram's length (recv_into: 10 for a 4-byte
    # buffer); MSG_PEEK leaves the datagram queued; MSG_DONTWAIT on an empty queue is
    # EAGAIN, peeking too.
    assert kernel["MSG_TRUNC out"] == [_got(b"0123", MSG_TRUNC), []]
    assert kernel["MSG_TRUNC in"] == [
        [10, b"0123".hex()],
        _got(b"0123", MSG_TRUNC),
        [10, b"0123".hex()],
        [10, (b"0123456789" + bytes(10)).hex()],
        [],
    ]
    ten = _got(b"0123456789")
    eagain = ["errno", errno.EAGAIN]
    assert kernel["MSG_PEEK"] == [_got(b"0123", MSG_TRUNC), ten, ten, eagain, eagain]
    compare(kernel, emulated, "MSG_TRUNC out", "MSG_TRUNC in", "MSG_PEEK")


def test_zero_length_datagram(both: Both) -> None:
    kernel, emulated = both
    # 6.18: sendto(b"") and an empty sendmsg send an empty datagram each; it is peeked,
    # read (MSG_TRUNC: length 0) and read with a 0-byte buffer like any other.
    empty = _got(b"")
    assert kernel["zero length"] == [0, 0, empty, [0, "00000000"], empty, ["errno", errno.EAGAIN]]
    assert kernel["zero length counts"] == {"UdpInDatagrams": 4, "UdpOutDatagrams": 4}
    compare(kernel, emulated, "zero length", "zero length counts")


def test_so_rcvtimeo(both: Both) -> None:
    kernel, emulated = both
    # 6.18: a struct timeval (16 bytes), 0 at first; kept in jiffies, rounded up
    # (sock_set_timeout: DIV_ROUND_UP(tv_usec, USEC_PER_SEC / HZ)), so with this
    # machine's CONFIG_HZ=250 50 ms is 13 jiffies and reads back as 52000 us; a
    # blocking recv on an empty queue gives up after it with EAGAIN (Python's own
    # timeout stays None); 8 bytes EINVAL; tv_usec 1000000 EDOM; a negative tv_sec is
    # taken as 0 (sock_set_timeout warns).
    zero = bytes(16).hex()
    assert kernel["SO_RCVTIMEO"] == [
        zero,
        None,
        TIMEVAL.pack(0, 52000).hex(),
        None,
        ["errno", errno.EAGAIN],
        ["errno", errno.EINVAL],
        ["errno", errno.EDOM],
        None,
        zero,
        None,
        zero,
    ]
    compare(kernel, emulated, "SO_RCVTIMEO")


def test_so_peek_off(both: Both) -> None:
    kernel, emulated = both
    # 6.18: -1 at first. With it at 3 and "0123456789", "abcdefghij" queued, each peek
    # starts at the offset and moves it by what it copied, and the offset runs on into
    # the next datagram (peek at 10 is "abcd" of the second); a read takes a whole
    # datagram from its start and moves the offset back by its length (14 - 10 = 4);
    # the last read leaves 0. A negative value is taken as it is.
    assert kernel["SO_PEEK_OFF"] == [
        -1,
        None,
        _got(b"3456", MSG_TRUNC),
        7,
        _got(b"789"),
        10,
        _got(b"abcd", MSG_TRUNC),
        14,
        _got(b"0123456789"),
        4,
        _got(b"efgh", MSG_TRUNC),
        8,
        _got(b"ij"),
        10,
        _got(b"abcdefghij"),
        0,
        None,
        -5,
    ]
    compare(kernel, emulated, "SO_PEEK_OFF")


if __name__ == "__main__":
    main(sending, receiving)
