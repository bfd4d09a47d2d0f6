"""From form fields to a validated request and the engine's options: the API's contract.

The request models are here, below the HTTP layer, so the request flow validates and reads
them without knowing HTTP; :mod:`asr_serve.api` parses the body into an :class:`Upload`
and declares these models' fields in the OpenAPI schema.

Every field OpenAI's ``audio.transcriptions.create`` accepts is honoured or refused with a
400 that names it, never silently ignored, and so is any field it does not accept. What
depends on the model (a language, ``include[]=logprobs``, ``keywords``, translation) is
refused by the model's engine (:meth:`asr_serve.engines.base.Engine.check_options`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from asr_serve.config import AppConfig, SplittingConfig
from asr_serve.engines.base import TranscribeOptions
from asr_serve.errors import InvalidParameterError, InvalidRequestError, ModelNotFoundError
from asr_serve.untrusted import check_json_shape

#: A form field's value: ``name[]`` fields are lists, ``name[key]`` fields objects.
FieldValue = str | list[str] | dict[str, str]
Fields = Mapping[str, object]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Upload:
    """The parsed form: the audio bytes and the other fields (the file's name and declared
    type are not read: the decoder judges the bytes themselves). ``name[]`` fields are
    lists, ``name[key]`` fields objects."""

    data: bytes
    fields: dict[str, FieldValue]


ResponseFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]
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
    :func:`parse_request` with a 400 naming it; any other field
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
    #: ``diarized_json`` is refused until diarization exists.
    response_format: ResponseFormat | Literal["diarized_json"] = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[TimestampGranularity] = Field(default_factory=list)
    #: ``logprobs``: per-word log-probabilities, from models that give them.
    include: list[Literal["logprobs"]] = Field(default_factory=list)
    #: How long audio is split: ``auto`` (the server's splitting) or a ``server_vad`` object.
    chunking_strategy: Literal["auto"] | ServerVADChunking | None = None
    #: Refused until diarization exists.
    known_speaker_names: list[str] = Field(default_factory=list)
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
            check_json_shape(value)  # a JSONShapeError is a ValueError: 422 naming the field
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


def _validate(model: type[M], fields: Fields) -> M:
    """A field this API does not take is a 400 naming it; a bad value a 422 naming it."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        # The field, and the item of a list field; not the member of a union it tried.
        loc = first["loc"]
        param = ".".join(str(p) for p in loc[:2] if p == loc[0] or isinstance(p, int)) or None
        if first["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields)
            raise InvalidRequestError(
                f"unknown field {param!r}; this endpoint takes file, {known}", param=param
            ) from None
        raise InvalidParameterError(f"invalid {param}: {first['msg']}", param=param) from None


def _check_prompt(prompt: str | None, config: AppConfig, keywords: Sequence[str] = ()) -> None:
    """The prompt and the keywords go into the model's prompt together: together they fit
    ``max_prompt_chars`` (the keywords counted as the comma-separated list they become)."""
    limit = config.limits.max_prompt_chars
    if prompt is not None and len(prompt) > limit:
        raise InvalidParameterError(f"prompt is longer than {limit} characters", param="prompt")
    total = len(prompt or "") + len(",".join(keywords))
    if total > limit:
        raise InvalidParameterError(
            f"prompt and keywords together are {total} characters, over {limit}",
            param="keywords",
        )


def model_name(requested: str | None, config: AppConfig) -> str:
    """The configured model a request names (the default when it names none), or a 404."""
    name = requested or config.default_model
    assert name is not None
    if name not in {m.name for m in config.models}:
        raise ModelNotFoundError(
            f"model {name!r} does not exist; available: {', '.join(m.name for m in config.models)}",
            param="model",
        )
    return name


def parse_request(fields: Fields, config: AppConfig) -> TranscriptionRequest:
    """Validate ``/v1/audio/transcriptions``'s fields; refuse what cannot be honoured."""
    request = _validate(TranscriptionRequest, fields)
    _check_prompt(request.prompt, config, request.keywords)
    name = model_name(request.model, config)
    refusals = {
        "known_speaker_names": request.known_speaker_names,
        "known_speaker_references": request.known_speaker_references,
        "response_format": request.response_format == "diarized_json",
    }
    for param, asked in refusals.items():
        if asked:
            raise InvalidRequestError(
                f"{param}: speaker diarization is not available on this server", param=param
            )
    if request.stream and request.response_format not in ("json", "text"):
        raise InvalidRequestError(
            "stream=true answers with text events; use response_format json or text",
            param="stream",
        )
    if request.include and (request.stream or request.response_format in ("text", "srt", "vtt")):
        raise InvalidRequestError(
            "include[]=logprobs is given with response_format json or verbose_json, unstreamed",
            param="include",
        )
    if "word" in request.timestamp_granularities and request.response_format != "verbose_json":
        raise InvalidRequestError(
            "word timestamps are given with response_format verbose_json",
            param="timestamp_granularities",
        )
    return request.model_copy(
        update={"model": name, "language": _language(request), "languages": []}
    )


def _language(request: TranscriptionRequest) -> str | None:
    """``languages`` of one entry is that language; several cannot be honoured here."""
    if not request.languages:
        return request.language
    if len(request.languages) > 1:
        raise InvalidRequestError(
            "languages: the models here take one language or detect it; send one, or none",
            param="languages",
        )
    (only,) = request.languages
    if request.language is not None and request.language.lower() != only.lower():
        raise InvalidRequestError(
            f"language {request.language!r} and languages {request.languages} disagree",
            param="languages",
        )
    return only


def parse_translation(fields: Fields, config: AppConfig) -> TranscriptionRequest:
    """Validate ``/v1/audio/translations``'s fields; the model is chosen by the caller,
    which knows which models can translate."""
    request = _validate(TranslationRequest, fields)
    _check_prompt(request.prompt, config)
    return TranscriptionRequest(
        model=request.model,
        prompt=request.prompt,
        response_format=request.response_format,
        temperature=request.temperature,
    )


def transcribe_options(
    request: TranscriptionRequest, *, translate: bool = False
) -> TranscribeOptions:
    """Ask the engine only for what the response will show."""
    return TranscribeOptions(
        language=request.language.lower() if request.language else None,
        prompt=request.prompt,
        temperature=request.temperature,
        segment_timestamps=request.response_format in ("verbose_json", "srt", "vtt"),
        word_timestamps="word" in request.timestamp_granularities,
        task="translate" if translate else "transcribe",
        logprobs="logprobs" in request.include,
        keywords=tuple(request.keywords),
    )


def splitting_for(request: TranscriptionRequest, splitting: SplittingConfig) -> SplittingConfig:
    """The server's splitting, with a ``server_vad`` chunking strategy's knobs on top."""
    chunking = request.chunking_strategy
    if not isinstance(chunking, ServerVADChunking):  # None or "auto": the server's own
        return splitting
    knobs = {
        "threshold": chunking.threshold,
        "min_silence_ms": chunking.silence_duration_ms,
        "speech_pad_ms": chunking.prefix_padding_ms,
    }
    changed = {k: v for k, v in knobs.items() if v is not None}
    try:
        return SplittingConfig.model_validate(splitting.model_dump() | changed)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        raise InvalidRequestError(
            f"chunking_strategy does not fit this server: {message}", param="chunking_strategy"
        ) from None
