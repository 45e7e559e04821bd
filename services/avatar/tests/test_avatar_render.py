"""The local renderer: real MP4s decoded back with PyAV, and what the frames show."""

from __future__ import annotations

import asyncio
import io
import math

import av
import numpy as np
import pytest

from avatarchat.inline_tags import parse_tags
from avatarchat.v1 import events_pb2
from avatarchat_avatar.backends.speech.piper import PiperSpeech
from avatarchat_avatar.rendering.character.geometry import MOUTH_ANCHOR
from avatarchat_avatar.rendering.compositor import Compositor
from avatarchat_avatar.rendering.motion import Animator
from avatarchat_avatar.rendering.mp4 import compositor, frame_count, render_mp4
from avatarchat_avatar.rendering.planes import to_ycbcr
from avatarchat_avatar.speech import Speech
from avatarchat_avatar.timeline.build import build_timeline
from avatarchat_avatar.timeline.catalogue import GESTURES
from avatarchat_avatar.timeline.lipsync import VISEMES

MOUTH = (
    slice(int(MOUTH_ANCHOR[1]) - 20, int(MOUTH_ANCHOR[1]) + 40),
    slice(int(MOUTH_ANCHOR[0]) - 40, int(MOUTH_ANCHOR[0]) + 40),
)
CORNER = (slice(0, 60), slice(0, 60))


def _decode(data: bytes) -> tuple[av.video.stream.VideoStream, list[np.ndarray], dict]:
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        info = {
            "duration_s": container.duration / 1_000_000,
            "fps": float(video.average_rate),
            "size": (video.codec_context.width, video.codec_context.height),
            "codec": video.codec_context.name,
            "audio_codec": audio.codec_context.name,
            "audio_rate": audio.codec_context.sample_rate,
        }
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        container.seek(0)
        samples = sum(f.samples for f in container.decode(audio=0))
    info["audio_s"] = samples / info["audio_rate"]
    return video, frames, info


