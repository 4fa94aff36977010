"""`stackemu bench`: each scenario against the emulated stack and, interleaved in the
same run, against this machine's kernel; the median and spread of each figure over the
repetitions, the ratio emulator/kernel and the target it is held to (issue 9). Then
the soak, scenario e (scaling.py) and scenario f (memory.py); a profile of one service
over all of it (profiler.py) and a chart of the results (plot.py) on request."""

from __future__ import annotations

import contextlib
import functools
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
import grpc
import uvloop

from stackemu import launcher, state
from stackemu.bench import emulated, kernel, memory, report, scaling
from stackemu.bench.profiler import ProfileError, Profiler, parse_service
from stackemu.bench.report import TIMES, show
from stackemu.bench.sample import Budget, RoundTrips, Transfer
from stackemu.bench.stats import Summary, meets, ratio, ratio_summary, summarize
from stackemu.tools.common import Progress
from stackemu.topology import HOSTS, LAYERS

Sample = Transfer | RoundTrips

# 64 KB GSO sends: 46 segments of 1400 bytes (UDP_SEGMENT), under UDP_MAX_SEGMENTS and
# within an IPv4 datagram; each segment's frame fits eth0's MTU of 1500.
GSO_SIZE = 1400
GSO_SEND = 46 * GSO_SIZE
BATCH = 64


@dataclass(frozen=True, slots=True)
class Stack:
    """The socket services the scenarios use: alice's and bob's, and bob's eth0 address;
    every service of the stack file (hosts → layer → addr, pid), and whether that file
    is the launcher's state, read again for pids a restart changed."""

    alice: str
    bob: str
    bob_ip: int
    hosts: dict[str, Any] = field(default_factory=dict)
    launched: bool = False

    def services_now(self) -> dict[str, Any]:
        data = state.load() if self.launched else None
        return dict(data["hosts"]) if data is not None else self.hosts


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
    # Seconds of scenario a over and over, VmRSS sampled (0: no soak).
    soak: float = 0.0
    plot_file: str | None = None
    # HOST.SERVICE to run under py-spy, and where its flame graph goes.
    profile: str | None = None
    profile_file: str | None = None

    def chosen(self, key: str) -> bool:
        return not self.only or key in self.only


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
# What --scenario accepts: e is a and b under load (e-a, e-b), f the services' memory.
CHOICES = (*SCENARIO_KEYS, "e", "f")
# The scenarios e runs again under load.
SCALED = ("a", "b")


def _stack_of(data: dict[str, Any], where: str, launched: bool = False) -> Stack:
    alice, bob = HOSTS[0], HOSTS[1]
    try:
        addrs = {h.name: data["hosts"][h.name]["socket"]["addr"] for h in (alice, bob)}
    except (KeyError, TypeError):
        raise click.ClickException(
            f"{where} names no socket service of {alice.name} and {bob.name}"
        ) from None
    return Stack(
        addrs[alice.name],
        addrs[bob.name],
        emulated.ip(bob.eth0.partition("/")[0]),
        dict(data["hosts"]),
        launched,
    )


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
            yield _stack_of(data, "the benchmark's stack", launched=True)
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
        yield _stack_of(running, str(state.state_file()), launched=state.external_file() is None)
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


def _one(sample: Sample, scenario: Scenario) -> str:
    figs = sample.figures()
    text = "  ".join(f"{f.label} {show(figs[f.key], f.unit)} {f.unit}" for f in scenario.figures)
    lost = sample.lost
    return text + (f"  (lost {lost} {'bytes' if isinstance(sample, Transfer) else 'pings'})" if lost else "")


def _order(rep: int) -> tuple[str, str]:
    """Which side samples first: it swaps each repetition, so neither always runs on a
    warmer machine."""
    return ("kernel", "emulated") if rep % 2 == 0 else ("emulated", "kernel")


