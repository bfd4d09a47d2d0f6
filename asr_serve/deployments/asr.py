"""ASR: one deployment per model; loads it once per replica and batches across requests."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque

import numpy as np
import ray
from ray import serve

from asr_serve.config import SAMPLE_RATE, BatchingConfig, ModelConfig
from asr_serve.engines import EngineCapabilities, TranscribeOptions, create_engine
from asr_serve.engines.admission import QueueAdmission
from asr_serve.engines.batch import (
    BatchItem,
    CompanyWait,
    Transcribed,
    batch_cost,
    item_cost,
    run_batch,
    with_times,
)
from asr_serve.engines.fair import FairQueue
from asr_serve.errors import ASRServeError, InsufficientMemoryError

logger = logging.getLogger("ray.serve")

_DEFAULT_BATCHING = BatchingConfig()


@serve.deployment(
    ray_actor_options={"num_cpus": 1, "num_gpus": 0},
    # Must exceed max_batch_size or batches never fill (ray#43288); room for several
    # batches, so items queue here (where the fair queue releases them by client and
    # admission bounds their wait by time) rather than in the caller's router, which
    # retries a full replica with backoff of up to 0.5 s and whose queue admission cannot
    # see: keep it short.
    max_ongoing_requests=128,
    max_queued_requests=32,
    # A model that cannot load fails the deployment quickly with its message.
    max_constructor_retry_count=3,
    health_check_period_s=10,
    health_check_timeout_s=30,
    graceful_shutdown_timeout_s=60,
)
class ASR:
    def __init__(self, model: dict) -> None:
        from asr_serve.deployments.serve_metrics import ASRMetrics

        self.model = ModelConfig.model_validate(model)
        self.metrics = ASRMetrics(self.model.name)
        self.batching = self.model.batching
        #: Recent batch sizes and wall times, for :meth:`stats`.
        self.recent_batches: deque[int] = deque(maxlen=1024)
        self.recent_batch_seconds: deque[float] = deque(maxlen=1024)
        self.company = CompanyWait(self.batching.batch_wait_timeout_s)

        started = time.perf_counter()
        self.engine = create_engine(self.model)
        self.engine.load()
        warming = time.perf_counter()
        warmup_work_s = self.engine.warmup()
        self.admission = QueueAdmission.from_warmup(warmup_work_s, time.perf_counter() - warming)
        self.queue = FairQueue(self.batching.max_batch_size, self.engine.min_item_s)
        self.metrics.model_loaded.set(1)
        logger.info(
            "model %s (%s) loaded and warmed up in %.1f s",
            self.model.name,
            self.model.engine,
            time.perf_counter() - started,
        )

    def reconfigure(self, user_config: dict) -> None:
        """Apply a new ``user_config`` (batch size, wait, audio bound) without a restart."""
        self.batching = BatchingConfig.model_validate(user_config)
        self._batched.set_max_batch_size(self.batching.max_batch_size)
        self.queue.max_batch_size = self.batching.max_batch_size
        self.company.wait_s = self.batching.batch_wait_timeout_s
        logger.info("batching for %s set to %s", self.model.name, self.batching)

    async def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        admitted: bool = False,
        partial_wait_s: float | None = None,
        client: str = "",
    ) -> Transcribed | ASRServeError | None:
        """One item's audio; it shares an engine call with whatever else is waiting. Its
        result comes back with the times it spent here (:mod:`asr_serve.timing`).

        ``client`` (the ingress names it) is whose share of the replica the item takes
        (:mod:`asr_serve.engines.fair`). Refused (429 for a client over its share, else 503)
        if its queue wait would pass ``max_queue_wait_s``, or once it has, unless
        ``admitted``: a later piece of a long file whose first piece was admitted. The
        request's own errors (an option the model lacks; a refusal; out of memory even
        alone) are returned as values for the ingress to raise: Serve logs every exception
        a replica method raises as an ERROR with its traceback, which is for our own
        failures.

        With ``partial_wait_s`` the item is a live partial result, best effort: it is not
        admitted by time but goes in only behind every waiting request, and gives up (``None``)
        after that long (:mod:`asr_serve.live.partials`).
        """
        wait_s = self.company.arrived(time.perf_counter())
        try:
            self.engine.check_options(options)
        except ASRServeError as exc:
            return exc
        seconds = len(audio) / SAMPLE_RATE
        cost = item_cost(seconds, self.batching)
        if partial_wait_s is not None:
            placed = await self.queue.partial(client, seconds, cost, partial_wait_s)
            if placed is None:
                self.metrics.partials_shed.inc()
                return None
        else:
            placed = await self.admission.admitted(
                self.queue,
                client,
                seconds,
                cost,
                max_wait_s=self.batching.max_queue_wait_s,
                check=not admitted,
            )
            if isinstance(placed, ASRServeError):
                self.metrics.refused.inc(tags={"code": placed.code})
                return placed
        try:
            self._batched.set_batch_wait_timeout_s(wait_s)
            return await self._batched(BatchItem(audio, options, cost, placed))
        finally:
            self.queue.leave(placed)

    @serve.batch(
        max_batch_size=_DEFAULT_BATCHING.max_batch_size,
        batch_wait_timeout_s=_DEFAULT_BATCHING.batch_wait_timeout_s,
        batch_size_fn=batch_cost,
    )
    async def _batched(self, items: list[BatchItem]) -> list[Transcribed | InsufficientMemoryError]:
        tickets = [item.ticket for item in items if item.ticket is not None]
        with self.queue.running(tickets):
            started = time.perf_counter()
            self.company.started(len(items), started)
            for ticket in tickets:
                self.metrics.queue_wait.observe(started - ticket.enqueued_at)
            self.recent_batches.append(len(items))
            self.metrics.batch_size.observe(len(items))
            audio_s = sum(item.seconds for item in items)
            self.metrics.batch_audio_seconds.observe(audio_s)
            try:
                # In a thread, so the replica keeps accepting requests for the next batch.
                results = await asyncio.to_thread(
                    run_batch,
                    self.engine,
                    items,
                    on_oom=lambda _: self.metrics.out_of_memory.inc(),
                )
            except Exception:
                self.metrics.errors.inc()
                raise
        ended = time.perf_counter()
        wall_s = ended - started
        self.metrics.inference.observe(wall_s)
        self.metrics.audio_seconds.inc(audio_s)
        full = batch_cost(items) >= self.batching.max_batch_size
        self.admission.observe_batch(sum(t.work_s for t in tickets), wall_s, full=full)
        self.recent_batch_seconds.append(wall_s)
        return with_times(items, results, started, ended)

    def check_health(self) -> None:
        """Serve's periodic probe: a loaded engine is healthy; keep its gauge reported."""
        # A gauge set once can age out of the metrics agent; re-setting it keeps
        # ``asr_model_loaded`` visible for as long as the replica lives.
        self.metrics.model_loaded.set(1)

    def capabilities(self) -> EngineCapabilities:
        """What the engine can do beyond transcribing (translate, log-probabilities, ...)."""
        return self.engine.capabilities

    def ready(self) -> bool:
        """Reachable only once the constructor (load + warm-up) has finished."""
        return True

    def stats(self) -> dict:
        """This replica as an operator's handle call sees it
        (``serve.get_deployment_handle("ASR-<model>", app).stats.remote()``, answered by one
        replica): where it runs, its batching settings, the sizes and wall times of its
        recent batches, its engine's measured speed and the work and clients queued (work:
        :mod:`asr_serve.engines.fair`), and the engine time each recent client's items
        took.
        Prometheus has histograms over all replicas; this is one replica, batch by batch."""
        return {
            "model": self.model.name,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            # What Ray assigned this replica; with fractional GPUs, shared with others.
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "batching": self.batching.model_dump(),
            "recent_batch_sizes": list(self.recent_batches),
            "recent_batch_seconds": list(self.recent_batch_seconds),
            "speed_work_s_per_s": self.admission.speed,
            "full_batch_speed_work_s_per_s": self.admission.full_speed,
            "queued_work_s": self.queue.queued_s,
            "queued_clients": self.queue.clients,
            "model_s_by_client": dict(self.queue.model_s),
        }
