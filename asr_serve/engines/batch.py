"""How the ASR deployment forms and runs a batch, independent of Ray.

Serve's ``@serve.batch`` collects the items; this module decides what an item costs
towards ``max_batch_size`` (so a batch is bounded by total audio as well as by count)
and runs one batch through the engine longest-first, returning results in the callers'
order.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel

from asr_serve.config import SAMPLE_RATE, BatchingConfig
from asr_serve.engines.base import Engine, EngineResult, TranscribeOptions
from asr_serve.engines.oom import run_splitting_on_oom
from asr_serve.errors import InsufficientMemoryError
from asr_serve.timing import ModelTimes


@dataclass(frozen=True)
class BatchItem:
    audio: np.ndarray
    options: TranscribeOptions
    #: Share of ``max_batch_size`` this item takes: at least 1, more for long audio.
    cost: int = 1
    #: When it reached the replica, and when the :class:`EngineGate` let it in (it is made
    #: then) to wait for ``@serve.batch`` to start its batch.
    enqueued_at: float = field(default_factory=time.perf_counter)
    released_at: float = field(default_factory=time.perf_counter)

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
    """Each result with its item's times: queued until let in, then until its batch
    ``started``, then the engine until ``ended``."""
    return [
        Transcribed(
            result=result,
            times=ModelTimes(
                queue_s=item.released_at - item.enqueued_at,
                batch_s=max(0.0, started - item.released_at),
                engine_s=ended - started,
                batch_size=len(items),
            ),
        )
        if isinstance(result, EngineResult)
        else result
        for item, result in zip(items, results, strict=True)
    ]


class EngineGate:
    """Holds new items while the engine runs a batch; lets them into the next one together.

    ``@serve.batch`` starts forming the next batch as soon as the previous one starts running:
    it closes ``batch_wait_timeout_s`` after its first item, with only what arrived in that
    window, and then waits for the engine anyway. Under load, batches stayed small while
    requests queued behind them. Held here instead, items reach ``@serve.batch`` the moment
    the engine is free, all at once, so a batch takes everything that queued meanwhile
    (up to ``max_batch_size``); and an idle replica adds only ``batch_wait_timeout_s``.

    Items come in two priorities. Requests (files, live finals) go first; a live partial
    result is best effort: it enters only once no request is waiting, so it rides along in
    spare room, and it gives up after ``max_wait_s`` (by then a newer partial is due), which
    sheds partials first under load and never a request (the partial policy as a whole:
    :mod:`asr_serve.live.partials`).
    """

    def __init__(self) -> None:
        self._idle = asyncio.Event()
        self._idle.set()
        self._requests_waiting = 0

    async def wait_until_idle(self) -> None:
        """A request's turn: the engine is free (or forming the next batch)."""
        self._requests_waiting += 1
        try:
            await self._idle.wait()
        finally:
            self._requests_waiting -= 1

    async def wait_behind_requests(self, max_wait_s: float) -> bool:
        """A partial's turn: the engine is free and no request is waiting to go in.

        ``False`` if that did not happen within ``max_wait_s``.
        """
        try:
            async with asyncio.timeout(max_wait_s):
                while True:
                    await self._idle.wait()
                    if not self._requests_waiting:
                        return True
                    # The requests woken with this one go first; then look again.
                    await asyncio.sleep(0)
        except TimeoutError:
            return False

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark the engine busy for the duration of one batch."""
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()


class CompanyWait:
    """How long a new batch waits for more items: ``batch_wait_timeout_s``, unless the last
    batch ran alone and nothing came within that wait of its start.

    The wait pays only when company comes within it. Where items come one at a time (one
    client, a quiet replica) it would be added to every request for nothing, so then a batch
    of one starts at once; an item arriving within the wait of such a batch's start would
    have joined it, so the next batch waits again. Closed-loop clients answered together send
    their next requests together, which is company; and items that arrive while the engine
    is busy are held and go in together anyway (:class:`EngineGate`), so under load nothing
    changes.
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
