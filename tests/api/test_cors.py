"""CORS: off unless origins are configured; then Starlette's CORS answers preflights. The
WebSocket doors take the same origins, and their own."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import HTTPConnection

from asr_serve.api.cors import add_cors, origin_allowed
from asr_serve.config import CorsConfig

PREFLIGHT = {
    "Origin": "https://app.example.com",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "Authorization",
}


def _client(config: CorsConfig) -> TestClient:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict:
        return {"ok": True}

    add_cors(app, config)
    return TestClient(app)


def test_off_by_default() -> None:
    client = _client(CorsConfig())
    resp = client.get("/ping", headers={"Origin": "https://app.example.com"})
    assert resp.status_code == 200 and "access-control-allow-origin" not in resp.headers
    assert "access-control-allow-origin" not in client.options("/ping", headers=PREFLIGHT).headers


def test_configured_origin_is_allowed_others_are_not() -> None:
    client = _client(CorsConfig(allow_origins=["https://app.example.com"]))
    preflight = client.options("/ping", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    resp = client.get("/ping", headers={"Origin": "https://app.example.com"})
    assert resp.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-request-id" in resp.headers["access-control-expose-headers"].lower()
    evil = client.get("/ping", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil.headers
    assert (
        client.options("/ping", headers={**PREFLIGHT, "Origin": "https://evil.example"}).status_code
        == 400
    )


def _handshake(**headers: str) -> HTTPConnection:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return HTTPConnection({"type": "websocket", "headers": raw})


@pytest.mark.parametrize(
    ("allowed", "headers", "accepted"),
    [
        ([], {"Host": "asr.example.com"}, True),  # not a browser: no Origin
        ([], {"Host": "asr.example.com", "Origin": "https://asr.example.com"}, True),  # its page
        ([], {"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:8000"}, True),
        ([], {"Host": "ASR.example.com", "Origin": "https://asr.EXAMPLE.com"}, True),
        ([], {"Host": "asr.example.com", "Origin": "https://evil.example"}, False),
        ([], {"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:9000"}, False),
        ([], {"Origin": "https://asr.example.com"}, False),  # no Host to compare with
        (["https://app.example.com"], {"Host": "a", "Origin": "https://app.example.com"}, True),
        (["https://app.example.com"], {"Host": "a", "Origin": "https://evil.example"}, False),
        (["*"], {"Host": "a", "Origin": "https://evil.example"}, True),
        ([], {"Host": "a", "Origin": "null"}, False),  # a sandboxed frame or a file: page
    ],
)
def test_a_browser_handshake_needs_an_allowed_origin(allowed, headers, accepted) -> None:
    connection = _handshake(**headers)
    assert origin_allowed(connection, CorsConfig(allow_origins=allowed)) is accepted