def _take(res: Result, side: str, measure: Callable[[], Sample], tag: str, progress: Progress) -> None:
    """One sample into res, and a line saying what it measured."""
    sc = res.scenario
    progress.spin(f"{tag} {side}: {sc.title}")
    try:
        sample = measure()
    except OSError as err:
        raise click.ClickException(f"scenario {sc.key} ({side}): {err}") from None
    (res.emulated if side == "emulated" else res.kernel).append(sample)
    progress.line(f"{tag} {side:<8}  {_one(sample, sc)}")


def _repeat(opts: Options, stack: Stack, results: list[Result], progress: Progress) -> None:
    """Every scenario of results, opts.repeat times, emulator and kernel alternating."""
    for rep in range(opts.repeat):
        for res in results:
            sc = res.scenario
            budget = sc.budget(opts)
            for side in _order(rep):
                measure = (
                    functools.partial(sc.emulated, stack, budget)
                    if side == "emulated"
                    else functools.partial(sc.kernel, budget)
                )
                _take(res, side, measure, f"{sc.key:<6} {rep + 1}/{opts.repeat}", progress)


@dataclass(slots=True)
class Scaled:
    """Scenario e for one scenario of SCALED: its results under each load."""

    scenario: Scenario
    loads: dict[str, Result]
    counts: scaling.Counts
    kernel_note: str | None


def _scaling(opts: Options, stack: Stack, progress: Progress) -> list[Scaled]:
    """Scenarios a and b under each load of scaling.LOADS in turn, opts.repeat times
    each, emulator and kernel alternating; the emulator's loads removed at the end."""
    counts = scaling.QUICK if opts.quick else scaling.FULL
    note = scaling.kernel_unavailable()
    scaled = [
        Scaled(sc, {load.key: Result(sc) for load in scaling.LOADS}, counts, note)
        for sc in SCENARIOS
        if sc.key in SCALED
    ]
    try:
        hosts = [
            scaling.Host(h.name, stack.hosts[h.name]["socket"]["addr"], stack.hosts[h.name]["ip"]["addr"])
            for h in HOSTS[:2]
        ]
    except (KeyError, TypeError):
        raise click.ClickException(
            "scenario e: the stack file names no socket and ip services of each host"
        ) from None
    emu = scaling.EmulatedLoads(hosts, counts)
    if note is not None:
        progress.line(f"e      {note}: its figures are '-'")
    with contextlib.ExitStack() as netns:
        ker = None if note is not None else netns.enter_context(scaling.KernelLoads(counts))
        try:
            for load in scaling.LOADS:
                progress.spin(f"e: putting the loads of {load.key!r} in place")
                began = time.monotonic()
                try:
                    emu.apply(load)
                    if ker is not None:
                        ker.apply(load)
                except (OSError, grpc.RpcError) as err:
                    raise click.ClickException(f"scenario e, loads {load.key!r}: {_why(err)}") from None
                progress.line(
                    f"e      {load.key}: {scaling.describe(load, counts)} on each host "
                    f"({time.monotonic() - began:.1f} s to change)"
                )
                for rep in range(opts.repeat):
                    for s in scaled:
                        res, budget = s.loads[load.key], s.scenario.budget(opts)
                        for side in _order(rep):
                            measure: Callable[[], Sample]
                            if side == "emulated":
                                measure = functools.partial(s.scenario.emulated, stack, budget)
                            elif ker is not None:
                                measure = functools.partial(ker.throughput, budget, batch=BATCH)
                            else:
                                continue
                            tag = f"e-{s.scenario.key:<4} {load.key:<10} {rep + 1}/{opts.repeat}"
                            _take(res, side, measure, tag, progress)
        finally:
            try:
                emu.apply(scaling.NONE, tolerant=True)
            except (OSError, grpc.RpcError) as err:
                progress.line(f"e      could not remove every load from the emulated stack: {_why(err)}")
    return scaled


def _why(err: BaseException) -> str:
    if isinstance(err, grpc.RpcError) and hasattr(err, "details"):
        return f"{err.code().name}: {err.details()}"
    return str(err)


