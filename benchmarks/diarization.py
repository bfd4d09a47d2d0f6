"""Diarization: accuracy on synthetic meetings, its cost, batched embeddings, live speakers.

    python -m benchmarks.diarization [--minutes 1.0] [--repeats 5] [--utterances 16]
                                     [--parts accuracy cost batching live]

One local Ray and Serve application (the CPU quickstart's Whisper tiny.en and the Speakers
deployment, as ``serve_config.cpu.yaml``), driven over HTTP with the ``openai`` client:

- **accuracy**: meetings of 2, 3 and 4 espeak-ng voices (:data:`~devtools.
  conversation.VOICES`: voice, variant, pitch and speed differ) taking turns with 0.6 s
  pauses, ``--minutes`` long, served as ``diarized_json``; the share of speech time given to
  the right speaker (DER-style, no overlap) against the baseline of one speaker for
  everything; then with known speakers (reference clips of other sentences), the share of
  time with the right name;
- **cost**: the 2-voice meeting served as ``json`` and as ``diarized_json`` at one client,
  alternating (``--repeats`` each): the served time's ratio;
- **batching**: 16 clips of ~3 s embedded through the Speakers deployment's handle, 16
  calls at once against one at a time: embeddings per second;
- **live**: a realtime session of ``<model>-diarize`` with ``--utterances`` of two voices
  alternating: the share of utterances whose label is right (each sentence takes the label
  of the items covering most of it, so a sentence the session's VAD cut in two is scored
  once, by time).

Writes ``results/<date>-<machine>-diarization.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import openai
from ray import serve

from benchmarks.cpu_breakdown import process_cpu
from benchmarks.report import command_line, machine_label
from benchmarks.run import RESULTS_DIR
from benchmarks.systems.base import cmdline
from devtools.conversation import (
    LINES,
    VOICES,
    Conversation,
    attributed_share,
    converse,
    meeting,
    utterances_right,
)
from devtools.local_serve import local_serve
from devtools.speech import encode
from tests.e2e.serving import SPEAKERS_ON, WHISPER, deploy, whisper_model
from tests.support.realtime import SEGMENT, speaker_session

APP = "diarization"
#: The CPU quickstart's model and Speakers (serve_config.cpu.yaml), small Ray reservations
#: so every replica fits the 2-core machine's logical CPUs.
ARGS = {
    "models": [whisper_model(batching={"max_batch_size": 4, "batch_wait_timeout_s": 0.02})],
    "speakers": SPEAKERS_ON,
}
OPTIONS = {
    f"ASR-{WHISPER}": {"ray_actor_options": {"num_cpus": 0.5}},
    "Speakers": {"ray_actor_options": {"num_cpus": 0.2}},
}
PARTS = ("accuracy", "cost", "batching", "live")


def _file(conversation: Conversation) -> io.BytesIO:
    f = io.BytesIO(encode(conversation.audio, 16000, "wav"))
    f.name = "meeting.wav"
    return f


def _reference(voice) -> str:
    import base64

    clip = voice.say(LINES[13] + " " + LINES[14])[: 9 * 16000]
    return "data:audio/wav;base64," + base64.b64encode(encode(clip, 16000, "wav")).decode()


def accuracy(client: openai.OpenAI, minutes: float) -> list[dict]:
    rows = []
    for count in (2, 3, 4):
        talk = meeting(VOICES[:count], minutes)
        result = client.audio.transcriptions.create(
            model=WHISPER,
            file=_file(talk),
            response_format="diarized_json",
            chunking_strategy="auto",
        )
        hypothesis = [(s.start, s.end, s.speaker) for s in result.segments]
        voices = VOICES[:count]
        named = client.audio.transcriptions.create(
            model=WHISPER,
            file=_file(talk),
            response_format="diarized_json",
            chunking_strategy="auto",
            known_speaker_names=[v.name for v in voices],
            known_speaker_references=[_reference(v) for v in voices],
        )
        rows.append(
            {
                "voices": count,
                "audio_s": round(talk.duration_s, 1),
                "speakers_found": len({s.speaker for s in result.segments}),
                "attributed": round(attributed_share(talk.turns, hypothesis), 4),
                "one_speaker_baseline": round(
                    attributed_share(talk.turns, [(0.0, talk.duration_s, "A")]), 4
                ),
                "known_names_right": round(
                    attributed_share(
                        talk.turns,
                        [(s.start, s.end, s.speaker) for s in named.segments],
                        by_name=True,
                    ),
                    4,
                ),
            }
        )
        print(rows[-1], flush=True)
    return rows


def _replica_cpu() -> dict[str, float]:
    """CPU seconds each of this run's Serve replicas (by deployment) has used so far."""
    used: dict[str, float] = {}
    for pid, seconds in process_cpu(os.getpid()).items():
        line = " ".join(cmdline(pid))
        for name in ("Ingress", "AudioDecoder", f"ASR-{WHISPER}", "Speakers"):
            if f"ServeReplica:{APP}:{name}" in line:
                used[name] = used.get(name, 0.0) + seconds
    return used


