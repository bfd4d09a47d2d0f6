"""The harness's summaries and cold-start figures, on made-up records (no servers)."""

from __future__ import annotations

import json

import numpy as np

from benchmarks.loadgen import Record, summarize
from benchmarks.report import EngineReport, Report, SystemResult, _met, markdown


def _record(clip: str, ms: float) -> Record:
    return Record(clip=clip, audio_s=2.0, status=200, latency_s=ms / 1000)


def test_summary_keeps_each_clips_median() -> None:
    records = [_record("2s", 40), _record("2s", 60), _record("28s", 150), _record("28s", 170)]
    records.append(Record(clip="28s", audio_s=28.0, status=503, latency_s=0.001))
    stats = summarize("asr-serve", "closed", records, 1.0, concurrency=1)
    assert stats.p50_ms_by_clip == {"2s": 50.0, "28s": 160.0}  # failures left out
    assert stats.ok == 4 and stats.errors == {"503": 1}


def test_first_request_is_compared_with_its_own_clip() -> None:
    c1 = summarize(
        "asr-serve", "closed", [_record("2s", 50), _record("28s", 150)] * 2, 1.0, concurrency=1
    )
    served = SystemResult(
        system="asr-serve", ready_s=20.0, first_request_ms=300.0, first_request_clip="28s"
    )
    served.levels.append(c1)
    report = EngineReport(engine="funasr", model={}, plan={}, systems={"asr-serve": served})
    cold = report.cold_start()
    assert cold["first_request_vs_steady_p50"] == 300.0 / 100.0  # P50 over the whole mix
    assert cold["steady_p50_ms_c1_same_clip"] == 150.0
    assert cold["first_request_vs_same_clip_p50"] == 2.0


def test_recorded_command_is_the_one_typed(monkeypatch) -> None:
    from benchmarks.report import command_line

    monkeypatch.setattr("sys.argv", ["cpu_breakdown.py", "--levels", "4"])
    assert command_line("benchmarks.cpu_breakdown", None) == (
        "python -m benchmarks.cpu_breakdown --levels 4"
    )
    assert command_line("benchmarks.run", []) == "python -m benchmarks.run"  # main([])


def test_each_benchmark_refreshes_only_its_own_keys_of_latest(tmp_path) -> None:
    from benchmarks.report import update_latest

    update_latest(tmp_path, {"served_vs_inprocess_throughput": 0.5, "long_audio": {"x": 1}})
    update_latest(tmp_path, {"realtime": {"y": 2}})
    path = update_latest(tmp_path, {"served_vs_inprocess_throughput": 0.8})
    assert json.loads(path.read_text()) == {
        "served_vs_inprocess_throughput": 0.8,
        "long_audio": {"x": 1},
        "realtime": {"y": 2},
    }


def test_the_path_alone_is_asr_serve_against_the_plain_server_taking_turns() -> None:
    """``served_vs_sequential_added_p50_ms_c1``: the same decode and inference, one client
    taking turns between asr-serve and a plain server; its target is in the targets met.
    ``..._apart`` is the same from the levels each measured alone."""

    def system(name: str, apart_ms: float, turns_ms: float) -> SystemResult:
        result = SystemResult(system=name)
        for mode, ms in (("closed", apart_ms), ("turns", turns_ms)):
            records = [_record("2s", ms)] * 3
            result.levels.append(summarize(name, mode, records, 1.0, concurrency=1))
        return result

    report = EngineReport(
        engine="funasr",
        model={},
        plan={},
        systems={
            "asr-serve": system("asr-serve", 200.0, 190.0),
            "sequential": system("sequential", 170.0, 175.0),
        },
    )
    ratios = report.ratios()
    assert ratios["served_vs_sequential_added_p50_ms_c1"] == 15.0
    assert ratios["served_vs_sequential_added_p50_ms_c1_apart"] == 30.0
    assert _met(report)["served_vs_sequential_added_p50_ms_c1"] is True
    assert report.systems["asr-serve"].closed(1).p50_ms == 200.0  # the turns are apart


def test_the_path_alone_is_compared_clip_by_clip() -> None:
    """The P50 of a mix is one clip's (here the middle one's); the added time is each clip's
    P50 against the same clip's, averaged over the mix."""

    def system(name: str, ms_by_clip: dict[str, float]) -> SystemResult:
        records = [_record(clip, ms) for clip, ms in ms_by_clip.items() for _ in range(3)]
        result = SystemResult(system=name)
        result.levels.append(summarize(name, "turns", records, 1.0, concurrency=1))
        return result

    served = system("asr-serve", {"2s": 60.0, "5s": 80.0, "28s": 200.0})
    sequential = system("sequential", {"2s": 50.0, "5s": 75.0, "28s": 100.0})
    report = EngineReport(
        engine="funasr",
        model={},
        plan={},
        systems={"asr-serve": served, "sequential": sequential},
    )
    assert served.levels[0].p50_ms - sequential.levels[0].p50_ms == 5.0  # the 5 s clip's
    assert report.ratios()["served_vs_sequential_added_p50_ms_c1"] == (10 + 5 + 100) / 3


def test_taking_turns_sends_each_clip_to_every_system_in_a_rotating_order(monkeypatch) -> None:
    import asyncio

    import httpx

    from benchmarks import loadgen
    from benchmarks.audio import Clip

    seen: list[tuple[str, str]] = []

    async def app(scope, receive, send) -> None:  # answers every POST with 200
        while (await receive()).get("more_body"):
            pass
        seen.append((scope["server"][0], scope["path"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    monkeypatch.setattr(
        loadgen,
        "_client",
        lambda _, timeout_s: httpx.AsyncClient(transport=httpx.ASGITransport(app=app)),
    )
    clips = [
        Clip(name=n, seconds=1.0, data=b"x", samples=np.zeros(1), filename="c.wav")
        for n in ("a", "b")
    ]
    urls = ["http://one/t", "http://two/t", "http://three/t"]
    records = asyncio.run(loadgen.taking_turns(urls, clips, 3, fields=[{}, {}, {}]))
    assert [[r.clip for r in rs] for rs in records] == [["a", "b", "a"]] * 3
    assert [host for host, _ in seen] == (
        ["one", "two", "three", "two", "three", "one", "three", "one", "two"]
    )


def test_a_failed_turns_phase_is_in_the_report() -> None:
    """The key is missing when the phase failed; the report says why."""
    served = SystemResult(system="asr-serve")
    served.levels.append(
        summarize("asr-serve", "closed", [_record("2s", 50)] * 2, 1.0, concurrency=1)
    )
    engine = EngineReport(
        engine="funasr",
        model={"name": "tiny", "engine": "funasr", "max_new_tokens": 32},
        plan={},
        systems={"asr-serve": served},
        turns_error="TimeoutError: sequential did not start",
    )
    report = Report(
        machine="m", command="c", date="d", quick=False, gpu=False, engines={"funasr": engine}
    )
    assert engine.ratios()["served_vs_sequential_added_p50_ms_c1"] is None
    assert "taking turns | failed: 'TimeoutError: sequential did not start'" in markdown(
        report, "p.png"
    )
