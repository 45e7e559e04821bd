"""``/clips/<id>.wav|.mp4`` and ``/rig/<name>``: objects of the NATS object store over HTTP.

Range requests give 206 with ``Content-Range`` (416 when unsatisfiable), ``ETag`` is the
object's digest (``If-None-Match`` gives 304), and recently served objects are kept in a small
LRU cache keyed by the object's unique id, so a browser seeking in a clip does not fetch it from
NATS again. Clip ids are unguessable, so clips are served without a token, like the web UI.

The URL layout is the edge's own: ``clip_url`` is the one place that builds a clip's URL (the
``clip.*`` frames carry it), and the routes map URLs to object names through ``bus``.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import web
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from avatarchat import bus, log

from . import http_range
from .nats_link import NatsLink, NatsUnavailable

_log = log.get("avatarchat.edge.media")
T = TypeVar("T")

CLIP_NAME = re.compile(r"(?P<clip_id>[A-Za-z0-9_-]{1,128})\.(?P<kind>wav|mp4)")
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}"  # no leading dot, so never ".."
RIG_NAME = re.compile(rf"{_SEGMENT}(/{_SEGMENT}){{0,4}}")
CLIP_CACHE_CONTROL = "public, max-age=3600, immutable"
RIG_CACHE_CONTROL = "no-cache"
NATS_TIMEOUT_S = 5.0
CLIPS_PATH = "/clips/"
RIG_PATH = "/rig/"


def clip_url(clip_id: str, kind: str) -> str:
    """Where this edge serves a clip's ``wav`` or ``mp4``."""
    return f"{CLIPS_PATH}{clip_id}.{kind}"


class MediaCache:
    """Bytes of recently served objects, bounded in total size."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._size = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self._max // 4 or key in self._items:
            return
        self._items[key] = data
        self._size += len(data)
        while self._size > self._max:
            _, dropped = self._items.popitem(last=False)
            self._size -= len(dropped)


class MediaRoutes:
    def __init__(self, link: NatsLink, cache: MediaCache) -> None:
        self._link = link
        self._cache = cache

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get(CLIPS_PATH + "{name}", self.clip)
        router.add_get(RIG_PATH + "{name:.+}", self.rig)

    async def clip(self, request: web.Request) -> web.StreamResponse:
        match = CLIP_NAME.fullmatch(request.match_info["name"])
        if match is None:
            return _problem(404, "no such clip; clip URLs look like /clips/<clip_id>.wav or .mp4")
        name = bus.clip_object(match["clip_id"], match["kind"])
        return await self._serve(request, name, CLIP_CACHE_CONTROL)

    async def rig(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not RIG_NAME.fullmatch(name):
            return _problem(404, "no such rig asset")
        return await self._serve(request, bus.rig_object(name), RIG_CACHE_CONTROL)

    async def _serve(self, request: web.Request, name: str, cache_control: str) -> web.Response:
        if not self._link.enabled:
            return _problem(404, "this edge has no media store (NATS is off)")
        try:
            store = await self._link.clips_store()
            if store is None:
                return _problem(404, f"no such object: {name}")
            info = await _timed(store.get_info(name))
        except NotFoundError:
            return _problem(404, f"no such object: {name}")
        except (NatsUnavailable, NatsError, TimeoutError) as exc:
            _log.warning("media.unavailable", name=name, error=str(exc) or type(exc).__name__)
            return _problem(503, "the media store is not reachable; try again shortly")
        size = info.size or 0
        etag = f'"{info.digest or info.nuid}"'
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Cache-Control": cache_control,
            "Content-Type": _content_type(name, info.headers),
        }
        if etag in _etags(request.headers.get("If-None-Match")):
            return web.Response(status=304, headers=headers)
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if if_range is not None and if_range.strip() != etag:
            range_header = None  # the client's copy is stale: send it all
        try:
            span = http_range.parse(range_header, size)
        except http_range.Unsatisfiable:
            headers["Content-Range"] = f"bytes */{size}"
            return web.Response(status=416, headers=headers)
        try:
            data = await self._data(store, name, info.nuid)
        except NotFoundError:
            return _problem(404, f"no such object: {name}")
        except (NatsError, TimeoutError) as exc:
            _log.warning("media.read_failed", name=name, error=str(exc) or type(exc).__name__)
            return _problem(503, "the media store is not reachable; try again shortly")
        if span is None:
            return web.Response(body=data, headers=headers)
        headers["Content-Range"] = span.content_range(size)
        return web.Response(status=206, body=data[span.start : span.end + 1], headers=headers)

    async def _data(self, store: Any, name: str, nuid: str) -> bytes:
        cached = self._cache.get(nuid)
        if cached is not None:
            return cached
        result = await _timed(store.get(name))
        data = bytes(result.data or b"")
        self._cache.put(nuid, data)
        return data


async def _timed(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(NATS_TIMEOUT_S):
        return await awaitable


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def _content_type(name: str, headers: dict[str, object] | None) -> str:
    for key, value in (headers or {}).items():
        if key.lower() == "content-type":
            found = value[0] if isinstance(value, list) and value else value
            if isinstance(found, str) and found:
                return found
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
