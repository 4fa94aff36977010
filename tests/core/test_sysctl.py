import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence

import pytest

from services.core import errno
from services.core.sysctl import (
    HZ,
    SYSCTLS,
    UDP_MEM_DEFAULT,
    Sysctl,
    SysctlValue,
    udp_mem_from_pages,
)

DEFAULTS: dict[str, SysctlValue] = {
    "net.core.netdev_budget": 300,
    "net.core.netdev_budget_usecs": 2000,
    "net.core.netdev_max_backlog": 1000,
    "net.core.dev_weight": 64,
    "net.core.dev_weight_rx_bias": 1,
    "net.core.dev_weight_tx_bias": 1,
    "net.core.gro_normal_batch": 8,
    "net.core.netdev_tstamp_prequeue": 1,
    "net.core.max_skb_frags": 17,
    "net.core.rmem_default": 212992,
    "net.core.rmem_max": 4194304,
    "net.core.wmem_default": 212992,
    "net.core.wmem_max": 4194304,
    "net.core.optmem_max": 131072,
    "net.core.tstamp_allow_data": 1,
    "net.ipv4.ip_forward": 0,
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.ip_default_ttl": 64,
    "net.ipv4.ip_no_pmtu_disc": 0,
    "net.ipv4.ip_nonlocal_bind": 0,
    "net.ipv4.ip_early_demux": 1,
    "net.ipv4.udp_early_demux": 1,
    "net.ipv4.ip_local_port_range": (32768, 60999),
    "net.ipv4.ip_unprivileged_port_start": 1024,
    "net.ipv4.ipfrag_high_thresh": 4194304,
    "net.ipv4.ipfrag_low_thresh": 3145728,
    "net.ipv4.ipfrag_time": 30,
    "net.ipv4.ipfrag_max_dist": 64,
    "net.ipv4.icmp_ratelimit": 1000,
    "net.ipv4.icmp_ratemask": 6168,
    "net.ipv4.icmp_msgs_per_sec": 1000,
    "net.ipv4.icmp_msgs_burst": 50,
    "net.ipv4.icmp_echo_ignore_all": 0,
    "net.ipv4.icmp_echo_ignore_broadcasts": 1,
    "net.ipv4.icmp_ignore_bogus_error_responses": 1,
    "net.ipv4.icmp_errors_use_inbound_ifaddr": 0,
    "net.ipv4.udp_mem": (575802, 767738, 1151604),
    "net.ipv4.udp_rmem_min": 4096,
    "net.ipv4.udp_wmem_min": 4096,
}

