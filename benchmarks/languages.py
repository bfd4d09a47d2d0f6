"""Many languages on a CPU: the quickstart's multilingual model (Whisper base), measured.

    python -m benchmarks.languages [--concurrency 4] [--requests 24] [--starts 2]

1. **Detection**, in process: Whisper base as ``serve_config.cpu.yaml`` configures it, on
   espeak-ng speech (:mod:`devtools.languages`): per language, six clips of one
   sentence and six of two; no ``language``, so the model detects it. Accuracy over
   :data:`~devtools.languages.LANGUAGES` (the goal: at least 90 %), and apart over
   :data:`~devtools.languages.HARD_LANGUAGES`.
2. **Quickstart cost**: ``serve run serve_config.cpu.yaml`` as shipped (admission by time
   lifted, as in the main benchmark, so no request is refused) and the same without
   Whisper base, ``--starts`` times each, alternating, each from an empty weights cache
   (``ASR_SERVE_CACHE_DIR``, so the start joins the parts, as on a fresh machine): seconds to
   ``/ready`` and the memory of the whole process tree once ready (PSS, so shared pages
   count once); medians.
3. **Parity**: the one-sentence clips (the same WAV bytes) through the served Whisper base
   one after another (``json``, no language: the same decoding as in process, without
   timestamps; ``languages`` names the detected one) against the in-process results, each
   clip alone: detected language and text agreement, and each side's WER against the
   sentences, over every language and over :data:`~devtools.languages.LANGUAGES`.
4. **Throughput side by side** on the served quickstart: English clips (as the main
   benchmark's) at ``--concurrency`` clients to tiny.en, to Whisper base, then to both at
   once (half the clients each).

Writes ``results/<date>-<machine>-languages.json`` and ``.md`` and adds ``languages`` to
``results/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from asr_serve.audio.decode import decode_audio
from asr_serve.config import (
    CACHE_DIR_ENV,
    SAMPLE_RATE,
    AppConfig,
    ModelConfig,
    asr_deployment_name,
)
from asr_serve.engines import TranscribeOptions, create_engine
from asr_serve.engines.embedded import WHISPER_BASE, assemble
from benchmarks.audio import make_mix
from benchmarks.loadgen import TRANSCRIPTIONS, closed_loop, summarize
from benchmarks.report import command_line, machine_label, update_latest
from benchmarks.run import RESULTS_DIR
from benchmarks.systems.base import (
    ROOT,
    SERVE_RUN_STOP_S,
    ServerProcess,
    cmdline,
    descendants,
    http_ok,
)
from devtools.languages import HARD_LANGUAGES, LANGUAGES, SENTENCES, speak
from devtools.net import free_port
from devtools.speech import encode
from devtools.text import wer

QUICKSTART = ROOT / "serve_config.cpu.yaml"
MULTILINGUAL = "embedded-multilingual"
START_TIMEOUT_S = 600.0
#: Clips per kind and language; the sentences of a pair are consecutive (cyclically).
KINDS = ("sentence", "pair")


#: As the main benchmark's (benchmarks/systems/served.py): throughput at a fixed concurrency
#: is measured without admission by time refusing some requests by design on a busy CPU.
_UNBOUNDED_QUEUE_WAIT_S = 3600.0


def _quickstart(with_multilingual: bool) -> dict[str, Any]:
    """``serve_config.cpu.yaml`` on a free port, with or without its multilingual model,
    admission by time lifted."""
    config = yaml.safe_load(QUICKSTART.read_text())
    config["http_options"]["port"] = free_port()
    for deployment in config["applications"][0]["deployments"]:
        if "max_queue_wait_s" in deployment.get("user_config", {}):
            deployment["user_config"]["max_queue_wait_s"] = _UNBOUNDED_QUEUE_WAIT_S
    if not with_multilingual:
        (app,) = config["applications"]
        dropped = {m["name"] for m in app["args"]["models"] if m["model"] == MULTILINGUAL}
        app["args"]["models"] = [m for m in app["args"]["models"] if m["name"] not in dropped]
        names = {asr_deployment_name(name) for name in dropped}
        app["deployments"] = [d for d in app["deployments"] if d["name"] not in names]
    return config


def _models(config: dict[str, Any]) -> dict[str, ModelConfig]:
    (app,) = config["applications"]
    models = AppConfig.model_validate(app["args"]).models
    return {m.model: m for m in models}


def _clips() -> list[dict[str, Any]]:
    """Every language's clips: the text, a 16 kHz WAV of it and the samples read from it."""
    clips = []
    for lang, sentences in SENTENCES.items():
        n = len(sentences)
        for kind in KINDS:
            for i in range(n):
                text = (
                    sentences[i]
                    if kind == "sentence"
                    else f"{sentences[i]} {sentences[(i + 1) % n]}"
                )
                wav = encode(speak(lang, text), SAMPLE_RATE, "wav")
                audio = decode_audio(wav, max_duration_s=60).samples  # what the server reads
                clips.append({"lang": lang, "kind": kind, "text": text, "wav": wav, "audio": audio})
    return clips


