"""AudioDecoder: the CPU tier that turns uploaded bytes into 16 kHz mono float32.

It also plans a long file's pieces with the VAD (``asr_serve.audio.splitting``), so the ingress
can send them to the model as separate items.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from ray import serve

from asr_serve.audio.decode import DecodedAudio, decode_audio
from asr_serve.audio.splitting import PieceSplitter
from asr_serve.config import LimitsConfig, SplittingConfig
from asr_serve.errors import ASRServeError


@serve.deployment(
    ray_actor_options={"num_cpus": 1, "num_gpus": 0},
    # Requests past max_ongoing_requests wait in the caller's router, which retries with
    # backoff up to 0.5 s, so a small cap starves the model's batches (benchmarks/README.md,
    # "Where the time goes"). Here they wait in the replica instead and start
    # as soon as a thread frees up; decodes run on asyncio's default pool, min(32, cores + 4)
    # threads, which bounds the decoded audio held at once.
    max_ongoing_requests=32,
    max_queued_requests=256,
)
class AudioDecoder:
    def __init__(self, limits: dict, splitting: dict | None = None) -> None:
        from asr_serve.deployments.serve_metrics import DecoderMetrics

        self.limits = LimitsConfig.model_validate(limits)
        self.splitter = PieceSplitter(SplittingConfig.model_validate(splitting or {}))
        self.metrics = DecoderMetrics()

    async def decode(
        self, data: bytes, splitting: SplittingConfig | None = None
    ) -> DecodedAudio | ASRServeError:
        """Decode off the event loop (PyAV releases the GIL) and enforce the duration limit;
        split long audio with the request's VAD knobs (``chunking_strategy``) if it has any.

        A bad upload is the client's error, returned as a value for the ingress to raise:
        Serve logs every exception a replica method raises as an ERROR with its traceback.
        """
        started = time.perf_counter()
        try:
            audio = await asyncio.to_thread(
                decode_audio,
                data,
                max_duration_s=self.limits.max_audio_s,
                min_duration_s=self.limits.min_audio_s,
            )
        except ASRServeError as exc:
            self.metrics.refused(exc.code)
            return exc
        self.metrics.decoded(audio, time.perf_counter() - started)
        if self.splitter.fits(audio.samples):  # most uploads: no VAD, no thread hop
            return audio
        # The VAD reads the samples in place; the pieces are offsets, not copies.
        pieces = await asyncio.to_thread(self.splitter.split, audio.samples, splitting)
        return dataclasses.replace(audio, pieces=pieces)
