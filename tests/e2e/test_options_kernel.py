"""IP options and ICMP compared with this machine's kernel, in a network namespace of
our own (`unshare --net`, lo up, nothing else on it).

A child process in the namespace asks the kernel; the test feeds what the kernel was
given to services/ip/options.py and services/ip/icmp.py and checks the bytes match.
What Linux 6.18.44 answered when this was written:

- a UDP datagram to a closed port on 127.0.0.1: port unreachable from 127.0.0.1, TOS
  0xc0, TTL 64, no DF, quoting the whole datagram; an echo request (code 5, TOS 0x2b):
  a reply with the same code, id, sequence, data and TOS 0x2b, no DF;
- echo requests with IP_OPTIONS record route / timestamp: the reply echoes the option
  with a third slot filled (sender, receiver, replier), pointer 16 / 17;
- bad options (record route pointer 3, CIPSO with no DOI configured, CIPSO shorter than
  8, timestamp overflow 15): a parameter problem pointing at octet 22, 22, 21 and 23,
  CIPSO echoed back in the reply's options; an unknown option is carried without
  complaint (port unreachable, no options in the reply); a full timestamp with
  overflow 14 is taken (overflow 15, stale header checksum) and echoed in the error;
- setsockopt(IP_OPTIONS): the errno table of test_ip_options.py, as root and as nobody
  (source routes are EPERM without CAP_NET_RAW: "ipv4: restrict IPOPT_SSRR and
  IPOPT_LSRR options", in 6.18.44), getsockopt giving the options back in user form;
- IP_RECVOPTS and IP_RETOPTS over 127.0.0.1: both the received options as compiled
  (our slot filled), equal for record route and timestamps;
- ten datagrams to a closed port across a veth: six port unreachables, then
  OutRateLimitHost (the per-destination bucket starts with 6 tokens).
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import struct
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from services.core.checksum import ip_fast_csum
from services.core.ipcb import InetSkbParm, IpOptions, set_ipcb
from services.ip.options import (
    OptionsError,
    ip_options_build,
    ip_options_compile,
    ip_options_echo,
    ip_options_get,
    ip_options_undo_bytes,
)
from tests.services.test_icmp import (
    ALICE,
    BOB,
    LO,
    LOCAL_LO,
    LOOPBACK,
    ip_packet,
    make_host,
    received,
    udp,
    wire,
)
from tests.services.test_ip_options import KERNEL_TABLE, local_127

CAN_UNSHARE = os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("ip") is not None
CAN_SETPRIV = shutil.which("setpriv") is not None

CHILD = textwrap.dedent(
    r"""
    import json, os, socket, struct, subprocess, sys

    def csum(b):
        if len(b) % 2:
            b += b"\0"
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return ~s & 0xFFFF

    def table(cases):
        out = {}
        for name, hexval in cases.items():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes.fromhex(hexval))
                out[name] = s.getsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, 64).hex()
            except OSError as e:
                out[name] = e.errno
            s.close()
        return out

    cases = json.loads(sys.argv[2])
    if sys.argv[1] == "table":
        print(json.dumps(table(cases)))
        sys.exit(0)

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    res = {"table_root": table(cases)}
    if sys.argv[3] == "1":
        nobody = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
             "--bounding-set=-all", sys.executable, "-c", sys.argv[4], "table", sys.argv[2]],
            capture_output=True, text=True, check=True)
        res["table_nobody"] = json.loads(nobody.stdout)

    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    cap.bind(("lo", 0))
    cap.settimeout(0.3)

    def drain():
        out = []
        while True:
            try:
                frame, addr = cap.recvfrom(65535)
            except socket.timeout:
                return out
            if addr[2] != socket.PACKET_OUTGOING:
                out.append(frame[14:].hex())

    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 40000))
    u.sendto(b"hello world", ("127.0.0.1", 9))
    res["port_unreach"] = drain()

    def echo(ident, seq, data, code=0):
        m = bytearray(struct.pack("!BBHHH", 8, code, 0, ident, seq) + data)
        struct.pack_into("!H", m, 2, csum(bytes(m)))
        return bytes(m)

    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    r.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x2B)
    r.sendto(echo(0x1234, 1, b"abcdefgh", code=5), ("127.0.0.1", 0))
    res["echo"] = drain()
    for name, opts in (
        ("echo_rr", bytes([7, 39, 4]) + bytes(37)),
        ("echo_ts", bytes([68, 36, 5, 0]) + bytes(32)),
    ):
        r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        r.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, opts)
        r.sendto(echo(0x4321, 2, b"xyz"), ("127.0.0.1", 0))
        res[name] = drain()

    h = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    udp = struct.pack("!HHHH", 5000, 9, 12, 0) + b"data"
    for name, hexopts in json.loads(sys.argv[5]).items():
        opts = bytes.fromhex(hexopts)
        ihl = 5 + len(opts) // 4
        hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(udp), 0x1111, 0, 64, 17, 0,
                                    socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"))) + opts
        struct.pack_into("!H", hdr, 10, csum(bytes(hdr)))
        h.sendto(bytes(hdr) + udp, ("127.0.0.1", 0))
        res["bad_" + name] = drain()

    cmsgs = {}
    for name, hexopts in json.loads(sys.argv[6]).items():
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(1)
        rx.setsockopt(socket.IPPROTO_IP, 6, 1)  # IP_RECVOPTS
        rx.setsockopt(socket.IPPROTO_IP, 7, 1)  # IP_RETOPTS
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes.fromhex(hexopts))
        tx.sendto(b"x", rx.getsockname())
        _, anc, flags, _ = rx.recvmsg(16, 1024)
        cmsgs[name] = {str(t): d.hex() for lvl, t, d in anc}
    res["cmsgs"] = cmsgs
    print(json.dumps(res))
    """
)

# Options put on a UDP packet to 127.0.0.1 with IP_HDRINCL.
BAD_OPTIONS = {
    "rr_ptr3": "0707030000000000",
    "cipso": "8608000000010000",
    "cipso_short": "8606000000010000",
    "ts_over15": "440809f000000000",
    "ts_over14": "440809e000000000",
    "unknown": "99040000",
}
# What a sender sets for the IP_RECVOPTS/IP_RETOPTS comparison.
CMSG_OPTIONS = {
    "rr": "070f04" + "00" * 12,
    "rr_one": "070704" + "00" * 4,
    "ts_only": "44100500" + "00" * 12,
    "ts_addr": "441c0501" + "00" * 24,
    "ts_prespec": "44140503" + "7f000001" + "00" * 4 + "0a090909" + "00" * 4,
}

pytestmark = pytest.mark.skipif(not CAN_UNSHARE, reason="needs root, unshare and iproute2")


@pytest.fixture(scope="module")
def kernel() -> dict[str, Any]:
    cases = json.dumps({name: optval.hex() for name, (optval, _, _) in KERNEL_TABLE.items()})
    proc = subprocess.run(
        [
            "unshare",
            "--net",
            sys.executable,
            "-c",
            CHILD,
            "all",
            cases,
            "1" if CAN_SETPRIV else "0",
            CHILD,
            json.dumps(BAD_OPTIONS),
            json.dumps(CMSG_OPTIONS),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def packets(kernel: dict[str, Any], name: str) -> list[bytes]:
    return [bytes.fromhex(p) for p in kernel[name]]


def ident(packet: bytes) -> int:
    v: int = struct.unpack_from("!H", packet, 4)[0]
    return v


def stamp(options: bytes, slot: int) -> int:
    """The timestamp in a timestamp option's slot (0-based)."""
    v: int = struct.unpack_from("!I", options, 4 + 4 * slot)[0]
    return v


