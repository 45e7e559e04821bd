"""Checks the deployment files offline: what `make k8s-check` runs.

    python deploy/check.py                 # build every overlay, validate, lint the Dockerfile
    python deploy/check.py -k network      # extra arguments go to pytest
    python deploy/check.py --render prod   # print an overlay's rendered YAML

The checks are the tests in tests/test_k8s_*.py and tests/test_dockerfiles.py (which `make test`
runs too): kustomize builds of dev and prod, strict validation against the Kubernetes JSON
schemas (kubernetes-validate), workload and network policies, the NATS config through the real
nats-server, and hadolint on the Dockerfile. Run it with the project venv's python.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = (
    "tests/test_k8s_manifests.py",
    "tests/test_k8s_network_policies.py",
    "tests/test_dockerfiles.py",
)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--render"]:
        if len(args) != 2:
            print("usage: python deploy/check.py --render dev|prod", file=sys.stderr)
            return 2
        from manifests import OVERLAYS, RenderError, render_text

        if args[1] not in OVERLAYS:
            print(
                f"unknown overlay {args[1]!r}; choose from {', '.join(OVERLAYS)}", file=sys.stderr
            )
            return 2
        try:
            sys.stdout.write(render_text(args[1]))
        except RenderError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    return subprocess.call([sys.executable, "-m", "pytest", *TESTS, *args], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
