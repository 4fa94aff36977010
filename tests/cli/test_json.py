"""--json on the read commands that had none: it parses, and says what the text says."""

from __future__ import annotations

import json

from tests.cli.conftest import Stack


def test_softnet_stat(stack: Stack) -> None:
    text = stack.run("softnet_stat", "--host", "bob").stdout.splitlines()
    r = stack.run("softnet_stat", "--host", "bob", "--json")
    assert r.exit_code == 0
    rows = json.loads(r.stdout)
    assert rows == [
        {
            "cpu": 0,
            "processed": 0x409A5,
            "dropped": 2,
            "time_squeeze": 3,
            "received_rps": 0,
            "flow_limit_count": 0,
            "backlog_len": 1,
        },
        {
            "cpu": 1,
            "processed": 0x453A6,
            "dropped": 0,
            "time_squeeze": 0,
            "received_rps": 5,
            "flow_limit_count": 0,
            "backlog_len": 0,
        },
    ]
    for line, row in zip(text, rows, strict=True):
        cols = [int(c, 16) for c in line.split()]
        assert (cols[0], cols[1], cols[2], cols[9], cols[10], cols[11], cols[12]) == (
            row["processed"],
            row["dropped"],
            row["time_squeeze"],
            row["received_rps"],
            row["flow_limit_count"],
            row["backlog_len"],
            row["cpu"],
        )
    assert stack.run("softnet_stat", "--jsn").exit_code == 1


def test_ethtool_statistics(stack: Stack) -> None:
    text = stack.run("ethtool", "-S", "eth0").stdout.splitlines()
    r = stack.run("ethtool", "--json", "-S", "eth0")
    assert r.exit_code == 0
    (obj,) = json.loads(r.stdout)
    assert obj == {"ifname": "eth0", "rx_packets": 5, "rx_missed_errors": 3, "rx_queue_0_packets": 5}
    assert text[1:] == [f"     {k}: {v}" for k, v in obj.items() if k != "ifname"]
    r = stack.run("ethtool", "--json", "-k", "eth0")
    assert r.exit_code == 1