def test_ip_options_table_as_root(kernel: dict[str, Any]) -> None:
    want = {name: root for name, (_, root, _) in KERNEL_TABLE.items()}
    assert kernel["table_root"] == want
    for name, (optval, _, _) in KERNEL_TABLE.items():
        try:
            got: int | str = ip_options_undo_bytes(
                ip_options_get(optval, cap_net_raw=True, addr_type=local_127)
            ).hex()
        except OSError as e:
            assert e.errno is not None
            got = e.errno
        assert got == kernel["table_root"][name], name


@pytest.mark.skipif(not CAN_SETPRIV, reason="needs setpriv to drop to nobody")
def test_ip_options_table_as_nobody(kernel: dict[str, Any]) -> None:
    for name, (optval, _, _) in KERNEL_TABLE.items():
        try:
            got: int | str = ip_options_undo_bytes(ip_options_get(optval, addr_type=local_127)).hex()
        except OSError as e:
            assert e.errno is not None
            got = e.errno
        assert got == kernel["table_nobody"][name], name


def test_port_unreachable(kernel: dict[str, Any]) -> None:
    datagram, reply = packets(kernel, "port_unreach")
    host = make_host()
    host.icmp.icmp_send(received(datagram, dev=LO, dst=LOCAL_LO), 3, 3, 0)
    assert wire(host.sent[0], ident(reply)) == reply


