"""One ``StreamTranscribe`` call after its config message: audio in, events out, concurrently.

    requests ──reader task──▶ decoder (PCM inline, containers in a demux thread)
                                  └──16 kHz blocks──▶ pipeline thread (VAD, recogniser)
                                                           └──events──▶ this generator

A reader task takes audio chunks off the request stream while the generator yields events, so
transcripts flow back while the client is still sending. Whatever fails first, the reader, the
decoder or the recogniser, ends the call with that error; the other parts are aborted. The
one exception is audio past the duration limit: the audio up to the cut is still recognised,
its ``final`` is sent, and then the call ends with the limit's INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from avatarchat.errors import InvalidArgument
from avatarchat.v1 import stt_pb2
from avatarchat_stt.audio_format import AudioSpec, AudioTooLong, Limits
from avatarchat_stt.backends.base import Recognizer
from avatarchat_stt.decoding import streaming_decoder
from avatarchat_stt.pipeline import StreamOptions, StreamPipeline

MAX_CHUNK_BYTES = 1024 * 1024
# Back-pressure: stop reading requests while this much is waiting (client faster than we are).
MAX_UNREAD_BYTES = 256 * 1024
BACKPRESSURE_POLL_S = 0.02
# After an error, how long to keep reading (and dropping) what the client is still sending.
DRAIN_S = 2.0

_Item: TypeAlias = stt_pb2.TranscriptEvent | BaseException | None
_Requests: TypeAlias = AsyncIterator[stt_pb2.StreamTranscribeRequest]


async def drain(requests: _Requests, timeout_s: float = DRAIN_S) -> None:
    """Reads and drops what the client is still sending, until it half-closes or ``timeout_s``.

    A grpc.aio client that is still writing when the call ends may report INTERNAL ("Internal
    error from Core") instead of the status the server sent (grpc/grpc#36066). Ending the call
    after the client has finished writing lets it see the real code and message.
    """
    try:
        async with asyncio.timeout(timeout_s):
            async for _ in requests:
                pass
    except (TimeoutError, grpc.RpcError, asyncio.InvalidStateError):
        pass


class StreamSession:
    def __init__(
        self,
        *,
        spec: AudioSpec,
        limits: Limits,
        recognizer: Recognizer,
        options: StreamOptions,
        check_bytes: bool,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[_Item] = asyncio.Queue()
        self._limits = limits
        self._max_backlog_ms = options.max_utterance_ms
        self._check_bytes = check_bytes
        self._pipeline = StreamPipeline(recognizer, options, self._post)
        self._decoder = streaming_decoder(spec, limits, self._pipeline.put, self._decoder_done)
        self._decoder_started = False
        self._discarding = False
        self._cut: AudioTooLong | None = None  # the limit was reached; finishing up to it
        self.bytes_received = 0
        self._pipeline.start()  # from here on the pipeline owns (and closes) the recogniser

    def _post(self, item: _Item) -> None:
        """Thread-safe hand-over to the event loop."""
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, item)
        except RuntimeError:  # the loop has closed: the call is long gone
            pass

    def _decoder_done(self, error: BaseException | None) -> None:
        if error is not None:
            self._post(error)
        else:
            self._pipeline.finish()

    async def run(self, requests: _Requests) -> AsyncIterator[stt_pb2.TranscriptEvent]:
        reader = asyncio.create_task(self._read(requests), name="stt-stream-reader")
        reader.add_done_callback(self._reader_done)
        try:
            while True:
                item = await self._events.get()
                if isinstance(item, AudioTooLong) and self._cut is None:
                    self._cut_at_limit(item)
                    continue
                if item is None:
                    if self._cut is not None:
                        await self._stop_and_drain(reader, requests)
                        raise self._cut
                    return
                if isinstance(item, BaseException):
                    await self._stop_and_drain(reader, requests)
                    raise item
                yield item
        finally:
            reader.cancel()
            self.abort()

    def _cut_at_limit(self, error: AudioTooLong) -> None:
        """Stops taking audio and lets the pipeline finish what it has (its final follows)."""
        self._cut = error
        self._discarding = True
        self._decoder.abort()
        self._pipeline.finish()

    async def _stop_and_drain(self, reader: asyncio.Task[None], requests: _Requests) -> None:
        self.abort()
        self._discarding = True
        if reader.done():
            await drain(requests)
        else:  # the reader goes on, dropping what it reads
            await asyncio.wait({reader}, timeout=DRAIN_S)

    def abort(self) -> None:
        """Stops the decoder and the pipeline; idempotent, and harmless after a clean end."""
        self._decoder.abort()
        self._pipeline.abort()

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._events.put_nowait(task.exception())

    async def _read(self, requests: _Requests) -> None:
        async for message in requests:
            if self._discarding:
                continue
            kind = message.WhichOneof("payload")
            if kind == "config":
                raise InvalidArgument(
                    "only the first message may carry config; later ones must carry audio"
                )
            if kind is None:
                raise InvalidArgument("each message must carry config (first) or audio")
            self.feed(message.audio)
            # Polls only while the client outpaces decoding; the backlog drains in two other
            # threads, and a poll keeps them free of event-loop hooks.
            while self._backlogged() and not self._discarding:  # noqa: ASYNC110
                await asyncio.sleep(BACKPRESSURE_POLL_S)
        if self._discarding:
            return
        if self.bytes_received == 0:
            self._pipeline.finish()  # empty audio: an empty transcript, nothing to decode
        else:
            self._decoder.close()

    def _backlogged(self) -> bool:
        return (
            self._decoder.buffered > MAX_UNREAD_BYTES
            or self._pipeline.backlog_ms > self._max_backlog_ms
        )

    def feed(self, chunk: bytes) -> None:
        if len(chunk) > MAX_CHUNK_BYTES:
            raise InvalidArgument(
                f"audio chunks must be at most {MAX_CHUNK_BYTES} bytes, got {len(chunk)}; "
                "send smaller chunks"
            )
        if not chunk:
            return
        self.bytes_received += len(chunk)
        if self._check_bytes:
            self._limits.check_bytes(self.bytes_received)
        if not self._decoder_started:
            self._decoder_started = True
            self._decoder.start()
        self._decoder.feed(chunk)
