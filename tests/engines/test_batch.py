from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from asr_serve.config import BatchingConfig
from asr_serve.engines.base import Engine, EngineResult, TranscribeOptions
from asr_serve.engines.batch import (
    BatchItem,
    CompanyWait,
    Transcribed,
    batch_cost,
    item_cost,
    run_batch,
    with_times,
)
from asr_serve.engines.fair import Kind, Ticket
from asr_serve.errors import InsufficientMemoryError


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


def test_each_result_goes_back_with_its_own_times_and_an_error_without() -> None:
    """Queued until the fair queue released it, then until its batch started, then the
    engine: per item."""
    audio, options = np.zeros(5, np.float32), TranscribeOptions()

    async def ticket(enqueued_at: float, released_at: float) -> Ticket:
        return Ticket("c", 1.0, 1, Kind.REQUEST, enqueued_at=enqueued_at, released_at=released_at)

    times = [(10.0, 10.5), (10.4, 10.6), (10.6, 10.6)]
    items = [BatchItem(audio, options, 1, asyncio.run(ticket(*t))) for t in times]
    result = EngineResult(text="t", duration=0.0)
    oom = InsufficientMemoryError("too long")
    timed = with_times(items, [result, result, oom], started=10.7, ended=11.0)
    assert timed[2] is oom
    assert all(isinstance(t, Transcribed) and t.result is result for t in timed[:2])
    first, second = (t.times for t in timed[:2])  # type: ignore[union-attr]
    assert (first.queue_s, first.batch_s) == pytest.approx((0.5, 0.2))
    assert (second.queue_s, second.batch_s) == pytest.approx((0.2, 0.1))
    assert first.engine_s == second.engine_s == pytest.approx(0.3)
    assert first.batch_size == 3


def test_a_batch_waits_for_company_unless_the_last_ran_alone_and_none_came() -> None:
    company = CompanyWait(0.01)
    assert company.arrived(100.0) == 0.01  # nothing known yet: wait
    company.started(1, 100.01)
    assert company.arrived(100.2) == 0.0  # one client, one request at a time: no wait
    company.started(1, 100.2)
    # Another came 4 ms after that batch of one started: it would have joined. Wait again.
    assert company.arrived(100.204) == 0.01
    company.started(4, 100.3)  # closed-loop clients answered together come back together
    assert company.arrived(100.5) == 0.01
    company.wait_s = 0.5  # reconfigured
    assert company.arrived(100.6) == 0.5
