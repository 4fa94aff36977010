"""`stackemu bench`: each scenario against the emulated stack and, interleaved in the
same run, against this machine's kernel; the median and spread of each figure over the
repetitions, the ratio emulator/kernel and the target it is held to (issue 9)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import uvloop

from stackemu import launcher, state
from stackemu.bench import emulated, kernel
from stackemu.bench.sample import Budget, RoundTrips, Transfer
from stackemu.bench.stats import Summary, meets, ratio, summarize
from stackemu.tools.common import Progress, colour
from stackemu.topology import HOSTS, LAYERS

Sample = Transfer | RoundTrips

# 64 KB GSO sends: 46 segments of 1400 bytes (UDP_SEGMENT), under UDP_MAX_SEGMENTS and
# within an IPv4 datagram; each segment's frame fits eth0's MTU of 1500.
GSO_SIZE = 1400
GSO_SEND = 46 * GSO_SIZE
BATCH = 64


@dataclass(frozen=True, slots=True)
class Stack:
    """The socket services the scenarios use: alice's and bob's, and bob's eth0 address."""

    alice: str
    bob: str
    bob_ip: int


@dataclass(frozen=True, slots=True)
class Figure:
    """One printed figure of a scenario: its key in a sample's figures(), its unit, and
    the target its ratio emulator/kernel is held to (op, bound), if any."""

    key: str
    label: str
    unit: str
    target: tuple[str, float] | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    title: str
    figures: tuple[Figure, ...]
    emulated: Callable[[Stack, Budget], Sample]
    kernel: Callable[[Budget], Sample]
    budget: Callable[[Options], Budget]


@dataclass(frozen=True, slots=True)
class Options:
    repeat: int = 5
    seconds: float = 1.0
    quick: bool = False
    json_file: str | None = None
    stack_file: str | None = None
    use_running: bool = False
    only: tuple[str, ...] = ()
    timeout: float = 2.0


def _throughput_budget(opts: Options) -> Budget:
    return Budget(256 if opts.quick else 10_000_000, opts.seconds, opts.timeout)


def _gso_budget(opts: Options) -> Budget:
    return Budget(4 if opts.quick else 1_000_000, opts.seconds, opts.timeout)


def _ping_budget(opts: Options) -> Budget:
    return Budget(20 if opts.quick else 100_000, opts.seconds, opts.timeout)


LO_IP = emulated.ip(kernel.LO)
RATE = Figure("rate", "rate", "datagrams/s")
GOODPUT = Figure("goodput", "goodput", "MB/s", (">=", 0.15))


def _rtt(target: bool) -> tuple[Figure, Figure]:
    return Figure("p50", "p50 RTT", "µs", ("<=", 20.0) if target else None), Figure("p99", "p99 RTT", "µs")


SCENARIOS = (
    Scenario(
        "a",
        "64 B datagrams over lo, one host (sendmmsg/recvmmsg x 64)",
        (Figure("rate", "rate", "datagrams/s", (">=", 0.25)),),
        lambda s, b: uvloop.run(emulated.throughput(s.alice, s.alice, LO_IP, b, batch=BATCH)),
        lambda b: kernel.throughput(b, batch=BATCH),
        _throughput_budget,
    ),
    Scenario(
        "b",
        "64 B datagrams alice → bob over the wire (kernel: lo)",
        (Figure("rate", "rate", "datagrams/s", (">=", 0.12)),),
        lambda s, b: uvloop.run(emulated.throughput(s.alice, s.bob, s.bob_ip, b, batch=BATCH)),
        lambda b: kernel.throughput(b, batch=BATCH),
        _throughput_budget,
    ),
    Scenario(
        "c",
        "64 KB GSO sends (UDP_SEGMENT 1400) read with UDP_GRO, alice → bob (kernel: lo)",
        (GOODPUT,),
        lambda s, b: uvloop.run(
            emulated.throughput(
                s.alice, s.bob, s.bob_ip, b, payload=GSO_SEND, batch=1, window=2, gso_size=GSO_SIZE
            )
        ),
        lambda b: kernel.throughput(b, payload=GSO_SEND, batch=1, gso_size=GSO_SIZE),
        _gso_budget,
    ),
    Scenario(
        "d-lo",
        "ping-pong of one 64 B datagram over lo",
        _rtt(True),
        lambda s, b: uvloop.run(emulated.ping_pong(s.alice, s.alice, LO_IP, b)),
        kernel.ping_pong,
        _ping_budget,
    ),
    Scenario(
        "d-wire",
        "ping-pong of one 64 B datagram alice ↔ bob (kernel: lo)",
        _rtt(True),
        lambda s, b: uvloop.run(emulated.ping_pong(s.alice, s.bob, s.bob_ip, b)),
        kernel.ping_pong,
        _ping_budget,
    ),
)
SCENARIO_KEYS = tuple(s.key for s in SCENARIOS)


