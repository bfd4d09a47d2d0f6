"""CORS: off unless origins are configured; then Starlette's CORS answers preflights."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from asr_serve.api.cors import add_cors
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
