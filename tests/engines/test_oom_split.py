"""The real Fun-ASR-Nano engine running out of memory mid-batch (the exception torch raises).

A forward hook on the Qwen3 decoder raises ``torch.OutOfMemoryError`` on batches above a
size, as a GPU would; ``run_batch`` must split and still give every item its own text.
"""

from __future__ import annotations

import numpy as np

from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.engines.batch import BatchItem, run_batch
from asr_serve.engines.funasr import FunASREngine
from asr_serve.errors import InsufficientMemoryError
from tests.support.faults import out_of_memory_above


def _items(clips: list[np.ndarray]) -> list[BatchItem]:
    return [BatchItem(audio=c, options=TranscribeOptions()) for c in clips]


def test_oom_batch_is_split_and_matches_one_by_one(tiny_engine: FunASREngine, clips) -> None:
    alone = [tiny_engine.transcribe([c], [TranscribeOptions()])[0].text for c in clips]
    ooms: list[int] = []
    with out_of_memory_above(tiny_engine._model.model.llm, max_batch=1) as seen:
        results = run_batch(tiny_engine, _items(clips), on_oom=ooms.append)
    assert all(isinstance(r, EngineResult) for r in results)
    assert [r.text for r in results] == alone  # type: ignore[union-attr]
    assert seen[0] == len(clips) and 1 in seen  # tried whole, then halves, then singles
    assert ooms[0] == len(clips)


def test_items_that_never_fit_get_503_and_the_engine_still_works(
    tiny_engine: FunASREngine, clips
) -> None:
    with out_of_memory_above(tiny_engine._model.model.llm, max_batch=0):
        results = run_batch(tiny_engine, _items(clips[:2]))
    assert all(isinstance(r, InsufficientMemoryError) for r in results)
    after = run_batch(tiny_engine, _items(clips[:2]))  # the replica stays healthy
    assert all(isinstance(r, EngineResult) and r.text for r in after)
