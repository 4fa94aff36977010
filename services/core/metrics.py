"""Prometheus metrics of one service, read from the live counters at scrape time.

Every name is the Linux one behind a prefix that says where Linux shows it, so that
`grep UdpInDatagrams` finds a counter in nstat's output and on the metrics page alike:

  stackemu_snmp_<nstat name>_total            /proc/net/snmp and /proc/net/netstat
                                              (IpExt) as nstat names them:
                                              stackemu_snmp_UdpInDatagrams_total;
                                              IpForwarding and IpDefaultTTL are
                                              settings, hence gauges without _total
  stackemu_ethtool_<stat>_total{device}       `ethtool -S DEV` (rx_ring_used,
                                              tx_ring_used, qdisc_backlog: gauges)
  stackemu_softnet_<column>_total{cpu}        /proc/net/softnet_stat (softnet_seq_show);
                                              backlog_len is a gauge
  stackemu_skb_drops_total{reason,location}   kfree_skb_reason(): the tracepoint's
                                              reason name (NO_SOCKET) and the function
  stackemu_sock_<sk_meminfo>{sk,local,peer}   `ss -uanm` skmem: rmem_alloc, rcvbuf,
                                              wmem_alloc, sndbuf (gauges), drops_total
  stackemu_processes, stackemu_process_files{pid,comm}   the socket layer's processes

Counters get the _total suffix Prometheus gives every counter. Every sample carries
host and service labels; a counter two services keep (IcmpInErrors: IP and UDP both
count it, one MIB in the kernel) is `sum without (service)` of theirs, as nstat sums.

Nothing is counted twice: the collectors read the layers' own counters when scraped.
The scrape runs on the service's event loop (the HTTP server's thread hands it over),
so it never sees a dict the layer is changing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as Collector

from services.core.config import ConfigError
from services.core.dropreason import DropStats
from services.core.snmp import NSTAT_USELESS, SnmpMib, to_flat_dict

PREFIX: Final = "stackemu"
# How long a scrape waits for a busy event loop before it fails (HTTP 500).
SCRAPE_TIMEOUT: Final = 5.0

# `ethtool -S` values that are occupancies, not event counts.
ETHTOOL_GAUGES: Final = frozenset({"rx_ring_used", "tx_ring_used", "qdisc_backlog"})
SOFTNET_GAUGES: Final = frozenset({"backlog_len"})
SOCK_GAUGES: Final = frozenset({"rmem_alloc", "rcvbuf", "wmem_alloc", "sndbuf"})

# (labels, [(name, value)]): one row of a table of counters, such as one device's
# `ethtool -S` or one CPU's softnet_stat line.
Row = tuple[Sequence[str], Iterable[tuple[str, int]]]


class SnmpCollector:
    """The SNMP MIB counters under nstat's names. keep() picks the ones this service
    reports (its GetStats filter), since every layer holds a whole SnmpMib."""

    def __init__(self, mib: SnmpMib, keep: Callable[[str], bool]) -> None:
        self._mib = mib
        self._keep = keep

    def collect(self) -> Iterator[Metric]:
        for name, value in to_flat_dict(self._mib).items():
            if not self._keep(name):
                continue
            metric = f"{PREFIX}_snmp_{name}"
            if name in NSTAT_USELESS:
                yield GaugeMetricFamily(metric, f"{name} (a setting; nstat skips it)", value)
            else:
                yield CounterMetricFamily(metric, f"{name}, as nstat names it", value)


class TableCollector:
    """Rows of named counters under the same labels: `stackemu_<source>_<name>`, one
    family per name, a sample per row; names in gauges are gauges."""

    def __init__(
        self,
        source: str,
        labels: Sequence[str],
        rows: Callable[[], Iterable[Row]],
        gauges: frozenset[str] = frozenset(),
        what: str = "",
    ) -> None:
        self._source = source
        self._labels = list(labels)
        self._rows = rows
        self._gauges = gauges
        self._what = what or source

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for labels, values in self._rows():
            for name, value in values:
                family = families.get(name)
                if family is None:
                    metric = "_".join(filter(None, (PREFIX, self._source, name)))
                    doc = f"{name}, as {self._what} names it"
                    family = (
                        GaugeMetricFamily(metric, doc, labels=self._labels)
                        if name in self._gauges
                        else CounterMetricFamily(metric, doc, labels=self._labels)
                    )
                    families[name] = family
                family.add_metric(labels, value)
        yield from families.values()


class DropCollector:
    """DropStats: drops by reason (the kfree_skb tracepoint's name) and location."""

    def __init__(self, drops: DropStats) -> None:
        self._drops = drops

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            f"{PREFIX}_skb_drops",
            "packets freed by kfree_skb_reason(), by SKB_DROP_REASON_* and dropping function",
            labels=["reason", "location"],
        )
        for (reason, location), count in self._drops.items():
            family.add_metric([reason.name, location], count)
        yield family


class ServiceCollector:
    """A service's collectors with its host and service labels on every sample, read
    on the service's event loop whichever thread scrapes."""

    def __init__(
        self,
        host: str,
        service: str,
        collectors: Iterable[Collector],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._labels = {"host": host, "service": service}
        self._collectors = list(collectors)
        self._loop = loop

    def _gather(self) -> list[Metric]:
        out = []
        for collector in self._collectors:
            for family in collector.collect():
                family.samples = [s._replace(labels={**self._labels, **s.labels}) for s in family.samples]
                out.append(family)
        return out

    def collect(self) -> list[Metric]:
        loop = self._loop
        if loop is None or _running_loop() is loop:
            return self._gather()
        done: concurrent.futures.Future[list[Metric]] = concurrent.futures.Future()

        def gather() -> None:
            try:
                done.set_result(self._gather())
            except BaseException as err:
                done.set_exception(err)

        loop.call_soon_threadsafe(gather)
        return done.result(timeout=SCRAPE_TIMEOUT)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def registry(
    host: str, service: str, collectors: Iterable[Collector], loop: asyncio.AbstractEventLoop | None = None
) -> CollectorRegistry:
    """A registry of one service's metrics only (no client-library defaults)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ServiceCollector(host, service, collectors, loop))
    return reg


class MetricsServer:
    """The /metrics HTTP endpoint (prometheus_client's, on a thread of its own)."""

    def __init__(self, addr: str, reg: CollectorRegistry) -> None:
        host, _, port = addr.rpartition(":")
        try:
            self._httpd, self._thread = start_http_server(int(port), host.strip("[]"), reg)
        except OSError as err:
            raise ConfigError(f"STACKEMU_METRICS: cannot listen on {addr}: {err.strerror}") from None

    @property
    def port(self) -> int:
        return int(self._httpd.server_port)

    def close(self) -> None:
        """Stop serving (waits up to serve_forever's poll interval, 0.5 s)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
