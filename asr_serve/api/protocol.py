"""Request and response models of the OpenAI-compatible audio API.

Kept apart from serving logic (as vLLM's ``entrypoints/openai/protocol.py`` does) so the
shapes can be read, tested and documented on their own.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from asr_serve.config import ModelConfig

ResponseFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]
#: ``diarized_json``: segments with speakers (transcriptions only).
TranscriptionFormat = ResponseFormat | Literal["diarized_json"]
#: OpenAI's bound on ``known_speaker_names[]`` / ``known_speaker_references[]``.
MAX_KNOWN_SPEAKERS = 4
SpeakerName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
TimestampGranularity = Literal["segment", "word"]
#: A language code: ISO-639-1 (or -3) such as ``en``, ``zh``, ``yue``.
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$")]


class ServerVADChunking(BaseModel):
    """``chunking_strategy`` as OpenAI's ``server_vad`` object, mapped onto the server's
    splitting (``splitting`` in the config): ``threshold`` to ``threshold``,
    ``silence_duration_ms`` to ``min_silence_ms``, ``prefix_padding_ms`` to
    ``speech_pad_ms``. A knob left out keeps the server's value."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["server_vad"]
    threshold: float | None = Field(None, gt=0.0, lt=1.0)
    prefix_padding_ms: int | None = Field(None, ge=0, le=2_000)
    silence_duration_ms: int | None = Field(None, ge=0, le=10_000)


class TranscriptionRequest(BaseModel):
    """The form fields of ``POST /v1/audio/transcriptions`` (the file travels apart).

    Every field of OpenAI's ``audio.transcriptions.create`` is here, honoured or refused by
    :func:`asr_serve.serving.pipeline.parse_request` with a 400 naming it; any other field
    is refused too (a typo such as ``languge`` must not pass unnoticed).
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    #: Model name from ``/v1/models``; ``None`` selects the configured default model.
    model: str | None = None
    #: ISO-639-1 (or -3) code such as ``en``, ``zh``; ``None`` lets the model decide.
    language: LanguageCode | None = None
    #: Possible languages: one is taken as ``language``; several are refused.
    languages: list[LanguageCode] = Field(default_factory=list)
    #: Whisper's initial prompt; Fun-ASR's hotwords.
    prompt: str | None = None
    #: Words to recognise: Fun-ASR's hotwords (beside the prompt's); refused by other models.
    keywords: list[str] = Field(default_factory=list)
    #: ``diarized_json``: segments with their speakers (``A``, ``B``, … or known names).
    response_format: TranscriptionFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[TimestampGranularity] = Field(default_factory=list)
    #: ``logprobs``: per-word log-probabilities, from models that give them.
    include: list[Literal["logprobs"]] = Field(default_factory=list)
    #: How long audio is split: ``auto`` (the server's splitting) or a ``server_vad`` object.
    chunking_strategy: Literal["auto"] | ServerVADChunking | None = None
    #: With ``diarized_json``: names for the speakers of ``known_speaker_references``.
    known_speaker_names: list[SpeakerName] = Field(default_factory=list)
    #: Data URLs of 2-10 s clips of those speakers, one per name, at most four.
    known_speaker_references: list[str] = Field(default_factory=list)
    #: Server-sent events as pieces finish (``transcript.text.delta`` ... ``.done``);
    #: with ``response_format`` ``json`` or ``text`` only.
    stream: bool = False

    @field_validator("model", "language", "prompt", "chunking_strategy", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """HTML forms and some clients send empty strings for omitted fields."""
        return None if value == "" else value

    @field_validator("chunking_strategy", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        """A ``server_vad`` object arrives as form fields (``chunking_strategy[type]``, as the
        ``openai`` client sends it) or as one JSON field."""
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not a JSON object: {exc}") from None
        return value


class TranslationRequest(BaseModel):
    """The form fields of ``POST /v1/audio/translations``, OpenAI's
    ``audio.translations.create``: English text from speech in any language."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    #: A model that can translate; ``None``: the default model if it can, else the first that
    #: can.
    model: str | None = None
    prompt: str | None = None
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("model", "prompt", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
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
    #: Mean log-probability of the segment's tokens, where the model gives it.
    avg_logprob: float | None = None


class Logprob(BaseModel):
    """``include[]=logprobs``: one per word (OpenAI's models give one per token)."""

    token: str
    logprob: float
    #: The token's UTF-8 bytes.
    bytes: list[int]


class TranscriptionResponse(BaseModel):
    """``response_format=json``."""

    text: str
    logprobs: list[Logprob] | None = None
    usage: Usage | None = None


class VerboseTranscriptionResponse(BaseModel):
    """``response_format=verbose_json``."""

    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None
    logprobs: list[Logprob] | None = None
    #: The model that served the request (not in OpenAI's shape; useful with several).
    model: str | None = None


class DiarizedSegment(BaseModel):
    """A ``diarized_json`` segment, and the ``transcript.text.segment`` event of a stream."""

    type: Literal["transcript.text.segment"] = "transcript.text.segment"
    id: str
    start: float
    end: float
    text: str
    #: ``A``, ``B``, … in order of appearance, or a name from ``known_speaker_names``.
    speaker: str


class DiarizedTranscriptionResponse(BaseModel):
    """``response_format=diarized_json``: OpenAI's ``TranscriptionDiarized``."""

    task: Literal["transcribe"] = "transcribe"
    duration: float
    text: str
    segments: list[DiarizedSegment]
    usage: Usage | None = None


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
