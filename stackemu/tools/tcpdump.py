"""`stackemu tcpdump`: the packet taps of a host's NIC (the Capture stream) as tcpdump
4.99 shows them with -n, or written with -w as a classic pcap file (nanosecond
timestamps, DLT_EN10MB) that tcpdump, tshark and Wireshark read.

The one-line decodes are tcpdump's (print-ether.c, print-arp.c, print-ip.c,
print-udp.c, print-icmp.c); UDP payloads are not dissected by port (tcpdump would
decode DNS on 53, NTP on 123, ...), and addresses and ports are always numeric.
"""

from __future__ import annotations

import ipaddress
import signal
import struct
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import IO, Any

import dpkt  # type: ignore[import-untyped]
import grpc

from stackemu.nic.v1 import nic_pb2
from stackemu.tools.common import Nic, err, fail, out, split_dev
from stackemu.tools.iproute import IFF_LOOPBACK, IFF_UP

SNAPLEN = 262144  # tcpdump's default snapshot length
SLL2_HDR_LEN = 20

USAGE = """\
Usage: stackemu tcpdump [ --host HOST ] [ -enlU ] [ -c count ] [ -i [HOST:]interface|any ]
               [ -w file ]
Capture filter expressions are not built yet."""

# include/linux/if_packet.h PACKET_* as print-sll.c names them.
_PKT_TYPES = {0: "In", 1: "B", 2: "M", 3: "P", 4: "Out"}

# print-ether.c ethertype_values, the ones a host of this stack may see.
_ETHERTYPES = {
    0x0800: "IPv4",
    0x0806: "ARP",
    0x8035: "Reverse ARP",
    0x86DD: "IPv6",
    0x8100: "802.1Q",
    0x8847: "MPLS unicast",
    0x888E: "EAPOL",
    0x88CC: "LLDP",
    0x9000: "Loopback",
}

# print-icmp.c icmp2str
_ICMP_TYPES = {
    0: "echo reply",
    4: "source quench",
    8: "echo request",
    10: "router solicitation",
    13: "time stamp request",
    14: "time stamp reply",
    15: "information request",
    16: "information reply",
    17: "address mask request",
}

_UNREACH = {
    5: "{} unreachable - source route failed",
    6: "net {} unreachable - unknown",
    7: "host {} unreachable - unknown",
    8: "{} unreachable - source host isolated",
    9: "net {} unreachable - admin prohibited",
    10: "host {} unreachable - admin prohibited",
    11: "net {} unreachable - tos prohibited",
    12: "host {} unreachable - tos prohibited",
    13: "host {} unreachable - admin prohibited filter",
    14: "host {} unreachable - host precedence violation",
    15: "host {} unreachable - precedence cutoff",
}


def mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def ip4(b: bytes) -> str:
    return str(ipaddress.IPv4Address(b))


def decode(frame: bytes, eflag: bool) -> str:
    """One frame after the timestamp, as ether_print() and what it calls print it."""
    if len(frame) < 14:
        return "[|ether]"
    dst, src = mac(frame[0:6]), mac(frame[6:12])
    etype = struct.unpack_from("!H", frame, 12)[0]
    name = _ETHERTYPES.get(etype, "Unknown")
    hdr = f"{src} > {dst}, ethertype {name} (0x{etype:04x}), length {len(frame)}: "
    body = _payload(etype, frame[14:], eflag)
    if body is None:  # a type not decoded: the link header, then the bytes in hex
        return hdr + hexdump(frame[14:])
    return (hdr if eflag else "") + body


def decode_sll2(frame: bytes, ifindex: int, device: str, pkt_type: int, eflag: bool) -> str:
    """A frame on `-i any`, which tcpdump captures as DLT_LINUX_SLL2 (sll2_if_print())."""
    prefix = f"{device:<5} {_PKT_TYPES.get(pkt_type, '?'):<3} "
    if len(frame) < 14:
        return prefix + "[|sll2]"
    etype = struct.unpack_from("!H", frame, 12)[0]
    if eflag:
        name = _ETHERTYPES.get(etype, "Unknown")
        length = len(frame) - 14 + SLL2_HDR_LEN
        prefix += f"ifindex {ifindex} {mac(frame[6:12])} ethertype {name} (0x{etype:04x}), length {length}: "
    body = _payload(etype, frame[14:], eflag)
    return prefix + (body if body is not None else hexdump(frame[14:]))


