"""Engines behind one protocol, created by name from a :class:`ModelConfig`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from asr_serve.engines.base import (
    Engine,
    EngineCapabilities,
    EngineResult,
    Segment,
    TranscribeOptions,
    Word,
)

if TYPE_CHECKING:
    from asr_serve.config import ModelConfig

# Imported lazily: a replica serving Whisper should not pay for importing funasr.
_ENGINES = {
    "funasr": "asr_serve.engines.funasr:FunASREngine",
    "faster-whisper": "asr_serve.engines.whisper:WhisperEngine",
}


def create_engine(model: ModelConfig) -> Engine:
    """Build (not load) the engine a model config names: built-in, or ``module:Class``."""
    module_name, _, class_name = _ENGINES.get(model.engine, model.engine).partition(":")
    engine_cls = getattr(importlib.import_module(module_name), class_name)
    return engine_cls(model)


__all__ = [
    "Engine",
    "EngineCapabilities",
    "EngineResult",
    "Segment",
    "TranscribeOptions",
    "Word",
    "create_engine",
]