def _soak(opts: Options, stack: Stack, progress: Progress) -> dict[str, Any]:
    """Scenario a (the emulator's side) over and over for opts.soak seconds, each
    service's VmRSS sampled."""
    found = memory.services(stack.services_now())
    a = SCENARIOS[0]

    def once(left: float) -> Transfer:
        full = a.budget(opts)
        sample = a.emulated(stack, Budget(full.count, min(full.seconds, left), full.timeout))
        assert isinstance(sample, Transfer)
        return sample

    def sampled(elapsed: float) -> None:
        progress.spin(f"soak: scenario a, {elapsed:.0f} of {opts.soak:g} s")

    try:
        return memory.soak(found, opts.soak, once, sampled)
    except OSError as err:
        raise click.ClickException(f"soak: {err}") from None


def _memory(stack: Stack) -> dict[str, Any]:
    found = memory.services(stack.services_now())
    doc = memory.peaks(found)
    if not found:
        doc["note"] = (
            "no pids in the stack file (a stack this machine's launcher did not start): not measured"
        )
    return doc


@contextlib.contextmanager
def _profiling(opts: Options, stack: Stack, progress: Progress) -> Iterator[Profiler | None]:
    """py-spy on opts.profile's process while the body runs, or nothing."""
    if opts.profile is None:
        yield None
        return
    host, layer = parse_service(opts.profile)
    pid = stack.services_now().get(host, {}).get(layer, {}).get("pid")
    if not isinstance(pid, int):
        raise click.ClickException(f"--profile {opts.profile}: the stack file names no pid for it")
    svg = Path(opts.profile_file or f"profile-{host}-{layer}.svg")
    try:
        with Profiler(opts.profile, pid, svg) as prof:
            progress.line(f"profiling {opts.profile} (pid {pid}) with py-spy")
            yield prof
    except ProfileError as err:
        raise click.ClickException(str(err)) from None


def run(opts: Options) -> dict[str, Any]:
    """Every chosen scenario of a-d, opts.repeat times, emulator and kernel samples
    alternating; then the soak, e and f as chosen; the document --json writes."""
    progress = Progress()
    results = [Result(s) for s in SCENARIOS if opts.chosen(s.key)]
    scaled: list[Scaled] = []
    extra: dict[str, Any] = {"memory": None, "soak": None, "profile": None}
    started = time.time()
    try:
        with _stack(opts, progress) as stack:
            if opts.soak and not memory.services(stack.hosts):
                raise click.ClickException("--soak reads each service's VmRSS: the stack file names no pids")
            with _profiling(opts, stack, progress) as prof:
                _repeat(opts, stack, results, progress)
                # Before e: the memory e's loads take and give back would pass for a
                # change the soak is to see.
                if opts.soak:
                    extra["soak"] = _soak(opts, stack, progress)
                if opts.chosen("e"):
                    scaled = _scaling(opts, stack, progress)
            if prof is not None:
                extra["profile"] = prof.result()
            if opts.chosen("f"):
                extra["memory"] = _memory(stack)
    finally:
        progress.done()
    return _document(opts, results, scaled, extra, started)


def _summary(res: Result, side: str, key: str) -> Summary | None:
    samples = res.emulated if side == "emulated" else res.kernel
    return summarize([s.figures()[key] for s in samples]) if samples else None


def _target(of: str, op: str, bound: float, value: float | None) -> dict[str, Any]:
    """A target: `of` "ratio" bounds emulator/kernel, "emulated" the emulator's figure."""
    return {"of": of, "op": op, "bound": bound, "met": meets(value, op, bound)}


def _figure(res: Result, f: Figure) -> dict[str, Any]:
    emu, ker = _summary(res, "emulated", f.key), _summary(res, "kernel", f.key)
    r = ratio(emu.median, ker.median) if emu is not None and ker is not None else None
    return {
        "figure": f.key,
        "unit": f.unit,
        "emulated": None if emu is None else emu.as_dict(),
        "kernel": None if ker is None else ker.as_dict(),
        "ratio": r,
        "target": None if f.target is None else _target("ratio", *f.target, r),
    }


