"""How the ASR deployment forms and runs a batch, independent of Ray.

Serve's ``@serve.batch`` collects the items; this module decides what an item costs
towards ``max_batch_size`` (so a batch is bounded by total audio as well as by count)
and runs one batch through the engine longest-first, so padding is spent on similar
lengths, returning results in the callers' order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from asr_serve.config import BatchingConfig
from asr_serve.engines.base import SAMPLE_RATE, Engine, EngineResult, TranscribeOptions


@dataclass(frozen=True)
class BatchItem:
    audio: np.ndarray
    options: TranscribeOptions
    #: Share of ``max_batch_size`` this item takes: at least 1, more for long audio.
    cost: int = 1
    enqueued_at: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def item_cost(seconds: float, config: BatchingConfig) -> int:
    """Count an item as ``max(1, its share of max_batch_audio_s)`` batch slots.

    A batch is full when the costs reach ``max_batch_size``: at most that many items,
    and at most ``max_batch_audio_s`` of audio in total. Capped at ``max_batch_size`` so
    one very long item forms a batch of its own instead of being rejected by Serve.
    """
    share = math.ceil(seconds * config.max_batch_size / config.max_batch_audio_s)
    return min(config.max_batch_size, max(1, share))


def batch_cost(items: Sequence[BatchItem]) -> int:
    """``batch_size_fn`` for ``@serve.batch``."""
    return sum(item.cost for item in items)


def run_batch(engine: Engine, items: Sequence[BatchItem]) -> list[EngineResult]:
    """Transcribe ``items`` in one engine call, longest first; results in input order."""
    order = sorted(range(len(items)), key=lambda i: len(items[i].audio), reverse=True)
    results = engine.transcribe([items[i].audio for i in order], [items[i].options for i in order])
    if len(results) != len(items):
        raise RuntimeError(f"engine returned {len(results)} results for {len(items)} inputs")
    ordered: list[EngineResult | None] = [None] * len(items)
    for position, index in enumerate(order):
        ordered[index] = results[position]
    return ordered  # type: ignore[return-value]
