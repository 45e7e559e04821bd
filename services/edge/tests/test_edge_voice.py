"""Voice over the socket: audio.start, binary frames, audio.end, transcripts, barge-in.

The stt peer here (``ScriptedStt``) reads audio bytes as text, so each test controls the
transcript exactly; ``test_edge_voice_real.py`` runs real speech through the real stt service.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from avatarchat.v1 import stt_pb2
from tests.waiting import eventually


@pytest.fixture
async def voice_edge(make_edge: Any, llm: Any, stt: Any) -> TestClient:
    return await make_edge({"AVATARCHAT_LLM_ADDR": llm.addr, "AVATARCHAT_STT_ADDR": stt.addr})


PCM_START = {"type": "audio.start", "format": "pcm_s16le", "sample_rate": 16000}


async def test_push_to_talk_becomes_a_turn(
    voice_edge: TestClient, llm: Any, stt: Any, helpers: Any
) -> None:
    ws, hello = await helpers.connect(voice_edge)
    assert hello["features"]["voice"] is True
    await ws.send_json(PCM_START)
    await ws.send_bytes(b"hello ")
    await ws.send_bytes(b"world")
    await ws.send_json({"type": "audio.end"})
    frames = await helpers.until(ws, "reply.done")
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "speech.start"
    assert "transcript.partial" in kinds
    assert kinds.index("speech.end") < kinds.index("transcript.final")
    final = frames[kinds.index("transcript.final")]
    assert final["text"] == "hello world"
    assert all(f["turn_id"] == final["turn_id"] for f in frames if f["type"].startswith("reply."))
    assert llm.servicer.requests[0].text == "hello world"
    config = stt.servicer.configs[0]
    assert config.format.encoding == stt_pb2.AUDIO_ENCODING_PCM_S16LE
    assert (config.format.sample_rate_hz, config.vad, config.language) == (16000, False, "en")
    await ws.close()


async def test_formats_and_language_reach_stt(
    voice_edge: TestClient, stt: Any, helpers: Any
) -> None:
    ws, _ = await helpers.connect(voice_edge)
    for fmt, encoding in (
        ("webm", stt_pb2.AUDIO_ENCODING_WEBM),
        ("ogg", stt_pb2.AUDIO_ENCODING_OGG),
        ("wav", stt_pb2.AUDIO_ENCODING_WAV),
    ):
        await ws.send_json({"type": "audio.start", "format": fmt, "language": "en-GB"})
        await ws.send_bytes(b"hi")
        await ws.send_json({"type": "audio.end"})
        await helpers.until(ws, "reply.done")
        assert stt.servicer.configs[-1].format.encoding == encoding
        assert stt.servicer.configs[-1].language == "en-GB"
    await ws.close()


async def test_hands_free_two_utterances_two_turns(
    voice_edge: TestClient, llm: Any, stt: Any, helpers: Any
) -> None:
    ws, _ = await helpers.connect(voice_edge)
    await ws.send_json({"type": "audio.start", "format": "webm", "mode": "hands-free"})
    await ws.send_bytes(b"what time is it|")
    first = await helpers.until(ws, "reply.done")
    await ws.send_bytes(b"tell me a joke|")
    second = await helpers.until(ws, "reply.done")
    await ws.send_json({"type": "audio.end"})
    for frames, utterance, text in ((first, 0, "what time is it"), (second, 1, "tell me a joke")):
        kinds = [f["type"] for f in frames]
        assert kinds[:4] == ["speech.start", "transcript.partial", "speech.end", "transcript.final"]
        assert {f["utterance"] for f in frames[:4]} == {utterance}
        assert frames[3]["text"] == text
    assert [r.text for r in llm.servicer.requests] == ["what time is it", "tell me a joke"]
    assert stt.servicer.configs[0].vad is True
    await ws.close()


async def test_speech_during_a_reply_interrupts_it(
    voice_edge: TestClient, llm: Any, helpers: Any
) -> None:
    llm.servicer.hold = asyncio.Event()
    ws, _ = await helpers.connect(voice_edge)
    await ws.send_json({"type": "text", "text": "tell me everything"})
    first = (await helpers.until(ws, "reply.delta"))[-1]
    await ws.send_json({"type": "audio.start", "format": "wav", "mode": "hands-free"})
    await ws.send_bytes(b"stop please|")
    frames = await helpers.until(ws, "reply.interrupted")
    assert frames[-1]["turn_id"] == first["turn_id"] and frames[-1]["reason"] == "barge_in"
    assert "speech.start" in [f["type"] for f in frames]
    llm.servicer.hold = None
    done = await helpers.until(ws, "reply.done")
    assert done[-1]["turn_id"] != first["turn_id"]
    await eventually(lambda: llm.servicer.cancelled == 1)
    await ws.close()


async def test_push_to_talk_interrupts_at_the_first_audio(
    voice_edge: TestClient, llm: Any, helpers: Any
) -> None:
    llm.servicer.hold = asyncio.Event()
    ws, _ = await helpers.connect(voice_edge)
    await ws.send_json({"type": "text", "text": "go on"})
    await helpers.until(ws, "reply.delta")
    await ws.send_json(PCM_START)
    await ws.send_bytes(b"wait")
    frames = await helpers.until(ws, "reply.interrupted")
    assert frames[0]["type"] == "speech.start" or "speech.start" in [f["type"] for f in frames]
    llm.servicer.hold = None
    await ws.send_json({"type": "audio.end"})
    await helpers.until(ws, "reply.done")
    await ws.close()


async def test_corrupt_audio_is_reported_and_the_session_carries_on(
    voice_edge: TestClient, stt: Any, helpers: Any
) -> None:
    ws, _ = await helpers.connect(voice_edge)
    await ws.send_json({"type": "audio.start", "format": "wav"})
    await ws.send_bytes(b"BAD header")
    err = (await helpers.until(ws, "error"))[-1]
    assert err["code"] == "bad_audio" and "not a valid WAV" in err["message"]
    for _ in range(3):  # the rest of that recording is dropped without more errors
        await ws.send_bytes(b"more")
    await ws.send_json({"type": "audio.end"})
    await ws.send_json(PCM_START)  # a new recording works
    await ws.send_bytes(b"try again")
    await ws.send_json({"type": "audio.end"})
    frames = await helpers.until(ws, "reply.done")
    assert all(f["type"] != "error" for f in frames), frames
    await ws.close()


async def test_audio_end_without_audio(voice_edge: TestClient, stt: Any, helpers: Any) -> None:
    ws, _ = await helpers.connect(voice_edge)
    await ws.send_json(PCM_START)
    await ws.send_json({"type": "audio.end"})
    err = await helpers.receive(ws)
    assert err["code"] == "empty_audio"
    await ws.send_json({"type": "audio.end"})
    assert (await helpers.receive(ws))["code"] == "no_audio_stream"
    # No stt stream is left running (it may not even have started).
    await eventually(lambda: stt.servicer.cancelled == len(stt.servicer.configs))
    await ws.send_json({"type": "text", "text": "typing instead"})
    await helpers.until(ws, "reply.done")
    await ws.close()


async def test_audio_start_twice(voice_edge: TestClient, helpers: Any) -> None:
    ws, _ = await helpers.connect(voice_edge)
    await ws.send_json(PCM_START)
    await ws.send_json(PCM_START)
    assert (await helpers.receive(ws))["code"] == "audio_already_started"
    await ws.send_bytes(b"still recording")
    await ws.send_json({"type": "audio.end"})
    final = (await helpers.until(ws, "transcript.final"))[-1]
    assert final["text"] == "still recording"
    await ws.close()


async def test_too_much_push_to_talk_audio(
    make_edge: Any, llm: Any, stt: Any, helpers: Any
) -> None:
    edge = await make_edge(
        {"AVATARCHAT_LLM_ADDR": llm.addr, "AVATARCHAT_STT_ADDR": stt.addr},
        max_audio_bytes=2048,
    )
    ws, _ = await helpers.connect(edge)
    await ws.send_json(PCM_START)
    for _ in range(3):
        await ws.send_bytes(b"a" * 1000)
    err = (await helpers.until(ws, "error"))[-1]
    assert err["code"] == "audio_too_long"
    await ws.send_json({"type": "audio.end"})
    await ws.send_json({"type": "text", "text": "fine, I'll type"})
    frames = await helpers.until(ws, "reply.done")
    assert all(f["type"] != "error" for f in frames), frames
    await ws.close()


async def test_silence_gives_an_empty_transcript_and_no_turn(
    voice_edge: TestClient, llm: Any, helpers: Any
) -> None:
    ws, _ = await helpers.connect(voice_edge)
    await ws.send_json(PCM_START)
    await ws.send_bytes(b"   ")
    await ws.send_json({"type": "audio.end"})
    final = (await helpers.until(ws, "transcript.final"))[-1]
    assert final == {"type": "transcript.final", "turn_id": None, "text": "", "utterance": 0}
    await ws.send_json({"type": "ping"})
    assert (await helpers.until(ws, "pong"))[-1]["type"] == "pong"
    assert llm.servicer.requests == []
    await ws.close()


async def test_stt_down(voice_edge: TestClient, stt: Any, helpers: Any) -> None:
    await stt.stop()
    ws, _ = await helpers.connect(voice_edge)
    started = time.monotonic()
    await ws.send_json(PCM_START)
    await ws.send_bytes(b"hello?")
    err = (await helpers.until(ws, "error"))[-1]
    assert err["code"] == "stt_unavailable"
    assert time.monotonic() - started < 2.0
    await ws.send_json({"type": "audio.end"})
    await stt.start()
    await ws.send_json(PCM_START)
    await ws.send_bytes(b"better now")
    await ws.send_json({"type": "audio.end"})
    final = (await helpers.until(ws, "transcript.final", within=10))[-1]
    assert final["text"] == "better now"
    await ws.close()


async def test_voice_not_deployed(text_edge: TestClient, helpers: Any) -> None:
    ws, hello = await helpers.connect(text_edge)
    assert hello["features"]["voice"] is False
    await ws.send_json(PCM_START)
    err = await helpers.receive(ws)
    assert err["code"] == "stt_unavailable" and "AVATARCHAT_STT_ADDR" in err["message"]
    await ws.send_bytes(b"audio")
    assert (await helpers.receive(ws))["code"] == "no_audio_stream"
    await ws.close()


async def test_audio_frame_flood_stops_the_stream(
    make_edge: Any, llm: Any, stt: Any, helpers: Any
) -> None:
    edge = await make_edge(
        {"AVATARCHAT_LLM_ADDR": llm.addr, "AVATARCHAT_STT_ADDR": stt.addr},
        audio_frames_per_s=10.0,
        audio_frames_burst=5,
    )
    ws, _ = await helpers.connect(edge)
    await ws.send_json(PCM_START)
    for _ in range(50):
        await ws.send_bytes(b"x")
    err = (await helpers.until(ws, "error"))[-1]
    assert err["code"] == "rate_limited" and "audio" in err["message"]
    await ws.send_json({"type": "text", "text": "ok"})
    frames = await helpers.until(ws, "reply.done")
    assert [f for f in frames if f["type"] == "error"] == []
    await ws.close()
