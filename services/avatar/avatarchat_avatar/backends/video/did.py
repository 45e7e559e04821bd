"""D-ID video: the talks API, fed the speech we synthesised.

The clip's audio (the same WAV that *speech-ready* announces) is uploaded with ``POST /audios``
(multipart, field ``audio``); D-ID answers with the stored file's ``url``. The talk is created
from the configured presenter image (``AVATARCHAT_DID_SOURCE_URL``) and an audio script
``{"type": "audio", "audio_url": url}``, so the video speaks with our voice and our timing
instead of re-voicing the text. The service polls ``GET /talks/{id}`` with exponential backoff
until the talk is ``done``, ``error`` or ``rejected``, downloads ``result_url`` and returns the
MP4, which the pipeline copies into the object store before publishing clip-ready.

Authentication is D-ID's documented ``Authorization: Basic <DID_API_KEY>``, with the key sent
exactly as the D-ID Studio shows it; it is never logged, and never sent to ``result_url``
(a pre-signed storage URL).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from avatarchat import errors, log
from avatarchat.backoff import Backoff
from avatarchat.v1 import events_pb2
from avatarchat.vendor_http import Vendor, describe
from avatarchat_avatar.config import DidConfig
from avatarchat_avatar.speech import Speech
from avatarchat_avatar.video import RenderedVideo, probe_mp4

_log = log.get("avatarchat.avatar.did")

MAX_VIDEO_BYTES = 200 * 1024 * 1024
_RETRYABLE_POLL_STATUSES = {429, 500, 502, 503, 504}

DID = Vendor(
    "D-ID",
    key_setting="DID_API_KEY",
    timeout_setting="AVATARCHAT_DID_TIMEOUT_S",
    url_setting="AVATARCHAT_DID_BASE_URL",
    statuses={
        402: (
            errors.ResourceExhausted,
            "the {vendor} account has run out of credits ({detail}); top it up or switch "
            "AVATARCHAT_AVATAR_VIDEO back to local",
        )
    },
    transport_errors=(aiohttp.ClientError,),
)


class DidVideo:
    name = "did"

    def __init__(self, config: DidConfig, session: aiohttp.ClientSession) -> None:
        self._config = config
        self._session = session
        self._vendor = DID.using(base_url=config.base_url)

    async def load(self) -> None:
        """Nothing to load: the first clip reaches the API."""
        _log.info("did.ready", base_url=self._config.base_url)

    async def render(self, speech: Speech, timeline: events_pb2.Timeline) -> RenderedVideo:
        wav = await asyncio.to_thread(speech.wav_bytes)
        async with self._vendor.call(timeout_s=self._config.timeout_s, doing="making the video"):
            audio_url = await self._upload(wav)
            talk_id = await self._create(audio_url)
            talk = await self._wait(talk_id)
            data = await self._download(str(talk["result_url"]))
        video = await asyncio.to_thread(probe_mp4, data)
        duration_s = talk.get("duration")
        if isinstance(duration_s, int | float) and duration_s > 0 and not video.duration_ms:
            video = RenderedVideo(
                mp4=video.mp4,
                duration_ms=round(duration_s * 1000),
                fps=video.fps,
                width=video.width,
                height=video.height,
            )
        return video

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Basic {self._config.api_key}", "Accept": "application/json"}

    async def _upload(self, wav: bytes) -> str:
        """Stores the clip's audio with D-ID; returns the URL a talk's script refers to."""
        form = aiohttp.FormData()
        form.add_field("audio", wav, filename="clip.wav", content_type="audio/wav")
        url = await self._post("/audios", "url", "uploading the audio", data=form)
        _log.info("did.audio_uploaded", bytes=len(wav))
        return url

    async def _create(self, audio_url: str) -> str:
        body = {
            "source_url": self._config.source_url,
            "script": {"type": "audio", "audio_url": audio_url},
            "config": {"result_format": "mp4"},
        }
        talk_id = await self._post("/talks", "id", "creating the talk", json_body=body)
        _log.info("did.talk_created", talk_id=talk_id)
        return talk_id

    async def _post(
        self,
        path: str,
        field: str,
        doing: str,
        *,
        json_body: dict[str, Any] | None = None,
        data: aiohttp.FormData | None = None,
    ) -> str:
        """POSTs to ``path``; returns the string ``field`` of what D-ID made."""
        status, payload = await self._call("POST", path, json_body=json_body, data=data)
        if status not in (200, 201):
            raise self._vendor.status_error(status, payload, doing=doing)
        value = payload.get(field) if isinstance(payload, dict) else None
        if not isinstance(value, str) or not value:
            raise errors.Unavailable(f"D-ID's answer to {doing} has no {field}")
        return value

    async def _wait(self, talk_id: str) -> dict[str, Any]:
        backoff = Backoff(self._config.poll_initial_s, self._config.poll_max_s)
        started = time.perf_counter()
        while True:
            await backoff.wait()  # render's timeout bounds the polling
            status, talk = await self._call("GET", f"/talks/{talk_id}")
            if status in _RETRYABLE_POLL_STATUSES:
                _log.warning("did.poll_retry", talk_id=talk_id, http_status=status)
                continue
            if status != 200 or not isinstance(talk, dict):
                raise self._vendor.status_error(status, talk, doing=f"checking talk {talk_id}")
            state = talk.get("status")
            if state == "done":
                if not talk.get("result_url"):
                    raise errors.Unavailable(f"D-ID talk {talk_id} is done but has no result_url")
                _log.info(
                    "did.talk_done",
                    talk_id=talk_id,
                    waited_s=round(time.perf_counter() - started, 2),
                )
                return talk
            if state == "error":
                raise errors.Unavailable(
                    f"D-ID could not make the video: {_describe(talk.get('error'))}"
                )
            if state == "rejected":
                raise errors.InvalidArgument(
                    "D-ID rejected the talk (its moderation refused the image or the audio): "
                    f"{_describe(talk.get('error'))}"
                )
            if state not in ("created", "started"):
                raise errors.Unavailable(f"D-ID talk {talk_id} has an unknown status {state!r}")

    async def _call(
        self,
        method: str,
        path: str,
        json_body: dict[str, Any] | None = None,
        data: aiohttp.FormData | None = None,
    ) -> tuple[int, Any]:
        """One API request; a failure to reach D-ID is mapped by ``render``'s vendor call."""
        url = f"{self._config.base_url}{path}"
        async with self._session.request(
            method,
            url,
            json=json_body,
            data=data,
            headers=self._headers(),
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            raw = await response.read()
            try:
                payload = json.loads(raw) if raw else {}
            except ValueError:
                payload = {"description": raw[:200].decode("utf-8", "replace")}
            return response.status, payload

    async def _download(self, url: str) -> bytes:
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=120)) as response:
                if response.status != 200:
                    raise errors.Unavailable(
                        f"downloading the D-ID video failed with HTTP {response.status}"
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > MAX_VIDEO_BYTES:
                        raise errors.Unavailable("the D-ID video is larger than 200 MB")
                    chunks.append(chunk)
                return b"".join(chunks)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise errors.Unavailable(
                f"could not download the D-ID video ({type(exc).__name__})"
            ) from exc


def _describe(error: Any) -> str:
    """D-ID errors look like ``{"kind": "...", "description": "..."}``."""
    return describe(error) or "no details"
