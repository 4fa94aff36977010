"""`stackemu tcpdump`: the packet taps of a host's NIC (the Capture stream) as tcpdump
4.99 shows them with -n, or written with -w as a classic pcap file (nanosecond
timestamps, DLT_EN10MB) or a pcapng file (`-w x.pcapng` or --pcapng: an interface
block per device, direction flags, comments) that tcpdump, tshark and Wireshark read.

Filter expressions are tcpdump's, compiled by libpcap (pcapfilter.py) and run by the
tap in the service, so refused packets never leave it. An emulator-only extra: the
same capture at the boundary between IP and UDP (`-i HOST:ip-udp` or --layer ip-udp),
raw IPv4 packets (LINKTYPE_IPV4) from the IP service's Capture stream.

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

from stackemu.ip.v1 import ip_pb2
from stackemu.nic.v1 import nic_pb2
from stackemu.tools.common import Ip, Nic, Service, ToolExit, default_host, err, fail, out, split_dev
from stackemu.tools.iproute import IFF_LOOPBACK, IFF_UP
from stackemu.tools.pcapfilter import FilterError, compile_filter, dump
from stackemu.tools.pcapng import LINKTYPE_ETHERNET, LINKTYPE_IPV4, PcapngWriter

SNAPLEN = 262144  # tcpdump's default snapshot length
PACKET_OUTGOING = 4  # include/uapi/linux/if_packet.h
CHECKSUM_PARTIAL = 3  # include/linux/skbuff.h
SLL2_HDR_LEN = 20

USAGE = """\
Usage: stackemu tcpdump [ --host HOST ] [ -denlU ] [ -c count ] [ -i [HOST:]interface|any ]
               [ --layer ip-udp ] [ -w file ] [ --pcapng ] [ expression ]
