"""``inprocess``: the engine called directly, no HTTP, no Ray: the limit serving approaches.

Items go through :func:`asr_serve.engines.batch.run_batch`, exactly as the ASR replica runs a
batch (longest first), in fixed batches over the same request sequence as the servers get.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

from asr_serve.config import ModelConfig
from asr_serve.engines import Engine, TranscribeOptions, create_engine
from asr_serve.engines.batch import BatchItem, run_batch
from benchmarks.audio import Clip, sequence
from benchmarks.loadgen import Record, RunStats, summarize


@contextlib.contextmanager
def _count_llm_tokens(engine: Engine) -> Iterator[list[int]]:
    """Record how many tokens each funasr LLM ``generate`` call produced per item.

    The fixed-length comparison rests on random weights never emitting an end token
    before ``max_new_tokens``; this checks it instead of assuming it.
    """
    counts: list[int] = []
    llm = getattr(getattr(getattr(engine, "_model", None), "model", None), "llm", None)
    if llm is None:
        yield counts
        return
    generate = llm.generate

    def counting(*args: Any, **kwargs: Any) -> Any:
        out = generate(*args, **kwargs)
        counts.extend([int(out.shape[-1])] * int(out.shape[0]))
        return out

    llm.generate = counting
    try:
        yield counts
    finally:
        del llm.generate  # back to the class's method


def generated_tokens(engine: Engine, clips: Sequence[Clip]) -> list[int]:
    """Tokens generated per clip of the mix, in one batch (empty for engines not checked)."""
    with _count_llm_tokens(engine) as counts:
        engine.transcribe([c.samples for c in clips], [TranscribeOptions()] * len(clips))
    return counts


def run_inprocess(
    model: ModelConfig, clips: Sequence[Clip], batch_sizes: Sequence[int], n_requests: int
) -> tuple[float, list[int], list[RunStats]]:
    """Load (timed), warm up, check output lengths, then one level per batch size.

    A request's latency is its batch's time: every item of a batch finishes with it.
    """
    started = time.perf_counter()
    engine = create_engine(model)
    engine.load()
    load_s = time.perf_counter() - started
    engine.warmup()
    tokens = generated_tokens(engine, clips)
    levels = []
    for size in batch_sizes:
        todo = sequence(clips, n_requests)
        records: list[Record] = []
        level_start = time.perf_counter()
        for i in range(0, len(todo), size):
            chunk = todo[i : i + size]
            items = [BatchItem(audio=c.samples, options=TranscribeOptions()) for c in chunk]
            t0 = time.perf_counter()
            run_batch(engine, items)
            latency = time.perf_counter() - t0
            records += [Record(clip=c.name, audio_s=c.seconds, status=200, latency_s=latency)
                        for c in chunk]  # fmt: skip
        elapsed = time.perf_counter() - level_start
        levels.append(summarize("inprocess", "inprocess", records, elapsed, batch_size=size))
    return load_s, tokens, levels