def _stack_of(data: dict[str, Any], where: str) -> Stack:
    alice, bob = HOSTS[0], HOSTS[1]
    try:
        addrs = {h.name: data["hosts"][h.name]["socket"]["addr"] for h in (alice, bob)}
    except (KeyError, TypeError):
        raise click.ClickException(
            f"{where} names no socket service of {alice.name} and {bob.name}"
        ) from None
    return Stack(addrs[alice.name], addrs[bob.name], emulated.ip(bob.eth0.partition("/")[0]))


@contextlib.contextmanager
def _own_stack(progress: Progress) -> Iterator[Stack]:
    """`stackemu up` of the benchmark's own: a fresh state directory, free ports, and
    `stackemu down` at the end whatever happens."""
    workdir = tempfile.mkdtemp(prefix="stackemu-bench-")
    saved = os.environ.get("STACKEMU_STATE_DIR")
    os.environ["STACKEMU_STATE_DIR"] = workdir
    try:
        progress.spin("starting the emulated stack")
        try:
            data = launcher.up(
                launcher.free_base(),
                log=lambda _: None,
                on_wait=lambda _: progress.spin("starting the stack"),
            )
        except launcher.LaunchError as err:
            raise click.ClickException(f"cannot start the benchmark's stack: {err}") from None
        progress.line(
            f"emulated stack: {len(HOSTS) * len(LAYERS)} services on ports from {data['base_port']}"
        )
        try:
            yield _stack_of(data, "the benchmark's stack")
        finally:
            launcher.down(log=lambda _: None)
    finally:
        if saved is None:
            os.environ.pop("STACKEMU_STATE_DIR", None)
        else:
            os.environ["STACKEMU_STATE_DIR"] = saved
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _stack(opts: Options, progress: Progress) -> Iterator[Stack]:
    if opts.stack_file is not None:
        try:
            data = json.loads(Path(opts.stack_file).read_text())
        except (OSError, ValueError) as err:
            raise click.ClickException(f"--stack {opts.stack_file}: {err}") from None
        yield _stack_of(data, opts.stack_file)
    elif opts.use_running:
        running = state.load()
        if running is None:
            raise click.ClickException(f"--use-running: no stack is running (no {state.state_file()})")
        yield _stack_of(running, str(state.state_file()))
    else:
        with _own_stack(progress) as stack:
            yield stack


@dataclass(slots=True)
class Result:
    scenario: Scenario
    emulated: list[Sample] = field(default_factory=list)
    kernel: list[Sample] = field(default_factory=list)

    def summary(self, side: str, key: str) -> Summary:
        samples = self.emulated if side == "emulated" else self.kernel
        return summarize([s.figures()[key] for s in samples])


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def _show(value: float, unit: str) -> str:
    if unit == "MB/s" or unit == "µs":
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def _show_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value >= 0.001 else f"{value:.2e}"


def _one(sample: Sample, scenario: Scenario) -> str:
    figs = sample.figures()
    text = "  ".join(f"{f.label} {_show(figs[f.key], f.unit)} {f.unit}" for f in scenario.figures)
    lost = sample.lost
    return text + (f"  (lost {lost} {'bytes' if isinstance(sample, Transfer) else 'pings'})" if lost else "")


