"""Batch invariance: does a clip's text depend on the other clips it is batched with?

    python -m benchmarks.batch_invariance [--permutations 2] [--batch-sizes 2,4,8,16]

Every clip of a speech corpus (the test sentences in three espeak-ng voices) is transcribed
alone, then inside batches of 2, 4, 8 and 16 with neighbours drawn by a seeded shuffle, several
times. Per engine and setting it reports the share of clip-runs whose text differs from the
same clip alone, how many clips ever differ, the corpus WER alone and batched, and the engine
time per clip at each batch size (what invariance by ``max_batch_size: 1`` would cost).

Engines: the embedded Whisper tiny.en as served (int8 on CPU; CTranslate2 picks Intel MKL on
Intel CPUs and oneDNN elsewhere, so ``oneDNN`` runs it as other CPUs do), in float32 too; and
the generated Fun-ASR-Nano checkpoint (random weights: its text is noise, but a change of a
single token still shows). Each setting runs in a process of its own, since CTranslate2 reads
its backend from the environment once. Writes ``results/<date>-<machine>-invariance.{json,md}``
and adds ``batch_invariance`` to ``results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from asr_serve.config import ModelConfig
from benchmarks.report import command_line, machine_label, update_latest
from benchmarks.run import RESULTS_DIR
from devtools.text import SENTENCES, wer

#: Three voices make the corpus's words less certain for the model than one clear voice,
#: which is where a batch's numerics can tip a word.
VOICES = ("en-gb-x-rp", "en-gb-scotland", "en-us")


class Setting(BaseModel):
    """One engine configuration, run in its own process with ``env`` set."""

    name: str
    model: dict
    env: dict[str, str] = {}
    #: Whether the engine's text is speech (WER means something) or noise (random weights).
    real_text: bool = True


def _whisper(dtype: str) -> dict:
    return {
        "name": "whisper-tiny.en",
        "engine": "faster-whisper",
        "model": "embedded",
        "device": "cpu",
        "cpu_threads": 2,
        "dtype": dtype,
    }


def settings() -> list[Setting]:
    from devtools.tiny_model import ensure_tiny_model

    return [
        Setting(name="whisper int8 (library default backend)", model=_whisper("int8")),
        Setting(name="whisper int8, oneDNN", model=_whisper("int8"), env={"CT2_USE_MKL": "0"}),
        Setting(name="whisper float32", model=_whisper("float32")),
        Setting(
            name="fun-asr-nano tiny float32",
            model={
                "name": "tiny-nano",
                "engine": "funasr",
                "model": str(ensure_tiny_model()),
                "device": "cpu",
                "cpu_threads": 2,
                "max_new_tokens": 32,
            },
            real_text=False,
        ),
    ]


class BatchLevel(BaseModel):
    batch_size: int
    runs: int
    changed_runs: int
    changed_clips: int
    changed_share: float
    wer_batched: float | None
    seconds_per_clip: float
    examples: list[tuple[str, str]]


class SettingResult(BaseModel):
    name: str
    env: dict[str, str]
    clips: int
    wer_alone: float | None
    seconds_per_clip_alone: float
    levels: list[BatchLevel]


def _corpus() -> tuple[list[np.ndarray], list[str]]:
    from devtools.speech import synthesize

    clips, texts = [], []
    for voice in VOICES:
        for sentence in SENTENCES:
            clips.append(synthesize(sentence, voice=voice))
            texts.append(sentence)
    return clips, texts


def measure(setting: Setting, batch_sizes: list[int], permutations: int) -> SettingResult:
    """Alone, then in shuffled batches: what changes, and what each batch size costs."""
    from asr_serve.engines import TranscribeOptions, create_engine

    engine = create_engine(ModelConfig.model_validate(setting.model))
    engine.load()
    engine.warmup()
    clips, refs = _corpus()

    def run(indices: list[int]) -> list[str]:
        return [
            r.text
            for r in engine.transcribe(
                [clips[i] for i in indices], [TranscribeOptions()] * len(indices)
            )
        ]

    started = time.perf_counter()
    alone = [run([i])[0] for i in range(len(clips))]
    alone_s = (time.perf_counter() - started) / len(clips)
    levels = []
    for size in batch_sizes:
        rng = np.random.default_rng(size)
        runs = changed = 0
        ever: set[int] = set()
        batched_wer, examples = [], []
        started = time.perf_counter()
        for _ in range(permutations):
            order = [int(i) for i in rng.permutation(len(clips))]
            texts = [""] * len(clips)
            for start in range(0, len(order), size):
                chunk = order[start : start + size]
                for i, text in zip(chunk, run(chunk), strict=True):
                    texts[i] = text
                    runs += 1
                    if text != alone[i]:
                        changed += 1
                        ever.add(i)
                        if len(examples) < 3:
                            examples.append((alone[i], text))
            batched_wer.append(wer(refs, texts))
        elapsed = time.perf_counter() - started
        levels.append(
            BatchLevel(
                batch_size=size,
                runs=runs,
                changed_runs=changed,
                changed_clips=len(ever),
                changed_share=changed / runs,
                wer_batched=float(np.mean(batched_wer)) if setting.real_text else None,
                seconds_per_clip=elapsed / runs,
                examples=examples,
            )
        )
        print(f"  {setting.name}: batch {size}: {changed}/{runs} changed", flush=True)
    return SettingResult(
        name=setting.name,
        env=setting.env,
        clips=len(clips),
        wer_alone=wer(refs, alone) if setting.real_text else None,
        seconds_per_clip_alone=alone_s,
        levels=levels,
    )


def markdown(results: list[SettingResult], command: str, machine: str) -> str:
    lines = [
        f"# Batch invariance, {machine}",
        "",
        f"`{command}`",
        "",
        "| setting | batch | clip-runs changed | clips ever changed | WER alone | WER batched "
        "| s/clip alone | s/clip batched |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for lv in r.levels:
            wers = (
                ("-", "-")
                if r.wer_alone is None
                else (f"{r.wer_alone:.3f}", f"{lv.wer_batched:.3f}")
            )
            lines.append(
                f"| {r.name} | {lv.batch_size} | {lv.changed_runs}/{lv.runs} "
                f"({lv.changed_share:.1%}) | {lv.changed_clips}/{r.clips} | {wers[0]} | "
                f"{wers[1]} | {r.seconds_per_clip_alone:.3f} | {lv.seconds_per_clip:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[SettingResult]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.batch_invariance", description=__doc__
    )
    parser.add_argument("--permutations", type=int, default=2)
    parser.add_argument("--batch-sizes", default="2,4,8,16")
    parser.add_argument("--only", help="run the setting of this name (in this process)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    by_name = {s.name: s for s in settings()}

    if args.only:
        result = measure(by_name[args.only], sizes, args.permutations)
        print("RESULT " + result.model_dump_json(), flush=True)
        return [result]

    results = []
    for setting in by_name.values():
        print(f"{setting.name} ...", flush=True)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.batch_invariance",
                "--only",
                setting.name,
                "--permutations",
                str(args.permutations),
                "--batch-sizes",
                args.batch_sizes,
            ],
            env={**os.environ, **setting.env},
            capture_output=True,
            text=True,
            check=True,
        )
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        results.append(SettingResult.model_validate_json(line.removeprefix("RESULT ")))

    date = datetime.now(UTC).isoformat(timespec="seconds")
    machine = machine_label(gpu=False)
    command = command_line("benchmarks.batch_invariance", argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{date[:10]}-{machine}-invariance"
    payload = {"machine": machine, "command": command, "date": date}
    payload["settings"] = [r.model_dump(mode="json") for r in results]
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(results, command, machine))
    summary = {
        r.name: {
            "max_changed_share": max(lv.changed_share for lv in r.levels),
            "max_wer_difference": None
            if r.wer_alone is None
            else max(abs(lv.wer_batched - r.wer_alone) for lv in r.levels),
        }
        for r in results
    }
    update_latest(
        args.out,
        {
            "batch_invariance": {
                "settings": summary,
                "command": command,
                "date": date,
                "machine": machine,
            }
        },
    )
    print(markdown(results, command, machine), flush=True)
    return results


if __name__ == "__main__":
    main()
