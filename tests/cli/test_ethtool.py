"""`stackemu ethtool` and `stackemu hwstamp_ctl`: ethtool 6.1's and linuxptp's layouts,
messages and exit codes, and the requests sent."""

from __future__ import annotations

from stackemu.nic.v1 import nic_pb2
from tests.cli.conftest import Stack


def test_show_ring(stack: Stack) -> None:
    r = stack.run("ethtool", "-g", "eth0")
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "Ring parameters for eth0:\n"
        "Pre-set maximums:\n"
        "RX:\t\t4096\n"
        "RX Mini:\tn/a\n"
        "RX Jumbo:\tn/a\n"
        "TX:\t\t4096\n"
        "Current hardware settings:\n"
        "RX:\t\t256\n"
        "RX Mini:\tn/a\n"
        "RX Jumbo:\tn/a\n"
        "TX:\t\t256\n"
        "RX Buf Len:\t\tn/a\n"
        "CQE Size:\t\tn/a\n"
        "TX Push:\toff\n"
        "TCP data split:\tn/a\n"
    )
    assert stack.alice.sent("GetRingParam") == [nic_pb2.GetRingParamRequest(device="eth0")]


def test_ring_errors_are_netlink_errors(stack: Stack) -> None:
    r = stack.run("ethtool", "--show-ring", "lo")
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "netlink error: Operation not supported\n")
    r = stack.run("ethtool", "-g", "nope")
    assert r.stderr == "netlink error: no device matches name\nnetlink error: No such device\n"
    r = stack.run("ethtool", "-G", "eth0", "rx", "8192")
    assert r.exit_code == 81
    assert r.stderr == "netlink error: requested ring size exceeds maximum\nnetlink error: Invalid argument\n"


def test_set_ring(stack: Stack) -> None:
    r = stack.run("ethtool", "-G", "eth0", "rx", "1024", "tx", "0x200")
    assert (r.exit_code, r.output) == (0, "")
    r = stack.run("ethtool", "--set-ring", "bob:eth0", "tx", "512")
    assert (r.exit_code, r.output) == (0, "")
    assert stack.alice.sent("SetRingParam") == [
        nic_pb2.SetRingParamRequest(device="eth0", rx_pending=1024, tx_pending=512)
    ]
    assert stack.bob.sent("SetRingParam") == [nic_pb2.SetRingParamRequest(device="eth0", tx_pending=512)]
    assert not stack.bob.sent("SetRingParam")[0].HasField("rx_pending")


def test_parameter_errors(stack: Stack) -> None:
    cases = [
        (("-G", "eth0", "rx", "abc"), "ethtool (-G): invalid value 'abc' for parameter 'rx'\n"),
        (("-G", "eth0", "foo", "1"), "ethtool (-G): unknown parameter 'foo'\n"),
        (("-G", "eth0", "rx"), "ethtool (-G): no value for parameter 'rx'\n"),
        (("-G", "eth0", "rx", "1", "rx", "2"), "ethtool (-G): duplicate parameter 'rx'\n"),
        (("-C", "eth0", "tx-usecs", "1"), "ethtool (-C): unknown parameter 'tx-usecs'\n"),
        (("-g", "eth0", "extra"), "ethtool: unexpected parameter 'extra'\n"),
        ((), "ethtool: bad command line argument(s)\nFor more information run ethtool -h\n"),
        (("-g",), "ethtool: bad command line argument(s)\nFor more information run ethtool -h\n"),
    ]
    for args, stderr in cases:
        r = stack.run("ethtool", *args)
        assert (r.exit_code, r.stdout, r.stderr) == (1, "", stderr), args
    assert stack.alice.requests == []


def test_coalesce(stack: Stack) -> None:
    r = stack.run("ethtool", "-c", "eth0")
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "Coalesce parameters for eth0:\n"
        "Adaptive RX: n/a  TX: n/a\n"
        "stats-block-usecs: n/a\n"
        "sample-interval: n/a\n"
        "pkt-rate-low: n/a\n"
        "pkt-rate-high: n/a\n"
        "\n"
        "rx-usecs: 50\n"
        "rx-frames: 32\n"
        "rx-usecs-irq: n/a\n"
        "rx-frames-irq: n/a\n"
        "\n"
        "tx-usecs: n/a\n"
        "tx-frames: n/a\n"
        "tx-usecs-irq: n/a\n"
        "tx-frames-irq: n/a\n"
        "\n"
        "rx-usecs-low: n/a\n"
        "rx-frame-low: n/a\n"
        "tx-usecs-low: n/a\n"
        "tx-frame-low: n/a\n"
        "\n"
        "rx-usecs-high: n/a\n"
        "rx-frame-high: n/a\n"
        "tx-usecs-high: n/a\n"
        "tx-frame-high: n/a\n"
        "\n"
        "CQE mode RX: n/a  TX: n/a\n"
        "\n"
    )
    r = stack.run("ethtool", "-C", "eth0", "rx-usecs", "100", "rx-frames", "16")
    assert (r.exit_code, r.output) == (0, "")
    assert stack.alice.sent("SetCoalesce") == [
        nic_pb2.SetCoalesceRequest(device="eth0", rx_usecs=100, rx_max_frames=16)
    ]


