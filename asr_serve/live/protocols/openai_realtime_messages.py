"""OpenAI Realtime transcription messages: the client events we accept, the events we send.

Client events are validated strictly (``extra="forbid"``): a field this server cannot honour
is refused by name rather than ignored. The one session model serves both ways: a
``session.update`` is validated against it and only the fields the client set
(``exclude_unset``) are merged into the session (:func:`merge`), as OpenAI's updates are
partial. Server events carry every field the ``openai`` SDK's types require, so its strict
parser accepts them (checked against ``openai.types.realtime.RealtimeServerEvent``).
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from asr_serve.config import ServerVAD
from asr_serve.live.pcm import SampleRate
from asr_serve.live.protocols.connection import (
    ProtocolError,
    check_length,
    invalid_message,
    json_shape,
)
from asr_serve.untrusted import clip

# Client side --------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class AudioFormat(_Strict):
    """``audio/pcm`` is PCM16 at ``rate`` (OpenAI allows only 24000; any 8-96 kHz works
    here); ``audio/pcmu`` and ``audio/pcma`` are 8 kHz G.711 and take no rate."""

    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: SampleRate | None = None

    @model_validator(mode="after")
    def _rate_for_pcm_only(self) -> AudioFormat:
        if self.type == "audio/pcm":
            self.rate = self.rate or 24_000
        elif self.rate is not None:
            raise ValueError(f"{self.type} is 8000 Hz and takes no rate")
        return self


class AudioTranscription(_Strict):
    model: str | None = None
    #: ISO-639-1, e.g. ``en``; the model refuses languages it does not have.
    language: str | None = Field(None, max_length=32)
    #: Whisper's initial prompt; Fun-ASR's hotwords.
    prompt: str | None = None


class TurnDetection(ServerVAD):
    """``server_vad`` only, with its knobs and defaults. ``create_response`` and
    ``interrupt_response`` concern model responses, which a transcription session never
    makes: ``false`` is accepted."""

    type: Literal["server_vad"] = "server_vad"
    create_response: Literal[False] | None = None
    interrupt_response: Literal[False] | None = None
    idle_timeout_ms: None = None

    def server_vad(self) -> ServerVAD:
        return ServerVAD.model_validate(self.model_dump(include=set(ServerVAD.model_fields)))

    def echo(self) -> dict[str, Any]:
        """As the session events show it: the type and the knobs in effect."""
        return self.model_dump(include={"type", *ServerVAD.model_fields})


class AudioInput(_Strict):
    format: AudioFormat = Field(default_factory=AudioFormat)
    transcription: AudioTranscription = Field(default_factory=AudioTranscription)
    noise_reduction: None = None
    #: ``None``: manual turns, the client commits.
    turn_detection: TurnDetection | None = Field(default_factory=TurnDetection)


class Audio(_Strict):
    input: AudioInput = Field(default_factory=AudioInput)


def _no_include(value: list[str] | None) -> list[str] | None:
    if value:
        raise ValueError(f"{', '.join(value)} cannot be included: no include is supported")
    return value


class TranscriptionSession(_Strict):
    """A GA transcription session, and the shape of a ``session.update``'s ``session``."""

    type: Literal["transcription"] = "transcription"
    audio: Audio = Field(default_factory=Audio)
    include: list[str] | None = None

    _check_include = field_validator("include")(_no_include)


class BetaTranscriptionSession(_Strict):
    """The ``session`` of the older ``transcription_session.update``."""

    input_audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] | None = None
    input_audio_transcription: AudioTranscription | None = None
    turn_detection: TurnDetection | None = None
    input_audio_noise_reduction: None = None
    include: list[str] | None = None
    modalities: list[Literal["text"]] | None = None

    _check_include = field_validator("include")(_no_include)

    def as_update(self) -> dict[str, Any]:
        """The same change in the GA shape, as :func:`merge` takes it."""
        fields = self.model_fields_set
        audio: dict[str, Any] = {}
        if "input_audio_format" in fields and self.input_audio_format is not None:
            audio["format"] = _BETA_FORMATS[self.input_audio_format]
        if "input_audio_transcription" in fields and self.input_audio_transcription:
            audio["transcription"] = self.input_audio_transcription.model_dump(exclude_unset=True)
        if "turn_detection" in fields:
            detection = self.turn_detection
            audio["turn_detection"] = detection and detection.model_dump(exclude_unset=True)
        return {"audio": {"input": audio}}


