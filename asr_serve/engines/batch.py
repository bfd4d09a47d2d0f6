"""How the ASR deployment forms and runs a batch, independent of Ray.

The fair queue (:mod:`asr_serve.engines.fair`) releases a batch's worth of items and
Serve's ``@serve.batch`` collects them; this module decides what an item costs towards
``max_batch_size`` (so a batch is bounded by total audio as well as by count) and runs one
batch through the engine longest-first, returning results in the callers' order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from asr_serve.config import SAMPLE_RATE, BatchingConfig
from asr_serve.engines.base import Engine, EngineResult, TranscribeOptions
from asr_serve.engines.fair import Ticket
from asr_serve.engines.oom import run_splitting_on_oom
from asr_serve.errors import InsufficientMemoryError
from asr_serve.timing import ModelTimes


@dataclass(frozen=True)
class BatchItem:
    audio: np.ndarray
    options: TranscribeOptions
    #: Share of ``max_batch_size`` this item takes: at least 1, more for long audio.
    cost: int = 1
    #: Its place in the replica's fair queue, with the times it passed each stage.
    ticket: Ticket | None = None

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


class Transcribed(BaseModel):
    """What the ASR replica returns for an item: its result and where its time went there."""

    result: EngineResult
    times: ModelTimes


def with_times(
    items: Sequence[BatchItem],
    results: Sequence[EngineResult | InsufficientMemoryError],
    started: float,
    ended: float,
) -> list[Transcribed | InsufficientMemoryError]:
    """Each result with its item's times: queued until the fair queue released it, then
    until its batch ``started``, then the engine until ``ended``."""
    out: list[Transcribed | InsufficientMemoryError] = []
    for item, result in zip(items, results, strict=True):
        if not isinstance(result, EngineResult):
            out.append(result)
            continue
        ticket = item.ticket
        enqueued = ticket.enqueued_at if ticket else started
        released = ticket.released_at if ticket and ticket.released_at else started
        times = ModelTimes(
            queue_s=max(0.0, released - enqueued),
            batch_s=max(0.0, started - released),
            engine_s=ended - started,
            batch_size=len(items),
        )
        out.append(Transcribed(result=result, times=times))
    return out


class CompanyWait:
    """How long a new batch waits for more items: ``batch_wait_timeout_s``, unless the last
    batch ran alone and nothing came within that wait of its start.

    The wait pays only when company comes within it. Where items come one at a time (one
    client, a quiet replica) it would be added to every request for nothing, so then a batch
    of one starts at once; an item arriving within the wait of such a batch's start would
    have joined it, so the next batch waits again. Closed-loop clients answered together send
    their next requests together, which is company; and items that arrive while the engine
    is busy are held and released together anyway (:mod:`asr_serve.engines.fair`), so under
    load nothing changes.
    """

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self._alone = False
        self._started_at = -math.inf

    def arrived(self, at: float) -> float:
        """An item reached the replica at ``at``: the wait of a batch it starts."""
        if self._alone and at - self._started_at < self.wait_s:
            self._alone = False  # it would have joined the last batch: company comes
        return 0.0 if self._alone else self.wait_s

    def started(self, size: int, at: float) -> None:
        """A batch of ``size`` items started at ``at``."""
        self._alone, self._started_at = size == 1, at


def item_cost(seconds: float, config: BatchingConfig) -> int:
    """Count an item as ``max(1, its share of max_batch_audio_s)`` batch slots.

    A batch is full when the costs reach ``max_batch_size``: at most that many items,
    and at most ``max_batch_audio_s`` of audio in total. Capped at ``max_batch_size`` so
    one very long item forms a batch of its own instead of being rejected by Serve.
    """
    share = math.ceil(seconds * config.max_batch_size / config.max_batch_audio_s)
    return min(config.max_batch_size, max(1, share))


def batch_cost(items: Sequence[BatchItem]) -> int:
    """``batch_size_fn`` for ``@serve.batch``."""
    return sum(item.cost for item in items)


def _transcribe(engine: Engine, items: Sequence[BatchItem]) -> list[EngineResult]:
    results = engine.transcribe([item.audio for item in items], [item.options for item in items])
    if len(results) != len(items):
        raise RuntimeError(f"engine returned {len(results)} results for {len(items)} inputs")
    return results


def run_batch(
    engine: Engine,
    items: Sequence[BatchItem],
    *,
    on_oom: Callable[[int], None] = lambda size: None,
) -> list[EngineResult | InsufficientMemoryError]:
    """Transcribe ``items`` in one engine call, longest first; results in input order.

    One call, not calls per length bucket: the decoder's per-step cost outweighs what the
    encoder spends on padding short items to the longest (benchmarks/README.md, "Figures
    behind the code").
    Out of memory, the batch is split in halves and retried (:mod:`asr_serve.engines.oom`); an item
    that does not fit alone gets an :class:`InsufficientMemoryError` in its place.
    """
    order = sorted(range(len(items)), key=lambda i: len(items[i].audio), reverse=True)
    results = run_splitting_on_oom(
        lambda part: _transcribe(engine, part), [items[i] for i in order], on_oom=on_oom
    )
    ordered: list[EngineResult | InsufficientMemoryError | None] = [None] * len(items)
    for position, index in enumerate(order):
        ordered[index] = results[position]
    return ordered  # type: ignore[return-value]
