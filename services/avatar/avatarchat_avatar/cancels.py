"""Hears cancels broadcast on ``avatar.cancel.<session_id>`` and stops this process's clips.

An edge cannot know which avatar pod works on a session's clips: the balancer spreads
``GenerateClip`` calls over every pod. So it broadcasts a ``CancelClipsRequest`` on core NATS,
every avatar process hears it (a plain subscription, no queue group), and each cancels the
clips of that session it holds; the others have none and do nothing. A malformed message is
logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from avatarchat import bus, errors, log
from avatarchat.v1 import avatar_pb2

_log = log.get("avatarchat.avatar.cancels")

# (session_id, turn_id or None) -> how many clips were cancelled
Cancel = Callable[[str, str | None], int]


class CancelListener:
    def __init__(self, nc: NATS, cancel: Cancel) -> None:
        self._nc = nc
        self._cancel = cancel
        self._sub: Subscription | None = None
        self.heard = 0

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{bus.CANCEL_SUBJECT_PREFIX}.>", cb=self._on_msg)

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        # Only while connected: an unsubscribe during a reconnect waits for the server, which
        # may be gone for good at shutdown (closing the connection drops the subscription).
        if sub is not None and self._nc.is_connected:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        self.heard += 1
        try:
            request = avatar_pb2.CancelClipsRequest.FromString(msg.data)
            session_id = errors.require_id("session_id", request.session_id)
            turn_id = errors.require_id("turn_id", request.turn_id) if request.turn_id else None
        except (DecodeError, errors.InvalidArgument) as exc:
            _log.warning("cancel.malformed", subject=msg.subject, error=str(exc) or "undecodable")
            return
        if msg.subject != bus.cancel_subject(session_id):
            _log.warning("cancel.malformed", subject=msg.subject, error="session_id differs")
            return
        count = self._cancel(session_id, turn_id)
        _log.debug("cancel.heard", session_id=session_id, turn_id=turn_id, cancelled=count)
