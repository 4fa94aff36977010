"""services.nic.tap against the real kernel: a TAP device moved into a network
namespace of the test's own, frames written and read through the fd, exact fields.

Needs root and /dev/net/tun. Nothing is configured in the machine's main namespace:
the TAP is created there by TUNSETIFF and moved out at once.

The kernel sends IPv6 frames of its own on a device that comes up (MLDv2 reports to
33:33:00:00:00:16, the DAD neighbour solicitation for its link-local address, router
solicitations): the readers below skip frames they do not wait for.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.core.wire.arp import ARPOP_REPLY, ARPOP_REQUEST, ArpPacket, ArpRepr
from services.core.wire.ethernet import (
    BROADCAST_MAC,
    ETH_HLEN,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_ZLEN,
    ZERO_MAC,
    EthernetFrame,
    EthernetRepr,
    mac_from_str,
)
from services.core.wire.ipv4 import IPPROTO_UDP, Ipv4Packet, Ipv4Repr, ip_from_str
from services.core.wire.udp import UDP_HLEN, UdpPacket, UdpRepr, udp_checksum, udp_checksum_ok
from services.nic.tap import TapLink, netns_attach, netns_exists, netns_remove, tap_open

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="TAP devices and network namespaces need root"),
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="/dev/net/tun is missing (no tun module)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2's `ip` is not installed"),
]

WAIT = 5.0
OUR_MAC = mac_from_str("02:00:0a:63:00:02")
OUR_IP = ip_from_str("10.99.0.2")
KERNEL_IP = ip_from_str("10.99.0.1")


def ip_cmd(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


def link_json(name: str, ns: str | None = None) -> dict[str, Any] | None:
    where = ["-n", ns] if ns else []
    r = ip_cmd(*where, "-j", "link", "show", "dev", name, check=False)
    if r.returncode != 0:
        return None
    links: list[dict[str, Any]] = json.loads(r.stdout)
    return links[0]


def main_ns_link_names() -> set[str]:
    return {str(link["ifname"]) for link in json.loads(ip_cmd("-j", "link", "show").stdout)}


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@dataclass
class Tap:
    name: str
    fd: int | None
    mac: bytes
    skipped: list[bytes] = field(default_factory=list)

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def take_fd(self) -> int:
        """Hand the fd to a TapLink, which closes it."""
        fd, self.fd = self.fd, None
        assert fd is not None
        return fd


def unique_name() -> str:
    return "setap" + secrets.token_hex(4)  # 13 bytes, under IFNAMSIZ


@pytest.fixture
def tap() -> Iterator[Tap]:
    name = unique_name()
    fd: int | None = None
    t: Tap | None = None
    try:
        fd = tap_open(name)
        netns_attach(name, name)
        link = link_json(name, name)
        assert link is not None, f"{name} not found in netns {name}"
        t = Tap(name, fd, mac_from_str(str(link["address"])))
        yield t
    finally:
        if t is not None:
            t.close()
        elif fd is not None:
            os.close(fd)
        netns_remove(name)


def arp_frame(op: int, eth_dst: bytes, sha: bytes, spa: int, tha: bytes, tpa: int) -> bytes:
    # Padded to ETH_ZLEN as a real NIC puts it on the wire (eth_skb_pad).
    buf = bytearray(ETH_ZLEN)
    EthernetRepr(eth_dst, sha, ETH_P_ARP).emit(buf)
    ArpRepr(op, sha, spa, tha, tpa).emit(buf, ETH_HLEN)
    return bytes(buf)


def udp_frame(
    eth_dst: bytes, saddr: int, daddr: int, sport: int, dport: int, payload: bytes, ident: int = 1
) -> bytes:
    ip = Ipv4Repr(saddr, daddr, IPPROTO_UDP, UDP_HLEN + len(payload), ident=ident, dont_frag=True)
    buf = bytearray(ETH_HLEN + ip.total_len)
    EthernetRepr(eth_dst, OUR_MAC, ETH_P_IP).emit(buf)
    off = ETH_HLEN + ip.header_len
    buf[off + UDP_HLEN :] = payload
    UdpRepr(sport, dport).emit(buf, off, len(payload), saddr, daddr)
    ip.emit(buf, ETH_HLEN)
    return bytes(buf)


def read_frame(t: Tap, want: Callable[[bytes], bool], timeout: float = WAIT) -> bytes:
    """The next frame `want` accepts, within `timeout`; others go to t.skipped."""
    assert t.fd is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            kinds = [EthernetRepr.parse(EthernetFrame(f)).ethertype for f in t.skipped]
            raise AssertionError(f"no wanted frame in {timeout}s; skipped ethertypes {kinds}")
        r, _, _ = select.select([t.fd], [], [], left)
        if not r:
            continue
        try:
            frame = os.read(t.fd, 65536)
        except BlockingIOError:
            continue
        if want(frame):
            return frame
        t.skipped.append(frame)


def ethertype(frame: bytes) -> int:
    return EthernetRepr.parse(EthernetFrame.new_checked(frame)).ethertype


def parse_arp(frame: bytes) -> ArpRepr:
    return ArpRepr.parse(ArpPacket.new_checked(frame[ETH_HLEN:]))


def is_arp(op: int, target_ip: int) -> Callable[[bytes], bool]:
    def want(frame: bytes) -> bool:
        if ethertype(frame) != ETH_P_ARP:
            return False
        arp = parse_arp(frame)
        return arp.operation == op and arp.target_ip == target_ip

    return want


def test_attach_moves_device_into_namespace_up_with_address(tap: Tap) -> None:
    r = ip_cmd("-n", tap.name, "-j", "addr", "show", "dev", tap.name)
    (link,) = json.loads(r.stdout)
    inet = [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"]
    assert inet == [("10.99.0.1", 24)]
    # UP is ours; LOWER_UP is the carrier tun_set_iff turned on when the fd attached.
    assert "UP" in link["flags"] and "LOWER_UP" in link["flags"]
    assert link["mtu"] == 1500
    assert link["link_type"] == "ether"
    lo = link_json("lo", tap.name)
    assert lo is not None and "UP" in lo["flags"]
    assert tap.name not in main_ns_link_names()


def test_attach_again_is_idempotent(tap: Tap) -> None:
    # Ours already moved: only the configuration is applied again.
    netns_attach(tap.name, tap.name, mtu=1400)
    link = link_json(tap.name, tap.name)
    assert link is not None and link["mtu"] == 1400
    addrs = json.loads(ip_cmd("-n", tap.name, "-j", "addr", "show", "dev", tap.name).stdout)
    assert [a["local"] for a in addrs[0]["addr_info"] if a["family"] == "inet"] == ["10.99.0.1"]


def test_restart_reuses_namespace_and_replaces_stale_device(tap: Tap) -> None:
    # A restarted NIC process while the old fd is still open somewhere: the old device
    # sits in the namespace, TUNSETIFF here creates a new one of the same name.
    old = TapLink(tap.take_fd(), lambda frames: None)
    fd2 = tap_open(tap.name)
    try:
        assert tap.name in main_ns_link_names()
        netns_attach(tap.name, tap.name)
        assert tap.name not in main_ns_link_names()
        link = link_json(tap.name, tap.name)
        assert link is not None and "UP" in link["flags"]
        assert mac_from_str(str(link["address"])) != tap.mac  # tun_net_init: a random MAC each
        # The stale device was deleted under the old fd: tun_get() finds nothing.
        assert not old.xmit(arp_frame(ARPOP_REQUEST, BROADCAST_MAC, OUR_MAC, OUR_IP, ZERO_MAC, KERNEL_IP))
        assert old.error is not None and old.error.errno == errno.EBADFD
        assert not old.carrier
        # The new one works.
        t2 = Tap(tap.name, fd2, mac_from_str(str(link["address"])))
        os.write(fd2, arp_frame(ARPOP_REQUEST, BROADCAST_MAC, OUR_MAC, OUR_IP, ZERO_MAC, KERNEL_IP))
        reply = parse_arp(read_frame(t2, is_arp(ARPOP_REPLY, OUR_IP)))
        assert reply.sender_hw == t2.mac
    finally:
        old.close()
        os.close(fd2)


def test_tap_open_errors_name_the_device() -> None:
    with pytest.raises(OSError) as e:
        tap_open("x" * 16)
    assert e.value.errno == errno.EINVAL and "x" * 16 in str(e.value)
    # tun_set_iff: an existing device that is not a TAP.
    with pytest.raises(OSError) as e:
        tap_open("lo")
    assert e.value.errno == errno.EINVAL and "'lo'" in str(e.value)


def test_kernel_answers_arp_request(tap: Tap) -> None:
    assert tap.fd is not None
    os.write(tap.fd, arp_frame(ARPOP_REQUEST, BROADCAST_MAC, OUR_MAC, OUR_IP, ZERO_MAC, KERNEL_IP))
    frame = read_frame(tap, is_arp(ARPOP_REPLY, OUR_IP))
    eth = EthernetRepr.parse(EthernetFrame.new_checked(frame))
    assert eth == EthernetRepr(OUR_MAC, tap.mac, ETH_P_ARP)
    assert parse_arp(frame) == ArpRepr(ARPOP_REPLY, tap.mac, KERNEL_IP, OUR_MAC, OUR_IP)
    # arp_create builds 14 + 28 bytes; tun_net_xmit does not pad to ETH_ZLEN, so a
    # receiver must not treat this as a runt.
    assert len(frame) == ETH_HLEN + ArpRepr.HEADER_LEN


ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.99.0.1", 9999))
s.settimeout(10)
print("ready", flush=True)
data, peer = s.recvfrom(2048)
s.sendto(data, peer)
print(peer[0], peer[1], len(data), flush=True)
"""


