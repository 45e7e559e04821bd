"""ElevenLabs speech: ``POST /v1/text-to-speech/{voice_id}/with-timestamps``.

The response carries the audio (base64) and a per-character alignment, which becomes the
``Speech.chars`` the lip-sync derives visemes from. The audio is requested as raw 16-bit PCM
(``output_format=pcm_22050``, the default) or as MP3, which PyAV decodes.

Errors become status codes a person can act on, by the shared vendor base
(``avatarchat.vendor_http``): a rejected key is UNAUTHENTICATED, a rate or quota limit
RESOURCE_EXHAUSTED (with its Retry-After), a request ElevenLabs refuses INVALID_ARGUMENT, no
answer within ``AVATARCHAT_ELEVENLABS_TIMEOUT_S`` DEADLINE_EXCEEDED, and anything else
(network, 5xx, a malformed answer) UNAVAILABLE. The API key is never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
from typing import Any

import aiohttp
import av
import numpy as np

from avatarchat import errors, log
from avatarchat.vendor_http import Vendor
from avatarchat_avatar.config import ElevenLabsConfig
from avatarchat_avatar.speech import CharSpan, Speech

_log = log.get("avatarchat.avatar.elevenlabs")

ELEVENLABS = Vendor(
    "ElevenLabs",
    key_setting="ELEVENLABS_API_KEY",
    timeout_setting="AVATARCHAT_ELEVENLABS_TIMEOUT_S",
    url_setting="AVATARCHAT_ELEVENLABS_BASE_URL",
    statuses={429: (errors.ResourceExhausted, "{vendor} rate or quota limit reached: {detail}")},
    transport_errors=(aiohttp.ClientError,),
)


class ElevenLabsSpeech:
    name = "elevenlabs"

    def __init__(self, config: ElevenLabsConfig, session: aiohttp.ClientSession) -> None:
        self._config = config
        self._session = session
        self._vendor = ELEVENLABS.using(base_url=config.base_url)

    def voices(self) -> tuple[str, ...]:
        return self._config.voices

    async def load(self) -> None:
        """Nothing to load: the first request reaches the API."""
        _log.info(
            "elevenlabs.ready",
            base_url=self._config.base_url,
            model=self._config.model_id,
            output_format=self._config.output_format,
        )

    async def synthesize(self, text: str, voice: str | None = None) -> Speech:
        voice_id = voice or self._config.voices[0]
        if voice_id not in self._config.voices:
            raise errors.InvalidArgument(
                f"unknown ElevenLabs voice {voice_id!r}; configure it in "
                "AVATARCHAT_ELEVENLABS_VOICES"
            )
        body = await self._request(text, voice_id)
        return await asyncio.to_thread(self._speech_from, body, text)

    async def _request(self, text: str, voice_id: str) -> dict[str, Any]:
        config = self._config
        url = f"{config.base_url}/v1/text-to-speech/{voice_id}/with-timestamps"
        async with (
            self._vendor.call(timeout_s=config.timeout_s),
            self._session.post(
                url,
                params={"output_format": config.output_format},
                json={"text": text, "model_id": config.model_id},
                headers={"xi-api-key": config.api_key, "Accept": "application/json"},
            ) as response,
        ):
            raw = await response.read()
            if response.status != 200:
                raise self._vendor.status_error(response.status, raw, response.headers)
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise errors.Unavailable("ElevenLabs answered with something that is not JSON") from exc
        if not isinstance(body, dict) or not isinstance(body.get("audio_base64"), str):
            raise errors.Unavailable("ElevenLabs' answer has no audio_base64")
        return body

    def _speech_from(self, body: dict[str, Any], text: str) -> Speech:
        try:
            audio = base64.b64decode(body["audio_base64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise errors.Unavailable("ElevenLabs' audio_base64 is not valid base64") from exc
        fmt = self._config.output_format
        if fmt.startswith("pcm_"):
            if len(audio) % 2:
                audio = audio[:-1]
            pcm = np.frombuffer(audio, dtype="<i2").astype(np.int16)
            sample_rate = int(fmt.split("_")[1])
        else:
            pcm, sample_rate = decode_audio(audio)
        if pcm.size == 0:
            raise errors.Unavailable("ElevenLabs returned no audio")
        alignment = body.get("alignment") or body.get("normalized_alignment")
        chars = parse_alignment(alignment) if alignment else ()
        return Speech(pcm=pcm, sample_rate=sample_rate, text=text, chars=chars)


def parse_alignment(alignment: Any) -> tuple[CharSpan, ...]:
    """``{characters, character_start_times_seconds, character_end_times_seconds}`` → spans."""
    try:
        characters = alignment["characters"]
        starts = alignment["character_start_times_seconds"]
        ends = alignment["character_end_times_seconds"]
        if not (len(characters) == len(starts) == len(ends)):
            raise ValueError("the three alignment arrays differ in length")
        return tuple(
            CharSpan(char=str(c), start_ms=float(s) * 1000.0, end_ms=max(s, e) * 1000.0)
            for c, s, e in zip(characters, map(float, starts), map(float, ends), strict=True)
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.Unavailable(f"ElevenLabs' alignment is malformed ({exc})") from exc


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Decodes compressed audio (MP3 and the like) to mono int16 PCM and its sample rate."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=stream.rate)
            chunks = [
                out.to_ndarray().reshape(-1)
                for frame in container.decode(stream)
                for out in resampler.resample(frame)
            ]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
            rate = stream.rate
    except (av.error.FFmpegError, IndexError) as exc:
        raise errors.Unavailable(f"ElevenLabs' audio could not be decoded ({exc})") from exc
    pcm = np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)
    return pcm, int(rate)