def test_echo_reply(kernel: dict[str, Any]) -> None:
    request, reply = packets(kernel, "echo")
    host = make_host()
    host.icmp.icmp_rcv(received(request, dev=LO, dst=LOCAL_LO))
    assert wire(host.sent[0], ident(reply)) == reply


@pytest.mark.parametrize("name", ["echo_rr", "echo_ts"])
def test_echo_reply_with_options(kernel: dict[str, Any], name: str) -> None:
    request, reply = packets(kernel, name)
    hlen = (request[0] & 0x0F) * 4
    now = stamp(request[20:hlen], 0) if name == "echo_ts" else 0
    rx = bytearray(request)
    opt = IpOptions(optlen=hlen - 20)
    ip_options_compile(memoryview(rx)[:hlen], opt, local_addr=LOOPBACK, now_ms=now)
    host = make_host()
    host.icmp.icmp_rcv(received(bytes(rx), dev=LO, dst=LOCAL_LO, opt=opt))
    out = host.sent[0]
    sent = bytearray(wire(out, ident(reply)))
    if name == "echo_ts":
        # ip_options_build's stamp is the kernel's clock; take it from the reply.
        cork = out.cork
        assert cork is not None
        opt_out = InetSkbParm.unpack(out.cb).opt
        opt_out.data = cork.options
        ip_options_build(sent, opt_out, cork.daddr, cork.saddr, stamp(reply[20:hlen], 2))
        sent[10:12] = b"\0\0"
        struct.pack_into("!H", sent, 10, ip_fast_csum(bytes(sent[:hlen])))
    assert bytes(sent) == reply


@pytest.mark.parametrize("name", sorted(BAD_OPTIONS))
def test_errors_about_options(kernel: dict[str, Any], name: str) -> None:
    sent, *answer = packets(kernel, "bad_" + name)
    hlen = (sent[0] & 0x0F) * 4
    rx = bytearray(sent)
    opt = IpOptions(optlen=hlen - 20)
    host = make_host()
    skb = received(bytes(rx), dev=LO, dst=LOCAL_LO, at="network")
    try:
        ip_options_compile(memoryview(skb.head)[16 : 16 + hlen], opt, local_addr=LOOPBACK)
    except OptionsError as err:
        set_ipcb(skb.cb, InetSkbParm(iif=LO, opt=opt))
        host.icmp.icmp_send(skb, 12, 0, err.info)
    else:
        # Taken: no socket on port 9, so __udp4_lib_rcv sends port unreachable.
        set_ipcb(skb.cb, InetSkbParm(iif=LO, opt=opt))
        skb.pull(hlen)
        host.icmp.icmp_send(skb, 3, 3, 0)
    (reply,) = answer
    assert wire(host.sent[0], ident(reply)) == reply


