"""The one place where chat providers' exceptions become ``avatarchat.errors`` (gRPC codes).

All three backends speak the OpenAI chat-completions API through SDKs of the same make
(``openai`` for ``local`` and ``openai``, ``groq`` for ``groq``), so one mapping serves them:

- a bad key: UNAUTHENTICATED; a refused request: PERMISSION_DENIED;
- a rate limit (429): RESOURCE_EXHAUSTED, with the provider's ``retry-after`` passed on;
- a timeout: DEADLINE_EXCEEDED; no connection, a 5xx, a model that is gone: UNAVAILABLE;
- a prompt longer than the model's context (400): INVALID_ARGUMENT.

The gRPC interceptor (``avatarchat.grpc_server``) turns those into status codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import groq
import openai

from avatarchat import errors

MODEL_GONE_CODES = {"model_decommissioned", "model_not_found"}

_Auth = (openai.AuthenticationError, groq.AuthenticationError)
_Denied = (openai.PermissionDeniedError, groq.PermissionDeniedError)
_RateLimit = (openai.RateLimitError, groq.RateLimitError)
_Timeout = (openai.APITimeoutError, groq.APITimeoutError, TimeoutError)
_Connection = (openai.APIConnectionError, groq.APIConnectionError)
_Status = (openai.APIStatusError, groq.APIStatusError)
_ApiError = (openai.APIError, groq.APIError)
_BadRequest = (openai.BadRequestError, groq.BadRequestError)
_NotFound = (openai.NotFoundError, groq.NotFoundError)


@dataclass(frozen=True)
class Provider:
    """Names used in error messages, so they say which setting to look at."""

    label: str  # "Groq", "the OpenAI-compatible server", "the local llama-server"
    key_setting: str  # e.g. GROQ_API_KEY
    timeout_setting: str


def error_body(exc: BaseException) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    body = body if isinstance(body, dict) else {}
    inner = body.get("error", body)
    return inner if isinstance(inner, dict) else {}


def is_model_gone(exc: BaseException) -> bool:
    """The model is decommissioned or unknown: worth trying the next one in the list."""
    if not isinstance(exc, _BadRequest + _NotFound):
        return False
    code = error_body(exc).get("code")
    return code in MODEL_GONE_CODES or (isinstance(exc, _NotFound) and "model" in str(exc).lower())


def is_context_overflow(exc: BaseException) -> bool:
    body = error_body(exc)
    text = f"{body.get('type', '')} {body.get('code', '')} {body.get('message', '')}".lower()
    return isinstance(exc, _BadRequest) and ("context" in text and "exceed" in text)


def retry_after_s(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def service_error(exc: BaseException, provider: Provider) -> errors.ServiceError:
    """The domain error for any exception a provider call raised."""
    if isinstance(exc, errors.ServiceError):
        return exc
    detail = error_body(exc).get("message") if isinstance(exc, _ApiError) else None
    detail = str(detail or exc or type(exc).__name__)
    name = provider.label
    if isinstance(exc, _Auth):
        return errors.Unauthenticated(
            f"{name} rejected the API key ({provider.key_setting}): {detail}"
        )
    if isinstance(exc, _Denied):
        return errors.PermissionDenied(f"{name} refused the request: {detail}")
    if isinstance(exc, _RateLimit):
        return errors.ResourceExhausted(f"{name} rate limit reached: {detail}", retry_after_s(exc))
    if isinstance(exc, _Timeout):
        return errors.DeadlineExceeded(
            f"{name} did not answer in time ({provider.timeout_setting})"
        )
    if isinstance(exc, _Connection):
        return errors.Unavailable(f"cannot reach {name}: {detail}")
    if is_context_overflow(exc):
        return errors.InvalidArgument(
            f"the conversation is too long for the model's context: {detail} "
            "(AVATARCHAT_LLM_CONTEXT_TOKENS, AVATARCHAT_LLM_HISTORY_WINDOW)"
        )
    if is_model_gone(exc):
        return errors.Unavailable(f"no configured model is available at {name}: {detail}")
    if isinstance(exc, _Status):
        return errors.Unavailable(f"{name} error {exc.status_code}: {detail}")
    return errors.Unavailable(f"{name} call failed: {detail}")
