"""The WebSocket protocol, version 1: client messages, their validation, and server frames.

``parse`` turns one text frame into a typed message or raises ``ProtocolError`` with a code
from ``ErrorCode``; it never raises anything else, whatever the bytes. Unknown fields are
ignored so that newer clients work with this server. ``docs/protocol.md`` is the reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

PROTOCOL_VERSION = 1

AUDIO_FORMATS = ("pcm_s16le", "webm", "ogg", "wav", "mp3")
AUDIO_MODES = ("push-to-talk", "hands-free")
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 48000
MAX_ID_CHARS = 128


class ErrorCode(StrEnum):
    """Every ``code`` an error frame can carry."""

    # Frames the server could not accept
    BAD_JSON = "bad_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    EMPTY_TEXT = "empty_text"
    TEXT_TOO_LONG = "text_too_long"
    RATE_LIMITED = "rate_limited"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    UNKNOWN_SESSION = "unknown_session"
    SESSIONS_UNAVAILABLE = "sessions_unavailable"
    # Connection-level refusals (the socket is closed after the frame)
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN_ORIGIN = "forbidden_origin"
    FORBIDDEN_HOST = "forbidden_host"
    TOO_MANY_SESSIONS = "too_many_sessions"
    IDLE_TIMEOUT = "idle_timeout"
    SESSION_TAKEN_OVER = "session_taken_over"
    # Voice
    NO_AUDIO_STREAM = "no_audio_stream"
    AUDIO_ALREADY_STARTED = "audio_already_started"
    EMPTY_AUDIO = "empty_audio"
    AUDIO_TOO_LONG = "audio_too_long"
    BAD_AUDIO = "bad_audio"
    # Services behind the edge: <service>_unavailable, _timeout, _busy, _rejected, _error
    LLM_UNAVAILABLE = "llm_unavailable"
    LLM_TIMEOUT = "llm_timeout"
    LLM_BUSY = "llm_busy"
    LLM_REJECTED = "llm_rejected"
    LLM_ERROR = "llm_error"
    STT_UNAVAILABLE = "stt_unavailable"
    STT_TIMEOUT = "stt_timeout"
    STT_BUSY = "stt_busy"
    STT_REJECTED = "stt_rejected"
    STT_ERROR = "stt_error"
    AVATAR_UNAVAILABLE = "avatar_unavailable"
    AVATAR_TIMEOUT = "avatar_timeout"
    AVATAR_BUSY = "avatar_busy"
    AVATAR_REJECTED = "avatar_rejected"
    AVATAR_ERROR = "avatar_error"
    # A bug on the server; the session stays usable
    INTERNAL = "internal"


class ProtocolError(Exception):
    """A client frame was refused. ``code`` and ``message`` go into an error frame."""

    def __init__(self, code: ErrorCode, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra  # more fields for the error frame, e.g. retry_after_ms


# --- client messages -----------------------------------------------------------------------


@dataclass(frozen=True)
class SessionStart:
    TYPE: ClassVar[str] = "session.start"

    session_id: str | None = None
    avatar: bool | None = None
    video: bool | None = None
    protocol: int | None = None


@dataclass(frozen=True)
class Text:
    TYPE: ClassVar[str] = "text"

    text: str


@dataclass(frozen=True)
class Interrupt:
    TYPE: ClassVar[str] = "interrupt"


@dataclass(frozen=True)
class Reset:
    TYPE: ClassVar[str] = "reset"


@dataclass(frozen=True)
class Ping:
    TYPE: ClassVar[str] = "ping"

    id: str | int | None = None


@dataclass(frozen=True)
class AudioStart:
    TYPE: ClassVar[str] = "audio.start"

    format: str
    sample_rate: int | None
    mode: str
    language: str | None = None


@dataclass(frozen=True)
class AudioEnd:
    TYPE: ClassVar[str] = "audio.end"


ClientMessage = SessionStart | Text | Interrupt | Reset | Ping | AudioStart | AudioEnd
CLIENT_TYPES = tuple(
    kind.TYPE for kind in (SessionStart, Text, Interrupt, Reset, Ping, AudioStart, AudioEnd)
)


def parse(raw: str, *, max_text_chars: int) -> ClientMessage:
    """Parses one text frame. Raises ``ProtocolError`` for anything it cannot accept."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.BAD_JSON, "the frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, 'a frame must be a JSON object with a "type"')
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, 'the frame has no string "type" field')
    if kind == Text.TYPE:
        return Text(_text(data, max_text_chars))
    if kind == SessionStart.TYPE:
        return SessionStart(
            session_id=_optional_id(data, "session_id"),
            avatar=_optional(data, "avatar", bool),
            video=_optional(data, "video", bool),
            protocol=_optional(data, "protocol", int),
        )
    if kind == Interrupt.TYPE:
        return Interrupt()
    if kind == Reset.TYPE:
        return Reset()
    if kind == Ping.TYPE:
        ping_id = data.get("id")
        return Ping(ping_id if isinstance(ping_id, str | int) and len(str(ping_id)) <= 64 else None)
    if kind == AudioStart.TYPE:
        return _audio_start(data)
    if kind == AudioEnd.TYPE:
        return AudioEnd()
    shown = kind if len(kind) <= 40 else kind[:40] + "…"
    raise ProtocolError(
        ErrorCode.UNKNOWN_TYPE,
        f"unknown message type {shown!r}; expected one of {', '.join(CLIENT_TYPES)}",
    )


