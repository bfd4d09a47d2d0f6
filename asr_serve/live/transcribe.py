"""The one way a live session reaches a model: a transcription request to an async callable.

The session core never knows whether the model runs in process, behind a Serve handle or
in a test fake. It calls a :data:`Transcribe`, in practice the replica's
:class:`~asr_serve.live.partials.PartialScheduler`, which calls the :data:`Transcribe` it
was given (the model's deployment) for finals at once and for partials by the partial policy.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.speakers.labels import Turn


class TranscribeKind(enum.StrEnum):
    #: A committed utterance: its result is the item's transcript; never dropped.
    FINAL = "final"
    #: The open utterance transcribed again for a partial result; dropped when it would be
    #: stale (:mod:`asr_serve.live.partials`).
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class TranscribeRequest:
    session_id: str
    model: str
    audio: np.ndarray  # 16 kHz mono float32
    options: TranscribeOptions
    kind: TranscribeKind
    #: Asked just before a partial runs: ``False`` once its result could only be stale (the
    #: utterance was committed or cleared, or has grown by more than a partial interval).
    still_wanted: Callable[[], bool]
    #: Whose share of the model it takes (the session's client; "" for none).
    client: str = ""


#: Transcribes a request; ``None``: a partial that was dropped (by the replica's partial
#: scheduler, or by the model's replica, which requests kept busy). Finals never get ``None``.
Transcribe = Callable[[TranscribeRequest], Awaitable[EngineResult | None]]

#: A whole file in any container, for a model, with options, and whether to find who spoke:
#: decoded, split at pauses, transcribed and stitched as a file request's audio is; with its
#: speaker turns (none unless asked), as the connection's client's. Raises the request's
#: errors.
TranscribeFile = Callable[
    [bytes, str, TranscribeOptions, bool], Awaitable[tuple[EngineResult, list[Turn]]]
]
