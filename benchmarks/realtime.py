"""Live sessions: N concurrent speakers at real time, asr-serve against a per-session loop.

    python -m benchmarks.realtime [--levels 1 4 8 16] [--speed 1.0]
    python -m benchmarks.realtime --engine funasr      # the tiny Fun-ASR-Nano: the serving path
    python -m benchmarks.realtime --front haproxy      # Serve's HAProxy instead of its proxy

Every session streams the same espeak recording (three sentences, one second of silence
between them) as 24 kHz PCM16 in 40 ms appends, paced at real time, over OpenAI's Realtime
transcription protocol (server VAD, partials on), starting a random fraction of a second
apart. Systems, one at a time on the same machine:

- ``asr-serve``: ``serve run`` of the model (``--engine whisper``: the embedded Whisper tiny.en
  with the model and batching of ``serve_config.cpu.yaml``, the quickstart; ``--engine
  funasr``: the generated tiny Fun-ASR-Nano as ``benchmarks.run`` serves it, whose engine is
  fast enough that the serving path, not the model, is what the levels measure; its random
  weights make latency and lost finals meaningful, its text and WER not); every session's
  decodes go through one ingress replica's scheduler to the ``@serve.batch`` ASR deployment.
- ``realtime-loop``: ``benchmarks/servers/realtime_loop.py``, the same session core behind
  one model under a lock, each session decoding on its own (funasr's ``realtime_ws.py``
  design): no batching across sessions, no priority for finals, nothing shed.

Per level: **final latency** from the moment the utterance's end was sent (the audio up to
``speech_stopped``'s ``audio_end_ms``: the server can commit no earlier) to ``completed``,
P50/P95, and the same from the end of the spoken sentence (includes the VAD's 500 ms of
silence); **first-delta latency** from the sentence's start to its first ``delta``; WER of
the finals against the sentences' text, beside the file API's WER on the same sentences;
finals lost (no ``completed``/``failed`` within 30 s of the end); partials shed, mean batch
size and where the finals' time went, stage by stage (asr-serve; the ingress's ``stats()``).
A system **sustains** a level when every final arrived and the final latency's P95 is at most
2 s (Whisper) or 1 s (the tiny Fun-ASR-Nano). Writes
``results/<date>-<machine>-realtime[-funasr][-<front>].json/.md`` and, with Serve's proxy
in front (the shipped front door), adds ``realtime`` (or ``realtime_funasr``) to
``results/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets
from pydantic import BaseModel

from asr_serve.config import SAMPLE_RATE, ModelConfig
from asr_serve.engines import TranscribeOptions, create_engine
from benchmarks.plan import make_plan, quickstart_model
from benchmarks.report import command_line, machine_label, update_latest
from benchmarks.run import RESULTS_DIR
from benchmarks.systems.baselines import UvicornSystem
from benchmarks.systems.served import FRONTS, ServedSystem, ServeRun
from devtools.speech import Speech, encode, pcm16, speech_with_pauses
from devtools.text import SENTENCES, wer
from devtools.tiny_model import ensure_tiny_model

CHUNK_MS = 40
#: Per engine: a level is sustained when every final arrived and their P95 latency is within
#: this. Whisper on two cores decodes an utterance in most of a second; the tiny model in a
#: tenth, so what it may add is the serving path's.
SUSTAINED_P95_S = {"whisper": 2.0, "funasr": 1.0}
LEVELS = {"whisper": [1, 4, 8, 16], "funasr": [1, 8, 16, 24, 32, 48]}
#: Finals not in by this long after the stream's end are lost.
GRACE_S = 30.0
TEXTS = [SENTENCES[0], SENTENCES[2], SENTENCES[1]]
COMPLETED = "conversation.item.input_audio_transcription.completed"
FAILED = "conversation.item.input_audio_transcription.failed"
DELTA = "conversation.item.input_audio_transcription.delta"


class Item(BaseModel):
    sentence: int | None
    final_latency_s: float | None
    from_speech_end_s: float | None
    first_delta_s: float | None
    transcript: str | None
    failed: bool


class Level(BaseModel):
    sessions: int
    finals: int
    lost: int
    failed: int
    final_p50_s: float | None
    final_p95_s: float | None
    from_speech_end_p50_s: float | None
    first_delta_p50_s: float | None
    wer: float | None
    partials_shed: int | None = None
    mean_batch: float | None = None
    #: asr-serve: the level's mean time of each stage of a final, in ms (silence, queue,
    #: batch, engine, transport, send, total; docs/live.md).
    final_stages_ms: dict[str, float] | None = None
    sustained: bool


class Results(BaseModel):
    engine: str = "whisper"
    #: The engine alone, in process, per utterance: the floor of any final's latency.
    engine_utterance_s: list[float]
    #: asr-serve's file API on the same sentences: the WER finals are held to.
    file_api_wer: float | None = None
    systems: dict[str, list[Level]] = {}


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.quantile(np.asarray(values), q))


async def _session(url: str, model: str, speech: Speech, speed: float, start_in: float):
    """One speaker: stream the recording, return its items (matched to sentences)."""
    await asyncio.sleep(start_in)
    pcm = pcm16(speech.audio, 24_000)
    step = 48 * CHUNK_MS
    events: list[tuple[float, dict[str, Any]]] = []
    async with websockets.connect(f"{url}?intent=transcription&model={model}") as conn:
        await conn.send(
            json.dumps({"type": "session.update", "session": {"type": "transcription"}})
        )
        t0 = time.monotonic()

        async def send() -> None:
            for i in range(0, len(pcm), step):
                append = {"type": "input_audio_buffer.append"}
                append["audio"] = base64.b64encode(pcm[i : i + step]).decode()
                await conn.send(json.dumps(append))
                await asyncio.sleep(max(0.0, t0 + (i + step) / 48_000 / speed - time.monotonic()))

        sender = asyncio.create_task(send())
        ends = 0
        # A server that falls too far behind may drop the connection (a keepalive timeout):
        # the finals it had not sent are lost, and the level goes on.
        with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
            async with asyncio.timeout(len(pcm) / 48_000 / speed + GRACE_S):
                async for raw in conn:
                    event = json.loads(raw)
                    events.append((time.monotonic(), event))
                    ends += event["type"] in (COMPLETED, FAILED)
                    if ends == len(speech.texts):
                        break
        with contextlib.suppress(websockets.ConnectionClosed):
            await sender
    return _items(events, t0, speech, speed)


def _items(events: list[tuple[float, dict]], t0: float, speech: Speech, speed: float) -> list[Item]:
    def sent_at(ms: float) -> float:
        return t0 + ms / 1000 / speed

    started = {
        e["item_id"]: e["audio_start_ms"] for _, e in events if e["type"].endswith("speech_started")
    }
    stopped = {
        e["item_id"]: e["audio_end_ms"] for _, e in events if e["type"].endswith("speech_stopped")
    }
    items = []
    for item_id, start_ms in started.items():
        end_ms = stopped.get(item_id)
        mid = start_ms + ((end_ms or start_ms) - start_ms) / 2
        sentence = next(
            (
                i
                for i, (a, b) in enumerate(speech.spans)
                if a * 1000 / SAMPLE_RATE - 600 <= mid <= b * 1000 / SAMPLE_RATE + 600
            ),
            None,
        )
        done = next(
            (
                (t, e)
                for t, e in events
                if e.get("item_id") == item_id and e["type"] in (COMPLETED, FAILED)
            ),
            None,
        )
        first = next(
            (t for t, e in events if e.get("item_id") == item_id and e["type"] == DELTA), None
        )
        latency = None if done is None or end_ms is None else done[0] - sent_at(end_ms)
        from_end = None
        if done is not None and sentence is not None:
            from_end = done[0] - sent_at(speech.spans[sentence][1] * 1000 / SAMPLE_RATE)
        first_delta = None
        if first is not None and sentence is not None:
            first_delta = first - sent_at(speech.spans[sentence][0] * 1000 / SAMPLE_RATE)
        items.append(
            Item(
                sentence=sentence,
                final_latency_s=latency,
                from_speech_end_s=from_end,
                first_delta_s=first_delta,
                transcript=None if done is None else done[1].get("transcript"),
                failed=done is not None and done[1]["type"] == FAILED,
            )
        )
    return items


async def _level(url: str, model: str, speech: Speech, n: int, speed: float) -> list[list[Item]]:
    rng = random.Random(n)
    return await asyncio.gather(
        *(_session(url, model, speech, speed, rng.uniform(0, 1)) for _ in range(n))
    )


def _summarise(n: int, sessions: list[list[Item]], speech: Speech, engine: str) -> Level:
    items = [i for s in sessions for i in s]
    done = [i for i in items if i.transcript is not None and not i.failed]
    finals = [i.final_latency_s for i in done if i.final_latency_s is not None]
    expected = n * len(speech.texts)
    # WER of each session's finals, in order, against the three sentences' text.
    hyps = [
        " ".join(i.transcript or "" for i in sorted(s, key=lambda i: i.sentence or 0))
        for s in sessions
    ]
    p95 = _quantile(finals, 0.95)
    lost = expected - len(done) - sum(i.failed for i in items)
    return Level(
        sessions=n,
        finals=len(done),
        lost=max(0, lost),
        failed=sum(i.failed for i in items),
        final_p50_s=_quantile(finals, 0.5),
        final_p95_s=p95,
        from_speech_end_p50_s=_quantile(
            [i.from_speech_end_s for i in done if i.from_speech_end_s is not None], 0.5
        ),
        first_delta_p50_s=_quantile(
            [i.first_delta_s for i in items if i.first_delta_s is not None], 0.5
        ),
        wer=wer([" ".join(speech.texts)] * n, hyps),
        sustained=len(done) == expected and p95 is not None and p95 <= SUSTAINED_P95_S[engine],
    )


def _engine_times(model: ModelConfig, speech: Speech) -> list[float]:
    """The engine alone, in process, one utterance at a time (median of three each)."""
    engine = create_engine(model)
    engine.load()
    engine.warmup()
    times = []
    for i in range(len(speech.texts)):
        audio = speech.sentence(i, pad_s=0.5)
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            engine.transcribe([audio], [TranscribeOptions()])
            runs.append(time.perf_counter() - started)
        times.append(statistics.median(runs))
    return times


def _file_api_wer(base_url: str, model: str, speech: Speech) -> float:
    texts = []
    with httpx.Client(timeout=120) as http:
        for i in range(len(speech.texts)):
            resp = http.post(
                f"{base_url}/v1/audio/transcriptions",
                files={
                    "file": ("s.wav", encode(speech.sentence(i, pad_s=0.5), SAMPLE_RATE, "wav"))
                },
                data={"model": model},
            )
            resp.raise_for_status()
            texts.append(resp.json()["text"])
    return wer([" ".join(speech.texts)], [" ".join(texts)])


def _run_levels(
    name: str, url: str, model: str, speech: Speech, args, on_level=None
) -> list[Level]:
    levels = []
    for n in args.levels:
        sessions = asyncio.run(_level(url, model, speech, n, args.speed))
        level = _summarise(n, sessions, speech, args.engine)
        if on_level is not None:
            level = on_level(level)
        print(f"[{name}] {level.model_dump_json()}", flush=True)
        levels.append(level)
    return levels


def _model(engine: str) -> ModelConfig:
    """Whisper exactly as ``make serve`` serves it (``serve_config.cpu.yaml``); the tiny
    Fun-ASR-Nano as ``benchmarks.run`` does."""
    if engine == "funasr":
        plan = make_plan(
            "funasr", quick=False, gpu=False, systems=[], funasr_dir=ensure_tiny_model()
        )
        return plan.model
    return quickstart_model()


def _stage_means(before: dict, after: dict) -> dict[str, float] | None:
    """Each stage's mean over the finals between two readings of the ingress's
    ``final_stages`` (count and mean since the replica started)."""
    means = {}
    for stage, now in after.items():
        then = before.get(stage, {"count": 0, "mean_ms": 0.0})
        count = now["count"] - then["count"]
        if count > 0:
            total = now["count"] * now["mean_ms"] - then["count"] * then["mean_ms"]
            means[stage] = round(total / count, 1)
    return means or None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.realtime", description=__doc__)
    parser.add_argument("--engine", choices=list(LEVELS), default="whisper")
    parser.add_argument("--levels", type=int, nargs="+", help="default: per engine, see LEVELS")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    # Not "direct": the sessions would have to find the ingress replica's own port.
    fronts = [f for f in FRONTS if f != "direct"]
    parser.add_argument("--front", choices=fronts, default="proxy", help="Serve's front door")
    args = parser.parse_args(argv)
    args.levels = args.levels or LEVELS[args.engine]

    model = _model(args.engine)
    speech = speech_with_pauses(TEXTS, pause_s=1.0)
    engine_s = _engine_times(model, speech)
    results = Results(engine=args.engine, engine_utterance_s=engine_s)

    # A short directory: HAProxy's socket paths under it are bounded.
    with tempfile.TemporaryDirectory(prefix="asr-rt-") as tmp:
        run = ServeRun(Path(tmp), model, front=args.front)
        served = ServedSystem("asr-serve", run)
        try:
            run.start()
            url = run.base_url.replace("http://", "ws://", 1) + "/v1/realtime"
            results.file_api_wer = _file_api_wer(run.base_url, model.name, speech)
            seen = run.ingress_stats()

            def with_server_stats(level: Level) -> Level:
                nonlocal seen
                sizes = served.batch_sizes() or []
                stats = run.ingress_stats()
                level = level.model_copy(
                    update={
                        "partials_shed": stats["partials_shed"] - seen["partials_shed"],
                        "mean_batch": statistics.fmean(sizes) if sizes else None,
                        "final_stages_ms": _stage_means(
                            seen["final_stages"], stats["final_stages"]
                        ),
                    }
                )
                seen = stats
                return level

            served.batch_sizes()  # forget warm-up batches
            results.systems["asr-serve"] = _run_levels(
                "asr-serve", url, model.name, speech, args, with_server_stats
            )
        finally:
            run.stop()
        loop = UvicornSystem("realtime-loop", Path(tmp), model, "realtime_loop")
        try:
            loop.start()
            url = loop.base_url.replace("http://", "ws://", 1) + "/v1/realtime"
            results.systems["realtime-loop"] = _run_levels(
                "realtime-loop", url, model.name, speech, args
            )
        finally:
            loop.stop()

    summary = _summary(results)
    date = datetime.now(UTC).isoformat(timespec="seconds")
    machine = machine_label(gpu=False)
    report = {
        "machine": machine,
        "command": command_line("benchmarks.realtime", argv),
        "date": date,
        "model": model.model_dump(mode="json"),
        "results": results.model_dump(),
        "summary": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = ("" if args.engine == "whisper" else f"-{args.engine}") + (
        "" if args.front == "proxy" else f"-{args.front}"
    )
    stem = args.out / f"{date[:10]}-{machine}-realtime{suffix}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    key = "realtime" if args.engine == "whisper" else f"realtime_{args.engine}"
    if args.front == "proxy":
        update_latest(args.out, {key: {**summary, "command": report["command"], "date": date}})
    print(json.dumps(summary, indent=1), flush=True)
    return report


def _sustained(levels: list[Level]) -> int:
    return max((lv.sessions for lv in levels if lv.sustained), default=0)


def _at(levels: list[Level], n: int) -> Level | None:
    return next((lv for lv in levels if lv.sessions == n), None)


def _summary(results: Results) -> dict[str, Any]:
    """The targets, each with its measured value and whether it was met."""
    ours, loop = results.systems["asr-serve"], results.systems["realtime-loop"]
    engine_p50 = statistics.median(results.engine_utterance_s)
    file_wer = results.file_api_wer if results.file_api_wer is not None else float("nan")
    one, eight = _at(ours, 1), _at(ours, 8)
    worst_wer = max((lv.wer for lv in ours if lv.wer is not None), default=None)
    sustained, baseline = _sustained(ours), _sustained(loop)
    summary = {
        "engine": results.engine,
        "file_api_wer": results.file_api_wer,
        "finals_wer_worst_level": worst_wer,
        "engine_utterance_p50_s": engine_p50,
        "final_p50_s_1_session": one and one.final_p50_s,
        "first_delta_p50_s_1_session": one and one.first_delta_p50_s,
        "final_p95_s_8_sessions": eight and eight.final_p95_s,
        "finals_lost_8_sessions": eight and eight.lost,
        "sessions_sustained": sustained,
        "sessions_sustained_baseline": baseline,
        "sustained_vs_baseline": sustained / baseline if baseline else None,
    }
    met = {
        "final P50 at 1 session <= engine + 150 ms": bool(
            one and one.final_p50_s is not None and one.final_p50_s <= engine_p50 + 0.15
        ),
        ">= 1.5x the sessions the baseline sustains": bool(baseline and sustained >= 1.5 * baseline)
        or (baseline == 0 and sustained > 0),
    }
    if results.engine == "whisper":
        # A real model's text: the finals must say what the file API says, and a delta is
        # text two hypotheses agree on (random weights' never settle).
        met["first delta P50 at 1 session <= engine + 0.7 s"] = bool(
            one and one.first_delta_p50_s is not None and one.first_delta_p50_s <= engine_p50 + 0.7
        )
        met["finals_wer <= file_api_wer + 0.02"] = (
            worst_wer is not None and worst_wer <= file_wer + 0.02
        )
        met["every final at 8 sessions, P95 <= 2 s"] = bool(eight and eight.sustained)
    else:
        met[">= 32 sessions, every final, P95 <= 1 s"] = sustained >= 32
    summary["met"] = met
    return summary


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> str:
    """The run as a Markdown page: per system and level, then the targets."""
    results, summary = report["results"], report["summary"]
    engine = results.get("engine", "whisper")
    lines = [
        f"# Live sessions, {report['date'][:10]}, {report['machine']}",
        "",
        f"`{report['command']}`; model `{report['model']['name']}`. Engine alone per "
        f"utterance (P50): {_fmt(summary['engine_utterance_p50_s'], 3)} s; the file API's WER "
        f"on the same sentences: {_fmt(summary['file_api_wer'], 3)}"
        + (" (random weights: noise)." if engine == "funasr" else "."),
        "",
        "| system | sessions | finals | lost | failed | final P50 s | final P95 s "
        "| from speech end P50 s | first delta P50 s | WER | partials shed | mean batch "
        "| sustained |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system in ("asr-serve", "realtime-loop"):
        for lv in results["systems"][system]:
            cells = [
                system,
                lv["sessions"],
                lv["finals"],
                lv["lost"],
                lv["failed"],
                _fmt(lv["final_p50_s"]),
                _fmt(lv["final_p95_s"]),
                _fmt(lv["from_speech_end_p50_s"]),
                _fmt(lv["first_delta_p50_s"]),
                _fmt(lv["wer"], 3),
                _fmt(lv["partials_shed"]),
                _fmt(lv["mean_batch"]),
                "yes" if lv["sustained"] else "no",
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    staged = [lv for lv in results["systems"]["asr-serve"] if lv.get("final_stages_ms")]
    if staged:
        stages = list(staged[0]["final_stages_ms"])
        lines += [
            "",
            "Where asr-serve's finals spent their time, mean ms per stage (docs/live.md):",
            "",
            "| sessions | " + " | ".join(stages) + " |",
            "|---|" + "---|" * len(stages),
        ]
        for lv in staged:
            means = lv["final_stages_ms"]
            cells = [lv["sessions"], *(_fmt(means.get(stage), 0) for stage in stages)]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {k} | {'yes' if v else 'no'} |" for k, v in summary["met"].items()]
    lines += [
        "",
        f"Sessions sustained (all finals, P95 ≤ {SUSTAINED_P95_S[engine]:g} s): asr-serve "
        f"{summary['sessions_sustained']}, realtime-loop {summary['sessions_sustained_baseline']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
