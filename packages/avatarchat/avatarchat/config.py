"""Typed configuration read from environment variables, once, at start.

Each service describes its settings as a frozen dataclass built by ``from_env(environ)``. The
``Env`` reader converts and validates each value and fails fast with a ``ConfigError`` that names
the variable, so a typo in a deployment is caught before anything starts listening.
Tests pass ``environ={...}`` instead of patching ``os.environ``.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A configuration value is missing or invalid. The message names the variable."""


class Env:
    """Reads typed values from an environment mapping."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def _raw(self, name: builtins.str) -> builtins.str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def str(self, name: builtins.str, default: builtins.str | None = None) -> builtins.str:
        value = self._raw(name)
        if value is None:
            if default is None:
                raise ConfigError(f"{name} is required but not set")
            return default
        return value

    def optional_str(self, name: builtins.str) -> builtins.str | None:
        return self._raw(name)

    def int(
        self, name: builtins.str, default: int, *, min: int | None = None, max: int | None = None
    ) -> int:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {value!r}") from None
        _check_range(name, number, min, max)
        return number

    def float(
        self,
        name: builtins.str,
        default: float,
        *,
        min: float | None = None,
        max: float | None = None,
    ) -> float:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
        if number != number:  # NaN
            raise ConfigError(f"{name} must be a number, got {value!r}")
        _check_range(name, number, min, max)
        return number

    def bool(self, name: builtins.str, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")

    def choice(
        self, name: builtins.str, default: builtins.str, choices: tuple[builtins.str, ...]
    ) -> builtins.str:
        value = self.str(name, default).lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def list(
        self, name: builtins.str, default: tuple[builtins.str, ...] = ()
    ) -> tuple[builtins.str, ...]:
        """A comma-separated list; blank items are dropped."""
        value = self._raw(name)
        if value is None:
            return default
        return tuple(item.strip() for item in value.split(",") if item.strip())


def _check_range(name: str, value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise ConfigError(f"{name} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ConfigError(f"{name} must be <= {hi}, got {value}")


@dataclass(frozen=True)
class RuntimeConfig:
    """Settings every service shares: logging, NATS and shutdown."""

    log_level: str
    log_format: str  # "auto" (JSON unless a TTY), "json" or "console"
    nats_url: str
    shutdown_grace_s: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RuntimeConfig:
        env = Env(environ)
        return cls(
            log_level=env.choice(
                "AVATARCHAT_LOG_LEVEL", "info", ("debug", "info", "warning", "error")
            ),
            log_format=env.choice("AVATARCHAT_LOG_FORMAT", "auto", ("auto", "json", "console")),
            nats_url=env.str("AVATARCHAT_NATS_URL", "nats://127.0.0.1:4222"),
            shutdown_grace_s=env.float("AVATARCHAT_SHUTDOWN_GRACE_S", 10.0, min=0, max=300),
        )
