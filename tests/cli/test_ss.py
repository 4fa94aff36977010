"""`stackemu ss`: iproute2 ss's lines for the sockets the UDP service lists and the
processes the socket service lists; ss's layout checked against what the real ss
printed for the same values."""

from __future__ import annotations

import json
import struct

from stackemu.tools import ss
from stackemu.udp.v1 import udp_pb2
from tests.cli.hoststack import IPPROTO_UDPLITE, HostStack, hoststack_fixture  # noqa: F401

LOOPBACK = 0x7F000001
SHUT_RD = 0
# The real kernel's numbers for one 100-byte datagram queued over lo (Linux 6.18):
# truesize 832, the rest of the 4 KiB page forward-allocated.
SKMEM_ONE = "skmem:(r832,rb212992,t0,tb212992,f3264,w0,o0,bl0,d0)"


def queued_datagram(h: HostStack, comm: str = "app") -> tuple[int, int]:
    """A process binds 127.0.0.1:47001 and gets one 100-byte datagram from a socket it
    then closes: (pid, fd)."""
    pid = h.process(comm)
    rx = h.socket(pid)
    h.bind(pid, rx, LOOPBACK, 47001)
    tx = h.socket(pid)
    h.sendto(pid, tx, b"x" * 100, LOOPBACK, 47001)
    h.close(pid, tx)
    return pid, rx


def test_a_bound_socket_with_a_queued_datagram(hoststack: HostStack) -> None:
    h = hoststack
    pid, fd = queued_datagram(h)
    assert (pid, fd) == (100, 3)
    r = h.run("ss", "-uanpm")
    assert (r.exit_code, r.stderr) == (0, "")
    # The header's Process column is as wide as the one measured field, as ss does.
    assert r.stdout == (
        "State  Recv-Q Send-Q Local Address:Port  Peer Address:PortProcess\n"
        'UNCONN 832    0          127.0.0.1:47001      0.0.0.0:*    users:(("app",pid=100,fd=3))\n'
        f"\t {SKMEM_ONE}\n"
    )
    # Without -a only connected sockets: none; -l shows the unconnected one.
    assert h.run("ss", "-un").stdout == "Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\n"
    assert h.run("ss", "-ulnH").stdout == "UNCONN 832    0      127.0.0.1:47001 0.0.0.0:*\n"
    # The datagram read, the queue is empty; the page stays forward-allocated, as the
    # real kernel shows it (udp_rmem_release keeps up to a page: f4096).
    assert h.recv(pid, fd) == b"x" * 100
    r = h.run("ss", "-uamnO")
    assert r.stdout.splitlines()[1] == (
        "UNCONN 0      0          127.0.0.1:47001      0.0.0.0:*    "
        "skmem:(r0,rb212992,t0,tb212992,f4096,w0,o0,bl0,d0)"
    )


def test_states_owners_and_details(hoststack: HostStack) -> None:
    h = hoststack
    pid, rx = queued_datagram(h)
    other = h.process("client", uid=1000)
    tx = h.socket(other)
    h.bind(other, tx, LOOPBACK, 40000)
    h.connect(other, tx, LOOPBACK, 47001)
    # shutdown(SHUT_RD) of an unconnected socket: ENOTCONN, but sk_shutdown is set.
    assert h.shutdown(pid, rx, SHUT_RD) == 107
    r = h.run("ss", "-uanpe")
    lines = r.stdout.splitlines()
    # The dump's order: by primary slot (port % 16384), 40000's before 47001's.
    assert lines[1:] == [
        'ESTAB  0      0          127.0.0.1:40000    127.0.0.1:47001 users:(("client",pid=101,fd=3))'
        " uid:1000 ino:3 sk:1 <->",
        'UNCONN 832    0          127.0.0.1:47001      0.0.0.0:*     users:(("app",pid=100,fd=3))'
        # The last field is printed but not measured (render() runs before ss
        # flushes it), so it is padded to the others' width.
        " ino:1 sk:2 -->            ",
    ]
    # A single state: no State column; `state` filters as ss's does.
    r = h.run("ss", "-un")
    assert r.stdout.splitlines()[1:] == ["0      0          127.0.0.1:40000    127.0.0.1:47001       "]
    r = h.run("ss", "-uanH", "state", "unconnected")
    assert r.stdout == "832    0      127.0.0.1:47001 0.0.0.0:*\n"
    r = h.run("ss", "-uanH", "exclude", "established")
    assert r.stdout.startswith("UNCONN 832 ")
    r = h.run("ss", "-uan", "state", "bogus")
    assert (r.exit_code, r.stderr) == (255, "ss: wrong state name: bogus\n")


