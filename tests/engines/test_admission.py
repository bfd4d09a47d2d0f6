"""Admission by time, without Ray: queued audio over the measured speed against the bound."""

from __future__ import annotations

import asyncio

import pytest

from asr_serve.engines.admission import QueueAdmission


def test_admits_while_the_queued_audio_fits_the_bound_then_refuses() -> None:
    admission = QueueAdmission(speed=2.0)  # 2 s of audio per second
    with admission.queued(10.0), admission.queued(10.0):  # 20 s of audio: a 10 s wait
        assert admission.estimated_wait_s() == pytest.approx(10.0)
        assert admission.refusal(max_wait_s=10.0) is None
        with admission.queued(4.0):  # 12 s now
            refusal = admission.refusal(max_wait_s=10.0)
    assert refusal is not None and refusal.status_code == 503 and refusal.code == "overloaded"
    # Retry-After: when the queue will have drained to the bound.
    assert refusal.retry_after_s == pytest.approx(2.0)
    assert "12 s" in refusal.message and "10 s bound" in refusal.message
    assert admission.queued_s == 0.0 and admission.refusal(max_wait_s=0.1) is None


def test_an_empty_queue_admits_anything() -> None:
    """However slow the engine looks, a lone item never waits."""
    assert QueueAdmission(speed=1e-6).refusal(max_wait_s=0.01) is None


def test_a_cancelled_item_gives_its_audio_back() -> None:
    admission = QueueAdmission(speed=1.0)

    async def waiting() -> None:
        with admission.queued(5.0):
            await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.ensure_future(waiting())
        await asyncio.sleep(0)
        assert admission.queued_s == 5.0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert admission.queued_s == 0.0


def test_speed_follows_the_batches_smoothly() -> None:
    admission = QueueAdmission.from_warmup(audio_s=2.0, wall_s=4.0)  # cold start: 0.5
    assert admission.speed == pytest.approx(0.5)
    admission.observe_batch(audio_s=40.0, wall_s=2.0)  # the warm engine: 20 audio s per s
    assert 0.5 < admission.speed < 20.0
    for _ in range(20):
        admission.observe_batch(audio_s=40.0, wall_s=2.0)
    assert admission.speed == pytest.approx(20.0, rel=0.01)
    admission.observe_batch(audio_s=0.0, wall_s=1.0)  # nothing learnt from an empty batch
    assert admission.speed == pytest.approx(20.0, rel=0.01)