def _scaled_document(opts: Options, s: Scaled) -> dict[str, Any]:
    """e-a or e-b: the rate without loads, then for each load the rate over that one
    (the emulator's is held to the load's bound), each load's rates beside it."""
    sc, base = s.scenario, s.loads[scaling.NONE.key]
    rate = sc.figures[0]
    figures = [{**_figure(base, Figure(rate.key, rate.label, rate.unit)), "load": scaling.NONE.key}]
    for load in (next(x for x in scaling.LOADS if x.key == key) for key in scaling.SHOWN):
        res = s.loads[load.key]
        sides = {}
        for side in ("emulated", "kernel"):
            num, den = _summary(res, side, rate.key), _summary(base, side, rate.key)
            sides[side] = None if num is None or den is None else ratio_summary(num, den)
        emu = sides["emulated"]
        figures.append(
            {
                "figure": f"{load.key}/none",
                "load": load.key,
                "unit": TIMES,
                "emulated": None if emu is None else emu.as_dict(),
                "kernel": None if sides["kernel"] is None else sides["kernel"].as_dict(),
                "ratio": None,
                "target": None
                if load.bound is None
                else _target("emulated", ">=", load.bound, None if emu is None else emu.median),
                "rate": _figure(res, Figure(rate.key, rate.label, rate.unit)),
            }
        )
    return {
        "scenario": f"e-{sc.key}",
        "title": f"{sc.key} with sockets, routes and netfilter rules in place on each host, over none",
        "budget": vars_of(sc.budget(opts)),
        "loads": {
            "sockets": s.counts.sockets,
            "routes": s.counts.routes,
            "rules": s.counts.rules,
            "order": [load.key for load in scaling.LOADS],
        },
        "kernel_note": s.kernel_note,
        "figures": figures,
        "samples": {
            key: {"emulated": [x.raw() for x in res.emulated], "kernel": [x.raw() for x in res.kernel]}
            for key, res in s.loads.items()
        },
    }


def _document(
    opts: Options, results: list[Result], scaled: list[Scaled], extra: dict[str, Any], started: float
) -> dict[str, Any]:
    scenarios = []
    for res in results:
        sc = res.scenario
        scenarios.append(
            {
                "scenario": sc.key,
                "title": sc.title,
                "budget": vars_of(sc.budget(opts)),
                "figures": [_figure(res, f) for f in sc.figures],
                "samples": {
                    "emulated": [s.raw() for s in res.emulated],
                    "kernel": [s.raw() for s in res.kernel],
                },
            }
        )
    scenarios += [_scaled_document(opts, s) for s in scaled]
    return {
        "command": ["stackemu", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": machine(),
        "repeat": opts.repeat,
        "quick": opts.quick,
        "scenarios": scenarios,
        **extra,
    }


def vars_of(budget: Budget) -> dict[str, float]:
    return {"count": budget.count, "seconds": budget.seconds, "timeout": budget.timeout}


def main(opts: Options) -> None:
    doc = run(opts)
    m = doc["machine"]
    click.echo(
        f"machine: {m['cpus']} CPUs ({m['cpu_model'] or 'unknown model'}), {m['kernel']}, "
        f"{m['implementation']} {m['python']}; {opts.repeat} repetition(s) each"
    )
    for line in report.table(doc):
        click.echo(line)
    for part, lines in (
        ("memory", report.memory_table),
        ("soak", report.soak_table),
        ("profile", report.profile_table),
    ):
        if doc[part] is not None:
            click.echo()
            for line in lines(doc[part]):
                click.echo(line)
    if opts.json_file is not None:
        Path(opts.json_file).write_text(json.dumps(doc, indent=2) + "\n")
        click.echo(f"raw samples and summaries written to {opts.json_file}")
    if opts.plot_file is not None:
        from stackemu.bench import plot

        plot.write(doc, Path(opts.plot_file))
        click.echo(f"chart written to {opts.plot_file}")
