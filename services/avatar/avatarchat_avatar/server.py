"""``avatarchat.v1.AvatarService``: validates requests and hands them to the clip pipeline.

Every check that can fail does so here, at request time, with INVALID_ARGUMENT and a message
that says what to fix; the pipeline then only fails for reasons a request could not foresee,
and reports those as clip-failed events.
"""

from __future__ import annotations

import unicodedata

import grpc

from avatarchat import errors, log
from avatarchat.inline_tags import parse_tags
from avatarchat.v1 import avatar_pb2, avatar_pb2_grpc
from avatarchat_avatar.pipeline import ClipPipeline

_log = log.get("avatarchat.avatar.server")

SERVICE_NAME = avatar_pb2.DESCRIPTOR.services_by_name["AvatarService"].full_name


def clean_text(text: str, max_chars: int) -> str:
    """Validates a sentence: not too long, not blank once its inline tags are out.

    Control characters become spaces. Tags follow ``avatarchat.inline_tags``, the grammar the
    edge cuts sentences with, so no sentence from the edge is only tags.
    """
    if len(text) > max_chars:
        raise errors.InvalidArgument(
            f"text is {len(text)} characters long; the limit is {max_chars} "
            "(AVATARCHAT_AVATAR_MAX_TEXT_CHARS). Send one sentence per clip."
        )
    cleaned = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text).strip()
    if not cleaned:
        raise errors.InvalidArgument("text is empty; send the sentence to speak")
    spoken, _ = parse_tags(cleaned)
    if not spoken.strip():
        raise errors.InvalidArgument("text has nothing to say once its gesture tags are removed")
    return cleaned


class AvatarServicer(avatar_pb2_grpc.AvatarServiceServicer):
    def __init__(
        self, pipeline: ClipPipeline | None, *, max_text_chars: int, worker_id: str = ""
    ) -> None:
        self._pipeline = pipeline
        self.worker_id = worker_id  # set once the heartbeat runs (app.py)
        self._max_text_chars = max_text_chars

    def attach(self, pipeline: ClipPipeline) -> None:
        """Starts serving requests with ``pipeline`` (once the backends have loaded)."""
        self._pipeline = pipeline

    @property
    def pipeline(self) -> ClipPipeline:
        if self._pipeline is None:
            raise errors.Unavailable("the avatar service is still loading; retry in a moment")
        return self._pipeline

    async def GenerateClip(
        self, request: avatar_pb2.GenerateClipRequest, context: grpc.aio.ServicerContext
    ) -> avatar_pb2.GenerateClipResponse:
        session_id = errors.require_id("session_id", request.session_id)
        turn_id = errors.require_id("turn_id", request.turn_id)
        text = clean_text(request.text, self._max_text_chars)
        pipeline = self.pipeline
        voice = request.voice.strip() or None
        if voice is not None and voice not in pipeline.speech.voices():
            known = ", ".join(pipeline.speech.voices()) or "none"
            raise errors.InvalidArgument(
                f"unknown voice {voice!r} for the {pipeline.speech.name} backend; "
                f"known voices: {known} (or leave voice empty for the default)"
            )
        record = pipeline.submit(
            session_id=session_id,
            turn_id=turn_id,
            seq=request.seq,
            text=text,
            voice=voice,
            speech_only=request.speech_only,
        )
        _log.info(
            "clip.accepted",
            clip_id=record.clip_id,
            seq=request.seq,
            chars=len(text),
            speech_only=request.speech_only,
            queued=pipeline.queued,
        )
        return avatar_pb2.GenerateClipResponse(clip_id=record.clip_id, worker_id=self.worker_id)

    async def GetClip(
        self, request: avatar_pb2.GetClipRequest, context: grpc.aio.ServicerContext
    ) -> avatar_pb2.Clip:
        clip_id = request.clip_id.strip()
        if not clip_id:
            raise errors.InvalidArgument("clip_id is required")
        if len(clip_id) > 128:
            raise errors.InvalidArgument("clip_id must be at most 128 characters")
        return self.pipeline.get(clip_id).to_proto()

    async def CancelClips(
        self, request: avatar_pb2.CancelClipsRequest, context: grpc.aio.ServicerContext
    ) -> avatar_pb2.CancelClipsResponse:
        """Cancels on this process only; edges broadcast on ``avatar.cancel.<session>`` instead,
        which reaches every process (``cancels.py``)."""
        session_id = errors.require_id("session_id", request.session_id)
        turn_id = errors.require_id("turn_id", request.turn_id) if request.turn_id else None
        cancelled = self.pipeline.cancel(session_id, turn_id)
        return avatar_pb2.CancelClipsResponse(cancelled=cancelled)
