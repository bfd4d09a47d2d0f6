"""A batched item decodes exactly as it does alone, whatever transformers does with positions.

``FunASRNano._inference_llm_batch`` left-pads the batch and passes ``generate`` the prompt's
position ids. transformers 4.51.3, 4.55.4, 4.57.6 and 5.0.0 (our pin allows them) never
advance position ids a caller passed, so funasr's batches decode differently from the same
items alone there; 5.24, installed here, advances them. The engine drops them so transformers
derives positions from the attention mask in every version. These tests make the installed
transformers behave as the older ones do, so the difference can show here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from asr_serve.config import ModelConfig
from asr_serve.engines.base import TranscribeOptions
from asr_serve.engines.funasr import FunASREngine
from tests.fidelity.clips import CLIPS, clip, funasr_text


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """1 to 25 s: each item but the longest is left-padded in the batch."""
    return [clip(name) for name in CLIPS]


@pytest.fixture(scope="module")
def engine(tiny_model_dir) -> FunASREngine:
    config = ModelConfig(name="tiny", engine="funasr", model=str(tiny_model_dir), device="cpu")
    engine = FunASREngine(config)
    engine.load()
    return engine


def _positions_never_advance(monkeypatch: pytest.MonkeyPatch, llm: Any) -> None:
    """Make ``llm.generate`` keep caller-given position ids as older transformers do.

    Each step then reads the prompt's last position for the new token, as 4.51 to 5.0 did.
    """
    given = False
    generate, update = llm.generate, llm._update_model_kwargs_for_generation

    def generate_noting_positions(*args: Any, **kwargs: Any) -> Any:
        nonlocal given
        given = "position_ids" in kwargs
        return generate(*args, **kwargs)

    def update_keeping_given(outputs: Any, model_kwargs: dict, *args: Any, **kwargs: Any) -> Any:
        positions = model_kwargs.get("position_ids")
        updated = update(outputs, model_kwargs, *args, **kwargs)
        if given:
            updated["position_ids"] = positions
        return updated

    monkeypatch.setattr(llm, "generate", generate_noting_positions)
    monkeypatch.setattr(llm, "_update_model_kwargs_for_generation", update_keeping_given)


def _texts(engine: FunASREngine, clips: list[np.ndarray]) -> list[str]:
    return [r.text for r in engine.transcribe(clips, [TranscribeOptions()] * len(clips))]


def test_funasrs_own_batches_differ_from_alone_without_advancing_positions(
    monkeypatch, funasr_model, clips
) -> None:
    """The emulation reproduces the fault: funasr's batch, called directly, goes wrong."""
    tensors = [torch.from_numpy(c) for c in clips]
    alone = [funasr_text(funasr_model.generate(input=[t])[0]["text"]) for t in tensors]
    _positions_never_advance(monkeypatch, funasr_model.model.llm)
    batched = funasr_model.generate(input=tensors, batch_size=len(tensors))
    assert [funasr_text(r["text"]) for r in batched] != alone


def test_our_batches_equal_alone_without_advancing_positions(monkeypatch, engine, clips) -> None:
    alone = [_texts(engine, [c])[0] for c in clips]
    assert _texts(engine, clips) == alone
    _positions_never_advance(monkeypatch, engine._model.model.llm)
    assert _texts(engine, clips) == alone


def test_the_batch_reaches_generate_left_padded_without_position_ids(
    monkeypatch, engine, clips
) -> None:
    calls: list[dict[str, Any]] = []
    generate = engine._model.model.llm.generate

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return generate(*args, **kwargs)

    monkeypatch.setattr(engine._model.model.llm, "generate", spy)
    _texts(engine, clips)
    [kwargs] = calls
    assert "position_ids" not in kwargs
    mask = kwargs["attention_mask"]
    assert mask.shape[0] == len(clips) and not mask[:, -1].eq(0).any()  # padded on the left
    assert mask[:, 0].eq(0).sum() == len(clips) - 1  # every item but the longest is padded