def cost(client: openai.OpenAI, minutes: float, repeats: int) -> dict:
    """Served time of ``json`` and ``diarized_json``, alternating, and the CPU each request
    took in each replica: where what diarization adds goes."""
    talk = meeting(VOICES[:2], minutes)
    times: dict[str, list[float]] = {"json": [], "diarized_json": []}
    cpu: dict[str, list[dict[str, float]]] = {"json": [], "diarized_json": []}
    for _ in range(repeats):
        for fmt in times:
            before = _replica_cpu()
            started = time.perf_counter()
            client.audio.transcriptions.create(
                model=WHISPER, file=_file(talk), response_format=fmt, chunking_strategy="auto"
            )
            times[fmt].append(time.perf_counter() - started)
            after = _replica_cpu()
            cpu[fmt].append({k: after[k] - before.get(k, 0.0) for k in after})
    medians = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "audio_s": round(talk.duration_s, 1),
        "served_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "ratio_diarized_to_json": round(medians["diarized_json"] / medians["json"], 3),
        "replica_cpu_s_median": {
            fmt: {
                name: round(statistics.median(r.get(name, 0.0) for r in rows), 3)
                for name in sorted({n for r in rows for n in r})
            }
            for fmt, rows in cpu.items()
        },
    }
    print(out, flush=True)
    return out


async def batching() -> dict:
    handle = serve.get_deployment_handle("Speakers", app_name=APP)
    clips = [v.say(LINES[i])[: 3 * 16000] for i, v in enumerate(VOICES * 4)]
    for clip in clips[:2]:
        await handle.embed.remote([clip])
    started = time.perf_counter()
    for clip in clips:
        await handle.embed.remote([clip])
    alone = time.perf_counter() - started
    started = time.perf_counter()
    await asyncio.gather(*(handle.embed.remote([clip]) for clip in clips))
    together = time.perf_counter() - started
    stats = await handle.stats.remote()
    out = {
        "clips": len(clips),
        "one_at_a_time_per_s": round(len(clips) / alone, 2),
        "sixteen_at_once_per_s": round(len(clips) / together, 2),
        "ratio": round(alone / together, 2),
        "largest_batch_partials": max(stats["recent_batch_partials"]),
    }
    print(out, flush=True)
    return out


async def live(base_url: str, utterances: int) -> dict:
    voices = [VOICES[i % 2] for i in range(utterances)]
    talk = converse(
        [(v, LINES[i % len(LINES)]) for i, v in enumerate(voices)], pause_s=1.2, lead_s=1.5
    )
    events = await speaker_session(base_url, WHISPER, talk)
    segments = [(e.start, e.end, e.speaker) for e in events if e.type == SEGMENT]
    share = utterances_right(talk.turns, segments)
    out = {
        "utterances": utterances,
        "items": len(segments),
        "right": round(share * utterances),
        "share": round(share, 3),
        "labels": [label for *_, label in segments],
    }
    print(out, flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.diarization", description=__doc__)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--utterances", type=int, default=16)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    report: dict = {
        "command": command_line("benchmarks.diarization", argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_label(gpu=False),
    }
    with local_serve(num_cpus=8) as serve_url:
        base_url = serve_url + deploy(APP, ARGS, OPTIONS)
        client = openai.OpenAI(
            base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=600
        )
        if "accuracy" in args.parts:
            report["accuracy"] = accuracy(client, args.minutes)
        if "cost" in args.parts:
            report["cost"] = cost(client, args.minutes, args.repeats)
        if "batching" in args.parts:
            report["batching"] = asyncio.run(batching())
        if "live" in args.parts:
            report["live"] = asyncio.run(live(base_url, args.utterances))
    args.out.mkdir(parents=True, exist_ok=True)
    day = datetime.now(UTC).date().isoformat()
    path = args.out / f"{day}-{report['machine']}-diarization.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