def test_udplite_is_shown_when_asked(hoststack: HostStack) -> None:
    h = hoststack
    pid = h.process("lite")
    fd = h.socket(pid, IPPROTO_UDPLITE)
    h.bind(pid, fd, 0, 5000)
    assert h.run("ss", "-uanH").stdout == ""
    r = h.run("ss", "-A", "udp,udplite", "-anH")
    assert r.stdout == "udplite UNCONN 0      0      0.0.0.0:5000 0.0.0.0:*\n"
    assert h.run("ss", "--udplite", "-anH").stdout == "UNCONN 0      0      0.0.0.0:5000 0.0.0.0:*\n"


def test_json_matches_the_text(hoststack: HostStack) -> None:
    h = hoststack
    queued_datagram(h)
    r = h.run("ss", "-uanpme", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout) == [
        {
            "netid": "udp",
            "state": "UNCONN",
            "recv_q": 832,
            "send_q": 0,
            "local": {"address": "127.0.0.1", "port": 47001},
            "peer": {"address": "0.0.0.0", "port": 0},
            "users": [{"comm": "app", "pid": 100, "fd": 3}],
            "uid": 0,
            "ino": 1,
            "sk": 1,
            "fwmark": 0,
            "shutdown": "<->",
            "skmem": {
                "r": 832,
                "rb": 212992,
                "t": 0,
                "tb": 212992,
                "f": 3264,
                "w": 0,
                "o": 0,
                "bl": 0,
                "d": 0,
            },
        }
    ]
    text = h.run("ss", "-uanpme").stdout.splitlines()[1]
    assert text.split()[:4] == ["UNCONN", "832", "0", "127.0.0.1:47001"]


def test_options_and_errors(hoststack: HostStack) -> None:
    h = hoststack
    r = h.run("ss", "-V")
    assert r.stdout == "ss utility, iproute2-6.1.0 (stackemu)\n"
    r = h.run("ss", "-uK")
    assert r.exit_code == 255
    r = h.run("ss", "-q")
    assert (r.exit_code, r.stderr.splitlines()[0]) == (255, "ss: invalid option -- 'q'")
    r = h.run("ss", "-h")
    assert r.exit_code == 0 and "stackemu ss -uanpm" in r.stdout


def _sock(local: str, lport: int, peer: str, rport: int, state: int, **kw: int) -> udp_pb2.SocketInfo:
    def addr(a: str) -> int:
        return int(struct.unpack("!I", bytes(int(x) for x in a.split(".")))[0])

    return udp_pb2.SocketInfo(
        local_addr=addr(local),
        local_port=lport,
        remote_addr=addr(peer),
        remote_port=rport,
        state=state,
        protocol=17,
        rcvbuf=212992,
        sndbuf=212992,
        **kw,
    )


def test_layout_is_the_real_ss() -> None:
    """The values the real ss printed (iproute2 6.1, Linux 6.18, a fresh network
    namespace: 127.0.0.1:47001 with a 100-byte datagram queued, 0.0.0.0:47005 bound to
    lo, a socket connected from 40282) laid out by this ss: the same bytes."""
    socks = [
        _sock("127.0.0.1", 47001, "0.0.0.0", 0, 7, sk=1, rmem_alloc=832, rqueue=832, forward_alloc=3264),
        _sock("0.0.0.0", 47005, "0.0.0.0", 0, 7, sk=2, bound_dev_if=1, shutdown=1),
        _sock("127.0.0.1", 40282, "127.0.0.1", 47001, 1, sk=3),
    ]
    owners = {
        1: [ss.Owner("python", 6139, 3)],
        2: [ss.Owner("python", 6139, 5)],
        3: [ss.Owner("python", 6139, 4)],
    }

    def render(*args: str) -> str:
        o = ss.parse(args)
        assert isinstance(o, ss.Options)
        return ss.render(o, socks, owners, {1: "lo"}, ss.Services(o.numeric, (32768, 60999)))

    assert render("-uanpm") == (
        "State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process" + " " * 81 + "\n"
        'UNCONN 832    0          127.0.0.1:47001      0.0.0.0:*     users:(("python",pid=6139,fd=3))\n'
        "\t skmem:(r832,rb212992,t0,tb212992,f3264,w0,o0,bl0,d0)\n"
        'UNCONN 0      0         0.0.0.0%lo:47005      0.0.0.0:*     users:(("python",pid=6139,fd=5))\n'
        "\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)     \n"
        'ESTAB  0      0          127.0.0.1:40282    127.0.0.1:47001 users:(("python",pid=6139,fd=4))\n'
        "\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)     \n"
    )
    assert render("-uanH") == (
        "UNCONN 832    0       127.0.0.1:47001   0.0.0.0:*    \n"
        "UNCONN 0      0      0.0.0.0%lo:47005   0.0.0.0:*    \n"
        "ESTAB  0      0       127.0.0.1:40282 127.0.0.1:47001\n"
    )
    assert render("-uan", "state", "established") == (
        "Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n"
        "0      0          127.0.0.1:40282    127.0.0.1:47001       \n"
    )
