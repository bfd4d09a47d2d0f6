"""CORS, off by default, configured from the application's config.

The FastAPI app is built (and frozen by ``@serve.ingress``) at import time, before the
ingress replica has its config, so the middleware is added at import time and reads its
settings on the first request; Starlette's own ``CORSMiddleware`` does the work.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send


class CorsConfig(BaseModel):
    """``args.cors``: which browser origins may call the API. No origins: CORS is off."""

    model_config = ConfigDict(extra="forbid")

    #: Exact origins (``https://app.example.com``) or ``["*"]``; empty turns CORS off.
    allow_origins: list[str] = Field(default_factory=list)
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST"])
    allow_headers: list[str] = Field(
        default_factory=lambda: ["Authorization", "Content-Type", "X-Request-ID"]
    )
    #: Headers a browser script may read on the response.
    expose_headers: list[str] = Field(default_factory=lambda: ["X-Request-ID", "Retry-After"])
    #: Keys travel in ``Authorization``, not cookies; credentials stay off unless needed.
    allow_credentials: bool = False
    #: How long a browser may cache a preflight answer.
    max_age_s: int = Field(600, ge=0)

    @property
    def enabled(self) -> bool:
        return bool(self.allow_origins)


class ConfiguredCORSMiddleware:
    """Starlette's ``CORSMiddleware`` with settings read lazily from ``settings()``."""

    def __init__(self, app: ASGIApp, settings: Callable[[], CorsConfig]) -> None:
        self.app = app
        self._settings = settings
        self._handler: ASGIApp | None = None

    def _build(self) -> ASGIApp:
        config = self._settings()
        if not config.enabled:
            return self.app
        return CORSMiddleware(
            self.app,
            allow_origins=config.allow_origins,
            allow_methods=config.allow_methods,
            allow_headers=config.allow_headers,
            expose_headers=config.expose_headers,
            allow_credentials=config.allow_credentials,
            max_age=config.max_age_s,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan runs before the config is there
            await self.app(scope, receive, send)
            return
        if self._handler is None:
            self._handler = self._build()
        await self._handler(scope, receive, send)
