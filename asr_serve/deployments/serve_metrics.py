"""Custom Serve metrics, exported on Ray's Prometheus endpoint beside Serve's own.

Names are prefixed ``asr_`` (Ray adds ``ray_``). Created inside replicas only: the
``ray.serve.metrics`` objects need a running Ray worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ray.serve import metrics

from asr_serve.live.metrics import LiveCounters, ShedReason
from asr_serve.live.transcribe import TranscribeKind

if TYPE_CHECKING:
    from asr_serve.audio.decode import DecodedAudio

_LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
_BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


class ASRMetrics:
    """Per-model metrics of the ASR deployment."""

    def __init__(self, model: str) -> None:
        tags = {"model": model}
        self.batch_size = metrics.Histogram(
            "asr_batch_size",
            description="Items per engine call, as formed by @serve.batch.",
            boundaries=_BATCH_BUCKETS,
            tag_keys=("model",),
        )
        self.batch_audio_seconds = metrics.Histogram(
            "asr_batch_audio_seconds",
            description="Total audio seconds in one engine call.",
            boundaries=[1, 5, 10, 30, 60, 120, 300, 600],
            tag_keys=("model",),
        )
        self.queue_wait = metrics.Histogram(
            "asr_queue_wait_seconds",
            description="Time an item waited in the replica before its batch started.",
            boundaries=_LATENCY_BUCKETS_S,
            tag_keys=("model",),
        )
        self.inference = metrics.Histogram(
            "asr_inference_seconds",
            description="Wall time of one batched engine call.",
            boundaries=_LATENCY_BUCKETS_S,
            tag_keys=("model",),
        )
        self.audio_seconds = metrics.Counter(
            "asr_audio_seconds_total",
            description="Seconds of audio transcribed.",
            tag_keys=("model",),
        )
        self.errors = metrics.Counter(
            "asr_engine_errors_total",
            description="Engine calls that raised.",
            tag_keys=("model",),
        )
        self.out_of_memory = metrics.Counter(
            "asr_out_of_memory_total",
            description="Engine calls that ran out of memory (their batch was split and retried).",
            tag_keys=("model",),
        )
        self.partials_shed = metrics.Counter(
            "asr_partials_shed_at_model_total",
            description="Live partial results dropped at the model: requests kept it busy.",
            tag_keys=("model",),
        )
        self.refused = metrics.Counter(
            "asr_queue_refused_total",
            description="Items refused because their queue wait would exceed, or did "
            "exceed, max_queue_wait_s, by code: overloaded (503), rate_limit_exceeded (429, "
            "a client over its share).",
            tag_keys=("model", "code"),
        )
        self.model_loaded = metrics.Gauge(
            "asr_model_loaded",
            description="1 once the replica's model is loaded and warmed up.",
            tag_keys=("model",),
        )
        for metric in (
            self.batch_size,
            self.batch_audio_seconds,
            self.queue_wait,
            self.inference,
            self.audio_seconds,
            self.errors,
            self.refused,
            self.out_of_memory,
            self.partials_shed,
            self.model_loaded,
        ):
            # A fresh dict each time: Serve adds its own tags to the one passed in.
            metric.set_default_tags(dict(tags))


class SpeakersMetrics:
    """The Speakers deployment: speaker embeddings of files' clips, reference clips and
    live utterances, batched across requests and sessions."""

    def __init__(self) -> None:
        self.batch_partials = metrics.Histogram(
            "asr_speakers_batch_partials",
            description="Windows (GE2E partials, CAM++ windows) in one speaker-encoder call.",
            boundaries=_BATCH_BUCKETS,
        )
        self.batch_calls = metrics.Histogram(
            "asr_speakers_batch_calls",
            description="Calls (files, reference sets, live utterances) sharing one encoder call.",
            boundaries=_BATCH_BUCKETS,
        )
        self.queue_wait = metrics.Histogram(
            "asr_speakers_queue_wait_seconds",
            description="Time a call waited in the Speakers replica before its batch started.",
            boundaries=_LATENCY_BUCKETS_S,
        )
        self.inference = metrics.Histogram(
            "asr_speakers_inference_seconds",
            description="Wall time of one batched speaker-encoder call.",
            boundaries=_LATENCY_BUCKETS_S,
        )
        self.clips = metrics.Counter(
            "asr_speakers_clips_total", description="Clips embedded (one embedding each)."
        )
        self.audio_seconds = metrics.Counter(
            "asr_speakers_audio_seconds_total", description="Seconds of audio embedded."
        )


class DecoderMetrics:
    """Uploads read into samples: by the AudioDecoder, or by the ingress for what needs no
    decoding (:mod:`asr_serve.serving.in_place`); both count here, so the panels show all."""

    def __init__(self) -> None:
        self.decode_time = metrics.Histogram(
            "asr_decode_seconds",
            description="Wall time to decode one upload to 16 kHz mono.",
            boundaries=_LATENCY_BUCKETS_S,
        )
        self.decoded_seconds = metrics.Counter(
            "asr_decoded_audio_seconds_total", description="Seconds of audio decoded."
        )
        self.rejected = metrics.Counter(
            "asr_decode_rejected_total",
            description="Uploads rejected while decoding, by error code.",
            tag_keys=("code",),
        )

    def decoded(self, audio: DecodedAudio, seconds: float) -> None:
        self.decode_time.observe(seconds)
        self.decoded_seconds.inc(audio.duration_s)

    def refused(self, code: str) -> None:
        self.rejected.inc(tags={"code": code})


class CacheMetrics:
    """The ingress's result cache (``asr_serve.serving.cache``): hits + misses = lookups.

    One lookup per request, or per piece of a long file split at pauses.
    """

    def __init__(self) -> None:
        self.hits = metrics.Counter(
            "asr_cache_hits_total",
            description="Lookups answered from the result cache, without the model.",
            tag_keys=("model",),
        )
        self.misses = metrics.Counter(
            "asr_cache_misses_total",
            description="Lookups not answered from the cache (Redis failures included).",
            tag_keys=("model",),
        )
        self.errors = metrics.Counter(
            "asr_cache_errors_total",
            description="Redis operations that failed, timed out or were skipped in backoff.",
            tag_keys=("op",),
        )


class LiveSessionMetrics(LiveCounters):
    """An ingress replica's live sessions, as :class:`asr_serve.live.metrics.LiveMetrics`:
    exported to Prometheus, labelled by protocol (the door a session came in by), and kept
    as totals (:class:`LiveCounters`) for the ingress's ``stats``."""

    def __init__(self) -> None:
        super().__init__()
        self.open_sessions = metrics.Gauge(
            "asr_live_sessions",
            description="Live sessions open on the ingress replica, by protocol.",
            tag_keys=("protocol",),
        )
        self.utterances_total = metrics.Counter(
            "asr_live_utterances_total",
            description="Utterances committed in live sessions, by protocol.",
            tag_keys=("protocol",),
        )
        self.utterance_audio = metrics.Counter(
            "asr_live_utterance_audio_seconds_total",
            description="Seconds of audio in committed live utterances, by protocol.",
            tag_keys=("protocol",),
        )
        self.failed_total = metrics.Counter(
            "asr_live_items_failed_total",
            description="Committed live utterances that ended in failed, by protocol and code.",
            tag_keys=("protocol", "code"),
        )
        self.shed_total = metrics.Counter(
            "asr_live_partials_shed_total",
            description="Partial results dropped because they would have been stale, by reason.",
            tag_keys=("reason",),
        )
        # The name dashboards query (cluster/grafana); it times transcriptions, not decoding.
        self.transcribe_seconds = metrics.Histogram(
            "asr_live_decode_seconds",
            description="Live transcription latency from request to result (waiting included), "
            "by kind: final (a committed utterance) or partial.",
            boundaries=_LATENCY_BUCKETS_S,
            tag_keys=("kind",),
        )
        self.final_stage_seconds = metrics.Histogram(
            "asr_live_final_stage_seconds",
            description="Where a live final's time went, from the end of its speech to its "
            "transcript sent, by stage: silence (the VAD's wait for the end), queue, batch, "
            "engine (at the model replica), transport (the call there and back), send, total.",
            boundaries=_LATENCY_BUCKETS_S,
            tag_keys=("stage",),
        )

    def session_opened(self, protocol: str) -> None:
        super().session_opened(protocol)
        self.open_sessions.set(self.active_sessions[protocol], tags={"protocol": protocol})

    def session_closed(self, protocol: str) -> None:
        super().session_closed(protocol)
        self.open_sessions.set(self.active_sessions[protocol], tags={"protocol": protocol})

    def utterance_committed(self, protocol: str, audio_s: float) -> None:
        super().utterance_committed(protocol, audio_s)
        self.utterances_total.inc(tags={"protocol": protocol})
        self.utterance_audio.inc(audio_s, tags={"protocol": protocol})

    def item_failed(self, protocol: str, code: str) -> None:
        super().item_failed(protocol, code)
        self.failed_total.inc(tags={"protocol": protocol, "code": code})

    def partial_shed(self, reason: ShedReason) -> None:
        super().partial_shed(reason)
        self.shed_total.inc(tags={"reason": str(reason)})

    def transcribed(self, kind: TranscribeKind, seconds: float) -> None:
        super().transcribed(kind, seconds)
        self.transcribe_seconds.observe(seconds, tags={"kind": str(kind)})

    def final_stages(self, stages: Mapping[str, float]) -> None:
        super().final_stages(stages)
        for stage, seconds in stages.items():
            self.final_stage_seconds.observe(seconds, tags={"stage": stage})