# (sysctl, text written, errno or 0, value read back), each from the defaults. Outcomes
# recorded from Linux 6.18.44 in a fresh network namespace; test_matches_live_kernel
# replays the per-namespace ones where it can.
WRITES: list[tuple[str, str, int, str]] = [
    ("net.ipv4.ip_default_ttl", "0", 22, "64"),
    ("net.ipv4.ip_default_ttl", "256", 22, "64"),
    ("net.ipv4.ip_default_ttl", "-1", 22, "64"),
    ("net.ipv4.ip_default_ttl", "-0", 22, "64"),
    ("net.ipv4.ip_default_ttl", "255", 0, "255"),
    ("net.ipv4.ip_default_ttl", "0x40", 0, "64"),
    ("net.ipv4.ip_default_ttl", "0X1f", 0, "31"),
    ("net.ipv4.ip_default_ttl", "010", 0, "8"),
    ("net.ipv4.ip_default_ttl", "09", 22, "64"),
    ("net.ipv4.ip_default_ttl", "0x", 22, "64"),
    ("net.ipv4.ip_default_ttl", "  70\n", 0, "70"),
    ("net.ipv4.ip_default_ttl", "\r70", 0, "70"),
    ("net.ipv4.ip_default_ttl", "70\r", 22, "64"),
    ("net.ipv4.ip_default_ttl", "71abc", 22, "64"),
    ("net.ipv4.ip_default_ttl", "72 73", 0, "72"),
    ("net.ipv4.ip_default_ttl", "72 abc", 0, "72"),
    ("net.ipv4.ip_default_ttl", "+74", 22, "64"),
    ("net.ipv4.ip_default_ttl", "- 5", 22, "64"),
    ("net.ipv4.ip_default_ttl", "1,2", 22, "64"),
    ("net.ipv4.ip_default_ttl", "76.5", 22, "64"),
    ("net.ipv4.ip_default_ttl", "", 0, "64"),
    ("net.ipv4.ip_default_ttl", "\n", 22, "64"),
    ("net.ipv4.ip_default_ttl", "18446744073709551616", 22, "64"),
    ("net.ipv4.ip_forward", "2", 0, "2"),
    ("net.ipv4.ip_forward", "-1", 0, "-1"),
    ("net.ipv4.ip_forward", "-0", 0, "0"),
    ("net.ipv4.ip_forward", "2147483647", 0, "2147483647"),
    ("net.ipv4.ip_forward", "2147483648", 22, "0"),
    ("net.ipv4.ip_forward", "-2147483648", 0, "-2147483648"),
    ("net.ipv4.ip_forward", "-2147483649", 22, "0"),
    ("net.ipv4.ip_forward", "00000000000000000001", 0, "1"),
    ("net.ipv4.ip_forward", "000000000000000000001", 22, "0"),
    ("net.ipv4.ip_forward", "-0000000000000000001", 0, "-1"),
    ("net.ipv4.ip_forward", "-00000000000000000001", 22, "0"),
    ("net.ipv4.ip_forward", "1" * 1000, 22, "0"),
    ("net.ipv4.conf.all.rp_filter", "3", 0, "3"),
    ("net.ipv4.ip_local_port_range", "1024 1024", 0, "1024\t1024"),
    ("net.ipv4.ip_local_port_range", "1025 1025", 0, "1025\t1025"),
    ("net.ipv4.ip_local_port_range", "1023 2000", 22, "32768\t60999"),
    ("net.ipv4.ip_local_port_range", "2000 1999", 22, "32768\t60999"),
    ("net.ipv4.ip_local_port_range", "40000", 0, "40000\t60999"),
    ("net.ipv4.ip_local_port_range", "61000", 22, "32768\t60999"),
    ("net.ipv4.ip_local_port_range", "40000 x", 22, "32768\t60999"),
    ("net.ipv4.ip_local_port_range", "0 5", 22, "32768\t60999"),
    ("net.ipv4.ip_local_port_range", "-1 5", 22, "32768\t60999"),
    ("net.ipv4.ip_local_port_range", "32768 65536", 22, "32768\t60999"),
    ("net.ipv4.ip_local_port_range", "32768\t65535", 0, "32768\t65535"),
    ("net.ipv4.ip_local_port_range", " 2000   3000 \n", 0, "2000\t3000"),
    ("net.ipv4.ip_local_port_range", "0x8000 0xee47", 0, "32768\t60999"),
    ("net.ipv4.ip_local_port_range", "32768 60000 5", 0, "32768\t60000"),
    ("net.ipv4.ip_unprivileged_port_start", "0", 0, "0"),
    ("net.ipv4.ip_unprivileged_port_start", "32768", 0, "32768"),
    ("net.ipv4.ip_unprivileged_port_start", "32769", 22, "1024"),
    ("net.ipv4.ip_unprivileged_port_start", "65536", 22, "1024"),
    ("net.ipv4.ip_unprivileged_port_start", "-1", 22, "1024"),
    ("net.ipv4.ipfrag_high_thresh", "3145727", 22, "4194304"),
    ("net.ipv4.ipfrag_high_thresh", "3145728", 0, "3145728"),
    ("net.ipv4.ipfrag_high_thresh", "-1", 22, "4194304"),
    ("net.ipv4.ipfrag_high_thresh", "18446744073709551615", 0, "18446744073709551615"),
    ("net.ipv4.ipfrag_high_thresh", "0xffffffffffffffff", 0, "18446744073709551615"),
    ("net.ipv4.ipfrag_high_thresh", "0xfffffffffffffffff", 22, "4194304"),
    ("net.ipv4.ipfrag_low_thresh", "4194305", 22, "3145728"),
    ("net.ipv4.ipfrag_low_thresh", "4194304", 0, "4194304"),
    ("net.ipv4.ipfrag_low_thresh", "0", 0, "0"),
    ("net.ipv4.ipfrag_time", "-5", 0, "-5"),
    ("net.ipv4.ipfrag_time", "0", 0, "0"),
    ("net.ipv4.ipfrag_max_dist", "-1", 22, "64"),
    ("net.ipv4.ipfrag_max_dist", "-0", 0, "0"),
    ("net.ipv4.ipfrag_max_dist", "2147483648", 22, "64"),
    ("net.ipv4.udp_rmem_min", "0", 22, "4096"),
    ("net.ipv4.udp_rmem_min", "1", 0, "1"),
    ("net.ipv4.udp_rmem_min", "2147483647", 0, "2147483647"),
    ("net.ipv4.udp_wmem_min", "0", 22, "4096"),
    ("net.ipv4.icmp_ratelimit", "-1", 22, "1000"),
    ("net.ipv4.icmp_ratelimit", "0", 0, "0"),
    ("net.ipv4.icmp_ratelimit", "2147483648", 22, "1000"),
    ("net.ipv4.icmp_ratelimit", "4294967304", 0, "8"),
    ("net.ipv4.icmp_ratelimit", "-4294967296", 0, "0"),
    ("net.ipv4.icmp_ratemask", "-1", 0, "-1"),
    ("net.ipv4.icmp_ratemask", "2147483648", 22, "6168"),
    ("net.ipv4.icmp_msgs_per_sec", "-1", 22, "1000"),
    ("net.ipv4.icmp_echo_ignore_broadcasts", "2", 22, "1"),
    ("net.ipv4.icmp_echo_ignore_broadcasts", "0", 0, "0"),
    ("net.ipv4.ip_no_pmtu_disc", "255", 0, "255"),
    ("net.ipv4.ip_no_pmtu_disc", "256", 22, "0"),
    ("net.ipv4.ip_nonlocal_bind", "2", 0, "2"),
    ("net.core.optmem_max", "-1", 22, "131072"),
    ("net.core.optmem_max", "0", 0, "0"),
    ("net.core.tstamp_allow_data", "2", 22, "1"),
    # Global in the kernel (not writable from a child namespace); refusals checked by
    # hand on this machine's init namespace, acceptance from the kernel source.
    ("net.core.netdev_budget_usecs", "1999", 22, "2000"),
    ("net.core.netdev_budget_usecs", "2000", 0, "2000"),
    ("net.core.dev_weight", "0", 22, "64"),
    ("net.core.dev_weight_rx_bias", "0", 22, "1"),
    ("net.core.gro_normal_batch", "0", 22, "8"),
    ("net.core.max_skb_frags", "18", 22, "17"),
    ("net.core.max_skb_frags", "0", 22, "17"),
    ("net.core.rmem_max", "2303", 22, "4194304"),
    ("net.core.rmem_max", "2304", 0, "2304"),
    ("net.core.rmem_default", "2303", 22, "212992"),
    ("net.core.wmem_max", "4607", 22, "4194304"),
    ("net.core.wmem_max", "4608", 0, "4608"),
    ("net.core.wmem_default", "4607", 22, "212992"),
    ("net.core.netdev_max_backlog", "2147483648", 22, "1000"),
    ("net.core.netdev_max_backlog", "-1", 0, "-1"),
    ("net.core.netdev_budget", "x", 22, "300"),
    ("net.ipv4.udp_mem", "-1", 22, "575802\t767738\t1151604"),
    ("net.ipv4.udp_mem", "x", 22, "575802\t767738\t1151604"),
    ("net.ipv4.udp_mem", "1 2 3", 0, "1\t2\t3"),
    # Plain vector handlers store each number as they go: the 1 and 2 stay.
    ("net.ipv4.udp_mem", "1 2 x", 22, "1\t2\t1151604"),
]

