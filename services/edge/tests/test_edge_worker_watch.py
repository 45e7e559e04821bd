"""WorkerWatch decides which clips an avatar process took with it when it died (fake clock)."""

from __future__ import annotations

from avatarchat.v1 import events_pb2
from avatarchat_edge.nats_link import NatsLink
from avatarchat_edge.worker_watch import WorkerWatch
from tests.clocks import ManualClock as Clock


def beat(worker: str, interval_ms: int = 500) -> events_pb2.WorkerHeartbeat:
    return events_pb2.WorkerHeartbeat(worker_id=worker, interval_ms=interval_ms)


def watch_with(clock: Clock) -> WorkerWatch:
    watch = WorkerWatch(NatsLink(None), clock=clock)
    watch.connection(True)
    return watch


def track(watch: WorkerWatch, clip: str, worker: str, *, seq: int = 1, speech_only=False) -> None:
    watch.track(clip, worker, session_id="s", turn_id="t", seq=seq, speech_only=speech_only)


def test_a_worker_that_keeps_beating_keeps_its_clips() -> None:
    clock = Clock(100.0)
    watch = watch_with(clock)
    track(watch, "c1", "w1")
    for _ in range(20):
        clock.now += 0.5
        watch.heard(beat("w1"))
        assert watch.lost() == []
    assert watch.tracked == 1


def test_a_silent_worker_loses_its_clips_after_three_intervals() -> None:
    clock = Clock(100.0)
    watch = watch_with(clock)
    watch.heard(beat("w1"))
    watch.heard(beat("w2"))
    track(watch, "c1", "w1", seq=1)
    track(watch, "c2", "w1", seq=2)
    track(watch, "c3", "w2", seq=3)
    clock.now += 1.4
    watch.heard(beat("w2"))
    assert watch.lost() == []
    clock.now += 0.2  # 1.6 s since w1's last beat: more than 3 x 0.5 s
    watch.heard(beat("w2"))
    lost = watch.lost()
    assert sorted(clip_id for clip_id, _ in lost) == ["c1", "c2"]
    assert {clip.seq for _, clip in lost} == {1, 2}
    assert watch.lost() == [] and watch.tracked == 1  # reported once


def test_the_interval_comes_from_the_heartbeat() -> None:
    clock = Clock(100.0)
    watch = watch_with(clock)
    watch.heard(beat("slow", interval_ms=2000))
    track(watch, "c1", "slow")
    clock.now += 5.0
    assert watch.lost() == []
    clock.now += 1.5
    assert [c for c, _ in watch.lost()] == ["c1"]


def test_a_worker_never_heard_counts_from_the_request() -> None:
    clock = Clock(100.0)
    watch = watch_with(clock)
    track(watch, "c1", "ghost")
    clock.now += 1.4
    assert watch.lost() == []
    clock.now += 0.2
    assert [c for c, _ in watch.lost()] == ["c1"]


def test_the_last_event_settles_a_clip() -> None:
    clock = Clock(100.0)
    watch = watch_with(clock)
    track(watch, "video", "w1")
    track(watch, "speech", "w1", seq=2, speech_only=True)
    ready = events_pb2.AvatarEvent(clip_id="video", speech_ready=events_pb2.SpeechReady())
    watch.event(ready)
    assert watch.tracked == 2  # a video clip still has its video to come
    watch.event(events_pb2.AvatarEvent(clip_id="video", clip_ready=events_pb2.ClipReady()))
    watch.event(events_pb2.AvatarEvent(clip_id="speech", speech_ready=events_pb2.SpeechReady()))
    assert watch.tracked == 0
    clock.now += 10
    assert watch.lost() == []


def test_silence_while_nats_is_down_proves_nothing() -> None:
    clock = Clock(100.0)
    watch = watch_with(clock)
    watch.heard(beat("w1"))
    track(watch, "c1", "w1")
    watch.connection(False)
    clock.now += 30
    assert watch.lost() == []
    watch.connection(True)  # back: the worker gets three intervals from now to be heard
    clock.now += 1.4
    assert watch.lost() == []
    watch.heard(beat("w1"))
    clock.now += 1.4
    assert watch.lost() == []
    clock.now += 0.2
    assert [c for c, _ in watch.lost()] == ["c1"]


def test_an_avatar_without_heartbeats_is_not_watched() -> None:
    clock = Clock(100.0)
    watch = watch_with(clock)
    track(watch, "c1", "")
    clock.now += 60
    assert watch.tracked == 0 and watch.lost() == []
