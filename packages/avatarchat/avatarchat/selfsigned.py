"""A self-signed certificate for ``make run TLS=1``: browsers only allow the microphone in a
secure context, so a phone or another machine on the LAN needs HTTPS to talk to the avatar."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path


def ensure_certificate(directory: Path, days: int = 365) -> tuple[Path, Path]:
    """Creates ``cert.pem`` and ``key.pem`` in ``directory`` unless they exist; returns both."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    names = ["DNS:localhost", "IP:127.0.0.1", f"DNS:{socket.gethostname()}"]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            str(days),
            "-subj",
            "/CN=avatarchat-dev",
            "-addext",
            f"subjectAltName={','.join(names)}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)
    return cert, key
