"""A fake NicService per host, served in-process on 127.0.0.1:0, and a stack.json that
points the CLI at them (the format stackemu.launcher writes). Each fake answers with
canned devices, neighbours, sysctls and frames, and records every request it gets so a
test can assert exactly what a command asked for."""

from __future__ import annotations

import errno as E
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner, Result

from stackemu.cli import main
from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
from stackemu.skb.v1 import skb_pb2

IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x2, 0x8, 0x40
IFF_MULTICAST, IFF_LOWER_UP = 0x1000, 0x10000

ALICE_MAC = bytes.fromhex("02000a000001")
BOB_MAC = bytes.fromhex("02000a000002")


def default_links() -> list[nic_pb2.Link]:
    return [
        nic_pb2.Link(
            ifindex=1,
            name="lo",
            mtu=65536,
            flags=IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_LOWER_UP,
            carrier=True,
            txqueuelen=1000,
            kind="loopback",
            qdisc="noqueue",
            stats=nic_pb2.LinkStats(rx_packets=10, tx_packets=10, rx_bytes=1234, tx_bytes=1234),
        ),
        nic_pb2.Link(
            ifindex=2,
            name="eth0",
            mtu=1500,
            address=ALICE_MAC,
            flags=IFF_UP | IFF_BROADCAST | IFF_MULTICAST,
            carrier=True,
            txqueuelen=1000,
            kind="wire",
            qdisc="pfifo_fast",
            stats=nic_pb2.LinkStats(
                rx_packets=5,
                tx_packets=7,
                rx_bytes=420,
                tx_bytes=12345678901,
                rx_dropped=2,
                rx_missed_errors=3,
                multicast=1,
            ),
        ),
        nic_pb2.Link(
            ifindex=3,
            name="eth1",
            mtu=1500,
            address=bytes.fromhex("02000a000003"),
            flags=IFF_BROADCAST | IFF_MULTICAST,
            carrier=False,
            txqueuelen=1000,
            kind="none",
            qdisc="pfifo_fast",
        ),
    ]


FEATURES = [
    # (name, active, changeable)
    ("rx-checksum", True, True),
    ("tx-checksum-ip-generic", True, True),
    ("tx-scatter-gather", True, True),
    ("tx-generic-segmentation", True, True),
    ("rx-gro", True, True),
    ("tx-udp-segmentation", True, True),
    ("loopback", False, False),
    ("rx-gro-list", False, True),
    ("rx-udp-gro-forwarding", False, True),
]


