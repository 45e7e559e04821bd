"""Wires the avatar service together: NATS, backends, the clip pipeline and the gRPC host.

The avatar owns the events stream and the clips object store (``bus`` defines them); it creates
them at start. It listens for broadcast cancels (``cancels.py``) as well as ``CancelClips``.

``python -m avatarchat_avatar`` and the tests build the service the same way. Everything that
holds a connection, a pool or a session is registered on the caller's ``AsyncExitStack``, so
shutdown releases it in reverse order: the pipeline stops first and NATS drains last.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from avatarchat import bus, log
from avatarchat.grpc_server import GrpcHost
from avatarchat.v1 import avatar_pb2_grpc
from avatarchat_avatar.backends import registry
from avatarchat_avatar.cancels import CancelListener
from avatarchat_avatar.config import AvatarConfig
from avatarchat_avatar.heartbeat import Heartbeat
from avatarchat_avatar.pipeline import ClipPipeline
from avatarchat_avatar.publisher import Publisher
from avatarchat_avatar.server import SERVICE_NAME, AvatarServicer

_log = log.get("avatarchat.avatar.app")


class AvatarApp:
    """The service: ``host`` serves as soon as it starts; ``load`` makes it ready."""

    def __init__(self, config: AvatarConfig, stack: AsyncExitStack, *, host: str = "[::]") -> None:
        self.config = config
        self._stack = stack
        self.servicer = AvatarServicer(None, max_text_chars=config.max_text_chars)
        self.host = GrpcHost(
            port=config.port,
            service_names=[SERVICE_NAME],
            register=lambda server: avatar_pb2_grpc.add_AvatarServiceServicer_to_server(
                self.servicer, server
            ),
            host=host,
        )
        self.pipeline: ClipPipeline | None = None
        self.publisher: Publisher | None = None
        self._resources = registry.Resources(config, stack)

    async def load(self) -> None:
        """Connects NATS, prepares the stream and bucket, loads the backends, stores the rig."""
        config = self.config
        nc = await bus.connect(config.runtime.nats_url, name="avatarchat-avatar")
        self._stack.push_async_callback(bus.close, nc)
        js = nc.jetstream()
        await bus.ensure_events_stream(js, config.retention)
        store = await bus.ensure_clips_store(js, config.retention)
        self.publisher = Publisher(js, store)

        speech = registry.speech_backend(config, self._resources)
        video = registry.video_backend(config, self._resources)
        await asyncio.gather(speech.load(), video.load(), self._store_rig(self.publisher))

        pipeline = ClipPipeline(
            speech=speech,
            video=video,
            publisher=self.publisher,
            speech_workers=config.speech_workers,
            render_workers=config.workers,
            queue_size=config.queue_size,
            clip_timeout_s=config.clip_timeout_s,
            registry_size=config.registry_size,
        )
        # Heartbeats go on until the pipeline has finished (or failed) its last clip.
        heartbeat = Heartbeat(nc, pipeline.in_progress)
        heartbeat.start()
        self._stack.push_async_callback(heartbeat.close)
        self.servicer.worker_id = heartbeat.worker_id
        pipeline.start()
        self._stack.push_async_callback(pipeline.close, config.runtime.shutdown_grace_s)
        # Cancels are broadcast to every avatar process; this one stops the clips it holds.
        cancels = CancelListener(nc, pipeline.cancel)
        await cancels.start()
        self._stack.push_async_callback(cancels.close)
        self.pipeline = pipeline
        self.servicer.attach(pipeline)
        _log.info(
            "avatar.loaded",
            tts=speech.name,
            video=video.name,
            voices=list(speech.voices()),
            speech_workers=config.speech_workers,
            render_workers=config.workers,
            render_nice=config.render_nice,
            queue_size=config.queue_size,
        )

    async def _store_rig(self, publisher: Publisher) -> None:
        from avatarchat_avatar.rendering.rig import export_browser_rig

        assets = await asyncio.to_thread(export_browser_rig)
        for name, data in assets.items():
            await publisher.put(bus.rig_object(name), data)
        _log.info("rig.stored", assets=len(assets), bytes=sum(len(d) for d in assets.values()))


@asynccontextmanager
async def serving(config: AvatarConfig, *, host: str = "[::]") -> AsyncIterator[AvatarApp]:
    """Runs the service in this process until the block exits (tests and benchmarks)."""
    async with AsyncExitStack() as stack:
        app = AvatarApp(config, stack, host=host)
        await app.host.start()
        try:
            await app.load()
            await app.host.set_serving(True)
            yield app
        finally:
            await app.host.stop(0)