# HZ-dependent writes (jiffies conversions) behave as above only at HZ=1000.
HZ_1000_ONLY = {"net.ipv4.ipfrag_time", "net.ipv4.icmp_ratelimit"}


def _write(sysctl: Sysctl, name: str, value: str | int | Sequence[int]) -> int:
    try:
        sysctl.set(name, value)
    except OSError as error:
        return error.errno or -1
    return 0


def test_defaults() -> None:
    sysctl = Sysctl()
    assert {name: sysctl.get(name) for name in DEFAULTS} == DEFAULTS


def test_registry_entries() -> None:
    assert set(DEFAULTS) <= set(SYSCTLS)
    for name, spec in SYSCTLS.items():
        assert spec.name == name
        assert spec.layer in ("core", "nic", "ip", "udp", "socket")
        assert spec.doc and "\n" not in spec.doc and len(spec.doc) <= 100
        assert spec.handler
        # Every default is something the kernel would accept being written back.
        sysctl = Sysctl()
        sysctl.set(name, sysctl.get_str(name))
        assert sysctl.get_tuple(name) == spec.default


def test_layers() -> None:
    assert SYSCTLS["net.core.netdev_budget"].layer == "nic"
    assert SYSCTLS["net.ipv4.ip_default_ttl"].layer == "ip"
    assert SYSCTLS["net.ipv4.udp_mem"].layer == "udp"
    assert SYSCTLS["net.core.rmem_max"].layer == "socket"


