"""Ingress: the HTTP entry. Routes only, each a few lines over the request flow.

The request flow (validation, decoding, pieces, cache, stitching) is
:class:`~asr_serve.serving.pipeline.TranscriptionPipeline`; the calls to the other
deployments are :class:`~asr_serve.deployments.calls.Downstream`; auth, error rendering and
CORS are :mod:`asr_serve.api`. The replica builds its FastAPI app once it is constructed
(:func:`asr_serve.api.app.build_api`), so the app is configured from this replica's config.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.websockets import WebSocket

from asr_serve.api.app import build_api
from asr_serve.api.auth import APIKeyVerifier, authenticated
from asr_serve.api.formats import cache_headers, render
from asr_serve.api.protocol import HealthResponse, ModelCard, ModelList
from asr_serve.api.request_log import note_request
from asr_serve.api.streaming import stream_transcription
from asr_serve.api.upload import UploadBudget, read_upload
from asr_serve.config import AppConfig
from asr_serve.deployments.calls import Downstream
from asr_serve.errors import ModelNotFoundError
from asr_serve.live.protocols import funasr_realtime, funasr_runtime, openai_realtime
from asr_serve.live.sessions import LiveSessions
from asr_serve.metrics import CacheMetrics, DecoderMetrics, LiveSessionMetrics
from asr_serve.serving.cache import NO_CACHE, RedisCache, ResultCache
from asr_serve.serving.diarization import FileDiarizer
from asr_serve.serving.in_place import ReadInPlaceFirst
from asr_serve.serving.pipeline import Transcription, TranscriptionPipeline
from asr_serve.web import index_html

logger = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class IngressState:
    """What the routes use, built once per replica."""

    config: AppConfig
    downstream: Downstream
    #: Uploaded audio to samples: read in place, or by the AudioDecoder deployment.
    decode: ReadInPlaceFirst
    pipeline: TranscriptionPipeline
    live: LiveSessions
    uploads: UploadBudget


def _state(connection: HTTPConnection) -> IngressState:
    return connection.app.state.ingress


State = Annotated[IngressState, Depends(_state)]

#: Routes behind the API key (when keys are configured).
keyed = APIRouter(dependencies=[Depends(authenticated)])
#: Liveness, readiness and the page: open.
public = APIRouter()


@keyed.post("/v1/audio/transcriptions")
async def transcriptions(request: Request, ingress: State) -> Response:
    """OpenAI's ``audio.transcriptions.create``: multipart ``file`` plus form fields."""
    upload = await read_upload(request, limits=ingress.config.limits, budget=ingress.uploads)
    job = await ingress.pipeline.start(upload)
    note_request(request, **job.log_fields())
    if job.request.stream:
        return await stream_transcription(ingress.pipeline.results(job), request)
    return _rendered(request, await ingress.pipeline.finish(job))


@keyed.post("/v1/audio/translations")
async def translations(request: Request, ingress: State) -> Response:
    """OpenAI's ``audio.translations.create``: English text, by a model that can translate."""
    upload = await read_upload(request, limits=ingress.config.limits, budget=ingress.uploads)
    job = await ingress.pipeline.start(upload, translate=True)
    note_request(request, **job.log_fields())
    return _rendered(request, await ingress.pipeline.finish(job))


def _rendered(request: Request, done: Transcription) -> Response:
    note_request(request, asr_ms=done.asr_ms)
    return render(
        done.result,
        done.request.response_format,
        model=done.model,
        words="word" in done.request.timestamp_granularities,
        logprobs="logprobs" in done.request.include,
        task="translate" if done.translate else "transcribe",
        headers=cache_headers(done.cache_hit),
        speakers=done.speakers or (),
    )


@keyed.get("/v1/models")
async def list_models(ingress: State) -> ModelList:
    return ModelList(data=[ModelCard.of(m) for m in ingress.config.models])


@keyed.get("/v1/models/{name}")
async def get_model(name: str, ingress: State) -> ModelCard:
    if name not in {m.name for m in ingress.config.models}:
        raise ModelNotFoundError(f"model {name!r} does not exist", param="model")
    return ModelCard.of(ingress.config.model(name))


# Live sessions: the API key is checked by ingress.live, from the header, OpenAI's browser
# subprotocol or ?api_key=, before the socket is accepted.


@public.websocket("/v1/realtime")
async def realtime(websocket: WebSocket, ingress: State) -> None:
    """OpenAI's Realtime transcription sessions (``client.realtime.connect``)."""
    await ingress.live.serve(websocket, openai_realtime.OpenAIRealtimeConnection)


