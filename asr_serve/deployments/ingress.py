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
from starlette.responses import JSONResponse, Response

from asr_serve import __version__
from asr_serve.api.formats import render
from asr_serve.api.protocol import HealthResponse, ModelCard, ModelList
from asr_serve.api.upload import read_upload
from asr_serve.audio.decode import DecodedAudio
from asr_serve.config import AppConfig
from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.errors import (
    ASRServeError,
    InvalidParameterError,
    MethodNotAllowedError,
    NotFoundError,
    OverloadedError,
)
from asr_serve.pipeline import TranscriptionPipeline

logger = logging.getLogger("ray.serve")

app = FastAPI(
    title="asr-serve",
    version=__version__,
    description="Speech recognition for the FunASR model family on Ray Serve; "
    "OpenAI-compatible audio API.",
)

#: How long ``/ready`` waits for each deployment to answer.
READY_PROBE_TIMEOUT_S = 2.0


def error_response(exc: ASRServeError) -> JSONResponse:
    headers = {}
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
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
        self.decoder = decoder
        self.models = models
        self.pipeline = TranscriptionPipeline(
            self.config, decode=self._decode, transcribe=self._transcribe
        )

    async def _call(self, response) -> object:
        try:
            return await response
        except (BackPressureError, DeploymentUnavailableError) as exc:
            raise _as_api_error(exc) from None

    async def _decode(self, data: bytes) -> DecodedAudio:
        return await self._call(self.decoder.decode.remote(data))

    async def _transcribe(
        self, model: str, audio: np.ndarray, options: TranscribeOptions
    ) -> EngineResult:
        return await self._call(self.models[model].transcribe.remote(audio, options))

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(self, request: Request) -> Response:
        """OpenAI's ``audio.transcriptions.create``: multipart ``file`` plus form fields."""
        upload = await read_upload(request, max_bytes=self.config.limits.max_upload_bytes)
        done = await self.pipeline.run(upload)
        return render(
            done.result,
            done.request.response_format,
            model=done.model,
            words="word" in done.request.timestamp_granularities,
        )

    @app.get("/v1/models")
    async def list_models(self) -> ModelList:
        return ModelList(
            data=[
                ModelCard(id=m.name, engine=m.engine, description=m.description)
                for m in self.config.models
            ]
        )

    @app.get("/v1/models/{name}")
    async def get_model(self, name: str) -> ModelCard:
        from asr_serve.errors import ModelNotFoundError

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
