"""`stackemu bench --plot PATH`: the document as a PNG chart (matplotlib, Agg, no
display needed). A panel per scenario: emulator and kernel side by side on a log scale,
the bar the median and the whisker the min-max, with the ratio and the target (green
met, red missed) above each pair; for e the rate under each load over the rate without,
against its bound; f's peak RSS per service against the limit; the soak's VmRSS over
time; the profile's top functions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from stackemu.bench.report import show_ratio, show_target

EMULATOR = "tab:orange"
KERNEL = "tab:blue"
COLUMNS = 3
PANEL = (5.6, 4.2)


def _verdict_colour(met: bool | None) -> str:
    return "black" if met is None else ("tab:green" if met else "tab:red")


def _bars(ax: Axes, sc: dict[str, Any]) -> None:
    """A scenario of a-d: per figure, emulator and kernel on a log axis."""
    figures = sc["figures"]
    for i, f in enumerate(figures):
        for offset, side, colour in ((-0.2, "emulated", EMULATOR), (0.2, "kernel", KERNEL)):
            s = f[side]
            if s is None:
                continue
            err = [[s["median"] - s["min"]], [s["max"] - s["median"]]]
            ax.bar(i + offset, s["median"], 0.4, color=colour, yerr=err, capsize=3)
        tops = [f[side]["max"] for side in ("emulated", "kernel") if f[side] is not None]
        note = f"ratio {show_ratio(f['ratio'])}"
        if f["target"] is not None:
            note += f"\n{show_target(f['target'])}"
        if tops:
            ax.annotate(
                note,
                (i, max(tops)),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
                color=_verdict_colour(f["target"]["met"] if f["target"] else None),
            )
    ax.set_yscale("log")
    ax.set_xticks(range(len(figures)), [f"{f['figure']} ({f['unit']})" for f in figures], fontsize=8)
    ax.set_xlim(-0.6, len(figures) - 0.4)
    ax.margins(y=0.35)
    ax.set_title(f"{sc['scenario']}: {sc['title']}", fontsize=9, wrap=True)


def _scaled(ax: Axes, sc: dict[str, Any]) -> None:
    """e-a or e-b: each load's rate over the rate without, against the load's bound."""
    loaded = [f for f in sc["figures"] if f["load"] != "none"]
    for i, f in enumerate(loaded):
        for offset, side, colour in ((-0.2, "emulated", EMULATOR), (0.2, "kernel", KERNEL)):
            s = f[side]
            if s is None:
                continue
            # The quartiles: the widest range (the table's min-max) of a ratio of two
            # noisy figures dwarfs everything else.
            err = [[max(0.0, s["median"] - s["q1"])], [max(0.0, s["q3"] - s["median"])]]
            ax.bar(i + offset, s["median"], 0.4, color=colour, yerr=err, capsize=3)
            ax.annotate(f"{s['median']:.2f}", (i + offset, s["median"]), ha="center", va="bottom", fontsize=7)
        target = f["target"]
        if target is not None:
            ax.hlines(target["bound"], i - 0.45, i + 0.45, colors="black", linestyles="--")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    labels = [f["load"] + ("" if f["target"] is None else f"\n{show_target(f['target'])}") for f in loaded]
    ax.set_xticks(range(len(loaded)), labels, fontsize=8)
    for tick, f in zip(ax.get_xticklabels(), loaded, strict=True):
        tick.set_color(_verdict_colour(None if f["target"] is None else f["target"]["met"]))
    ax.set_ylabel("rate under load / rate without (whiskers: quartiles)", fontsize=8)
    loads = sc["loads"]
    counts = f"{loads['sockets']:,} sockets, {loads['routes']:,} routes, {loads['rules']:,} rules"
    ax.set_title(f"{sc['scenario']}: {counts}", fontsize=9)


def _memory(ax: Axes, mem: dict[str, Any]) -> None:
    rows = [r for r in mem["services"] if "vm_hwm_mb" in r]
    names = [r["service"] for r in rows]
    ax.barh(names, [r["vm_hwm_mb"] for r in rows], color=[_verdict_colour(r["met"]) for r in rows])
    for i, r in enumerate(rows):
        ax.annotate(f" {r['vm_hwm_mb']:.0f}", (r["vm_hwm_mb"], i), va="center", fontsize=7)
    bound = mem["target"]["bound"]
    ax.axvline(bound, color="black", linestyle="--")
    ax.set_xlim(0, bound * 1.15)
    ax.invert_yaxis()
    ax.tick_params(labelsize=8)
    ax.set_xlabel("MB", fontsize=8)
    ax.set_title(f"f: peak RSS (VmHWM) per service, limit {bound:g} MB", fontsize=9)


def _soak(ax: Axes, soak: dict[str, Any]) -> None:
    for r in soak["services"]:
        if "t_s" in r:
            ax.plot(r["t_s"], r["rss_mb"], label=f"{r['service']} {r['slope_mb_per_min']:+.2f} MB/min")
    ax.set_xlabel("seconds", fontsize=8)
    ax.set_ylabel("VmRSS MB", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=6)
    ax.set_title(f"soak: VmRSS during {soak['seconds']:.0f} s of scenario a", fontsize=9)


def _profile(ax: Axes, prof: dict[str, Any]) -> None:
    top = prof["top"][:10]
    ax.barh([t["function"][:48] for t in top], [t["own_pct"] for t in top], color=EMULATOR)
    ax.invert_yaxis()
    ax.tick_params(labelsize=6)
    ax.set_xlabel("% of samples (own)", fontsize=8)
    ax.set_title(f"profile: {prof['service']}, {prof['samples']:,} samples", fontsize=9)


def write(doc: dict[str, Any], path: Path) -> None:
    """doc (runner.run's) as a PNG at path."""
    panels: list[tuple[Any, dict[str, Any]]] = []
    for sc in doc["scenarios"]:
        panels.append((_scaled if "loads" in sc else _bars, sc))
    for key, draw in (("memory", _memory), ("soak", _soak), ("profile", _profile)):
        if doc.get(key) is not None and not doc[key].get("note"):
            panels.append((draw, doc[key]))
    rows = max(1, math.ceil(len(panels) / COLUMNS))
    fig = Figure(figsize=(PANEL[0] * COLUMNS, PANEL[1] * rows), layout="constrained")
    axes = fig.subplots(rows, COLUMNS, squeeze=False).flatten()
    for ax, (draw, part) in zip(axes, panels, strict=False):
        draw(ax, part)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    m = doc["machine"]
    fig.suptitle(
        f"stackemu bench {doc['started']}: emulator (orange) vs kernel (blue), "
        f"{m['cpus']} CPUs, {m['kernel']}, {m['implementation']} {m['python']}",
        fontsize=11,
    )
    fig.savefig(path, format="png", dpi=90)
