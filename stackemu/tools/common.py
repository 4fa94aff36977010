"""What the tools share: finding a host's service of one layer, `HOST:DEV` names,
failing the way the real tool fails (its message on stderr, its exit code), iproute2's
JSON, and the progress and colours of long commands (only on a terminal)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, Self

import click
import grpc

from services.core.config import ConfigError
from services.core.server import open_channel
from stackemu import state
from stackemu.ip.v1 import ip_pb2_grpc
from stackemu.nic.v1 import nic_pb2_grpc
from stackemu.udp.v1 import udp_pb2_grpc

# Unary control RPCs answer at once; a service that does not is not running.
RPC_TIMEOUT = 5.0


class ToolExit(Exception):
    """End the tool with this exit status; what it prints was printed already."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def out(line: str = "") -> None:
    click.echo(line)


def err(line: str = "") -> None:
    click.echo(line, err=True)


def fail(code: int, *lines: str) -> NoReturn:
    for line in lines:
        err(line)
    raise ToolExit(code)


def iproute2_json(doc: object, pretty: bool = False) -> str:
    """`doc` as iproute2's json_writer (lib/json_writer.c) writes it: compact, or with
    -p its own layout, which is not json.dumps(indent=4)'s: members on lines of their
    own indented four spaces a level, array elements on one line (`[ "UP","LOWER_UP" ]`),
    `[ {` and `} ]` around an array of objects, `},{` between them."""
    if not pretty:
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    parts: list[str] = []
    depth = 0
    sep = ""

    def eor() -> None:
        # jsonw_eor(): the separator owed before the next value or name.
        nonlocal sep
        parts.append(sep)
        sep = ","

    def eol() -> None:
        parts.append("\n" + "    " * depth)

    def value(v: object) -> None:
        nonlocal depth, sep
        if isinstance(v, dict):
            eor()
            parts.append("{")
            depth += 1
            sep = ""
            for k, item in v.items():
                eor()
                eol()
                parts.append(json.dumps(k, ensure_ascii=False) + ": ")
                sep = ""
                value(item)
            depth -= 1
            if sep:
                eol()
            parts.append("}")
            sep = ","
        elif isinstance(v, list):
            eor()
            parts.append("[ ")
            depth += 1
            sep = ""
            for item in v:
                value(item)
            if sep:
                parts.append(" ")
            depth -= 1
            parts.append("]")
            sep = ","
        else:
            eor()
            parts.append(json.dumps(v, ensure_ascii=False))

    value(doc)
    return "".join(parts)


def colour(text: str, fg: str, err: bool = False) -> str:
    """click.style(text, fg) when the stream it goes to is a terminal and NO_COLOR is
    unset or empty (no-color.org); the text alone otherwise."""
    stream = sys.stderr if err else sys.stdout
    if os.environ.get("NO_COLOR") or not stream.isatty():
        return text
    return click.style(text, fg=fg)


class Progress:
    """What a long command shows while it works. Finished steps are lines of their own;
    on a terminal a spinner line below them, rewritten in place, says what is still
    awaited, and it is gone when the command ends. Elsewhere (a pipe, a file, a test)
    only the lines are written, so a log reads the same as the screen."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.frame = -1
        self.status = ""

    def line(self, text: str) -> None:
        self._clear()
        click.echo(text)
        self._draw()

    def spin(self, status: str) -> None:
        """The next spinner frame with what is awaited; nothing off a terminal."""
        if not self.tty:
            return
        self.status = status
        self.frame = (self.frame + 1) % len(self.FRAMES)
        self._draw()

    def done(self) -> None:
        self._clear()
        self.status = ""

    def _draw(self) -> None:
        if self.tty and self.status:
            width = shutil.get_terminal_size().columns - 1
            text = f"{self.FRAMES[self.frame]} {self.status}"[:width]
            click.echo(f"\r{text}\x1b[K", nl=False)

    def _clear(self) -> None:
        if self.tty and self.status:
            click.echo("\r\x1b[K", nl=False)


def default_host(host: str | None) -> str:
    return host or os.environ.get("STACKEMU_HOST") or "alice"


def split_dev(name: str, host: str | None) -> tuple[str, str]:
    """`bob:eth0` names bob's eth0; a plain `eth0` is the --host's. A colon never
    occurs in a Linux device name (dev_valid_name), so it cannot be misread."""
    if ":" in name:
        h, _, dev = name.partition(":")
        if h and dev:
            return h, dev
    return default_host(host), name


def matches(arg: str, word: str) -> bool:
    """iproute2's matches(): arg is a non-empty prefix of word (`ip li sh`)."""
    return bool(arg) and word.startswith(arg)


