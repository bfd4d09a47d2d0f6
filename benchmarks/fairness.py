"""Fair share: eight normal clients beside one client that floods, files and a live session.

    python -m benchmarks.fairness [--engine whisper|funasr] [--seconds 60]

One ``serve run`` of the quickstart's model and batching (``serve_config.cpu.yaml``:
Whisper tiny.en, batches of 4, the shipped ``max_queue_wait_s`` of 10 s), or of the
generated Fun-ASR-Nano checkpoint (48 tokens per item) with ``--engine funasr``, with API
keys on: every client is a key of its own. Eight normal clients post a 3 s clip in a closed
loop, waiting their Retry-After when refused. Three phases of ``--seconds`` each, one after
another on the same server:

- ``alone``: the normal clients only (the baseline);
- ``file flood``: beside them one key posts the same clip from 24 connections, retrying
  0.1 s after a refusal whatever its Retry-After says;
- ``live flood``: beside them one key's OpenAI Realtime sessions send 1,500 x (100 ms append
  + commit) as fast as they can, one session after another.

Per phase: the machine's load average at its end (other work on a shared machine shows in
every figure), the normal clients' statuses and P50/P95, the flooder's answers, and the
share of the model's time each client's items took (the ASR replica's ``stats()``, engine time
shared out by audio within each batch). The ratio that counts: the normal clients' P95 with
a flood over their P95 alone (goal <= 1.5), measured in the same run. Writes
``results/<date>-<machine>-fairness.json/.md`` and adds ``fairness`` to
``results/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from asr_serve.api.auth import key_name
from asr_serve.config import BatchingConfig, ModelConfig
from benchmarks.plan import quickstart_model
from benchmarks.report import command_line, machine_label, update_latest
from benchmarks.run import RESULTS_DIR
from benchmarks.systems.served import ServeRun
from devtools.flood import FloodResult, Outcome, bearer, commit_flood, file_clients, p95
from devtools.speech import encode, synthesize
from devtools.tiny_model import ensure_tiny_model

NORMAL_KEYS = [f"sk-normal-{i}" for i in range(8)]
FLOODER = "sk-flooder"
FLOOD_CONNECTIONS = 24
GOAL_RATIO = 1.5


def _model(engine: str) -> ModelConfig:
    if engine == "whisper":
        return quickstart_model()
    return ModelConfig(
        name="fun-asr-nano-tiny",
        engine="funasr",
        model=str(ensure_tiny_model()),
        device="cpu",
        cpu_threads=1,
        max_new_tokens=48,
        batching=BatchingConfig(max_batch_size=4, batch_wait_timeout_s=0.02),
    )


def _normal(url: str, wav: bytes, seconds: float) -> list[Outcome]:
    clients = {key: bearer(key) for key in NORMAL_KEYS}
    return file_clients(f"{url}/v1/audio/transcriptions", clients, wav, seconds)


def _file_flood(url: str, wav: bytes, seconds: float) -> list[Outcome]:
    flooder = {FLOODER: bearer(FLOODER)}
    return file_clients(
        f"{url}/v1/audio/transcriptions",
        flooder,
        wav,
        seconds,
        connections=FLOOD_CONNECTIONS,
        retry_s=0.1,
    )


def _live_flood(url: str, seconds: float) -> list[FloodResult]:
    ws_url = url.replace("http://", "ws://", 1) + "/v1/realtime"
    stop = time.monotonic() + seconds
    sessions = []
    while time.monotonic() < stop:
        sessions.append(asyncio.run(commit_flood(ws_url, bearer(FLOODER), rounds=1500)))
    return sessions


def _phase(run: ServeRun, wav: bytes, seconds: float, flood: str | None) -> dict[str, Any]:
    before = Counter(run.stats()[0]["model_s_by_client"])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        flooding = None
        if flood == "files":
            flooding = pool.submit(_file_flood, run.base_url, wav, seconds)
        elif flood == "live":
            flooding = pool.submit(_live_flood, run.base_url, seconds)
        normal = _normal(run.base_url, wav, seconds)
        flooded = flooding.result() if flooding is not None else None
    # This machine's other work shows in every figure: say how much there was.
    load = os.getloadavg()[0]
    model_s = Counter(run.stats()[0]["model_s_by_client"])
    model_s.subtract(before)
    total = sum(v for v in model_s.values() if v > 0)
    latencies = [o.latency_s for o in normal if o.status == 200]
    phase: dict[str, Any] = {
        "load_average_1min": load,
        "normal_statuses": dict(Counter(str(o.status) for o in normal)),
        "normal_p50_s": float(np.percentile(latencies, 50)) if latencies else None,
        "normal_p95_s": p95(latencies) if latencies else None,
        "flooder_model_share": model_s[key_name(FLOODER)] / total if total else 0.0,
        "normal_model_share_each": [
            model_s[key_name(key)] / total if total else 0.0 for key in NORMAL_KEYS
        ],
    }
    if flood == "files":
        assert isinstance(flooded, list)
        phase["flooder_answers"] = dict(
            Counter(f"{o.status} {o.code or ''}".strip() for o in flooded)
        )
    elif flood == "live":
        assert isinstance(flooded, list)
        phase["flooder_sessions"] = len(flooded)
        phase["flooder_commits"] = sum(s.commits for s in flooded)
        phase["flooder_items"] = sum(len(s.committed) for s in flooded)
        phase["flooder_items_ended"] = sum(len(s.ended) for s in flooded)
        errors: Counter[str] = Counter()
        for session in flooded:
            errors.update(session.errors)
        phase["flooder_errors"] = dict(errors)
    return phase


def _warm_up(run: ServeRun, wav: bytes) -> None:
    """Full batches until admission has measured the engine (its seed is cautious)."""
    clients = {key: bearer(key) for key in NORMAL_KEYS[:4]}
    for _ in range(6):
        file_clients(f"{run.base_url}/v1/audio/transcriptions", clients, wav, 0.01)


def _summary(phases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    alone = phases["alone"]["normal_p95_s"]
    summary: dict[str, Any] = {"normal_p95_alone_s": alone}
    for name, key in (("file flood", "files"), ("live flood", "live")):
        loaded = phases[name]["normal_p95_s"]
        summary[f"normal_p95_{key}_flood_s"] = loaded
        summary[f"p95_ratio_{key}_flood"] = loaded / alone if loaded and alone else None
        summary[f"flooder_model_share_{key}_flood"] = phases[name]["flooder_model_share"]
    summary["met"] = {
        f"normal P95 with a {key} flood / alone <= {GOAL_RATIO:g}": bool(
            summary[f"p95_ratio_{key}_flood"] is not None
            and summary[f"p95_ratio_{key}_flood"] <= GOAL_RATIO
        )
        for key in ("files", "live")
    }
    summary["met"]["every normal request 200"] = all(
        set(p["normal_statuses"]) == {"200"} for p in phases.values()
    )
    return summary


def markdown(report: dict[str, Any]) -> str:
    rows = [
        f"# Fair share, {report['date'][:10]}, {report['machine']}",
        "",
        f"`{report['command']}`; model `{report['model']['name']}`, 8 normal clients, "
        f"{report['seconds']:g} s per phase.",
        "",
        "| phase | load average | normal statuses | normal P50 s | normal P95 s | flooder's "
        "share of the model | each normal client's share | flooder |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, phase in report["phases"].items():
        shares = phase["normal_model_share_each"]
        flooder = phase.get("flooder_answers") or phase.get("flooder_errors") or {}
        if "flooder_items" in phase:
            flooder = {
                "items": phase["flooder_items"],
                "ended": phase["flooder_items_ended"],
                **flooder,
            }
        rows.append(
            f"| {name} | {phase['load_average_1min']:.1f} | {phase['normal_statuses']} | "
            f"{phase['normal_p50_s']:.2f} | "
            f"{phase['normal_p95_s']:.2f} | {phase['flooder_model_share']:.0%} | "
            f"{min(shares):.0%}-{max(shares):.0%} | {flooder} |"
        )
    summary = report["summary"]
    rows += [
        "",
        f"Normal P95 with a file flood / alone: {summary['p95_ratio_files_flood']:.2f}; "
        f"with a live flood / alone: {summary['p95_ratio_live_flood']:.2f} (goal <= "
        f"{GOAL_RATIO:g}).",
        "",
        *(f"- {'met' if ok else 'NOT met'}: {what}" for what, ok in summary["met"].items()),
        "",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fairness", description=__doc__)
    parser.add_argument("--engine", choices=("whisper", "funasr"), default="whisper")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    model = _model(args.engine)
    wav = encode(synthesize("the quick brown fox"), 16000, "wav")
    # The serve run's Ray processes inherit the keys; every client is one of them.
    os.environ["ASR_SERVE_API_KEYS"] = ",".join([*NORMAL_KEYS, FLOODER])
    phases: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="asr-bench-fairness-") as tmp:
        run = ServeRun(Path(tmp), model, bounded=True)
        try:
            run.start()
            _warm_up(run, wav)
            for name, flood in (("alone", None), ("file flood", "files"), ("live flood", "live")):
                phases[name] = _phase(run, wav, args.seconds, flood)
                print(f"[{name}] {json.dumps(phases[name])}", flush=True)
        finally:
            run.stop()

    date = datetime.now(UTC).isoformat(timespec="seconds")
    machine = machine_label(gpu=False)
    summary = _summary(phases)
    report = {
        "machine": machine,
        "command": command_line("benchmarks.fairness", argv),
        "date": date,
        "seconds": args.seconds,
        "model": model.model_dump(mode="json"),
        "phases": phases,
        "summary": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{date[:10]}-{machine}-fairness-{args.engine}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    update_latest(
        args.out,
        {f"fairness_{args.engine}": {**summary, "command": report["command"], "date": date}},
    )
    print(json.dumps(summary, indent=1), flush=True)
    return report


if __name__ == "__main__":
    main()
