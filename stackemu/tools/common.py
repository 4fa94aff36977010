"""What the tools share: finding a host's service of one layer, `HOST:DEV` names, and
failing the way the real tool fails (its message on stderr, its exit code)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, Self

import click
import grpc

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
        self._channel = grpc.insecure_channel(self.addr)
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
