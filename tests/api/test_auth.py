"""API keys: where they come from, how a header is checked, and that a bad setup won't start."""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest
from starlette.requests import HTTPConnection

from asr_serve.api import auth
from asr_serve.api.auth import APIKeyVerifier, AuthConfig, AuthConfigError, load_keys
from asr_serve.config import AppConfig
from asr_serve.errors import AuthenticationError


def test_keys_from_env_and_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# team keys\nfile-key-1\n\nfile-key-2  # rotated 2025\n")
    config = AuthConfig(api_keys_file=keys_file)
    env = {"ASR_SERVE_API_KEYS": "env-key-1, env-key-2\nenv-key-3"}
    assert load_keys(config, env) == [
        "env-key-1",
        "env-key-2",
        "env-key-3",
        "file-key-1",
        "file-key-2",
    ]


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        ("sk-abc#def", ["sk-abc#def"]),
        ("#starts-with-hash", ["#starts-with-hash"]),
        ("a#1,b#2", ["a#1", "b#2"]),
        (" a , ,, b ,", ["a", "b"]),
        ("\n  a\t\n\nb  \n", ["a", "b"]),
        ("a # not a comment here", ["a # not a comment here"]),
    ],
)
def test_env_keys_are_taken_verbatim(value: str, keys: list[str]) -> None:
    """The variable has no comment syntax: ``#`` is part of a key, only , and newlines split."""
    assert load_keys(AuthConfig(), {"ASR_SERVE_API_KEYS": value}) == keys


def test_a_key_with_a_hash_is_checked_whole() -> None:
    verifier = APIKeyVerifier.from_config(AuthConfig(), {"ASR_SERVE_API_KEYS": "sk-abc#def"})
    verifier.check("Bearer sk-abc#def")
    with pytest.raises(AuthenticationError):
        verifier.check("Bearer sk-abc")


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("# comment\nk1\n", ["k1"]),
        ("   # indented comment\nk1", ["k1"]),
        ("k1  # rotated\nk2\t# tab comment", ["k1", "k2"]),
        ("sk-abc#def\n", ["sk-abc#def"]),
        ("sk-abc#def # note\n", ["sk-abc#def"]),
        ("k1, k2\n\n  k3  \n", ["k1", "k2", "k3"]),
    ],
)
def test_key_file_comments(tmp_path: Path, text: str, keys: list[str]) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(text)
    assert load_keys(AuthConfig(api_keys_file=keys_file), {}) == keys


@pytest.mark.parametrize("value", [",", " , \n ,", "\n\n"])
def test_env_set_but_without_a_key_refuses_to_start(value: str) -> None:
    """A configured variable that yields no key must not leave the API open."""
    with pytest.raises(AuthConfigError, match="holds no API key"):
        load_keys(AuthConfig(), {"ASR_SERVE_API_KEYS": value})


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "  # k1\n#k2\n"])
def test_key_file_without_a_key_refuses_to_start(tmp_path: Path, text: str) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(text)
    with pytest.raises(AuthConfigError, match="holds no API key"):
        load_keys(AuthConfig(api_keys_file=keys_file), {})


def test_empty_env_var_means_not_configured() -> None:
    anonymous = AuthConfig(anonymous=True)
    assert load_keys(anonymous, {"ASR_SERVE_API_KEYS": ""}) == []


def test_no_keys_and_anonymous_means_auth_off() -> None:
    verifier = APIKeyVerifier.from_config(AuthConfig(anonymous=True), environ={})
    assert not verifier.enabled
    verifier.check(None)  # everyone is let in


def test_keys_found_are_required_even_when_anonymous_is_allowed() -> None:
    verifier = APIKeyVerifier.from_config(
        AuthConfig(anonymous=True), environ={"ASR_SERVE_API_KEYS": "sk-1"}
    )
    with pytest.raises(AuthenticationError):
        verifier.check(None)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic c2VjcmV0",
        "secret-key",
        "Bearer wrong",
        "Bearer secret",
    ],
)
def test_bad_or_missing_key_is_401(header: str | None) -> None:
    verifier = APIKeyVerifier(["secret-key", "other-key"])
    with pytest.raises(AuthenticationError) as exc_info:
        verifier.check(header)
    body = exc_info.value.to_dict()["error"]
    assert exc_info.value.status_code == 401
    assert body["type"] == "authentication_error" and body["code"] == "invalid_api_key"
    assert "secret" not in body["message"]