def test_hz() -> None:
    assert HZ == 1000
    assert SYSCTLS["net.core.netdev_budget_usecs"].minimum == 2 * 1_000_000 // HZ


def test_udp_mem_from_pages() -> None:
    # limit = nr_free_buffer_pages / 8, floor 128; min = limit / 4 * 3; max = 2 * min.
    assert udp_mem_from_pages(6141904) == UDP_MEM_DEFAULT
    assert udp_mem_from_pages(0) == (96, 128, 192)
    assert udp_mem_from_pages(8 * 1001) == (750, 1001, 1500)


def test_get_str() -> None:
    sysctl = Sysctl()
    assert sysctl.get_str("net.ipv4.ip_local_port_range") == "32768\t60999"
    assert sysctl.get_str("net.ipv4.udp_mem") == "575802\t767738\t1151604"
    assert sysctl.get_str("net.ipv4.ip_default_ttl") == "64"


def test_typed_getters() -> None:
    sysctl = Sysctl()
    assert sysctl.get_int("net.core.netdev_budget") == 300
    assert sysctl.get_tuple("net.core.netdev_budget") == (300,)
    assert sysctl.get_tuple("net.ipv4.ip_local_port_range") == (32768, 60999)
    with pytest.raises(TypeError):
        sysctl.get_int("net.ipv4.ip_local_port_range")


@pytest.mark.parametrize(("name", "text", "error", "after"), WRITES)
def test_write(name: str, text: str, error: int, after: str) -> None:
    sysctl = Sysctl()
    assert _write(sysctl, name, text) == error
    assert sysctl.get_str(name) == after


def test_einval_message_names_the_sysctl() -> None:
    with pytest.raises(OSError) as info:
        Sysctl().set("net.ipv4.ip_default_ttl", "0")
    assert info.value.errno == errno.EINVAL
    assert info.value.strerror == ("Invalid argument: net.ipv4.ip_default_ttl: 0 is outside [1, 255]")


