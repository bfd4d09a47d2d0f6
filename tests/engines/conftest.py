"""Fixtures for engine tests: the tiny Fun-ASR-Nano checkpoint, engines on it, 16 kHz clips."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from asr_serve.config import SAMPLE_RATE, ModelConfig
from asr_serve.engines.funasr import FunASREngine
from asr_serve.engines.whisper import WhisperEngine


@pytest.fixture(scope="session")
def tiny_config(tiny_model_dir: Path) -> Callable[..., ModelConfig]:
    """``tiny_config(**overrides)``: a CPU config for the tiny checkpoint."""

    def make(**overrides: object) -> ModelConfig:
        fields: dict[str, object] = {
            "name": "tiny",
            "engine": "funasr",
            "model": str(tiny_model_dir),
            "device": "cpu",
        }
        return ModelConfig.model_validate(fields | overrides)

    return make


@pytest.fixture(scope="session")
def tiny_engine(tiny_config: Callable[..., ModelConfig]) -> FunASREngine:
    """Loaded once per session; tests that need another config build their own."""
    engine = FunASREngine(tiny_config())
    engine.load()
    return engine


def _tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _noise(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(SAMPLE_RATE * seconds))).astype(np.float32)


@pytest.fixture(scope="session")
def clips() -> list[np.ndarray]:
    """Four different clips of different lengths, so a batch of them needs padding."""
    return [_tone(220, 1.0), _tone(880, 1.5), _noise(0, 0.7), _tone(3000, 1.2)]


def whisper_config(model: str = "embedded") -> ModelConfig:
    """A shipped Whisper (``embedded`` or ``embedded-multilingual``) on CPU, two threads."""
    return ModelConfig(
        name=model, engine="faster-whisper", model=model, device="cpu", cpu_threads=2
    )


def loaded_whisper(model: str) -> WhisperEngine:
    """:func:`whisper_config`'s engine, loaded and warm."""
    engine = WhisperEngine(whisper_config(model))
    engine.load()
    engine.warmup()
    return engine
