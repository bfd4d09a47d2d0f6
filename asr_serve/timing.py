"""Where a request's time goes, stage by stage: what ``Server-Timing`` and the live logs say.

A request's stages are measured in several layers (the upload in the route, reading or
decoding in the ingress or the decoder's call, the model's queue, batch and engine in the
ASR replica, stitching and rendering back in the ingress), so they are collected in one
:class:`Timings` per request, found through a context variable rather than passed through
every call between those layers: the ingress's middleware (or a live session's final)
opens one with :func:`collecting`, each layer :func:`record`\\ s its stage into the current
one, and code that runs outside any (a partial result, a health probe's handle call)
records nothing. Tasks a request starts (the pieces of a long file) share its
:class:`Timings`: asyncio copies the context, and the copy refers to the same object.

The ASR replica measures its own stages per item (:class:`ModelTimes`) and returns them with
the result; the ingress adds what the call cost around them (``transport``: Serve's router,
serialisation and gRPC, both ways).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

from pydantic import BaseModel

#: Stage names, in the order a file request passes them (``Server-Timing`` entry names).
UPLOAD = "upload"  # the multipart body read into memory
READ = "read"  # a 16 kHz WAV read in place by the ingress
DECODE = "decode"  # the AudioDecoder's call: decoding, resampling, splitting, its hop
QUEUE = "queue"  # at the ASR replica, waiting for the engine to be free
BATCH = "batch"  # at the ASR replica, let in: waiting for ``@serve.batch`` to start the batch
ENGINE = "engine"  # the batch's engine call
TRANSPORT = "transport"  # the model call minus the replica's stages: routing, gRPC, pickling
RENDER = "render"  # stitching the pieces and rendering the response format
TOTAL = "total"  # from the request reaching the ingress to its response starting
#: A live final's own stages, before and after its model call.
SILENCE = "silence"  # the VAD's wait for the silence that ends the utterance
SEND = "send"  # the transcript back at the session until sent, earlier items' first


class ModelTimes(BaseModel):
    """An item's time in the ASR replica, in seconds: what its caller cannot see."""

    queue_s: float
    batch_s: float
    engine_s: float
    #: Items in the engine call it ran in.
    batch_size: int

    @property
    def total_s(self) -> float:
        return self.queue_s + self.batch_s + self.engine_s


class Timings:
    """One request's stages, seconds each, summed when a stage runs more than once (the
    pieces of a long file), in the order they were first recorded."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stages: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def add_model(self, times: ModelTimes, call_s: float) -> None:
        """One model call: the replica's stages, and the rest of ``call_s`` as transport."""
        self.add(QUEUE, times.queue_s)
        self.add(BATCH, times.batch_s)
        self.add(ENGINE, times.engine_s)
        self.add(TRANSPORT, max(0.0, call_s - times.total_s))

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def header(self) -> str:
        """The ``Server-Timing`` value (W3C): ``name;dur=ms`` per stage, then ``total``."""
        entries = [*self.stages.items(), (TOTAL, self.elapsed())]
        return ", ".join(f"{name};dur={1000 * seconds:.1f}" for name, seconds in entries)


_CURRENT: ContextVar[Timings | None] = ContextVar("asr_serve_timings", default=None)


@contextlib.contextmanager
def collecting(timings: Timings) -> Iterator[Timings]:
    """Make ``timings`` the current request's for the block (and the tasks it starts)."""
    token = _CURRENT.set(timings)
    try:
        yield timings
    finally:
        _CURRENT.reset(token)


def record(stage: str, seconds: float) -> None:
    """Add to the current request's ``stage``; nothing when no request collects."""
    if (timings := _CURRENT.get()) is not None:
        timings.add(stage, seconds)


def record_model(times: ModelTimes, call_s: float) -> None:
    """Add one model call's stages to the current request (see :meth:`Timings.add_model`)."""
    if (timings := _CURRENT.get()) is not None:
        timings.add_model(times, call_s)


@contextlib.contextmanager
def timed(stage: str) -> Iterator[None]:
    """Record the block's wall time as ``stage`` of the current request (also when it raises:
    the time was spent)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        record(stage, time.perf_counter() - started)