def hexdump(data: bytes) -> str:
    """ndo_default_print(): hex_and_ascii_print() with "\\n\\t" before each line."""
    lines = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        hexs = "".join(f" {chunk[i]:02x}{chunk[i + 1]:02x}" for i in range(0, len(chunk) - 1, 2))
        if len(chunk) % 2:
            hexs += f" {chunk[-1]:02x}"
        text = "".join(chr(b) if 0x21 <= b <= 0x7E else "." for b in chunk)
        lines.append(f"\n\t0x{off:04x}: {hexs:<40}  {text}")
    return "".join(lines)


def _payload(etype: int, p: bytes, eflag: bool) -> str | None:
    if etype == 0x0800:
        return ip_print(p, eflag)
    if etype == 0x0806:
        return arp_print(p, eflag)
    if etype == 0x86DD:
        return ip6_print(p, eflag)
    return None


def arp_print(p: bytes, eflag: bool) -> str:
    s = "" if eflag else "ARP, "
    if len(p) < 8:
        return s + "[|arp]"
    hrd, pro, hln, pln, op = struct.unpack_from("!HHBBH", p)
    if len(p) < 8 + 2 * (hln + pln):
        return s + "[|arp]"
    if pro != 0x0800 or pln != 4 or hln == 0:
        hname = "Ethernet" if hrd == 1 else f"Unknown Hardware ({hrd})"
        pname = _ETHERTYPES.get(pro, f"Unknown Protocol (0x{pro:04x})")
        return s + f"{hname} (len {hln}), {pname} (len {pln}), length {len(p)}"
    sha = p[8 : 8 + hln]
    spa = p[8 + hln : 12 + hln]
    tha = p[12 + hln : 12 + 2 * hln]
    tpa = p[12 + 2 * hln : 16 + 2 * hln]
    if op == 1:
        s += f"Request who-has {ip4(tpa)}"
        if any(tha):
            s += f" ({mac(tha)})"
        s += f" tell {ip4(spa)}"
    elif op == 2:
        s += f"Reply {ip4(spa)} is-at {mac(sha)}"
    else:
        names = {3: "Reverse Request", 4: "Reverse Reply", 8: "Inverse Request", 9: "Inverse Reply"}
        s += names.get(op, f"Unknown ({op})")
    return s + f", length {len(p)}"


def ip_print(p: bytes, eflag: bool) -> str:
    if len(p) < 1:
        return "IP [|ip]"
    version = p[0] >> 4
    if version != 4:
        what = "IP6, wrong link-layer encapsulation" if version == 6 else f"IP{version}"
        return what + " (invalid)"
    s = "" if eflag else "IP "
    if len(p) < 20:
        return s + f"truncated-ip {len(p)}"
    hlen = (p[0] & 0x0F) * 4
    if hlen < 20:
        return s + f"bad-hlen {hlen}"
    total = struct.unpack_from("!H", p, 2)[0]
    if total > len(p):
        s += f"truncated-ip - {total - len(p)} bytes missing! "
        total = len(p)
    if total < hlen:
        return s + f"bad-len {total}"
    off = struct.unpack_from("!H", p, 6)[0]
    proto = p[9]
    src, dst = ip4(p[12:16]), ip4(p[16:20])
    body = p[hlen:total]
    length = total - hlen
    if off & 0x1FFF:
        # not the first fragment: no transport header to show
        return s + f"{src} > {dst}: ip-proto-{proto}"
    more_frags = bool(off & 0x2000)
    if proto == 17:
        return s + udp_print(body, length, src, dst, more_frags)
    s += f"{src} > {dst}: "
    if proto == 1:
        return s + icmp_print(body, length)
    return s + f" ip-proto-{proto} {length}"


def udp_print(u: bytes, length: int, src: str, dst: str, fragmented: bool) -> str:
    if len(u) < 4:
        return f"{src} > {dst}: [|udp]"
    sport, dport = struct.unpack_from("!HH", u)
    addrs = f"{src}.{sport} > {dst}.{dport}: "
    if length < 8:
        return addrs + f"truncated-udp {length}"
    if len(u) < 6:
        return addrs + "[|udp]"
    ulen = struct.unpack_from("!H", u, 4)[0]
    if ulen < 8:
        return addrs + f"truncated-udplength {ulen}"
    ulen -= 8
    length -= 8
    if ulen < length:
        length = ulen
    if ulen > length and not fragmented:
        return addrs + f"UDP, bad length {ulen} > {length}"
    return addrs + f"UDP, length {ulen}"


