"""Measure csum_partial against a word-by-word loop on a full-size UDP payload.

1472 bytes is what fits in one 1500-byte MTU datagram after the IPv4 and UDP headers.
Run: .venv/bin/python scripts/bench_checksum.py [--size N] [--number N]
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.core.checksum import csum_partial


def naive_csum_partial(buf: bytes, csum: int = 0) -> int:
    n = len(buf)
    for i in range(0, n - 1, 2):
        csum += (buf[i] << 8) | buf[i + 1]
    if n & 1:
        csum += buf[-1] << 8
    while csum >> 16:
        csum = (csum & 0xFFFF) + (csum >> 16)
    return csum


def per_call_us(fn: Callable[[bytes], int], buf: bytes, number: int) -> float:
    best = min(timeit.repeat(lambda: fn(buf), number=number, repeat=5))
    return best / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1472)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    buf = os.urandom(args.size)
    if csum_partial(buf) != naive_csum_partial(buf):
        sys.exit("bench_checksum: csum_partial disagrees with the naive loop")
    fast = per_call_us(csum_partial, buf, args.number)
    slow = per_call_us(naive_csum_partial, buf, max(1, args.number // 50))
    print(f"csum_partial over {args.size} bytes (best of 5):")
    print(f"  naive 16-bit word loop: {slow:8.2f} us")
    print(f"  csum_partial:           {fast:8.2f} us  ({slow / fast:.0f}x faster)")


if __name__ == "__main__":
    main()
