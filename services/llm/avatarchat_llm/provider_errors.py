"""Chat providers as vendors of the shared base (``avatarchat.vendor_http``).

All three backends speak the OpenAI chat-completions API through SDKs of the same make
(``openai`` for ``local`` and ``openai``, ``groq`` for ``groq``), so one ``ChatProvider`` kind
serves them. The base maps statuses, timeouts and connection failures; on top of it a chat
provider knows two answers of its own:

- a prompt longer than the model's context (400): INVALID_ARGUMENT;
- a model that is decommissioned or unknown: UNAVAILABLE (and, in ``fallback``, a reason to
  try the next model).

A request the provider refuses for what we sent (400, 404, 413, 422) or for the account (402)
is UNAVAILABLE: it is the service's configuration at fault, not the caller's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import groq
import openai

from avatarchat import errors
from avatarchat.vendor_http import OTHER_STATUS, SdkErrors, StatusRule, Vendor, describe

MODEL_GONE_CODES = {"model_decommissioned", "model_not_found"}
SDK = SdkErrors.of(openai, groq)
CHAT_STATUSES: dict[int, StatusRule] = {
    status: OTHER_STATUS for status in (400, 402, 404, 413, 422)
}

_BadRequest = (openai.BadRequestError, groq.BadRequestError)
_NotFound = (openai.NotFoundError, groq.NotFoundError)


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


@dataclass(frozen=True)
class ChatProvider(Vendor):
    """A chat-completions provider reached through the ``groq`` or ``openai`` SDK."""

    statuses: Mapping[int, StatusRule] = field(default_factory=lambda: dict(CHAT_STATUSES))
    sdk: SdkErrors = SDK

    def special_error(self, exc: Exception) -> errors.ServiceError | None:
        if is_context_overflow(exc):
            return errors.InvalidArgument(
                f"the conversation is too long for the model's context: {_detail(exc)} "
                "(AVATARCHAT_LLM_CONTEXT_TOKENS, AVATARCHAT_LLM_HISTORY_WINDOW)"
            )
        if is_model_gone(exc):
            return errors.Unavailable(
                f"no configured model is available at {self.name}: {_detail(exc)}"
            )
        return None


def _detail(exc: BaseException) -> str:
    return describe(error_body(exc)) or str(exc)
