"""The Internet checksum (RFC 1071) with the kernel's names.

Names and meanings follow include/net/checksum.h and arch/x86/include/asm/checksum_64.h,
with one difference of representation: the kernel carries a partial sum as a 32-bit
`__wsum` that it folds only at the end, while here every partial sum is already folded
to 16 bits. Both are the same value in ones' complement arithmetic, so `csum_fold` of
either gives the same header field.

A folded sum is 0 only when every word summed was 0: the end-around carry never turns a
nonzero total into +0, it gives 0xFFFF (-0) instead. The functions here keep that
distinction, because the kernel's results do (csum_fold(0) is 0xFFFF, csum_fold(0xFFFF)
is 0).
"""

from __future__ import annotations

# RFC 1071 section 2 (C), parallel summation, taken to its limit: the sum of 16-bit
# big-endian words is congruent mod 0xFFFF to the whole buffer read as one big-endian
# integer, since 0x10000 = 1 (mod 0xFFFF). int.from_bytes and one `%` cost ~3 us for a
# 1472-byte payload where a loop over words costs ~80 (scripts/bench_checksum.py).
_from_bytes = int.from_bytes

# Above _SPLIT_MIN bytes the buffer is read as even-length pieces whose integers are
# added before the `%`: the reduction, a division per 30-bit digit, is what dominates, and
# it then runs over one piece's digits. Four pieces save ~30% at 1472 bytes; pieces of
# _PIECE bytes save ~25% at 64 KiB; below a few hundred bytes the extra calls cost more.
_SPLIT_MIN = 512
_LOOP_MIN = 16384
_PIECE = 4096


def csum_partial(buf: bytes | bytearray | memoryview, csum: int = 0) -> int:
    """Ones' complement sum of `buf` as big-endian 16-bit words, added to `csum`.

    An odd trailing byte is the high half of a last word padded with zero (RFC 1071
    section 4.1). The result is folded to 16 bits and not inverted: feed it to
    `csum_fold` to get the value a header stores. `csum` is any non-negative partial
    sum (folded or not).
    """
    n = len(buf)
    if n & 1:
        n -= 1
        csum += buf[n] << 8
        buf = buf[:n]
    if n <= _SPLIT_MIN:
        s = _from_bytes(buf, "big")
    elif n <= _LOOP_MIN:
        q = (n >> 3) << 1
        s = (
            _from_bytes(buf[:q], "big")
            + _from_bytes(buf[q : q + q], "big")
            + _from_bytes(buf[q + q : 3 * q], "big")
            + _from_bytes(buf[3 * q :], "big")
        )
    else:
        s = 0
        for i in range(0, n, _PIECE):
            s += _from_bytes(buf[i : i + _PIECE], "big")
    r = (s + csum) % 0xFFFF
    if r:
        return r
    return 0xFFFF if s or csum else 0


def _fold16(csum: int) -> int:
    # End-around carry of any non-negative sum, as csum_fold's two additions do for 32 bits.
    r = csum % 0xFFFF
    if r or not csum:
        return r
    return 0xFFFF


def csum_fold(csum: int) -> int:
    """Fold a partial sum to 16 bits and invert it: the value to store in a header.

    csum_fold(0) is 0xFFFF and csum_fold(0xFFFF) is 0, as in the kernel.
    """
    if csum > 0xFFFF:
        csum = _fold16(csum)
    return ~csum & 0xFFFF


def csum_add(a: int, b: int) -> int:
    """Ones' complement 16-bit addition of two partial sums."""
    return _fold16(a + b)


def csum_sub(a: int, b: int) -> int:
    """Ones' complement 16-bit subtraction: csum_add(a, ~b), as include/net/checksum.h."""
    if b > 0xFFFF:
        b = _fold16(b)
    return _fold16(a + (~b & 0xFFFF))


def csum_tcpudp_nofold(saddr: int, daddr: int, length: int, proto: int, csum: int = 0) -> int:
    """Partial sum of the IPv4 pseudo-header (RFC 768, RFC 793 section 3.1) plus `csum`.

    The kernel returns an unfolded 32-bit `__wsum`; this returns it folded to 16 bits,
    not inverted. `saddr`/`daddr` are host-order ints; `length` is the transport length
    (the UDP header's len field for UDP).
    """
    return _fold16(
        (saddr >> 16) + (saddr & 0xFFFF) + (daddr >> 16) + (daddr & 0xFFFF) + proto + length + csum
    )


def csum_tcpudp_magic(saddr: int, daddr: int, length: int, proto: int, csum: int) -> int:
    """The transport checksum field for a segment whose own partial sum is `csum`.

    On receive, passing the partial sum of the segment as it arrived (checksum field
    included) gives 0 when the checksum is right.
    """
    return csum_fold(csum_tcpudp_nofold(saddr, daddr, length, proto, csum))


def ip_fast_csum(header: bytes | bytearray | memoryview, ihl: int | None = None) -> int:
    """The IPv4 header checksum over `ihl` 32-bit words (default: all of `header`).

    Like the kernel's, the result is 0 for a header whose checksum field is right
    (ip_rcv_core drops and counts InCsumErrors otherwise); to fill a header in, zero the
    field and store the result.
    """
    if ihl is not None:
        header = header[: ihl << 2]
    return csum_fold(csum_partial(header))
