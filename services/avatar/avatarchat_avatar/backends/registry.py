"""Backends by name: ``AVATARCHAT_AVATAR_TTS`` picks the speech, ``..._VIDEO`` the video.

Each entry builds one backend from the service's config and the :class:`Resources` it may
share with others (one HTTP session for the cloud APIs, the render pool). A backend's module is
imported only when it is chosen, so the local service never imports a cloud client and a cloud
deployment never loads the rig. ``config.SPEECH_BACKENDS`` and ``config.VIDEO_BACKENDS`` name
the same entries, for the config to validate the choice before anything starts.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import AsyncExitStack
from typing import TypeVar

import aiohttp

from avatarchat.config import ConfigError
from avatarchat.cpu import lower_thread_priority
from avatarchat_avatar.config import AvatarConfig
from avatarchat_avatar.speech import SpeechBackend
from avatarchat_avatar.video import VideoBackend


class Resources:
    """What backends share, made on first use and released with the service's exit stack."""

    def __init__(self, config: AvatarConfig, stack: AsyncExitStack) -> None:
        self._config = config
        self._stack = stack
        self._http: aiohttp.ClientSession | None = None
        self._executor: Executor | None = None

    def http(self) -> aiohttp.ClientSession:
        """One HTTP client session for the cloud backends (call it from the event loop)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
            self._stack.push_async_callback(self._http.close)
        return self._http

    def render_executor(self) -> Executor:
        """The pool the local renderer runs in: threads or spawned processes (``RENDER_POOL``).

        Its workers run at nice ``RENDER_NICE``, so rendering never delays a first token or
        the speech of a new sentence on a shared CPU.
        """
        if self._executor is None:
            workers, nice = self._config.workers, (self._config.render_nice,)
            if self._config.render_pool == "process":
                self._executor = ProcessPoolExecutor(
                    max_workers=workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=lower_thread_priority,
                    initargs=nice,
                )
            else:
                self._executor = ThreadPoolExecutor(
                    max_workers=workers,
                    thread_name_prefix="render",
                    initializer=lower_thread_priority,
                    initargs=nice,
                )
            self._stack.callback(self._executor.shutdown, wait=False, cancel_futures=True)
        return self._executor


F = TypeVar("F")
SpeechFactory = Callable[[AvatarConfig, Resources], SpeechBackend]
VideoFactory = Callable[[AvatarConfig, Resources], VideoBackend]


def _piper(config: AvatarConfig, resources: Resources) -> SpeechBackend:
    from avatarchat_avatar.backends.speech.piper import PiperSpeech

    return PiperSpeech(threads=config.tts_threads)


def _elevenlabs(config: AvatarConfig, resources: Resources) -> SpeechBackend:
    from avatarchat_avatar.backends.speech.elevenlabs import ElevenLabsSpeech

    if config.elevenlabs is None:
        raise ConfigError("AVATARCHAT_AVATAR_TTS=elevenlabs needs the ElevenLabs settings")
    return ElevenLabsSpeech(config.elevenlabs, resources.http())


def _local(config: AvatarConfig, resources: Resources) -> VideoBackend:
    from avatarchat_avatar.backends.video.local import LocalVideo

    return LocalVideo(resources.render_executor(), workers=config.workers)


def _did(config: AvatarConfig, resources: Resources) -> VideoBackend:
    from avatarchat_avatar.backends.video.did import DidVideo

    if config.did is None:
        raise ConfigError("AVATARCHAT_AVATAR_VIDEO=did needs the D-ID settings")
    return DidVideo(config.did, resources.http())


SPEECH: Mapping[str, SpeechFactory] = {"piper": _piper, "elevenlabs": _elevenlabs}
VIDEO: Mapping[str, VideoFactory] = {"local": _local, "did": _did}


def speech_backend(config: AvatarConfig, resources: Resources) -> SpeechBackend:
    """The speech backend ``config.tts`` names."""
    return _factory(SPEECH, config.tts, "AVATARCHAT_AVATAR_TTS")(config, resources)


def video_backend(config: AvatarConfig, resources: Resources) -> VideoBackend:
    """The video backend ``config.video`` names."""
    return _factory(VIDEO, config.video, "AVATARCHAT_AVATAR_VIDEO")(config, resources)


def _factory(entries: Mapping[str, F], name: str, variable: str) -> F:
    try:
        return entries[name]
    except KeyError:
        known = ", ".join(entries)
        raise ConfigError(f"{variable}={name!r} is not a backend; known: {known}") from None
