"""CORS, off by default: Starlette's ``CORSMiddleware`` with the application's settings."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from asr_serve.config import CorsConfig


def add_cors(app: FastAPI, config: CorsConfig) -> None:
    """Let the configured browser origins call the API; no origins, no middleware."""
    if not config.enabled:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=config.allow_origins,
        allow_methods=config.allow_methods,
        allow_headers=config.allow_headers,
        expose_headers=config.expose_headers,
        allow_credentials=config.allow_credentials,
        max_age=config.max_age_s,
    )
