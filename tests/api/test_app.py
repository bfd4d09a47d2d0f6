"""The app factory: errors in OpenAI's shape whatever raised them, auth, shutdown hook, one
log line per request and Server-Timing on every response."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException
from starlette.requests import Request

from asr_serve.api.asgi import build_api
from asr_serve.api.auth import APIKeyVerifier, authenticated
from asr_serve.api.request_log import note_request
from asr_serve.config import CorsConfig
from asr_serve.errors import InvalidAudioError, OverloadedError
from asr_serve.timing import ENGINE, UPLOAD, record
from tests.test_timing import entries

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


@router.get("/busy")
async def busy() -> None:
    raise OverloadedError("queue full", retry_after_s=2)


@router.get("/work")
async def work(request: Request) -> dict:
    note_request(request, model="m", audio_s=4.2)
    return {"ok": True}


@router.get("/staged")
async def staged() -> dict:
    record(UPLOAD, 0.0021)
    record(ENGINE, 0.0843)
    return {"ok": True}


@router.get("/ready")
async def ready() -> dict:
    return {"ok": True}


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


def _lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "ray.serve"]


def test_a_refused_request_is_logged_once_without_traceback(caplog) -> None:
    """A client's mistake is one INFO line with the status and the reason."""
    caplog.set_level(logging.DEBUG, logger="ray.serve")
    _client().get("/bad-audio")
    _client().get("/nowhere")
    lines = _lines(caplog)
    assert [r.levelno for r in lines] == [logging.INFO, logging.INFO]
    assert not any(r.exc_info for r in lines)
    assert lines[0].getMessage().startswith("GET /bad-audio 400 ")
    assert "refused invalid_audio (param file): not audio" in lines[0].getMessage()
    assert lines[1].getMessage().startswith("GET /nowhere 404 ")


def test_each_request_is_one_line_with_what_the_route_noted(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="ray.serve")
    client = _client()
    client.get("/work")
    client.get("/busy")
    client.get("/ready")
    client.get("/boom")
    work, busy, ready, *boom = _lines(caplog)
    assert work.levelno == logging.INFO
    assert re.fullmatch(r"GET /work 200 [\d.]+ms model=m audio_s=4\.20", work.getMessage())
    assert busy.levelno == logging.WARNING  # overload is ours to watch, not a client mistake
    assert "GET /busy 503 " in busy.getMessage() and "refused overloaded" in busy.getMessage()
    assert ready.levelno == logging.DEBUG  # a passing probe
    # Our failure: its traceback once, then its line.
    assert [r.exc_info is not None for r in boom] == [True, False]
    assert boom[1].levelno == logging.WARNING and "GET /boom 500 " in boom[1].getMessage()


def test_every_response_says_where_its_time_went(caplog) -> None:
    """Server-Timing on answers, errors and unknown routes alike; the stages the request
    passed, then its total, also on its log line."""
    caplog.set_level(logging.DEBUG, logger="ray.serve")
    client = _client()
    staged = client.get("/staged")
    assert list(entries(staged.headers["server-timing"])) == [UPLOAD, ENGINE, "total"]
    stages = entries(staged.headers["server-timing"])
    assert stages[UPLOAD] == 2.1 and stages[ENGINE] == 84.3
    for path in ("/work", "/bad-audio", "/nowhere", "/boom"):
        assert list(entries(client.get(path).headers["server-timing"])) == ["total"], path
    line = _lines(caplog)[0].getMessage()
    assert re.fullmatch(r"GET /staged 200 [\d.]+ms ms=upload:2\.1,engine:84\.3", line)


def test_a_client_s_path_cannot_forge_a_line_or_reach_a_terminal_raw(caplog) -> None:
    """``%0A`` decodes to a newline and ``%1B`` to an escape: both are written escaped, and
    a long path is cut."""
    caplog.set_level(logging.DEBUG, logger="ray.serve")
    client = _client()
    client.get("/%0AINFO%20forged-line%1B[31m")
    client.get("/" + "x" * 30_000)
    forged, long = (r.getMessage() for r in _lines(caplog))
    assert forged.startswith("GET /\\x0aINFO forged-line\\x1b[31m 404 ")
    assert "\n" not in forged and "\x1b" not in forged
    assert len(long) < 1000 and "chars)" in long
