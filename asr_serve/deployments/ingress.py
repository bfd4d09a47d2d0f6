"""Ingress: the HTTP entry, a Serve deployment over the API's routes.

The routes are :mod:`asr_serve.api` (``routes_*.py``); the request flow (validation,
decoding, pieces, cache, stitching) is
:class:`~asr_serve.serving.pipeline.TranscriptionPipeline`; the calls to the other
deployments are :class:`~asr_serve.deployments.calls.Downstream`. This class builds them
once per replica from its config and wires them together; the replica builds its FastAPI app
once it is constructed (:func:`asr_serve.api.asgi.build_api`).
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from asr_serve.api.asgi import INGRESS_ROUTERS, build_api
from asr_serve.api.auth import APIKeyVerifier
from asr_serve.api.state import IngressState
from asr_serve.api.upload import UploadBudget
from asr_serve.config import AppConfig
from asr_serve.deployments.calls import Downstream
from asr_serve.deployments.serve_metrics import CacheMetrics, DecoderMetrics, LiveSessionMetrics
from asr_serve.live.sessions import LiveSessions
from asr_serve.serving.cache import NO_CACHE, RedisCache, ResultCache
from asr_serve.serving.diarization import FileDiarizer
from asr_serve.serving.in_place import ReadInPlaceFirst
from asr_serve.serving.pipeline import TranscriptionPipeline

logger = logging.getLogger("ray.serve")


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    # A request waiting here (for its upload, the decoder or the model) is a cheap coroutine
    # (tests/README.md, "Slow clients"): room for many, so slow clients cannot take every
    # slot; uploads themselves are capped below this by limits.max_concurrent_uploads,
    # refused at once past it. Below 1000, Ray's default concurrency of an async actor, so
    # Serve's health checks and probes always find room: a replica whose requests fill the
    # actor's concurrency misses its health checks and is killed.
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
        api_keys = APIKeyVerifier.from_config(app_config.auth)
        logger.info("API key auth %s", "on" if api_keys.enabled else "off (no keys configured)")
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
            transcribe=downstream.live_transcribe(app_config.live.partial_model_wait_s),
            metrics=LiveSessionMetrics(),
            models=[m.name for m in app_config.models],
            default_model=app_config.default_model or app_config.models[0].name,
            embed=downstream.embed if downstream.diarizes else None,
            speakers=app_config.speakers,
            limits=app_config.limits,
        )
        self.state = IngressState(
            config=app_config,
            pipeline=pipeline,
            live=live,
            uploads=UploadBudget(
                app_config.limits.upload_budget_bytes, app_config.limits.max_concurrent_uploads
            ),
            api_keys=api_keys,
            ready=downstream.ready,
        )

    async def stats(self) -> dict:
        """What this replica holds now, for an operator's handle call
        (``serve.get_deployment_handle("Ingress", app).stats.remote()``): live sessions,
        partial results running, waiting and shed, utterances, where the finals' time went
        (per stage: count, mean and max since the replica started), and its asyncio tasks
        (which grow if something leaks). Prometheus has the totals; this is one replica,
        now."""
        live = self.state.live
        return {
            "sessions": live.active,
            "partials_running": live.scheduler.partials_running,
            "partials_waiting": live.scheduler.partials_waiting,
            "partials_shed": sum(live.metrics.shed.values()),
            "utterances": sum(live.metrics.utterances.values()),
            "final_stages": live.metrics.final_stage_times.as_ms(),
            "tasks": len(asyncio.all_tasks()),
        }

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this once the constructor is done: the replica's own app."""
        return build_api(
            INGRESS_ROUTERS,
            state=self.state,
            api_keys=self.state.api_keys,
            cors=self.state.config.cors,
            on_shutdown=self.state.pipeline.cache.aclose,
        )
