"""Voice input: audio frames from the socket streamed to ``SttService.StreamTranscribe``.

One ``VoiceStream`` lives from ``audio.start`` until its last transcript. Audio is forwarded
while it arrives, so the transcript is nearly ready when the user stops.

- push-to-talk: the server says ``speech.start`` at the first audio frame (which also
  interrupts a running reply) and ``speech.end`` at ``audio.end``; one final transcript follows.
- hands-free: the stt service's voice activity detection decides; every ``speech_started``
  becomes ``speech.start`` (and a barge-in), every non-empty final transcript a turn.

A failure sends one error frame and ends the stream; later audio frames up to ``audio.end``
are dropped quietly, and the session carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from avatarchat import log
from avatarchat.v1 import stt_pb2

from .config import EdgeConfig
from .protocol import AudioStart, ErrorCode, error
from .sessions import Session, new_turn_id
from .upstream import UpstreamError, Upstreams, metadata

_log = log.get("avatarchat.edge.voice")

ENCODINGS = {
    "pcm_s16le": stt_pb2.AUDIO_ENCODING_PCM_S16LE,
    "wav": stt_pb2.AUDIO_ENCODING_WAV,
    "webm": stt_pb2.AUDIO_ENCODING_WEBM,
    "ogg": stt_pb2.AUDIO_ENCODING_OGG,
    "mp3": stt_pb2.AUDIO_ENCODING_MP3,
}

Send = Callable[[dict[str, Any]], Awaitable[bool]]
OnSpeech = Callable[[], Awaitable[None]]
OnFinal = Callable[[str, str], Awaitable[None]]


class VoiceStream:
    def __init__(
        self,
        start: AudioStart,
        *,
        session: Session,
        config: EdgeConfig,
        upstreams: Upstreams,
        send: Send,
        on_speech: OnSpeech,
        on_final: OnFinal,
    ) -> None:
        self._start = start
        self._session = session
        self._config = config
        self._upstreams = upstreams
        self._send = send
        self._on_speech = on_speech
        self._on_final = on_final
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._timeout: asyncio.Timeout | None = None
        self.bytes = 0
        self.accepting = True  # between audio.start and audio.end, unless it failed
        self.failed = False

    @property
    def hands_free(self) -> bool:
        return self._start.mode == "hands-free"

    @property
    def finished(self) -> bool:
        return self._task is not None and self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"voice-{self._session.id}")

    async def feed(self, chunk: bytes) -> None:
        if not self.accepting or not chunk:
            return
        first = self.bytes == 0
        self.bytes += len(chunk)
        if not self.hands_free and self.bytes > self._config.max_audio_bytes:
            await self._fail(
                ErrorCode.AUDIO_TOO_LONG,
                f"push-to-talk audio is limited to {self._config.max_audio_bytes} bytes; "
                "send audio.end sooner",
            )
            return
        self._queue.put_nowait(chunk)
        if first and not self.hands_free:
            await self._send({"type": "speech.start", "utterance": 0})
            await self._on_speech()

    async def end(self) -> None:
        """``audio.end``: no more audio; the final transcript follows."""
        if not self.accepting:
            return
        self.accepting = False
        if self.bytes == 0:
            await self._fail(
                ErrorCode.EMPTY_AUDIO, "no audio arrived between audio.start and audio.end"
            )
            return
        if not self.hands_free:
            await self._send({"type": "speech.end", "utterance": 0})
        self._queue.put_nowait(None)
        if self._timeout is not None:
            loop = asyncio.get_running_loop()
            self._timeout.reschedule(loop.time() + self._config.stt_final_timeout_s)

    def when_finished(self, callback: Callable[[VoiceStream], object]) -> None:
        """Calls ``callback(self)`` once the stream has delivered its last transcript."""
        if self._task is not None:
            self._task.add_done_callback(lambda _task: callback(self))

    async def abort(self) -> None:
        self.accepting = False
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _fail(self, code: ErrorCode, message: str) -> None:
        self.accepting = False
        self.failed = True
        await self._send(error(code, message))
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def _run(self) -> None:
        try:
            async with asyncio.timeout(None) as self._timeout:
                await self._transcribe()
        except TimeoutError:
            await self._fail(
                ErrorCode.STT_TIMEOUT,
                f"no transcript came within {self._config.stt_final_timeout_s:g} s after audio.end",
            )
        except grpc.aio.AioRpcError as exc:
            failure = self._upstreams.stt.error(exc)
            code = ErrorCode.BAD_AUDIO if failure.code == ErrorCode.STT_REJECTED else failure.code
            await self._fail(code, failure.message)
        except UpstreamError as exc:
            await self._fail(exc.code, exc.message)
        except Exception:  # a bug: this stream ends, the session carries on
            _log.exception("voice.crashed", session_id=self._session.id)
            await self._fail(ErrorCode.INTERNAL, "the audio stream failed; see the server log")
        finally:
            self.accepting = False

    async def _transcribe(self) -> None:
        stub = await self._upstreams.stt_stub()
        call = stub.StreamTranscribe(
            self._requests(),
            timeout=self._config.stt_stream_deadline_s,
            wait_for_ready=False,
            metadata=metadata(self._session.id),
        )
        try:
            async for event in call:
                await self._event(event)
        finally:
            call.cancel()

    async def _requests(self) -> AsyncIterator[stt_pb2.StreamTranscribeRequest]:
        start = self._start
        yield stt_pb2.StreamTranscribeRequest(
            config=stt_pb2.StreamConfig(
                format=stt_pb2.AudioFormat(
                    encoding=ENCODINGS[start.format], sample_rate_hz=start.sample_rate or 0
                ),
                language=start.language or self._config.language,
                vad=self.hands_free,
            )
        )
        while (chunk := await self._queue.get()) is not None:
            yield stt_pb2.StreamTranscribeRequest(audio=chunk)

    async def _event(self, event: stt_pb2.TranscriptEvent) -> None:
        kind = event.WhichOneof("event")
        utterance = event.utterance
        if kind == "speech_started" and self.hands_free:
            await self._send({"type": "speech.start", "utterance": utterance})
            await self._on_speech()
        elif kind == "speech_ended" and self.hands_free:
            await self._send({"type": "speech.end", "utterance": utterance})
        elif kind == "partial":
            await self._send(
                {"type": "transcript.partial", "text": event.partial.text, "utterance": utterance}
            )
        elif kind == "final":
            await self._final(event.final.text.strip(), utterance)

    async def _final(self, text: str, utterance: int) -> None:
        if not text:
            await self._send(
                {"type": "transcript.final", "turn_id": None, "text": "", "utterance": utterance}
            )
            return
        if len(text) > self._config.max_text_chars:
            await self._send(
                error(
                    ErrorCode.TEXT_TOO_LONG,
                    f"the transcript has {len(text)} characters; the limit is "
                    f"{self._config.max_text_chars}",
                )
            )
            return
        turn_id = new_turn_id()
        await self._send(
            {"type": "transcript.final", "turn_id": turn_id, "text": text, "utterance": utterance}
        )
        await self._on_final(text, turn_id)
