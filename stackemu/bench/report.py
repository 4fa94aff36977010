"""What `stackemu bench` prints from its document (the --json one): the table of
figures with their ratios and targets, then scenario f's memory, the soak and the
profile's top functions, each a table of its own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stackemu.tools.common import colour

# The unit of a figure that is itself a ratio (scenario e: loaded over unloaded).
TIMES = "ratio"


def show(value: float, unit: str) -> str:
    if unit in ("MB/s", "µs", "MB"):
        return f"{value:,.1f}"
    if unit == TIMES:
        return f"{value:.3g}"
    return f"{value:,.0f}"


def show_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value >= 0.001 else f"{value:.2e}"


def show_target(target: dict[str, Any] | None) -> str:
    """ ">= 0.25" for a bound on the ratio emulator/kernel; "emu >= 0.9" for one on the
    emulator's own figure."""
    if target is None:
        return ""
    text = f"{target['op']} {target['bound']:g}"
    return text if target["of"] == "ratio" else f"emu {text}"


def _verdict(met: bool | None) -> str:
    if met is None:
        return ""
    return colour("met", "green") if met else colour("missed", "red")


def _columns(rows: Sequence[Sequence[str]], verdicts: Sequence[bool | None]) -> list[str]:
    """rows left-aligned in columns two spaces apart, each followed by its verdict."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row, met in zip(rows, verdicts, strict=True):
        text = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        if met is not None:
            text += "  " + _verdict(met)
        lines.append(text.rstrip())
    return lines


def table(doc: dict[str, Any]) -> list[str]:
    """The figures as a table: median (min-max) of each side (the median alone where
    they are one value), the ratio of the medians and the target with whether it is
    met."""
    rows = [
        (
            "SCENARIO",
            "FIGURE",
            "UNIT",
            "EMULATOR median (min-max)",
            "KERNEL median (min-max)",
            "RATIO",
            "TARGET",
        )
    ]
    verdicts: list[bool | None] = [None]
    for sc in doc["scenarios"]:
        for f in sc["figures"]:
            unit = f["unit"]

            def cell(s: dict[str, float] | None, unit: str = unit) -> str:
                if s is None:
                    return "-"
                if s["min"] == s["max"]:
                    return show(s["median"], unit)
                return f"{show(s['median'], unit)} ({show(s['min'], unit)}-{show(s['max'], unit)})"

            target = f["target"]
            rows.append(
                (
                    sc["scenario"],
                    f["figure"],
                    unit,
                    cell(f["emulated"]),
                    cell(f["kernel"]),
                    show_ratio(f["ratio"]),
                    show_target(target),
                )
            )
            verdicts.append(None if target is None else target["met"])
    return _columns(rows, verdicts)


def memory_table(mem: dict[str, Any]) -> list[str]:
    """Scenario f: each service's peak and current RSS against the limit."""
    bound = mem["target"]["bound"]
    lines = [f"f: peak RSS (VmHWM) of each service after the scenarios; target: each <= {bound:g} MB"]
    if mem.get("note"):
        return [*lines, f"  {mem['note']}"]
    rows = [("SERVICE", "PID", "PEAK MB", "NOW MB")]
    verdicts: list[bool | None] = [None]
    for r in mem["services"]:
        if "error" in r:
            rows.append((r["service"], str(r["pid"]), "-", r["error"]))
            verdicts.append(False)
            continue
        rows.append((r["service"], str(r["pid"]), show(r["vm_hwm_mb"], "MB"), show(r["vm_rss_mb"], "MB")))
        verdicts.append(r["met"])
    return lines + _columns(rows, verdicts)


def soak_table(soak: dict[str, Any]) -> list[str]:
    """The soak: each service's first and last VmRSS, the fitted slope and rise."""
    bound = soak["target"]["bound"]
    lines = [
        f"soak: scenario a over and over for {soak['seconds']:.0f} s ({soak['runs']} runs, "
        f"{soak['received']:,} of {soak['sent']:,} datagrams read), VmRSS every {soak['interval']:g} s; "
        f"target: no growth (the least-squares line rises < {bound:g} MB over the run)"
    ]
    rows = [("SERVICE", "PID", "FIRST MB", "LAST MB", "SLOPE MB/min", "RISE MB")]
    verdicts: list[bool | None] = [None]
    for r in soak["services"]:
        if "error" in r:
            rows.append((r["service"], str(r["pid"]), "-", "-", "-", r["error"]))
            verdicts.append(False)
            continue
        rows.append(
            (
                r["service"],
                str(r["pid"]),
                show(r["first_mb"], "MB"),
                show(r["last_mb"], "MB"),
                f"{r['slope_mb_per_min']:+.3f}",
                f"{r['rise_mb']:+.2f}",
            )
        )
        verdicts.append(r["met"])
    return lines + _columns(rows, verdicts)


def profile_table(prof: dict[str, Any]) -> list[str]:
    """Where the profiled service spent its CPU: the functions with the most samples
    of their own."""
    lines = [
        f"profile of {prof['service']} (pid {prof['pid']}): {prof['samples']:,} samples at "
        f"{prof['rate_hz']} Hz of the thread holding the GIL",
        f"  flame graph: {prof['svg']}",
        f"  collapsed stacks: {prof['collapsed']}",
    ]
    rows = [("OWN %", "SAMPLES", "FUNCTION (file)")]
    rows += [(f"{t['own_pct']:.1f}", str(t["own_samples"]), t["function"]) for t in prof["top"]]
    return lines + _columns(rows, [None] * len(rows))
