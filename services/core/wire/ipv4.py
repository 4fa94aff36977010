"""IPv4 header (RFC 791; include/uapi/linux/ip.h, include/net/ip.h, net/ipv4/ip_options.c).

Addresses are ints in host byte order (the value of a `__be32` read big-endian), e.g.
10.0.0.1 is 0x0A000001.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from services.core.checksum import csum_fold, csum_partial, ip_fast_csum
from services.core.wire.errors import WireError

IPVERSION = 4
IPV4_HLEN_MIN = 20
IPV4_HLEN_MAX = 60
MAX_IPOPTLEN = 40
IP_MAX_PACKET = 0xFFFF
IPDEFTTL = 64
MAXTTL = 255

VER_IHL = 0
TOS = 1
TOT_LEN = 2
ID = 4
FRAG_OFF = 6
TTL = 8
PROTOCOL = 9
CHECK = 10
SADDR = 12
DADDR = 16
OPTIONS = 20

# frag_off bits, in host order (include/net/ip.h). IP_CE is the reserved bit ("Flag:
# congestion"); ip_rcv does not check it.
IP_CE = 0x8000
IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFSET = 0x1FFF

IPPROTO_IP = 0
IPPROTO_ICMP = 1
IPPROTO_IGMP = 2
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_UDPLITE = 136
IPPROTO_RAW = 255

INADDR_ANY = 0x00000000
INADDR_BROADCAST = 0xFFFFFFFF
INADDR_LOOPBACK = 0x7F000001

# Option type octet: copied flag, class, number (RFC 791 page 15, include/uapi/linux/ip.h).
IPOPT_COPY = 0x80
IPOPT_CLASS_MASK = 0x60
IPOPT_NUMBER_MASK = 0x1F
IPOPT_CONTROL = 0x00
IPOPT_MEASUREMENT = 0x40

IPOPT_END = 0
IPOPT_NOOP = 1
IPOPT_SEC = 130
IPOPT_LSRR = 131
IPOPT_TIMESTAMP = 68
IPOPT_TS = IPOPT_TIMESTAMP
IPOPT_CIPSO = 134
IPOPT_RR = 7
IPOPT_SID = 136
IPOPT_SSRR = 137
IPOPT_RA = 148
IPOPT_EOL = IPOPT_END
IPOPT_NOP = IPOPT_NOOP

# Offsets inside one option, and the smallest legal pointer (RFC 791: it counts from 1
# and starts after type, length and itself).
IPOPT_OPTVAL = 0
IPOPT_OLEN = 1
IPOPT_OFFSET = 2
IPOPT_MINOFF = 4

IPOPT_TS_TSONLY = 0
IPOPT_TS_TSANDADDR = 1
IPOPT_TS_PRESPEC = 3

_FIXED = struct.Struct("!BBHHHBBHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


def ipopt_copied(opt_type: int) -> bool:
    """IPOPT_COPIED(): whether a fragment other than the first carries the option
    (ip_options_fragment keeps only these)."""
    return bool(opt_type & IPOPT_COPY)


def ip_to_str(addr: int) -> str:
    if not 0 <= addr <= 0xFFFFFFFF:
        raise WireError(f"ipv4: {addr!r} is not a 32-bit address")
    return f"{addr >> 24}.{(addr >> 16) & 0xFF}.{(addr >> 8) & 0xFF}.{addr & 0xFF}"


def ip_from_str(text: str) -> int:
    """Parse a dotted quad ("10.0.0.1") as inet_pton(AF_INET) does: exactly four
    decimal parts, no leading zeros, nothing around them."""
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
    except (OSError, TypeError):
        raise WireError(f"ipv4: {text!r} is not an IPv4 address like 10.0.0.1") from None
    addr: int = _U32.unpack(packed)[0]
    return addr


def ipv4_is_multicast(addr: int) -> bool:
    return (addr & 0xF0000000) == 0xE0000000


def ipv4_is_local_multicast(addr: int) -> bool:
    return (addr & 0xFFFFFF00) == 0xE0000000


def ipv4_is_lbcast(addr: int) -> bool:
    return addr == INADDR_BROADCAST


def ipv4_is_loopback(addr: int) -> bool:
    return (addr & 0xFF000000) == 0x7F000000


def ipv4_is_zeronet(addr: int) -> bool:
    return (addr & 0xFF000000) == 0


class Ipv4Packet:
    """A view over an IPv4 packet in `buf`; reads, and writes in place when `buf` is a
    bytearray or writable memoryview.

    A view keeps `buf` as given. `options` and `payload` return memoryviews, which pin a
    bytearray's size while they live (bytearray cannot be resized under an export).
    """

    __slots__ = ("_buf",)

    def __init__(self, buf: bytes | bytearray | memoryview) -> None:
        self._buf = buf

    @classmethod
    def new_checked(cls, buf: bytes | bytearray | memoryview) -> Ipv4Packet:
        """Wrap untrusted bytes so that every accessor is safe to call.

        Rejects only what would make the accessors read past the buffer: fewer than 20
        bytes, or fewer than ihl*4. Version, ihl < 5, checksum and tot_len are left to
        the caller because ip_rcv_core checks each itself and counts them apart
        (InHdrErrors, InCsumErrors, InTruncatedPkts). Both rejections here are
        InHdrErrors there: pskb_may_pull of the header fails.
        """
        n = len(buf)
        if n < IPV4_HLEN_MIN:
            raise WireError(f"ipv4: buffer of {n} bytes shorter than {IPV4_HLEN_MIN}-byte header")
        hlen = (buf[VER_IHL] & 0x0F) << 2
        if n < hlen:
            raise WireError(f"ipv4: buffer of {n} bytes shorter than {hlen}-byte header (ihl)")
        return cls(buf)

    @property
    def buffer(self) -> bytes | bytearray | memoryview:
        return self._buf

    @property
    def version(self) -> int:
        return self._buf[VER_IHL] >> 4

    @property
    def ihl(self) -> int:
        return self._buf[VER_IHL] & 0x0F

    @property
    def header_len(self) -> int:
        return (self._buf[VER_IHL] & 0x0F) << 2

    @property
    def tos(self) -> int:
        return self._buf[TOS]

    @property
    def total_len(self) -> int:
        v: int = _U16.unpack_from(self._buf, TOT_LEN)[0]
        return v

    @property
    def ident(self) -> int:
        v: int = _U16.unpack_from(self._buf, ID)[0]
        return v

    @property
    def frag_off(self) -> int:
        """The raw 16-bit flags-and-offset field (iph->frag_off in host order)."""
        v: int = _U16.unpack_from(self._buf, FRAG_OFF)[0]
        return v

    @property
    def flags(self) -> int:
        """frag_off with the offset masked out: test it against IP_CE, IP_DF, IP_MF."""
        return self._buf[FRAG_OFF] << 8 & ~IP_OFFSET & 0xFFFF

    @property
    def dont_frag(self) -> bool:
        return bool(self._buf[FRAG_OFF] & (IP_DF >> 8))

    @property
    def more_frags(self) -> bool:
        return bool(self._buf[FRAG_OFF] & (IP_MF >> 8))

    @property
    def frag_offset(self) -> int:
        """Fragment offset in bytes (the field counts 8-byte units)."""
        v: int = _U16.unpack_from(self._buf, FRAG_OFF)[0]
        return (v & IP_OFFSET) << 3

    @property
    def is_fragment(self) -> bool:
        """ip_is_fragment(): MF set or a nonzero offset."""
        v: int = _U16.unpack_from(self._buf, FRAG_OFF)[0]
        return bool(v & (IP_MF | IP_OFFSET))

    @property
    def ttl(self) -> int:
        return self._buf[TTL]

    @property
    def protocol(self) -> int:
        return self._buf[PROTOCOL]

    @property
    def checksum(self) -> int:
        v: int = _U16.unpack_from(self._buf, CHECK)[0]
        return v

    @property
    def src(self) -> int:
        v: int = _U32.unpack_from(self._buf, SADDR)[0]
        return v

    @property
    def dst(self) -> int:
        v: int = _U32.unpack_from(self._buf, DADDR)[0]
        return v

    @property
    def options(self) -> memoryview:
        """The option area as it is on the wire, padding included (empty if ihl <= 5)."""
        return memoryview(self._buf)[OPTIONS : (self._buf[VER_IHL] & 0x0F) << 2]

    @property
    def payload(self) -> memoryview:
        """The bytes after the header up to tot_len, or to the end of a shorter buffer.

        Bytes past tot_len (Ethernet padding) are not payload: ip_rcv_core trims them
        with pskb_trim_rcsum.
        """
        b = self._buf
        end: int = _U16.unpack_from(b, TOT_LEN)[0]
        return memoryview(b)[(b[VER_IHL] & 0x0F) << 2 : min(end, len(b))]

    def verify_checksum(self) -> bool:
        """ip_fast_csum(iph, iph->ihl) == 0, as ip_rcv_core checks it."""
        return ip_fast_csum(self._buf[: (self._buf[VER_IHL] & 0x0F) << 2]) == 0

    def _writable(self) -> bytearray | memoryview:
        if isinstance(self._buf, bytes):
            raise TypeError("ipv4: cannot write into a packet held in bytes")
        return self._buf

    def set_tos(self, tos: int) -> None:
        self._writable()[TOS] = tos

    def set_total_len(self, total_len: int) -> None:
        _U16.pack_into(self._writable(), TOT_LEN, total_len)

    def set_ident(self, ident: int) -> None:
        _U16.pack_into(self._writable(), ID, ident)

    def set_frag_off(self, frag_off: int) -> None:
        """Store the raw flags-and-offset field."""
        _U16.pack_into(self._writable(), FRAG_OFF, frag_off)

    def set_frag(self, frag_offset: int, more_frags: bool, dont_frag: bool = False) -> None:
        """Write the fragment fields as ip_do_fragment does for each fragment: the
        offset in bytes (a multiple of 8), MF, and DF (set only for IPSKB_FRAG_PMTU)."""
        if frag_offset & 7 or not 0 <= frag_offset <= IP_OFFSET << 3:
            raise WireError(f"ipv4: fragment offset {frag_offset} is not a multiple of 8 in range")
        v = frag_offset >> 3
        if more_frags:
            v |= IP_MF
        if dont_frag:
            v |= IP_DF
        _U16.pack_into(self._writable(), FRAG_OFF, v)

    def set_ttl(self, ttl: int) -> None:
        self._writable()[TTL] = ttl

    def set_protocol(self, protocol: int) -> None:
        self._writable()[PROTOCOL] = protocol

    def set_checksum(self, checksum: int) -> None:
        _U16.pack_into(self._writable(), CHECK, checksum)

    def set_src(self, addr: int) -> None:
        _U32.pack_into(self._writable(), SADDR, addr)

    def set_dst(self, addr: int) -> None:
        _U32.pack_into(self._writable(), DADDR, addr)

    def fill_checksum(self) -> None:
        """ip_send_check(): zero the field, then store ip_fast_csum of the header."""
        b = self._writable()
        b[CHECK] = 0
        b[CHECK + 1] = 0
        _U16.pack_into(b, CHECK, ip_fast_csum(b[: (b[VER_IHL] & 0x0F) << 2]))

    def decrease_ttl(self) -> int:
        """ip_decrease_ttl(): decrement TTL and patch the checksum incrementally (RFC 1624:
        the TTL is the high byte of its word, so the sum drops by 0x0100 and the stored
        complement grows by it, with end-around carry). Returns the new TTL. The caller
        (ip_forward) has already dropped packets whose TTL is 1 or less."""
        b = self._writable()
        check: int = _U16.unpack_from(b, CHECK)[0] + 0x0100
        # The kernel's `check + (check >= 0xFFFF)`: a result of 0xFFFF becomes 0.
        _U16.pack_into(b, CHECK, (check + (check >= 0xFFFF)) & 0xFFFF)
        ttl = (b[TTL] - 1) & 0xFF
        b[TTL] = ttl
        return ttl


@dataclass(frozen=True, slots=True)
class IpOption:
    """One option of the option area: its type octet and the bytes after its length
    octet. `offset` is where it starts in the option area (its pointer for an ICMP
    parameter problem is IPV4_HLEN_MIN + offset); it is left out of comparisons."""

    type: int
    data: bytes
    offset: int = field(default=0, compare=False)


class IpOptionError(WireError):
    """A malformed option area, with where ip_options_compile points at the fault."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset

    @property
    def pointer(self) -> int:
        """pp_ptr - iph: the octet an ICMP parameter problem points at."""
        return IPV4_HLEN_MIN + self.offset


