"""Speakers: the speaker encoder, batched across requests and live sessions.

A deployment of its own, not beside the decoder: it is a model (GPU-capable, with its own
replicas and batching) that files and live sessions both call, while the decoder is a CPU
codec tier that live sessions never reach. One call embeds a list of clips (a file's, a
request's reference clips, or one live utterance); ``@serve.batch`` puts the clips of many
calls into one network call, counted in fixed-length windows (GE2E's 1.6 s partials,
CAM++'s 1.5 s) so a batch is bounded by work; the encoder is the config's
(:mod:`asr_serve.speakers.encoders`). Calls wait in a :class:`FairQueue`, as the ASR
replica's items do, which releases a batch's worth when the encoder is free; each call is
its client's (as the ingress names it for the ASR replicas), served in turn by audio, so
one client's long files do not hold every other client's clips and utterances behind them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from ray import serve

from asr_serve.config import SAMPLE_RATE, SpeakerBatching, SpeakersConfig
from asr_serve.engines.fair import FairQueue, Ticket

logger = logging.getLogger("ray.serve")

_DEFAULT = SpeakerBatching()


@dataclass(frozen=True)
class EmbedItem:
    clips: list[np.ndarray]
    #: Its partials, capped at a whole batch (a long file forms a batch of its own).
    cost: int
    ticket: Ticket


def _cost(items: list[EmbedItem]) -> int:
    return sum(item.cost for item in items)


@serve.deployment(
    ray_actor_options={"num_cpus": 1, "num_gpus": 0},
    # Room for many calls to wait here, where the fair queue lets them into one batch; at least
    # max_batch_partials, which Serve compares it with (it counts calls, a batch partials).
    max_ongoing_requests=256,
    max_queued_requests=64,
    max_constructor_retry_count=3,
    graceful_shutdown_timeout_s=30,
)
class Speakers:
    def __init__(self, config: dict) -> None:
        import torch

        from asr_serve.deployments.serve_metrics import SpeakersMetrics
        from asr_serve.speakers.encoders import create_encoder

        started = time.perf_counter()
        self.config = SpeakersConfig.model_validate(config)
        self.batching = self.config.batching
        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu" and self.config.cpu_threads:
            torch.set_num_threads(self.config.cpu_threads)
        self.encoder = create_encoder(self.config, device)
        self.queue = FairQueue(self.batching.max_batch_partials, min_item_s=0.0)
        self.metrics = SpeakersMetrics()
        #: Recent batches in partials, for tests and the benchmark.
        self.recent_batches: deque[int] = deque(maxlen=1024)
        rng = np.random.default_rng(0)
        self.encoder.embed([(0.05 * rng.standard_normal(32_000)).astype(np.float32)] * 2)
        logger.info(
            "speaker encoder %s loaded on %s and warmed up in %.1f s",
            self.config.encoder,
            device,
            time.perf_counter() - started,
        )

    def reconfigure(self, user_config: dict) -> None:
        self.batching = SpeakerBatching.model_validate(user_config)
        self.queue.max_batch_size = self.batching.max_batch_partials
        self._batched.set_max_batch_size(self.batching.max_batch_partials)
        self._batched.set_batch_wait_timeout_s(self.batching.batch_wait_timeout_s)

    async def embed(self, clips: list[np.ndarray], client: str = "") -> np.ndarray:
        """One unit embedding per clip (16 kHz mono float32), ``(len(clips), dim)``;
        ``client`` (the ingress names it) is whose share of the encoder the call takes."""
        if not clips:
            return self.encoder.embed([])
        partials = sum(self.encoder.partial_count(len(c)) for c in clips)
        cost = min(partials, self.batching.max_batch_partials)
        ticket = self.queue.enter(client, sum(len(c) for c in clips) / SAMPLE_RATE, cost)
        try:
            await self.queue.turn(ticket, None)
            return await self._batched(EmbedItem(clips=list(clips), cost=cost, ticket=ticket))
        finally:
            self.queue.leave(ticket)

    @serve.batch(
        max_batch_size=_DEFAULT.max_batch_partials,
        batch_wait_timeout_s=_DEFAULT.batch_wait_timeout_s,
        batch_size_fn=_cost,
    )
    async def _batched(self, items: list[EmbedItem]) -> list[np.ndarray]:
        started = time.perf_counter()
        for item in items:
            self.metrics.queue_wait.observe(started - item.ticket.enqueued_at)
        clips = [clip for item in items for clip in item.clips]
        with self.queue.running(item.ticket for item in items):
            vectors = await asyncio.to_thread(self.encoder.embed, clips)
        partials = sum(self.encoder.partial_count(len(c)) for c in clips)
        self.recent_batches.append(partials)
        self.metrics.inference.observe(time.perf_counter() - started)
        self.metrics.batch_partials.observe(partials)
        self.metrics.batch_calls.observe(len(items))
        self.metrics.clips.inc(len(clips))
        self.metrics.audio_seconds.inc(sum(len(c) for c in clips) / SAMPLE_RATE)
        out, at = [], 0
        for item in items:
            out.append(vectors[at : at + len(item.clips)])
            at += len(item.clips)
        return out

    def stats(self) -> dict:
        """Batch sizes in partials, for tests and the benchmark harness."""
        return {"recent_batch_partials": list(self.recent_batches)}