def run(opts: Options) -> dict[str, Any]:
    """Every chosen scenario, opts.repeat times, emulator and kernel samples alternating
    (which goes first swaps each repetition, so neither always runs on a warmer
    machine); the document --json writes."""
    progress = Progress()
    chosen = [s for s in SCENARIOS if not opts.only or s.key in opts.only]
    results = [Result(s) for s in chosen]
    started = time.time()
    try:
        with _stack(opts, progress) as stack:
            for rep in range(opts.repeat):
                for res in results:
                    sc = res.scenario
                    budget = sc.budget(opts)
                    order = ("kernel", "emulated") if rep % 2 == 0 else ("emulated", "kernel")
                    for side in order:
                        progress.spin(f"{sc.key} {side} {rep + 1}/{opts.repeat}: {sc.title}")
                        try:
                            sample = sc.emulated(stack, budget) if side == "emulated" else sc.kernel(budget)
                        except OSError as err:
                            raise click.ClickException(f"scenario {sc.key} ({side}): {err}") from None
                        (res.emulated if side == "emulated" else res.kernel).append(sample)
                        progress.line(f"{sc.key:<6} {rep + 1}/{opts.repeat} {side:<8}  {_one(sample, sc)}")
    finally:
        progress.done()
    return _document(opts, results, started)


def _document(opts: Options, results: list[Result], started: float) -> dict[str, Any]:
    scenarios = []
    for res in results:
        sc = res.scenario
        figures = []
        for f in sc.figures:
            emu, ker = res.summary("emulated", f.key), res.summary("kernel", f.key)
            r = ratio(emu.median, ker.median)
            figures.append(
                {
                    "figure": f.key,
                    "unit": f.unit,
                    "emulated": emu.as_dict(),
                    "kernel": ker.as_dict(),
                    "ratio": r,
                    "target": None
                    if f.target is None
                    else {"op": f.target[0], "ratio": f.target[1], "met": meets(r, *f.target)},
                }
            )
        scenarios.append(
            {
                "scenario": sc.key,
                "title": sc.title,
                "budget": vars_of(sc.budget(opts)),
                "figures": figures,
                "samples": {
                    "emulated": [s.raw() for s in res.emulated],
                    "kernel": [s.raw() for s in res.kernel],
                },
            }
        )
    return {
        "command": ["stackemu", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": machine(),
        "repeat": opts.repeat,
        "quick": opts.quick,
        "scenarios": scenarios,
    }


def vars_of(budget: Budget) -> dict[str, float]:
    return {"count": budget.count, "seconds": budget.seconds, "timeout": budget.timeout}


def table(doc: dict[str, Any]) -> list[str]:
    """The figures as a table: median (min-max) of each side, the ratio of the medians
    and the target with whether it is met."""
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
    met_flags: list[bool | None] = [None]
    for sc in doc["scenarios"]:
        for f in sc["figures"]:
            unit = f["unit"]

            def cell(s: dict[str, float], unit: str = unit) -> str:
                return f"{_show(s['median'], unit)} ({_show(s['min'], unit)}-{_show(s['max'], unit)})"

            target = f["target"]
            rows.append(
                (
                    sc["scenario"],
                    f["figure"],
                    unit,
                    cell(f["emulated"]),
                    cell(f["kernel"]),
                    _show_ratio(f["ratio"]),
                    "" if target is None else f"{target['op']} {target['ratio']:g}",
                )
            )
            met_flags.append(None if target is None else target["met"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row, met in zip(rows, met_flags, strict=True):
        text = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        if met is not None:
            text += "  " + (colour("met", "green") if met else colour("missed", "red"))
        lines.append(text.rstrip())
    return lines


def main(opts: Options) -> None:
    doc = run(opts)
    m = doc["machine"]
    click.echo(
        f"machine: {m['cpus']} CPUs ({m['cpu_model'] or 'unknown model'}), {m['kernel']}, "
        f"{m['implementation']} {m['python']}; {opts.repeat} repetition(s) each"
    )
    for line in table(doc):
        click.echo(line)
    if opts.json_file is not None:
        Path(opts.json_file).write_text(json.dumps(doc, indent=2) + "\n")
        click.echo(f"raw samples and summaries written to {opts.json_file}")
