"""``avatarchat.vendor_http``: the status table, Retry-After, error bodies, and one call."""

from __future__ import annotations

import asyncio
import types
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import grpc
import pytest

from avatarchat import errors
from avatarchat.vendor_http import (
    OTHER_STATUS,
    SdkErrors,
    Vendor,
    describe,
    retry_after_s,
)

NOW = datetime(2026, 12, 2, 19, 0, 0, tzinfo=UTC).timestamp()

ACME = Vendor(
    "Acme",
    key_setting="ACME_API_KEY",
    timeout_setting="ACME_TIMEOUT_S",
    url_setting="ACME_BASE_URL",
)


class Recorded:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []

    def observe_call(self, vendor: str, outcome: str, seconds: float) -> None:
        self.calls.append((vendor, outcome, seconds))


# --- the status table ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "says"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT, "Acme refused the request: nope"),
        (401, grpc.StatusCode.UNAUTHENTICATED, "Acme rejected the API key (ACME_API_KEY): nope"),
        (402, grpc.StatusCode.RESOURCE_EXHAUSTED, "Acme account has run out of credits"),
        (403, grpc.StatusCode.PERMISSION_DENIED, "Acme refused access: nope"),
        (404, grpc.StatusCode.UNAVAILABLE, "Acme answered HTTP 404: nope"),
        (413, grpc.StatusCode.INVALID_ARGUMENT, "too large for Acme: nope"),
        (422, grpc.StatusCode.INVALID_ARGUMENT, "Acme refused the request: nope"),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED, "Acme rate limit reached: nope"),
        (500, grpc.StatusCode.UNAVAILABLE, "Acme answered HTTP 500: nope"),
        (503, grpc.StatusCode.UNAVAILABLE, "Acme answered HTTP 503: nope"),
        (302, grpc.StatusCode.UNAVAILABLE, "Acme answered HTTP 302: nope"),
    ],
)
def test_status_table(status: int, code: grpc.StatusCode, says: str) -> None:
    error = ACME.status_error(status, {"message": "nope"})
    assert error.code == code
    assert says in error.message


def test_a_vendor_amends_the_table_and_says_what_it_was_doing() -> None:
    stt = Vendor(
        "Acme",
        key_setting="K",
        timeout_setting="T",
        statuses={
            404: (errors.InvalidArgument, "{vendor} could not transcribe{doing}: {detail}"),
            400: OTHER_STATUS,
        },
    )
    gone = stt.status_error(404, b'{"message": "no such audio"}', doing="uploading")
    assert isinstance(gone, errors.InvalidArgument)
    assert gone.message == "Acme could not transcribe while uploading: no such audio"
    assert isinstance(stt.status_error(400, None), errors.Unavailable)
    assert stt.status_error(400, None).message == "Acme answered HTTP 400: no details"
    assert isinstance(stt.status_error(401, None), errors.Unauthenticated)  # the rest stays


def test_rate_limits_carry_the_wait() -> None:
    limited = ACME.status_error(429, None, {"Retry-After": "3"})
    assert isinstance(limited, errors.ResourceExhausted) and limited.retry_after_s == 3.0
    assert ACME.status_error(429, None, {}).retry_after_s is None  # type: ignore[attr-defined]
    assert ACME.status_error(402, None, {"retry-after": "60"}).retry_after_s == 60.0  # type: ignore[attr-defined]


