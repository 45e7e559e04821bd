"""The audio side of one connection: ``audio.start``, binary frames and ``audio.end``.

At most one stream is open (recording). After ``audio.end`` a stream may still be finishing
(waiting for its final transcript) while the next one opens. Binary frames without an open
stream get one ``no_audio_stream`` error per run, not one per frame; frames of a stream that
already failed are dropped quietly until its ``audio.end``.
"""

from __future__ import annotations

from .config import EdgeConfig
from .limits import retry_after_ms
from .protocol import AudioStart, ErrorCode, ProtocolError
from .sessions import Session
from .upstream import UpstreamError, Upstreams
from .voice import OnFinal, OnSpeech, Send, VoiceStream


class AudioInput:
    def __init__(
        self,
        *,
        config: EdgeConfig,
        upstreams: Upstreams,
        send: Send,
        on_speech: OnSpeech,
        on_final: OnFinal,
    ) -> None:
        self._config = config
        self._upstreams = upstreams
        self._send = send
        self._on_speech = on_speech
        self._on_final = on_final
        self._open: VoiceStream | None = None
        self._finishing: set[VoiceStream] = set()
        self._stray_reported = False

    @property
    def busy(self) -> bool:
        return self._open is not None or bool(self._finishing)

    async def start(self, message: AudioStart, session: Session) -> None:
        if self._open is not None and self._open.accepting:
            raise ProtocolError(
                ErrorCode.AUDIO_ALREADY_STARTED,
                "an audio stream is already open; send audio.end before starting another",
            )
        if self._open is not None:  # one that failed and was never ended by audio.end
            await self._open.abort()
            self._open = None
        if not self._upstreams.stt.deployed:
            raise UpstreamError(
                ErrorCode.STT_UNAVAILABLE,
                "voice input is not available here (AVATARCHAT_STT_ADDR is empty); type instead",
            )
        self._stray_reported = False
        self._open = VoiceStream(
            message,
            session=session,
            config=self._config,
            upstreams=self._upstreams,
            send=self._send,
            on_speech=self._on_speech,
            on_final=self._on_final,
        )
        self._open.start()

    async def frame(self, data: bytes, session: Session) -> None:
        stream = self._open
        if stream is not None and stream.accepting:
            wait_s = session.audio_rate.take()
            if not wait_s:
                await stream.feed(data)
                return
            await stream.abort()
            self._open = None
            self._stray_reported = True
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"too many audio frames: at most {self._config.audio_frames_per_s:g} per "
                "second; the audio stream was stopped, start a new one with audio.start",
                retry_after_ms=retry_after_ms(wait_s),
            )
        if stream is not None and stream.failed:
            return  # it already failed with an error frame; drop until audio.end
        if not self._stray_reported:
            self._stray_reported = True
            raise ProtocolError(
                ErrorCode.NO_AUDIO_STREAM,
                "binary frames carry audio and need an audio.start first; "
                "further audio frames are dropped until then",
            )

    async def end(self) -> None:
        stream, self._open = self._open, None
        if stream is None:
            raise ProtocolError(ErrorCode.NO_AUDIO_STREAM, "audio.end without an audio.start")
        await stream.end()
        if not stream.finished:
            self._finishing.add(stream)
            stream.when_finished(self._finishing.discard)

    async def close(self) -> None:
        """Aborts every stream, open or finishing."""
        streams = [s for s in (self._open, *self._finishing) if s is not None]
        self._open = None
        self._finishing.clear()
        for stream in streams:
            await stream.abort()
