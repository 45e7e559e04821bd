"""Builds the avatarchat service images with docker buildx: what `make images` runs.

    python3 deploy/images.py                      # every service, avatarchat/<svc>:dev, --load
    python3 deploy/images.py llm edge --tag 0.1.0 --repository registry.example.com/avatarchat
    python3 deploy/images.py --push --platform linux/amd64,linux/arm64 --repository REGISTRY
    python3 deploy/images.py --dry-run            # print the commands, need no Docker

Each image is built from the repository root with the one Dockerfile there, which
`--build-arg SERVICE=<svc>` points at the service. Without a Docker
daemon (and buildx) nothing is built: the script says so and exits with status 2.
Standard library only, so it runs before `make install`.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("stt", "llm", "avatar", "edge")
NO_DOCKER = 2


def image_name(service: str, repository: str, tag: str) -> str:
    return f"{repository.rstrip('/')}/{service}:{tag}"


def build_command(
    service: str, *, repository: str, tag: str, platform: str | None, push: bool
) -> list[str]:
    command = [
        "docker",
        "buildx",
        "build",
        "--file",
        "Dockerfile",
        "--build-arg",
        f"SERVICE={service}",
        "--tag",
        image_name(service, repository, tag),
    ]
    if platform:
        command += ["--platform", platform]
    # --load puts the image in the local daemon (for kind/minikube `image load`); a multi-platform
    # build can only be pushed.
    command.append("--push" if push else "--load")
    command.append(".")
    return command


def docker_problem(docker: str | None) -> str | None:
    """Why images cannot be built here, or None when docker and buildx both answer."""
    if docker is None:
        return "there is no `docker` command on PATH"
    try:
        info = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker daemon answers `docker info` ({reason})"
    buildx = subprocess.run(
        [docker, "buildx", "version"], capture_output=True, text=True, timeout=30, check=False
    )
    if buildx.returncode != 0:
        return "the docker buildx plugin is missing (install docker-buildx)"
    return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help=f"services to build (default: all of {', '.join(SERVICES)})",
    )
    parser.add_argument(
        "--repository",
        default="avatarchat",
        help="image name prefix, e.g. registry.example.com/avatarchat",
    )
    parser.add_argument("--tag", default="dev", help="image tag (default: dev)")
    parser.add_argument("--platform", help="target platforms, e.g. linux/amd64,linux/arm64")
    parser.add_argument("--push", action="store_true", help="push instead of loading locally")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.services) - set(SERVICES))
    if unknown:
        parser.error(f"unknown service {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    if args.tag == "latest":
        parser.error("refusing the `latest` tag: the manifests pin explicit tags")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    services = args.services or list(SERVICES)
    commands = {
        service: build_command(
            service,
            repository=args.repository,
            tag=args.tag,
            platform=args.platform,
            push=args.push,
        )
        for service in services
    }
    if args.dry_run:
        for command in commands.values():
            print(shlex.join(command))
        return 0
    problem = docker_problem(shutil.which("docker"))
    if problem:
        print(
            f"make images: cannot build the images on this machine: {problem}.\n"
            "Nothing was built. Run `make images` where Docker (with buildx) runs, or see the\n"
            "commands with `python3 deploy/images.py --dry-run`.",
            file=sys.stderr,
        )
        return NO_DOCKER
    for service, command in commands.items():
        print(f">> {shlex.join(command)}", flush=True)
        if subprocess.run(command, cwd=ROOT, check=False).returncode != 0:
            print(f"make images: building the {service} image failed", file=sys.stderr)
            return 1
    built = ", ".join(image_name(s, args.repository, args.tag) for s in services)
    print(f">> built {built}" + (" (pushed)" if args.push else " (loaded into the local daemon)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