# --- Retry-After -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"RETRY-AFTER": " 2 "}, 2.0),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the finer one wins
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"Retry-After": "-4"}, 0.0),
        (
            {"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)},
            30.0,
        ),
        ({"Retry-After": "Wed, 02 Dec 2026 19:01:30 GMT"}, 90.0),
        ({"Retry-After": "Wed, 02 Dec 2026 19:01:30 -0000"}, 90.0),
        ({"Retry-After": "Wed, 02 Dec 2026 18:00:00 GMT"}, 0.0),  # already past
        ({"Retry-After": "whenever"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": ""}, None),
        ({"Content-Type": "application/json"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str] | None, wait: float | None) -> None:
    got = retry_after_s(headers, now=lambda: NOW)
    assert got == (pytest.approx(wait) if wait is not None else None)


# --- error bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"error": {"message": "Invalid API Key", "type": "x", "code": "y"}}, "Invalid API Key"),
        ({"message": "Unauthorized"}, "Unauthorized"),
        ({"error": "Not found"}, "Not found"),
        ({"detail": {"status": "quota_exceeded", "message": "Quota hit"}}, "Quota hit"),
        ({"detail": {"status": "too_many_concurrent_requests"}}, "too_many_concurrent_requests"),
        (
            {"detail": [{"loc": ["body"], "msg": "invalid model"}, {"msg": "bad"}]},
            "invalid model; bad",
        ),
        ({"kind": "FaceError", "description": "no face detected"}, "FaceError: no face detected"),
        ({"kind": "TooManyRequestsError"}, "TooManyRequestsError"),
        (b'{"detail": "internal"}', "internal"),
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        ({"odd": 1}, '{"odd": 1}'),
        ({}, ""),
        (None, ""),
        (b"", ""),
    ],
)
def test_describe_reads_each_vendors_error_body(body: Any, text: str) -> None:
    assert describe(body) == text


def test_describe_is_short() -> None:
    assert len(describe({"message": "x" * 5000})) == 300


# --- SDK exceptions and transport failures -----------------------------------------------------


class _APIError(Exception):
    pass


class _APIConnectionError(_APIError):
    pass


class _APITimeoutError(_APIConnectionError):
    pass


class _Response:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


class _APIStatusError(_APIError):
    def __init__(self, status_code: int, body: Any, headers: dict[str, str]) -> None:
        super().__init__(f"Error code: {status_code}")
        self.status_code = status_code
        self.body = body
        self.response = _Response(headers)


def _sdk() -> types.ModuleType:
    module = types.ModuleType("fakesdk")
    module.APITimeoutError = _APITimeoutError  # type: ignore[attr-defined]
    module.APIConnectionError = _APIConnectionError  # type: ignore[attr-defined]
    module.APIStatusError = _APIStatusError  # type: ignore[attr-defined]
    return module


SDK_VENDOR = Vendor(
    "Acme",
    key_setting="K",
    timeout_setting="ACME_TIMEOUT_S",
    url_setting="ACME_URL",
    sdk=SdkErrors.of(_sdk()),
).using(base_url="http://127.0.0.1:9")


def test_sdk_exceptions_are_read_like_http_answers() -> None:
    limited = SDK_VENDOR.error_for(
        _APIStatusError(429, {"message": "slow down"}, {"retry-after-ms": "1500"})
    )
    assert isinstance(limited, errors.ResourceExhausted)
    assert limited.message == "Acme rate limit reached: slow down"
    assert limited.retry_after_s == 1.5
    no_body = SDK_VENDOR.error_for(_APIStatusError(502, None, {}))
    assert no_body.message == "Acme answered HTTP 502: Error code: 502"
    timeout = SDK_VENDOR.error_for(_APITimeoutError("Request timed out."))
    assert isinstance(timeout, errors.DeadlineExceeded)
    assert timeout.message == "Acme did not answer in time (ACME_TIMEOUT_S)"
    down = SDK_VENDOR.error_for(_APIConnectionError("Connection error."))
    assert isinstance(down, errors.Unavailable)
    assert down.message == (
        "could not reach Acme at http://127.0.0.1:9 (_APIConnectionError: Connection error.); "
        "check ACME_URL and the network"
    )


def test_other_failures() -> None:
    assert isinstance(ACME.error_for(TimeoutError()), errors.DeadlineExceeded)
    refused = ACME.error_for(ConnectionRefusedError(111, "Connection refused"))
    assert isinstance(refused, errors.Unavailable) and "could not reach Acme" in refused.message
    odd = ACME.error_for(ValueError("bad frame"))
    assert isinstance(odd, errors.Unavailable) and odd.message == "Acme call failed: bad frame"
    own = errors.InvalidArgument("already ours")
    assert ACME.error_for(own) is own


def test_a_subclass_reads_its_own_errors_first() -> None:
    class Picky(Vendor):
        def special_error(self, exc: Exception) -> errors.ServiceError | None:
            return errors.NotFound("gone") if "gone" in str(exc) else None

    picky = Picky("Picky", key_setting="K", timeout_setting="T")
    assert isinstance(picky.error_for(ValueError("model gone")), errors.NotFound)
    assert isinstance(picky.error_for(ValueError("other")), errors.Unavailable)


# --- one call --------------------------------------------------------------------------------


def test_a_sync_call_records_its_outcome_and_maps_what_it_raises() -> None:
    metrics = Recorded()
    acme = ACME.using(metrics=metrics)
    with acme.call():
        pass
    with pytest.raises(errors.DeadlineExceeded) as raised:
        with acme.call():
            raise TimeoutError
    assert isinstance(raised.value.__cause__, TimeoutError)
    own = errors.Unauthenticated("bad key")
    with pytest.raises(errors.Unauthenticated) as passed:
        with acme.call():
            raise own
    assert passed.value is own
    assert [(v, o) for v, o, _ in metrics.calls] == [
        ("acme", "ok"),
        ("acme", "deadline_exceeded"),
        ("acme", "unauthenticated"),
    ]
    assert all(seconds >= 0 for _, _, seconds in metrics.calls)


def test_a_timeout_needs_async() -> None:
    with pytest.raises(TypeError, match="async with"):
        with ACME.call(timeout_s=1.0):
            pass


async def test_an_async_call_is_bounded_by_its_timeout() -> None:
    metrics = Recorded()
    acme = ACME.using(metrics=metrics)
    never = asyncio.Event()
    with pytest.raises(errors.DeadlineExceeded) as raised:
        async with acme.call(timeout_s=0.05, doing="making it"):
            await never.wait()
    assert raised.value.message == (
        "Acme did not answer within 0.05 s while making it (ACME_TIMEOUT_S)"
    )
    async with acme.call(timeout_s=5.0):
        await asyncio.sleep(0)
    with pytest.raises(errors.DeadlineExceeded) as inner:  # a timeout from within the request
        async with acme.call(timeout_s=5.0):
            raise TimeoutError
    assert inner.value.message == "Acme did not answer in time (ACME_TIMEOUT_S)"
    assert [o for _, o, _ in metrics.calls] == ["deadline_exceeded", "ok", "deadline_exceeded"]
    assert metrics.calls[0][2] >= 0.04


async def test_cancellation_passes_through_and_is_counted() -> None:
    metrics = Recorded()
    acme = ACME.using(metrics=metrics)
    inside = asyncio.Event()

    async def request() -> None:
        async with acme.call(timeout_s=30.0):
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(request())
    await asyncio.wait_for(inside.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [o for _, o, _ in metrics.calls] == ["cancelled"]


async def test_a_stream_closed_by_its_reader_is_cancelled_not_failed() -> None:
    metrics = Recorded()
    acme = ACME.using(metrics=metrics)

    async def stream() -> Any:
        async with acme.call():
            for n in range(10):
                yield n

    chunks = stream()
    assert await anext(chunks) == 0
    await chunks.aclose()
    assert [o for _, o, _ in metrics.calls] == ["cancelled"]