class FakeNic(nic_pb2_grpc.NicServiceServicer):
    def __init__(self, host: str) -> None:
        self.host = host
        self.requests: list[tuple[str, Any]] = []
        self.links = default_links()
        self.neighbours = [
            nic_pb2.Neighbour(
                ifindex=2, device="eth0", address=0x0A000002, lladdr=BOB_MAC, state=0x02, probes=1
            ),
            nic_pb2.Neighbour(ifindex=2, device="eth0", address=0x0A000003, state=0x01, queued=2),
            nic_pb2.Neighbour(ifindex=2, device="eth0", address=0x0A000004, state=0x20),
            nic_pb2.Neighbour(
                ifindex=2, device="eth0", address=0x0A000005, lladdr=bytes.fromhex("02000a000005"), state=0x80
            ),
            nic_pb2.Neighbour(
                ifindex=2, device="eth0", address=0x0A000006, lladdr=bytes.fromhex("02000a000006"), state=0x40
            ),
            nic_pb2.Neighbour(
                ifindex=2, device="eth0", address=0x0A000007, lladdr=bytes.fromhex("02000a000007"), state=0x04
            ),
        ]
        self.features = {name: [active, changeable] for name, active, changeable in FEATURES}
        self.netem: dict[str, nic_pb2.Netem] = {}
        self.netem_stats = nic_pb2.NetemStats()
        self.sysctls = {
            "net.core.netdev_budget": "300",
            "net.core.netdev_budget_usecs": "2000",
            "net.core.netdev_max_backlog": "1000",
            "net.core.dev_weight": "64",
        }
        self.hwtstamp = (0, 0)
        self.frames: list[nic_pb2.CaptureResponse] = []
        # Capture: after the frames, keep the stream open until the client cancels.
        self.hold_capture = False
        self.capture_done = threading.Event()

    def _record(self, name: str, request: Any) -> None:
        copy = type(request)()
        copy.CopyFrom(request)
        self.requests.append((name, copy))

    def sent(self, name: str) -> list[Any]:
        return [r for n, r in self.requests if n == name]

    def _dev(self, name: str) -> nic_pb2.Link | None:
        return next((lk for lk in self.links if lk.name == name), None)

    def ListLinks(self, request: Any, context: Any) -> Any:
        self._record("ListLinks", request)
        return nic_pb2.ListLinksResponse(links=self.links)

    def SetLink(self, request: Any, context: Any) -> Any:
        self._record("SetLink", request)
        lk = self._dev(request.device)
        if lk is None:
            return nic_pb2.SetLinkResponse(errno=E.ENODEV, message="No such device")
        if request.HasField("mtu") and request.mtu > 65535:
            return nic_pb2.SetLinkResponse(errno=E.EINVAL, message="mtu greater than device maximum")
        if request.HasField("txqueuelen") and request.txqueuelen > 100000:
            return nic_pb2.SetLinkResponse(errno=E.EINVAL, message="")
        return nic_pb2.SetLinkResponse(link=lk)

    def GetRingParam(self, request: Any, context: Any) -> Any:
        self._record("GetRingParam", request)
        if request.device == "lo":
            return nic_pb2.GetRingParamResponse(errno=E.EOPNOTSUPP)
        if self._dev(request.device) is None:
            return nic_pb2.GetRingParamResponse(errno=E.ENODEV, message="no device matches name")
        return nic_pb2.GetRingParamResponse(
            rx_max_pending=4096, tx_max_pending=4096, rx_pending=256, tx_pending=256
        )

    def SetRingParam(self, request: Any, context: Any) -> Any:
        self._record("SetRingParam", request)
        if request.rx_pending > 4096 or request.tx_pending > 4096:
            return nic_pb2.SetRingParamResponse(errno=E.EINVAL, message="requested ring size exceeds maximum")
        return nic_pb2.SetRingParamResponse()

    def GetCoalesce(self, request: Any, context: Any) -> Any:
        self._record("GetCoalesce", request)
        return nic_pb2.GetCoalesceResponse(rx_usecs=50, rx_max_frames=32)

    def SetCoalesce(self, request: Any, context: Any) -> Any:
        self._record("SetCoalesce", request)
        return nic_pb2.SetCoalesceResponse()

    def _feature_list(self) -> list[nic_pb2.Feature]:
        return [nic_pb2.Feature(name=n, active=a, changeable=c) for n, (a, c) in self.features.items()]

    def GetFeatures(self, request: Any, context: Any) -> Any:
        self._record("GetFeatures", request)
        return nic_pb2.GetFeaturesResponse(features=self._feature_list())

    def SetFeatures(self, request: Any, context: Any) -> Any:
        self._record("SetFeatures", request)
        for name in request.features:
            if name not in self.features:
                return nic_pb2.SetFeaturesResponse(errno=E.EOPNOTSUPP, message="bit name not found")
        for name, on in request.features.items():
            if self.features[name][1]:
                self.features[name][0] = on
        # netdev_fix_features(): no UDP segmentation without checksum offload
        if "tx-udp-segmentation" in self.features and not self.features["tx-checksum-ip-generic"][0]:
            self.features["tx-udp-segmentation"][0] = False
        return nic_pb2.SetFeaturesResponse(features=self._feature_list())

    def GetTsInfo(self, request: Any, context: Any) -> Any:
        self._record("GetTsInfo", request)
        if request.device == "lo":
            return nic_pb2.GetTsInfoResponse(so_timestamping=0x1A, phc_index=-1)
        return nic_pb2.GetTsInfoResponse(
            so_timestamping=0x5F,
            phc_index=0,
            tx_types=0b11,
            rx_filters=0b11,
            tx_type=self.hwtstamp[0],
            rx_filter=self.hwtstamp[1],
        )

    def SetHwTstamp(self, request: Any, context: Any) -> Any:
        self._record("SetHwTstamp", request)
        if request.device == "lo":
            return nic_pb2.SetHwTstampResponse(errno=E.EOPNOTSUPP)
        # a PTP filter is widened to HWTSTAMP_FILTER_ALL
        rx = 1 if request.rx_filter else 0
        self.hwtstamp = (request.tx_type, rx)
        return nic_pb2.SetHwTstampResponse(tx_type=request.tx_type, rx_filter=rx)

    def GetEthtoolStats(self, request: Any, context: Any) -> Any:
        self._record("GetEthtoolStats", request)
        if request.device == "lo":
            return nic_pb2.GetEthtoolStatsResponse()
        if self._dev(request.device) is None:
            return nic_pb2.GetEthtoolStatsResponse(errno=E.ENODEV)
        return nic_pb2.GetEthtoolStatsResponse(
            stats=[
                skb_pb2.Counter(name="rx_packets", value=5),
                skb_pb2.Counter(name="rx_missed_errors", value=3),
                skb_pb2.Counter(name="rx_queue_0_packets", value=5),
            ]
        )

    def GetNetem(self, request: Any, context: Any) -> Any:
        self._record("GetNetem", request)
        if self._dev(request.device) is None:
            return nic_pb2.GetNetemResponse(errno=E.ENODEV)
        resp = nic_pb2.GetNetemResponse(stats=self.netem_stats)
        if request.device in self.netem:
            resp.netem.CopyFrom(self.netem[request.device])
        return resp

    def SetNetem(self, request: Any, context: Any) -> Any:
        self._record("SetNetem", request)
        lk = self._dev(request.device)
        if lk is None:
            return nic_pb2.SetNetemResponse(errno=E.ENODEV)
        if request.device == "lo":
            return nic_pb2.SetNetemResponse(errno=E.EOPNOTSUPP)
        if request.HasField("netem"):
            self.netem[request.device] = request.netem
            lk.qdisc = "netem"
        else:
            self.netem.pop(request.device, None)
            lk.qdisc = "pfifo_fast"
        return nic_pb2.SetNetemResponse()

    def ListNeighbours(self, request: Any, context: Any) -> Any:
        self._record("ListNeighbours", request)
        ns = [n for n in self.neighbours if not request.device or n.device == request.device]
        return nic_pb2.ListNeighboursResponse(neighbours=ns)

    def AddNeighbour(self, request: Any, context: Any) -> Any:
        self._record("AddNeighbour", request)
        if not request.lladdr and request.state in (0, 0x80, 0x02, 0x04):
            return nic_pb2.AddNeighbourResponse(errno=E.EINVAL, message="No link layer address given")
        return nic_pb2.AddNeighbourResponse()

    def DeleteNeighbour(self, request: Any, context: Any) -> Any:
        self._record("DeleteNeighbour", request)
        if all(n.address != request.address for n in self.neighbours):
            return nic_pb2.DeleteNeighbourResponse(errno=E.ENOENT)
        return nic_pb2.DeleteNeighbourResponse()

    def FlushNeighbours(self, request: Any, context: Any) -> Any:
        self._record("FlushNeighbours", request)
        return nic_pb2.FlushNeighboursResponse(flushed=4)

    def Capture(self, request: Any, context: Any) -> Iterator[Any]:
        self._record("Capture", request)
        context.send_initial_metadata(())
        try:
            for f in self.frames:
                if request.device and f.device != request.device:
                    continue
                yield f
            while self.hold_capture and context.is_active():
                time.sleep(0.01)
        finally:
            self.capture_done.set()

    def GetStats(self, request: Any, context: Any) -> Any:
        self._record("GetStats", request)
        return nic_pb2.GetStatsResponse(
            softnet=[
                nic_pb2.SoftnetStat(cpu=0, processed=0x409A5, dropped=2, time_squeeze=3, backlog_len=1),
                nic_pb2.SoftnetStat(cpu=1, processed=0x453A6, received_rps=5, flow_limit_count=0),
            ]
        )

    def GetSysctl(self, request: Any, context: Any) -> Any:
        self._record("GetSysctl", request)
        names = list(request.names) or list(self.sysctls)
        for n in names:
            if n not in self.sysctls:
                return nic_pb2.GetSysctlResponse(errno=E.ENOENT, message=f"no sysctl {n}")
        return nic_pb2.GetSysctlResponse(values={n: self.sysctls[n] for n in names})

    def SetSysctl(self, request: Any, context: Any) -> Any:
        self._record("SetSysctl", request)
        if request.name not in self.sysctls:
            return nic_pb2.SetSysctlResponse(errno=E.ENOENT)
        if not request.value.isdigit():
            return nic_pb2.SetSysctlResponse(errno=E.EINVAL, message="not a number")
        self.sysctls[request.name] = request.value
        return nic_pb2.SetSysctlResponse()


