"""pcapng files for `stackemu tcpdump -w x.pcapng` (the pcapng spec, IETF
draft-ietf-opsawg-pcapng), written with dpkt's block classes: one section header
block, an interface description block per interface the first time it has a packet
(name, link type, snapshot length, nanosecond timestamps, the capture filter), and an
enhanced packet block per packet with its direction and reception type (epb_flags),
the packets the tap lost just before it (epb_dropcount), and comments where the packet
has something to say (which kernel functions the layer boundary lies between, a
checksum the device still has to fill in, a GSO packet).
"""

from __future__ import annotations

import struct
from typing import IO, Any

from dpkt import pcapng  # type: ignore[import-untyped]

# https://www.tcpdump.org/linktypes.html
LINKTYPE_ETHERNET = 1
LINKTYPE_IPV4 = 228

# Options (the spec's numbers; dpkt names the ones it knows).
OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_OS = 3
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9
IF_FILTER = 11
EPB_FLAGS = 2
EPB_DROPCOUNT = 4

# epb_flags: bits 0-1 the direction, bits 2-4 the reception type.
EPB_INBOUND = 0b01
EPB_OUTBOUND = 0b10
_RECEPTION = {0: 0b001, 1: 0b011, 2: 0b010, 3: 0b100}  # unicast, broadcast, multicast, promiscuous

# include/uapi/linux/if_packet.h
PACKET_OUTGOING = 4


def epb_flags(pkt_type: int) -> int:
    """The flags word for a packet of this skb->pkt_type: PACKET_OUTGOING is outbound,
    the rest inbound, with PACKET_HOST/BROADCAST/MULTICAST/OTHERHOST as the spec's
    unicast/broadcast/multicast/promiscuous reception types."""
    if pkt_type == PACKET_OUTGOING:
        return EPB_OUTBOUND
    return EPB_INBOUND | _RECEPTION.get(pkt_type, 0) << 2


def _opt(code: int, data: bytes | str) -> Any:
    raw = data.encode() if isinstance(data, str) else data
    return pcapng.PcapngOptionLE(code=code, data=raw)


def _opts(pairs: list[tuple[int, bytes | str]]) -> list[Any]:
    return [_opt(code, data) for code, data in pairs] + [_opt(OPT_ENDOFOPT, b"")]


class PcapngWriter:
    """A pcapng file being written, flushed after every block so a reader (or a
    Ctrl-C) finds whole blocks."""

    def __init__(self, f: IO[bytes], snaplen: int, userappl: str = "stackemu tcpdump") -> None:
        self._f = f
        self._snaplen = snaplen
        self._ifaces: dict[object, int] = {}
        shb = pcapng.SectionHeaderBlockLE(
            opts=_opts([(SHB_OS, "stackemu (Linux UDP/IPv4 stack emulation)"), (SHB_USERAPPL, userappl)])
        )
        self._write(bytes(shb))

    def _write(self, block: bytes) -> None:
        self._f.write(block)
        self._f.flush()

    def interface(self, key: object, name: str, description: str, linktype: int, filter_expr: str) -> int:
        """The interface ID of `key`, with its description block written the first
        time it is asked for."""
        iface = self._ifaces.get(key)
        if iface is not None:
            return iface
        opts: list[tuple[int, bytes | str]] = [
            (IF_NAME, name),
            (IF_DESCRIPTION, description),
            (IF_TSRESOL, b"\x09"),  # 10**-9 s
        ]
        if filter_expr:
            opts.append((IF_FILTER, b"\x00" + filter_expr.encode()))  # 0: a libpcap filter string
        idb = pcapng.InterfaceDescriptionBlockLE(linktype=linktype, snaplen=self._snaplen, opts=_opts(opts))
        self._write(bytes(idb))
        iface = self._ifaces[key] = len(self._ifaces)
        return iface

    def write(
        self, iface: int, packet: bytes, tstamp_ns: int, pkt_type: int, dropcount: int, comments: list[str]
    ) -> None:
        opts: list[tuple[int, bytes | str]] = [(OPT_COMMENT, c) for c in comments]
        opts.append((EPB_FLAGS, struct.pack("<I", epb_flags(pkt_type))))
        if dropcount:
            opts.append((EPB_DROPCOUNT, struct.pack("<Q", dropcount)))
        epb = pcapng.EnhancedPacketBlockLE(
            iface_id=iface,
            ts_high=tstamp_ns >> 32,
            ts_low=tstamp_ns & 0xFFFFFFFF,
            pkt_data=packet,
            opts=_opts(opts),
        )
        self._write(bytes(epb))
