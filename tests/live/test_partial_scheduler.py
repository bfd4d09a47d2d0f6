"""The partial scheduler: finals never wait for partials; partials are capped, deduped, shed."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from asr_serve.config import LiveConfig
from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.live.metrics import LiveCounters, ShedReason
from asr_serve.live.partials import PartialScheduler
from asr_serve.live.transcribe import TranscribeKind, TranscribeRequest

pytestmark = pytest.mark.anyio


class _Model:
    """A decode that blocks until the test releases it, recording what ran."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, request: TranscribeRequest) -> EngineResult:
        self.started.append(request.model)
        await self.release.wait()
        return EngineResult(text=request.model, duration=len(request.audio) / 16_000)


def _request(name: str, kind: TranscribeKind, session: str | None = None, wanted=lambda: True):
    audio = np.zeros(1600, dtype=np.float32)
    return TranscribeRequest(session or name, name, audio, TranscribeOptions(), kind, wanted)


def _scheduler(model: _Model, **config: object) -> tuple[PartialScheduler, LiveCounters]:
    counters = LiveCounters()
    return PartialScheduler(model, LiveConfig.model_validate(config), counters), counters


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_finals_run_at_once_while_partials_fill_their_slots() -> None:
    model = _Model()
    scheduler, counters = _scheduler(model, max_partials_in_flight=2)
    partials = [
        asyncio.create_task(scheduler(_request(f"p{i}", TranscribeKind.PARTIAL))) for i in range(3)
    ]
    await _settle()
    assert model.started == ["p0", "p1"]
    assert (scheduler.partials_running, scheduler.partials_waiting) == (2, 1)
    final = asyncio.create_task(scheduler(_request("f", TranscribeKind.FINAL)))
    await _settle()
    assert model.started == ["p0", "p1", "f"]  # ahead of the waiting partial
    model.release.set()
    assert (await final).text == "f"
    assert [(await p).text for p in partials] == ["p0", "p1", "p2"]
    assert scheduler.partials_running == 0
    assert counters.latency[TranscribeKind.FINAL].count == 1
    assert counters.latency[TranscribeKind.PARTIAL].count == 3


async def test_a_second_partial_of_a_session_is_shed() -> None:
    model = _Model()
    scheduler, counters = _scheduler(model)
    first = asyncio.create_task(scheduler(_request("a", TranscribeKind.PARTIAL, session="s")))
    await _settle()
    assert await scheduler(_request("b", TranscribeKind.PARTIAL, session="s")) is None
    assert counters.shed == {ShedReason.DUPLICATE: 1}
    model.release.set()
    assert (await first).text == "a"
    # Once it is done the session may have another.
    assert (await scheduler(_request("c", TranscribeKind.PARTIAL, session="s"))).text == "c"


async def test_a_partial_stale_when_its_turn_comes_is_shed_without_running() -> None:
    model = _Model()
    scheduler, counters = _scheduler(model, max_partials_in_flight=1)
    stale = {"now": False}
    running = asyncio.create_task(scheduler(_request("a", TranscribeKind.PARTIAL)))
    waiting = asyncio.create_task(
        scheduler(_request("b", TranscribeKind.PARTIAL, wanted=lambda: not stale["now"]))
    )
    await _settle()
    stale["now"] = True  # e.g. its utterance was committed meanwhile
    model.release.set()
    assert (await running).text == "a"
    assert await waiting is None
    assert model.started == ["a"]
    assert counters.shed == {ShedReason.STALE: 1}


async def test_a_partial_that_waits_too_long_is_shed_and_its_slot_not_lost() -> None:
    model = _Model()
    scheduler, counters = _scheduler(model, max_partials_in_flight=1, partial_max_wait_s=0.05)
    running = asyncio.create_task(scheduler(_request("a", TranscribeKind.PARTIAL)))
    await _settle()
    assert await scheduler(_request("b", TranscribeKind.PARTIAL)) is None
    assert counters.shed == {ShedReason.WAITED: 1}
    model.release.set()
    await running
    assert scheduler.partials_running == 0
    assert (await scheduler(_request("c", TranscribeKind.PARTIAL))).text == "c"


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    model = _Model()
    scheduler, _ = _scheduler(model, max_partials_in_flight=1)
    running = asyncio.create_task(scheduler(_request("a", TranscribeKind.PARTIAL)))
    gone = asyncio.create_task(scheduler(_request("b", TranscribeKind.PARTIAL)))
    after = asyncio.create_task(scheduler(_request("c", TranscribeKind.PARTIAL)))
    await _settle()
    gone.cancel()  # its session closed
    model.release.set()
    assert (await running).text == "a"
    assert (await after).text == "c"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert scheduler.partials_running == 0


async def test_errors_reach_the_caller_and_free_the_slot() -> None:
    async def broken(request: TranscribeRequest) -> EngineResult:
        raise RuntimeError("model down")

    scheduler = PartialScheduler(broken, LiveConfig(max_partials_in_flight=1), LiveCounters())
    for kind in (TranscribeKind.PARTIAL, TranscribeKind.FINAL, TranscribeKind.PARTIAL):
        with pytest.raises(RuntimeError, match="model down"):
            await scheduler(_request("x", kind))
    assert scheduler.partials_running == 0


async def test_a_partial_the_model_drops_is_counted_as_shed() -> None:
    async def busy(request: TranscribeRequest) -> EngineResult | None:
        return None  # the replica gave up on it: files and finals kept it busy

    counters = LiveCounters()
    scheduler = PartialScheduler(busy, LiveConfig(), counters)
    assert await scheduler(_request("p", TranscribeKind.PARTIAL)) is None
    assert counters.shed == {ShedReason.MODEL_BUSY: 1}
