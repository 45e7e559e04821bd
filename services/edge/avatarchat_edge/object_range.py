"""Reads a byte range of an object in a NATS object store without fetching the rest.

nats.py's ``ObjectStore.get`` (like the Go and JavaScript clients) reads every chunk of an
object; no client offers a ranged read. An object is a run of messages on the subject
``$O.<bucket>.C.<nuid>`` of the stream ``OBJ_<bucket>``, one message per chunk, so a range is
read in two steps:

1. A headers-only consumer on that subject lists each chunk's stream sequence and size
   (JetStream sends ``Nats-Msg-Size`` instead of the payload), up to the chunk holding the last
   wanted byte. Nothing assumes that chunks have one size.
2. The chunks that overlap the range are fetched one by one by sequence (direct get), and
   reading stops at the last one.

No chunk before or after the range crosses the wire. The object's digest covers the whole
object, so a partial read cannot be checked against it; ``ObjectStore.get`` still serves
(and checks) whole objects.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import ObjectInfo

# The subject layout of the NATS object store (ADR-20), as nats.py's object_store module uses it.
_CHUNKS_SUBJECT = "$O.{bucket}.C.{nuid}"
_STREAM = "OBJ_{bucket}"
_SIZE_HEADER = "Nats-Msg-Size"
_NEXT_CHUNK_TIMEOUT_S = 5.0


class ObjectChanged(Exception):
    """The object's chunks do not add up to the range asked for (it was replaced or purged)."""


async def read_range(js: JetStreamContext, info: ObjectInfo, start: int, stop: int) -> bytes:
    """Bytes ``start`` to ``stop - 1`` of the object ``info`` describes (``0 <= start < stop``,
    ``stop <= info.size``)."""
    if not 0 <= start < stop <= (info.size or 0):
        raise ValueError(f"range {start}-{stop} is outside the object's {info.size} bytes")
    subject = _CHUNKS_SUBJECT.format(bucket=info.bucket, nuid=info.nuid)
    stream = _STREAM.format(bucket=info.bucket)
    chunks = await _chunks_until(js, subject, start, stop)
    parts: list[bytes] = []
    for seq, offset in chunks:
        message = await js.get_msg(stream, seq=seq, direct=True)
        if message.subject != subject or message.data is None:
            raise ObjectChanged(f"chunk {seq} of {info.name} is gone")
        data = message.data
        parts.append(data[max(0, start - offset) : stop - offset])
    return b"".join(parts)


async def _chunks_until(
    js: JetStreamContext, subject: str, start: int, stop: int
) -> list[tuple[int, int]]:
    """(stream sequence, offset in the object) of each chunk overlapping ``[start, stop)``."""
    sub = await js.subscribe(subject, ordered_consumer=True, headers_only=True)
    found: list[tuple[int, int]] = []
    offset = 0
    try:
        consumer = await sub.consumer_info()
        delivered = consumer.delivered.consumer_seq if consumer.delivered else 0
        if not consumer.num_pending and not delivered:  # purged: say so rather than wait
            raise ObjectChanged(f"there are no chunks on {subject}")
        while offset < stop:
            message = await sub.next_msg(timeout=_NEXT_CHUNK_TIMEOUT_S)
            size = int((message.headers or {}).get(_SIZE_HEADER, "0"))
            if offset + size > start:
                found.append((message.metadata.sequence.stream, offset))
            offset += size
            if offset < stop and message.metadata.num_pending == 0:
                raise ObjectChanged(f"the chunks on {subject} end at byte {offset}")
    except TimeoutError:
        raise ObjectChanged(f"no more chunks on {subject} after byte {offset}") from None
    finally:
        await sub.unsubscribe()
    return found
