"""Response models of the OpenAI-compatible audio API.

Kept apart from serving logic (as vLLM's ``entrypoints/openai/protocol.py`` does) so the
shapes can be read, tested and documented on their own. The request models are the request
flow's (:mod:`asr_serve.serving.requests`), which validates them below the HTTP layer.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

from asr_serve.config import ModelConfig


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


class TranscriptionLanguage(BaseModel):
    """A language the model found in the audio (OpenAI's ``languages`` entries)."""

    code: str


#: OpenAI's ``languages``: given when the model detected the language (the request named
#: none), in the order the file's pieces first spoke each; absent when the request named it.
Languages = list[TranscriptionLanguage] | None


class TranscriptionResponse(BaseModel):
    """``response_format=json``."""

    text: str
    languages: Languages = None
    logprobs: list[Logprob] | None = None
    usage: Usage | None = None


class VerboseTranscriptionResponse(BaseModel):
    """``response_format=verbose_json``."""

    task: Literal["transcribe", "translate"] = "transcribe"
    #: The transcript's language; a translation's is its output's, ``en`` (as OpenAI's).
    language: str | None
    duration: float
    text: str
    #: As ``json``'s: with a translation, the language it was translated from.
    languages: Languages = None
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None
    logprobs: list[Logprob] | None = None
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
    languages: Languages = None


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
