"""What every baseline server shares: its model config from the harness, readiness markers.

The harness passes the same :class:`ModelConfig` to every system through ``BENCH_MODEL``
(JSON), so baselines and asr-serve run the same engine class with the same settings.
Each worker process writes ``BENCH_READY_DIR/<pid>`` once its model is warm, so the harness
can wait for every worker of a multi-process server, not just the first to answer.
"""

from __future__ import annotations

import os
from pathlib import Path

from asr_serve.config import ModelConfig
from asr_serve.engines import Engine, create_engine

MODEL_ENV = "BENCH_MODEL"
READY_DIR_ENV = "BENCH_READY_DIR"


def model_config() -> ModelConfig:
    return ModelConfig.model_validate_json(os.environ[MODEL_ENV])


def load_engine(config: ModelConfig, *, warm: bool = True) -> Engine:
    engine = create_engine(config)
    engine.load()
    if warm:
        engine.warmup()
    return engine


def mark_ready() -> None:
    ready_dir = os.environ.get(READY_DIR_ENV)
    if ready_dir:
        Path(ready_dir, str(os.getpid())).touch()
