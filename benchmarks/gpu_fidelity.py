"""GPU fidelity: fp32 tokens against the production dtype's, and a replica's peak GPU memory.

    python -m benchmarks.gpu_fidelity [--out FILE] [--model-dir DIR] [--tokens 64]

On the full-size Fun-ASR-Nano architecture with random weights (:mod:`benchmarks.gpu_model`):

- **tokens**: a few clips decoded alone in fp32 and in the production dtype (``dtype: auto``:
  bf16 where the GPU has it), and in the production dtype as one batch; per clip, whether the
  token ids are equal and where they first differ. Random weights have no trained model's
  margins between the top logits, so any rounding can flip a token and everything after it:
  this reports, a person judges; the real checkpoint would be the better test of the dtype.
- **memory**: one engine in the production dtype, as one replica holds it, decoding batches
  of 1, 8 and 16 items as long as ``serve_config.yaml``'s batching admits (each at most
  ``splitting.max_piece_s``, together at most ``max_batch_audio_s``) up to its
  ``max_new_tokens``; per batch size, torch's peak allocated and reserved bytes, plus the
  CUDA context, and whether the replicas that config puts on one GPU fit in it.

Needs CUDA; writes a JSON report (default ``benchmarks/results/<date>-<gpu>-gpu-fidelity.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from asr_serve.config import SAMPLE_RATE, ModelConfig, SplittingConfig
from asr_serve.engines import TranscribeOptions
from asr_serve.engines.funasr import FunASREngine
from devtools.speech import noise, synthesize, tone
from devtools.text import SENTENCES

ROOT = Path(__file__).resolve().parents[1]
SERVE_CONFIG = ROOT / "serve_config.yaml"
BATCH_SIZES = (1, 8, 16)
GIB = 2**30


def production_model(config_path: Path = SERVE_CONFIG) -> tuple[ModelConfig, float]:
    """The config's first funasr model, and the GPU share its ASR deployment asks for."""
    app = yaml.safe_load(config_path.read_text())["applications"][0]
    model = next(
        ModelConfig.model_validate(m) for m in app["args"]["models"] if m["engine"] == "funasr"
    )
    deployments = {d["name"]: d for d in app.get("deployments", [])}
    actor = deployments.get(model.deployment_name, {}).get("ray_actor_options", {})
    return model, float(actor.get("num_gpus", 1.0))


def item_seconds(batch_size: int, max_batch_audio_s: float, max_piece_s: float) -> float:
    """The longest items a batch of ``batch_size`` can hold: VAD pieces, bounded in total."""
    return min(max_piece_s, max_batch_audio_s / batch_size)


def clips() -> dict[str, np.ndarray]:
    """Speech of three lengths, noise and a tone, 16 kHz mono float32."""
    speech = synthesize(". ".join(SENTENCES))
    second = SAMPLE_RATE
    return {
        "speech-3s": speech[: 3 * second],
        "speech-7s": speech[4 * second : 11 * second],
        "speech-15s": speech[12 * second : 27 * second],
        "noise-5s": noise(5.0, seed=5),
        "tone-10s": tone(440.0, 10.0),
    }


def speech_of(seconds: float) -> np.ndarray:
    """``seconds`` of speech, the test sentences repeated as needed."""
    return np.resize(synthesize(". ".join(SENTENCES)), round(seconds * SAMPLE_RATE))


def until_stop(ids: Sequence[int], stop: set[int]) -> list[int]:
    """Generated ids up to the first end or padding token (a batch pads finished rows)."""
    out: list[int] = []
    for token in ids:
        if token in stop:
            break
        out.append(token)
    return out


def agreement(reference: Sequence[int], other: Sequence[int]) -> dict[str, Any]:
    """Whether two token sequences are equal, and how far they agree from the start."""
    common = next(
        (i for i, (a, b) in enumerate(zip(reference, other, strict=False)) if a != b),
        min(len(reference), len(other)),
    )
    return {
        "equal": list(reference) == list(other),
        "first_difference": None if list(reference) == list(other) else common,
        "common_prefix": common,
        "lengths": [len(reference), len(other)],
    }


@contextlib.contextmanager
def recorded_tokens(engine: FunASREngine) -> Iterator[list[list[int]]]:
    """The ids every LLM ``generate`` call of ``engine`` returns, one list per item."""
    llm = engine._model.model.llm  # the Qwen3 decoder funasr drives
    generate = llm.generate
    stop = {t for t in (llm.config.eos_token_id, llm.config.pad_token_id) if t is not None}
    seen: list[list[int]] = []

    def record(*args: Any, **kwargs: Any) -> Any:
        out = generate(*args, **kwargs)
        seen.extend(until_stop(row, stop) for row in out.tolist())
        return out

    llm.generate = record
    try:
        yield seen
    finally:
        llm.generate = generate


