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


@dataclass
class LatencyTotals:
    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0


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
        totals = self.latency[kind]
        totals.count += 1
        totals.total_s += seconds
        totals.max_s = max(totals.max_s, seconds)
