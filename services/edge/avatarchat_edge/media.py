"""``/clips/<id>.wav|.mp4`` and ``/rig/<name>``: objects of the NATS object store over HTTP.

aiohttp parses the ``Range`` and ``If-None-Match`` headers (``request.http_range``,
``request.if_none_match``). A range request gives 206 with ``Content-Range`` (416 when
unsatisfiable) and reads only the chunks holding its bytes from the store (``object_range``),
unless it asks for all of them (a media element's first ``bytes=0-``);
``ETag`` is the object's digest (``If-None-Match`` gives 304, ``If-Range`` with another tag the
whole object); a HEAD request reads no chunk at all. Whole objects that were served recently
are kept in a small LRU cache keyed by the object's unique id, and ranges of them are cut from
it, so a browser seeking in a clip it has played does not fetch it from NATS again. Clip ids
are unguessable, so clips are served without a token, like the web UI.

The URL layout is the edge's own: ``clip_url`` is the one place that builds a clip's URL (the
``clip.*`` frames carry it), and the routes map URLs to object names through ``bus``.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
from collections import OrderedDict
from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import ETag, hdrs, web
from aiohttp.helpers import ETAG_ANY
from nats.errors import Error as NatsError
from nats.js.api import ObjectInfo
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from avatarchat import bus, log

from . import object_range
from .nats_link import NatsLink, NatsUnavailable
from .object_range import ObjectChanged

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
        response = web.Response(
            headers={
                "Accept-Ranges": "bytes",
                "Cache-Control": cache_control,
                "Content-Type": _content_type(name, info.headers),
            }
        )
        response.etag = info.digest or info.nuid
        if _matches(response.etag, request.if_none_match):
            response.set_status(304)
            return response
        span = _requested_span(request, response.etag, size)
        if span is not None and span.start >= span.stop:
            response.set_status(416)
            response.headers["Content-Range"] = f"bytes */{size}"
            return response
        if request.method == hdrs.METH_HEAD:
            # No body, so nothing to read: the length is the object's (or the range's).
            response.headers["Content-Length"] = str(size if span is None else len(span))
            if span is not None:
                response.set_status(206)
                response.headers["Content-Range"] = _content_range(span, size)
            return response
        try:
            if span is None or len(span) == size:  # e.g. a media element's "bytes=0-"
                response.body = await self._whole(store, name, info.nuid)
            else:
                response.body = await self._part(info, span)
            if span is not None:
                response.set_status(206)
                response.headers["Content-Range"] = _content_range(span, size)
        except (NotFoundError, ObjectChanged):
            return _problem(404, f"no such object: {name}")
        except (NatsUnavailable, NatsError, TimeoutError) as exc:
            _log.warning("media.read_failed", name=name, error=str(exc) or type(exc).__name__)
            return _problem(503, "the media store is not reachable; try again shortly")
        return response

    async def _whole(self, store: ObjectStore, name: str, nuid: str) -> bytes:
        """The whole object (its digest checked by ``ObjectStore.get``), kept in the cache."""
        cached = self._cache.get(nuid)
        if cached is not None:
            return cached
        result = await _timed(store.get(name))
        data = bytes(result.data or b"")
        self._cache.put(nuid, data)
        return data

    async def _part(self, info: ObjectInfo, span: range) -> bytes:
        """The range from the cache if the whole object is there, else only its chunks."""
        cached = self._cache.get(info.nuid)
        if cached is not None:
            return cached[span.start : span.stop]
        js = self._link.client_now().jetstream()
        return await _timed(object_range.read_range(js, info, span.start, span.stop))


def _matches(etag: ETag | None, candidates: tuple[ETag, ...] | None) -> bool:
    """``If-None-Match``: weak comparison, so ``W/"x"`` matches ``"x"``; ``*`` matches all."""
    if etag is None or not candidates:
        return False
    return any(c.value in (ETAG_ANY, etag.value) for c in candidates)


def _requested_span(request: web.Request, etag: ETag | None, size: int) -> range | None:
    """The bytes a ``Range`` request asks for (empty when none exists), or None for all of it.

    A range aiohttp cannot parse (another unit, several ranges, a malformed one) is ignored, as
    RFC 9110 section 14.2 allows, and so is any range whose ``If-Range`` is not this object's
    ETag (the client's copy is stale).
    """
    if hdrs.RANGE not in request.headers:
        return None
    if_range = request.headers.get(hdrs.IF_RANGE)
    if if_range is not None and (etag is None or if_range.strip() != f'"{etag.value}"'):
        return None
    try:
        wanted = request.http_range
    except ValueError:
        return None
    return range(size)[wanted]


def _content_range(span: range, size: int) -> str:
    return f"bytes {span.start}-{span.stop - 1}/{size}"


async def _timed(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(NATS_TIMEOUT_S):
        return await awaitable


def _content_type(name: str, headers: dict[str, object] | None) -> str:
    for key, value in (headers or {}).items():
        if key.lower() == "content-type":
            found = value[0] if isinstance(value, list) and value else value
            if isinstance(found, str) and found:
                return found
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
