"""Long audio: one ten-minute recording, served against the same path in process.

    python -m benchmarks.long_audio [--seconds 598] [--repeats 3]

Served, the decoder cuts the file at pauses (silero VAD) and the ingress sends the pieces
to the ASR deployment as separate items, batched by ``@serve.batch`` (at most
``splitting.max_in_flight`` at a time); in process,
:func:`devtools.longform.transcribe_long` decodes, cuts the same way and
transcribes every piece in one engine call: the limit.
Same model as the main run's funasr plan. Writes ``results/<date>-<machine>-long.json`` and
adds ``long_audio`` to ``results/latest.json``. 598 s keeps the file under the default
``limits.max_audio_s`` of 600.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from asr_serve.audio.decode import decode_audio
from asr_serve.audio.splitting import PieceSplitter
from asr_serve.config import SAMPLE_RATE, SplittingConfig
from asr_serve.engines import TranscribeOptions, create_engine
from benchmarks.plan import make_plan
from benchmarks.report import command_line, machine_label, update_latest
from benchmarks.run import RESULTS_DIR
from benchmarks.systems.served import ServeRun
from devtools.long_audio import long_recording
from devtools.longform import transcribe_long
from devtools.speech import encode
from devtools.tiny_model import ensure_tiny_model


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.long_audio", description=__doc__)
    parser.add_argument("--seconds", type=float, default=598.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    model = make_plan(
        "funasr", quick=False, gpu=False, systems=[], funasr_dir=ensure_tiny_model()
    ).model
    n = round(args.seconds * SAMPLE_RATE)
    upload = encode(long_recording(args.seconds).samples[:n], SAMPLE_RATE, "mp3")
    audio_s = n / SAMPLE_RATE

    engine = create_engine(model)
    engine.load()
    engine.warmup()
    splitter = PieceSplitter(SplittingConfig())
    inprocess: list[float] = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        samples = decode_audio(upload, max_duration_s=audio_s + 1).samples
        transcribe_long(engine, samples, TranscribeOptions(), splitter)
        inprocess.append(time.perf_counter() - started)
    pieces = len(splitter.split(samples) or ((0, len(samples)),))
    del engine

    served: list[float] = []
    with tempfile.TemporaryDirectory(prefix="asr-bench-long-") as tmp:
        run = ServeRun(Path(tmp), model)
        try:
            run.start()
            url = f"{run.base_url}/v1/audio/transcriptions"
            with httpx.Client(timeout=600) as http:
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    resp = http.post(url, files={"file": ("long.mp3", upload)})
                    resp.raise_for_status()
                    served.append(time.perf_counter() - started)
        finally:
            run.stop()

    inprocess_s, served_s = statistics.median(inprocess), statistics.median(served)
    result = {
        "audio_s": audio_s,
        "upload_bytes": len(upload),
        "pieces": pieces,
        "inprocess_s": inprocess_s,
        "served_s": served_s,
        "inprocess_rtfx": audio_s / inprocess_s,
        "served_rtfx": audio_s / served_s,
        "served_vs_inprocess_throughput": inprocess_s / served_s,
        "repeats": args.repeats,
    }
    date = datetime.now(UTC).isoformat(timespec="seconds")
    machine = machine_label(gpu=False)
    command = command_line("benchmarks.long_audio", argv)
    report = {"machine": machine, "command": command, "date": date}
    report |= {"model": model.model_dump(mode="json"), "long_audio": result}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{date[:10]}-{machine}-long.json").write_text(json.dumps(report, indent=1) + "\n")
    update_latest(args.out, {"long_audio": {**result, "command": command, "date": date}})
    print(json.dumps(result, indent=1), flush=True)
    return result


if __name__ == "__main__":
    main()
