"""Request and response models of the OpenAI-compatible audio API.

Kept apart from serving logic (as vLLM's ``entrypoints/openai/protocol.py`` does) so the
shapes can be read, tested and documented on their own.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from asr_serve.config import ModelConfig

ResponseFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]
TimestampGranularity = Literal["segment", "word"]


class TranscriptionRequest(BaseModel):
    """The form fields of ``POST /v1/audio/transcriptions`` (the file travels apart)."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    #: Model name from ``/v1/models``; ``None`` selects the configured default model.
    model: str | None = None
    #: ISO-639-1 (or -3) code such as ``en``, ``zh``; ``None`` lets the model decide.
    language: str | None = Field(None, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$")
    #: Whisper's initial prompt; Fun-ASR's hotwords.
    prompt: str | None = None
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[TimestampGranularity] = Field(default_factory=list)
    #: Server-sent events as pieces finish (``transcript.text.delta`` ... ``.done``);
    #: with ``response_format`` ``json`` or ``text`` only.
    stream: bool = False

    @field_validator("model", "language", "prompt", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """HTML forms and some clients send empty strings for omitted fields."""
        return None if value == "" else value


class Usage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionSegment(BaseModel):
    id: int
    start: float
    end: float
    text: str


class TranscriptionResponse(BaseModel):
    """``response_format=json``."""

    text: str
    usage: Usage | None = None


class VerboseTranscriptionResponse(BaseModel):
    """``response_format=verbose_json``."""

    task: Literal["transcribe"] = "transcribe"
    language: str | None
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None
    #: The model that served the request (not in OpenAI's shape; useful with several).
    model: str | None = None


class TranscriptTextDelta(BaseModel):
    """``stream=true``: text of the next finished piece, with its leading space."""

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TranscriptTextDone(BaseModel):
    """``stream=true``: the last event, with the whole text."""

    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str


class TranscriptError(BaseModel):
    """``stream=true``: a failure after the stream began; no event follows it."""

    type: Literal["error"] = "error"
    error: ErrorDetail


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "asr-serve"
    engine: str | None = None
    description: str = ""

    @classmethod
    def of(cls, model: ModelConfig) -> ModelCard:
        return cls(id=model.name, engine=model.engine, description=model.description)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class HealthResponse(BaseModel):
    status: Literal["ok", "not_ready"]
    #: Per model: whether its ASR deployment has a loaded, warmed-up replica.
    models: dict[str, bool] = Field(default_factory=dict)
