"""What a live session tells its protocol adapter, in no protocol's terms.

Every adapter (OpenAI Realtime, FunASR's protocols) renders these into its own messages.
Times are milliseconds of audio since the session started. Each item ends in exactly one
``Completed`` or ``Failed``, in the order the items were committed. These never leave the
process, so they are plain dataclasses; the wire messages are the adapters' pydantic models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from asr_serve.engines.base import EngineResult
from asr_serve.errors import ASRServeError


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    item_id: str
    audio_start_ms: int  # prefix padding included


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    item_id: str
    audio_end_ms: int  # the silence that ended the speech included


@dataclass(frozen=True, slots=True)
class Committed:
    """The utterance is closed and sent to the model; ``Completed`` or ``Failed`` follows."""

    item_id: str
    previous_item_id: str | None
    audio_start_ms: int
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class Cleared:
    """The client dropped its uncommitted audio; ``item_id`` is the open utterance's, if any."""

    item_id: str | None


@dataclass(frozen=True, slots=True)
class Partial:
    """The open utterance transcribed again: ``text`` is the whole hypothesis (it may still
    change); ``delta`` the text it made stable, to append to what was sent ("" if none)."""

    item_id: str
    text: str
    delta: str
    audio_start_ms: int  # where the utterance starts


@dataclass(frozen=True, slots=True)
class Completed:
    """The final transcript. ``delta`` is its rest when it extends the partial deltas sent,
    ``None`` when it diverges from them (then ``transcript`` replaces them)."""

    item_id: str
    transcript: str
    delta: str | None
    audio_start_ms: int
    audio_end_ms: int
    result: EngineResult
    #: The session's label for who said it, when the session asked for speakers.
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    item_id: str
    error: ASRServeError


LiveEvent = SpeechStarted | SpeechStopped | Committed | Cleared | Partial | Completed | Failed

#: Where a session puts its events; must not block (an adapter queues them for its socket).
Sink = Callable[[LiveEvent], None]
