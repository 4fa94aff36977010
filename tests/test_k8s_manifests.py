"""The Kubernetes manifests in k8s/ (issue 7, item 4): valid against the API schemas of
Kubernetes 1.27 and 1.37 (offline, strict), every container probed over gRPC and
locked down, every service given the configuration it needs for the topology of
stackemu/topology.py, each host's secret made by its Pod's init container into a volume
of that Pod alone (issue 10, part 4), only the wire, the socket services and the metrics
ports reachable across pods; and the Pods' containers, run as the manifests say in two
network namespaces standing in for two Pods, make the two hosts of DESIGN.md and serve
their metrics to the other Pod."""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import importlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped,unused-ignore]
import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from prometheus_client.parser import text_string_to_metric_families

from services.core import auth
from stackemu.topology import DEFAULT_BASE_PORT, HOSTS, LAYERS, metrics_port, ports
from tests.e2e.stackrun import DROPIN_RECV, DROPIN_SEND

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
# 1.27 made the gRPC probe GA (the oldest release these manifests are for); the other is
# the newest whose schemas the package bundles.
KUBE_VERSIONS = ("1.27.0", "1.37.0")
IMAGE = "stackemu:latest"
UID = 10001  # the image's user (Dockerfile)
# The ports `stackemu up` and docker-compose.yml give each host's layers.
PORTS = ports(DEFAULT_BASE_PORT)
CLIENT_LAYERS = {"nic": "the wire", "socket": "clients"}
# The host secret's volume: what the init container writes, what the services read.
SECRET_DIR = "/run/stackemu"
SECRET_FILE = f"{SECRET_DIR}/host-secret"
LOCKED_DOWN = {
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
CLUSTER_SCOPED = {"Namespace"}

Resource = dict[str, Any]


def _kustomization(k8s: Path) -> Resource:
    data: Resource = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    return data


def rendered() -> list[Resource]:
    """What `kubectl apply -k k8s/` applies: the listed files, in the kustomization's
    namespace (the only transformation it asks for)."""
    return copy.deepcopy(_rendered(K8S))


@functools.cache
def _rendered(k8s: Path) -> list[Resource]:
    kust = _kustomization(k8s)
    out = []
    for name in kust["resources"]:
        for doc in yaml.safe_load_all((k8s / name).read_text()):
            if doc is None:
                continue
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kust["namespace"]
            out.append(doc)
    return out


def _key(r: Resource) -> tuple[str, str]:
    return (r["kind"], r["metadata"]["name"])


def _by(kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in rendered() if r["kind"] == kind}


def _containers(host: str) -> dict[str, Resource]:
    spec = _by("Deployment")[host]["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def _init_containers(host: str) -> dict[str, Resource]:
    spec = _by("Deployment")[host]["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["initContainers"]}


def _env(container: Resource) -> dict[str, str]:
    env: dict[str, str] = {}
    for e in container["env"]:
        assert set(e) == {"name", "value"}, f"{e['name']}: only literal values"
        assert e["name"] not in env, f"{e['name']} twice"
        env[e["name"]] = e["value"]
    return env


def test_kustomization_lists_every_manifest() -> None:
    kust = _kustomization(K8S)
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kust["kind"] == "Kustomization"
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kust["resources"]) == sorted(on_disk)
    assert len({_key(r) for r in rendered()}) == len(rendered())


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_schemas_strict(version: str) -> None:
    resources = rendered()
    assert {_key(r) for r in resources} == {
        ("Namespace", "stackemu"),
        *(("Deployment", h.name) for h in HOSTS),
        *(("Service", f"{h.name}-{layer}") for h in HOSTS for layer in CLIENT_LAYERS),
        *(
            ("NetworkPolicy", f"stackemu-{n}")
            for n in ("default-deny", "wire", "dns", "socket-clients", "metrics")
        ),
    }
    for r in resources:
        # Offline: the schemas ship inside the package.
        assert kubernetes_validate.validate(r, version, strict=True) == version.rsplit(".", 1)[0]


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The validator has teeth: a misspelt probe is refused, not ignored."""
    deployment = copy.deepcopy(_by("Deployment")["alice"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_the_same() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    )
    assert sorted(yaml.safe_load_all(out.stdout), key=_key) == sorted(rendered(), key=_key)


@pytest.mark.parametrize("host", [h.name for h in HOSTS])
def test_one_pod_per_host(host: str) -> None:
    dep = _by("Deployment")[host]
    # Two replicas would be two NICs with one MAC and address on the wire.
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels["stackemu/host"] == host
    assert labels["app.kubernetes.io/component"] == "host"
    assert list(_containers(host)) == list(LAYERS)


@pytest.mark.parametrize("host", [h.name for h in HOSTS])
def test_pod_security(host: str) -> None:
    spec = _by("Deployment")[host]["spec"]["template"]["spec"]
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["automountServiceAccountToken"] is False
    assert spec.get("hostNetwork", False) is False
    # The one volume: the host secret's, in memory, of this Pod alone.
    assert spec["volumes"] == [{"name": "host-secret", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]
    for name, c in {**_containers(host), **_init_containers(host)}.items():
        assert c["securityContext"] == LOCKED_DOWN, name
        assert (c["image"], c["imagePullPolicy"]) == (IMAGE, "IfNotPresent"), name
        res = c["resources"]
        assert set(res) == {"requests", "limits"}, name
        assert set(res["requests"]) == set(res["limits"]) == {"cpu", "memory"}, name


@pytest.mark.parametrize("host", [h.name for h in HOSTS])
def test_grpc_probes_on_each_services_port(host: str) -> None:
    for layer, c in _containers(host).items():
        port = PORTS[host][layer]
        # NetworkPolicy names the ports: the same names in every host's Pod. The
        # Prometheus endpoint is on the gRPC port + 1000, as `stackemu up` gives it.
        assert [(p["name"], p["containerPort"], p["protocol"]) for p in c["ports"]] == [
            (f"grpc-{layer}", port, "TCP"),
            (f"metrics-{layer}", metrics_port(port), "TCP"),
        ], layer
        assert _env(c)["STACKEMU_LISTEN"] == f"0.0.0.0:{port}", layer
        assert _env(c)["STACKEMU_METRICS"] == f"0.0.0.0:{metrics_port(port)}", layer
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            # kubelet's native gRPC probe: grpc.health.v1 Check on the service's port,
            # which serve() answers SERVING once the service reached its neighbour.
            assert c[probe]["grpc"] == {"port": port}, (layer, probe)
            assert set(c[probe]) & {"exec", "httpGet", "tcpSocket"} == set(), (layer, probe)
        # A layer stays NOT_SERVING until its neighbour answers: liveness starts only
        # after startup succeeded, and startup gives it a minute.
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] == 60, layer


def test_metrics_ports_and_scrape_annotations() -> None:
    """Every container's metrics port, by number and name; the Pods say scrape /metrics
    and name no port (one annotation cannot name four), so a job keeps the ports whose
    name matches metrics-.+, which are exactly these."""
    assert {
        (h.name, p["name"], p["containerPort"])
        for h in HOSTS
        for c in _containers(h.name).values()
        for p in c["ports"]
        if re.fullmatch("metrics-.+", p["name"])
    } == {
        ("alice", "metrics-nic", 51100),
        ("alice", "metrics-ip", 51101),
        ("alice", "metrics-udp", 51102),
        ("alice", "metrics-socket", 51103),
        ("bob", "metrics-nic", 51110),
        ("bob", "metrics-ip", 51111),
        ("bob", "metrics-udp", 51112),
        ("bob", "metrics-socket", 51113),
    }
    for h in HOSTS:
        template = _by("Deployment")[h.name]["spec"]["template"]["metadata"]
        assert template["annotations"] == {"prometheus.io/scrape": "true", "prometheus.io/path": "/metrics"}


def _documented(layer: str) -> set[str]:
    """The STACKEMU_* variables services/LAYER/__main__.py says it reads, and those
    every service's serve() reads (services/core/server.py says which)."""
    return {
        name
        for path in (ROOT / "services" / layer / "__main__.py", ROOT / "services" / "core" / "server.py")
        for name in re.findall(r"STACKEMU_[A-Z_]+", str(ast.get_docstring(ast.parse(path.read_text()))))
    }


@pytest.mark.parametrize("host", [h.name for h in HOSTS])
def test_the_init_container_makes_the_secret_the_services_read(
    host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Pod's host-secret init container writes SECRET_FILE into the volume, which
    every container mounts read-only and names in STACKEMU_HOST_SECRET_FILE; what the
    command writes is what services/core/auth.py reads, and a second run keeps it."""
    (init,) = _init_containers(host).values()
    assert init["command"] == ["stackemu-hostsecret", SECRET_FILE]
    assert init["volumeMounts"] == [{"name": "host-secret", "mountPath": SECRET_DIR}]
    assert (init["image"], init["imagePullPolicy"]) == (IMAGE, "IfNotPresent")
    for layer, c in _containers(host).items():
        mounts = [{"name": "host-secret", "mountPath": SECRET_DIR, "readOnly": True}]
        assert c["volumeMounts"] == mounts, layer
        assert _env(c)["STACKEMU_HOST_SECRET_FILE"] == SECRET_FILE, layer
    # The Dockerfile installs compose/hostsecret.py as the command.
    assert (
        "COPY compose/hostsecret.py /opt/stackemu/bin/stackemu-hostsecret"
        in (ROOT / "Dockerfile").read_text()
    )
    made = tmp_path / "host-secret"
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, str(ROOT / "compose" / "hostsecret.py"), str(made)],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert out.returncode == 0, out.stderr
    assert out.stdout == f"{made}: kept\n"
    assert made.stat().st_mode & 0o777 == 0o400
    monkeypatch.delenv("STACKEMU_HOST_SECRET", raising=False)
    monkeypatch.setenv("STACKEMU_HOST_SECRET_FILE", str(made))
    secret = auth.host_secret()
    assert secret is not None and len(secret) == 64 and made.read_text() == secret + "\n"


@pytest.mark.parametrize("host", [h.name for h in HOSTS])
def test_each_service_gets_its_configuration(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """make_service() accepts exactly the container's environment (a required variable
    missing or malformed is a ConfigError), and every variable set is one the service
    reads, so an optional one cannot be misspelt."""
    for layer, c in _containers(host).items():
        env = _env(c)
        assert set(env) <= _documented(layer), layer
        assert c["command"] == ["python", "-m", f"services.{layer}"], layer
        for name in list(os.environ):
            if name.startswith("STACKEMU_"):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        importlib.import_module(f"services.{layer}.__main__").make_service()


@pytest.mark.parametrize("spec", HOSTS, ids=[h.name for h in HOSTS])
def test_topology_matches_stackemu_topology(spec: Any) -> None:
    c = _containers(spec.name)
    envs = {layer: _env(c[layer]) for layer in LAYERS}
    assert {e["STACKEMU_HOSTNAME"] for e in envs.values()} == {spec.name}
    assert envs["nic"]["STACKEMU_LINKS"] == spec.links()
    assert envs["nic"]["STACKEMU_WIRES"] == f"eth0={spec.peer}-nic:{PORTS[spec.peer]['nic']}/eth0"
    assert envs["ip"]["STACKEMU_ADDRS"] == spec.addrs()
    # Each layer reaches the one below it over the Pod's loopback.
    for upper, lower in zip(LAYERS[1:], LAYERS, strict=False):
        assert envs[upper][f"STACKEMU_{lower.upper()}"] == f"127.0.0.1:{PORTS[spec.name][lower]}", upper


@pytest.mark.parametrize("host", [h.name for h in HOSTS])
def test_same_configuration_as_docker_compose(host: str) -> None:
    """Each container runs what docker-compose.yml's service of the same name runs, with
    the host's other layers on the Pod's loopback instead of their compose services."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for layer, c in _containers(host).items():
        svc = compose[f"{host}-{layer}"]
        expect = {
            name: re.sub(rf"^{host}-[a-z]+:", "127.0.0.1:", str(value))
            for name, value in svc["environment"].items()
        }
        assert (c["image"], c["command"], _env(c)) == (svc["image"], svc["command"], expect), layer


def test_port_forwards_match_the_compose_stack_file() -> None:
    """`kubectl port-forward` of each Pod's ports to the same local numbers gives the
    addresses compose/stack.json names, so STACKEMU_STACK_FILE serves both."""
    stack = json.loads((ROOT / "compose" / "stack.json").read_text())["hosts"]
    assert {
        h: {layer: (s["addr"], s["metrics"]) for layer, s in svcs.items()} for h, svcs in stack.items()
    } == {
        h: {layer: (f"127.0.0.1:{port}", f"127.0.0.1:{metrics_port(port)}") for layer, port in layers.items()}
        for h, layers in PORTS.items()
    }
    for h in HOSTS:
        for c in _containers(h.name).values():
            forwarded = {p["containerPort"] for p in c["ports"]}
            assert forwarded == {int(a.rsplit(":", 1)[1]) for a in stack[h.name][c["name"]].values()}


@pytest.mark.parametrize("host", [h.name for h in HOSTS])
def test_services_for_the_wire_and_for_clients(host: str) -> None:
    services = _by("Service")
    pod_labels = _by("Deployment")[host]["spec"]["template"]["metadata"]["labels"]
    others = [h.name for h in HOSTS if h.name != host]
    for layer in CLIENT_LAYERS:
        svc = services[f"{host}-{layer}"]["spec"]
        assert svc["selector"].items() <= pod_labels.items()
        for other in others:
            other_labels = _by("Deployment")[other]["spec"]["template"]["metadata"]["labels"]
            assert not svc["selector"].items() <= other_labels.items()
        (port,) = svc["ports"]
        assert (port["port"], port["targetPort"], port["protocol"]) == (
            PORTS[host][layer],
            f"grpc-{layer}",
            "TCP",
        )
        assert port["appProtocol"] == "kubernetes.io/h2c"
    # The wire goes to the Pod itself and stays while the Pod is unready.
    wire = services[f"{host}-nic"]["spec"]
    assert (wire["clusterIP"], wire["publishNotReadyAddresses"]) == ("None", True)
    assert "clusterIP" not in services[f"{host}-socket"]["spec"]


def _allowed_ingress(pod_labels: dict[str, str]) -> set[tuple[str, str]]:
    """(port, what may connect) for every ingress rule of a policy selecting the pod."""
    allowed = set()
    for pol in _by("NetworkPolicy").values():
        spec = pol["spec"]
        if not spec["podSelector"].get("matchLabels", {}).items() <= pod_labels.items():
            continue
        for rule in spec.get("ingress", []):
            assert rule["from"], "an ingress rule without peers would admit everyone"
            for port in rule["ports"]:
                assert port["protocol"] == "TCP"
                allowed |= {(port["port"], yaml.safe_dump(peer, sort_keys=True)) for peer in rule["from"]}
    return allowed


def test_network_policy_keeps_the_layers_internal() -> None:
    deny = _by("NetworkPolicy")["stackemu-default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    host_pod = {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "host"}}}
    client_pod = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"stackemu/client": "true"}}}
    # Prometheus: a pod so labelled in any namespace, or any pod of a namespace so labelled.
    scraper_pod = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"stackemu/metrics": "true"}}}
    scraper_ns = {"namespaceSelector": {"matchLabels": {"stackemu/metrics": "true"}}}
    for host in (h.name for h in HOSTS):
        labels = _by("Deployment")[host]["spec"]["template"]["metadata"]["labels"]
        assert _allowed_ingress(labels) == {
            ("grpc-nic", yaml.safe_dump(host_pod, sort_keys=True)),
            ("grpc-socket", yaml.safe_dump(client_pod, sort_keys=True)),
            *(
                (f"metrics-{layer}", yaml.safe_dump(peer, sort_keys=True))
                for layer in LAYERS
                for peer in (scraper_pod, scraper_ns)
            ),
        }
    egress = [
        (port["port"], port["protocol"], rule.get("to"))
        for pol in _by("NetworkPolicy").values()
        for rule in pol["spec"].get("egress", [])
        for port in rule["ports"]
    ]
    assert sorted(egress, key=str) == sorted(
        [("grpc-nic", "TCP", [host_pod]), (53, "UDP", None), (53, "TCP", None)], key=str
    )


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    labels = _by("Namespace")["stackemu"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# The Pods for real, without a cluster: each Pod a network namespace with a loopback and
# an address on a veth (the pod network), the Services' names in its hosts file (`ip
# netns exec` binds /etc/netns/NS/hosts over /etc/hosts), and each container the
# manifest's command and environment in a mount namespace whose root is read-only, as
# uid 10001 with no capabilities and no_new_privs (its securityContext), the Pod's
# host-secret volume (a directory of the Pod's own) mounted where its volumeMounts say,
# after the init container wrote the secret there.

CAN_NETNS = os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "unshare", "setpriv"))
POD_ADDR = {h.name: f"10.244.7.{i + 1}" for i, h in enumerate(HOSTS)}
CONTAINER = (
    "mount --make-rprivate / && mount --bind {volume} {mount} && mount -o remount,bind,{mode} {mount} "
    "&& mount -o remount,bind,ro / && exec setpriv --reuid {uid} --regid {uid} --clear-groups "
    "--no-new-privs --inh-caps=-all --bounding-set=-all -- {command}"
)