def test_set_numbers() -> None:
    sysctl = Sysctl()
    sysctl.set("net.core.netdev_budget", 600)
    sysctl.set("net.ipv4.ip_local_port_range", [10000, 20000])
    sysctl.set("net.ipv4.udp_mem", (1, 2, 3))
    assert sysctl.get("net.core.netdev_budget") == 600
    assert sysctl.get("net.ipv4.ip_local_port_range") == (10000, 20000)
    assert sysctl.get("net.ipv4.udp_mem") == (1, 2, 3)
    assert _write(sysctl, "net.ipv4.ip_default_ttl", 0) == errno.EINVAL
    assert _write(sysctl, "net.ipv4.ip_default_ttl", -1) == errno.EINVAL
    assert _write(sysctl, "net.ipv4.ip_forward", -1) == 0
    assert _write(sysctl, "net.ipv4.ip_local_port_range", []) == errno.EINVAL
    assert _write(sysctl, "net.ipv4.ip_local_port_range", [5, 4]) == errno.EINVAL
    assert sysctl.get("net.ipv4.ip_local_port_range") == (10000, 20000)


def test_cross_checks_use_current_values() -> None:
    sysctl = Sysctl()
    sysctl.set("net.ipv4.ipfrag_low_thresh", "1000")
    sysctl.set("net.ipv4.ipfrag_high_thresh", "1000")
    assert _write(sysctl, "net.ipv4.ipfrag_low_thresh", "1001") == errno.EINVAL
    sysctl.set("net.ipv4.ip_unprivileged_port_start", "0")
    sysctl.set("net.ipv4.ip_local_port_range", "1 1")
    assert _write(sysctl, "net.ipv4.ip_unprivileged_port_start", "2") == errno.EINVAL


def test_unknown_name_is_enoent() -> None:
    sysctl = Sysctl()
    calls: list[Callable[[], object]] = [
        lambda: sysctl.get("net.ipv4.no_such"),
        lambda: sysctl.get_str("net.ipv4.no_such"),
        lambda: sysctl.get_tuple("net.ipv4.no_such"),
        lambda: sysctl.set("net.ipv4.no_such", "1"),
        lambda: sysctl.watch("net.ipv4.no_such", lambda n, v: None),
        lambda: sysctl.spec("net.ipv4.no_such"),
    ]
    for call in calls:
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.ENOENT
        assert info.value.strerror == "No such file or directory: no sysctl 'net.ipv4.no_such'"


def test_overrides() -> None:
    sysctl = Sysctl({"net.core.netdev_budget": "64", "net.ipv4.ip_local_port_range": "1024 2048"})
    assert sysctl.get("net.core.netdev_budget") == 64
    assert sysctl.get("net.ipv4.ip_local_port_range") == (1024, 2048)


def test_overrides_may_come_in_any_order() -> None:
    sysctl = Sysctl(
        {
            "net.ipv4.ipfrag_high_thresh": "1000",
            "net.ipv4.ipfrag_low_thresh": "500",
            "net.ipv4.ip_local_port_range": "80 90",
            "net.ipv4.ip_unprivileged_port_start": "80",
        }
    )
    assert sysctl.get("net.ipv4.ipfrag_high_thresh") == 1000
    assert sysctl.get("net.ipv4.ipfrag_low_thresh") == 500
    assert sysctl.get("net.ipv4.ip_local_port_range") == (80, 90)


def test_bad_overrides_fail_fast() -> None:
    with pytest.raises(OSError) as info:
        Sysctl({"net.ipv4.ip_default_ttl": "0"})
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        Sysctl({"net.ipv4.ip_default_tll": "64"})
    assert info.value.errno == errno.ENOENT


def test_watch() -> None:
    sysctl = Sysctl()
    seen: list[tuple[str, SysctlValue]] = []
    unwatch = sysctl.watch("net.ipv4.ip_local_port_range", lambda n, v: seen.append((n, v)))
    sysctl.set("net.ipv4.ip_local_port_range", "40000")
    sysctl.set("net.ipv4.ip_local_port_range", "40000 60999")  # unchanged: no call
    _write(sysctl, "net.ipv4.ip_local_port_range", "1 0")  # refused: no call
    sysctl.set("net.ipv4.ip_default_ttl", "1")  # another sysctl
    assert seen == [("net.ipv4.ip_local_port_range", (40000, 60999))]
    unwatch()
    unwatch()
    sysctl.set("net.ipv4.ip_local_port_range", "50000")
    assert len(seen) == 1


