"""The NetworkPolicies of every overlay let exactly the intended traffic through.

Reachability is worked out from the rendered policies with Kubernetes' rules (a pod selected by
any ingress policy accepts only what some rule of those policies allows), so a policy that is
too open or too closed fails here, not in a cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from manifests import OVERLAYS, Caller, ingress_allowed, pod_labels, render

GRPC_SERVICES = ("stt", "llm", "avatar")
SERVICES = (*GRPC_SERVICES, "edge")
NAMESPACE = "avatarchat"
INTERNET = Caller()


def in_namespace(overlay: str, workload: str) -> Caller:
    return Caller.pod_in(NAMESPACE, pod_labels(render(overlay), workload))


def elsewhere(labels: dict[str, str]) -> Caller:
    return Caller.pod_in("some-other-namespace", labels)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_edge_reaches_the_grpc_services(overlay: str) -> None:
    resources = render(overlay)
    for target in GRPC_SERVICES:
        assert ingress_allowed(resources, in_namespace(overlay, "edge"), target, "grpc")
        assert not ingress_allowed(resources, INTERNET, target, "grpc")
        # A pod labelled like the edge in another namespace is not the edge.
        edge_labels = pod_labels(resources, "edge")
        assert not ingress_allowed(resources, elsewhere(edge_labels), target, "grpc")
        for other in (*GRPC_SERVICES, "nats"):
            assert not ingress_allowed(resources, in_namespace(overlay, other), target, "grpc")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_services_reach_nats(overlay: str) -> None:
    resources = render(overlay)
    for source in SERVICES:
        assert ingress_allowed(resources, in_namespace(overlay, source), "nats", "client")
    stranger = Caller.pod_in(NAMESPACE, {"app.kubernetes.io/name": "debug-shell"})
    assert not ingress_allowed(resources, stranger, "nats", "client")
    assert not ingress_allowed(resources, INTERNET, "nats", "client")
    assert not ingress_allowed(resources, INTERNET, "nats", "monitor")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_nats_servers_reach_the_cluster_routes(overlay: str) -> None:
    resources = render(overlay)
    assert ingress_allowed(resources, in_namespace(overlay, "nats"), "nats", "cluster")
    for source in SERVICES:
        assert not ingress_allowed(resources, in_namespace(overlay, source), "nats", "cluster")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_anyone_reaches_the_edge_over_http_and_nothing_else(overlay: str) -> None:
    resources = render(overlay)
    assert ingress_allowed(resources, INTERNET, "edge", "http")
    assert ingress_allowed(resources, elsewhere({"app": "ingress-nginx"}), "edge", "http")
    assert not ingress_allowed(resources, INTERNET, "edge", "metrics-debug")
