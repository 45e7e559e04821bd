"""Reads the metadata header of a GGUF file (the key/value pairs before the tensors).

Only what is needed to check a model before trusting it: ``general.architecture``,
``general.name``, ``general.file_type`` and friends. Arrays (the tokenizer's vocabulary) are
skipped, not loaded. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"

# GGUF value types -> struct format (scalars); 8 = string, 9 = array.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9

# llama.cpp's ``enum llama_ftype`` values that ``general.file_type`` holds, for the ones we name.
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    12: "Q3_K_M",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
}


class GgufError(ValueError):
    """The file is not a GGUF file, or its header is damaged."""


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise GgufError("the file ends inside its metadata header")
    return struct.unpack("<" + fmt, data)[0]


def _string(f: BinaryIO) -> str:
    length = _read(f, "Q")
    if length > 1 << 24:
        raise GgufError(f"a metadata string claims {length} bytes")
    data = f.read(length)
    if len(data) != length:
        raise GgufError("the file ends inside a metadata string")
    return data.decode("utf-8", errors="replace")


def _value(f: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _read(f, _SCALARS[kind])
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item_kind, count = _read(f, "I"), _read(f, "Q")
        if item_kind in _SCALARS:  # skip without decoding
            f.seek(struct.calcsize("<" + _SCALARS[item_kind]) * count, 1)
        else:
            for _ in range(count):
                _value(f, item_kind)
        return None
    raise GgufError(f"unknown metadata value type {kind}")


def read_metadata(path: Path) -> dict[str, Any]:
    """The scalar and string metadata of the GGUF file at ``path`` (arrays map to None)."""
    with open(path, "rb") as f:
        if f.read(4) != MAGIC:
            raise GgufError(f"{path} is not a GGUF file (no GGUF magic)")
        version = _read(f, "I")
        if version not in (2, 3):
            raise GgufError(f"{path}: unsupported GGUF version {version}")
        _tensors, count = _read(f, "Q"), _read(f, "Q")
        if count > 100_000:
            raise GgufError(f"{path}: the header claims {count} metadata entries")
        metadata: dict[str, Any] = {}
        for _ in range(count):
            key = _string(f)
            metadata[key] = _value(f, _read(f, "I"))
    return metadata


def quantization(metadata: dict[str, Any]) -> str:
    """``general.file_type`` as llama.cpp names it (``Q4_K_M``), or ``type <n>``."""
    file_type = metadata.get("general.file_type")
    return FILE_TYPES.get(file_type, f"type {file_type}") if file_type is not None else "unknown"
