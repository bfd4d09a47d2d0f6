"""Decode scheduling shared by every live session of an ingress replica.

Finals are what clients wait for, so they go to the model at once and never queue behind
partials. Partials are a best effort on top: at most ``max_partials_in_flight`` run at once,
at most one per session; the others wait in arrival order, and one that would be stale by
the time it runs (its session's utterance moved on, or it waited past
``partial_max_wait_s``) is dropped and counted as shed. Under load partials thin out and
finals keep their latency.
"""

from __future__ import annotations

import asyncio
import collections
import time

from asr_serve.config import LiveConfig
from asr_serve.engines.base import EngineResult
from asr_serve.live.decode import Decode, DecodeKind, DecodeRequest
from asr_serve.live.metrics import LiveMetrics, ShedReason


class DecodeScheduler:
    """The replica's :data:`asr_serve.live.decode.Transcriber`: call it with a request."""

    def __init__(self, decode: Decode, config: LiveConfig, metrics: LiveMetrics) -> None:
        self._decode = decode
        self._max_partials = config.max_partials_in_flight
        self._max_wait_s = config.partial_max_wait_s
        self._metrics = metrics
        self._partials_running = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._sessions: set[str] = set()  # with a partial running or waiting

    @property
    def partials_running(self) -> int:
        return self._partials_running

    @property
    def partials_waiting(self) -> int:
        return sum(not f.done() for f in self._waiting)

    async def __call__(self, request: DecodeRequest) -> EngineResult | None:
        started = time.monotonic()
        if request.kind is DecodeKind.FINAL:
            result = await self._run(request)
        else:
            result = await self._partial(request)
        if result is not None:
            self._metrics.decoded(request.kind, time.monotonic() - started)
        return result

    async def _run(self, request: DecodeRequest) -> EngineResult | None:
        return await self._decode(request)

    async def _partial(self, request: DecodeRequest) -> EngineResult | None:
        if request.session_id in self._sessions:
            self._metrics.partial_shed(ShedReason.DUPLICATE)
            return None
        self._sessions.add(request.session_id)
        try:
            if not await self._acquire():
                self._metrics.partial_shed(ShedReason.WAITED)
                return None
            try:
                if not request.still_wanted():
                    self._metrics.partial_shed(ShedReason.STALE)
                    return None
                result = await self._run(request)
                if result is None:
                    self._metrics.partial_shed(ShedReason.MODEL_BUSY)
                return result
            finally:
                self._release()
        finally:
            self._sessions.discard(request.session_id)

    async def _acquire(self) -> bool:
        """A partial slot; ``False`` when none came within ``partial_max_wait_s``."""
        # A slot is handed straight to a waiter when freed, so free slots mean no waiters.
        if self._partials_running < self._max_partials:
            self._partials_running += 1
            return True
        granted = asyncio.get_running_loop().create_future()
        self._waiting.append(granted)
        try:
            async with asyncio.timeout(self._max_wait_s):
                await granted
        except BaseException as exc:  # the timeout, or the session went away
            if granted.done() and not granted.cancelled():
                self._release()  # handed over just as the wait ended: pass it on
            if isinstance(exc, TimeoutError):
                return False
            raise
        return True

    def _release(self) -> None:
        """Hand the slot to the longest-waiting partial still waiting, or free it."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._partials_running -= 1