def icmp_print(b: bytes, plen: int) -> str:
    if len(b) < 4:
        return "ICMP [|icmp]"
    itype, code = b[0], b[1]
    inner_dst = ip4(b[24:28]) if len(b) >= 28 else "?"
    if itype in (0, 8) and len(b) >= 8:
        ident, seq = struct.unpack_from("!HH", b, 4)
        text = f"echo {'request' if itype == 8 else 'reply'}, id {ident}, seq {seq}"
    elif itype == 3:
        if code == 0:
            text = f"net {inner_dst} unreachable"
        elif code == 1:
            text = f"host {inner_dst} unreachable"
        elif code == 2:
            text = f"{inner_dst} protocol {b[17] if len(b) > 17 else 0} unreachable"
        elif code == 3:
            ihl = (b[8] & 0x0F) * 4 if len(b) > 8 else 20
            proto = b[17] if len(b) > 17 else 0
            port_at = 8 + ihl + 2
            dport = struct.unpack_from("!H", b, port_at)[0] if len(b) >= port_at + 2 else 0
            if proto == 17:
                text = f"{inner_dst} udp port {dport} unreachable"
            elif proto == 6:
                text = f"{inner_dst} tcp port {dport} unreachable"
            else:
                text = f"{inner_dst} protocol {proto} port {dport} unreachable"
        elif code == 4:
            mtu = struct.unpack_from("!H", b, 6)[0] if len(b) >= 8 else 0
            text = f"{inner_dst} unreachable - need to frag" + (f" (mtu {mtu})" if mtu else "")
        elif code in _UNREACH:
            text = _UNREACH[code].format(inner_dst)
        else:
            text = f"{inner_dst} unreachable - #{code}"
    elif itype == 11:
        text = {0: "time exceeded in-transit", 1: "ip reassembly time exceeded"}.get(
            code, f"time exceeded-#{code}"
        )
    else:
        text = _ICMP_TYPES.get(itype, f"type-#{itype}")
    return f"ICMP {text}, length {plen}"


def ip6_print(p: bytes, eflag: bool) -> str:
    s = "" if eflag else "IP6 "
    if len(p) < 40:
        return s + "[|ip6]"
    plen = struct.unpack_from("!H", p, 4)[0]
    src = ipaddress.IPv6Address(p[8:24])
    dst = ipaddress.IPv6Address(p[24:40])
    return s + f"{src} > {dst}:  ip-proto-{p[6]} {plen}"


def timestamp(ns: int) -> str:
    """tcpdump's default -t format in local time, microseconds (libpcap truncates)."""
    sec, frac = divmod(ns, 1_000_000_000)
    lt = time.localtime(sec)
    return f"{lt.tm_hour:02d}:{lt.tm_min:02d}:{lt.tm_sec:02d}.{frac // 1000:06d}"


