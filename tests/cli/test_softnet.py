"""`stackemu softnet_stat`: the kernel's /proc/net/softnet_stat rows."""

from __future__ import annotations

from tests.cli.conftest import Stack


def test_rows_as_the_kernel_prints_them(stack: Stack) -> None:
    r = stack.run("softnet_stat", "--host", "bob")
    assert r.exit_code == 0, r.output
    # The 6.18 layout this machine's /proc/net/softnet_stat has: 15 columns of %08x.
    assert r.output == (
        "000409a5 00000002 00000003 00000000 00000000 00000000 00000000 00000000 "
        "00000000 00000000 00000000 00000001 00000000 00000001 00000000\n"
        "000453a6 00000000 00000000 00000000 00000000 00000000 00000000 00000000 "
        "00000000 00000005 00000000 00000000 00000001 00000000 00000000\n"
    )
    assert len(stack.bob.sent("GetStats")) == 1
    assert stack.alice.requests == []


def test_arguments_are_refused(stack: Stack) -> None:
    r = stack.run("softnet_stat", "extra")
    assert r.exit_code == 1