-i HOST:ip-udp (or --layer ip-udp) captures between IP and UDP (raw IPv4);
-w x.pcapng or --pcapng writes pcapng; -d/-dd/-ddd print the compiled filter."""

# pcap_datalink_val_to_name() and _to_description() as tcpdump's "link-type" shows them.
_LINK_NAMES = {LINKTYPE_ETHERNET: "EN10MB (Ethernet)", LINKTYPE_IPV4: "IPV4 (Raw IPv4)"}

# Layer boundaries a capture can sit at (emulator-only extras), and what they are.
BOUNDARIES = {
    "ip-udp": "the boundary between IP and UDP (ip_local_deliver_finish -> udp_rcv, "
    "udp_send_skb -> ip_send_skb)",
}

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
    """A classic pcap file with nanosecond timestamps (magic 0xa1b23c4d)."""

    def __init__(self, f: IO[bytes], linktype: int = LINKTYPE_ETHERNET) -> None:
        self._f = f
        self._w = dpkt.pcap.Writer(f, snaplen=SNAPLEN, linktype=linktype, nano=True)
        f.flush()

    def write(self, frame: bytes, tstamp_ns: int) -> None:
        # A Decimal keeps every nanosecond; a float second count would not.
        self._w.writepkt_time(frame, Decimal(tstamp_ns) / Decimal(1_000_000_000))
        self._f.flush()


def _plural(n: int) -> str:
    return "" if n == 1 else "s"


class _Opts:
    iface: str | None = None
    layer: str | None = None
    wfile: str | None = None
    pcapng = False
    count = 0
    dflag = 0
    eflag = False
    expr: list[str]

    def __init__(self) -> None:
        self.expr = []


def parse_args(argv: Sequence[str]) -> _Opts:
    """getopt_long() over tcpdump's options that the emulator has, and its own long
    ones (--layer, --pcapng); the rest of the words are the filter expression."""
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
            name, eq, val = a.partition("=")
            if name == "--help":
                out(USAGE)
                fail(0)
            if name == "--pcapng" and not eq:
                o.pcapng = True
            elif name == "--layer":
                if not eq:
                    i += 1
                    if i >= len(args):
                        fail(1, "tcpdump: option '--layer' requires an argument", USAGE)
                    val = args[i]
                o.layer = val
            else:
                fail(1, f"tcpdump: unrecognized option '{a}'", USAGE)
            i += 1
            continue
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
            elif c == "d":
                o.dflag += 1
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
    if o.layer is not None:
        if o.iface is not None:
            fail(1, "tcpdump: -i and --layer both say where to capture: give one")
        if o.layer not in BOUNDARIES:
            fail(1, f"tcpdump: {o.layer}: no such layer boundary (there is: {', '.join(BOUNDARIES)})")
        host, dev = default_host(host), o.layer
    else:
        host, dev = split_dev(o.iface, host) if o.iface else (default_host(host), "")
    if dev in BOUNDARIES:
        # No device to open first: the filter, then the IP service.
        prog = _compile(o, "IPV4")
        if prog is None:
            return 0
        with Ip(host) as ip:
            return _run(ip, host, dev, o, prog, LINKTYPE_IPV4)
    with Nic(host) as nic:
        links: nic_pb2.ListLinksResponse = nic.call("ListLinks", nic_pb2.ListLinksRequest())
        if not dev:
            # pcap_lookupdev(): the first device that is up and not loopback
            up = [lk.name for lk in links.links if lk.flags & IFF_UP and not lk.flags & IFF_LOOPBACK]
            dev = up[0] if up else "any"
        if dev != "any" and all(lk.name != dev for lk in links.links):
            fail(1, f"tcpdump: {dev}: No such device exists", "(No such device exists)")
        # tcpdump opens the device, then compiles the filter.
        prog = _compile(o, "EN10MB")
        if prog is None:
            return 0
        return _run(nic, host, dev, o, prog, LINKTYPE_ETHERNET)


def _compile(o: _Opts, dlt: str) -> list[nic_pb2.SockFilter] | None:
    """The filter for a tap of link type `dlt`, or None when -d printed it instead."""
    try:
        if o.dflag:
            text, warnings = dump(o.expr, dlt, "-" + "d" * min(o.dflag, 3))
            if warnings:
                err(warnings.rstrip("\n"))
            out(text.rstrip("\n"))
            return None
        prog, warnings = compile_filter(o.expr, dlt)
    except FilterError as e:
        if e.stderr:
            err(e.stderr.rstrip("\n"))
        raise ToolExit(e.code) from None
    if warnings:
        err(warnings.rstrip("\n"))
    return prog


def _run(
    service: Service, host: str, dev: str, o: _Opts, prog: list[nic_pb2.SockFilter], linktype: int
) -> int:
    """The capture into the output -w names, or as lines."""
    if o.wfile is None:
        return _capture(service, host, dev, o, prog, None, linktype)
    try:
        f = open(o.wfile, "wb")  # noqa: SIM115 - closed in the finally below
    except OSError as e:
        fail(1, f"tcpdump: {o.wfile}: {e.strerror}")
    try:
        if o.pcapng or o.wfile.lower().endswith(".pcapng"):
            writer: PcapWriter | PcapngWriter = PcapngWriter(f, SNAPLEN)
        else:
            writer = PcapWriter(f, linktype)
        return _capture(service, host, dev, o, prog, writer, linktype)
    finally:
        f.close()


def _boundary_comments(resp: ip_pb2.CaptureResponse) -> list[str]:
    """What a pcapng reader should know of a packet at the IP/UDP boundary."""
    up = resp.pkt_type != PACKET_OUTGOING
    notes = ["ip_local_deliver_finish -> udp_rcv" if up else "udp_send_skb -> ip_send_skb"]
    if resp.ip_summed == CHECKSUM_PARTIAL and not up:
        notes.append("CHECKSUM_PARTIAL: the UDP checksum is the pseudo-header sum; the device completes it")
    if resp.gso_size:
        notes.append(f"GSO: gso_size {resp.gso_size}, {resp.gso_segs} segments (cut below IP)")
    return notes


def _capture(
    service: Service,
    host: str,
    dev: str,
    o: _Opts,
    prog: list[nic_pb2.SockFilter],
    writer: PcapWriter | PcapngWriter | None,
    linktype: int,
) -> int:
    boundary = dev in BOUNDARIES
    sll2 = dev == "any" and writer is None
    link = "LINUX_SLL2 (Linux cooked v2)" if sll2 else _LINK_NAMES[linktype]
    listening = f"listening on {dev}, link-type {link}, snapshot length {SNAPLEN} bytes"
    filter_expr = " ".join(o.expr)
    req: Any
    if boundary:
        req = ip_pb2.CaptureRequest(count=o.count, filter=prog)
    else:
        req = nic_pb2.CaptureRequest(device="" if dev == "any" else dev, count=o.count, filter=prog)
    captured = dropped = 0
    interrupted = False
    call: Any = None

    def interrupt(signum: int, frame: object) -> None:
        """tcpdump's cleanup(), for SIGINT and SIGTERM alike: the capture stream is
        cancelled, so the loop below ends where it waits (a KeyboardInterrupt raised
        inside gRPC's waiting could leave it stuck)."""
        nonlocal interrupted
        interrupted = True
        if call is None:
            raise KeyboardInterrupt
        call.cancel()

    restore: list[tuple[int, Any]] = []
    if threading.current_thread() is threading.main_thread():
        restore = [(n, signal.signal(n, interrupt)) for n in (signal.SIGINT, signal.SIGTERM)]
    try:
        with service.rpc_errors("Capture"):
            try:
                call = service.stub.Capture(req)
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
                    lost = resp.dropped - dropped if resp.dropped > dropped else 0
                    dropped = max(dropped, resp.dropped)
                    captured += 1
                    data = resp.packet if boundary else resp.frame
                    if isinstance(writer, PcapWriter):
                        writer.write(data, resp.tstamp)
                    elif writer is not None:
                        if boundary:
                            desc = f"host {host}: {BOUNDARIES[dev]}"
                            iface = writer.interface(dev, f"{host}:{dev}", desc, linktype, filter_expr)
                            comments = _boundary_comments(resp)
                        else:
                            desc = f"host {host}: device {resp.device} (packet taps)"
                            name = f"{host}:{resp.device}"
                            iface = writer.interface(resp.ifindex, name, desc, linktype, filter_expr)
                            comments = []
                        writer.write(iface, data, resp.tstamp, resp.pkt_type, lost, comments)
                    else:
                        if boundary:
                            # print-raw.c: with -e, "ip: " where a link header would be
                            line = ("ip: " if o.eflag else "") + ip_print(data, o.eflag)
                        elif sll2:
                            line = decode_sll2(data, resp.ifindex, resp.device, resp.pkt_type, o.eflag)
                        else:
                            line = decode(data, o.eflag)
                        out(f"{timestamp(resp.tstamp)} {line}")
                    if o.count and captured >= o.count:
                        break
            except grpc.RpcError:  # the stream cancelled by the interrupt
                if not interrupted:
                    raise
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if call is not None:
            call.cancel()
        for signum, handler in restore:
            signal.signal(signum, handler)
    if interrupted:
        # tcpdump's cleanup(): finish the line that may have been cut off
        out("")
    err(f"{captured} packet{_plural(captured)} captured")
    err(f"{captured} packet{_plural(captured)} received by filter")
    err(f"{dropped} packet{_plural(dropped)} dropped by kernel")
    return 0
