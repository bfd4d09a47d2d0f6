"""From form fields to a validated request and the engine's options: the API's contract.

Every field OpenAI's ``audio.transcriptions.create`` accepts is honoured or refused with a
400 that names it, never silently ignored, and so is any field it does not accept. What
depends on the model (a language, ``include[]=logprobs``, ``keywords``, translation) is
refused by the model's engine (:meth:`asr_serve.engines.base.Engine.check_options`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from asr_serve.api.protocol import ServerVADChunking, TranscriptionRequest, TranslationRequest
from asr_serve.config import AppConfig, SplittingConfig
from asr_serve.engines.base import TranscribeOptions
from asr_serve.errors import InvalidParameterError, InvalidRequestError, ModelNotFoundError
from asr_serve.serving.diarization import check_known_speakers
from asr_serve.speakers.models import resolve

Fields = Mapping[str, object]
M = TypeVar("M", bound=BaseModel)


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


def _check_prompt(prompt: str | None, config: AppConfig) -> None:
    if prompt is not None and len(prompt) > config.limits.max_prompt_chars:
        raise InvalidParameterError(
            f"prompt is longer than {config.limits.max_prompt_chars} characters", param="prompt"
        )


def model_name(requested: str | None, config: AppConfig) -> str:
    """The configured model a request names (the default when it names none), or a 404.

    OpenAI selects diarization by model name: ``gpt-4o-transcribe-diarize`` is the default
    model here and ``<model>-diarize`` that model (:mod:`asr_serve.speakers.models`); with
    files, ``response_format=diarized_json`` is what asks for speakers."""
    configured = {m.name for m in config.models}
    assert config.default_model is not None
    name, _ = resolve(requested or config.default_model, configured, config.default_model)
    if name not in configured:
        raise ModelNotFoundError(
            f"model {name!r} does not exist; available: {', '.join(m.name for m in config.models)}",
            param="model",
        )
    return name


def parse_request(fields: Fields, config: AppConfig) -> TranscriptionRequest:
    """Validate ``/v1/audio/transcriptions``'s fields; refuse what cannot be honoured."""
    request = _validate(TranscriptionRequest, fields)
    _check_prompt(request.prompt, config)
    name = model_name(request.model, config)
    _check_diarization(request, config)
    if request.stream and request.response_format not in ("json", "text", "diarized_json"):
        raise InvalidRequestError(
            "stream=true answers with text events; use response_format json, text or diarized_json",
            param="stream",
        )
    if request.include and (
        request.stream or request.response_format in ("text", "srt", "vtt", "diarized_json")
    ):
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


def _check_diarization(request: TranscriptionRequest, config: AppConfig) -> None:
    """``diarized_json`` and known speakers: on a server with speakers, together, and
    without what OpenAI's diarizing model refuses (word or segment timestamp granularities;
    ``include[]``, refused with the other formats it does not fit)."""
    diarized = request.response_format == "diarized_json"
    if diarized and not config.speakers.enabled:
        raise InvalidRequestError(
            "diarized_json: speaker diarization is off on this server (speakers.enabled)",
            param="response_format",
        )
    if not diarized:
        for param in ("known_speaker_names", "known_speaker_references"):
            if getattr(request, param):
                raise InvalidRequestError(
                    f"{param} names the speakers of response_format=diarized_json; ask for it",
                    param=param,
                )
        return
    check_known_speakers(request)
    if request.timestamp_granularities:
        raise InvalidRequestError(
            "timestamp_granularities is not available with diarized_json: its segments carry "
            "their times",
            param="timestamp_granularities",
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
        segment_timestamps=request.response_format
        in ("verbose_json", "srt", "vtt", "diarized_json"),
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
