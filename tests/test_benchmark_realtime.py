"""The realtime benchmark's bookkeeping: latencies from events, levels, targets, the report."""

from __future__ import annotations

import importlib

import numpy as np

from benchmarks.realtime import (
    COMPLETED,
    DELTA,
    Level,
    Results,
    _items,
    _stage_means,
    _summarise,
    _summary,
    markdown,
)
from devtools.speech import Speech

SR = 16_000
#: Two sentences: 1-3 s and 5-8 s of a 10 s recording.
SPEECH = Speech(
    np.zeros(10 * SR, np.float32), ("one two", "three four"), ((SR, 3 * SR), (5 * SR, 8 * SR))
)


def _events(t0: float) -> list[tuple[float, dict]]:
    """What a session saw: item a (sentence 0) completes, item b (sentence 1) never does."""
    return [
        (
            t0 + 1.1,
            {"type": "input_audio_buffer.speech_started", "item_id": "a", "audio_start_ms": 700},
        ),
        (t0 + 2.0, {"type": DELTA, "item_id": "a", "delta": "one"}),
        (
            t0 + 3.6,
            {"type": "input_audio_buffer.speech_stopped", "item_id": "a", "audio_end_ms": 3500},
        ),
        (t0 + 4.0, {"type": COMPLETED, "item_id": "a", "transcript": "one two"}),
        (
            t0 + 5.1,
            {"type": "input_audio_buffer.speech_started", "item_id": "b", "audio_start_ms": 4700},
        ),
    ]


def test_latencies_are_measured_from_when_the_audio_was_sent() -> None:
    a, b = _items(_events(100.0), 100.0, SPEECH, speed=1.0)
    assert a.sentence == 0 and a.transcript == "one two" and not a.failed
    assert abs(a.final_latency_s - 0.5) < 1e-9  # completed at 4.0, cut at 3.5 s of audio
    assert abs(a.from_speech_end_s - 1.0) < 1e-9  # the sentence ended at 3.0 s
    assert abs(a.first_delta_s - 1.0) < 1e-9  # it started at 1.0 s
    assert b.sentence == 1 and b.transcript is None and b.final_latency_s is None


def test_a_level_counts_lost_finals_and_is_not_sustained() -> None:
    items = _items(_events(0.0), 0.0, SPEECH, speed=1.0)
    level = _summarise(1, [items], SPEECH, "whisper")
    assert (level.finals, level.lost, level.failed) == (1, 1, 0)
    assert not level.sustained
    assert level.wer == 0.5  # "three four" never arrived


def _level(n: int, p50: float, p95: float, sustained: bool, **extra) -> Level:
    return Level(
        sessions=n, finals=3 * n, lost=0, failed=0, final_p50_s=p50, final_p95_s=p95,
        from_speech_end_p50_s=p50 + 0.5, first_delta_p50_s=1.0, wer=0.01, sustained=sustained,
        **extra,
    )  # fmt: skip


def test_targets_and_report() -> None:
    results = Results(
        engine_utterance_s=[0.3, 0.4, 0.5],
        file_api_wer=0.0,
        systems={
            "asr-serve": [_level(1, 0.5, 0.6, True), _level(8, 1.2, 1.8, True)],
            "realtime-loop": [_level(1, 0.6, 0.7, True), _level(8, 4.0, 6.0, False)],
        },
    )
    summary = _summary(results)
    assert summary["sessions_sustained"] == 8 and summary["sessions_sustained_baseline"] == 1
    assert summary["met"] == {
        "final P50 at 1 session <= engine + 150 ms": True,
        ">= 1.5x the sessions the baseline sustains": True,
        "first delta P50 at 1 session <= engine + 0.7 s": True,
        "finals_wer <= file_api_wer + 0.02": True,
        "every final at 8 sessions, P95 <= 2 s": True,
    }
    report = {
        "date": "2026-12-01T00:00:00",
        "machine": "m",
        "command": "python -m benchmarks.realtime",
        "model": {"name": "whisper-tiny.en"},
        "results": results.model_dump(),
        "summary": summary,
    }
    page = markdown(report)
    assert "| asr-serve | 8 | 24 | 0 | 0 | 1.20 | 1.80 |" in page
    assert "realtime-loop 1" in page


def test_the_baseline_server_builds_on_the_same_session_core(monkeypatch) -> None:
    """The per-session loop server imports what it shares with asr-serve (run as a subprocess
    by the benchmark, so a broken import would only show there)."""
    from asr_serve.config import ModelConfig
    from benchmarks.servers.common import MODEL_ENV

    model = ModelConfig(name="m", engine="faster-whisper", model="embedded", device="cpu")
    monkeypatch.setenv(MODEL_ENV, model.model_dump_json())
    module = importlib.import_module("benchmarks.servers.realtime_loop")
    assert "/v1/realtime" in {route.path for route in module.app.routes}


def test_the_tiny_model_is_held_to_its_capacity_and_its_stages_are_reported() -> None:
    """Random weights: no WER target; the goal is sessions carried. A level's stage means
    come from two readings of the ingress's totals."""
    stages = {"silence": 510.0, "engine": 95.0, "total": 640.0}
    results = Results(
        engine="funasr",
        engine_utterance_s=[0.08, 0.09, 0.1],
        systems={
            "asr-serve": [
                _level(1, 0.2, 0.3, True, final_stages_ms=stages),
                _level(32, 0.6, 0.9, True, final_stages_ms=stages),
            ],
            "realtime-loop": [_level(1, 0.2, 0.3, True), _level(32, 3.0, 6.0, False)],
        },
    )
    summary = _summary(results)
    assert summary["met"][">= 32 sessions, every final, P95 <= 1 s"]
    assert not any("wer" in target or "delta" in target for target in summary["met"])
    report = {
        "date": "2026-12-03T00:00:00",
        "machine": "m",
        "command": "python -m benchmarks.realtime --engine funasr",
        "model": {"name": "fun-asr-nano-tiny"},
        "results": results.model_dump(),
        "summary": summary,
    }
    page = markdown(report)
    assert "| sessions | silence | engine | total |" in page
    assert "| 32 | 510 | 95 | 640 |" in page
    assert "P95 ≤ 1 s): asr-serve 32" in page


def test_stage_means_of_a_level_are_of_its_own_finals() -> None:
    before = {"engine": {"count": 2, "mean_ms": 100.0, "max_ms": 120.0}}
    after = {
        "engine": {"count": 6, "mean_ms": 150.0, "max_ms": 300.0},
        "send": {"count": 4, "mean_ms": 1.0, "max_ms": 2.0},
    }
    assert _stage_means(before, after) == {"engine": 175.0, "send": 1.0}
    assert _stage_means(after, after) is None
