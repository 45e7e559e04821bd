"""Parsing of HTTP Range headers."""

from __future__ import annotations

import pytest

from avatarchat_edge.http_range import ByteRange, Unsatisfiable, parse


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("", 100, None),
        ("bytes=0-9", 100, ByteRange(0, 9)),
        ("bytes=10-", 100, ByteRange(10, 99)),
        ("bytes=-10", 100, ByteRange(90, 99)),
        ("bytes=-1000", 100, ByteRange(0, 99)),
        ("bytes=50-1000", 100, ByteRange(50, 99)),
        ("bytes=99-99", 100, ByteRange(99, 99)),
        (" BYTES = 1-2 ", 100, ByteRange(1, 2)),
        ("bytes=0-1,5-6", 100, None),  # multi-range: whole body
        ("items=0-1", 100, None),  # unknown unit
        ("bytes=5-1", 100, None),  # malformed
        ("bytes=a-b", 100, None),
        ("bytes=-", 100, None),
        ("bytes", 100, None),
    ],
)
def test_parse(header: str | None, size: int, expected: ByteRange | None) -> None:
    assert parse(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0), ("bytes=-5", 0)]
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse(header, size)


def test_content_range() -> None:
    assert ByteRange(0, 9).content_range(100) == "bytes 0-9/100"
    assert ByteRange(0, 9).length == 10
