"""The one way a live session reaches a model: a decode request to an async callable.

The session core never knows whether the model runs in process, behind a Serve handle or
in a test fake. It asks a :data:`Transcriber`, in practice the replica's
:class:`asr_serve.live.scheduler.DecodeScheduler`, which runs the :data:`Decode` it was given.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from asr_serve.engines.base import EngineResult, TranscribeOptions


class DecodeKind(enum.StrEnum):
    #: A committed utterance: its result is the item's transcript; never dropped.
    FINAL = "final"
    #: A re-decode of the open utterance for partial results; dropped when it would be stale.
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    session_id: str
    model: str
    audio: np.ndarray  # 16 kHz mono float32
    options: TranscribeOptions
    kind: DecodeKind
    #: Asked just before a partial runs: ``False`` once its result could only be stale (the
    #: utterance was committed or cleared, or has grown by more than a partial interval).
    still_wanted: Callable[[], bool]


#: Decodes a request; ``None`` means "this partial was shed". Finals never return ``None``.
Transcriber = Callable[[DecodeRequest], Awaitable[EngineResult | None]]

#: Runs the model for a request; a Serve handle call, or an engine. ``None``: a partial the
#: model's replica dropped because requests kept it busy (finals never get ``None``).
Decode = Callable[[DecodeRequest], Awaitable[EngineResult | None]]