class PcapWriter:
    """A classic pcap file with nanosecond timestamps (magic 0xa1b23c4d), DLT_EN10MB."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._w = dpkt.pcap.Writer(f, snaplen=SNAPLEN, linktype=dpkt.pcap.DLT_EN10MB, nano=True)
        f.flush()

    def write(self, frame: bytes, tstamp_ns: int) -> None:
        # A Decimal keeps every nanosecond; a float second count would not.
        self._w.writepkt_time(frame, Decimal(tstamp_ns) / Decimal(1_000_000_000))
        self._f.flush()


def _plural(n: int) -> str:
    return "" if n == 1 else "s"


class _Opts:
    iface: str | None = None
    wfile: str | None = None
    count = 0
    eflag = False
    expr: list[str]

    def __init__(self) -> None:
        self.expr = []


def parse_args(argv: Sequence[str]) -> _Opts:
    """getopt() over tcpdump's options that the emulator has; the rest of the words
    are the filter expression."""
    o = _Opts()
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            o.expr += args[i + 1 :]
            break
        if not a.startswith("-") or a == "-":
            o.expr.append(a)
            i += 1
            continue
        if a.startswith("--"):
            if a == "--help":
                out(USAGE)
                fail(0)
            fail(1, f"tcpdump: unrecognized option '{a}'", USAGE)
        j = 1
        while j < len(a):
            c = a[j]
            if c in "icw":
                val = a[j + 1 :]
                if not val:
                    i += 1
                    if i >= len(args):
                        fail(1, f"tcpdump: option requires an argument -- '{c}'", USAGE)
                    val = args[i]
                if c == "i":
                    o.iface = val
                elif c == "w":
                    o.wfile = val
                else:
                    try:
                        o.count = int(val)
                    except ValueError:
                        o.count = -1
                    if o.count <= 0:
                        fail(1, f"tcpdump: invalid packet count {val}")
                break
            if c == "e":
                o.eflag = True
            elif c in "nlU":
                pass  # always numeric; every line and packet is flushed as it comes
            elif c == "h":
                out(USAGE)
                fail(0)
            else:
                fail(1, f"tcpdump: invalid option -- '{c}'", USAGE)
            j += 1
        i += 1
    return o


def main(host: str | None, argv: Sequence[str]) -> int:
    o = parse_args(argv)
    if o.expr:
        fail(
            1,
            f'tcpdump: capture filter expressions ("{" ".join(o.expr)}") come with the '
            "observability work, which is not built yet: capture without one",
        )
    host, dev = split_dev(o.iface, host) if o.iface else (host, "")
    with Nic(host) as nic:
        links: nic_pb2.ListLinksResponse = nic.call("ListLinks", nic_pb2.ListLinksRequest())
        if not dev:
            # pcap_lookupdev(): the first device that is up and not loopback
            up = [lk.name for lk in links.links if lk.flags & IFF_UP and not lk.flags & IFF_LOOPBACK]
            dev = up[0] if up else "any"
        if dev != "any" and all(lk.name != dev for lk in links.links):
            fail(1, f"tcpdump: {dev}: No such device exists", "(No such device exists)")
        f: IO[bytes] | None = None
        writer: PcapWriter | None = None
        if o.wfile is not None:
            try:
                f = open(o.wfile, "wb")  # noqa: SIM115 - closed in the finally below
            except OSError as e:
                fail(1, f"tcpdump: {o.wfile}: {e.strerror}")
            writer = PcapWriter(f)
        try:
            return _capture(nic, dev, o, writer)
        finally:
            if f is not None:
                f.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _capture(nic: Nic, dev: str, o: _Opts, writer: PcapWriter | None) -> int:
    sll2 = dev == "any" and writer is None
    link = "LINUX_SLL2 (Linux cooked v2)" if sll2 else "EN10MB (Ethernet)"
    listening = f"listening on {dev}, link-type {link}, snapshot length {SNAPLEN} bytes"
    req = nic_pb2.CaptureRequest(device="" if dev == "any" else dev, count=o.count)
    captured = dropped = 0
    interrupted = False
    call: Any = None
    # tcpdump ends the same way on SIGTERM as on Ctrl-C (its cleanup() handles both).
    restore = None
    if threading.current_thread() is threading.main_thread():
        restore = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with nic.rpc_errors("Capture"):
            call = nic.stub.Capture(req)
            # The service answers with its headers once the tap is registered: only
            # then is it listening, as tcpdump's message means.
            call.initial_metadata()
            if writer is None:
                if sll2:
                    err("tcpdump: data link type LINUX_SLL2")
                err("tcpdump: verbose output suppressed, use -v[v]... for full protocol decode")
                err(listening)
            else:
                err(f"tcpdump: {listening}")
            for resp in call:
                dropped = max(dropped, resp.dropped)
                captured += 1
                if writer is not None:
                    writer.write(resp.frame, resp.tstamp)
                else:
                    if sll2:
                        line = decode_sll2(resp.frame, resp.ifindex, resp.device, resp.pkt_type, o.eflag)
                    else:
                        line = decode(resp.frame, o.eflag)
                    out(f"{timestamp(resp.tstamp)} {line}")
                if o.count and captured >= o.count:
                    break
    except KeyboardInterrupt:
        interrupted = True
    except grpc.RpcError:  # the stream cancelled by the interrupt
        if not interrupted:
            raise
    finally:
        if call is not None:
            call.cancel()
        if restore is not None:
            signal.signal(signal.SIGTERM, restore)
    if interrupted:
        # tcpdump's cleanup(): finish the line that may have been cut off
        out("")
    err(f"{captured} packet{_plural(captured)} captured")
    err(f"{captured} packet{_plural(captured)} received by filter")
    err(f"{dropped} packet{_plural(dropped)} dropped by kernel")
    return 0
