"""`stackemu up`'s progress: a line per service as it turns SERVING, plain when the
output is not a terminal (a pipe, a log, CliRunner), a spinner under the lines on a
terminal; colours only on a terminal and never with NO_COLOR."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stackemu import launcher
from stackemu.cli import main
from stackemu.launcher import free_base
from stackemu.tools.common import Progress, colour
from stackemu.topology import LAYERS


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_wait_serving_reports_each_service_once_in_the_order_they_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hosts = {h: {layer: {"addr": f"{h}:{layer}", "pid": 0} for layer in LAYERS} for h in ("alice", "bob")}
    polls: dict[str, int] = {}

    def health(addr: str, timeout: float = 1.0) -> str:
        # The NICs answer at their first poll, the rest at their second.
        polls[addr] = polls.get(addr, 0) + 1
        return "SERVING" if addr.endswith(":nic") or polls[addr] > 1 else "NOT_SERVING"

    monkeypatch.setattr(launcher, "health", health)
    served: list[str] = []
    waited: list[list[str]] = []
    launcher._wait_serving({"hosts": hosts}, [], lambda name, svc: served.append(name), waited.append)
    assert served == [
        "alice/nic",
        "bob/nic",
        "alice/ip",
        "alice/udp",
        "alice/socket",
        "bob/ip",
        "bob/udp",
        "bob/socket",
    ]
    assert waited == [
        [f"{h}/{layer}" for h in ("alice", "bob") for layer in LAYERS],
        ["alice/ip", "alice/udp", "alice/socket", "bob/ip", "bob/udp", "bob/socket"],
    ]


def test_up_prints_plain_lines_when_not_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKEMU_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("STACKEMU_STACK_FILE", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    runner = CliRunner()
    r = runner.invoke(main, ["up", "--base-port", str(free_base())])
    try:
        assert (r.exit_code, r.stderr) == (0, ""), r.output
        hosts: dict[str, dict[str, Any]] = json.loads((tmp_path / "stack.json").read_text())["hosts"]
        lines = r.stdout.splitlines()
        assert lines[0] == f"starting 8 services of alice and bob (logs in {tmp_path / 'logs'})"
        # One line per service, in the order they answered (which the test cannot fix).
        assert sorted(lines[1:9]) == sorted(
            f"{f'{h}/{layer}':<13} SERVING  {svc['addr']}  pid {svc['pid']}"
            for h, host in hosts.items()
            for layer, svc in host.items()
        )
        assert lines[9:] == [f"stack is up ({tmp_path / 'stack.json'}); stop it with `stackemu down`"]
        assert "\r" not in r.stdout and "\x1b" not in r.stdout
    finally:
        down = runner.invoke(main, ["down"])
        assert (down.exit_code, down.stdout) == (0, "stopped 8 services\n")


def test_progress_on_a_terminal_redraws_one_spinner_line(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = Tty()
    monkeypatch.setattr("sys.stdout", tty)
    monkeypatch.setattr("shutil.get_terminal_size", lambda: os.terminal_size((20, 24)))
    p = Progress()
    p.line("starting")
    p.spin("waiting for alice/nic bob/nic")
    p.line("alice/nic up")
    p.spin("waiting for bob/nic")
    p.done()
    assert tty.getvalue() == (
        "starting\n"
        "\r⠋ waiting for alice\x1b[K"  # cut to the terminal's width less one
        "\r\x1b[Kalice/nic up\n"
        "\r⠋ waiting for alice\x1b[K"
        "\r⠙ waiting for bob/n\x1b[K"
        "\r\x1b[K"
    )


def test_progress_off_a_terminal_is_lines_only(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    p = Progress()
    p.spin("waiting")
    p.line("one")
    p.spin("waiting")
    p.done()
    assert out.getvalue() == "one\n"


def test_colour_only_on_a_terminal_and_not_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout", Tty())
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour("SERVING", "green") == "\x1b[32mSERVING\x1b[0m"
    monkeypatch.setenv("NO_COLOR", "")  # no-color.org: an empty NO_COLOR does not count
    assert colour("SERVING", "green") == "\x1b[32mSERVING\x1b[0m"
    monkeypatch.setenv("NO_COLOR", "1")
    assert colour("SERVING", "green") == "SERVING"
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert colour("SERVING", "green") == "SERVING"
    monkeypatch.setattr("sys.stderr", Tty())
    assert colour("EXITED", "red", err=True) == "\x1b[31mEXITED\x1b[0m"
