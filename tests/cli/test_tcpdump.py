"""`stackemu tcpdump` over the Capture stream: tcpdump -n's lines, the pcap file it
writes (read back by tshark, tcpdump and dpkt), -c, and Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import dpkt  # type: ignore[import-untyped]
import pytest

from stackemu.nic.v1 import nic_pb2
from tests.cli import frames as F
from tests.cli.conftest import Stack

T0 = 1_700_000_000_123_456_789  # 2023-11-14 22:13:20.123456789 UTC
PACKET_HOST, PACKET_BROADCAST, PACKET_OUTGOING = 0, 1, 4

LISTENING = (
    "tcpdump: verbose output suppressed, use -v[v]... for full protocol decode\n"
    "listening on eth0, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n"
)


def _summary(n: int, dropped: int = 0) -> str:
    s = "" if n == 1 else "s"
    d = "" if dropped == 1 else "s"
    return (
        f"{n} packet{s} captured\n{n} packet{s} received by filter\n{dropped} packet{d} dropped by kernel\n"
    )


def _capture(
    frame: bytes, i: int, device: str = "eth0", pkt_type: int = PACKET_OUTGOING
) -> nic_pb2.CaptureResponse:
    ifindex = {"lo": 1, "eth0": 2}[device]
    return nic_pb2.CaptureResponse(
        ifindex=ifindex, device=device, tstamp=T0 + i * 1_000_001, pkt_type=pkt_type, frame=frame
    )


@pytest.fixture
def frames(stack: Stack) -> list[bytes]:
    fs = [F.udp_frame(), F.arp_request(), F.arp_reply(), F.port_unreachable()]
    types = [PACKET_OUTGOING, PACKET_OUTGOING, PACKET_HOST, PACKET_HOST]
    stack.alice.frames = [_capture(f, i, pkt_type=t) for i, (f, t) in enumerate(zip(fs, types, strict=True))]
    return fs


def test_prints_tcpdump_n_lines(stack: Stack, frames: list[bytes]) -> None:
    r = stack.run("tcpdump", "-i", "eth0", "-n")
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "22:13:20.123456 IP 10.0.0.1.40000 > 10.0.0.2.9000: UDP, length 5\n"
        "22:13:20.124456 ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 28\n"
        "22:13:20.125456 ARP, Reply 10.0.0.2 is-at 02:00:0a:00:00:02, length 28\n"
        "22:13:20.126456 IP 10.0.0.2 > 10.0.0.1: ICMP 10.0.0.2 udp port 9001 unreachable, length 37\n"
    )
    assert r.stderr == LISTENING + _summary(4)
    assert stack.alice.sent("Capture") == [nic_pb2.CaptureRequest(device="eth0")]


def test_e_adds_the_link_header(stack: Stack, frames: list[bytes]) -> None:
    r = stack.run("tcpdump", "-nei", "eth0")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        "22:13:20.123456 02:00:0a:00:00:01 > 02:00:0a:00:00:02, ethertype IPv4 (0x0800), length 47: "
        "10.0.0.1.40000 > 10.0.0.2.9000: UDP, length 5",
        "22:13:20.124456 02:00:0a:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: "
        "Request who-has 10.0.0.2 tell 10.0.0.1, length 28",
        "22:13:20.125456 02:00:0a:00:00:02 > 02:00:0a:00:00:01, ethertype ARP (0x0806), length 42: "
        "Reply 10.0.0.2 is-at 02:00:0a:00:00:02, length 28",
        "22:13:20.126456 02:00:0a:00:00:02 > 02:00:0a:00:00:01, ethertype IPv4 (0x0800), length 71: "
        "10.0.0.2 > 10.0.0.1: ICMP 10.0.0.2 udp port 9001 unreachable, length 37",
    ]


def test_any_shows_device_and_direction_as_linux_sll2(stack: Stack) -> None:
    stack.alice.frames = [
        _capture(F.udp_frame(), 0),
        _capture(F.arp_request(), 1, pkt_type=PACKET_BROADCAST),
        _capture(F.loopback_udp(), 2, device="lo", pkt_type=PACKET_HOST),
    ]
    r = stack.run("tcpdump", "-n", "-i", "any")
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "22:13:20.123456 eth0  Out IP 10.0.0.1.40000 > 10.0.0.2.9000: UDP, length 5\n"
        "22:13:20.124456 eth0  B   ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 28\n"
        "22:13:20.125456 lo    In  IP 127.0.0.1.54095 > 127.0.0.1.49410: UDP, length 29\n"
    )
    assert r.stderr.startswith(
        "tcpdump: data link type LINUX_SLL2\n"
        "tcpdump: verbose output suppressed, use -v[v]... for full protocol decode\n"
        "listening on any, link-type LINUX_SLL2 (Linux cooked v2), snapshot length 262144 bytes\n"
    )
    assert stack.alice.sent("Capture") == [nic_pb2.CaptureRequest()]
    r = stack.run("tcpdump", "-n", "-e", "-i", "any", "-c", "1")
    assert r.stdout == (
        "22:13:20.123456 eth0  Out ifindex 2 02:00:0a:00:00:01 ethertype IPv4 (0x0800), length 53: "
        "10.0.0.1.40000 > 10.0.0.2.9000: UDP, length 5\n"
    )


def test_c_stops_after_n_frames(stack: Stack, frames: list[bytes]) -> None:
    r = stack.run("tcpdump", "-i", "bob:eth0", "-c", "2")
    assert (r.exit_code, r.stdout) == (0, "")  # bob's fake has no frames
    assert stack.bob.sent("Capture") == [nic_pb2.CaptureRequest(device="eth0", count=2)]
    r = stack.run("tcpdump", "-c2", "-i", "eth0")
    assert r.exit_code == 0, r.output
    assert len(r.stdout.splitlines()) == 2
    assert r.stderr == LISTENING + _summary(2)
    assert stack.alice.sent("Capture") == [nic_pb2.CaptureRequest(device="eth0", count=2)]


def test_dropped_frames_are_reported(stack: Stack, frames: list[bytes]) -> None:
    stack.alice.frames[-1].dropped = 1
    r = stack.run("tcpdump", "-i", "eth0")
    assert r.stderr.endswith(_summary(4, dropped=1))


# `tcpdump -dd -y EN10MB udp port 9000` (libpcap 1.10): IPv6 or IPv4, UDP, either port.
UDP_PORT_9000 = [
    (0x28, 0, 0, 12), (0x15, 0, 6, 0x86DD), (0x30, 0, 0, 20), (0x15, 0, 15, 17),
    (0x28, 0, 0, 54), (0x15, 12, 0, 9000), (0x28, 0, 0, 56), (0x15, 10, 11, 9000),
    (0x15, 0, 10, 0x0800), (0x30, 0, 0, 23), (0x15, 0, 8, 17), (0x28, 0, 0, 20),
    (0x45, 6, 0, 0x1FFF), (0xB1, 0, 0, 14), (0x48, 0, 0, 14), (0x15, 2, 0, 9000),
    (0x48, 0, 0, 16), (0x15, 0, 1, 9000), (0x06, 0, 0, 262144), (0x06, 0, 0, 0),
]  # fmt: skip

needs_tcpdump = pytest.mark.skipif(
    shutil.which("tcpdump") is None, reason="tcpdump is not installed (scripts/bootstrap.sh installs it)"
)


@needs_tcpdump
def test_filter_is_compiled_by_libpcap_and_run_by_the_tap(stack: Stack, frames: list[bytes]) -> None:
    r = stack.run("tcpdump", "-i", "eth0", "-c", "1", "udp", "port", "9000")
    assert r.exit_code == 0, r.output
    assert r.stdout == "22:13:20.123456 IP 10.0.0.1.40000 > 10.0.0.2.9000: UDP, length 5\n"
    [req] = stack.alice.sent("Capture")
    assert req.device == "eth0" and req.count == 1
    assert [(f.code, f.jt, f.jf, f.k) for f in req.filter] == UDP_PORT_9000
    # "--" and the words of the expression reach tcpdump as they came
    r = stack.run("tcpdump", "-i", "bob:eth0", "--", "udp port 9000")
    assert r.exit_code == 0, r.output
    assert [(f.code, f.jt, f.jf, f.k) for f in stack.bob.sent("Capture")[0].filter] == UDP_PORT_9000


@needs_tcpdump
def test_a_bad_filter_gets_tcpdumps_message_and_status(stack: Stack, frames: list[bytes]) -> None:
    cases = [
        (("udp", "port"), "tcpdump: can't parse filter expression: syntax error\n"),
        (("udp", "port", "99999"), "tcpdump: illegal port number 99999 > 65535\n"),
        (("ip6", "and", "ip"), "tcpdump: expression rejects all packets\n"),
        (("nosuchword",), "tcpdump: can't parse filter expression: syntax error\n"),
    ]
    for expr, stderr in cases:
        r = stack.run("tcpdump", "-i", "eth0", *expr)
        assert (r.exit_code, r.stdout, r.stderr) == (1, "", stderr), expr
    assert stack.alice.sent("Capture") == []
    # the device is checked first, as tcpdump opens it before compiling
    r = stack.run("tcpdump", "-i", "nope", "udp", "port")
    assert r.stderr == "tcpdump: nope: No such device exists\n(No such device exists)\n"


@needs_tcpdump
def test_d_prints_the_compiled_program(stack: Stack) -> None:
    r = stack.run("tcpdump", "-d", "-i", "eth0", "udp")
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "(000) ldh      [12]\n"
        "(001) jeq      #0x800           jt 2\tjf 4\n"
        "(002) ldb      [23]\n"
        "(003) jeq      #0x11            jt 10\tjf 11\n"
        "(004) jeq      #0x86dd          jt 5\tjf 11\n"
        "(005) ldb      [20]\n"
        "(006) jeq      #0x11            jt 10\tjf 7\n"
        "(007) jeq      #0x2c            jt 8\tjf 11\n"
        "(008) ldb      [54]\n"
        "(009) jeq      #0x11            jt 10\tjf 11\n"
        "(010) ret      #262144\n"
        "(011) ret      #0\n"
    )
    r = stack.run("tcpdump", "-ddd", "arp")
    assert r.stdout == "4\n40 0 0 12\n21 0 1 2054\n6 0 0 262144\n6 0 0 0\n"
    # the boundary's link type is raw IPv4: the protocol is at offset 9
    r = stack.run("tcpdump", "-dd", "--layer", "ip-udp", "udp")
    assert r.stdout == (
        "{ 0x0, 0, 0, 0x00000000 },\n{ 0x30, 0, 0, 0x00000009 },\n{ 0x15, 0, 1, 0x00000011 },\n"
        "{ 0x6, 0, 0, 0x00040000 },\n{ 0x6, 0, 0, 0x00000000 },\n"
    )
    assert stack.alice.sent("Capture") == []


def test_option_errors(stack: Stack) -> None:
    cases = [
        (("-i", "nope"), "tcpdump: nope: No such device exists\n(No such device exists)\n"),
        (("-c", "abc"), "tcpdump: invalid packet count abc\n"),
        (("-i",), "tcpdump: option requires an argument -- 'i'\n"),
        (
            ("-w", "/nonexistent/x.pcap", "-i", "eth0"),
            "tcpdump: /nonexistent/x.pcap: No such file or directory\n",
        ),
        (("--layer", "nic-ip"), "tcpdump: nic-ip: no such layer boundary (there is: ip-udp)\n"),
        (
            ("--layer", "ip-udp", "-i", "eth0"),
            "tcpdump: -i and --layer both say where to capture: give one\n",
        ),
        (("--layer",), "tcpdump: option '--layer' requires an argument\n"),
        (("--pcapng=1",), "tcpdump: unrecognized option '--pcapng=1'\n"),
    ]
    for args, stderr in cases:
        r = stack.run("tcpdump", *args)
        assert r.exit_code == 1, args
        assert r.stderr.startswith(stderr), (args, r.stderr)


def _pcap_frames() -> list[bytes]:
    return [F.udp_frame(), F.arp_request(), F.arp_reply(), F.loopback_udp(), F.port_unreachable()]


def _write_pcap(stack: Stack, path: Path) -> list[bytes]:
    fs = _pcap_frames()
    stack.alice.frames = [_capture(f, i) for i, f in enumerate(fs)]
    r = stack.run("tcpdump", "-i", "eth0", "-w", str(path))
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    assert r.stderr == (
        "tcpdump: listening on eth0, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n"
        + _summary(5)
    )
    return fs


def test_w_writes_a_nanosecond_pcap(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "cap.pcap"
    fs = _write_pcap(stack, path)
    raw = path.read_bytes()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", raw)
    assert (magic, major, minor, snaplen, linktype) == (0xA1B23C4D, 2, 4, 262144, 1)  # DLT_EN10MB
    off = 24
    for i, frame in enumerate(fs):
        sec, nsec, caplen, length = struct.unpack_from("<IIII", raw, off)
        assert sec * 10**9 + nsec == T0 + i * 1_000_001
        assert caplen == length == len(frame)
        assert raw[off + 16 : off + 16 + caplen] == frame
        off += 16 + caplen
    assert off == len(raw)
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        got = [bytes(buf) for _, buf in reader]
    assert got == fs
    eth = dpkt.ethernet.Ethernet(got[0])
    assert (eth.data.data.sport, eth.data.data.dport, eth.data.data.data) == (40000, 9000, b"hello")


@pytest.mark.skipif(
    shutil.which("tshark") is None, reason="tshark is not installed (scripts/bootstrap.sh installs it)"
)
def test_tshark_reads_the_pcap_with_good_checksums(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "cap.pcap"
    fs = _write_pcap(stack, path)
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-T",
            "fields",
            "-e",
            "frame.len",
            "-e",
            "frame.time_epoch",
            "-e",
            "ip.checksum.status",
            "-e",
            "udp.checksum.status",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert [int(r[0]) for r in rows] == [len(f) for f in fs]
    t0s, t0ns = divmod(T0, 10**9)
    assert [r[1] for r in rows] == [f"{t0s}.{t0ns + i * 1_000_001:09d}" for i in range(len(fs))]
    # the ARP frames have no IP; the ICMP error carries a second IP and UDP header
    assert [r[2] for r in rows] == ["1", "", "", "1", "1,1"]
    assert [r[3] for r in rows] == ["1", "", "", "1", "1"]


@pytest.mark.skipif(
    shutil.which("tcpdump") is None, reason="tcpdump is not installed (scripts/bootstrap.sh installs it)"
)
def test_lines_match_real_tcpdump_reading_the_same_frames(stack: Stack, tmp_path: Path) -> None:
    fs = [
        F.udp_frame(),
        F.arp_request(),
        F.arp_reply(),
        F.port_unreachable(),
        F.need_frag(),
        F.echo_request(),
        F.time_exceeded(),
        F.first_fragment(),
        F.last_fragment(),
        F.bad_udp_length(),
        F.loopback_udp(),
        F.unknown_ethertype(),
        F.padded_arp_request(),
    ]
    stack.alice.frames = [_capture(f, i) for i, f in enumerate(fs)]
    path = tmp_path / "cap.pcap"
    assert stack.run("tcpdump", "-i", "eth0", "-w", str(path)).exit_code == 0
    env = {**os.environ, "TZ": "UTC"}
    for flags in (["-n"], ["-n", "-e"]):
        real = subprocess.run(
            ["tcpdump", *flags, "-r", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=True,
        ).stdout
        ours = stack.run("tcpdump", "-i", "eth0", *flags)
        assert ours.exit_code == 0, ours.output
        assert ours.stdout == real, flags


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_ends_cleanly_with_the_counts(stack: Stack, frames: list[bytes], signum: int) -> None:
    stack.alice.hold_capture = True
    env = {**os.environ, "STACKEMU_STATE_DIR": str(stack.state_dir), "TZ": "UTC"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stackemu", "tcpdump", "-i", "eth0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        assert lines[0] == "22:13:20.123456 IP 10.0.0.1.40000 > 10.0.0.2.9000: UDP, length 5\n"
        proc.send_signal(signum)
        rest, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert rest == "\n"  # tcpdump finishes the line the interrupt may have cut
    assert stderr == LISTENING + _summary(4)
    # the server saw the stream cancelled
    assert stack.alice.capture_done.wait(5)


def _tshark(path: Path, *fields: str) -> list[list[str]]:
    cmd = ["tshark", "-r", str(path), "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.skipif(
    shutil.which("tshark") is None, reason="tshark is not installed (scripts/bootstrap.sh installs it)"
)
@pytest.mark.parametrize("how", [("-w", "cap.pcapng"), ("--pcapng", "-w", "cap.out")])
def test_pcapng_has_an_interface_per_device_and_the_direction(
    stack: Stack, tmp_path: Path, how: tuple[str, ...]
) -> None:
    fs = [F.udp_frame(), F.loopback_udp(), F.arp_request(), F.port_unreachable()]
    stack.alice.frames = [
        _capture(fs[0], 0),
        _capture(fs[1], 1, device="lo", pkt_type=PACKET_HOST),
        _capture(fs[2], 2, pkt_type=PACKET_BROADCAST),
        _capture(fs[3], 3, pkt_type=PACKET_HOST),
    ]
    stack.alice.frames[3].dropped = 2
    args = [a if a.startswith("-") else str(tmp_path / a) for a in how]
    r = stack.run("tcpdump", "-i", "any", *args)
    assert r.exit_code == 0, r.output
    assert r.stderr == (
        "tcpdump: listening on any, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n"
        + _summary(4, 2)
    )
    path = tmp_path / args[-1].rsplit("/", 1)[-1]
    assert path.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"  # a section header block
    rows = _tshark(
        path,
        "frame.interface_id",
        "frame.interface_name",
        "frame.interface_description",
        "frame.time_epoch",
        "frame.len",
        "frame.packet_flags_direction",
        "frame.packet_flags_reception_type",
        "frame.drop_count",
        "udp.srcport",
        "udp.dstport",
        "arp.dst.proto_ipv4",
    )
    t0s, t0ns = divmod(T0, 10**9)
    ts = [f"{t0s}.{t0ns + i * 1_000_001:09d}" for i in range(4)]
    desc = "host alice: device {} (packet taps)"
    assert rows == [
        ["0", "alice:eth0", desc.format("eth0"), ts[0], "47", "0x00000002", "0", "", "40000", "9000", ""],
        ["1", "alice:lo", desc.format("lo"), ts[1], "71", "0x00000001", "1", "", "54095", "49410", ""],
        ["0", "alice:eth0", desc.format("eth0"), ts[2], "42", "0x00000001", "3", "", "", "", "10.0.0.2"],
        # the ICMP error's quoted datagram carries the ports; the tap lost 2 before it
        ["0", "alice:eth0", desc.format("eth0"), ts[3], "71", "0x00000001", "1", "2", "40000", "9001", ""],
    ]


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("tshark", "capinfos", "tcpdump")),
    reason="tshark, capinfos and tcpdump are not installed (scripts/bootstrap.sh installs them)",
)
def test_pcapng_names_the_filter_and_real_tcpdump_reads_it(stack: Stack, tmp_path: Path) -> None:
    stack.alice.frames = [_capture(F.udp_frame(), 0)]
    path = tmp_path / "f.pcapng"
    r = stack.run("tcpdump", "-i", "eth0", "-w", str(path), "udp", "port", "9000")
    assert r.exit_code == 0, r.output
    info = subprocess.run(
        ["capinfos", str(path)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "Filter string = udp port 9000" in info
    assert "Name = alice:eth0" in info
    assert "Time precision = nanoseconds (9)" in info
    real = subprocess.run(
        ["tcpdump", "-n", "-r", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TZ": "UTC"},
        check=True,
    ).stdout
    assert real == "22:13:20.123456 IP 10.0.0.1.40000 > 10.0.0.2.9000: UDP, length 5\n"
