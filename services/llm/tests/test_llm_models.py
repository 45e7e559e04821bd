"""Named models: the chunked Qwen GGUF is joined only from chunks that match their pins, and a
file whose GGUF metadata is not the expected model is refused at load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from avatarchat.config import ConfigError
from avatarchat_llm.gguf import GgufError, read_metadata
from avatarchat_llm.models import (
    QWEN_05B,
    SMOLLM2_135M,
    assemble,
    check,
    ensure_file,
    main,
    sha256_of,
)


def test_the_joined_chunks_are_the_pinned_qwen_gguf(tmp_path: Path) -> None:
    dest = assemble(QWEN_05B, tmp_path / "qwen.gguf")
    assert sha256_of(dest) == QWEN_05B.sha256
    found = check(QWEN_05B, dest)
    assert found == {
        "architecture": "qwen2",
        "name": "Qwen2.5 Coder 0.5B Instruct AWQ",
        "quantization": "Q4_K_M",
    }
    assert list(tmp_path.iterdir()) == [dest]  # no partial file left behind


def test_a_chunk_that_does_not_match_its_pin_is_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    first, *rest = QWEN_05B.chunks
    tampered = dataclasses.replace(
        QWEN_05B, chunks=(dataclasses.replace(first, sha256="0" * 64), *rest)
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
    assert "quantization='Q4_1' (expected 'Q4_K_M')" in message


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
        ensure_file(None, tmp_path / "absent.gguf")


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
