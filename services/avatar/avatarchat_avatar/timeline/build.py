"""The clip timeline: visemes, gestures and words in milliseconds from the start of the audio.

This is what a client animates the rig from (``SpeechReady.timeline``) and what the video
renderer draws; the format is documented in docs/timeline.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from avatarchat.inline_tags import Tag
from avatarchat.v1 import events_pb2
from avatarchat_avatar.speech import Speech
from avatarchat_avatar.timeline.gestures import plan_gestures
from avatarchat_avatar.timeline.lipsync import VisemeSpan, viseme_track
from avatarchat_avatar.timeline.words import word_timings


def build_timeline(speech: Speech, tags: Sequence[Tag] = ()) -> events_pb2.Timeline:
    """Visemes (from phonemes, else characters), gestures and words of ``speech``."""
    duration = speech.duration_ms
    words = word_timings(speech)
    gestures = plan_gestures(words, duration, tags, seed_text=speech.text)
    return events_pb2.Timeline(
        duration_ms=duration,
        visemes=_viseme_keys(viseme_track(speech)),
        gestures=[
            events_pb2.GestureKey(
                start_ms=int(g.start_ms),
                duration_ms=int(g.duration_ms),
                gesture=g.name,
                intensity=round(g.intensity, 3),
            )
            for g in gestures
        ],
        words=[
            events_pb2.WordTiming(start_ms=round(w.start_ms), end_ms=round(w.end_ms), text=w.text)
            for w in words
        ],
    )


def _viseme_keys(track: Sequence[VisemeSpan]) -> list[events_pb2.VisemeKey]:
    """Whole-millisecond keys that stay contiguous and drop what rounds to nothing."""
    keys: list[events_pb2.VisemeKey] = []
    for span in track:
        start = keys[-1].end_ms if keys else round(span.start_ms)
        end = round(span.end_ms)
        if end <= start:
            continue
        keys.append(
            events_pb2.VisemeKey(
                start_ms=start, end_ms=end, viseme=span.viseme, weight=round(span.weight, 3)
            )
        )
    return keys


def viseme_spans(timeline: events_pb2.Timeline) -> list[VisemeSpan]:
    """The timeline's viseme keys back as spans (for measuring and rendering)."""
    return [VisemeSpan(k.viseme, k.start_ms, k.end_ms, k.weight) for k in timeline.visemes]
