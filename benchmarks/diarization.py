"""Diarization: accuracy on synthetic meetings, its cost, batched embeddings, live speakers.

    python -m benchmarks.diarization [--minutes 1.0] [--repeats 2] [--utterances 10]

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
  alternating: the share of utterances whose label is right.

Writes ``results/<date>-<machine>-diarization.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import openai
import ray
from ray import serve

from asr_serve.app import REPLICA_ENV, build_graph
from asr_serve.config import AppConfig
from benchmarks.report import command_line, machine_label
from benchmarks.run import RESULTS_DIR
from devtools.conversation import (
    LINES,
    VOICES,
    Conversation,
    attributed_share,
    converse,
    meeting,
)
from devtools.net import free_port
from devtools.speech import encode, pcm16

MODEL = "whisper-tiny.en"
ARGS = {
    "models": [
        {
            "name": MODEL,
            "engine": "faster-whisper",
            "model": "embedded",
            "device": "cpu",
            "cpu_threads": 2,
            "batching": {"max_batch_size": 4, "batch_wait_timeout_s": 0.02},
        }
    ]
}
OPTIONS = {
    "Ingress": {"ray_actor_options": {"num_cpus": 0.1}},
    "AudioDecoder": {"ray_actor_options": {"num_cpus": 0.2}},
    f"ASR-{MODEL}": {"ray_actor_options": {"num_cpus": 0.5}},
    "Speakers": {"ray_actor_options": {"num_cpus": 0.2}},
}


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
            model=MODEL, file=_file(talk), response_format="diarized_json", chunking_strategy="auto"
        )
        hypothesis = [(s.start, s.end, s.speaker) for s in result.segments]
        voices = VOICES[:count]
        named = client.audio.transcriptions.create(
            model=MODEL,
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


def cost(client: openai.OpenAI, minutes: float, repeats: int) -> dict:
    talk = meeting(VOICES[:2], minutes)
    times: dict[str, list[float]] = {"json": [], "diarized_json": []}
    for _ in range(repeats):
        for fmt in times:
            started = time.perf_counter()
            client.audio.transcriptions.create(
                model=MODEL, file=_file(talk), response_format=fmt, chunking_strategy="auto"
            )
            times[fmt].append(time.perf_counter() - started)
    medians = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "audio_s": round(talk.duration_s, 1),
        "served_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "ratio_diarized_to_json": round(medians["diarized_json"] / medians["json"], 3),
    }
    print(out, flush=True)
    return out


async def batching(app: str) -> dict:
    handle = serve.get_deployment_handle("Speakers", app_name=app)
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
    from tests.support.realtime import client_for, stream_with_sdk

    voices = [VOICES[i % 2] for i in range(utterances)]
    talk = converse(
        [(v, LINES[i % len(LINES)]) for i, v in enumerate(voices)], pause_s=1.2, lead_s=1.5
    )
    events = await stream_with_sdk(
        client_for(base_url),
        f"{MODEL}-diarize",
        pcm16(talk.audio, 24_000),
        chunk_ms=100,
        speed=None,
        session={"type": "transcription"},
        items=utterances,
        timeout_s=300,
    )
    labels = [e.speaker for e in events if e.type.endswith("transcription.segment")]
    first = {labels[0]: voices[0].name} if labels else {}
    mapping = {**first, **{x: voices[1].name for x in set(labels) - set(first)}}
    right = sum(1 for got, v in zip(labels, voices, strict=False) if mapping.get(got) == v.name)
    out = {
        "utterances": utterances,
        "labelled": len(labels),
        "right": right,
        "share": round(right / utterances, 3),
        "labels": labels,
    }
    print(out, flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.diarization", description=__doc__)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--utterances", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    port = free_port()
    ray.init(
        address="local",
        num_cpus=8,
        include_dashboard=False,
        configure_logging=False,
        runtime_env={"env_vars": REPLICA_ENV},
    )
    serve.start(
        http_options={"host": "127.0.0.1", "port": port},
        logging_config={"enable_access_log": False},
    )
    app = "diarization"
    try:
        serve.run(build_graph(AppConfig.model_validate(ARGS), OPTIONS), name=app, route_prefix="/")
        base_url = f"http://127.0.0.1:{port}"
        client = openai.OpenAI(
            base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=600
        )
        report = {
            "command": command_line("benchmarks.diarization", argv),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_label(gpu=False),
            "accuracy": accuracy(client, args.minutes),
            "cost": cost(client, args.minutes, args.repeats),
            "batching": asyncio.run(batching(app)),
            "live": asyncio.run(live(base_url, args.utterances)),
        }
    finally:
        serve.shutdown()
        ray.shutdown()
    args.out.mkdir(parents=True, exist_ok=True)
    day = datetime.now(UTC).date().isoformat()
    path = args.out / f"{day}-{report['machine']}-diarization.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