@pytest.mark.parametrize("name", sorted(CMSG_OPTIONS))
def test_recvopts_and_retopts(kernel: dict[str, Any], name: str) -> None:
    got = kernel["cmsgs"][name]
    recvopts, retopts = bytes.fromhex(got["6"]), bytes.fromhex(got["7"])
    opt = ip_options_get(bytes.fromhex(CMSG_OPTIONS[name]), addr_type=local_127)
    pkt = bytearray(20 + opt.optlen)
    pkt[0] = 0x40 | (5 + opt.optlen // 4)
    pkt[12:16] = pkt[16:20] = LOOPBACK.to_bytes(4, "big")
    # The sender's and the receiver's stamps are the kernel's clock: read them from
    # the slots each filled (timestamp only: 0 and 1; with addresses: 1 and 3;
    # prespecified: the sender's in 1, the receiver is not named).
    sender_now = receiver_now = 0
    if recvopts[0] == 68:
        sender_slot, receiver_slot = {0: (0, 1), 1: (1, 3), 3: (1, 1)}[recvopts[3] & 0xF]
        sender_now, receiver_now = stamp(recvopts, sender_slot), stamp(recvopts, receiver_slot)
    ip_options_build(pkt, opt, LOOPBACK, LOOPBACK, sender_now)
    sopt = IpOptions(optlen=opt.optlen)
    ip_options_compile(pkt, sopt, local_addr=LOOPBACK, now_ms=receiver_now, addr_type=local_127)
    assert bytes(pkt[20:]) == recvopts
    assert ip_options_undo_bytes(ip_options_echo(pkt, sopt, addr_type=local_127)) == retopts


RATE_PROBE = textwrap.dedent(
    """
    import socket, time
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    r.settimeout(0.5)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("10.201.0.1", 0))
    for _ in range(10):
        u.sendto(b"x", ("10.201.0.2", 9))
    time.sleep(0.3)
    n = 0
    while True:
        try:
            r.recv(2000)
        except socket.timeout:
            break
        n += 1
    print(n)
    """
)


def test_per_destination_rate_limit_over_a_veth() -> None:
    # kernel: ten datagrams to a closed port across a veth (not lo, so both limits
    # apply) got six port unreachables back; the sender's Icmp line said OutMsgs 6,
    # OutRateLimitHost 4 (XRLIM_BURST_FACTOR tokens for a new inet_peer).
    suffix = secrets.token_hex(3)
    a, b = f"opta{suffix}", f"optb{suffix}"
    run = functools.partial(subprocess.run, check=True, capture_output=True, text=True, timeout=30)
    run(["ip", "netns", "add", a])
    try:
        run(["ip", "netns", "add", b])
        try:
            run(
                [
                    "ip",
                    "link",
                    "add",
                    f"va{suffix}",
                    "netns",
                    a,
                    "type",
                    "veth",
                    "peer",
                    f"vb{suffix}",
                    "netns",
                    b,
                ]
            )
            run(["ip", "-n", a, "addr", "add", "10.201.0.1/24", "dev", f"va{suffix}"])
            run(["ip", "-n", b, "addr", "add", "10.201.0.2/24", "dev", f"vb{suffix}"])
            for ns, dev in ((a, f"va{suffix}"), (b, f"vb{suffix}")):
                run(["ip", "-n", ns, "link", "set", dev, "up"])
            got = run(["ip", "netns", "exec", a, sys.executable, "-c", RATE_PROBE]).stdout
            snmp = run(["ip", "netns", "exec", b, "cat", "/proc/net/snmp"]).stdout
        finally:
            run(["ip", "netns", "del", b])
    finally:
        run(["ip", "netns", "del", a])
    names, values = [line.split()[1:] for line in snmp.splitlines() if line.startswith("Icmp:")]
    icmp = dict(zip(names, map(int, values), strict=True))
    assert (int(got), icmp["OutMsgs"], icmp["OutRateLimitHost"]) == (6, 6, 4)
    host = make_host()
    for _ in range(10):
        host.icmp.icmp_send(received(ip_packet(BOB, ALICE, 17, udp())), 3, 3, 0)
    assert (len(host.sent), host.mib.icmp.get("OutMsgs"), host.mib.icmp.get("OutRateLimitHost")) == (6, 6, 4)