def _accuracy(results: list[dict[str, Any]], languages: tuple[str, ...]) -> float:
    chosen = [r for r in results if r["lang"] in languages]
    return sum(r["detected"] == r["lang"] for r in chosen) / len(chosen)


def detection(model: ModelConfig, clips: list[dict[str, Any]]) -> dict[str, Any]:
    """In process: every clip's detected language and text, one clip at a time (as the
    served model gets each when it has no other work: the parity is exact then)."""
    engine = create_engine(model)
    engine.load()
    engine.warmup()
    results = []
    started = time.perf_counter()
    for clip in clips:
        (result,) = engine.transcribe([clip["audio"]], [TranscribeOptions()])
        results.append(
            {k: clip[k] for k in ("lang", "kind", "text", "wav")}
            | {"detected": result.language, "hypothesis": result.text}
        )
    elapsed = time.perf_counter() - started
    audio_s = sum(len(c["audio"]) for c in clips) / 16_000
    per_language = {
        lang: {
            kind: sum(
                r["detected"] == lang for r in results if r["lang"] == lang and r["kind"] == kind
            )
            / len(SENTENCES[lang])
            for kind in KINDS
        }
        for lang in SENTENCES
    }
    return {
        "accuracy": _accuracy(results, LANGUAGES),
        "accuracy_by_kind": {
            kind: _accuracy([r for r in results if r["kind"] == kind], LANGUAGES) for kind in KINDS
        },
        "hard_accuracy": _accuracy(results, HARD_LANGUAGES),
        "per_language": per_language,
        "wer_by_language": {
            lang: wer(
                [r["text"] for r in results if r["lang"] == lang],
                [r["hypothesis"] for r in results if r["lang"] == lang],
            )
            for lang in SENTENCES
        },
        "confusions": [
            f"{r['lang']}->{r['detected']}" for r in results if r["detected"] != r["lang"]
        ],
        "inprocess_rtfx": audio_s / elapsed,
        "results": results,
    }


def _pss_kib(pid: int) -> int:
    """Proportional set size: shared pages split between the processes that map them."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def _memory(root_pid: int, deployment: str | None) -> dict[str, float]:
    pids = [root_pid, *descendants(root_pid)]
    total = sum(_pss_kib(p) for p in pids)
    found: dict[str, float] = {"total_mib": total / 1024}
    if deployment is not None:
        replica = [p for p in pids if any(deployment in arg for arg in cmdline(p))]
        found["replica_mib"] = sum(_pss_kib(p) for p in replica) / 1024
    return found


@contextlib.contextmanager
def quickstart(
    config: dict[str, Any], log_dir: Path, cache_dir: Path
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``serve run`` of ``config`` with its own Ray and weights cache; yields its URL and
    what starting it cost."""
    name = "with" if len(config["applications"][0]["args"]["models"]) > 1 else "without"
    path = log_dir / f"quickstart-{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    serve_cli = str(Path(sys.executable).with_name("serve"))
    env = {
        "RAY_ADDRESS": "local",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        CACHE_DIR_ENV: str(cache_dir),
    }
    process = ServerProcess([serve_cli, "run", str(path)], env, log_dir / f"{path.stem}.log")
    url = f"http://127.0.0.1:{config['http_options']['port']}"
    process.start()
    try:
        ready_s = process.wait(lambda: http_ok(f"{url}/ready"), START_TIMEOUT_S)
        time.sleep(5)  # let start-up's transient allocations settle
        assert process.proc is not None
        multilingual = [
            m for m in config["applications"][0]["args"]["models"] if m["model"] == MULTILINGUAL
        ]
        deployment = asr_deployment_name(multilingual[0]["name"]) if multilingual else None
        yield url, {"ready_s": ready_s, **_memory(process.proc.pid, deployment)}
    finally:
        process.stop(sig=signal.SIGINT, timeout_s=SERVE_RUN_STOP_S)


