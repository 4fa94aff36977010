"""The `stackemu bench` command: its options and help; runner.py does the work (imported
only when the command runs, so `stackemu --help` stays fast)."""

from __future__ import annotations

import click

# The same as runner.CHOICES, written out so that building the command imports nothing.
_CHOICES = ("a", "b", "c", "d-lo", "d-wire", "e", "f")


def _service(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from stackemu.bench.profiler import parse_service

    try:
        parse_service(value)
    except ValueError as err:
        raise click.BadParameter(str(err), ctx, param) from None
    return value


@click.command()
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=None,
    help="Samples of each scenario on each side (default 5; 1 with --quick).",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Length of one sample (no new batch starts after it).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Tiny counts (256 datagrams, 4 GSO sends, 20 pings; e: 100 sockets, 100 routes, 10 rules): "
    "a smoke test.",
)
@click.option(
    "--scenario",
    "only",
    multiple=True,
    type=click.Choice(_CHOICES),
    help="Only this scenario (repeatable; default all).",
)
@click.option(
    "--json", "json_file", metavar="FILE", default=None, help="Write every raw sample and summary to FILE."
)
@click.option("--plot", "plot_file", metavar="PNG", default=None, help="Draw the results as a PNG chart.")
@click.option(
    "--soak",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="After scenarios a-d (before e), repeat scenario a for SECONDS, sampling each service's VmRSS "
    "(300: issue 9's soak).",
)
@click.option(
    "--profile",
    metavar="HOST.SERVICE",
    default=None,
    callback=_service,
    help="Run py-spy on this service (e.g. alice.udp) during the scenarios: flame graph and top functions.",
)
@click.option(
    "--profile-out",
    "profile_file",
    metavar="SVG",
    default=None,
    help="Where --profile writes its flame graph (default profile-HOST-SERVICE.svg here).",
)
@click.option(
    "--stack",
    "stack_file",
    metavar="FILE",
    default=None,
    help="Measure the stack this stack file names (as STACKEMU_STACK_FILE) instead of one of its own.",
)
@click.option(
    "--use-running", is_flag=True, help="Measure the stack `stackemu up` started instead of one of its own."
)
def bench(
    repeat: int | None,
    seconds: float,
    quick: bool,
    only: tuple[str, ...],
    json_file: str | None,
    plot_file: str | None,
    soak: float | None,
    profile: str | None,
    profile_file: str | None,
    stack_file: str | None,
    use_running: bool,
) -> None:
    """Measure the emulated stack against this machine's kernel, in the same run.

    \b
    Each scenario runs against an emulated stack (by default one of its own, on free
    ports, stopped at the end) and, interleaved, against the kernel (stdlib sockets on
    127.0.0.1); the table gives each figure's median (min-max) over the repetitions,
    the ratio emulator/kernel of the medians and issue 9's target for it:
      a       64 B datagrams over lo on one host, SendMmsg/RecvMmsg 64 at a time
              (kernel: a sendto loop, then the reads)            rate ≥ 0.25
      b       the same from alice to bob over the wire           rate ≥ 0.12
      c       64 KB GSO sends (UDP_SEGMENT 1400) read with UDP_GRO, alice → bob
                                                                 goodput ≥ 0.15
      d-lo    ping-pong of one datagram over lo                  p50 RTT ≤ 20x
      d-wire  the same alice ↔ bob                               p50 RTT ≤ 20x
      e       a and b again (e-a, e-b) with, on each host, 10,000 bound sockets and
              10,000 routes (sock+route), 1,000 netfilter rules every datagram
              walks (netfilter), and all of them (all): the rate under load over
              the rate without            sock+route ≥ 0.9, netfilter and all ≥ 0.5
              (the kernel: the same loads in a network namespace of its own)
      f       peak RSS (VmHWM) of each service after the rest    ≤ 200 MB each
    The kernel has no wire: b, c and d-wire compare with its lo.

    \b
    Examples:
      stackemu bench                          all scenarios, 5 repetitions
      stackemu bench --quick                  a smoke test in seconds
      stackemu bench --scenario a --repeat 3 --json bench.json
      stackemu bench --scenario e --plot e.png
      stackemu bench --scenario f --soak 300  memory growth over 5 minutes
      stackemu bench --scenario a --profile alice.udp   where alice's UDP spends its time
      stackemu bench --use-running            the stack `stackemu up` started
    """
    from stackemu.bench import runner

    if stack_file is not None and use_running:
        raise click.UsageError("--stack and --use-running name two stacks: choose one")
    if profile_file is not None and profile is None:
        raise click.UsageError("--profile-out without --profile: name the service to profile")
    runner.main(
        runner.Options(
            repeat=repeat or (1 if quick else 5),
            seconds=seconds,
            quick=quick,
            json_file=json_file,
            stack_file=stack_file,
            use_running=use_running,
            only=only,
            soak=soak or 0.0,
            plot_file=plot_file,
            profile=profile,
            profile_file=profile_file,
        )
    )
