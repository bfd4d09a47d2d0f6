"""What live sessions count, behind an interface the deployment binds to Ray metrics.

The core and the scheduler call a :class:`LiveMetrics`; the Serve deployment supplies one
that forwards to ``ray.serve.metrics`` (which only exists inside a replica), and everything
else, tests included, uses :class:`LiveCounters`, which keeps the numbers in memory.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field
from typing import Protocol

from asr_serve.live.decode import DecodeKind


class ShedReason(enum.StrEnum):
    #: The utterance was committed, cleared, or grew by more than an interval meanwhile.
    STALE = "stale"
    #: It waited longer than ``partial_max_wait_s`` for a free partial slot.
    WAITED = "waited"
    #: The session already had a partial running or waiting.
    DUPLICATE = "duplicate"
    #: The model's replica dropped it: requests (files, finals) kept it busy past the wait.
    MODEL_BUSY = "model_busy"


class LiveMetrics(Protocol):
    def session_opened(self) -> None: ...

    def session_closed(self) -> None: ...

    def utterance_committed(self, audio_s: float) -> None: ...

    def item_failed(self, code: str) -> None: ...

    def partial_shed(self, reason: ShedReason) -> None: ...

    def decoded(self, kind: DecodeKind, seconds: float) -> None:
        """Latency of one decode, from its request (waiting included) to its result."""


@dataclass
class LatencyTotals:
    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0


@dataclass
class LiveCounters:
    """In-memory :class:`LiveMetrics`: totals only, so it stays small however long it runs."""

    active_sessions: int = 0
    sessions: int = 0
    utterances: int = 0
    utterance_audio_s: float = 0.0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    shed: collections.Counter[ShedReason] = field(default_factory=collections.Counter)
    latency: dict[DecodeKind, LatencyTotals] = field(
        default_factory=lambda: {kind: LatencyTotals() for kind in DecodeKind}
    )

    def session_opened(self) -> None:
        self.active_sessions += 1
        self.sessions += 1

    def session_closed(self) -> None:
        self.active_sessions -= 1

    def utterance_committed(self, audio_s: float) -> None:
        self.utterances += 1
        self.utterance_audio_s += audio_s

    def item_failed(self, code: str) -> None:
        self.failed[code] += 1

    def partial_shed(self, reason: ShedReason) -> None:
        self.shed[reason] += 1

    def decoded(self, kind: DecodeKind, seconds: float) -> None:
        totals = self.latency[kind]
        totals.count += 1
        totals.total_s += seconds
        totals.max_s = max(totals.max_s, seconds)
