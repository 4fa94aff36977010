"""FIB lookup cost with 10 and with 10,000 routes (random prefixes): the per-length
dicts keep a lookup to at most 33 probes a table, so the two figures stay close.

    .venv/bin/python scripts/bench_fib.py
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.core.snmp import SnmpMib
from services.ip.fib import Fib, InIfaddr, RouteConfig, inet_make_mask
from services.ip.route import Router

LOOKUPS = 20_000


def build(n: int, rng: random.Random) -> tuple[Fib, Router]:
    fib = Fib()
    router = Router(fib, SnmpMib())
    router.set_devices([(1, "lo", 65536), (2, "eth0", 1500)])
    fib.add_ifaddr(InIfaddr(1, "lo", 0x7F000001, 8), loopback=True)
    fib.add_ifaddr(InIfaddr(2, "eth0", 0x0A000001, 8), loopback=False)
    devices = router.devices()
    added = 0
    while added < n:
        plen = rng.randint(8, 32)
        dst = rng.getrandbits(32) & inet_make_mask(plen)
        if dst >> 24 in (0, 10, 127) or dst >> 28 >= 0xE:
            continue
        try:
            fib.add_route(RouteConfig(dst, plen, gateway=0x0A000002), devices)
        except Exception:
            continue
        added += 1
    return fib, router


def main() -> None:
    rng = random.Random(1)
    dests = [rng.getrandbits(32) | 0x01000000 for _ in range(LOOKUPS)]
    dests = [d for d in dests if d >> 24 not in (0, 127) and d >> 28 < 0xE]
    for n in (10, 10_000):
        fib, router = build(n, rng)
        for what, fn in (("fib.lookup", fib.lookup), ("router.output", _output(router))):
            t0 = time.perf_counter()
            for d in dests:
                fn(d)
            us = (time.perf_counter() - t0) / len(dests) * 1e6
            print(f"{n:>6} routes  {what:<14} {us:6.2f} us/lookup")


def _output(router: Router):  # type: ignore[no-untyped-def]
    def run(d: int) -> object:
        try:
            return router.output(d)
        except Exception:
            return None

    return run


if __name__ == "__main__":
    main()
