"""A request's stage clock: stages summed and ordered, tasks sharing their request's clock,
nothing recorded outside a request, the header in the W3C syntax."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from asr_serve.timing import (
    BATCH,
    ENGINE,
    QUEUE,
    TRANSPORT,
    ModelTimes,
    Timings,
    collecting,
    record,
    record_model,
    timed,
)

#: ``name;dur=ms`` entries, comma-separated (W3C Server Timing).
ENTRY = re.compile(r"([a-z]+);dur=(\d+\.\d)")


def entries(header: str) -> dict[str, float]:
    parts = header.split(", ")
    assert all(ENTRY.fullmatch(p) for p in parts), header
    return {m[1]: float(m[2]) for m in map(ENTRY.fullmatch, parts) if m}


def test_stages_are_summed_in_first_seen_order_then_the_total() -> None:
    timings = Timings()
    timings.add("upload", 0.002)
    timings.add("engine", 0.010)
    timings.add("upload", 0.001)
    got = entries(timings.header())
    assert list(got) == ["upload", "engine", "total"]
    assert got["upload"] == 3.0 and got["engine"] == 10.0
    assert got["total"] >= 0.0


def test_the_total_is_the_time_since_the_request_began() -> None:
    timings = Timings()
    time.sleep(0.02)
    assert entries(timings.header())["total"] >= 20.0


def test_a_model_call_is_its_replica_stages_and_the_rest_as_transport() -> None:
    timings = Timings()
    times = ModelTimes(queue_s=0.004, batch_s=0.010, engine_s=0.080, batch_size=3)
    timings.add_model(times, call_s=0.100)
    assert timings.stages == pytest.approx(
        {QUEUE: 0.004, BATCH: 0.010, ENGINE: 0.080, TRANSPORT: 0.006}
    )
    # A call measured shorter than the replica's own stages (clocks of two processes) is
    # never a negative transport.
    timings.add_model(times, call_s=0.050)
    assert timings.stages[TRANSPORT] == pytest.approx(0.006)


def test_outside_a_request_nothing_is_recorded() -> None:
    record("upload", 1.0)
    with timed("decode"):
        pass
    record_model(ModelTimes(queue_s=0, batch_s=0, engine_s=1, batch_size=1), 1.0)
    with collecting(Timings()) as timings:
        pass
    assert timings.stages == {}


def test_timed_records_the_block_also_when_it_raises() -> None:
    with collecting(Timings()) as timings, pytest.raises(ValueError), timed("decode"):
        time.sleep(0.01)
        raise ValueError
    assert timings.stages["decode"] >= 0.01


@pytest.mark.anyio
async def test_tasks_started_by_a_request_record_into_its_clock_and_no_other() -> None:
    async def piece(seconds: float) -> None:
        await asyncio.sleep(0)
        record(ENGINE, seconds)

    async def request(seconds: float) -> Timings:
        with collecting(Timings()) as timings:
            await asyncio.gather(*(asyncio.ensure_future(piece(seconds)) for _ in range(3)))
        return timings

    first, second = await asyncio.gather(request(0.1), request(0.2))
    assert first.stages == pytest.approx({ENGINE: 0.3})
    assert second.stages == pytest.approx({ENGINE: 0.6})
