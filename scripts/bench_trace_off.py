"""What the per-packet trace costs when it is off (services/core/trace.py).

Off, a step is `skb.trace is not None` inside Tracer.__call__, and an entry point's
sampling decision is `tracer.sample` (0): one attribute test each. The step's figure
is mostly the Python call to the Tracer; the same test written at the call site is
printed beside it. Then the NIC's whole receive path (ring, NAPI poll,
eth_type_trans, GRO off, __netif_receive_skb_core: two steps and one sampling test
per frame) with its Tracer as shipped, with the calls replaced by a function that does
nothing (the path as if the trace did not exist), and with every frame traced. The
first two should agree within the run-to-run noise.

    .venv/bin/python scripts/bench_trace_off.py
"""

from __future__ import annotations

import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.core.skbuff import SkBuff, alloc_skb
from services.core.sysctl import Sysctl
from services.core.trace import SAMPLE_SYSCTL, Tracer
from services.core.wire.ethernet import ETH_P_IP
from services.nic.device import NetDevice, ether_dev
from services.nic.layer import NicLayer

CALLS = 200_000
FRAMES = 20_000
BATCH = 64
RUNS = 7
MAC = bytes.fromhex("02000a000001")
PEER = bytes.fromhex("02000a000002")


def best_ns(fn: Callable[[], None], n: int) -> float:
    """The best of RUNS runs, per call, in nanoseconds."""
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / n)
    return min(times)


def micro() -> list[tuple[str, float]]:
    tracer = Tracer("nic", "alice")
    skb = alloc_skb(64)
    skbs = [skb] * CALLS

    def empty_loop() -> None:
        for _s in skbs:
            pass

    def step_off() -> None:
        for s in skbs:
            tracer(s, "napi_gro_receive")

    def guarded_off() -> None:
        for s in skbs:
            if s.trace is not None:
                tracer(s, "napi_gro_receive")

    def sample_off() -> None:
        for _s in skbs:
            if tracer.sample and tracer.sampled():
                pass

    def step_on() -> None:
        for s in skbs:
            s.trace = []
            tracer(s, "napi_gro_receive")

    base = best_ns(empty_loop, CALLS)
    return [
        ("loop alone (subtracted below)", base),
        ("a step, trace off (skb.trace is None)", best_ns(step_off, CALLS) - base),
        ("the same test at the call site, no call", best_ns(guarded_off, CALLS) - base),
        ("a sampling test, sampling off (sample == 0)", best_ns(sample_off, CALLS) - base),
        ("a step, trace on (one TraceStep, ring entry)", best_ns(step_on, CALLS) - base),
    ]


def frame(i: int) -> bytes:
    bob, alice = b"\n\0\0\2", b"\n\0\0\1"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 38, i & 0xFFFF, 0, 64, 17, 0, bob, alice)
    udp = struct.pack("!HHHH", 40000, 9000, 18, 0) + b"0123456789"
    return MAC + PEER + struct.pack("!H", ETH_P_IP) + ip + udp


def nic_path(mode: str) -> Callable[[], None]:
    """A run of FRAMES frames through the NIC's receive path: mode "off" (as shipped,
    nothing traced), "absent" (the Tracer's calls do nothing), "sampled" (every frame
    traced)."""
    sysctl = Sysctl()
    dev: NetDevice = ether_dev(2, "eth0", MAC)
    layer = NicLayer("alice", [dev], sysctl)
    assert dev.features.set({"gro": False}) is None
    assert dev.napi is not None
    dev.napi.resize(4096, None)
    if mode == "absent":
        layer.trace = _Absent()  # type: ignore[assignment]
    elif mode == "sampled":
        sysctl.set(SAMPLE_SYSCTL, "1")
    frames = [frame(i) for i in range(BATCH)]
    rounds = FRAMES // BATCH

    def run() -> None:
        for _ in range(rounds):
            layer.rx_frames(dev, frames)
            while layer.softirq_pending():
                layer.poll()

    return run


class _Absent:
    """A Tracer whose calls do nothing and that never samples: the path without tracing."""

    sample = 0

    def __call__(self, skb: SkBuff, func: str) -> None:
        pass

    def sampled(self) -> bool:
        return False


def main() -> None:
    print(f"Tracer micro-costs ({CALLS} calls, best of {RUNS}):")
    for label, ns in micro():
        print(f"  {label:<48} {ns:8.1f} ns")
    print(f"\nNIC receive path ({FRAMES} frames of 52 bytes, batches of {BATCH}, GRO off, best of {RUNS}):")
    modes = {
        "absent": "tracing calls removed",
        "off": "tracing off (as shipped)",
        "sampled": "every frame traced",
    }
    runs = {mode: nic_path(mode) for mode in modes}
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    n = (FRAMES // BATCH) * BATCH
    for _ in range(RUNS):  # interleaved, so that drift hits every mode alike
        for mode, run in runs.items():
            t0 = time.perf_counter_ns()
            run()
            times[mode].append((time.perf_counter_ns() - t0) / n)
    base = min(times["absent"])
    for mode, label in modes.items():
        best = min(times[mode])
        print(f"  {label:<48} {best / 1000:8.2f} us/frame  x{best / base:.3f}")
    spread = statistics.pstdev(times["absent"]) / statistics.mean(times["absent"])
    print(f"  (run-to-run spread with the calls removed: {spread * 100:.1f}%)")


if __name__ == "__main__":
    main()
