"""Install-time step: takes Smart Turn v3.2's ONNX file out of the ``pipecat-ai`` wheel.

    python -m avatarchat_stt.fetch_smart_turn [DEST_DIR]    # default: <venv>/share/avatarchat

The wheel is fetched from PyPI's file host, checked against the sha256 pinned here, and only
``smart-turn-v3.2-cpu.onnx`` (BSD-2-Clause, with the wheel's licence file beside it) is kept.
Installing ``pipecat-ai`` itself would bring numba, resampy, openai and more for one 8 MB file.
Nothing is fetched at run time; an installed, matching file is left alone.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from avatarchat_stt.smart_turn import MODEL_FILE, default_model_path

WHEEL_URL = (
    "https://files.pythonhosted.org/packages/38/31/"
    "29c72ca8d3a16b59fd12580fcb99a7cef641d9ee07fe7b0321c1b65ca3cf/"
    "pipecat_ai-1.14.0-py3-none-any.whl"
)
WHEEL_SHA256 = "0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44"
MEMBER = f"pipecat/audio/turn/smart_turn/data/{MODEL_FILE}"
LICENCE_MEMBER = "pipecat_ai-1.14.0.dist-info/licenses/LICENSE"
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(dest_dir: Path) -> Path:
    """Installs the model into ``dest_dir`` (if not there already); returns its path."""
    target = dest_dir / MODEL_FILE
    if target.is_file() and _sha256(target) == MODEL_SHA256:
        return target
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir) as scratch:
        wheel = Path(scratch) / "pipecat.whl"
        print(f">> downloading the pipecat-ai 1.14.0 wheel for {MODEL_FILE}", file=sys.stderr)
        with urllib.request.urlopen(WHEEL_URL, timeout=120) as answer, wheel.open("wb") as out:
            shutil.copyfileobj(answer, out)
        if (got := _sha256(wheel)) != WHEEL_SHA256:
            raise SystemExit(f"the pipecat-ai wheel has sha256 {got}, expected {WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as archive:
            (Path(scratch) / MODEL_FILE).write_bytes(archive.read(MEMBER))
            (dest_dir / "smart-turn-LICENSE").write_bytes(archive.read(LICENCE_MEMBER))
        if (got := _sha256(Path(scratch) / MODEL_FILE)) != MODEL_SHA256:
            raise SystemExit(f"{MODEL_FILE} has sha256 {got}, expected {MODEL_SHA256}")
        (Path(scratch) / MODEL_FILE).replace(target)
    return target


def main() -> int:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else default_model_path().parent
    print(f">> {fetch(dest)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