@public.websocket("/v1/funasr/ws")
async def funasr_ws(websocket: WebSocket, ingress: State) -> None:
    """FunASR's runtime protocol (2pass, online, offline), whole files through the decoder."""
    await ingress.live.serve(
        websocket,
        funasr_runtime.FunASRRuntimeConnection,
        decode=functools.partial(ingress.decode, splitting=ingress.config.splitting),
    )


@public.websocket("/v1/funasr/realtime")
async def funasr_live(websocket: WebSocket, ingress: State) -> None:
    """funasr's Fun-ASR-Nano realtime protocol (START, HOTWORDS, LANGUAGE, COMMIT, STOP)."""
    await ingress.live.serve(websocket, funasr_realtime.FunASRRealtimeConnection)


@public.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    """A static page that tries the API from a browser; it calls only the public API."""
    return HTMLResponse(index_html())


@public.get("/health")
async def health() -> HealthResponse:
    """Liveness: the ingress answers. Does not wait for models."""
    return HealthResponse(status="ok")


@public.get("/ready")
async def ready(ingress: State) -> JSONResponse:
    """Readiness: every model has a loaded, warmed-up replica (503 until then)."""
    models = await ingress.downstream.ready()
    ok = all(models.values())
    body = HealthResponse(status="ok" if ok else "not_ready", models=models)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    # A request waiting here (for its upload, the decoder or the model) is a cheap coroutine
    # (measured 40-160 KiB here, as much in the proxy; tests/README.md): room for many, so slow
    # clients cannot take every slot; uploads themselves are capped below this by
    # limits.max_concurrent_uploads, refused at once past it. Below 1000, Ray's default
    # concurrency of an async actor, so Serve's health checks and probes always find room:
    # at 2048 (then also the actor's concurrency) a replica holding ~2000 trickled uploads
    # missed its health checks and was killed.
    max_ongoing_requests=768,
    max_queued_requests=512,
    # Past both: 503 with Retry-After from Serve's proxy, at once.
    backpressure_config={"status_code": 503, "retry_after_s": 1},
    graceful_shutdown_timeout_s=60,
)
@serve.ingress()
class Ingress:
    def __init__(
        self,
        decoder: DeploymentHandle,
        models: dict[str, DeploymentHandle],
        config: dict,
        speakers: DeploymentHandle | None = None,
    ) -> None:
        app_config = AppConfig.model_validate(config)
        self.api_keys = APIKeyVerifier.from_config(app_config.auth)
        logger.info(
            "API key auth %s", "on" if self.api_keys.enabled else "off (no keys configured)"
        )
        downstream = Downstream(decoder, models, speakers)
        cache: ResultCache = (
            RedisCache(app_config.cache, CacheMetrics()) if app_config.cache.enabled else NO_CACHE
        )
        # What needs no decoding is read here; the rest goes to the AudioDecoder.
        decode = ReadInPlaceFirst(app_config, downstream.decode, DecoderMetrics())
        pipeline = TranscriptionPipeline(
            app_config,
            decode=decode,
            transcribe=downstream.transcribe,
            capabilities=downstream.capabilities,
            cache=cache,
            diarizer=(
                FileDiarizer(app_config.speakers, downstream.embed) if downstream.diarizes else None
            ),
        )
        live = LiveSessions(
            app_config.live,
            decode=downstream.live_decode(app_config.live.partial_max_wait_s),
            metrics=LiveSessionMetrics(),
            api_keys=self.api_keys,
            models=[m.name for m in app_config.models],
            default_model=app_config.default_model or app_config.models[0].name,
            embed=downstream.embed if downstream.diarizes else None,
            speakers=app_config.speakers,
        )
        self.state = IngressState(
            config=app_config,
            downstream=downstream,
            decode=decode,
            pipeline=pipeline,
            live=live,
            uploads=UploadBudget(
                app_config.limits.upload_budget_bytes, app_config.limits.max_concurrent_uploads
            ),
        )

    async def live_stats(self) -> dict:
        """Live sessions and asyncio tasks of this replica, for tests and operators."""
        live = self.state.live
        return {
            "sessions": live.active,
            "partials_running": live.scheduler.partials_running,
            "partials_shed": sum(live.metrics.shed.values()),
            "utterances": sum(live.metrics.utterances.values()),
            "tasks": len(asyncio.all_tasks()),
        }

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this once the constructor is done: the replica's own app."""
        return build_api(
            [keyed, public],
            state=self.state,
            api_keys=self.api_keys,
            cors=self.state.config.cors,
            on_shutdown=self.state.pipeline.cache.aclose,
        )