# kubelet's probes, and the wire's carrier: until every port of every Pod answers SERVING
# and both eth0s have carrier, or 30 s.
WAIT_READY = textwrap.dedent(
    """
    import sys, time
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from stackemu.nic.v1 import nic_pb2, nic_pb2_grpc
    targets, nics = sys.argv[1].split(","), sys.argv[2].split(",")
    deadline = time.monotonic() + 30
    def ready():
        for t in targets:
            with grpc.insecure_channel(t) as ch:
                try:
                    r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.RpcError:
                    return False
                if r.status != health_pb2.HealthCheckResponse.SERVING:
                    return False
        for t in nics:
            with grpc.insecure_channel(t) as ch:
                try:
                    links = nic_pb2_grpc.NicServiceStub(ch).ListLinks(nic_pb2.ListLinksRequest(), timeout=1)
                except grpc.RpcError:
                    return False
                if not all(l.carrier for l in links.links if l.name == "eth0"):
                    return False
        return True
    while not ready():
        if time.monotonic() > deadline:
            sys.exit("not ready after 30 s")
        time.sleep(0.1)
    print("ready")
    """
)
# Prometheus in another Pod: GET /metrics on a Pod's address and metrics port.
SCRAPE = textwrap.dedent(
    """
    import sys, urllib.request
    with urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5) as resp:
        print(resp.status, resp.headers["Content-Type"])
        sys.stdout.write(resp.read().decode())
    """
)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Pods:
    def __init__(self, tag: str, logs: Path) -> None:
        self.ns = {h.name: f"k8s{h.name[0]}{tag}" for h in HOSTS}
        self.logs = logs
        self.procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        # Each Pod's emptyDir.
        self.volumes = {h.name: logs / f"{h.name}-host-secret" for h in HOSTS}

    def _command(self, host: str, command: str, mode: str) -> str:
        return CONTAINER.format(
            volume=self.volumes[host], mount=SECRET_DIR, mode=mode, uid=UID, command=command
        )

    def init(self, host: str) -> None:
        """The Pod's init container, to its end (kubelet starts the others after it);
        the image's stackemu-hostsecret is compose/hostsecret.py."""
        (init,) = _init_containers(host).values()
        volume = self.volumes[host]
        volume.mkdir()
        os.chown(volume, UID, UID)  # emptyDir is writable by the Pod's user
        command = " ".join([sys.executable, str(ROOT / "compose" / "hostsecret.py"), *init["command"][1:]])
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.ns[host],
                "unshare",
                "-m",
                "sh",
                "-c",
                self._command(host, command, "rw"),
            ],
            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)},
            cwd="/tmp",
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (out.returncode, out.stdout) == (0, f"{SECRET_FILE}: a new secret\n"), out.stderr

    def start(self, host: str, layer: str) -> None:
        c = _containers(host)[layer]
        cmd = self._command(host, f"{sys.executable} -m services.{layer}", "ro")
        # The image's PATH and installed package; WORKDIR /tmp.
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **_env(c)}
        with (self.logs / f"{host}-{layer}.log").open("ab") as log:
            self.procs[host, layer] = subprocess.Popen(
                ["ip", "netns", "exec", self.ns[host], "unshare", "-m", "sh", "-c", cmd],
                env=env,
                cwd="/tmp",
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, host: str, layer: str) -> None:
        proc = self.procs.pop((host, layer))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)

    def run(self, host: str, code: str, *args: str, socket_svc: str = "") -> subprocess.Popen[str]:
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
        if socket_svc:
            env["STACKEMU_SOCKET_ADDR"] = socket_svc
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns[host], sys.executable, "-c", code, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self) -> None:
        targets = [f"{POD_ADDR[h.name]}:{PORTS[h.name][layer]}" for h in HOSTS for layer in LAYERS]
        nics = [f"{h.name}-nic:{PORTS[h.name]['nic']}" for h in HOSTS]
        probe = self.run(HOSTS[0].name, WAIT_READY, ",".join(targets), ",".join(nics))
        out, err = probe.communicate(timeout=60)
        exited = [f"{h}-{layer}" for (h, layer), p in self.procs.items() if p.poll() is not None]
        logs = {name: (self.logs / f"{name}.log").read_text()[-2000:] for name in exited}
        assert (out, probe.returncode) == ("ready\n", 0), (err, logs)


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[Pods]:
    if not CAN_NETNS:
        pytest.skip("network namespaces need root, iproute2, unshare and setpriv")
    tag = secrets.token_hex(3)
    pods = Pods(tag, tmp_path)
    hosts_file = "127.0.0.1 localhost\n" + "".join(
        f"{POD_ADDR[h.name]} {h.name}-nic {h.name}-socket\n" for h in HOSTS
    )
    etc_netns = Path("/etc/netns")
    ours = not etc_netns.exists()
    etc = [etc_netns / ns for ns in pods.ns.values()]
    # The mount point of the secret's volume, in the machine's own tree.
    mount_point = Path(SECRET_DIR)
    ours_mount_point = not mount_point.exists()
    mount_point.mkdir(parents=True, exist_ok=True)
    try:
        a, b = (pods.ns[h.name] for h in HOSTS)
        for ns, d in zip(pods.ns.values(), etc, strict=True):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            d.mkdir(parents=True)
            (d / "hosts").write_text(hosts_file)
        _ip("link", "add", f"v{a}", "netns", a, "type", "veth", "peer", f"v{b}", "netns", b)
        for h in HOSTS:
            ns = pods.ns[h.name]
            _ip("-n", ns, "addr", "add", f"{POD_ADDR[h.name]}/24", "dev", f"v{ns}")
            _ip("-n", ns, "link", "set", f"v{ns}", "up")
        for h in HOSTS:
            pods.init(h.name)
            for layer in LAYERS:
                pods.start(h.name, layer)
        yield pods
    finally:
        for key in list(pods.procs):
            pods.kill(*key)
        for ns, d in zip(pods.ns.values(), etc, strict=True):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            shutil.rmtree(d, ignore_errors=True)
        if ours:
            # Only if empty: another run's namespaces may have entries there now.
            with contextlib.suppress(OSError):
                etc_netns.rmdir()
        if ours_mount_point:
            with contextlib.suppress(OSError):
                mount_point.rmdir()


