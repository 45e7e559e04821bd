import pytest

from avatarchat.config import ConfigError, Env, RuntimeConfig


def test_defaults_apply_when_unset_or_blank() -> None:
    env = Env({"A": "  "})
    assert env.int("A", 3) == 3
    assert env.str("B", "x") == "x"
    assert env.list("C", ("d",)) == ("d",)


@pytest.mark.parametrize(
    ("method", "value", "needle"),
    [
        ("int", "abc", "must be an integer"),
        ("int", "-1", "must be >= 0"),
        ("float", "nan", "must be a number"),
        ("float", "1e9", "must be <= 10"),
        ("bool", "maybe", "must be true or false"),
    ],
)
def test_bad_values_name_the_variable(method: str, value: str, needle: str) -> None:
    env = Env({"AVATARCHAT_X": value})
    with pytest.raises(ConfigError) as info:
        if method == "bool":
            env.bool("AVATARCHAT_X", False)
        else:
            getattr(env, method)("AVATARCHAT_X", 1, min=0, max=10)
    assert "AVATARCHAT_X" in str(info.value)
    assert needle in str(info.value)


def test_required_and_choice() -> None:
    with pytest.raises(ConfigError, match="GROQ_API_KEY is required"):
        Env({}).str("GROQ_API_KEY")
    with pytest.raises(ConfigError, match="AVATARCHAT_LOG_LEVEL must be one of"):
        RuntimeConfig.from_env({"AVATARCHAT_LOG_LEVEL": "loud"})
    assert Env({"B": "ON"}).bool("B", False) is True
    assert Env({"L": "a, ,b"}).list("L") == ("a", "b")


def test_runtime_config_reads_injected_environ() -> None:
    config = RuntimeConfig.from_env(
        {"AVATARCHAT_NATS_URL": "nats://n:1", "AVATARCHAT_SHUTDOWN_GRACE_S": "3"}
    )
    assert config.nats_url == "nats://n:1"
    assert config.shutdown_grace_s == 3.0
    assert config.log_format == "auto"


def test_self_signed_certificate_is_created_once(tmp_path) -> None:
    import ssl

    from avatarchat.selfsigned import ensure_certificate

    cert, key = ensure_certificate(tmp_path / "tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)  # raises if the pair is unusable
    mtime = cert.stat().st_mtime
    assert ensure_certificate(tmp_path / "tls") == (cert, key)
    assert cert.stat().st_mtime == mtime
