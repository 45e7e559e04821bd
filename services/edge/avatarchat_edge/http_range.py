"""HTTP ``Range: bytes=`` for single ranges (RFC 9110 §14), so browsers can seek in clips.

``parse`` returns the inclusive byte span to send, None to send the whole body (no header,
an unsupported unit, a multi-range or a malformed header: RFC 9110 allows ignoring those), or
raises ``Unsatisfiable`` (answered with 416 and ``Content-Range: bytes */<size>``).
"""

from __future__ import annotations

from dataclasses import dataclass


class Unsatisfiable(Exception):
    """No byte of the requested range exists."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse(header: str | None, size: int) -> ByteRange | None:
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise Unsatisfiable
    return ByteRange(start, min(end, size - 1))
