"""What deploy/k8s/network-policies.yaml lets through, evaluated with Kubernetes'
NetworkPolicy rules over the pods the manifests actually run (no cluster here: this is
the model a conforming network plugin enforces). Only the gateway is reachable from
outside, only the gateway reaches the APIs, only the app pods reach the servers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

K8S = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
NAMESPACE = {"kubernetes.io/metadata.name": "hoithi"}


@dataclass(frozen=True)
class Pod:
    name: str
    labels: dict[str, str]
    namespace: dict[str, str] = field(default_factory=lambda: NAMESPACE)
    ports: tuple[int, ...] = ()

    @property
    def in_namespace(self) -> bool:
        return self.namespace == NAMESPACE


INTERNET = Pod("internet", {}, namespace={})
PROMETHEUS = Pod("prometheus", {"app": "prometheus"}, namespace={"kubernetes.io/metadata.name": "monitoring"})
KUBE_DNS = Pod("kube-dns", {"k8s-app": "kube-dns"}, namespace={"kubernetes.io/metadata.name": "kube-system"})
OTHER_POD = Pod("another-teams-pod", {"app": "other"}, namespace={"kubernetes.io/metadata.name": "other"})
OUR_SERVER = Pod("redis-in-namespace", {"app.kubernetes.io/component": "server"}, ports=(6379,))
SERVER_PORTS = {"postgresql": 5432, "redis": 6379, "rabbitmq": 5672}


def _documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / resource).read_text()) if d]
    return docs


DOCS = _documents()
POLICIES = [d for d in DOCS if d["kind"] == "NetworkPolicy"]


def _pods() -> dict[str, Pod]:
    pods = {}
    for doc in DOCS:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        template = doc["spec"]["template"]
        ports = tuple(p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", []))
        pods[doc["metadata"]["name"]] = Pod(doc["metadata"]["name"], template["metadata"]["labels"], ports=ports)
    return pods


PODS = _pods()


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for rule in selector.get("matchExpressions", []):
        key, operator, values = rule["key"], rule["operator"], rule.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def _peer_matches(peer: dict[str, Any], pod: Pod) -> bool:
    if "ipBlock" in peer:
        return not pod.namespace  # stands for addresses outside the cluster
    if "namespaceSelector" in peer:
        namespace_ok = _selects(peer["namespaceSelector"], pod.namespace) if pod.namespace else False
    else:
        namespace_ok = pod.in_namespace
    return namespace_ok and _selects(peer.get("podSelector", {}), pod.labels)


def _rule_allows(rule: dict[str, Any], peers_key: str, peer: Pod, port: int) -> bool:
    peers = rule.get(peers_key)
    ports = rule.get("ports")
    peer_ok = peers is None or any(_peer_matches(p, peer) for p in peers)
    port_ok = ports is None or any(p.get("port") == port for p in ports)
    return peer_ok and port_ok


def _allowed(direction: str, pod: Pod, peer: Pod, port: int) -> bool:
    """Whether `pod`'s policies let `peer` in (Ingress) or `pod` out to `peer` (Egress)."""
    if not pod.in_namespace:
        return True  # pods elsewhere are not ours to restrict
    policies = [p for p in POLICIES if direction in p["spec"].get("policyTypes", ["Ingress"])
                and _selects(p["spec"]["podSelector"], pod.labels)]
    if not policies:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return any(_rule_allows(rule, peers_key, peer, port) for p in policies for rule in p["spec"].get(key, []))


def can_connect(source: Pod, destination: Pod, port: int) -> bool:
    return _allowed("Egress", source, destination, port) and _allowed("Ingress", destination, source, port)


def _by_component(component: str) -> list[Pod]:
    return [p for p in PODS.values() if p.labels.get("app.kubernetes.io/component") == component]


APIS, WORKERS, GATEWAYS = _by_component("api"), _by_component("worker"), _by_component("gateway")
APP_PODS = [*APIS, *WORKERS, *_by_component("migrate")]


def test_every_pod_the_manifests_run_is_covered() -> None:
    assert {p.name for p in APIS} == {"registration", "quiz", "scoring", "notify"}
    assert len(GATEWAYS) == 1 and len(WORKERS) >= 6 and _by_component("migrate")
    covered = [*APIS, *WORKERS, *GATEWAYS, *_by_component("migrate")]
    assert sorted(p.name for p in PODS.values()) == sorted(p.name for p in covered)


def test_from_outside_only_the_gateway_answers() -> None:
    [gateway] = GATEWAYS
    assert can_connect(INTERNET, gateway, 8080)
    for pod in [*APIS, *WORKERS]:
        for port in (*pod.ports, 8080, 9090):
            assert not can_connect(INTERNET, pod, port), (pod.name, port)
            assert not can_connect(OTHER_POD, pod, port), (pod.name, port)


def test_only_the_gateway_and_prometheus_reach_the_apis() -> None:
    [gateway] = GATEWAYS
    for api in APIS:
        [port] = api.ports
        assert can_connect(gateway, api, port), api.name
        assert can_connect(PROMETHEUS, api, port), api.name
        for other in [*WORKERS, *[a for a in APIS if a != api], *_by_component("migrate"), OUR_SERVER]:
            assert not can_connect(other, api, port), (other.name, api.name)
            # Each side holds on its own: the API refuses them even if their egress allowed it.
            assert not _allowed("Ingress", api, other, port), (other.name, api.name)


@pytest.mark.parametrize("server", sorted(SERVER_PORTS))
def test_only_the_app_pods_reach_the_servers(server: str) -> None:
    outside = Pod(server, {}, namespace={})
    port = SERVER_PORTS[server]
    for pod in APP_PODS:
        assert can_connect(pod, outside, port), pod.name
    for gateway in GATEWAYS:
        assert not can_connect(gateway, outside, port)
    for pod in APP_PODS:
        assert can_connect(pod, OUR_SERVER, 6379), pod.name
    for stranger in (*GATEWAYS, INTERNET, OTHER_POD):
        assert not can_connect(stranger, OUR_SERVER, 6379), stranger.name


def test_every_pod_resolves_names() -> None:
    for pod in PODS.values():
        assert can_connect(pod, KUBE_DNS, 53), pod.name
