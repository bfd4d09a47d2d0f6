"""What a run measures, per engine: the model config every system shares, the clip mix,
the concurrency levels and request counts. ``--quick`` and ``--gpu`` are other plans.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml
from pydantic import BaseModel

from asr_serve.config import AppConfig, BatchingConfig, ModelConfig

SYSTEMS = ("asr-serve", "asr-serve-scaled", "sequential", "seed-style", "funasr-server", "naive")
ENGINES = ("funasr", "whisper")
#: Output cap for the generated Fun-ASR-Nano checkpoint: the ``max_length`` its own
#: config.yaml declares, so funasr's server (which cannot be given one) decodes as far.
TINY_MAX_NEW_TOKENS = 32
GPU_MAX_NEW_TOKENS = 60
#: The clip mix. The longest stays under asr-serve's default ``splitting.max_piece_s``
#: (28 s), so the served path transcribes every clip whole, as the baselines do.
CLIPS_S = [2.0, 5.0, 10.0, 28.0]


class EnginePlan(BaseModel):
    engine: str
    model: ModelConfig
    clip_seconds: list[float]
    concurrencies: list[int]
    #: A level sends at least this many requests, and at least ``waves`` per client.
    min_requests: int
    waves: int
    inprocess_batch_sizes: list[int]
    naive_requests: int
    #: Requests to each system at one client taking turns (``run.measure_turns``): more
    #: than a level's, as the difference of two P50s of the mix is what that phase reports.
    turn_requests: int
    #: Open-loop level: rate = this fraction of the in-process batched limit, this long.
    open_load: float = 0.6
    open_seconds: float
    #: ``num_gpus`` of each ASR replica when served (0 on CPU).
    num_gpus: float = 0.0
    systems: list[str]

    def n_requests(self, concurrency: int) -> int:
        """Whole passes over the mix, so every system gets the same audio per level."""
        n = max(self.min_requests, self.waves * concurrency)
        return math.ceil(n / len(self.clip_seconds)) * len(self.clip_seconds)


def quickstart_model() -> ModelConfig:
    """The model exactly as ``make serve`` serves it (``serve_config.cpu.yaml``)."""
    config = Path(__file__).resolve().parents[1] / "serve_config.cpu.yaml"
    raw = yaml.safe_load(config.read_text())
    return AppConfig.model_validate(raw["applications"][0]["args"]).models[0]


def _funasr_model(model_dir: Path, *, gpu: bool) -> ModelConfig:
    return ModelConfig(
        name="fun-asr-nano-tiny" if not gpu else "fun-asr-nano-random",
        engine="funasr",
        model=str(model_dir),
        device="cuda" if gpu else "cpu",
        dtype="float16" if gpu else "auto",
        cpu_threads=0 if gpu else 1,
        max_new_tokens=GPU_MAX_NEW_TOKENS if gpu else TINY_MAX_NEW_TOKENS,
        # In-process batching peaks at 16 on CPU; the audio bound must not cut such batches.
        batching=BatchingConfig(max_batch_size=32 if gpu else 16, max_batch_audio_s=1200),
    )


def _whisper_model(*, gpu: bool) -> ModelConfig:
    return ModelConfig(
        name="whisper-tiny.en",
        engine="faster-whisper",
        model="embedded",
        device="cuda" if gpu else "cpu",
        cpu_threads=0 if gpu else 1,
        batching=BatchingConfig(max_batch_size=16 if gpu else 4),
    )


def make_plan(
    engine: str, *, quick: bool, gpu: bool, systems: list[str], funasr_dir: Path | None
) -> EnginePlan:
    """The plan for one engine; ``funasr_dir`` is the checkpoint every funasr system loads."""
    if engine == "funasr":
        assert funasr_dir is not None
        model = _funasr_model(funasr_dir, gpu=gpu)
    else:
        model = _whisper_model(gpu=gpu)
        systems = [s for s in systems if s != "funasr-server"]  # funasr's server: funasr only
    common = {"engine": engine, "model": model, "systems": systems}
    if quick:
        return EnginePlan(
            **common,
            clip_seconds=[2.0, 5.0],
            concurrencies=[1, 4],
            min_requests=4,
            waves=1,
            inprocess_batch_sizes=[1, 4],
            naive_requests=1,
            turn_requests=4,
            open_seconds=2.0,
        )
    if gpu:
        return EnginePlan(
            **common,
            clip_seconds=[10.0],
            concurrencies=[1, 4, 16, 64],
            min_requests=32,
            waves=4,
            inprocess_batch_sizes=[1, 4, 8, 16, 32],
            naive_requests=3,
            turn_requests=32,
            open_seconds=20.0,
            num_gpus=0.5,
        )
    if engine == "funasr":
        return EnginePlan(
            **common,
            clip_seconds=CLIPS_S,
            concurrencies=[1, 4, 16, 64],
            min_requests=16,
            waves=2,
            inprocess_batch_sizes=[1, 2, 4, 8, 16],
            naive_requests=3,
            turn_requests=80,
            open_seconds=10.0,
        )
    # tiny.en on one CPU thread runs ~1 s per request: fewer requests, no 64-client level.
    return EnginePlan(
        **common,
        clip_seconds=CLIPS_S,
        concurrencies=[1, 4, 16],
        min_requests=8,
        waves=2,
        inprocess_batch_sizes=[1, 2, 4],
        naive_requests=2,
        turn_requests=48,
        open_seconds=10.0,
    )