def strerror(errno: int) -> str:
    return os.strerror(errno)


def extack(errno: int, message: str) -> str | None:
    """The kernel's extack text, if the answer carries one beyond strerror(errno)."""
    if not message or message.rstrip(".").lower() == strerror(errno).lower():
        return None
    return message


def rtnl_error(errno: int, message: str) -> str:
    """What iproute2 prints for a refused request (lib/libnetlink.c): the extack
    message as `Error: ...` when there is one, else `RTNETLINK answers: strerror`."""
    text = extack(errno, message)
    if text is not None:
        return f"Error: {text}" + ("" if text.endswith(".") else ".")
    return f"RTNETLINK answers: {strerror(errno)}"


def ethnl_error(errno: int, message: str) -> list[str]:
    """What ethtool's netlink code prints (netlink/nlsock.c): the extack message, then
    strerror, each as `netlink error: ...`."""
    text = extack(errno, message)
    lines = [f"netlink error: {text}"] if text is not None else []
    return [*lines, f"netlink error: {strerror(errno)}"]


class Service:
    """A channel to one host's service of one layer. Every failure to talk to it (no
    stack, the service gone, an RPC it lacks) ends the tool with a message saying what
    to do."""

    layer = ""
    title = ""

    def __init__(self, host: str | None) -> None:
        self.host = default_host(host)
        if state.load() is None:
            # (service_addr's message also offers STACKEMU_SOCKET_ADDR, which no tool reads)
            raise click.ClickException(
                f"no emulated stack is running (no {state.state_file()}): start one with `stackemu up`"
            )
        try:
            self.addr = state.service_addr(self.layer, self.host)
        except state.NoStack as e:
            raise click.ClickException(str(e)) from None
        try:
            self._channel = open_channel(self.addr)
        except ConfigError as e:  # STACKEMU_TLS_* half set, or a file unreadable
            raise click.ClickException(str(e)) from None
        self.stub: Any = self.make_stub(self._channel)

    def make_stub(self, channel: grpc.Channel) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, rpc: str, request: Any) -> Any:
        """One unary RPC; its response (whose errno the caller reads)."""
        with self.rpc_errors(rpc):
            return getattr(self.stub, rpc)(request, timeout=RPC_TIMEOUT)

    @contextmanager
    def rpc_errors(self, rpc: str) -> Iterator[None]:
        try:
            yield
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else None
            details = e.details() if isinstance(e, grpc.Call) else str(e)
            where = f"host {self.host}'s {self.title} service at {self.addr}"
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                msg = f"cannot reach {where} ({details}): is the stack running? see `stackemu status`"
            elif code == grpc.StatusCode.UNIMPLEMENTED:
                msg = f"{where} does not implement {rpc} yet"
            else:
                name = code.name if code is not None else "error"
                msg = f"{rpc} to {where} failed: {name}: {details}"
            raise click.ClickException(msg) from None


def has_service(layer: str, host: str | None) -> bool:
    """Whether the running stack's state names this host's service of that layer."""
    data = state.load()
    if data is None:
        return False
    entry = data.get("hosts", {}).get(default_host(host), {})
    return isinstance(entry, dict) and layer in entry


def run_tool(main: Any, *args: Any) -> None:
    """Run a tool's main and leave with its exit status."""
    try:
        code = main(*args)
    except ToolExit as e:
        code = e.code
    if code:
        sys.exit(code)


class Nic(Service):
    layer, title = "nic", "NIC"

    def make_stub(self, channel: grpc.Channel) -> Any:
        return nic_pb2_grpc.NicServiceStub(channel)


class Ip(Service):
    layer, title = "ip", "IP"

    def make_stub(self, channel: grpc.Channel) -> Any:
        return ip_pb2_grpc.IpServiceStub(channel)


class Udp(Service):
    layer, title = "udp", "UDP"

    def make_stub(self, channel: grpc.Channel) -> Any:
        return udp_pb2_grpc.UdpServiceStub(channel)