def _engine(model_dir: Path, dtype: str, max_new_tokens: int) -> FunASREngine:
    config = ModelConfig(
        name="fidelity",
        engine="funasr",
        model=str(model_dir),
        device="cuda",
        dtype=dtype,
        max_new_tokens=max_new_tokens,
    )
    engine = FunASREngine(config)
    engine.load()
    engine.warmup()
    return engine


def _release_gpu() -> None:
    """Give back what an engine the caller dropped held, so the next one is measured alone."""
    import torch

    gc.collect()
    torch.cuda.empty_cache()


def _tokens(engine: FunASREngine, audios: list[np.ndarray], *, together: bool) -> list[list[int]]:
    batches = [audios] if together else [[a] for a in audios]
    with recorded_tokens(engine) as seen:
        for batch in batches:
            engine.transcribe(batch, [TranscribeOptions()] * len(batch))
    return seen


def memory(engine: FunASREngine, model: ModelConfig, share: float) -> list[dict[str, Any]]:
    """Peak memory per batch size for one replica's engine (the only one in this process)."""
    import torch

    free, total = torch.cuda.mem_get_info()
    # The CUDA context, which torch does not count (an idle GPU: other processes count too).
    context = (total - free) - torch.cuda.memory_reserved()
    weights = torch.cuda.memory_allocated()
    max_piece_s = SplittingConfig().max_piece_s
    replicas = round(1 / share)
    rows = []
    for n in BATCH_SIZES:
        seconds = item_seconds(n, model.batching.max_batch_audio_s, max_piece_s)
        audios = [speech_of(seconds)] * n
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        engine.transcribe(audios, [TranscribeOptions()] * n)
        torch.cuda.synchronize()
        replica = torch.cuda.max_memory_reserved() + context
        rows.append(
            {
                "batch_size": n,
                "item_seconds": seconds,
                "wall_s": time.perf_counter() - started,
                "weights_gib": weights / GIB,
                "peak_allocated_gib": torch.cuda.max_memory_allocated() / GIB,
                "peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB,
                "cuda_context_gib": context / GIB,
                "replica_peak_gib": replica / GIB,
                "gpu_total_gib": total / GIB,
                "replicas_per_gpu": replicas,
                "replicas_fit": replica * replicas <= total,
            }
        )
    return rows


def run(model_dir: Path, tokens: int) -> dict[str, Any]:
    """Both checks on one GPU; engines are loaded one at a time so memory is one replica's."""
    import torch

    model, share = production_model()
    audios = clips()
    production = _engine(model_dir, model.dtype, model.max_new_tokens or 512)
    dtype = str(production._model.model.llm.dtype).removeprefix("torch.")
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "model_dir": str(model_dir),
        "production_dtype": dtype,
        "max_new_tokens": model.max_new_tokens,
        "memory": memory(production, model, share),
    }
    del production
    _release_gpu()

    production = _engine(model_dir, model.dtype, tokens)
    alone = _tokens(production, list(audios.values()), together=False)
    batched = _tokens(production, list(audios.values()), together=True)
    del production
    _release_gpu()
    fp32 = _engine(model_dir, "float32", tokens)
    reference = _tokens(fp32, list(audios.values()), together=False)
    del fp32
    _release_gpu()

    report["tokens"] = {
        "compared_tokens": tokens,
        "clips": {
            name: {
                "fp32_vs_production": agreement(reference[i], alone[i]),
                "batched_vs_alone": agreement(alone[i], batched[i]),
            }
            for i, name in enumerate(audios)
        },
    }
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_fidelity", description=__doc__)
    parser.add_argument("--out", type=Path, help="report file (default: benchmarks/results/…)")
    parser.add_argument("--model-dir", type=Path, help="default: generate or reuse the cache")
    parser.add_argument("--tokens", type=int, default=64, help="tokens compared per clip")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        sys.exit("benchmarks.gpu_fidelity needs a CUDA GPU; torch sees none")
    from benchmarks.gpu_model import ensure_full_size_model
    from benchmarks.report import machine_label

    report = run(args.model_dir or ensure_full_size_model(), args.tokens)
    report["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    name = f"{report['date'][:10]}-{machine_label(gpu=True)}-gpu-fidelity.json"
    out = args.out or ROOT / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for row in report["memory"]:
        print(
            f"batch {row['batch_size']:>2} x {row['item_seconds']:.1f} s: replica peak "
            f"{row['replica_peak_gib']:.2f} GiB of {row['gpu_total_gib']:.0f} "
            f"({row['replicas_per_gpu']} per GPU fit: {row['replicas_fit']})"
        )
    for name, clip in report["tokens"]["clips"].items():
        print(
            f"{name}: fp32 vs {report['production_dtype']} {clip['fp32_vs_production']}; "
            f"batched vs alone {clip['batched_vs_alone']}"
        )
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
