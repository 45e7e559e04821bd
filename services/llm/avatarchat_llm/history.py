"""Per-session conversation history: one small interface, kept in memory or in NATS KV.

A store keeps at most ``max_messages`` per session (the oldest go first); the chain sends only
the newest ``window`` of them to the model (``window_of``). Messages are appended only when a
reply completes, as a user/assistant pair, so a cancelled reply leaves no half turn behind.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from avatarchat import log

_log = log.get("avatarchat.llm.history")

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    text: str


class HistoryStore(Protocol):
    async def load(self, session_id: str) -> list[Message]:
        """The session's stored messages, oldest first (empty for an unknown session)."""
        ...

    async def append(self, session_id: str, messages: Sequence[Message]) -> None:
        """Adds messages at the end, dropping the oldest beyond the store's limit."""
        ...

    async def reset(self, session_id: str) -> int:
        """Forgets the session; returns how many messages were removed."""
        ...


def window_of(messages: Sequence[Message], window: int) -> list[Message]:
    """At most the newest ``window`` messages, never starting with an assistant message.

    The window's start moves in steps of half a window rather than one turn at a time, so the
    prompt's prefix stays the same for several turns in a row and llama.cpp reuses its KV cache
    for it instead of evaluating the whole history again on every turn.
    """
    if window <= 0:
        return []
    step = max(2, window // 2 // 2 * 2)  # even: whole user/assistant turns
    overflow = len(messages) - window
    start = 0 if overflow <= 0 else -(-overflow // step) * step
    recent = list(messages[start:])
    while recent and recent[0].role == "assistant":
        recent.pop(0)
    return recent


class MemoryHistoryStore:
    """History in this process: lost on restart. The least recently used sessions go first
    once more than ``max_sessions`` are held."""

    def __init__(self, max_messages: int, max_sessions: int = 10_000) -> None:
        self._max_messages = max_messages
        self._max_sessions = max_sessions
        self._sessions: OrderedDict[str, list[Message]] = OrderedDict()

    async def load(self, session_id: str) -> list[Message]:
        messages = self._sessions.get(session_id)
        if messages is None:
            return []
        self._sessions.move_to_end(session_id)
        return list(messages)

    async def append(self, session_id: str, messages: Sequence[Message]) -> None:
        stored = self._sessions.setdefault(session_id, [])
        stored.extend(messages)
        del stored[: max(0, len(stored) - self._max_messages)]
        self._sessions.move_to_end(session_id)
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)

    async def reset(self, session_id: str) -> int:
        return len(self._sessions.pop(session_id, []))


class NatsHistoryStore:
    """History in the NATS KV bucket ``avatarchat-history``, one JSON value per session, so
    any replica (or a restarted service) carries on the conversation.

    Appends use the key's revision (optimistic concurrency), so two replicas appending to the
    same session at once both land.
    """

    def __init__(self, kv: KeyValue, max_messages: int, attempts: int = 5) -> None:
        self._kv = kv
        self._max_messages = max_messages
        self._attempts = attempts

    @staticmethod
    def key(session_id: str) -> str:
        # Session ids are [A-Za-z0-9_.-]; KV keys may not start or end with '.' nor hold '..'.
        return session_id.replace(".", "=2E")

    async def _get(self, session_id: str) -> tuple[list[Message], int | None]:
        try:
            entry = await self._kv.get(self.key(session_id))
        except (KeyNotFoundError, KeyDeletedError):
            return [], None
        return decode(entry.value or b"[]"), entry.revision

    async def load(self, session_id: str) -> list[Message]:
        return (await self._get(session_id))[0]

    async def append(self, session_id: str, messages: Sequence[Message]) -> None:
        key = self.key(session_id)
        for attempt in range(self._attempts):
            stored, revision = await self._get(session_id)
            value = encode([*stored, *messages][-self._max_messages :])
            try:
                if revision is None:
                    await self._kv.create(key, value)
                else:
                    await self._kv.update(key, value, last=revision)
                return
            except KeyWrongLastSequenceError as exc:  # another writer got there first
                _log.info("history.append_conflict", attempt=attempt + 1, error=str(exc))
                await asyncio.sleep(0.01 * (attempt + 1))
        raise RuntimeError(f"history of {session_id} kept changing; gave up appending")

    async def reset(self, session_id: str) -> int:
        stored, revision = await self._get(session_id)
        if revision is None:
            return 0
        await self._kv.delete(self.key(session_id))
        return len(stored)


def encode(messages: Sequence[Message]) -> bytes:
    return json.dumps([{"role": m.role, "text": m.text} for m in messages]).encode()


def decode(value: bytes) -> list[Message]:
    items = json.loads(value)
    return [Message(role=item["role"], text=item["text"]) for item in items]