def _silent(duration_ms: int, rate: int = 16000) -> Speech:
    return Speech(np.zeros(duration_ms * rate // 1000, np.int16), rate, "test")


def _timeline(
    duration_ms: int, visemes: list[tuple[str, int, int]], gestures: list[tuple[str, int, int]] = ()
) -> events_pb2.Timeline:
    return events_pb2.Timeline(
        duration_ms=duration_ms,
        visemes=[
            events_pb2.VisemeKey(viseme=v, start_ms=s, end_ms=e, weight=1.0) for v, s, e in visemes
        ],
        gestures=[
            events_pb2.GestureKey(gesture=g, start_ms=s, duration_ms=d, intensity=1.0)
            for g, s, d in gestures
        ],
    )


@pytest.fixture(scope="module")
def piper_clip() -> tuple[Speech, bytes]:
    backend = PiperSpeech()
    text, tags = parse_tags("[smile] Hello there! Could you bring me the blue box, please?")
    speech = asyncio.run(backend.synthesize(text))
    return speech, render_mp4(speech, build_timeline(speech, tags))


def test_clip_decodes_with_the_right_format_and_duration(piper_clip: tuple[Speech, bytes]) -> None:
    speech, data = piper_clip
    _, frames, info = _decode(data)
    assert info["size"] == (512, 512)
    assert info["fps"] == 25
    assert info["codec"] == "h264" and info["audio_codec"] == "aac"
    assert len(frames) == frame_count(speech.duration_ms) == math.ceil(speech.duration_ms / 40)
    assert abs(len(frames) * 40 - speech.duration_ms) < 40
    assert (
        abs(info["duration_s"] * 1000 - speech.duration_ms) <= 40 + 25
    )  # ± a frame (+ AAC priming)
    assert info["audio_rate"] == speech.sample_rate
    assert abs(info["audio_s"] * 1000 - speech.duration_ms) < 80
    assert frames[0].shape == (512, 512, 3)


def test_clip_starts_with_the_index_for_progressive_playback(
    piper_clip: tuple[Speech, bytes],
) -> None:
    _, data = piper_clip
    assert data.index(b"moov") < data.index(b"mdat")


def test_open_and_closed_visemes_differ_in_the_mouth_only() -> None:
    timeline = _timeline(1200, [("sil", 0, 400), ("aa", 400, 800), ("sil", 800, 1200)])
    _, frames, _ = _decode(render_mp4(_silent(1200), timeline))
    closed, open_, closed_again = (frames[i].astype(np.int16) for i in (4, 14, 25))
    assert np.abs(open_[MOUTH] - closed[MOUTH]).mean() > 8
    assert (
        np.abs(closed_again[MOUTH] - closed[MOUTH]).mean()
        < np.abs(open_[MOUTH] - closed[MOUTH]).mean() / 3
    )
    assert np.abs(open_[CORNER] - closed[CORNER]).mean() < 2


def test_every_viseme_draws_a_mouth_and_at_least_nine_are_distinct() -> None:
    comp = compositor()
    animator = Animator(
        _timeline(15 * 100, [(v, i * 100, (i + 1) * 100) for i, v in enumerate(VISEMES)])
    )
    mouths = []
    for i in range(len(VISEMES)):
        t = i * 100 + 50
        frame = comp.frame(animator.pose(t), animator.mouth(t))
        mouths.append(frame[:512][MOUTH].astype(np.int16))
    distinct: list[np.ndarray] = []
    for mouth in mouths:
        if all(np.abs(mouth - other).mean() > 0.5 for other in distinct):
            distinct.append(mouth)
    assert len(distinct) >= 9


def test_gestures_move_the_body() -> None:
    comp = Compositor()
    animator = Animator(_timeline(2000, [("sil", 0, 2000)], [("wave", 0, 2000)]))
    rest = Animator(_timeline(2000, [("sil", 0, 2000)]))
    waving = comp.frame(animator.pose(1000), animator.mouth(1000))[:512].astype(np.int16)
    still = comp.frame(rest.pose(1000), rest.mouth(1000))[:512].astype(np.int16)
    left_side = (slice(250, 450), slice(0, 130))
    assert np.abs(waving[left_side] - still[left_side]).mean() > 10


def test_blink_closes_the_eyes() -> None:
    comp = Compositor()
    animator = Animator(_timeline(1000, [("sil", 0, 1000)], [("blink", 400, 160)]))
    eyes = (slice(190, 240), slice(190, 320))
    before = comp.frame(animator.pose(100), animator.mouth(100))[:512][eyes].astype(np.int16)
    during = comp.frame(animator.pose(480), animator.mouth(480))[:512][eyes].astype(np.int16)
    assert np.abs(during - before).mean() > 10


def test_every_gesture_renders() -> None:
    gestures = [(name, i * 300, 600) for i, name in enumerate(GESTURES)]
    duration = len(GESTURES) * 300 + 600
    _, frames, _ = _decode(
        render_mp4(_silent(duration), _timeline(duration, [("sil", 0, duration)], gestures))
    )
    assert len(frames) == frame_count(duration)


def test_unknown_names_in_a_timeline_are_ignored() -> None:
    timeline = _timeline(400, [("zz", 0, 200), ("aa", 200, 400)], [("moonwalk", 0, 400)])
    _, frames, _ = _decode(render_mp4(_silent(400), timeline))
    assert len(frames) == 10


def test_tiny_clip_has_one_frame() -> None:
    _, frames, info = _decode(render_mp4(_silent(10), _timeline(10, [])))
    assert len(frames) == 1 and info["size"] == (512, 512)


def test_colour_conversion_round_trips_through_the_decoder() -> None:
    """Frames are blended in Y'CbCr (BT.709 limited); decoded RGB must match the drawing."""
    from PIL import Image

    swatch = Image.new("RGBA", (16, 16), (52, 150, 158, 255))
    ycc = np.asarray(to_ycbcr(swatch))[0, 0, :3]
    frame = av.VideoFrame.from_ndarray(
        np.concatenate(
            [np.full((16, 16), ycc[0]), np.full((4, 16), ycc[1]), np.full((4, 16), ycc[2])]
        ).astype(np.uint8),
        format="yuv420p",
    )
    frame.colorspace = av.video.reformatter.Colorspace.ITU709
    rgb = frame.to_ndarray(format="rgb24", src_colorspace="ITU709")[8, 8]
    assert np.abs(rgb.astype(int) - [52, 150, 158]).max() <= 3


def test_audio_at_a_rate_aac_lacks_is_resampled() -> None:
    speech = Speech((np.sin(np.arange(19_999) / 7) * 9000).astype(np.int16), 19_999, "odd")
    _, frames, info = _decode(render_mp4(speech, _timeline(1000, [("sil", 0, 1000)])))
    assert info["audio_rate"] == 24_000
    assert abs(info["audio_s"] - 1.0) < 0.08
    assert len(frames) == 25