def parity(url: str, model: str, inprocess: dict[str, Any]) -> dict[str, Any]:
    """The one-sentence clips through the served model one after another, detected,
    against in process."""
    local = [r for r in inprocess["results"] if r["kind"] == "sentence"]
    served = []
    with httpx.Client(timeout=300) as client:
        for r in local:
            resp = client.post(
                url + TRANSCRIPTIONS, files={"file": ("clip.wav", r["wav"])}, data={"model": model}
            )
            resp.raise_for_status()
            body = resp.json()
            served.append({"text": body["text"], "language": body["languages"][0]["code"]})
    goal = [i for i, r in enumerate(local) if r["lang"] in LANGUAGES]
    references = [r["text"] for r in local]
    return {
        "goal_served_wer": wer([references[i] for i in goal], [served[i]["text"] for i in goal]),
        "goal_inprocess_wer": wer(
            [references[i] for i in goal], [local[i]["hypothesis"] for i in goal]
        ),
        "clips": len(local),
        "language_agreement": np.mean(
            [s["language"] == r["detected"] for s, r in zip(served, local, strict=True)]
        ),
        "text_agreement": np.mean(
            [s["text"] == r["hypothesis"] for s, r in zip(served, local, strict=True)]
        ),
        "served_accuracy": _accuracy(
            [
                {"lang": r["lang"], "detected": s["language"]}
                for s, r in zip(served, local, strict=True)
            ],
            LANGUAGES,
        ),
        "served_wer": wer(references, [s["text"] for s in served]),
        "inprocess_wer": wer(references, [r["hypothesis"] for r in local]),
    }


