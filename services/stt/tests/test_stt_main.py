"""``python -m avatarchat_stt`` as its own process, driven by the real ``grpcurl`` binary."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from avatarchat.nats_server import free_port
from tests import speech_corpus

GRPCURL = Path(sys.executable).parent / "grpcurl"


def grpcurl(*args: str, stdin: str | None = None, timeout: float = 60):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [str(GRPCURL), "-plaintext", "-max-time", str(timeout), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout + 10,
        check=False,
    )


def service_env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AVATARCHAT_", "GROQ_"))}
    return {**keep, "AVATARCHAT_LOG_FORMAT": "json", **extra}


@pytest.fixture(scope="module")
def stt_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_file = tmp_path_factory.mktemp("stt") / "stt.log"
    with open(log_file, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "avatarchat_stt"],
            env=service_env(AVATARCHAT_STT_PORT=str(port)),
            stdout=out,
            stderr=out,
        )
    addr = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # wait for SERVING, as a Kubernetes probe would
            health = grpcurl(addr, "grpc.health.v1.Health/Check", timeout=5)
            if '"SERVING"' in health.stdout:
                break
            assert process.poll() is None, log_file.read_text()
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.2)
        yield addr
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        logs = log_file.read_text()
        assert code == 0, logs
        events = [json.loads(line)["event"] for line in logs.splitlines() if line.startswith("{")]
        assert "service.stopping" in events and "service.stopped" in events, logs


def test_grpcurl_lists_and_describes_the_service(stt_process: str) -> None:
    listed = grpcurl(stt_process, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"avatarchat.v1.SttService", "grpc.health.v1.Health"} <= set(listed.stdout.split())
    described = grpcurl(stt_process, "describe", "avatarchat.v1.SttService")
    assert "rpc Transcribe ( .avatarchat.v1.TranscribeRequest )" in described.stdout
    assert (
        "rpc StreamTranscribe ( stream .avatarchat.v1.StreamTranscribeRequest ) returns "
        "( stream .avatarchat.v1.TranscriptEvent )"
    ) in described.stdout


def test_grpcurl_transcribes_a_wav_file(stt_process: str) -> None:
    text = speech_corpus.sentences()[2]
    audio = base64.b64encode(speech_corpus.wav_file(text).read_bytes()).decode()
    request = json.dumps({"format": {"encoding": "AUDIO_ENCODING_WAV"}, "audio": audio})
    result = grpcurl("-d", "@", stt_process, "avatarchat.v1.SttService/Transcribe", stdin=request)
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["model"] == "whisper:tiny.en"
    assert speech_corpus.word_error_rate([text], [response["text"]]) <= 0.25


def test_grpcurl_streams_pcm_and_gets_a_final(stt_process: str) -> None:
    text = speech_corpus.sentences()[5]
    pcm, rate = speech_corpus.synthesize(text)
    data = pcm.tobytes()
    messages = [
        {"config": {"format": {"encoding": "AUDIO_ENCODING_PCM_S16LE", "sampleRateHz": rate}}}
    ]
    messages += [
        {"audio": base64.b64encode(data[i : i + 8820]).decode()} for i in range(0, len(data), 8820)
    ]
    result = grpcurl(
        "-d",
        "@",
        stt_process,
        "avatarchat.v1.SttService/StreamTranscribe",
        stdin="\n".join(json.dumps(m) for m in messages),
    )
    assert result.returncode == 0, result.stderr
    decoder = json.JSONDecoder()
    events, rest = [], result.stdout.strip()
    while rest:
        event, end = decoder.raw_decode(rest)
        events.append(event)
        rest = rest[end:].strip()
    assert "final" in events[-1] and all("partial" in e for e in events[:-1])
    assert speech_corpus.word_error_rate([text], [events[-1]["final"]["text"]]) <= 0.25


def test_grpcurl_sees_invalid_argument_for_corrupt_audio(stt_process: str) -> None:
    request = json.dumps(
        {
            "format": {"encoding": "AUDIO_ENCODING_WAV"},
            "audio": base64.b64encode(os.urandom(3000)).decode(),
        }
    )
    result = grpcurl("-d", "@", stt_process, "avatarchat.v1.SttService/Transcribe", stdin=request)
    assert result.returncode != 0
    assert "InvalidArgument" in result.stderr
    assert "could not decode the audio as WAV" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AVATARCHAT_STT_MAX_AUDIO_S": "lots"}, "AVATARCHAT_STT_MAX_AUDIO_S must be a number"),
        ({"AVATARCHAT_STT_BACKEND": "vosk"}, "STT_BACKEND must be one of whisper, pocketsphinx"),
        ({"AVATARCHAT_STT_BACKEND": "groq"}, "GROQ_API_KEY is required"),
        (
            {"AVATARCHAT_STT_BACKEND": "pocketsphinx", "AVATARCHAT_STT_DECODER_OPTIONS": "beam=x"},
            "beam must be a float",
        ),
        (
            {"AVATARCHAT_STT_BACKEND": "pocketsphinx", "AVATARCHAT_STT_DECODER_OPTIONS": "bad=1"},
            "PocketSphinx has no 'bad'",
        ),
        (
            {"AVATARCHAT_STT_WHISPER_MODEL_DIR": "/nonexistent/base.en"},
            "'/nonexistent/base.en' is not a CTranslate2 Whisper model directory",
        ),
    ],
)
def test_bad_configuration_exits_2_naming_the_variable(env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "avatarchat_stt"],
        env=service_env(AVATARCHAT_STT_PORT=str(free_port()), **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
