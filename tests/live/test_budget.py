"""A live session's budget: audio ahead of real time, finals in flight, the client's quota;
alone (a fake clock) and in the session core (the abusive manual-commit client)."""

from __future__ import annotations

import pytest

from asr_serve.config import LiveConfig
from asr_serve.engines.base import EngineResult
from asr_serve.errors import RateLimitError
from asr_serve.live.budget import LiveClient, SessionBudget
from asr_serve.live.core import CommitEmptyError, LiveSession, SessionSettings
from asr_serve.live.events import Completed, Failed, LiveEvent
from asr_serve.live.metrics import LiveCounters
from asr_serve.live.pcm import InputFormat
from asr_serve.live.transcribe import TranscribeRequest
from tests.live.conftest import FakeTranscriber

pytestmark = pytest.mark.anyio


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _budget(clock: _Clock, taken: list[float] | None = None, **config: object) -> SessionBudget:
    quota = taken.append if taken is not None else (lambda seconds: None)
    return SessionBudget(LiveConfig.model_validate(config), quota, clock)


def test_audio_may_run_ahead_of_real_time_only_so_far() -> None:
    clock = _Clock()
    budget = _budget(clock, max_audio_ahead_s=3.0)
    budget.take(2.0)
    budget.take(1.0)  # 3 s ahead: the bound, taken
    with pytest.raises(RateLimitError) as refused:
        budget.take(0.5)
    assert refused.value.code == "rate_limit_exceeded" and refused.value.param == "audio"
    assert refused.value.retry_after_s == pytest.approx(0.5)
    clock.now += 1.0  # a second of real time: a second of audio fits again
    budget.take(1.0)


def test_a_gap_in_the_stream_is_not_saved_up_for_a_burst() -> None:
    clock = _Clock()
    budget = _budget(clock, max_audio_ahead_s=3.0)
    budget.take(1.0)
    clock.now += 60.0  # a minute of silence from the client
    budget.take(3.0)
    with pytest.raises(RateLimitError):
        budget.take(0.1)


def test_no_audio_is_taken_while_the_session_has_its_maximum_of_finals_running() -> None:
    clock = _Clock()
    budget = _budget(clock, max_finals_in_flight=2)
    budget.final_started()
    budget.final_started()
    with pytest.raises(RateLimitError, match="2 transcriptions running"):
        budget.take(0.1)
    budget.final_ended()
    budget.take(0.1)


def test_the_client_s_quota_is_asked_last_and_a_refusal_takes_nothing() -> None:
    clock = _Clock()
    taken: list[float] = []
    budget = _budget(clock, taken, max_audio_ahead_s=1.0)
    budget.take(0.5)
    with pytest.raises(RateLimitError):
        budget.take(2.0)  # over the session's own bound: the quota is not charged
    assert taken == [0.5]

    def refuses_once(seconds: float) -> None:
        if not taken[1:]:
            taken.append(seconds)
            raise RateLimitError("quota")

    refusing = SessionBudget(LiveConfig(max_audio_ahead_s=1.0), refuses_once, clock)
    with pytest.raises(RateLimitError, match="quota"):
        refusing.take(1.0)
    refusing.take(1.0)  # the refused second did not count ahead of real time


async def test_a_client_flooding_commits_gets_errors_and_its_items_all_end() -> None:
    """1,500 x (100 ms append + commit) as fast as it goes: a few finals run at a time, the
    rest of the audio is refused (not taken), so the commits after it find nothing to
    commit; every committed item ends in Completed or Failed."""
    events: list[LiveEvent] = []
    fake = FakeTranscriber(delay_s=0.05)
    running = peak = 0

    async def model(request: TranscribeRequest) -> EngineResult:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            return await fake(request)
        finally:
            running -= 1

    session = LiveSession(
        SessionSettings(model="m", turn_detection=None, input_format=InputFormat(rate=16_000)),
        LiveConfig(max_finals_in_flight=3, max_audio_ahead_s=30.0),
        model,
        events.append,
        LiveCounters(),
        protocol="test",
        client=LiveClient("key:abc"),
    )
    chunk = b"\x10\x00" * 1600  # 100 ms of 16 kHz PCM16
    refused = {"append": 0, "commit": 0}
    committed = 0
    for _ in range(1500):
        try:
            await session.append(chunk)
        except RateLimitError:
            refused["append"] += 1
        try:
            await session.commit()
            committed += 1
        except CommitEmptyError:
            refused["commit"] += 1
    await session.close(drain=True)
    ended = [e for e in events if isinstance(e, Completed | Failed)]
    assert len(ended) == committed and committed < 100, (committed, refused)
    assert refused["append"] > 1000 and refused["commit"] == refused["append"]
    assert peak == 3  # finals in flight never past the session's maximum
    assert {r.client for r in fake.requests} == {"key:abc"}