@pytest.mark.parametrize(
    "header", ["Bearer secret-key", "bearer other-key", "  Bearer  other-key "]
)
def test_any_configured_key_passes(header: str) -> None:
    APIKeyVerifier(["secret-key", "other-key"]).check(header)


def test_comparison_is_constant_time_over_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key is compared with hmac.compare_digest, even after a match."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    APIKeyVerifier(["k1", "k2", "k3"]).check("Bearer k1")
    assert len(compared) == 3
    assert {len(a) for pair in compared for a in pair} == {32}  # digests: length never leaks


def test_no_keys_refuses_to_start_unless_anonymous(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match=r"no API key.*auth\.anonymous: true"):
        load_keys(AuthConfig(), {})
    with pytest.raises(AuthConfigError, match="no API key"):
        load_keys(AuthConfig(), {"ASR_SERVE_API_KEYS": ""})
    with pytest.raises(AuthConfigError, match="cannot read"):
        load_keys(AuthConfig(api_keys_file=tmp_path / "absent"), {})


def test_keys_cannot_be_put_in_the_config() -> None:
    """The config says where keys are; a key written into it is a validation error."""
    with pytest.raises(ValueError, match="api_keys"):
        AppConfig.model_validate(
            {
                "models": [{"name": "m", "engine": "funasr", "model": "x"}],
                "auth": {"api_keys": ["plain-text-key"]},
            }
        )


def _handshake(
    *, headers: dict[str, str] | None = None, query: str = "", subprotocols: tuple[str, ...] = ()
) -> HTTPConnection:
    """A WebSocket handshake's connection, as a route sees it before accepting."""
    return HTTPConnection(
        {
            "type": "websocket",
            "path": "/v1/realtime",
            "query_string": query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "subprotocols": list(subprotocols),
        }
    )


@pytest.mark.parametrize(
    "connection",
    [
        _handshake(headers={"Authorization": "Bearer k2"}),
        _handshake(subprotocols=("realtime", "openai-insecure-api-key.k2")),
        _handshake(query="model=m&api_key=k2"),
        # The header wins over the others.
        _handshake(headers={"Authorization": "Bearer k1"}, query="api_key=wrong"),
    ],
)
def test_a_websocket_key_from_the_header_a_subprotocol_or_the_query(connection) -> None:
    APIKeyVerifier(["k1", "k2"]).check_websocket(connection)


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        (_handshake(), "Missing API key"),
        (_handshake(subprotocols=("realtime",)), "Missing API key"),
        (_handshake(query="api_key="), "Missing API key"),
        (_handshake(headers={"Authorization": "Bearer wrong"}, query="api_key=k1"), "Incorrect"),
        (_handshake(subprotocols=("openai-insecure-api-key.k1x",)), "Incorrect"),
        (_handshake(query="api_key=k"), "Incorrect"),
    ],
)
def test_a_websocket_without_a_good_key_is_refused(connection, message: str) -> None:
    with pytest.raises(AuthenticationError, match=message) as exc_info:
        APIKeyVerifier(["k1", "k2"]).check_websocket(connection)
    assert "k1" not in exc_info.value.message


def test_websocket_auth_is_off_without_keys() -> None:
    APIKeyVerifier([]).check_websocket(_handshake())


def test_the_key_is_read_from_the_subprotocol_before_the_query() -> None:
    connection = _handshake(subprotocols=("openai-insecure-api-key.a",), query="api_key=b")
    assert auth.websocket_api_key(connection) == "a"
    assert auth.websocket_api_key(_handshake(query="api_key=b")) == "b"
    assert auth.websocket_api_key(_handshake()) is None