def test_show_features_groups_them_as_ethtool(stack: Stack) -> None:
    stack.alice.features["rx-checksum"][1] = False
    r = stack.run("ethtool", "-k", "eth0")
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "Features for eth0:\n"
        "rx-checksumming: on [fixed]\n"
        "tx-checksumming: on\n"
        "scatter-gather: on\n"
        "tcp-segmentation-offload: off\n"
        "generic-segmentation-offload: on\n"
        "generic-receive-offload: on\n"
        "large-receive-offload: off\n"
        "rx-vlan-offload: off\n"
        "tx-vlan-offload: off\n"
        "ntuple-filters: off\n"
        "receive-hashing: off\n"
        "tx-udp-segmentation: on\n"
        "loopback: off [fixed]\n"
        "rx-gro-list: off\n"
        "rx-udp-gro-forwarding: off\n"
    )


def test_show_features_indents_group_members(stack: Stack) -> None:
    stack.alice.features = {"tx-checksum-ipv4": [False, False], "tx-checksum-ip-generic": [True, True]}
    r = stack.run("ethtool", "--show-features", "eth0")
    assert r.stdout.splitlines()[1:4] == [
        "rx-checksumming: off",
        "tx-checksumming: on",
        "\ttx-checksum-ipv4: off [fixed]",
    ]
    assert r.stdout.splitlines()[4] == "\ttx-checksum-ip-generic: on"


def test_set_features_expands_legacy_names_and_shows_actual_changes(stack: Stack) -> None:
    r = stack.run("ethtool", "-K", "eth0", "tx", "off")
    assert r.exit_code == 0, r.output
    # tx-udp-segmentation follows tx checksumming off (netdev_fix_features)
    assert r.stdout == (
        "Actual changes:\ntx-checksum-ip-generic: off\ntx-udp-segmentation: off [not requested]\n"
    )
    assert stack.alice.sent("SetFeatures") == [
        nic_pb2.SetFeaturesRequest(device="eth0", features={"tx-checksum-ip-generic": False})
    ]
    r = stack.run("ethtool", "-K", "eth0", "gro", "off", "rx-gro-list", "on")
    assert (r.exit_code, r.output) == (0, "")
    assert stack.alice.sent("SetFeatures")[-1] == nic_pb2.SetFeaturesRequest(
        device="eth0", features={"rx-gro": False, "rx-gro-list": True}
    )


def test_set_features_when_the_service_names_features_by_group(stack: Stack) -> None:
    stack.alice.features = {"tx-checksumming": [True, True], "generic-receive-offload": [True, True]}
    r = stack.run("ethtool", "-K", "eth0", "tx", "off", "gro", "off")
    assert (r.exit_code, r.output) == (0, "")
    assert stack.alice.sent("SetFeatures") == [
        nic_pb2.SetFeaturesRequest(
            device="eth0", features={"tx-checksumming": False, "generic-receive-offload": False}
        )
    ]


def test_set_features_refused(stack: Stack) -> None:
    r = stack.run("ethtool", "-K", "eth0", "loopback", "on")
    assert r.exit_code == 1
    assert r.stdout == "Actual changes:\nloopback: off [requested on]\n"
    assert r.stderr == "Could not change any device features\n"
    r = stack.run("ethtool", "-K", "eth0", "foo", "on")
    assert r.exit_code == 92
    assert r.stderr == "netlink error: bit name not found\nnetlink error: Operation not supported\n"
    r = stack.run("ethtool", "-K", "eth0", "gro")
    assert (r.exit_code, r.stderr) == (
        1,
        "ethtool (-K): flag '(null)' for parameter '(null)' is not followed by 'on' or 'off'\n",
    )


