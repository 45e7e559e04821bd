"""Backends chosen by name: every configurable name builds its backend, nothing else does."""

from __future__ import annotations

import dataclasses
from contextlib import AsyncExitStack

import pytest

from avatarchat.config import ConfigError
from avatarchat_avatar.backends import registry
from avatarchat_avatar.backends.speech.elevenlabs import ElevenLabsSpeech
from avatarchat_avatar.backends.speech.piper import PiperSpeech
from avatarchat_avatar.backends.video.did import DidVideo
from avatarchat_avatar.backends.video.local import LocalVideo
from avatarchat_avatar.config import SPEECH_BACKENDS, VIDEO_BACKENDS, AvatarConfig

CLOUD_ENV = {
    "AVATARCHAT_AVATAR_TTS": "elevenlabs",
    "ELEVENLABS_API_KEY": "xi-test",
    "AVATARCHAT_AVATAR_VIDEO": "did",
    "DID_API_KEY": "user:secret",
}


def test_the_registry_serves_exactly_the_configurable_names() -> None:
    assert tuple(registry.SPEECH) == SPEECH_BACKENDS
    assert tuple(registry.VIDEO) == VIDEO_BACKENDS


async def test_the_default_config_builds_piper_and_the_local_renderer() -> None:
    config = AvatarConfig.from_env({"AVATARCHAT_AVATAR_WORKERS": "1"})
    async with AsyncExitStack() as stack:
        resources = registry.Resources(config, stack)
        speech = registry.speech_backend(config, resources)
        video = registry.video_backend(config, resources)
        assert isinstance(speech, PiperSpeech) and speech.name == "piper"
        assert isinstance(video, LocalVideo) and video.name == "local"
        assert resources.render_executor() is resources.render_executor()


async def test_cloud_backends_share_one_http_session_closed_with_the_stack() -> None:
    config = AvatarConfig.from_env(CLOUD_ENV)
    async with AsyncExitStack() as stack:
        resources = registry.Resources(config, stack)
        speech = registry.speech_backend(config, resources)
        video = registry.video_backend(config, resources)
        assert isinstance(speech, ElevenLabsSpeech) and isinstance(video, DidVideo)
        session = resources.http()
        assert session is resources.http() and not session.closed
    assert session.closed


async def test_an_unknown_name_is_a_config_error() -> None:
    config = dataclasses.replace(AvatarConfig.from_env({}), video="blender")
    async with AsyncExitStack() as stack:
        resources = registry.Resources(config, stack)
        with pytest.raises(ConfigError, match=r"AVATARCHAT_AVATAR_VIDEO='blender'.*local, did"):
            registry.video_backend(config, resources)


async def test_a_cloud_backend_without_its_settings_is_a_config_error() -> None:
    config = dataclasses.replace(AvatarConfig.from_env({}), tts="elevenlabs")
    async with AsyncExitStack() as stack:
        resources = registry.Resources(config, stack)
        with pytest.raises(ConfigError, match="ElevenLabs settings"):
            registry.speech_backend(config, resources)


def _own_nice() -> int:
    import os
    import threading

    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.parametrize("pool", ["thread", "process"])
async def test_the_render_pool_runs_at_the_render_nice(pool: str) -> None:
    import asyncio

    base = _own_nice()
    config = AvatarConfig.from_env(
        {
            "AVATARCHAT_AVATAR_WORKERS": "1",
            "AVATARCHAT_AVATAR_RENDER_POOL": pool,
            "AVATARCHAT_AVATAR_RENDER_NICE": str(base + 4),
        }
    )
    async with AsyncExitStack() as stack:
        executor = registry.Resources(config, stack).render_executor()
        nice = await asyncio.get_running_loop().run_in_executor(executor, _own_nice)
    assert nice == base + 4
    assert _own_nice() == base  # the service's own threads keep theirs


def test_piper_runs_on_the_configured_threads() -> None:
    import asyncio

    config = AvatarConfig.from_env({"AVATARCHAT_AVATAR_TTS_THREADS": "2"})

    async def load() -> PiperSpeech:
        async with AsyncExitStack() as stack:
            speech = registry.speech_backend(config, registry.Resources(config, stack))
            assert isinstance(speech, PiperSpeech)
            await speech.load()
            return speech

    speech = asyncio.run(load())
    options = speech._loaded_voice().session.get_session_options()
    assert options.intra_op_num_threads == 2
