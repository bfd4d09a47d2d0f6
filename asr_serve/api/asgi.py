"""The FastAPI app, built once per ingress replica from that replica's settings and routes.

Built at replica start (Serve calls the ingress's ``__serve_build_asgi_app__`` after its
constructor), so middleware such as CORS is configured from the application's config
directly, and the routes find the replica's request flow in ``app.state``
(:mod:`asr_serve.api.state`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from fastapi import APIRouter, FastAPI

from asr_serve import __version__
from asr_serve.api import routes_audio, routes_live, routes_service
from asr_serve.api.auth import APIKeyVerifier
from asr_serve.api.cors import add_cors
from asr_serve.api.error_handlers import install_error_handlers
from asr_serve.api.request_log import RequestLog
from asr_serve.config import CorsConfig

#: Every route of the ingress.
INGRESS_ROUTERS = (
    routes_audio.router,
    routes_service.keyed,
    routes_live.router,
    routes_service.public,
)


def build_api(
    routers: Iterable[APIRouter],
    *,
    state: object,
    api_keys: APIKeyVerifier,
    cors: CorsConfig,
    on_shutdown: Callable[[], Awaitable[None]],
) -> FastAPI:
    """The app: ``routers``, ``app.state.ingress = state``, auth, error handlers, CORS, one
    log line per request and ``Server-Timing`` on every response.

    ``on_shutdown`` runs when the replica stops (Serve runs the ASGI lifespan), to close
    connections the request flow holds.
    """

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await on_shutdown()

    app = FastAPI(
        title="asr-serve",
        version=__version__,
        description="Speech recognition for the FunASR model family on Ray Serve; "
        "OpenAI-compatible audio API.",
        lifespan=lifespan,
    )
    app.state.ingress = state
    app.state.api_keys = api_keys
    for router in routers:
        app.include_router(router)
    install_error_handlers(app)
    add_cors(app, cors)  # so error responses carry CORS headers too
    app.add_middleware(RequestLog)  # outermost: it sees every response, errors' too
    return app
