"""The `stackemu` command."""

from __future__ import annotations

import json
import sys

import click

from stackemu import launcher, state


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The Linux UDP/IPv4 stack, emulated as four gRPC services per host.

    \b
    Examples:
      stackemu up          start hosts alice and bob
      stackemu demo        send a datagram through every layer and show its path
      stackemu status      every service's address and health
      stackemu down        stop everything
    """


@main.command()
@click.option(
    "--base-port", type=int, default=None, help="First TCP port (default 50100 or STACKEMU_BASE_PORT)."
)
def up(base_port: int | None) -> None:
    """Start the default topology (alice and bob) as local processes."""
    try:
        launcher.up(base_port, log=click.echo)
    except launcher.LaunchError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"stack is up ({state.state_file()}); stop it with `stackemu down`")


@main.command()
def down() -> None:
    """Stop every service of the running stack."""
    if not launcher.down(log=click.echo):
        click.echo("no stack is running")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Show every service's address, pid and health."""
    rows = launcher.status()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no stack is running; start one with `stackemu up`")
        sys.exit(1)
    click.echo(f"{'HOST':<7} {'SERVICE':<8} {'ADDRESS':<17} {'PID':<8} HEALTH")
    for r in rows:
        click.echo(f"{r['host']:<7} {r['service']:<8} {r['addr']:<17} {r['pid']:<8} {r['health']}")
    if any(r["health"] != "SERVING" for r in rows):
        sys.exit(1)


@main.command()
@click.option("--host", default=None, help="Host to run on (default STACKEMU_HOST or alice).")
def demo(host: str | None) -> None:
    """Send a datagram over 127.0.0.1 and show what each layer did."""
    from stackemu.demo import run

    try:
        run(host, click.echo)
    except state.NoStack as err:
        raise click.ClickException(str(err)) from None