def parse_options(opts: bytes | bytearray | memoryview) -> list[IpOption]:
    """Split an option area into options with ip_options_compile's framing rules.

    IPOPT_END ends the area (what follows is padding); IPOPT_NOOP is one octet; every
    other option has a length octet that must be at least 2 and must not run past the
    area. END and NOOP are not returned. The meaning of each option (RR and TS pointers,
    source routes) is for the IP layer to check.
    """
    out: list[IpOption] = []
    n = len(opts)
    i = 0
    while i < n:
        t = opts[i]
        if t == IPOPT_END:
            break
        if t == IPOPT_NOOP:
            i += 1
            continue
        if n - i < 2:
            raise IpOptionError(f"ipv4: option {t} at offset {i} has no length octet", i)
        optlen = opts[i + 1]
        if optlen < 2 or optlen > n - i:
            raise IpOptionError(
                f"ipv4: option {t} at offset {i} has length {optlen}, {n - i} bytes left in the option area",
                i,
            )
        out.append(IpOption(t, bytes(opts[i + 2 : i + optlen]), i))
        i += optlen
    return out


@dataclass(frozen=True, slots=True)
class Ipv4Repr:
    """The header fields a sender chooses. `options` is the option area's content; emit
    pads it with IPOPT_END to a multiple of 4 (ip_options_get does so before
    ip_options_build copies it in)."""

    src: int
    dst: int
    protocol: int
    payload_len: int
    ttl: int = IPDEFTTL
    tos: int = 0
    ident: int = 0
    dont_frag: bool = False
    more_frags: bool = False
    frag_offset: int = 0
    options: bytes = b""

    @property
    def header_len(self) -> int:
        return IPV4_HLEN_MIN + ((len(self.options) + 3) & ~3)

    @property
    def total_len(self) -> int:
        return self.header_len + self.payload_len

    @classmethod
    def parse(cls, packet: Ipv4Packet) -> Ipv4Repr:
        """Read a packet that passed new_checked. Rejects what leaves no meaningful
        header (version, ihl, tot_len shorter than the header or longer than the
        buffer); the checksum is not looked at, see Ipv4Packet.verify_checksum."""
        b = packet.buffer
        ver_ihl, tos, tot_len, ident, frag_off, ttl, proto, _, src, dst = _FIXED.unpack_from(b)
        if ver_ihl >> 4 != IPVERSION:
            raise WireError(f"ipv4: version {ver_ihl >> 4}, expected 4")
        hlen = (ver_ihl & 0x0F) << 2
        if hlen < IPV4_HLEN_MIN:
            raise WireError(f"ipv4: ihl {ver_ihl & 0x0F} below the minimum of 5")
        if tot_len < hlen:
            raise WireError(f"ipv4: tot_len {tot_len} shorter than {hlen}-byte header")
        if tot_len > len(b):
            raise WireError(f"ipv4: tot_len {tot_len} longer than the {len(b)}-byte buffer")
        return cls(
            src,
            dst,
            proto,
            tot_len - hlen,
            ttl,
            tos,
            ident,
            bool(frag_off & IP_DF),
            bool(frag_off & IP_MF),
            (frag_off & IP_OFFSET) << 3,
            bytes(b[OPTIONS:hlen]),
        )

    def emit(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        """Write the whole header, checksum included, at `offset`."""
        opts = self.options
        olen = len(opts)
        if olen > MAX_IPOPTLEN:
            raise WireError(f"ipv4: {olen} bytes of options, at most {MAX_IPOPTLEN} fit")
        padded = (olen + 3) & ~3
        hlen = IPV4_HLEN_MIN + padded
        tot_len = hlen + self.payload_len
        if tot_len > IP_MAX_PACKET:
            raise WireError(f"ipv4: total length {tot_len} exceeds {IP_MAX_PACKET}")
        fo = self.frag_offset
        if fo & 7 or not 0 <= fo <= IP_OFFSET << 3:
            raise WireError(f"ipv4: fragment offset {fo} is not a multiple of 8 in range")
        frag_off = fo >> 3
        if self.dont_frag:
            frag_off |= IP_DF
        if self.more_frags:
            frag_off |= IP_MF
        ver_ihl = 0x40 | (hlen >> 2)
        src = self.src
        dst = self.dst
        try:
            _FIXED.pack_into(
                buf,
                offset,
                ver_ihl,
                self.tos,
                tot_len,
                self.ident,
                frag_off,
                self.ttl,
                self.protocol,
                0,
                src,
                dst,
            )
        except struct.error as e:
            raise WireError(f"ipv4: cannot emit header at offset {offset}: {e}") from None
        # The sum of the fixed header is built from the fields rather than read back.
        s = (
            (ver_ihl << 8 | self.tos)
            + tot_len
            + self.ident
            + frag_off
            + (self.ttl << 8 | self.protocol)
            + (src >> 16)
            + (src & 0xFFFF)
            + (dst >> 16)
            + (dst & 0xFFFF)
        )
        if padded:
            start = offset + OPTIONS
            buf[start : start + olen] = opts
            buf[start + olen : start + padded] = bytes(padded - olen)
            # Zero padding adds nothing to the sum, and OPTIONS is word-aligned.
            s += csum_partial(opts)
        _U16.pack_into(buf, offset + CHECK, csum_fold(s))