def throughput(url: str, models: dict[str, str], concurrency: int, requests: int) -> dict[str, Any]:
    """English clips at ``concurrency`` clients to each model alone, then to both at once."""
    clips = make_mix([2.0, 5.0])
    endpoint = url + TRANSCRIPTIONS

    async def level(targets: dict[str, int]) -> dict[str, Any]:
        runs = await asyncio.gather(
            *(
                closed_loop(
                    endpoint,
                    clips,
                    clients,
                    requests * clients // concurrency,
                    fields={"model": name},
                )
                for name, clients in targets.items()
            )
        )
        return {
            name: summarize(name, "closed", records, elapsed, concurrency=clients).model_dump(
                include={"requests", "ok", "throughput_rps", "rtfx", "p50_ms", "p95_ms"}
            )
            for (name, clients), (records, elapsed) in zip(targets.items(), runs, strict=True)
        }

    out: dict[str, Any] = {}
    for label in models:
        out[f"{label} alone"] = asyncio.run(level({models[label]: concurrency}))[models[label]]
    both = asyncio.run(level({name: concurrency // 2 for name in models.values()}))
    out["both at once"] = both
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.languages", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=24, help="per model at full concurrency")
    parser.add_argument("--starts", type=int, default=2, help="starts of each quickstart")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    shipped = _quickstart(with_multilingual=True)
    models = _models(shipped)
    base, tiny = models[MULTILINGUAL], models["embedded"]
    clips = _clips()
    report: dict[str, Any] = {
        "clips": {kind: sum(c["kind"] == kind for c in clips) for kind in KINDS}
    }
    report["detection"] = detection(base, clips)
    print(
        json.dumps({k: v for k, v in report["detection"].items() if k != "results"}, indent=1),
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="asr-bench-languages-") as tmp:
        started = time.perf_counter()
        assemble(WHISPER_BASE, Path(tmp) / "join", "bench")
        report["join_s"] = time.perf_counter() - started
        starts: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
        # Alternating, so a change in the machine's load falls on both alike.
        for i in range(args.starts):
            for label in starts:
                config = _quickstart(with_multilingual=label == "with")
                cache = Path(tmp) / f"cache-{label}-{i}"
                with quickstart(config, Path(tmp), cache) as (url, cost):
                    starts[label].append(cost)
                    print(label, cost, flush=True)
                    if label == "with" and i == 0:
                        report["parity"] = parity(url, base.name, report["detection"])
                        print(json.dumps(report["parity"], indent=1), flush=True)
                        report["throughput"] = throughput(
                            url,
                            {"tiny.en": tiny.name, "base": base.name},
                            args.concurrency,
                            args.requests,
                        )
    for r in report["detection"]["results"]:
        del r["wav"]
    report["starts"] = starts
    for label, costs in starts.items():
        report[f"quickstart_{label}"] = {
            key: statistics.median(c[key] for c in costs) for key in costs[0]
        }
    with_, without_ = report["quickstart_with"], report["quickstart_without"]
    summary = {
        "detection_accuracy": report["detection"]["accuracy"],
        "detection_accuracy_hard": report["detection"]["hard_accuracy"],
        "served_wer": report["parity"]["served_wer"],
        "inprocess_wer": report["parity"]["inprocess_wer"],
        "goal_languages_served_wer": report["parity"]["goal_served_wer"],
        "goal_languages_inprocess_wer": report["parity"]["goal_inprocess_wer"],
        "served_text_agreement": report["parity"]["text_agreement"],
        "base_vs_tiny_throughput": report["throughput"]["base alone"]["throughput_rps"]
        / report["throughput"]["tiny.en alone"]["throughput_rps"],
        "quickstart_extra_ready_s": with_["ready_s"] - without_["ready_s"],
        "quickstart_extra_mib": with_["total_mib"] - without_["total_mib"],
    }
    date = datetime.now(UTC).isoformat(timespec="seconds")
    machine = machine_label(gpu=False)
    command = command_line("benchmarks.languages", argv)
    full = {"machine": machine, "command": command, "date": date, "summary": summary, **report}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{date[:10]}-{machine}-languages"
    stem.with_suffix(".json").write_text(json.dumps(full, indent=1, default=float) + "\n")
    stem.with_suffix(".md").write_text(markdown(full))
    update_latest(args.out, {"languages": {**summary, "command": command, "date": date}})
    print(json.dumps(summary, indent=1), flush=True)
    return full


def _each(full: dict[str, Any], label: str) -> str:
    return ", ".join(f"{c['ready_s']:.1f}" for c in full["starts"][label])


def markdown(full: dict[str, Any]) -> str:
    """The run as tables."""
    det, par = full["detection"], full["parity"]
    lines = [
        f"# Many languages on a CPU: {full['machine']}, {full['date']}",
        "",
        f"`{full['command']}`",
        "",
        "## Detection (in process, Whisper base, no language given)",
        "",
        "| language | one sentence | two sentences | WER |",
        "|---|---|---|---|",
    ]
    for lang, kinds in det["per_language"].items():
        hard = " (hard)" if lang in HARD_LANGUAGES else ""
        lines.append(
            f"| {lang}{hard} | {kinds['sentence']:.0%} | {kinds['pair']:.0%} "
            f"| {det['wer_by_language'][lang]:.2f} |"
        )
    by_kind = det["accuracy_by_kind"]
    lines += [
        "",
        f"Accuracy over {', '.join(LANGUAGES)}: **{det['accuracy']:.1%}** (one sentence "
        f"{by_kind['sentence']:.1%}, two {by_kind['pair']:.1%}); over the hard ones "
        f"({', '.join(HARD_LANGUAGES)}): {det['hard_accuracy']:.1%}. "
        f"Mistaken for: {', '.join(det['confusions']) or 'none'}.",
        "",
        "## Served vs in process (one-sentence clips, every language)",
        "",
        "| clips | language agrees | text agrees | WER served | WER in process "
        f"| WER served, {', '.join(LANGUAGES)} | WER in process, {', '.join(LANGUAGES)} |",
        "|---|---|---|---|---|---|---|",
        f"| {par['clips']} | {par['language_agreement']:.1%} | {par['text_agreement']:.1%} "
        f"| {par['served_wer']:.3f} | {par['inprocess_wer']:.3f} "
        f"| {par['goal_served_wer']:.3f} | {par['goal_inprocess_wer']:.3f} |",
        "",
        "## Throughput on the served quickstart (English clips of 2 and 5 s)",
        "",
        "| run | model | requests | req/s | RTFx | P50 ms | P95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, value in full["throughput"].items():
        rows = value.items() if run == "both at once" else [(run.split()[0], value)]
        for model, s in rows:
            lines.append(
                f"| {run} | {model} | {s['ok']}/{s['requests']} | {s['throughput_rps']:.2f} "
                f"| {s['rtfx']:.1f} | {s['p50_ms']:.0f} | {s['p95_ms']:.0f} |"
            )
    w, wo = full["quickstart_with"], full["quickstart_without"]
    lines += [
        "",
        "## What the second model costs the quickstart (empty weights cache; medians of "
        f"{len(full['starts']['with'])} starts each, alternating)",
        "",
        "| config | to /ready | each start | memory (PSS, whole tree) | Whisper base replica |",
        "|---|---|---|---|---|",
        f"| tiny.en only | {wo['ready_s']:.1f} s | {_each(full, 'without')} "
        f"| {wo['total_mib']:.0f} MiB | - |",
        f"| tiny.en + Whisper base (shipped) | {w['ready_s']:.1f} s | {_each(full, 'with')} "
        f"| {w['total_mib']:.0f} MiB | {w['replica_mib']:.0f} MiB |",
        "",
        f"Joining the two parts alone (and checking the digest): {full['join_s']:.1f} s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
