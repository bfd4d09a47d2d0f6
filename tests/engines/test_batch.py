from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from asr_serve.config import BatchingConfig
from asr_serve.engines.base import Engine, EngineResult, TranscribeOptions
from asr_serve.engines.batch import (
    BatchItem,
    batch_cost,
    item_cost,
    run_batch,
)


class _RecordingEngine(Engine):
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def load(self) -> None:
        pass

    def transcribe(
        self, audios: Sequence[np.ndarray], options: Sequence[TranscribeOptions]
    ) -> list[EngineResult]:
        self.calls.append([len(a) for a in audios])
        return [EngineResult(text=str(len(a)), duration=len(a) / 16000) for a in audios]


def test_item_cost_bounds_batches_by_count_and_audio() -> None:
    config = BatchingConfig(max_batch_size=8, max_batch_audio_s=80)
    assert item_cost(1.0, config) == 1  # short items count one slot each
    assert item_cost(20.0, config) == 2  # 20 s of an 80 s budget = 2 of 8 slots
    assert item_cost(10_000.0, config) == 8  # capped: a very long item batches alone


def test_batch_cost_sums_item_costs() -> None:
    items = [BatchItem(np.zeros(10, np.float32), TranscribeOptions(), cost=c) for c in (1, 3)]
    assert batch_cost(items) == 4


def test_run_batch_sorts_longest_first_and_restores_order() -> None:
    engine = _RecordingEngine()
    lengths = [100, 300, 200]
    items = [BatchItem(np.zeros(n, np.float32), TranscribeOptions()) for n in lengths]
    results = run_batch(engine, items)
    assert engine.calls == [[300, 200, 100]]
    assert [r.text for r in results] == ["100", "300", "200"]


def test_run_batch_rejects_a_short_result_list() -> None:
    class Broken(_RecordingEngine):
        def transcribe(self, audios, options):  # type: ignore[override]
            return super().transcribe(audios, options)[:-1]

    items = [BatchItem(np.zeros(5, np.float32), TranscribeOptions()) for _ in range(2)]
    with pytest.raises(RuntimeError, match="1 results for 2"):
        run_batch(Broken(), items)