def _text(data: dict[str, Any], max_chars: int) -> str:
    text = data.get("text")
    if not isinstance(text, str):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, '"text" must be a string')
    _require_utf8("text", text)
    if not text.strip():
        raise ProtocolError(ErrorCode.EMPTY_TEXT, "the text is empty; type something to say")
    if len(text) > max_chars:
        raise ProtocolError(
            ErrorCode.TEXT_TOO_LONG,
            f"the text has {len(text)} characters; the limit is {max_chars}",
        )
    return text


def _audio_start(data: dict[str, Any]) -> AudioStart:
    fmt = data.get("format")
    if fmt not in AUDIO_FORMATS:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f'"format" must be one of {", ".join(AUDIO_FORMATS)}',
        )
    mode = data.get("mode", "push-to-talk")
    if mode not in AUDIO_MODES:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f'"mode" must be one of {", ".join(AUDIO_MODES)}'
        )
    rate = _optional(data, "sample_rate", int)
    if fmt == "pcm_s16le" and rate is None:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, 'raw pcm_s16le audio needs "sample_rate" (8000-48000)'
        )
    if rate is not None and not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f'"sample_rate" must be {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz, got {rate}',
        )
    language = _optional(data, "language", str)
    if language is not None and not (
        0 < len(language) <= 16 and all(c.isascii() and (c.isalnum() or c == "-") for c in language)
    ):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, '"language" must be a tag such as "en"')
    return AudioStart(format=fmt, sample_rate=rate, mode=mode, language=language)


def _optional(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if value is None:
        return None
    # bool is an int in Python; never accept one for the other.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f'"{name}" must be a {_TYPE_NAMES[kind]}')
    return value


_TYPE_NAMES = {bool: "boolean", int: "integer", str: "string"}


def _optional_id(data: dict[str, Any], name: str) -> str | None:
    value = _optional(data, name, str)
    if value is None:
        return None
    if not (0 < len(value) <= MAX_ID_CHARS) or not all(
        c.isascii() and (c.isalnum() or c in "_-") for c in value
    ):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"\"{name}\" must be 1-{MAX_ID_CHARS} letters, digits, '_' or '-'",
        )
    return value


def _require_utf8(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f'"{name}" contains an unpaired surrogate'
        ) from None


# --- server frames -------------------------------------------------------------------------

SERVER_TYPES = (
    "session",
    "reply.delta",
    "reply.done",
    "reply.interrupted",
    "reset.done",
    "pong",
    "error",
    "clip.speech",
    "clip.ready",
    "clip.failed",
    "speech.start",
    "speech.end",
    "transcript.partial",
    "transcript.final",
)


def error(code: ErrorCode, message: str, **extra: Any) -> dict[str, Any]:
    """An error frame. ``extra`` adds context such as ``turn_id`` or ``retry_after_ms``."""
    return {"type": "error", "code": str(code), "message": message, **extra}
