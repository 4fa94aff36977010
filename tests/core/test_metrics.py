"""The Prometheus collectors: names from the kernel, values read at scrape time, host and
service labels, the scrape handed to the service's event loop, and the HTTP endpoint."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from services.core.config import ConfigError
from services.core.dropreason import DropStats, SkbDropReason
from services.core.metrics import (
    Collector,
    DropCollector,
    MetricsServer,
    ServiceCollector,
    SnmpCollector,
    TableCollector,
    registry,
)
from services.core.snmp import SnmpMib


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _types(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def _scrape(*collectors: Collector, host: str = "alice", service: str = "udp") -> str:
    return generate_latest(registry(host, service, collectors)).decode()


def test_snmp_counters_carry_nstats_names_and_live_values() -> None:
    mib = SnmpMib()
    collector = SnmpCollector(mib, lambda k: k.startswith("Udp") or k == "IcmpInErrors")
    mib.udp.inc("InDatagrams", 3)
    mib.udp.inc("NoPorts")
    mib.icmp.inc("InErrors", 2)
    mib.ip.inc("InReceives", 9)  # not this service's: filtered out
    first = _samples(_scrape(collector))
    host = (("host", "alice"), ("service", "udp"))
    assert first[("stackemu_snmp_UdpInDatagrams_total", host)] == 3
    assert first[("stackemu_snmp_UdpNoPorts_total", host)] == 1
    assert first[("stackemu_snmp_UdpLiteInDatagrams_total", host)] == 0
    assert first[("stackemu_snmp_IcmpInErrors_total", host)] == 2
    assert not [name for name, _ in first if name.startswith("stackemu_snmp_Ip")]
    # Every Udp and UdpLite column and IcmpInErrors, nothing else.
    assert len(first) == 2 * 9 + 1
    # Read again at the next scrape: nothing was copied.
    mib.udp.inc("InDatagrams")
    assert _samples(_scrape(collector))[("stackemu_snmp_UdpInDatagrams_total", host)] == 4


def test_ip_settings_are_gauges_and_icmpmsg_only_when_counted() -> None:
    mib = SnmpMib()
    text = _scrape(SnmpCollector(mib, lambda k: k.startswith(("Ip", "Icmp"))), service="ip")
    types = _types(text)
    assert types["stackemu_snmp_IpForwarding"] == "gauge"
    assert types["stackemu_snmp_IpDefaultTTL"] == "gauge"
    assert types["stackemu_snmp_IpInReceives"] == "counter"
    assert types["stackemu_snmp_IpExtInOctets"] == "counter"
    assert "stackemu_snmp_IcmpMsgOutType3" not in types
    host = (("host", "alice"), ("service", "ip"))
    assert _samples(text)[("stackemu_snmp_IpDefaultTTL", host)] == 64
    assert _samples(text)[("stackemu_snmp_IpForwarding", host)] == 2
    mib.icmp.inc("OutDestUnreachs")
    after = _samples(_scrape(SnmpCollector(mib, lambda k: k.startswith(("Ip", "Icmp"))), service="ip"))
    # IcmpOutDestUnreachs is a view of IcmpMsg OutType3, as icmp_put() prints it.
    assert after[("stackemu_snmp_IcmpMsgOutType3_total", host)] == 1
    assert after[("stackemu_snmp_IcmpOutDestUnreachs_total", host)] == 1


def test_drops_by_reason_and_location() -> None:
    drops = DropStats()
    drops.drop(SkbDropReason.NO_SOCKET, "__udp4_lib_rcv", 2)
    drops.drop(SkbDropReason.SOCKET_RCVBUFF, "__udp_queue_rcv_skb")
    samples = _samples(_scrape(DropCollector(drops), host="bob"))
    assert samples == {
        (
            "stackemu_skb_drops_total",
            (("host", "bob"), ("location", "__udp4_lib_rcv"), ("reason", "NO_SOCKET"), ("service", "udp")),
        ): 2,
        (
            "stackemu_skb_drops_total",
            (
                ("host", "bob"),
                ("location", "__udp_queue_rcv_skb"),
                ("reason", "SOCKET_RCVBUFF"),
                ("service", "udp"),
            ),
        ): 1,
    }


def test_table_rows_counters_and_gauges() -> None:
    rows = [
        (["lo"], [("rx_packets", 5), ("rx_ring_used", 0)]),
        (["eth0"], [("rx_packets", 7), ("rx_ring_used", 2)]),
    ]
    collector = TableCollector("ethtool", ["device"], lambda: rows, frozenset({"rx_ring_used"}), "ethtool -S")
    text = _scrape(collector, service="nic")
    assert _types(text) == {
        "stackemu_ethtool_rx_packets": "counter",
        "stackemu_ethtool_rx_ring_used": "gauge",
    }
    assert _samples(text) == {
        ("stackemu_ethtool_rx_packets_total", (("device", "lo"), ("host", "alice"), ("service", "nic"))): 5,
        ("stackemu_ethtool_rx_packets_total", (("device", "eth0"), ("host", "alice"), ("service", "nic"))): 7,
        ("stackemu_ethtool_rx_ring_used", (("device", "lo"), ("host", "alice"), ("service", "nic"))): 0,
        ("stackemu_ethtool_rx_ring_used", (("device", "eth0"), ("host", "alice"), ("service", "nic"))): 2,
    }
    assert "# HELP stackemu_ethtool_rx_packets_total rx_packets, as ethtool -S names it\n" in text
    # No source: the name alone after the prefix.
    bare = TableCollector("", [], lambda: [([], [("processes", 3)])], frozenset({"processes"}))
    assert _samples(_scrape(bare, service="socket")) == {
        ("stackemu_processes", (("host", "alice"), ("service", "socket"))): 3
    }


class _ThreadRecorder:
    def __init__(self) -> None:
        self.threads: list[int] = []

    def collect(self) -> list[Metric]:
        self.threads.append(threading.get_ident())
        return []


def test_a_scrape_from_another_thread_reads_on_the_event_loop() -> None:
    recorder = _ThreadRecorder()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        collector = ServiceCollector("alice", "nic", [recorder], loop)
        # The loop's own thread reads directly; another thread waits for the loop.
        collector.collect()
        await asyncio.to_thread(collector.collect)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert recorder.threads == [loop_thread, loop_thread]


def test_a_collector_error_reaches_the_scraping_thread() -> None:
    class Broken:
        def collect(self) -> list[Metric]:
            raise RuntimeError("boom")

    async def main() -> None:
        collector = ServiceCollector("alice", "nic", [Broken()], asyncio.get_running_loop())
        with pytest.raises(RuntimeError, match="boom"):
            await asyncio.to_thread(collector.collect)

    asyncio.run(main())


def test_the_http_endpoint_serves_the_registry() -> None:
    mib = SnmpMib()
    mib.udp.inc("OutDatagrams", 11)
    server = MetricsServer(
        "127.0.0.1:0", registry("bob", "udp", [SnmpCollector(mib, lambda k: k == "UdpOutDatagrams")])
    )
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = resp.read().decode()
    finally:
        server.close()
    assert body == (
        "# HELP stackemu_snmp_UdpOutDatagrams_total UdpOutDatagrams, as nstat names it\n"
        "# TYPE stackemu_snmp_UdpOutDatagrams_total counter\n"
        'stackemu_snmp_UdpOutDatagrams_total{host="bob",service="udp"} 11.0\n'
    )


def test_a_port_in_use_is_a_configuration_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"STACKEMU_METRICS: cannot listen on 127.0.0.1:{port}: "):
            MetricsServer(f"127.0.0.1:{port}", registry("alice", "ip", []))


def test_a_service_with_a_bad_metrics_address_exits_2() -> None:
    env = {
        **os.environ,
        "STACKEMU_HOSTNAME": "alice",
        "STACKEMU_LISTEN": "127.0.0.1:1",
        "STACKEMU_METRICS": "9100",
    }
    out = subprocess.run(
        [sys.executable, "-m", "services.socket"],
        env={**env, "STACKEMU_UDP": "127.0.0.1:2"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "stackemu-socket: configuration error: STACKEMU_METRICS='9100' is not host:port" in out.stderr
