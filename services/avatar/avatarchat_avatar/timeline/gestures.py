"""The gesture planner: from the words, their timings and inline tags to timed gestures.

Rules (each is one function below, documented in docs/timeline.md):

- a greeting or farewell gets a wave and a smile;
- a question gets a head tilt, and raised brows towards its end;
- stressed words (ALL CAPS, intensifiers such as "really" or "very", the key word of an
  exclamation, ``*emphasis*``) get a beat of the right hand; caps also flash the brows;
- yes and no get a nod or a shake;
- enumerations ("first, ... second, ...", "red, green and blue") get counting on the left hand,
  and explanation phrases ("for example", "such as", "there are") get open hands;
- positive words ("great", "glad", "thanks") get a smile;
- blinks are planned all the time (breathing and small head motion are procedural, see
  :mod:`avatarchat_avatar.rendering.motion`).

Inline tags win over rules when they compete for the same arm or for the head.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from avatarchat.inline_tags import Tag
from avatarchat_avatar.timeline.catalogue import CHANNELS, COUNT_GESTURES, DURATION_MS, LEAD_MS
from avatarchat_avatar.timeline.gesture_rules import RULES, Cue, tagged
from avatarchat_avatar.timeline.words import Word

RULE_PRIORITY = ("wave", *COUNT_GESTURES, "shrug", "open_hands", "nod", "shake", "beat")
OVERLAP_MARGIN_MS = 80.0
BLINK_FIRST_MS = (300.0, 1500.0)
BLINK_GAP_MS = (2200.0, 4800.0)


@dataclass(frozen=True)
class Gesture:
    """A planned gesture; ``tagged`` marks those asked for inline, which win conflicts."""

    name: str
    start_ms: float
    duration_ms: float
    intensity: float = 1.0
    tagged: bool = False

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.duration_ms


def plan_gestures(
    words: Sequence[Word], duration_ms: float, tags: Sequence[Tag] = (), *, seed_text: str = ""
) -> list[Gesture]:
    """All gestures of one clip, fitted into ``[0, duration_ms]`` and sorted by start."""
    cues: list[Cue] = [cue for rule in RULES for cue in rule(words)]
    cues.extend(tagged(words, tags))
    planned = [_place(cue, words, duration_ms) for cue in cues]
    planned = _without_conflicts(planned)
    planned = _merge_overlapping(planned, names=("smile", "head_tilt", "brow_raise"))
    planned.extend(_blinks(duration_ms, seed_text or " ".join(w.text for w in words)))
    fitted = [g for g in (_fit(g, duration_ms) for g in planned) if g is not None]
    return sorted(fitted, key=lambda g: (g.start_ms, g.name))


def _place(cue: Cue, words: Sequence[Word], duration_ms: float) -> Gesture:
    """Turns a cue (a gesture at a word, or at the end) into a timed gesture."""
    duration = cue.duration_ms or DURATION_MS[cue.name]
    if cue.at_ms is not None:
        start = cue.at_ms
    elif cue.word is not None:
        start = words[cue.word].start_ms - LEAD_MS[cue.name]
    else:
        start = duration_ms - duration
    return Gesture(cue.name, start, duration, cue.intensity, cue.tagged)


def _without_conflicts(gestures: list[Gesture]) -> list[Gesture]:
    """Keeps, channel by channel, tagged gestures first, then rules in priority order."""

    def rank(g: Gesture) -> tuple[int, int, float]:
        order = RULE_PRIORITY.index(g.name) if g.name in RULE_PRIORITY else len(RULE_PRIORITY)
        return (0 if g.tagged else 1, order, g.start_ms)

    kept: list[Gesture] = []
    for gesture in sorted(gestures, key=rank):
        channels = CHANNELS.get(gesture.name, ())
        clash = any(
            set(channels) & set(CHANNELS.get(other.name, ()))
            and not {gesture.name, other.name} <= set(COUNT_GESTURES)
            and gesture.start_ms < other.end_ms + OVERLAP_MARGIN_MS
            and other.start_ms < gesture.end_ms + OVERLAP_MARGIN_MS
            for other in kept
        )
        if not clash:
            kept.append(gesture)
    return kept


def _merge_overlapping(gestures: list[Gesture], names: Sequence[str]) -> list[Gesture]:
    """Joins overlapping gestures of the same additive kind (two smiles make one longer)."""
    others = [g for g in gestures if g.name not in names]
    for name in names:
        merged: list[Gesture] = []
        for g in sorted((g for g in gestures if g.name == name), key=lambda g: g.start_ms):
            if merged and g.start_ms <= merged[-1].end_ms:
                last = merged[-1]
                merged[-1] = replace(
                    last,
                    duration_ms=max(last.end_ms, g.end_ms) - last.start_ms,
                    intensity=max(last.intensity, g.intensity),
                    tagged=last.tagged or g.tagged,
                )
            else:
                merged.append(g)
        others.extend(merged)
    return others


def _blinks(duration_ms: float, seed_text: str) -> list[Gesture]:
    """Idle blinks every 2.2-4.8 s, pseudo-random but the same for the same text."""
    rng = random.Random(zlib.crc32(seed_text.encode()))
    blinks: list[Gesture] = []
    time = rng.uniform(*BLINK_FIRST_MS)
    while time + DURATION_MS["blink"] <= duration_ms:
        blinks.append(Gesture("blink", time, DURATION_MS["blink"], 1.0))
        time += rng.uniform(*BLINK_GAP_MS)
    return blinks


def _fit(gesture: Gesture, duration_ms: float) -> Gesture | None:
    """Moves a gesture inside the clip, or trims its start when most of it is left.

    Trimming keeps the end where the planner put it (counts rely on that to hand over);
    a gesture that would lose more than 30 % is moved instead. Gestures longer than the clip
    are shortened to it.
    """
    if duration_ms <= 0:
        return None
    start, duration = gesture.start_ms, gesture.duration_ms
    if start < 0 and duration + start >= 0.7 * duration:
        start, duration = 0.0, duration + start
    duration = min(duration, duration_ms)
    start = min(max(start, 0.0), duration_ms - duration)
    return replace(gesture, start_ms=round(start), duration_ms=round(duration))