@dataclass
class Stack:
    alice: FakeNic
    bob: FakeNic
    state_dir: Path

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(main, list(args))


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    fakes = [FakeNic("alice"), FakeNic("bob")]
    servers = []
    hosts = {}
    for fake in fakes:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        nic_pb2_grpc.add_NicServiceServicer_to_server(fake, server)
        port = server.add_insecure_port("127.0.0.1:0")
        assert port, "could not bind 127.0.0.1:0"
        server.start()
        servers.append(server)
        hosts[fake.host] = {"nic": {"addr": f"127.0.0.1:{port}", "pid": os.getpid(), "log": ""}}
    (tmp_path / "stack.json").write_text(json.dumps({"base_port": 0, "hosts": hosts}))
    monkeypatch.setenv("STACKEMU_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("STACKEMU_HOST", raising=False)
    # tcpdump prints local time; make it UTC for exact lines.
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield Stack(fakes[0], fakes[1], tmp_path)
    finally:
        for server in servers:
            server.stop(grace=None).wait(5)
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()


# The IP side: the real control RPCs (services/ip/control.py) over a real FIB and
# Router, served by grpc.aio in a thread of its own, so `ip addr/route/rule` and the
# net.ipv4 sysctls are checked against the code that serves them.


class FibLayer:
    """What IpControl reads of IpLayer: the FIB, the Router and the sysctl table."""

    def __init__(self) -> None:
        from services.core.snmp import SnmpMib
        from services.core.sysctl import Sysctl
        from services.ip.fib import Fib, InIfaddr
        from services.ip.route import Router

        self.sysctl = Sysctl()
        self.fib = Fib()
        self.router = Router(self.fib, SnmpMib(), self.sysctl)
        self.router.set_devices([(1, "lo", 65536), (2, "eth0", 1500), (3, "eth1", 1500)])
        self.fib.add_ifaddr(InIfaddr(1, "lo", 0x7F000001, 8), loopback=True)
        self.fib.add_ifaddr(InIfaddr(2, "eth0", 0x0A000001, 24), loopback=False)


class AioThread:
    """A grpc.aio server on 127.0.0.1:0 running its own event loop in a thread, with
    the servicers each `register(server)` adds."""

    def __init__(self, *register: Any) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0

        async def start() -> None:
            self.server = grpc.aio.server()
            for add in register:
                add(self.server)
            self.port = self.server.add_insecure_port("127.0.0.1:0")
            await self.server.start()
            self.ready.set()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert self.ready.wait(5), "the IP test server did not start"

    def stop(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class IpStack(Stack):
    ip: dict[str, FibLayer]


@pytest.fixture
def ipstack(stack: Stack) -> Iterator[IpStack]:
    """The NIC fakes of `stack` plus a real IP control service per host."""
    from services.ip.control import IpControl

    class IpService(IpControl):
        def __init__(self, layer: FibLayer) -> None:
            self.layer = layer  # type: ignore[assignment]

    layers = {"alice": FibLayer(), "bob": FibLayer()}
    from stackemu.ip.v1 import ip_pb2_grpc

    def ip_server(layer: FibLayer) -> AioThread:
        servicer = IpService(layer)
        return AioThread(lambda s: ip_pb2_grpc.add_IpServiceServicer_to_server(servicer, s))

    servers = {h: ip_server(layer) for h, layer in layers.items()}
    state_file = stack.state_dir / "stack.json"
    data = json.loads(state_file.read_text())
    for h, srv in servers.items():
        data["hosts"][h]["ip"] = {"addr": f"127.0.0.1:{srv.port}", "pid": os.getpid(), "log": ""}
    state_file.write_text(json.dumps(data))
    try:
        yield IpStack(stack.alice, stack.bob, stack.state_dir, layers)
    finally:
        for srv in servers.values():
            srv.stop()
