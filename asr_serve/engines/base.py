"""The engine protocol: the only thing the ASR deployment knows about a model.

An engine turns a batch of 16 kHz mono float32 arrays into one result per array. The
deployment owns batching, metrics and Ray concerns; the engine owns the model.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from asr_serve.config import SAMPLE_RATE


class TranscribeOptions(BaseModel):
    """Per-item options. Items of one batch may carry different options."""

    model_config = ConfigDict(frozen=True)

    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False
    segment_timestamps: bool = False
    #: Inverse text normalisation for this item; ``None``: the model's ``itn`` setting.
    #: Engines without such a switch (Whisper writes normalised text) ignore it.
    itn: bool | None = None
    #: ``translate``: English text from speech in any language (engines that can).
    task: Literal["transcribe", "translate"] = "transcribe"
    #: Per-word log-probabilities in the result's words (engines that give them).
    logprobs: bool = False
    #: Words or phrases to recognise (engines that take a list, e.g. Fun-ASR's hotwords).
    keywords: tuple[str, ...] = ()


class EngineCapabilities(BaseModel):
    """What an engine can do beyond transcribing; the ingress asks a replica for it."""

    model_config = ConfigDict(frozen=True)

    translate: bool = False
    logprobs: bool = False
    keywords: bool = False


class Word(BaseModel):
    start: float
    end: float
    word: str
    #: Natural log of the model's probability for the word, when asked for and given.
    logprob: float | None = None


class Segment(BaseModel):
    id: int
    start: float
    end: float
    text: str
    words: list[Word] | None = None
    #: Mean log-probability of the segment's tokens, where the engine gives it.
    avg_logprob: float | None = None


class EngineResult(BaseModel):
    """One item's transcript. ``duration`` is the input's length in seconds."""

    text: str
    language: str | None = None
    duration: float
    segments: list[Segment] = Field(default_factory=list)


class Engine(abc.ABC):
    """Base class of every engine; subclasses implement ``load`` and ``transcribe``."""

    #: Languages the model accepts (lower-case codes); ``None`` means it does not say.
    languages: frozenset[str] | None = None
    #: What it can do beyond transcribing; set in ``load`` where it depends on the weights.
    capabilities: EngineCapabilities = EngineCapabilities()
    #: The least an item costs the engine, in seconds of audio: a short clip still takes a
    #: batch slot and its fixed costs. A replica's fair queue and admission count an item's
    #: work as its audio, or this if more (:mod:`asr_serve.engines.fair`).
    min_item_s: float = 1.0

    @abc.abstractmethod
    def load(self) -> None:
        """Load weights; raise :class:`asr_serve.errors.ModelLoadError` with a fix-it message."""

    @abc.abstractmethod
    def transcribe(
        self, audios: Sequence[np.ndarray], options: Sequence[TranscribeOptions]
    ) -> list[EngineResult]:
        """Transcribe a batch in one call where the model allows it; one result per input."""

    def check_options(self, options: TranscribeOptions) -> None:
        """Reject options the model cannot honour (raise ``InvalidRequestError`` naming the
        request's field): never silently ignore one."""
        from asr_serve.errors import InvalidRequestError

        if (
            options.language is not None
            and self.languages is not None
            and options.language.lower() not in self.languages
        ):
            raise InvalidRequestError(
                f"language {options.language!r} is not supported by this model; "
                f"supported: {', '.join(sorted(self.languages))}",
                param="language",
            )
        unsupported = [
            (options.task == "translate" and not self.capabilities.translate, "model", "translate"),
            (
                options.logprobs and not self.capabilities.logprobs,
                "include",
                "give log-probabilities",
            ),
            (options.keywords and not self.capabilities.keywords, "keywords", "take keywords"),
        ]
        for asked, param, what in unsupported:
            if asked:
                raise InvalidRequestError(f"this model cannot {what}", param=param)

    def warmup(self, batch_size: int = 2, seconds: float = 1.0) -> float:
        """Run real inference once so the first request pays for no lazy initialisation.

        Returns the work it did, each item's audio or ``min_item_s`` if more (the replica
        times it: a first guess of the engine's speed).
        """
        rng = np.random.default_rng(0)
        audio = (0.05 * rng.standard_normal(int(SAMPLE_RATE * seconds))).astype(np.float32)
        self.transcribe([audio] * batch_size, [TranscribeOptions()] * batch_size)
        return batch_size * max(seconds, self.min_item_s)
