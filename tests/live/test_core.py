"""The session core on espeak speech and a fake model: turns, items, partials, failures, limits."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from asr_serve.config import LiveConfig
from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.errors import InvalidAudioError, InvalidRequestError
from asr_serve.live import core
from asr_serve.live.budget import AudioBudget, SessionAudioLimitError
from asr_serve.live.core import CommitEmptyError, LiveSession, SessionSettings
from asr_serve.live.events import (
    Cleared,
    Committed,
    Completed,
    Failed,
    LiveEvent,
    Partial,
    SpeechStarted,
    SpeechStopped,
)
from asr_serve.live.metrics import LiveCounters
from asr_serve.live.pcm import InputFormat
from asr_serve.live.transcribe import TranscribeKind, TranscribeRequest
from devtools.speech import Speech, pcm16, speech_with_pauses
from devtools.text import SENTENCES
from tests.live.conftest import SR, FakeTranscriber
from tests.support.realtime import chunks

pytestmark = pytest.mark.anyio

MANUAL = SessionSettings(model="m", turn_detection=None)
#: 100 ms of 24 kHz PCM16.
CHUNK = 4_800


class _Run:
    """A session with its events and counters."""

    def __init__(
        self,
        settings: SessionSettings,
        transcriber,
        audio_budget: AudioBudget | None = None,
        **config: object,
    ) -> None:
        self.events: list[LiveEvent] = []
        self.counters = LiveCounters()
        self.transcriber = transcriber
        self.session = LiveSession(
            settings,
            LiveConfig.model_validate(config),
            transcriber,
            self.events.append,
            self.counters,
            protocol="test",
            audio_budget=audio_budget,
        )

    async def stream(self, data: bytes, size: int = CHUNK) -> None:
        for chunk in chunks(data, size):
            await self.session.append(chunk)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture(scope="module")
def two_sentences() -> Speech:
    return speech_with_pauses([SENTENCES[0], SENTENCES[2]], pause_s=1.0)


def _ms(samples: int) -> float:
    return samples * 1000 / SR


async def test_server_vad_finds_each_sentence_and_chains_its_items(two_sentences) -> None:
    run = _Run(SessionSettings(model="m"), FakeTranscriber())
    await run.stream(pcm16(two_sentences.audio, 24_000))
    await run.session.close(drain=True)

    started, stopped = run.of(SpeechStarted), run.of(SpeechStopped)
    committed, completed = run.of(Committed), run.of(Completed)
    assert len(started) == len(stopped) == len(committed) == len(completed) == 2
    ids = [e.item_id for e in started]
    assert len(set(ids)) == 2
    for kind in (SpeechStopped, Committed, Completed):
        assert [e.item_id for e in run.of(kind)] == ids
    assert [c.previous_item_id for c in committed] == [None, ids[0]]
    for item, (start, end), s, t in zip(ids, two_sentences.spans, started, stopped, strict=True):
        # Speech starts with 300 ms of padding and stops after 500 ms of silence.
        assert abs(s.audio_start_ms - (_ms(start) - 300)) < 100
        assert 0 <= t.audio_end_ms - (_ms(end) + 500) < 200
        # Per item: started, stopped, committed, completed, in that order.
        mine = [type(e) for e in run.events if getattr(e, "item_id", None) == item]
        assert [k for k in mine if k is not Partial] == [
            SpeechStarted,
            SpeechStopped,
            Committed,
            Completed,
        ]
    for c, e in zip(committed, completed, strict=True):
        assert (e.audio_start_ms, e.audio_end_ms) == (c.audio_start_ms, c.audio_end_ms)
        assert e.result.duration == pytest.approx((c.audio_end_ms - c.audio_start_ms) / 1000)
    assert run.counters.utterances == {"test": 2} and run.counters.active_sessions == {"test": 0}


@pytest.mark.parametrize(("pause_s", "utterances"), [(0.3, 1), (0.7, 2)])
async def test_only_a_pause_longer_than_silence_duration_ends_an_utterance(
    pause_s: float, utterances: int
) -> None:
    speech = speech_with_pauses([SENTENCES[1], SENTENCES[3]], pause_s=pause_s)
    run = _Run(SessionSettings(model="m"), FakeTranscriber())
    await run.stream(pcm16(speech.audio, 24_000))
    assert len(run.of(Committed)) == utterances


async def test_an_overlong_utterance_is_committed_at_a_pause_and_goes_on() -> None:
    speech = speech_with_pauses(list(SENTENCES[3:7]), pause_s=0.3)  # ~13 s, no long pause
    run = _Run(SessionSettings(model="m"), FakeTranscriber(), max_utterance_s=5.0)
    await run.stream(pcm16(speech.audio, 24_000))
    await run.session.close(drain=True)

    committed = run.of(Committed)
    assert len(committed) >= 3
    assert all(c.audio_end_ms - c.audio_start_ms <= 5_032 for c in committed)
    pauses = [(_ms(a), _ms(b)) for (_, a), (b, _) in itertools.pairwise(speech.spans)]
    for before, after in itertools.pairwise(committed):
        # The next utterance starts where the last one was cut, and the cut is in a pause.
        assert after.audio_start_ms == before.audio_end_ms
        assert any(a <= before.audio_end_ms <= b for a, b in pauses), before.audio_end_ms
        assert after.previous_item_id == before.item_id
    # Each cut is announced as a stop and a start, so every item has both.
    assert len(run.of(SpeechStarted)) == len(run.of(SpeechStopped)) == len(committed)
    assert len(run.of(Completed)) == len(committed)


async def test_partials_send_deltas_that_join_to_the_final_transcript(two_sentences) -> None:
    transcriber = FakeTranscriber()
    options = TranscribeOptions(word_timestamps=True, segment_timestamps=True)
    run = _Run(SessionSettings(model="m", options=options), transcriber)
    await run.stream(pcm16(two_sentences.audio, 24_000))
    await run.session.close(drain=True)

    partial_requests = [r for r in transcriber.requests if r.kind is TranscribeKind.PARTIAL]
    assert len(partial_requests) >= 10  # 12 s of speech, one every 0.5 s
    # Timestamps are asked for the finals only: nobody reads a partial's.
    assert {r.options for r in partial_requests} == {TranscribeOptions()}
    finals = [r for r in transcriber.requests if r.kind is TranscribeKind.FINAL]
    assert {r.options for r in finals} == {options}
    for completed in run.of(Completed):
        item = completed.item_id
        partials = [e for e in run.of(Partial) if e.item_id == item]
        assert {p.audio_start_ms for p in partials} == {completed.audio_start_ms}
        deltas = [p.delta for p in partials]
        assert deltas and any(deltas)
        assert "".join(deltas) + (completed.delta or "") == completed.transcript
    # Partials of an item come before its speech stops.
    last_partial = max(i for i, e in enumerate(run.events) if isinstance(e, Partial))
    last_stop = max(i for i, e in enumerate(run.events) if isinstance(e, SpeechStopped))
    assert last_partial < last_stop


async def test_no_partial_starts_while_the_speaker_pauses(two_sentences) -> None:
    """A partial begun in the silence before a stop would hold the model while the final
    waits: partials cover speech, and a pause inside the utterance starts none."""
    transcriber = FakeTranscriber()
    run = _Run(SessionSettings(model="m"), transcriber)
    # Each commit closes the partials of its utterance: count the requests made by then.
    by_commit: list[int] = []
    emit = run.session._emit
    run.session._emit = lambda e: (  # type: ignore[method-assign]
        by_commit.append(len(transcriber.requests)) if isinstance(e, Committed) else None,
        emit(e),
    )
    await run.stream(pcm16(two_sentences.audio, 24_000), size=960)  # 20 ms appends
    await run.session.close(drain=True)
    assert len(by_commit) == 2
    first, second = by_commit[0], by_commit[1]
    for requests, (start, end) in zip(
        (transcriber.requests[:first], transcriber.requests[first + 1 : second]),
        two_sentences.spans,
        strict=True,
    ):
        partials = [r for r in requests if r.kind is TranscribeKind.PARTIAL]
        assert partials
        # The utterance so far: 300 ms of padding, then speech; a partial's audio ends at
        # most a few frames (hysteresis) past the speech, never in the 500 ms of silence.
        longest = max(_ms(len(r.audio)) for r in partials)
        assert longest <= 300 + _ms(end - start) + 150, (longest, _ms(end - start))


async def test_committing_cancels_the_partial_still_in_flight(two_sentences) -> None:
    cancelled: list[int] = []

    class SlowPartials(FakeTranscriber):
        async def __call__(self, request: TranscribeRequest) -> EngineResult:
            if request.kind is TranscribeKind.PARTIAL:
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    cancelled.append(len(request.audio))
                    raise
            return await super().__call__(request)

    run = _Run(MANUAL, SlowPartials())
    # Manual turns still decode partials in the core; commit while one is held.
    await run.stream(pcm16(two_sentences.sentence(1), 24_000))
    await asyncio.sleep(0.05)
    await run.session.commit()
    await asyncio.sleep(0.05)
    assert cancelled, "the partial of the committed utterance kept running"
    await run.session.close(drain=True)
    assert len(run.of(Completed)) == 1


async def test_no_partials_when_the_replica_or_the_session_turns_them_off(two_sentences) -> None:
    for settings, config in (
        (SessionSettings(model="m"), {"partials": False}),
        (SessionSettings(model="m", partials=False), {}),
    ):
        transcriber = FakeTranscriber()
        run = _Run(settings, transcriber, **config)
        await run.stream(pcm16(two_sentences.audio, 24_000))
        assert {r.kind for r in transcriber.requests} == {TranscribeKind.FINAL}


async def test_finals_are_emitted_in_commit_order_though_decoded_out_of_order() -> None:
    gate = asyncio.Event()

    async def slow_first(request: TranscribeRequest) -> EngineResult:
        if len(request.audio) > SR:  # the first utterance is the longer one
            await gate.wait()
        return EngineResult(text=f"{len(request.audio)}", duration=len(request.audio) / SR)

    run = _Run(MANUAL, slow_first)
    await run.session.append(bytes(2 * 36_000))  # 1.5 s
    await run.session.commit()
    await run.session.append(bytes(2 * 12_000))  # 0.5 s
    await run.session.commit()
    await asyncio.sleep(0.05)
    assert run.of(Completed) == []  # the second is decoded but waits for the first
    gate.set()
    await run.session.close(drain=True)
    assert [e.transcript for e in run.of(Completed)] == ["24000", "8000"]


async def test_failed_and_timed_out_decodes_fail_their_item_and_the_session_goes_on() -> None:
    outcomes = iter(["refuse", "hang", "crash", "ok"])

    async def model(request: TranscribeRequest) -> EngineResult:
        outcome = next(outcomes)
        if outcome == "refuse":
            raise InvalidRequestError("language 'xx' is not supported", param="language")
        if outcome == "hang":
            await asyncio.Event().wait()
        if outcome == "crash":
            raise RuntimeError("CUDA error")
        return EngineResult(text="fine", duration=1.0)

    run = _Run(MANUAL, model, final_timeout_s=0.2)
    for _ in range(4):
        await run.session.append(bytes(9_600))
        await run.session.commit()
    await run.session.close(drain=True)
    failed = run.of(Failed)
    assert [f.error.code for f in failed] == [
        "invalid_request",
        "deadline_exceeded",
        "internal_error",
    ]
    assert failed[0].error.param == "language"
    assert "CUDA" not in failed[2].error.message  # internals stay in the log
    assert [c.transcript for c in run.of(Completed)] == ["fine"]
    ends = [e.item_id for e in run.events if isinstance(e, Completed | Failed)]
    assert ends == [c.item_id for c in run.of(Committed)]
    assert run.counters.failed == {
        ("test", "invalid_request"): 1,
        ("test", "deadline_exceeded"): 1,
        ("test", "internal_error"): 1,
    }


async def test_each_final_says_where_its_time_went(two_sentences, caplog) -> None:
    """From the end of the speech to the transcript sent: the VAD's silence wait, the model
    call, the wait behind the earlier item, in the metrics and the session's log line."""
    caplog.set_level(logging.INFO, logger="ray.serve")
    gate = asyncio.Event()

    class FirstWaits(FakeTranscriber):
        async def __call__(self, request: TranscribeRequest) -> EngineResult:
            if request.kind is TranscribeKind.FINAL and not gate.is_set():
                gate.set()  # the first final is slow: the second waits behind it to be sent
                await asyncio.sleep(1.2)
            return await super().__call__(request)

    run = _Run(SessionSettings(model="m", partials=False), FirstWaits(delay_s=0.05))
    for chunk in chunks(pcm16(two_sentences.audio, 24_000), CHUNK):
        await run.session.append(chunk)
        await asyncio.sleep(0.01)  # 10x real time: 500 ms of silence take about 50 ms
    await run.session.close(drain=True)
    assert len(run.of(Completed)) == 2
    stages = run.counters.final_stage_times.stages
    assert list(stages) == ["silence", "send", "total"]  # a fake model reports no stages
    assert all(t.count == 2 for t in stages.values())
    assert stages["silence"].max_s >= 0.03
    assert stages["send"].max_s >= 0.1  # the second final, sent after the first
    assert stages["total"].max_s >= 1.2
    (line,) = [r.getMessage() for r in caplog.records if "ended after" in r.getMessage()]
    assert "items=2 failed=0 final_ms_mean/max: silence=" in line and " total=" in line


