"""EdgeConfig.from_env: defaults, binding rules, and clear errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatarchat.config import ConfigError
from avatarchat_edge.config import EdgeConfig


def test_defaults() -> None:
    config = EdgeConfig.from_env({})
    assert config.port == 8080
    assert config.host == "127.0.0.1" and config.localhost_only_reason
    assert config.llm_addr == "127.0.0.1:50052"
    assert config.stt_addr == "127.0.0.1:50051"
    assert config.avatar_addr == "127.0.0.1:50053"
    assert config.use_nats is True  # the avatar needs it
    assert config.runtime.nats_url == "nats://127.0.0.1:4222"
    assert config.tls_cert is None and config.scheme == "http"


def test_empty_address_means_not_deployed() -> None:
    config = EdgeConfig.from_env(
        {"AVATARCHAT_STT_ADDR": "", "AVATARCHAT_AVATAR_ADDR": " ", "AVATARCHAT_LLM_ADDR": "llm:1"}
    )
    assert (config.llm_addr, config.stt_addr, config.avatar_addr) == ("llm:1", None, None)
    assert config.use_nats is False
    forced = EdgeConfig.from_env({"AVATARCHAT_AVATAR_ADDR": "", "AVATARCHAT_EDGE_NATS": "on"})
    assert forced.use_nats


def test_unprotected_edges_bind_localhost_only() -> None:
    config = EdgeConfig.from_env({})
    assert config.host == "127.0.0.1"
    assert "AVATARCHAT_EDGE_TOKENS is not set" in (config.localhost_only_reason or "")
    assert EdgeConfig.from_env({"AVATARCHAT_EDGE_HOST": "::1"}).host == "::1"
    # An origin allow-list is not authentication: it never opens the edge to the network.
    for env in (
        {"AVATARCHAT_EDGE_HOST": "0.0.0.0"},
        {"AVATARCHAT_EDGE_HOST": "0.0.0.0", "AVATARCHAT_EDGE_ALLOWED_ORIGINS": "https://x.io"},
    ):
        with pytest.raises(ConfigError, match=r"AVATARCHAT_EDGE_HOST=0\.0\.0\.0 would let"):
            EdgeConfig.from_env(env)
    assert EdgeConfig.from_env({"AVATARCHAT_EDGE_ALLOWED_ORIGINS": "https://x.io"}).host == (
        "127.0.0.1"
    )


@pytest.mark.parametrize(
    "env", [{"AVATARCHAT_EDGE_TOKENS": "abc"}, {"AVATARCHAT_EDGE_PUBLIC": "true"}]
)
def test_protected_edges_listen_everywhere(env: dict[str, str]) -> None:
    config = EdgeConfig.from_env(env)
    assert config.host == "0.0.0.0" and config.localhost_only_reason is None
    assert EdgeConfig.from_env({**env, "AVATARCHAT_EDGE_HOST": "10.0.0.5"}).host == "10.0.0.5"


def test_tokens_are_not_in_repr() -> None:
    config = EdgeConfig.from_env({"AVATARCHAT_EDGE_TOKENS": "very-secret-token, second"})
    assert config.tokens == ("very-secret-token", "second")
    assert "very-secret-token" not in repr(config)


def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("y")
    config = EdgeConfig.from_env(
        {"AVATARCHAT_EDGE_TLS_CERT": str(cert), "AVATARCHAT_EDGE_TLS_KEY": str(key)}
    )
    assert config.scheme == "https"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"AVATARCHAT_EDGE_PORT": "http"}, "AVATARCHAT_EDGE_PORT"),
        ({"AVATARCHAT_EDGE_PORT": "70000"}, "AVATARCHAT_EDGE_PORT"),
        ({"AVATARCHAT_LLM_ADDR": "nohostport"}, "AVATARCHAT_LLM_ADDR"),
        ({"AVATARCHAT_STT_ADDR": "host:0"}, "AVATARCHAT_STT_ADDR"),
        ({"AVATARCHAT_EDGE_ALLOWED_ORIGINS": "example.org"}, "AVATARCHAT_EDGE_ALLOWED_ORIGINS"),
        ({"AVATARCHAT_EDGE_ALLOWED_ORIGINS": "https://x.org/path"}, "ALLOWED_ORIGINS"),
        ({"AVATARCHAT_EDGE_TLS_CERT": "/nope.pem"}, "AVATARCHAT_EDGE_TLS_KEY"),
        (
            {"AVATARCHAT_EDGE_TLS_CERT": "/nope.pem", "AVATARCHAT_EDGE_TLS_KEY": "/nope.key"},
            "AVATARCHAT_EDGE_TLS_CERT",
        ),
        ({"AVATARCHAT_EDGE_RATE_PER_S": "0"}, "AVATARCHAT_EDGE_RATE_PER_S"),
        ({"AVATARCHAT_EDGE_MAX_TEXT_CHARS": "lots"}, "AVATARCHAT_EDGE_MAX_TEXT_CHARS"),
        ({"AVATARCHAT_EDGE_NATS": "maybe"}, "AVATARCHAT_EDGE_NATS"),
        ({"AVATARCHAT_NATS_URL": ""}, None),  # blank means default: fine
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str | None) -> None:
    if variable is None:
        EdgeConfig.from_env(env)
        return
    with pytest.raises(ConfigError, match=variable):
        EdgeConfig.from_env(env)