def test_watch_sees_partial_vector_writes() -> None:
    sysctl = Sysctl()
    seen: list[SysctlValue] = []
    sysctl.watch("net.ipv4.udp_mem", lambda n, v: seen.append(v))
    _write(sysctl, "net.ipv4.udp_mem", "7 x")
    assert seen == [(7, 767738, 1151604)]


def test_names_and_items() -> None:
    sysctl = Sysctl()
    assert sysctl.names("net.ipv4.ipfrag_") == [
        "net.ipv4.ipfrag_high_thresh",
        "net.ipv4.ipfrag_low_thresh",
        "net.ipv4.ipfrag_max_dist",
        "net.ipv4.ipfrag_time",
    ]
    assert sysctl.names() == sorted(SYSCTLS)
    items = dict(sysctl.items())
    assert items["net.ipv4.ip_local_port_range"] == (32768, 60999)
    assert items["net.core.netdev_budget"] == 300
    assert [name for name, _ in sysctl.items()] == sorted(SYSCTLS)


_KERNEL_SIDE = """
import json, os, sys

def path(name):
    return "/proc/sys/" + name.replace(".", "/")

def write(name, text):
    fd = os.open(path(name), os.O_WRONLY)
    try:
        os.write(fd, text.encode())
        return 0
    except OSError as error:
        return error.errno
    finally:
        os.close(fd)

def read(name):
    with open(path(name)) as f:
        return f.read().rstrip("\\n")

request = json.load(sys.stdin)
defaults = {name: read(name) for name in request["defaults"]}
results = []
for name, text in request["writes"]:
    for reset_name, reset_text in request["reset"]:
        write(reset_name, reset_text)
    results.append([write(name, text), read(name)])
json.dump({"defaults": defaults, "results": results}, sys.stdout)
"""

# Per-namespace sysctls a new network namespace starts at their kernel defaults
# (ip_forward and rp_filter are copied from the initial namespace instead).
NETNS_DEFAULTS = [
    name
    for name in DEFAULTS
    if name.startswith("net.ipv4.")
    and name not in ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.udp_mem")
] + ["net.core.optmem_max", "net.core.tstamp_allow_data"]
NETNS_RESET = [
    ["net.ipv4.ip_local_port_range", "32768 60999"],
    ["net.ipv4.ip_unprivileged_port_start", "1024"],
    ["net.ipv4.ipfrag_high_thresh", "4194304"],
    ["net.ipv4.ipfrag_low_thresh", "3145728"],
    *([name, Sysctl().get_str(name)] for name in NETNS_DEFAULTS),
    ["net.ipv4.ip_forward", "0"],
    ["net.ipv4.conf.all.rp_filter", "0"],
]


def _in_fresh_netns(request: dict[str, object]) -> dict[str, object]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private network namespace")
    run = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", _KERNEL_SIDE],
        input=json.dumps(request),
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {run.stderr.strip()}")
    result: dict[str, object] = json.loads(run.stdout)
    return result


def test_matches_live_kernel_in_a_fresh_netns() -> None:
    writable = {name for name, _ in NETNS_RESET}
    writes = [(name, text) for name, text, _, _ in WRITES if name in writable and name not in HZ_1000_ONLY]
    live = _in_fresh_netns({"defaults": NETNS_DEFAULTS, "reset": NETNS_RESET, "writes": writes})
    sysctl = Sysctl()
    assert live["defaults"] == {name: sysctl.get_str(name) for name in NETNS_DEFAULTS}
    ours = []
    for name, text in writes:
        fresh = Sysctl()
        ours.append([_write(fresh, name, text), fresh.get_str(name)])
    assert live["results"] == ours
    assert len(ours) >= 70
