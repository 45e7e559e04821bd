"""The one base for calls to HTTP vendors: Groq, OpenAI-compatible servers, ElevenLabs, D-ID.

A ``Vendor`` says in one place what becomes of a vendor's failure, as a domain error
(``avatarchat.errors``, so a gRPC status code):

- an HTTP status, by one table (``STATUS_RULES``) that a vendor may amend (``statuses``):
  a rejected key is UNAUTHENTICATED, a refusal PERMISSION_DENIED, a bad request
  INVALID_ARGUMENT, a rate limit or an empty account RESOURCE_EXHAUSTED, anything else
  UNAVAILABLE;
- a rate limit's ``Retry-After`` (seconds, an HTTP-date, or the SDKs' ``retry-after-ms``) is
  passed on as ``retry_after_s``;
- a timeout is DEADLINE_EXCEEDED and names the setting to raise; a failed connection is
  UNAVAILABLE and names the URL setting;
- the exceptions of an OpenAI-style SDK (``groq``, ``openai``: ``SdkErrors``) mean the same.

``Vendor.call()`` wraps one request, from a worker thread (``with``) or on the event loop
(``async with``, which can also bound it with a timeout). It maps whatever the request raises,
logs a failure, and reports the outcome and duration to the vendor's ``metrics``.
Cancellation (and a consumer closing a stream) passes through untouched, counted as
``cancelled``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from types import ModuleType, TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from avatarchat import errors, log

_log = log.get("avatarchat.vendor")

# (error class, message); the message may use {vendor}, {status}, {detail}, {key_setting} and
# {doing} (" while <what the caller was doing>", or nothing).
StatusRule = tuple[type[errors.ServiceError], str]

STATUS_RULES: Mapping[int, StatusRule] = {
    400: (errors.InvalidArgument, "{vendor} refused the request{doing}: {detail}"),
    401: (
        errors.Unauthenticated,
        "{vendor} rejected the API key ({key_setting}){doing}: {detail}",
    ),
    402: (
        errors.ResourceExhausted,
        "the {vendor} account has run out of credits or quota{doing}: {detail}",
    ),
    403: (errors.PermissionDenied, "{vendor} refused access{doing}: {detail}"),
    413: (errors.InvalidArgument, "the request is too large for {vendor}{doing}: {detail}"),
    422: (errors.InvalidArgument, "{vendor} refused the request{doing}: {detail}"),
    429: (errors.ResourceExhausted, "{vendor} rate limit reached{doing}: {detail}"),
}
OTHER_STATUS: StatusRule = (errors.Unavailable, "{vendor} answered HTTP {status}{doing}: {detail}")

_TEXT_KEYS = ("description", "message", "msg", "details", "status")
DETAIL_LIMIT = 300


@runtime_checkable
class CallMetrics(Protocol):
    """Where ``Vendor.call`` reports each request (e.g. Prometheus counters)."""

    def observe_call(self, vendor: str, outcome: str, seconds: float) -> None:
        """``outcome``: ``ok``, ``cancelled``, or the lower-case gRPC code of the failure."""


@dataclass(frozen=True)
class SdkErrors:
    """The exception classes of OpenAI-style SDKs (``groq`` and ``openai`` are generated alike):
    ``APITimeoutError`` (a kind of ``APIConnectionError``), and ``APIStatusError`` with
    ``status_code``, ``response`` (its ``headers``) and ``body`` (the parsed error)."""

    timeout: tuple[type[BaseException], ...] = ()
    connection: tuple[type[BaseException], ...] = ()
    status: tuple[type[BaseException], ...] = ()

    @classmethod
    def of(cls, *sdks: ModuleType) -> SdkErrors:
        return cls(
            timeout=tuple(sdk.APITimeoutError for sdk in sdks),
            connection=tuple(sdk.APIConnectionError for sdk in sdks),
            status=tuple(sdk.APIStatusError for sdk in sdks),
        )


@dataclass(frozen=True)
class Vendor:
    """One vendor's names and rules. Subclasses may add vendor-specific errors
    (``special_error``); instances are constants, ``using`` adds the runtime parts."""

    name: str  # in messages: "Groq", "ElevenLabs", "D-ID"
    key_setting: str  # the setting that holds the key, e.g. GROQ_API_KEY
    timeout_setting: str  # the setting that bounds a request
    url_setting: str = ""  # the setting that holds the base URL
    label: str = ""  # in metrics and logs; the lower-case name by default
    statuses: Mapping[int, StatusRule] = field(default_factory=dict)  # amends STATUS_RULES
    transport_errors: tuple[type[BaseException], ...] = (OSError,)  # e.g. aiohttp.ClientError
    sdk: SdkErrors = SdkErrors()
    base_url: str = ""
    metrics: CallMetrics | None = None

    def using(self, *, base_url: str | None = None, metrics: CallMetrics | None = None) -> Self:
        changes: dict[str, Any] = {}
        if base_url is not None:
            changes["base_url"] = base_url
        if metrics is not None:
            changes["metrics"] = metrics
        return dataclasses.replace(self, **changes)

    @property
    def metric_label(self) -> str:
        return self.label or self.name.lower()

    def call(self, *, timeout_s: float | None = None, doing: str | None = None) -> VendorCall:
        """One request: ``with`` (a thread) or ``async with`` (the loop; ``timeout_s`` bounds
        it). ``doing`` ("creating the talk") goes into error messages."""
        return VendorCall(self, timeout_s=timeout_s, doing=doing)

    def status_error(
        self,
        status: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        doing: str | None = None,
    ) -> errors.ServiceError:
        """The error for an HTTP ``status``; ``body`` is the error body (bytes or parsed)."""
        kind, template = self.statuses.get(status) or STATUS_RULES.get(status) or OTHER_STATUS
        message = template.format(
            vendor=self.name,
            status=status,
            detail=describe(body) or "no details",
            key_setting=self.key_setting,
            doing=f" while {doing}" if doing else "",
        )
        if issubclass(kind, errors.ResourceExhausted):
            return kind(message, retry_after_s=retry_after_s(headers))
        return kind(message)

    def timeout_error(
        self, *, doing: str | None = None, after_s: float | None = None
    ) -> errors.DeadlineExceeded:
        """``after_s``: the bound that ran out, when it is known."""
        when = f"within {after_s:g} s" if after_s is not None else "in time"
        while_ = f" while {doing}" if doing else ""
        return errors.DeadlineExceeded(
            f"{self.name} did not answer {when}{while_} ({self.timeout_setting})"
        )

    def unreachable_error(self, exc: BaseException) -> errors.Unavailable:
        at = f" at {self.base_url}" if self.base_url else ""
        check = f"; check {self.url_setting} and the network" if self.url_setting else ""
        said = f": {exc}" if str(exc) else ""
        return errors.Unavailable(
            f"could not reach {self.name}{at} ({type(exc).__name__}{said}){check}"
        )

    def special_error(self, exc: Exception) -> errors.ServiceError | None:
        """A subclass's own reading of ``exc``, tried before the generic ones."""
        return None

    def error_for(self, exc: Exception, *, doing: str | None = None) -> errors.ServiceError:
        """The domain error for anything a request raised (a domain error stays as it is)."""
        if isinstance(exc, errors.ServiceError):
            return exc
        special = self.special_error(exc)
        if special is not None:
            return special
        if isinstance(exc, self.sdk.status):
            body = getattr(exc, "body", None)
            response = getattr(exc, "response", None)
            return self.status_error(
                int(getattr(exc, "status_code", 0)),
                body if body is not None else str(exc),
                getattr(response, "headers", None),
                doing=doing,
            )
        if isinstance(exc, (TimeoutError, *self.sdk.timeout)):
            return self.timeout_error(doing=doing)
        if isinstance(exc, self.transport_errors + self.sdk.connection):
            return self.unreachable_error(exc)
        while_ = f" while {doing}" if doing else ""
        return errors.Unavailable(
            f"{self.name} call failed{while_}: {str(exc)[:DETAIL_LIMIT] or type(exc).__name__}"
        )

    def record(self, outcome: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_call(self.metric_label, outcome, seconds)


class VendorCall:
    """One request to a vendor; made by ``Vendor.call``."""

    def __init__(
        self,
        vendor: Vendor,
        *,
        timeout_s: float | None = None,
        doing: str | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._vendor = vendor
        self._timeout_s = timeout_s
        self._doing = doing
        self._clock = clock
        self._started = 0.0
        self._timeout: asyncio.Timeout | None = None

    def __enter__(self) -> Self:
        if self._timeout_s is not None:
            raise TypeError("a vendor call with a timeout needs `async with`")
        self._started = self._clock()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    async def __aenter__(self) -> Self:
        self._started = self._clock()
        if self._timeout_s is not None:
            self._timeout = asyncio.timeout(self._timeout_s)
            await self._timeout.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        expired = False
        if self._timeout is not None:
            try:
                await self._timeout.__aexit__(kind, exc, tb)
            except TimeoutError as timed_out:  # our own timeout turned its cancel into this
                exc, expired = timed_out, True
        self._finish(exc, expired)

    def _finish(self, exc: BaseException | None, expired: bool = False) -> None:
        vendor = self._vendor
        seconds = self._clock() - self._started
        if exc is None:
            vendor.record("ok", seconds)
            return
        if not isinstance(exc, Exception):  # cancelled, or the stream's reader went away
            vendor.record("cancelled", seconds)
            return
        mapped = (
            vendor.timeout_error(doing=self._doing, after_s=self._timeout_s)
            if expired
            else vendor.error_for(exc, doing=self._doing)
        )
        vendor.record(mapped.code.name.lower(), seconds)
        _log.warning(
            "vendor.failed", vendor=vendor.metric_label, code=mapped.code.name, error=mapped.message
        )
        if mapped is not exc:
            raise mapped from exc


def retry_after_s(
    headers: Mapping[str, str] | None, *, now: Callable[[], float] = time.time
) -> float | None:
    """The wait a vendor asks for, in seconds: ``retry-after-ms``, else ``Retry-After`` as
    seconds or as an HTTP-date (a date in the past is 0). None when absent or unreadable."""
    if not headers:
        return None
    lowered = {str(name).lower(): str(value).strip() for name, value in headers.items()}
    millis = _seconds(lowered.get("retry-after-ms", ""))
    if millis is not None:
        return millis / 1000.0
    value = lowered.get("retry-after", "")
    seconds = _seconds(value)
    if seconds is not None or not value:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, says RFC 5322
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def _seconds(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return max(0.0, number) if math.isfinite(number) else None


def describe(body: Any) -> str:
    """The human part of a vendor's error body, at most ``DETAIL_LIMIT`` characters.

    Reads the shapes our vendors use: ``{"error": {"message"}}`` (Groq, OpenAI),
    ``{"detail": ...}`` with a message or a list of ``{"msg"}`` (ElevenLabs), and
    ``{"kind", "description"}`` (D-ID); raw bytes that are not JSON are shown as text."""
    return _describe(body)[:DETAIL_LIMIT]


def _describe(body: Any) -> str:
    if isinstance(body, bytes | bytearray):
        try:
            body = json.loads(body)
        except ValueError:
            return bytes(body[: DETAIL_LIMIT * 4]).decode("utf-8", "replace").strip()
    if body is None:
        return ""
    if isinstance(body, str):
        return body.strip()
    if isinstance(body, list):
        return "; ".join(text for text in map(_describe, body) if text)
    if isinstance(body, dict):
        for key in ("error", "detail"):
            if body.get(key):
                return _describe(body[key])
        kind = str(body.get("kind") or "")
        text = next((str(body[key]) for key in _TEXT_KEYS if body.get(key)), "")
        if kind and text:
            return f"{kind}: {text}"
        return kind or text or (json.dumps(body, default=str) if body else "")
    return str(body)
