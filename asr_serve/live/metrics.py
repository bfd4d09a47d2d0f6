"""What live sessions count, behind an interface the deployment binds to Ray metrics.

The core and the partial scheduler call a :class:`LiveMetrics`; the Serve deployment supplies one
that forwards to ``ray.serve.metrics`` (which only exists inside a replica), and everything
else, tests included, uses :class:`LiveCounters`, which keeps the numbers in memory.

Session-level numbers carry the ``protocol`` label of the adapter that opened the session
(``openai_realtime``, ``funasr_runtime``, ``funasr_realtime``), so each door's traffic and
failures show apart. Transcription latency and shedding are the replica's shared scheduler,
which treats every protocol alike, so they carry none.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from asr_serve.live.transcribe import TranscribeKind


class ShedReason(enum.StrEnum):
    #: The utterance was committed, cleared, or grew by more than an interval meanwhile.
    STALE = "stale"
    #: It waited longer than ``partial_max_wait_s`` for a free partial slot.
    WAITED = "waited"
    #: The session already had a partial running or waiting.
    DUPLICATE = "duplicate"
    #: The model's replica dropped it: requests (files, finals) kept it busy for longer than
    #: ``partial_model_wait_s``.
    MODEL_BUSY = "model_busy"


class LiveMetrics(Protocol):
    def session_opened(self, protocol: str) -> None: ...

    def session_closed(self, protocol: str) -> None: ...

    def utterance_committed(self, protocol: str, audio_s: float) -> None: ...

    def item_failed(self, protocol: str, code: str) -> None: ...

    def partial_shed(self, reason: ShedReason) -> None: ...

    def transcribed(self, kind: TranscribeKind, seconds: float) -> None:
        """Latency of one transcription, from its request (waiting included) to its result."""

    def final_stages(self, stages: Mapping[str, float]) -> None:
        """Where one final's time went, seconds per stage, from the end of its speech to its
        transcript sent (:meth:`asr_serve.live.core.LiveSession.final_stages`)."""


@dataclass
class LatencyTotals:
    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        self.max_s = max(self.max_s, seconds)


@dataclass
class StageTotals:
    """Per stage, the :class:`LatencyTotals` of its times: bounded however long it runs."""

    stages: dict[str, LatencyTotals] = field(default_factory=dict)

    def add(self, stages: Mapping[str, float]) -> None:
        for stage, seconds in stages.items():
            self.stages.setdefault(stage, LatencyTotals()).add(seconds)

    def summary(self) -> str:
        """``stage=mean/max`` in milliseconds, e.g. ``engine=84/120 send=0/1``."""
        return " ".join(
            f"{stage}={1000 * t.total_s / t.count:.0f}/{1000 * t.max_s:.0f}"
            for stage, t in self.stages.items()
        )

    def as_ms(self) -> dict[str, dict[str, float]]:
        """Per stage its ``count``, ``mean_ms`` and ``max_ms``."""
        return {
            stage: {
                "count": t.count,
                "mean_ms": round(1000 * t.total_s / t.count, 1),
                "max_ms": round(1000 * t.max_s, 1),
            }
            for stage, t in self.stages.items()
        }


@dataclass
class LiveCounters:
    """In-memory :class:`LiveMetrics`: totals only, so it stays small however long it runs.

    Session-level counters are keyed by protocol; ``failed`` by ``(protocol, code)``.
    """

    active_sessions: collections.Counter[str] = field(default_factory=collections.Counter)
    sessions: collections.Counter[str] = field(default_factory=collections.Counter)
    utterances: collections.Counter[str] = field(default_factory=collections.Counter)
    utterance_audio_s: collections.Counter[str] = field(default_factory=collections.Counter)
    failed: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    shed: collections.Counter[ShedReason] = field(default_factory=collections.Counter)
    latency: dict[TranscribeKind, LatencyTotals] = field(
        default_factory=lambda: {kind: LatencyTotals() for kind in TranscribeKind}
    )
    final_stage_times: StageTotals = field(default_factory=StageTotals)

    def session_opened(self, protocol: str) -> None:
        self.active_sessions[protocol] += 1
        self.sessions[protocol] += 1

    def session_closed(self, protocol: str) -> None:
        self.active_sessions[protocol] -= 1

    def utterance_committed(self, protocol: str, audio_s: float) -> None:
        self.utterances[protocol] += 1
        self.utterance_audio_s[protocol] += audio_s

    def item_failed(self, protocol: str, code: str) -> None:
        self.failed[protocol, code] += 1

    def partial_shed(self, reason: ShedReason) -> None:
        self.shed[reason] += 1

    def transcribed(self, kind: TranscribeKind, seconds: float) -> None:
        self.latency[kind].add(seconds)

    def final_stages(self, stages: Mapping[str, float]) -> None:
        self.final_stage_times.add(stages)
