"""Scenario f, memory: the peak resident set of every service process (VmHWM in
/proc/PID/status, the high-water mark of VmRSS since the process started, as
task_mem() prints it), and the soak: scenario a over and over for a while, each
service's VmRSS sampled every few seconds, and how fast it grows (issue 9: no service
above 200 MB, no growth over a 5-minute run). MB are 10^6 bytes; /proc's kB are KiB."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackemu.bench.sample import Transfer
from stackemu.topology import HOSTS, LAYERS

LIMIT_MB = 200.0
# "No growth": the least-squares line through the soak's samples rises by less than
# this over the whole run (allocator and gRPC buffer noise is a few hundred KB).
SOAK_RISE_MB = 1.0
SOAK_INTERVAL = 5.0
# A soak samples at least this many times, however short it is.
SOAK_MIN_SAMPLES = 10


@dataclass(frozen=True, slots=True)
class Service:
    """One service process: "alice.nic" and its pid."""

    name: str
    pid: int
    restarts: int = 0


def services(hosts: dict[str, Any]) -> list[Service]:
    """The service processes a stack file names (hosts → layer → pid), in topology
    order; those without a pid (a stack this machine did not start) are left out."""
    found = []
    for host in HOSTS:
        for layer in LAYERS:
            svc = hosts.get(host.name, {}).get(layer, {})
            if isinstance(svc.get("pid"), int):
                found.append(Service(f"{host.name}.{layer}", svc["pid"], int(svc.get("restarts", 0))))
    return found


def status_kb(pid: int, fields: Sequence[str]) -> dict[str, int]:
    """Fields of /proc/PID/status given in kB ("VmHWM", "VmRSS"); OSError when the
    process is gone."""
    got = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in fields:
            got[key] = int(rest.split()[0])
    missing = [name for name in fields if name not in got]
    if missing:
        raise OSError(f"/proc/{pid}/status has no {', '.join(missing)}")
    return got


def mb(kb: int) -> float:
    return kb * 1024 / 1e6


def peaks(found: Sequence[Service]) -> dict[str, Any]:
    """Each service's VmHWM and VmRSS now, and whether the peak is within LIMIT_MB."""
    rows = []
    for svc in found:
        try:
            kb = status_kb(svc.pid, ("VmHWM", "VmRSS"))
        except OSError as err:
            rows.append({"service": svc.name, "pid": svc.pid, "error": str(err)})
            continue
        peak = mb(kb["VmHWM"])
        rows.append(
            {
                "service": svc.name,
                "pid": svc.pid,
                "restarts": svc.restarts,
                "vm_hwm_mb": round(peak, 3),
                "vm_rss_mb": round(mb(kb["VmRSS"]), 3),
                "met": peak <= LIMIT_MB,
            }
        )
    return {
        "title": "peak RSS (VmHWM) of each service process after the scenarios",
        "unit": "MB",
        "target": {
            "op": "<=",
            "bound": LIMIT_MB,
            "met": all(r.get("met", False) for r in rows) if rows else None,
        },
        "services": rows,
    }


def slope(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of y over x; 0 for fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def soak_interval(seconds: float) -> float:
    return min(SOAK_INTERVAL, seconds / SOAK_MIN_SAMPLES)


def soak(
    found: Sequence[Service],
    seconds: float,
    run_once: Callable[[float], Transfer],
    on_sample: Callable[[float], None] = lambda _: None,
) -> dict[str, Any]:
    """run_once(seconds left) over and over for `seconds`, each service's VmRSS read
    every soak_interval(seconds) between runs and once more at the end; per service the
    first and last sample, the least-squares slope in MB/min and the rise of that line
    over the run. on_sample(elapsed) after each sampling."""
    interval = soak_interval(seconds)
    series: dict[str, list[tuple[float, float]]] = {svc.name: [] for svc in found}
    runs = sent = received = lost = 0

    def sample(elapsed: float) -> None:
        for svc in found:
            with contextlib.suppress(OSError):
                series[svc.name].append((elapsed, mb(status_kb(svc.pid, ("VmRSS",))["VmRSS"])))
        on_sample(elapsed)

    start = time.monotonic()
    next_at = 0.0
    while (elapsed := time.monotonic() - start) < seconds:
        if elapsed >= next_at:
            sample(elapsed)
            next_at += interval
        got = run_once(seconds - elapsed)
        runs += 1
        sent, received, lost = sent + got.sent, received + got.received, lost + got.lost
    duration = time.monotonic() - start
    sample(duration)
    rows = []
    for svc in found:
        points = series[svc.name]
        if not points:
            rows.append({"service": svc.name, "pid": svc.pid, "error": "no sample (the process is gone)"})
            continue
        per_min = slope([(t / 60, v) for t, v in points])
        rise = per_min * duration / 60
        rows.append(
            {
                "service": svc.name,
                "pid": svc.pid,
                "first_mb": round(points[0][1], 3),
                "last_mb": round(points[-1][1], 3),
                "slope_mb_per_min": per_min,
                "rise_mb": rise,
                "met": rise < SOAK_RISE_MB,
                "t_s": [round(t, 3) for t, _ in points],
                "rss_mb": [round(v, 3) for _, v in points],
            }
        )
    return {
        "title": "scenario a repeated, each service's VmRSS sampled",
        "seconds": duration,
        "interval": interval,
        "runs": runs,
        "sent": sent,
        "received": received,
        "lost_bytes": lost,
        "unit": "MB",
        "target": {
            "op": "<",
            "bound": SOAK_RISE_MB,
            "of": "rise_mb",
            "met": all(r.get("met", False) for r in rows),
        },
        "services": rows,
    }
