"""Voice in, avatar out: the whole stack over a real WebSocket with every real local model."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import av

from avatarchat.devstack import Stack
from tests import speech_corpus


async def next_of(
    ws: aiohttp.ClientWebSocketResponse, kinds: set[str], limit_s: float = 90
) -> dict[str, Any]:
    async with asyncio.timeout(limit_s):
        while True:
            message = await ws.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, message
            frame = message.json()
            assert frame["type"] != "error", frame
            if frame["type"] in kinds:
                return dict(frame)


async def open_session(
    http: aiohttp.ClientSession, ws_url: str, avatar: bool
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(ws_url)
    hello = await next_of(ws, {"session"})
    await ws.send_json(
        {"type": "session.start", "session_id": hello["session_id"], "avatar": avatar}
    )
    await next_of(ws, {"session"})
    return ws


async def test_spoken_questions_are_transcribed_and_answered(stack: Stack, ws_url: str) -> None:
    texts = speech_corpus.sentences()[:3]
    hypotheses = []
    async with aiohttp.ClientSession() as http:
        ws = await open_session(http, ws_url, avatar=False)
        for text in texts:
            pcm, rate = speech_corpus.synthesize(text)
            pcm16 = speech_corpus.resample(pcm, rate, 16000)
            await ws.send_json({"type": "audio.start", "format": "pcm_s16le", "sample_rate": 16000})
            payload = pcm16.astype("<i2").tobytes()
            for start in range(0, len(payload), 3200):  # 100 ms frames
                await ws.send_bytes(payload[start : start + 3200])
            await ws.send_json({"type": "audio.end"})
            final = await next_of(ws, {"transcript.final"})
            hypotheses.append(final["text"])
            done = await next_of(ws, {"reply.done"})
            assert done["turn_id"] == final["turn_id"]
            assert done["text"].strip()
        await ws.close()
    assert speech_corpus.word_error_rate(texts, hypotheses) <= 0.25, hypotheses


async def test_a_reply_becomes_speech_and_video_served_by_the_edge(
    stack: Stack, ws_url: str
) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await open_session(http, ws_url, avatar=True)
        await ws.send_json({"type": "text", "text": "Hello! Say hello back in one short sentence."})
        speech = await next_of(ws, {"clip.speech"})
        timeline = speech["timeline"]
        assert timeline["duration_ms"] > 0 and timeline["visemes"], timeline
        ready = await next_of(ws, {"clip.ready"})
        assert ready["clip_id"] == speech["clip_id"] and ready["seq"] == speech["seq"]
        async with http.get(stack.edge_url + speech["audio_url"]) as response:
            assert response.status == 200
            wav = await response.read()
        assert wav[:4] == b"RIFF"
        async with http.get(stack.edge_url + ready["video_url"]) as response:
            assert response.status == 200
            mp4 = await response.read()
        await ws.close()
    with av.open(io.BytesIO(mp4)) as container:
        video = container.streams.video[0]
        assert (video.width, video.height) == (512, 512)
        assert video.average_rate == 25
        assert container.streams.audio, "the clip must carry the speech"
        seconds = float(container.duration or 0) / av.time_base
    assert abs(seconds * 1000 - ready["duration_ms"]) <= 80
