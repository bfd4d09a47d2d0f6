"""Ingress: the HTTP entry. Parses, routes to the decoder and the model, renders.

It holds no model and decodes nothing; every error, wherever in the graph it was raised,
leaves here as one status code and the OpenAI error body.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes
# of the class-based ingress, or `request: Request` becomes a required query field.

import asyncio
import logging
import math

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from ray import serve
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response

from asr_serve import __version__
from asr_serve.api.cors import ConfiguredCORSMiddleware, CorsConfig
from asr_serve.api.formats import render
from asr_serve.api.protocol import HealthResponse, ModelCard, ModelList
from asr_serve.api.streaming import stream_transcription
from asr_serve.api.upload import read_upload
from asr_serve.audio.decode import DecodedAudio
from asr_serve.auth import APIKeyVerifier
from asr_serve.cache import ResultCache, cache_headers
from asr_serve.config import AppConfig
from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.errors import (
    ASRServeError,
    AuthenticationError,
    InvalidParameterError,
    MethodNotAllowedError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
)
from asr_serve.metrics import CacheMetrics
from asr_serve.pipeline import TranscriptionPipeline
from asr_serve.replica_retry import call_retrying_once
from asr_serve.web import index_html

logger = logging.getLogger("ray.serve")

app = FastAPI(
    title="asr-serve",
    version=__version__,
    description="Speech recognition for the FunASR model family on Ray Serve; "
    "OpenAI-compatible audio API.",
)


def _replica_cors() -> CorsConfig:
    """This replica's CORS settings: its config exists only once the ingress is built."""
    return serve.get_replica_context().servable_object.config.cors


app.add_middleware(ConfiguredCORSMiddleware, settings=_replica_cors)

#: How long ``/ready`` waits for each deployment to answer.
READY_PROBE_TIMEOUT_S = 2.0


def error_response(exc: ASRServeError) -> JSONResponse:
    headers = {}
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    elif isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, PayloadTooLargeError):
        # Close rather than drain: the server would otherwise read the rest of the upload.
        headers["Connection"] = "close"
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


@app.exception_handler(ASRServeError)
async def _on_api_error(_: Request, exc: ASRServeError) -> JSONResponse:
    return error_response(exc)


@app.exception_handler(RequestValidationError)
async def _on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"][1:]) or None
    return error_response(InvalidParameterError(f"invalid {param}: {first['msg']}", param=param))


@app.exception_handler(StarletteHTTPException)
async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 405:
        err: ASRServeError = MethodNotAllowedError(f"{request.method} is not allowed here")
    else:
        err = NotFoundError(f"no route {request.url.path}")
    return error_response(err)


def _as_api_error(exc: BaseException) -> ASRServeError | None:
    """Map Serve's own rejections to the API's errors; ``None`` for anything else."""
    if isinstance(exc, BackPressureError):
        return OverloadedError(
            "the service is at capacity; retry shortly", retry_after_s=exc._retry_after_s or 1.0
        )
    if isinstance(exc, DeploymentUnavailableError):
        return OverloadedError("the model is not available right now; retry shortly")
    return None


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=256,
    max_queued_requests=512,
    graceful_shutdown_timeout_s=60,
)
@serve.ingress(app)
class Ingress:
    def __init__(
        self, decoder: DeploymentHandle, models: dict[str, DeploymentHandle], config: dict
    ) -> None:
        self.config = AppConfig.model_validate(config)
        # `.options()` starts each handle's router now, so a new ingress replica (redeploy,
        # scale-up) learns the replicas before its first requests instead of holding them
        # as queued, against max_queued_requests, while it asks.
        self.decoder = decoder.options()
        self.models = {name: handle.options() for name, handle in models.items()}
        self.auth = APIKeyVerifier.from_config(self.config.auth)
        logger.info("API key auth %s", "on" if self.auth.enabled else "off (no keys configured)")
        cache = self.config.cache
        self.pipeline = TranscriptionPipeline(
            self.config,
            decode=self._decode,
            transcribe=self._transcribe,
            cache=ResultCache(cache, CacheMetrics()) if cache.enabled else None,
        )

    async def _call(self, call, target: str) -> object:
        """Await a downstream call, retried once if its replica died (it is idempotent)."""
        try:
            return await call_retrying_once(call, target=target)
        except (BackPressureError, DeploymentUnavailableError) as exc:
            raise _as_api_error(exc) from None

    async def _decode(self, data: bytes) -> DecodedAudio:
        return await self._call(lambda: self.decoder.decode.remote(data), "decoder")

    async def _transcribe(
        self, model: str, audio: np.ndarray, options: TranscribeOptions
    ) -> EngineResult:
        return await self._call(lambda: self.models[model].transcribe.remote(audio, options), model)

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(self, request: Request) -> Response:
        """OpenAI's ``audio.transcriptions.create``: multipart ``file`` plus form fields."""
        self.auth.check(request.headers.get("authorization"))  # before reading the body
        upload = await read_upload(request, max_bytes=self.config.limits.max_upload_bytes)
        job = await self.pipeline.start(upload)
        if job.request.stream:
            return await stream_transcription(self.pipeline.pieces(job))
        done = await self.pipeline.finish(job)
        return render(
            done.result,
            done.request.response_format,
            model=done.model,
            words="word" in done.request.timestamp_granularities,
            headers=cache_headers(done.cache_hit),
        )

    @app.get("/", include_in_schema=False)
    async def page(self) -> HTMLResponse:
        """A static page that tries the API from a browser; it calls only the public API."""
        return HTMLResponse(index_html())

    @app.get("/v1/models")
    async def list_models(self, request: Request) -> ModelList:
        self.auth.check(request.headers.get("authorization"))
        return ModelList(
            data=[
                ModelCard(id=m.name, engine=m.engine, description=m.description)
                for m in self.config.models
            ]
        )

    @app.get("/v1/models/{name}")
    async def get_model(self, name: str, request: Request) -> ModelCard:
        from asr_serve.errors import ModelNotFoundError

        self.auth.check(request.headers.get("authorization"))
        if name not in self.models:
            raise ModelNotFoundError(f"model {name!r} does not exist", param="model")
        m = self.config.model(name)
        return ModelCard(id=m.name, engine=m.engine, description=m.description)

    @app.get("/health")
    async def health(self) -> HealthResponse:
        """Liveness: the ingress answers. Does not wait for models."""
        return HealthResponse(status="ok")

    @app.get("/ready")
    async def ready(self) -> JSONResponse:
        """Readiness: every model has a loaded, warmed-up replica (503 until then)."""

        async def probe(handle: DeploymentHandle) -> bool:
            try:
                return bool(await asyncio.wait_for(handle.ready.remote(), READY_PROBE_TIMEOUT_S))
            except Exception:
                return False

        names = list(self.models)
        states = await asyncio.gather(*(probe(self.models[n]) for n in names))
        body = HealthResponse(
            status="ok" if all(states) else "not_ready",
            models=dict(zip(names, states, strict=True)),
        )
        return JSONResponse(body.model_dump(), status_code=200 if all(states) else 503)
