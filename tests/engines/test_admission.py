"""Admission by time, without Ray: the work done before an item, over the measured speed,
against the bound; 429 for a client over its share, 503 otherwise; and the bound held."""

from __future__ import annotations

import asyncio

import pytest

from asr_serve.engines.admission import QueueAdmission
from asr_serve.engines.fair import FairQueue
from asr_serve.errors import OverloadedError, RateLimitError


def test_admits_while_the_work_ahead_fits_the_bound_then_refuses() -> None:
    admission = QueueAdmission(speed=2.0)  # 2 s of work per second
    assert admission.estimated_wait_s(20.0) == pytest.approx(10.0)
    assert admission.refusal(20.0, max_wait_s=10.0, over_share=False) is None
    refusal = admission.refusal(24.0, max_wait_s=10.0, over_share=False)
    assert isinstance(refusal, OverloadedError)
    assert refusal.status_code == 503 and refusal.code == "overloaded"
    # Retry-After: when the queue will have drained to the bound.
    assert refusal.retry_after_s == pytest.approx(2.0)
    assert "12 s" in refusal.message and "10 s bound" in refusal.message


def test_a_client_over_its_share_gets_429_with_retry_after() -> None:
    refusal = QueueAdmission(speed=1.0).refusal(15.0, max_wait_s=10.0, over_share=True)
    assert isinstance(refusal, RateLimitError)
    assert refusal.status_code == 429 and refusal.code == "rate_limit_exceeded"
    assert refusal.to_dict()["error"]["type"] == "requests"
    assert refusal.retry_after_s == pytest.approx(5.0)


def test_an_empty_queue_admits_anything() -> None:
    """However slow the engine looks, a lone item never waits."""
    assert QueueAdmission(speed=1e-6).refusal(0.0, max_wait_s=0.01, over_share=False) is None


def test_speed_follows_the_batches_smoothly() -> None:
    admission = QueueAdmission.from_warmup(work_s=2.0, wall_s=4.0)  # cold start: 0.5
    assert admission.speed == pytest.approx(0.5)
    admission.observe_batch(work_s=40.0, wall_s=2.0)  # the warm engine: 20 s of work per s
    assert 0.5 < admission.speed < 20.0
    for _ in range(20):
        admission.observe_batch(work_s=40.0, wall_s=2.0)
    assert admission.speed == pytest.approx(20.0, rel=0.01)
    admission.observe_batch(work_s=0.0, wall_s=1.0)  # nothing learnt from an empty batch
    assert admission.speed == pytest.approx(20.0, rel=0.01)


def test_an_admitted_item_that_waits_out_the_bound_is_refused_not_served_late() -> None:
    async def scenario() -> None:
        admission = QueueAdmission(speed=100.0)  # looks fast: everything is admitted
        queue = FairQueue(1)
        running = await admission.admitted(queue, "a", 1.0, 1, max_wait_s=0.05)
        assert not isinstance(running, Exception)
        with queue.running([running]):  # ... and the engine then takes long
            flooded = [
                asyncio.ensure_future(admission.admitted(queue, "a", 1.0, 1, max_wait_s=0.05))
                for _ in range(3)
            ]
            alone = asyncio.ensure_future(admission.admitted(queue, "b", 1.0, 1, max_wait_s=0.05))
            await asyncio.sleep(0.2)
        queue.leave(running)
        refused = await asyncio.gather(*flooded)
        assert all(isinstance(r, RateLimitError) for r in refused)  # "a" held the most
        assert isinstance(await alone, OverloadedError)
        assert queue.queued_s == 0.0

    asyncio.run(scenario())


def test_a_later_piece_of_an_admitted_file_waits_its_turn_past_the_bound() -> None:
    async def scenario() -> None:
        admission = QueueAdmission(speed=1e-3)  # looks slow: a checked item is refused
        queue = FairQueue(1)
        running = queue.enter("a", 1.0, 1)
        with queue.running([running]):
            later = asyncio.ensure_future(
                admission.admitted(queue, "a", 1.0, 1, max_wait_s=0.01, check=False)
            )
            await asyncio.sleep(0.1)
            assert not later.done()
            refused = await admission.admitted(queue, "a", 1.0, 1, max_wait_s=0.01)
            assert isinstance(refused, OverloadedError)
        queue.leave(running)
        ticket = await later
        assert not isinstance(ticket, Exception)
        queue.leave(ticket)

    asyncio.run(scenario())


def test_behind_a_long_queue_the_speed_of_full_batches_counts() -> None:
    """Light load runs batches of one; a queue worth refusing runs full ones, which an engine
    that batches well gets through faster per item: those set the wait, once seen."""
    admission = QueueAdmission(speed=10.0)
    for _ in range(20):
        admission.observe_batch(work_s=3.0, wall_s=0.3)  # one 3 s item at a time: 10 s/s
    assert admission.estimated_wait_s(100.0) == pytest.approx(10.0)
    for _ in range(20):
        admission.observe_batch(work_s=12.0, wall_s=0.4, full=True)  # four at once: 30 s/s
    assert admission.full_speed == pytest.approx(30.0, rel=0.01)
    assert admission.estimated_wait_s(100.0) == pytest.approx(100 / 30.0, rel=0.01)