async def test_manual_commit_needs_100_ms_and_keeps_the_audio_clock() -> None:
    run = _Run(MANUAL, FakeTranscriber())
    with pytest.raises(CommitEmptyError, match="at least 100ms"):
        await run.session.commit()
    await run.session.append(bytes(2 * 1_200))  # 50 ms
    with pytest.raises(CommitEmptyError, match="only has 50ms"):
        await run.session.commit()
    await run.session.append(bytes(2 * 22_800))  # 1 s in all
    await run.session.commit()
    await run.session.append(bytes(2 * 12_000))
    await run.session.commit()
    await run.session.close(drain=True)
    spans = [(c.audio_start_ms, c.audio_end_ms) for c in run.of(Committed)]
    assert spans == [(0, 1000), (1000, 1500)]
    assert run.counters.final_stage_times.stages["silence"].max_s == 0  # commits wait for none
    finals = [r for r in run.transcriber.requests if r.kind is TranscribeKind.FINAL]
    assert [len(r.audio) for r in finals] == [SR, SR // 2]
    assert run.of(SpeechStarted) == []  # manual turns announce nothing


async def test_clear_drops_the_uncommitted_audio_and_its_partials(two_sentences) -> None:
    run = _Run(SessionSettings(model="m"), FakeTranscriber(delay_s=0.05))
    first_end = two_sentences.spans[0][1] * 3 // 2  # 24 kHz samples
    await run.stream(pcm16(two_sentences.audio, 24_000)[: 2 * first_end - 2 * 12_000])
    [started] = run.of(SpeechStarted)
    await run.session.clear()
    assert run.events[-1] == Cleared(started.item_id)
    await asyncio.sleep(0.1)  # a partial in flight for it comes back and is dropped
    assert isinstance(run.events[-1], Cleared)
    with pytest.raises(CommitEmptyError):
        await run.session.commit()
    await run.session.clear()  # clearing nothing is fine
    assert run.events[-1] == Cleared(None)
    assert run.of(Committed) == []


async def test_the_session_audio_limit_ends_the_session() -> None:
    run = _Run(MANUAL, FakeTranscriber(), max_session_audio_s=1.0)
    await run.session.append(bytes(2 * 14_400))  # 0.6 s
    with pytest.raises(SessionAudioLimitError, match="limit of 1 s"):
        await run.session.append(bytes(2 * 14_400))


async def test_sessions_of_one_connection_share_its_audio_budget() -> None:
    """funasr's ``START`` opens a new session on the same connection: it does not start
    the connection's count again."""
    budget = AudioBudget(1.0)
    first = _Run(MANUAL, FakeTranscriber(), audio_budget=budget)
    await first.session.append(bytes(2 * 14_400))  # 0.6 s
    await first.session.close(drain=False)
    second = _Run(MANUAL, FakeTranscriber(), audio_budget=budget)
    with pytest.raises(SessionAudioLimitError):
        await second.session.append(bytes(2 * 14_400))
    await second.session.append(bytes(2 * 9_600))  # what is left: 0.4 s
    assert budget.used_s == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("error", "level"),
    [
        (InvalidRequestError("language 'xx' is not supported", param="language"), logging.INFO),
        (RuntimeError("CUDA error\nforged line"), logging.WARNING),
    ],
)
async def test_failed_partials_are_one_line_now_and_then(
    two_sentences, caplog, monkeypatch, error: Exception, level: int
) -> None:
    """A client can make every partial fail (a language the model lacks): the log gets one
    line without a traceback per interval, then a line counting those left out."""

    async def model(request: TranscribeRequest) -> EngineResult:
        if request.kind is TranscribeKind.PARTIAL:
            raise error
        return EngineResult(text="fine", duration=1.0)

    caplog.set_level(logging.INFO, logger="ray.serve")
    run = _Run(SessionSettings(model="m"), model)
    pcm = pcm16(two_sentences.audio, 24_000)
    await run.stream(pcm[: len(pcm) // 2])
    await asyncio.sleep(0.05)
    monkeypatch.setattr(core, "PARTIAL_FAILURE_LOG_INTERVAL_S", 0.0)
    await run.stream(pcm[len(pcm) // 2 :])
    await run.session.close(drain=True)
    lines = [r for r in caplog.records if "partial failed" in r.getMessage()]
    assert len(lines) >= 2 and {r.levelno for r in lines} == {level}
    assert not any(r.exc_info for r in lines)
    assert "more not logged" not in lines[0].getMessage()
    assert "more not logged" in lines[1].getMessage()
    assert all("\n" not in r.getMessage() for r in lines)
    assert len(run.of(Completed)) == 2  # the finals are not affected


async def test_bad_bytes_take_nothing() -> None:
    run = _Run(MANUAL, FakeTranscriber())
    with pytest.raises(InvalidAudioError, match="2-byte"):
        await run.session.append(b"\x00" * 4_801)
    await run.session.append(bytes(4_800))
    await run.session.commit()
    assert run.of(Committed)[0].audio_end_ms == 100


async def test_switching_to_manual_keeps_the_open_utterance(two_sentences) -> None:
    run = _Run(SessionSettings(model="m"), FakeTranscriber())
    data = pcm16(two_sentences.audio, 24_000)
    speech_24k = two_sentences.spans[0][0] * 3 // 2
    await run.stream(data[: 2 * (speech_24k + 24_000)])  # 1 s into the first sentence
    [started] = run.of(SpeechStarted)
    await run.session.update(SessionSettings(model="m", turn_detection=None))
    await run.stream(data[2 * (speech_24k + 24_000) : 2 * (speech_24k + 24_000) + 96_000])
    assert run.of(SpeechStopped) == []  # 2 s more, silence included: the client decides
    await run.session.commit()
    assert [e.item_id for e in run.of(SpeechStopped) + run.of(Committed)] == [started.item_id] * 2
    # And back: audio the client had not committed becomes an utterance in progress.
    await run.session.append(bytes(4_800))
    await run.session.update(SessionSettings(model="m"))
    assert len(run.of(SpeechStarted)) == 2
    await run.stream(bytes(48_000))  # 1 s of silence ends it
    assert len(run.of(Committed)) == 2


async def test_a_new_input_format_applies_to_the_audio_after_it() -> None:
    run = _Run(MANUAL, FakeTranscriber())
    await run.session.append(bytes(2 * 12_000))  # 0.5 s of 24 kHz PCM16
    g711 = SessionSettings(
        model="m", turn_detection=None, input_format=InputFormat(encoding="pcmu", rate=8_000)
    )
    await run.session.update(g711)
    await run.session.append(bytes([0xFF]) * 4_000)  # 0.5 s of μ-law silence
    await run.session.commit()
    assert run.of(Committed)[0].audio_end_ms == 1000
    await run.session.update(g711.model_copy(update={"options": TranscribeOptions(language="en")}))
    await run.session.append(bytes([0xFF]) * 800)
    await run.session.commit()
    await run.session.close(drain=True)
    assert run.transcriber.requests[-1].options.language == "en"


async def test_closing_without_drain_cancels_the_decodes() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hang(request: TranscribeRequest) -> EngineResult:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    run = _Run(MANUAL, hang)
    await run.session.append(bytes(9_600))
    await run.session.commit()
    await started.wait()
    await run.session.close(drain=False)
    assert cancelled.is_set()
    assert run.of(Completed) == run.of(Failed) == []
    assert run.counters.active_sessions == {"test": 0}