def test_statistics(stack: Stack) -> None:
    r = stack.run("ethtool", "-S", "eth0")
    assert (r.exit_code, r.stdout) == (
        0,
        "NIC statistics:\n     rx_packets: 5\n     rx_missed_errors: 3\n     rx_queue_0_packets: 5\n",
    )
    r = stack.run("ethtool", "--statistics", "lo")
    assert (r.exit_code, r.stdout, r.stderr) == (94, "", "no stats available\n")
    r = stack.run("ethtool", "-S", "nope")
    assert (r.exit_code, r.stderr) == (96, "Cannot get stats strings information: No such device\n")


def test_time_stamping(stack: Stack) -> None:
    r = stack.run("ethtool", "-T", "eth0")
    assert r.exit_code == 0, r.output
    assert r.stdout == (
        "Time stamping parameters for eth0:\n"
        "Capabilities:\n"
        "\thardware-transmit\n"
        "\tsoftware-transmit\n"
        "\thardware-receive\n"
        "\tsoftware-receive\n"
        "\tsoftware-system-clock\n"
        "\thardware-raw-clock\n"
        "PTP Hardware Clock: 0\n"
        "Hardware Transmit Timestamp Modes:\n"
        "\toff\n"
        "\ton\n"
        "Hardware Receive Filter Modes:\n"
        "\tnone\n"
        "\tall\n"
    )
    # what ethtool 6.1 prints for this machine's lo
    r = stack.run("ethtool", "--show-time-stamping", "lo")
    assert r.stdout == (
        "Time stamping parameters for lo:\n"
        "Capabilities:\n"
        "\tsoftware-transmit\n"
        "\tsoftware-receive\n"
        "\tsoftware-system-clock\n"
        "PTP Hardware Clock: none\n"
        "Hardware Transmit Timestamp Modes: none\n"
        "Hardware Receive Filter Modes: none\n"
    )


def test_plain_ethtool_says_link_detected(stack: Stack) -> None:
    r = stack.run("ethtool", "eth0")
    assert (r.exit_code, r.stdout) == (0, "Settings for eth0:\n\tLink detected: yes\n")
    r = stack.run("ethtool", "eth1")  # down and without a carrier
    assert (r.exit_code, r.stdout) == (0, "Settings for eth1:\n\tLink detected: no\n")
    r = stack.run("ethtool", "nope")
    assert r.exit_code == 75
    assert (
        r.stderr
        == "netlink error: no device matches name\nnetlink error: No such device\nNo data available\n"
    )


def test_hwstamp_ctl_sets_and_prints_what_the_driver_applied(stack: Stack) -> None:
    r = stack.run("hwstamp_ctl", "-i", "eth0", "-t", "1", "-r", "12")
    assert r.exit_code == 0, r.output
    assert r.stdout == "current settings:\ntx_type 0\nrx_filter 0\nnew settings:\ntx_type 1\nrx_filter 1\n"
    assert stack.alice.sent("SetHwTstamp") == [
        nic_pb2.SetHwTstampRequest(device="eth0", tx_type=1, rx_filter=12)
    ]
    # only -r: tx_type stays what it is
    r = stack.run("hwstamp_ctl", "-ibob:eth0", "-r1")
    assert r.exit_code == 0, r.output
    assert stack.bob.sent("SetHwTstamp") == [
        nic_pb2.SetHwTstampRequest(device="eth0", tx_type=0, rx_filter=1)
    ]
    r = stack.run("hwstamp_ctl", "-i", "eth0")
    assert (r.exit_code, r.stdout) == (0, "current settings:\ntx_type 1\nrx_filter 1\n")
    assert len(stack.alice.sent("SetHwTstamp")) == 1


def test_hwstamp_ctl_errors(stack: Stack) -> None:
    r = stack.run("hwstamp_ctl", "-i", "lo", "-t", "1")
    assert r.exit_code == 95  # EOPNOTSUPP, as hwstamp_ctl returns the errno
    assert r.stderr == (
        "Device driver does not have support for non-destructive SIOCGHWTSTAMP.\n"
        "SIOCSHWTSTAMP failed: Operation not supported\n"
    )
    for args in (("-i", "eth0", "-t", "2"), ("-i", "eth0", "-r", "15"), ("-t", "1")):
        r = stack.run("hwstamp_ctl", *args)
        assert r.exit_code == 255, args
        assert "usage: hwstamp_ctl [options]" in r.stderr
        assert "\t\t14 PTP v2/802.AS1, any layer, Delay_req packet\n" in r.stderr
