"""Encoded audio in, 16 kHz mono int16 out, incrementally, with PyAV.

Raw PCM is converted as each chunk arrives. Containers (WAV, WebM, Ogg, MP3) are read by an
FFmpeg demuxer running in a thread of their own, from a buffer that grows as chunks arrive: the
demuxer blocks until the bytes it needs are there, so frames come out while the client is still
sending, and the end of the input only costs the last packet.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator

import av
import numpy as np

from avatarchat import log
from avatarchat.errors import InvalidArgument, ServiceError
from avatarchat_stt.audio_format import TARGET_RATE, AudioSpec, Limits

_log = log.get("avatarchat_stt.decoding")

AudioSink = Callable[[np.ndarray], None]
DoneSink = Callable[[BaseException | None], None]

# Small probe sizes so a stream opens after its header instead of after 5 s of audio.
_DEMUX_OPTIONS = {"probesize": "4096", "analyzeduration": "100000"}


def _resampler() -> av.AudioResampler:
    return av.AudioResampler(format="s16", layout="mono", rate=TARGET_RATE)


def _samples(frames: list[av.AudioFrame]) -> Iterator[np.ndarray]:
    for frame in frames:
        block = frame.to_ndarray().reshape(-1)
        if block.size:
            yield block.astype(np.int16, copy=False)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__


def undecodable(spec: AudioSpec, exc: BaseException) -> InvalidArgument:
    return InvalidArgument(
        f"could not decode the audio as {spec.label}: {_reason(exc)}; "
        "check the declared format and that the data is complete"
    )


def iter_container(
    source: io.IOBase, spec: AudioSpec, limits: Limits, *, reject_declared: bool = True
) -> Iterator[np.ndarray]:
    """Demuxes and decodes a container, yielding 16 kHz mono blocks as packets complete.

    With ``reject_declared``, a container whose header declares more than the limit is refused
    before anything is decoded; a stream instead decodes up to the cut."""
    try:
        container = av.open(source, mode="r", format=spec.demuxer, options=_DEMUX_OPTIONS)
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise undecodable(spec, exc) from exc
    with container:
        if not container.streams.audio:
            raise InvalidArgument(f"the {spec.label} data has no audio track")
        if reject_declared and container.duration is not None and container.duration > 0:
            limits.check_seconds(container.duration / av.time_base)  # declared: reject early
        stream = container.streams.audio[0]
        resampler = _resampler()
        try:
            for frame in container.decode(stream):
                yield from _samples(resampler.resample(frame))
            yield from _samples(resampler.resample(None))
        except (av.FFmpegError, ValueError) as exc:
            raise undecodable(spec, exc) from exc


class ByteStream(io.RawIOBase):
    """A read-only file whose contents arrive over time; reads block until bytes or the end."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()
        self._ended = False
        self._cond = threading.Condition()

    def readable(self) -> bool:
        return True

    @property
    def buffered(self) -> int:
        """Bytes written and not yet read."""
        return len(self._buffer)

    def write_chunk(self, data: bytes) -> None:
        with self._cond:
            if self._ended:  # the reader has gone (or the input was closed): drop
                return
            self._buffer += data
            self._cond.notify_all()

    def end(self) -> None:
        """No more bytes will come: reads return what is left, then EOF."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def abort(self) -> None:
        """Drops what is buffered and ends the stream at once."""
        with self._cond:
            self._buffer.clear()
            self._ended = True
            self._cond.notify_all()

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def,override]
        with self._cond:
            while not self._buffer and not self._ended:
                self._cond.wait()
            count = min(len(buffer), len(self._buffer))
            buffer[:count] = self._buffer[:count]
            del self._buffer[:count]
            return count


class PcmDecoder:
    """Raw s16le at any rate, interleaved channels mixed down: converted and resampled
    synchronously in ``feed``."""

    def __init__(self, spec: AudioSpec, limits: Limits, on_audio: AudioSink, on_done: DoneSink):
        self._rate = spec.sample_rate
        self._channels = spec.channels
        self._limits = limits
        self._on_audio = on_audio
        self._on_done = on_done
        self._carry = b""
        self._resampler = _resampler() if self._rate != TARGET_RATE else None
        self._samples_out = 0

    def start(self) -> None:
        pass

    @property
    def buffered(self) -> int:
        return 0

    def feed(self, data: bytes) -> None:
        data = self._carry + data
        frame_bytes = 2 * self._channels
        usable = len(data) - len(data) % frame_bytes
        self._carry = data[usable:]
        if usable:
            pcm = np.frombuffer(data[:usable], dtype="<i2")
            if self._channels > 1:
                mixed = pcm.reshape(-1, self._channels).astype(np.int32).mean(axis=1)
                pcm = np.round(mixed).astype(np.int16)
            self._emit(self._convert(pcm))

    def close(self) -> None:
        if self._resampler is not None:
            self._emit(list(_samples(self._resampler.resample(None))))
        self._on_done(None)

    def abort(self) -> None:
        pass

    def _convert(self, pcm: np.ndarray) -> list[np.ndarray]:
        if self._resampler is None:
            return [pcm.astype(np.int16)]
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate
        return list(_samples(self._resampler.resample(frame)))

    def _emit(self, blocks: list[np.ndarray]) -> None:
        for block in blocks:
            part = self._limits.within(self._samples_out, block)
            self._samples_out += part.size
            self._on_audio(part)
            if part.size < block.size:
                self._limits.check_samples(self._samples_out + block.size - part.size)


class ContainerDecoder:
    """A demuxer thread over a ``ByteStream``; errors are reported through ``on_done``."""

    def __init__(self, spec: AudioSpec, limits: Limits, on_audio: AudioSink, on_done: DoneSink):
        self._spec = spec
        self._limits = limits
        self._on_audio = on_audio
        self._on_done = on_done
        self._input = ByteStream()
        self._aborted = False
        self._thread = threading.Thread(
            target=self._run, name=f"stt-demux-{spec.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    @property
    def buffered(self) -> int:
        """Encoded bytes the demuxer has not read yet."""
        return self._input.buffered

    def feed(self, data: bytes) -> None:
        self._input.write_chunk(data)

    def close(self) -> None:
        self._input.end()

    def abort(self) -> None:
        self._aborted = True
        self._input.abort()

    def _run(self) -> None:
        error: BaseException | None = None
        samples = 0
        try:
            for block in iter_container(
                self._input, self._spec, self._limits, reject_declared=False
            ):
                if self._aborted:
                    return
                part = self._limits.within(samples, block)
                samples += part.size
                self._on_audio(part)
                if part.size < block.size:
                    self._limits.check_samples(samples + block.size - part.size)
        except ServiceError as exc:
            error = exc
        except Exception as exc:  # PyAV can raise odd things on hostile input
            _log.warning("decode.unexpected_error", format=self._spec.name, error=repr(exc))
            error = undecodable(self._spec, exc)
        finally:
            self._input.abort()  # a writer must never block on a reader that has gone
        if not self._aborted:
            self._on_done(error)


StreamingDecoder = PcmDecoder | ContainerDecoder


def streaming_decoder(
    spec: AudioSpec, limits: Limits, on_audio: AudioSink, on_done: DoneSink
) -> StreamingDecoder:
    if spec.is_pcm:
        return PcmDecoder(spec, limits, on_audio, on_done)
    return ContainerDecoder(spec, limits, on_audio, on_done)


def decode_all(data: bytes, spec: AudioSpec, limits: Limits) -> np.ndarray:
    """A whole payload to 16 kHz mono int16, stopping as soon as it is over the limits."""
    limits.check_bytes(len(data))
    blocks: list[np.ndarray] = []
    if spec.is_pcm:
        limits.check_seconds(len(data) / (2 * spec.channels) / spec.sample_rate)
        decoder = PcmDecoder(spec, limits, blocks.append, lambda _: None)
        decoder.feed(data)
        decoder.close()
    else:
        samples = 0
        try:
            for block in iter_container(io.BytesIO(data), spec, limits):
                samples += block.size
                limits.check_samples(samples)
                blocks.append(block)
        except ServiceError:
            raise
        except Exception as exc:
            raise undecodable(spec, exc) from exc
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int16)
