"""FunASR's runtime protocol messages: the frames we accept, the results we send.

What the connection (:mod:`asr_serve.live.protocols.funasr_runtime`) reads from a client's
text frames and writes back, as pydantic models, with the parsing and rendering that is
only about their shape: hotword lists, word timings as ``timestamp`` and ``stamp_sents``.
"""

from __future__ import annotations

import contextlib
import json
import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from asr_serve.config import SAMPLE_RATE
from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.live.pcm import SampleRate
from asr_serve.live.protocols.connection import ProtocolError, invalid_message, json_shape
from asr_serve.untrusted import check_json_shape

Mode = Literal["2pass", "online", "offline"]
#: Per mode: the ``mode`` of partial (online) messages and of utterance results.
ANSWER_MODES: dict[str, tuple[str, str]] = {
    "2pass": ("2pass-online", "2pass-offline"),
    "online": ("online", "online"),
    "offline": ("offline", "offline"),
}


# Client side --------------------------------------------------------------------------------


class ClientFrame(BaseModel):
    """One configuration frame; a field it lacks (``None``) keeps its current value."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    mode: Mode | None = None
    #: Echoed in every answer: its length is checked against ``live.max_id_chars``.
    wav_name: str | None = None
    wav_format: str | None = Field(None, max_length=32)
    audio_fs: SampleRate | None = None
    #: Their text is checked against ``limits.max_prompt_chars``, as a prompt's.
    hotwords: tuple[str, ...] | None = None
    itn: bool | None = None
    svs_lang: str | None = Field(None, max_length=32)
    is_speaking: bool | None = None
    is_finished: bool | None = None
    is_end: bool | None = None

    @field_validator("hotwords", mode="before")
    @classmethod
    def _hotword_list(cls, value: Any) -> Any:
        return value if value is None else hotword_list(value)

    @field_validator("wav_format")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value and value.lower()

    @property
    def ends_input(self) -> bool:
        return self.is_speaking is False or bool(self.is_finished)


def hotword_list(value: Any) -> tuple[str, ...]:
    """The words of FunASR's ``hotwords``: a JSON object (or its text) of word to weight,
    or a plain string of words separated by commas or, without commas, by whitespace."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # JSONShapeError too: then it is plain words
            check_json_shape(value)
            parsed = json.loads(value)
            value = parsed if isinstance(parsed, dict) else value
    if isinstance(value, dict):
        words = [str(word) for word in value]
    elif isinstance(value, str):
        words = value.split(",") if "," in value else value.split()
    else:
        raise ValueError("hotwords must be a JSON object of word to weight, or a string")
    return tuple(w.strip() for w in words if w.strip())


class InputConfig(BaseModel):
    """What the connection has been told so far: the current input's settings."""

    model_config = ConfigDict(frozen=True)

    mode: Mode = "2pass"
    wav_name: str = "wav-default-id"
    wav_format: str = "pcm"
    audio_fs: SampleRate = SAMPLE_RATE
    hotwords: tuple[str, ...] = ()
    itn: bool = True
    svs_lang: str = "auto"

    def merged(self, frame: ClientFrame) -> InputConfig:
        changes = frame.model_dump(include=set(InputConfig.model_fields), exclude_none=True)
        return self.model_copy(update=changes)

    @property
    def is_file(self) -> bool:
        return self.wav_format != "pcm"

    def options(self) -> TranscribeOptions:
        return TranscribeOptions(
            language=None if self.svs_lang.lower() == "auto" else self.svs_lang.lower(),
            prompt=",".join(self.hotwords) or None,
            itn=self.itn,
            # Timestamps ride on the utterance results, which online mode does not send.
            word_timestamps=self.mode != "online",
        )


def parse_frame(text: str) -> ClientFrame:
    """A text frame as a :class:`ClientFrame`, or :class:`ProtocolError` saying what is wrong
    (its nesting checked before it is parsed)."""
    json_shape(text)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(
            "invalid_json", f"A text frame must be a JSON object of settings: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_json", "A text frame must be a JSON object of settings")
    try:
        return ClientFrame.model_validate(data)
    except ValidationError as exc:
        raise invalid_message(exc) from None


# Server side --------------------------------------------------------------------------------


class StampSentence(BaseModel):
    """One sentence's timing, as the C++ runtime's ``stamp_sents`` entries."""

    text_seg: str  # its words, space-separated, without punctuation
    punc: str  # the punctuation that ends it, "" if none
    start: int
    end: int
    ts_list: list[list[int]]


class Result(BaseModel):
    mode: str
    wav_name: str
    text: str
    is_final: bool
    timestamp: str | None = None  # JSON text: [[start_ms, end_ms], ...]
    stamp_sents: list[StampSentence] | None = None
    is_end: Literal[True] | None = None


class ErrorMessage(BaseModel):
    wav_name: str
    text: str = ""
    is_final: bool = False
    error: str
    code: str


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")  # any script's, CJK marks too


def _without_punctuation(word: str) -> str:
    start, end = 0, len(word)
    while start < end and _is_punctuation(word[start]):
        start += 1
    while end > start and _is_punctuation(word[end - 1]):
        end -= 1
    return word[start:end].strip()


def stamps(result: EngineResult, offset_ms: int) -> tuple[str, list[StampSentence]] | None:
    """``timestamp`` and ``stamp_sents`` for a result whose segments carry word timings."""
    sentences, pairs = [], []
    for segment in result.segments:
        if not segment.words:
            continue
        ts_list = [
            [offset_ms + round(w.start * 1000), offset_ms + round(w.end * 1000)]
            for w in segment.words
        ]
        words = [_without_punctuation(w.word) for w in segment.words]
        text = segment.text.strip()
        sentences.append(
            StampSentence(
                text_seg=" ".join(w for w in words if w),
                punc=text[-1] if text and _is_punctuation(text[-1]) else "",
                start=ts_list[0][0],
                end=ts_list[-1][1],
                ts_list=ts_list,
            )
        )
        pairs += ts_list
    if not pairs:
        return None
    return json.dumps(pairs, separators=(",", ":")), sentences