def read_line(proc: subprocess.Popen[bytes], timeout: float = WAIT) -> str:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        r, _, _ = select.select([fd], [], [], max(left, 0))
        if not r:
            raise AssertionError(f"no line from the echo process in {timeout}s (got {data!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"echo process exited: {data!r} {err}")
        data += chunk
    return data.decode().strip()


def test_udp_echo_through_the_kernel(tap: Tap) -> None:
    assert tap.fd is not None
    proc = subprocess.Popen(
        ["ip", "netns", "exec", tap.name, sys.executable, "-c", ECHO],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert read_line(proc) == "ready"
        payload = b"hello from alice over a tap"
        os.write(tap.fd, udp_frame(tap.mac, OUR_IP, KERNEL_IP, 5555, 9999, payload))

        # The kernel knows no neighbour for 10.99.0.2 (an IP frame teaches it nothing,
        # only ARP does), so its reply waits in the neighbour queue behind a broadcast
        # ARP request (neigh_resolve_output → arp_solicit).
        req_frame = read_frame(tap, is_arp(ARPOP_REQUEST, OUR_IP))
        eth = EthernetRepr.parse(EthernetFrame.new_checked(req_frame))
        assert eth == EthernetRepr(BROADCAST_MAC, tap.mac, ETH_P_ARP)
        assert parse_arp(req_frame) == ArpRepr(ARPOP_REQUEST, tap.mac, KERNEL_IP, ZERO_MAC, OUR_IP)
        os.write(tap.fd, arp_frame(ARPOP_REPLY, tap.mac, OUR_MAC, OUR_IP, tap.mac, KERNEL_IP))

        frame = read_frame(tap, lambda f: ethertype(f) == ETH_P_IP)
        eth = EthernetRepr.parse(EthernetFrame.new_checked(frame))
        assert eth == EthernetRepr(OUR_MAC, tap.mac, ETH_P_IP)
        ip = Ipv4Packet.new_checked(frame[ETH_HLEN:])
        hdr = Ipv4Repr.parse(ip)
        assert (hdr.src, hdr.dst, hdr.protocol) == (KERNEL_IP, OUR_IP, IPPROTO_UDP)
        assert hdr.ttl == 64 and hdr.options == b""
        assert ip.verify_checksum()
        assert len(frame) == ETH_HLEN + hdr.total_len  # no padding: the frame is over ETH_ZLEN
        seg = ip.payload
        udp = UdpPacket.new_checked(seg)
        assert (udp.src_port, udp.dst_port, udp.length) == (9999, 5555, UDP_HLEN + len(payload))
        assert bytes(udp.payload) == payload
        # A tap without TUNSETOFFLOAD has no NETIF_F_HW_CSUM: the checksum is complete.
        assert udp.checksum == udp_checksum(KERNEL_IP, OUR_IP, seg)
        assert udp_checksum_ok(KERNEL_IP, OUR_IP, seg)

        assert read_line(proc) == f"10.99.0.2 5555 {len(payload)}"
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


def _loop_factories() -> list[object]:
    params: list[object] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        params.append(pytest.param(None, id="uvloop", marks=pytest.mark.skip(reason="uvloop not installed")))
    else:
        params.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return params


@pytest.mark.parametrize("loop_factory", _loop_factories())
def test_taplink_receive_and_xmit(tap: Tap, loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    batches: list[list[bytes]] = []
    link = TapLink(tap.take_fd(), batches.append, max_batch=2)
    n_requests = 5

    def arp_replies() -> list[ArpRepr]:
        return [parse_arp(f) for b in batches for f in b if is_arp(ARPOP_REPLY, OUR_IP)(f)]

    async def main() -> None:
        link.start(asyncio.get_running_loop())
        assert link.carrier
        for _ in range(n_requests):
            assert link.xmit(arp_frame(ARPOP_REQUEST, BROADCAST_MAC, OUR_MAC, OUR_IP, ZERO_MAC, KERNEL_IP))
        deadline = asyncio.get_running_loop().time() + WAIT
        while len(arp_replies()) < n_requests:
            assert asyncio.get_running_loop().time() < deadline, f"replies so far: {arp_replies()}"
            await asyncio.sleep(0.001)

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(asyncio.wait_for(main(), WAIT * 2))
        assert arp_replies() == [ArpRepr(ARPOP_REPLY, tap.mac, KERNEL_IP, OUR_MAC, OUR_IP)] * n_requests
        assert all(1 <= len(b) <= 2 for b in batches)
        assert all(isinstance(f, bytes) for b in batches for f in b)
    finally:
        link.close()
    assert not link.carrier and link.fd is None
    assert not link.xmit(b"\x00" * ETH_ZLEN)


def test_taplink_xmit_drops_what_tun_refuses(tap: Tap) -> None:
    link = TapLink(tap.take_fd(), lambda frames: None)
    try:
        request = arp_frame(ARPOP_REQUEST, BROADCAST_MAC, OUR_MAC, OUR_IP, ZERO_MAC, KERNEL_IP)
        assert not link.xmit(b"\x00" * (ETH_HLEN - 1))  # tun_get_user: len < ETH_HLEN, EINVAL
        assert link.xmit(request[: ETH_HLEN + ArpRepr.HEADER_LEN])  # under ETH_ZLEN is fine
        ip_cmd("-n", tap.name, "link", "set", "dev", tap.name, "down")
        assert not link.xmit(request)  # !(dev->flags & IFF_UP): EIO, counted rx_dropped
        assert link.carrier
        stats = json.loads(ip_cmd("-n", tap.name, "-j", "-s", "link", "show", "dev", tap.name).stdout)
        assert stats[0]["stats64"]["rx"]["dropped"] == 1
        ip_cmd("-n", tap.name, "link", "set", "dev", tap.name, "up")
        assert link.xmit(request)
    finally:
        link.close()


def test_taplink_loses_carrier_when_device_goes(tap: Tap) -> None:
    link = TapLink(tap.take_fd(), lambda frames: None)

    async def main() -> None:
        link.start(asyncio.get_running_loop())
        ip_cmd("-n", tap.name, "link", "del", "dev", tap.name)
        deadline = asyncio.get_running_loop().time() + WAIT
        # tun_detach_all wakes the reader; the read fails with EBADFD.
        while link.carrier:
            assert asyncio.get_running_loop().time() < deadline, "carrier still on"
            await asyncio.sleep(0.001)

    try:
        asyncio.run(asyncio.wait_for(main(), WAIT * 2))
        assert link.error is not None and link.error.errno == errno.EBADFD
        assert not link.xmit(b"\x00" * ETH_ZLEN)
    finally:
        link.close()


def test_close_removes_device_and_remove_deletes_namespace(tap: Tap) -> None:
    assert netns_exists(tap.name)
    tap.close()
    # Not persistent: the last close unregisters it (tun_chr_close → __tun_detach).
    wait_until(lambda: link_json(tap.name, tap.name) is None, "device gone after close")
    netns_remove(tap.name)
    assert not netns_exists(tap.name)
    assert tap.name not in main_ns_link_names()
    netns_remove(tap.name)  # nothing left to remove is fine


def test_remove_namespace_with_fd_still_open() -> None:
    name = unique_name()
    link = TapLink(tap_open(name), lambda frames: None)
    try:
        netns_attach(name, name)
        netns_remove(name)
        assert not netns_exists(name)
        # cleanup_net runs later, from a workqueue: the device is deleted (tun has
        # rtnl_link_ops), not moved back here.
        request = arp_frame(ARPOP_REQUEST, BROADCAST_MAC, OUR_MAC, OUR_IP, ZERO_MAC, KERNEL_IP)
        wait_until(lambda: not link.xmit(request) and not link.carrier, "device deleted with its netns")
        assert link.error is not None and link.error.errno == errno.EBADFD
        assert name not in main_ns_link_names()
    finally:
        link.close()
        netns_remove(name)