_BETA_FORMATS = {
    "pcm16": {"type": "audio/pcm", "rate": 24_000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
_GA_TO_BETA_FORMAT = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}


class _ClientEvent(_Strict):
    event_id: str | None = None


class SessionUpdate(_ClientEvent):
    type: Literal["session.update"] = "session.update"
    session: TranscriptionSession


class BetaSessionUpdate(_ClientEvent):
    type: Literal["transcription_session.update"] = "transcription_session.update"
    session: BetaTranscriptionSession


class AppendAudio(_ClientEvent):
    type: Literal["input_audio_buffer.append"] = "input_audio_buffer.append"
    audio: str  # base64


class CommitAudio(_ClientEvent):
    type: Literal["input_audio_buffer.commit"] = "input_audio_buffer.commit"


class ClearAudio(_ClientEvent):
    type: Literal["input_audio_buffer.clear"] = "input_audio_buffer.clear"


ClientEvent = SessionUpdate | BetaSessionUpdate | AppendAudio | CommitAudio | ClearAudio
_CLIENT_EVENTS: dict[str, type[ClientEvent]] = {
    event.model_fields["type"].default: event
    for event in (SessionUpdate, BetaSessionUpdate, AppendAudio, CommitAudio, ClearAudio)
}


class ClientEventError(ProtocolError):
    """A client event this server refuses; ``event_id`` is the client's, to echo back."""

    def __init__(
        self, code: str, message: str, *, param: str | None = None, event_id: str | None = None
    ) -> None:
        super().__init__(code, message, param=param)
        self.event_id = event_id


def parse_client_event(text: str, max_id_chars: int) -> ClientEvent:
    """One client event from a text frame, or :class:`ClientEventError` saying what is wrong.

    Its nesting is checked before it is parsed; an ``event_id`` over ``max_id_chars`` is
    refused (every error about the event would echo it)."""
    json_shape(text)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ClientEventError("invalid_json", f"The event is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ClientEventError("invalid_json", "An event must be a JSON object")
    event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    check_length(event_id, max_id_chars, "event_id")
    kind = data.get("type")
    event_class = _CLIENT_EVENTS.get(kind) if isinstance(kind, str) else None
    if event_class is None:
        raise ClientEventError(
            "invalid_event_type",
            f"Unsupported event type {clip(repr(kind), 80)}; this transcription server takes "
            f"{', '.join(_CLIENT_EVENTS)}",
            param="type",
            event_id=event_id,
        )
    try:
        return event_class.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, event_id) from None


def validation_error(exc: ValidationError, event_id: str | None) -> ClientEventError:
    """The first problem pydantic found, with the offending field as ``param``."""
    error = invalid_message(exc)
    return ClientEventError(error.code, error.message, param=error.param, event_id=event_id)


def merge(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` deep-merged into ``current``; an object of another ``type`` replaces."""
    merged = dict(current)
    for key, value in update.items():
        old = merged.get(key)
        if (
            isinstance(old, dict)
            and isinstance(value, dict)
            and (value.get("type", old.get("type")) == old.get("type"))
        ):
            merged[key] = merge(old, value)
        else:
            merged[key] = value
    return merged


# Server side --------------------------------------------------------------------------------


def _event_id() -> str:
    return f"event_{secrets.token_hex(10)}"


class _ServerEvent(BaseModel):
    event_id: str = Field(default_factory=_event_id)


class ErrorDetail(BaseModel):
    type: str
    code: str | None
    message: str
    param: str | None


class ClientErrorDetail(ErrorDetail):
    #: The client event that caused it, when it had an ``event_id``.
    event_id: str | None


def session_object(session: TranscriptionSession, session_id: str) -> dict[str, Any]:
    """The session as ``session.created`` / ``session.updated`` carry it.

    ``rate`` is always echoed as 24000: the SDK types allow no other value, and a session
    object that fails them is parsed into the wrong class (a realtime session). The rate
    the client declared is the one in use.
    """
    audio = session.audio.input
    detection = audio.turn_detection
    fmt: dict[str, Any] = {"type": audio.format.type}
    if audio.format.type == "audio/pcm":
        fmt["rate"] = 24_000
    return {
        "type": "transcription",
        "object": "realtime.transcription_session",
        "id": session_id,
        "expires_at": 0,
        "include": session.include,
        "audio": {
            "input": {
                "format": fmt,
                "transcription": audio.transcription.model_dump(),
                "noise_reduction": None,
                "turn_detection": detection and detection.echo(),
            }
        },
    }


def beta_session_object(session: TranscriptionSession, session_id: str) -> dict[str, Any]:
    """The session as the older ``transcription_session.updated`` carries it."""
    audio = session.audio.input
    detection = audio.turn_detection
    return {
        "id": session_id,
        "object": "realtime.transcription_session",
        "modalities": ["text"],
        "input_audio_format": _GA_TO_BETA_FORMAT[audio.format.type],
        "input_audio_transcription": audio.transcription.model_dump(),
        "turn_detection": detection and detection.echo(),
        "input_audio_noise_reduction": None,
        "include": session.include,
    }


class SessionCreated(_ServerEvent):
    type: Literal["session.created"] = "session.created"
    session: dict[str, Any]


class SessionUpdated(_ServerEvent):
    type: Literal["session.updated"] = "session.updated"
    session: dict[str, Any]


class BetaSessionUpdated(_ServerEvent):
    type: Literal["transcription_session.updated"] = "transcription_session.updated"
    session: dict[str, Any]


class SpeechStartedEvent(_ServerEvent):
    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class SpeechStoppedEvent(_ServerEvent):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class CommittedEvent(_ServerEvent):
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None


class ClearedEvent(_ServerEvent):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class _ItemEvent(_ServerEvent):
    item_id: str
    content_index: int = 0


class TranscriptionDelta(_ItemEvent):
    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta"
    )
    delta: str


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class DetectedLanguage(BaseModel):
    code: str


class TranscriptionCompleted(_ItemEvent):
    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed"
    )
    transcript: str
    usage: DurationUsage
    #: The language the model detected in this utterance; ``None`` when the session names
    #: its language.
    languages: list[DetectedLanguage] | None = None


class TranscriptionFailed(_ItemEvent):
    type: Literal["conversation.item.input_audio_transcription.failed"] = (
        "conversation.item.input_audio_transcription.failed"
    )
    error: ErrorDetail


class ErrorEvent(_ServerEvent):
    type: Literal["error"] = "error"
    error: ClientErrorDetail


ServerEvent = (
    SessionCreated
    | SessionUpdated
    | BetaSessionUpdated
    | SpeechStartedEvent
    | SpeechStoppedEvent
    | CommittedEvent
    | ClearedEvent
    | TranscriptionDelta
    | TranscriptionCompleted
    | TranscriptionFailed
    | ErrorEvent
)