def _exchange(pods: Pods, text: str) -> str:
    alice, bob = (h.name for h in HOSTS)
    recv = pods.run(bob, DROPIN_RECV, socket_svc=f"{bob}-socket:{PORTS[bob]['socket']}")
    assert recv.stdout is not None
    assert recv.stdout.readline() == "bound\n"
    send = pods.run(alice, DROPIN_SEND, text, socket_svc=f"{alice}-socket:{PORTS[alice]['socket']}")
    out, err = send.communicate(timeout=30)
    assert (out, send.returncode) == (f"{len(text)}\n", 0), err
    got, err = recv.communicate(timeout=30)
    assert recv.returncode == 0, err
    return got


def _scrape(pods: Pods, scraper: str, host: str, layer: str) -> dict[str, float]:
    """host's layer's own samples (labels host and service alone), scraped from the Pod
    of scraper through the container's metrics port."""
    proc = pods.run(scraper, SCRAPE, f"{POD_ADDR[host]}:{metrics_port(PORTS[host][layer])}")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    status, _, text = out.partition("\n")
    assert status.startswith("200 text/plain"), status
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels == {"host": host, "service": layer}
    }


@pytest.mark.slow
def test_pods_as_the_manifests_say_make_the_two_hosts(pods: Pods) -> None:
    pods.wait_ready()
    assert _exchange(pods, "hello over the wire") == "hello over the wire 10.0.0.1 40000\n"
    # Each side's metrics, from the other Pod: one datagram out of alice's UDP layer,
    # one read by bob's (udp_recvmsg counts UdpInDatagrams).
    assert _scrape(pods, "bob", "alice", "udp")["stackemu_snmp_UdpOutDatagrams_total"] == 1
    assert _scrape(pods, "alice", "bob", "udp")["stackemu_snmp_UdpInDatagrams_total"] == 1
    # kubelet restarts a container that died; its neighbours and the wire reconnect.
    pods.kill("bob", "nic")
    pods.start("bob", "nic")
    pods.wait_ready()
    assert _exchange(pods, "after a restart") == "after a restart 10.0.0.1 40000\n"
