"""Named models: the chunked Qwen GGUF is joined only from chunks that match their pins, the
default is requantized from it by the real llama-quantize, and a file whose GGUF metadata is not
the expected model is refused at load."""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

import pytest

from avatarchat.config import ConfigError
from avatarchat_llm.gguf import GgufError, read_metadata
from avatarchat_llm.models import (
    LLAMA_CPP_DIR,
    QWEN_05B,
    QWEN_05B_Q4_K_M,
    SMOLLM2_135M,
    assemble,
    check,
    ensure_file,
    main,
    requantize,
    sha256_of,
)

QUANTIZER = LLAMA_CPP_DIR / "llama-quantize"


def test_the_joined_chunks_are_the_pinned_qwen_gguf(tmp_path: Path) -> None:
    dest = assemble(QWEN_05B_Q4_K_M, tmp_path / "qwen.gguf")
    assert sha256_of(dest) == QWEN_05B_Q4_K_M.sha256
    found = check(QWEN_05B_Q4_K_M, dest)
    assert found == {
        "architecture": "qwen2",
        "name": "Qwen2.5 Coder 0.5B Instruct AWQ",
        "quantization": "Q4_K_M",
    }
    assert list(tmp_path.iterdir()) == [dest]  # no partial file left behind


def test_a_chunk_that_does_not_match_its_pin_is_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    first, *rest = QWEN_05B_Q4_K_M.chunks
    tampered = dataclasses.replace(
        QWEN_05B_Q4_K_M, chunks=(dataclasses.replace(first, sha256="0" * 64), *rest)
    )
    with pytest.raises(ConfigError, match="does not match its pinned sha256"):
        assemble(tampered, tmp_path / "qwen.gguf")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_another_model_is_refused() -> None:
    smollm2 = SMOLLM2_135M.default_path()
    assert check(SMOLLM2_135M, smollm2)["architecture"] == "llama"
    with pytest.raises(ConfigError) as refused:
        check(QWEN_05B, smollm2)
    message = str(refused.value)
    assert "is not qwen2.5-coder-0.5b" in message
    assert "architecture='llama' (expected 'qwen2')" in message
    assert "quantization='Q4_1' (expected 'Q4_0')" in message


def test_the_default_is_requantized_by_llama_quantize_from_the_checked_source(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "models" / QWEN_05B.file_name
    # ensure_file makes a missing default; the source is the checked file or is joined anew.
    assert ensure_file(QWEN_05B, dest, QUANTIZER) == dest
    assert check(QWEN_05B, dest) == {
        "architecture": "qwen2",
        "name": "Qwen2.5 Coder 0.5B Instruct AWQ",
        "quantization": "Q4_0",
    }
    assert list(dest.parent.iterdir()) == [dest]  # no source or partial file left behind
    assert QWEN_05B.requantized is not None
    if platform.machine() == "x86_64":  # the file whose recall and speed docs/llm.md reports
        assert sha256_of(dest) == QWEN_05B.requantized.sha256_x86_64


def test_a_failed_requantization_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    assert QWEN_05B.requantized is not None
    bad_type = dataclasses.replace(
        QWEN_05B, requantized=dataclasses.replace(QWEN_05B.requantized, file_type="Q9_9")
    )
    with pytest.raises(ConfigError, match=r"llama-quantize failed \(1\) making qwen2.5-coder-0.5b"):
        requantize(bad_type, tmp_path / "qwen.gguf", QUANTIZER)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="made with llama-quantize, and there is none at"):
        requantize(QWEN_05B, tmp_path / "qwen.gguf", tmp_path / "llama-quantize")
    with pytest.raises(ValueError, match="not made by requantizing"):
        requantize(SMOLLM2_135M, tmp_path / "smol.gguf", QUANTIZER)


def test_any_gguf_from_the_path_override_is_only_checked_to_be_gguf(tmp_path: Path) -> None:
    assert check(None, SMOLLM2_135M.default_path())["quantization"] == "Q4_1"
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ConfigError, match="not a GGUF file"):
        check(None, not_gguf)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(SMOLLM2_135M.default_path().read_bytes()[:2000])
    with pytest.raises(GgufError, match="ends inside"):
        read_metadata(truncated)


def test_a_missing_path_without_chunks_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no GGUF file"):
        ensure_file(None, tmp_path / "absent.gguf", QUANTIZER)


def test_the_install_command_checks_a_whole_model_without_rewriting_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = SMOLLM2_135M.default_path()
    before = (path.stat().st_size, path.stat().st_mtime_ns)
    assert main(["assemble", "smollm2-135m"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(path)
    assert (path.stat().st_size, path.stat().st_mtime_ns) == before
    with pytest.raises(ValueError, match="no chunks"):
        assemble(SMOLLM2_135M)
    assert main(["assemble", "gpt-5"]) == 2
