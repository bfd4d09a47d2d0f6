"""The app factory: errors in OpenAI's shape whatever raised them, auth, shutdown hook."""

from __future__ import annotations

import logging

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException

from asr_serve.api.app import build_api
from asr_serve.api.auth import APIKeyVerifier, authenticated
from asr_serve.config import CorsConfig
from asr_serve.errors import InvalidAudioError

router = APIRouter()
keyed = APIRouter(dependencies=[Depends(authenticated)])


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("engine exploded")


@router.get("/conflict")
async def conflict() -> None:
    raise HTTPException(status_code=409, detail="already there")


@router.get("/bad-audio")
async def bad_audio() -> None:
    raise InvalidAudioError("not audio", param="file")


@keyed.get("/secret")
async def secret() -> dict:
    return {"ok": True}


def _client(keys: list[str] | None = None, closed: list[bool] | None = None) -> TestClient:
    async def on_shutdown() -> None:
        if closed is not None:
            closed.append(True)

    app = build_api(
        [router, keyed],
        state=None,
        api_keys=APIKeyVerifier(keys or []),
        cors=CorsConfig(),
        on_shutdown=on_shutdown,
    )
    return TestClient(app, raise_server_exceptions=False)


def _error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["code"] == code
    return body


def test_an_unexpected_exception_is_a_500_in_the_api_shape_logged_once(caplog) -> None:
    caplog.set_level(logging.INFO, logger="ray.serve")
    resp = _client().get("/boom", headers={"X-Request-ID": "req-123"})
    body = _error(resp, 500, "internal_error")
    assert body["type"] == "server_error" and "req-123" in body["message"]
    assert "engine exploded" not in body["message"]  # internals stay in the log
    failures = [r for r in caplog.records if r.exc_info]
    assert len(failures) == 1 and "req-123" in failures[0].getMessage()
    assert "engine exploded" in str(failures[0].exc_info[1])


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/nowhere", 404, "not_found"),
        ("post", "/boom", 405, "method_not_allowed"),
        ("get", "/conflict", 409, "invalid_request"),
        ("get", "/bad-audio", 400, "invalid_audio"),
    ],
)
def test_http_errors_keep_their_status(method: str, path: str, status: int, code: str) -> None:
    body = _error(getattr(_client(), method)(path), status, code)
    if status == 409:
        assert body["message"] == "already there"


def test_keyed_routes_need_the_key() -> None:
    client = _client(keys=["k1"])
    _error(client.get("/secret"), 401, "invalid_api_key")
    assert client.get("/secret", headers={"Authorization": "Bearer k1"}).json() == {"ok": True}
    assert _client().get("/secret").status_code == 200  # no keys configured: open


def test_shutdown_runs_the_hook() -> None:
    closed: list[bool] = []
    with _client(closed=closed) as client:
        client.get("/conflict")
        assert closed == []
    assert closed == [True]


def test_a_refused_request_is_logged_once_without_traceback(caplog) -> None:
    """A client's mistake is one INFO line with the request id and the reason."""
    caplog.set_level(logging.DEBUG, logger="ray.serve")
    _client().get("/bad-audio", headers={"X-Request-ID": "req-7"})
    _client().get("/nowhere", headers={"X-Request-ID": "req-8"})
    lines = [r for r in caplog.records if r.name == "ray.serve"]
    assert [r.levelno for r in lines] == [logging.INFO, logging.INFO]
    assert not any(r.exc_info for r in lines)
    assert "req-7" in lines[0].getMessage() and "400 invalid_audio" in lines[0].getMessage()
    assert "not audio" in lines[0].getMessage() and "req-8" in lines[1].getMessage()
