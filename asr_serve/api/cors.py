"""CORS, off by default: Starlette's ``CORSMiddleware`` with the application's settings, and
the same origins for the WebSocket doors.

Browsers apply no CORS to WebSockets: any page may open one to any server, and the browser
sends the page's ``Origin`` with the handshake. With API keys off, or a key a page holds,
that lets any web site use the doors from its visitors' browsers, so the doors check
``Origin`` themselves: a browser's handshake is accepted from the server's own origin (the
page at ``/``) and from ``cors.allow_origins``. Clients that are not browsers send no
``Origin`` and are not affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection

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


def origin_allowed(connection: HTTPConnection, config: CorsConfig) -> bool:
    """Whether a WebSocket handshake may go on: no ``Origin`` (not a browser), the server's
    own origin (its host, as the client addressed it), or an origin the CORS settings
    allow."""
    origin = connection.headers.get("origin")
    if origin is None or "*" in config.allow_origins or origin in config.allow_origins:
        return True
    host = connection.headers.get("host", "")
    return bool(host) and urlsplit(origin).netloc.lower() == host.lower()
