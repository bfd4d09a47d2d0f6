"""Render an engine result in the ``response_format`` the client asked for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from starlette.responses import JSONResponse, PlainTextResponse, Response

from asr_serve.api.protocol import (
    Logprob,
    TranscriptionLanguage,
    TranscriptionResponse,
    TranscriptionSegment,
    TranscriptionWord,
    Usage,
    VerboseTranscriptionResponse,
)
from asr_serve.api.subtitles import to_srt, to_vtt
from asr_serve.engines.base import EngineResult
from asr_serve.serving.requests import ResponseFormat


def to_verbose(
    result: EngineResult,
    *,
    model: str,
    words: bool,
    logprobs: bool = False,
    task: Literal["transcribe", "translate"] = "transcribe",
    languages: Sequence[str] = (),
) -> VerboseTranscriptionResponse:
    """The full result; segments always, words and log-probabilities only when asked for."""
    segments = [
        TranscriptionSegment(
            id=s.id,
            start=s.start,
            end=s.end,
            text=s.text,
            avg_logprob=None if s.avg_logprob is None else round(s.avg_logprob, 6),
        )
        for s in result.segments
    ]
    word_list = None
    if words:
        word_list = [
            TranscriptionWord(word=w.word, start=w.start, end=w.end)
            for s in result.segments
            for w in s.words or []
        ]
    return VerboseTranscriptionResponse(
        task=task,
        language="en" if task == "translate" else result.language,
        duration=round(result.duration, 3),
        text=result.text,
        languages=to_languages(languages),
        segments=segments,
        words=word_list,
        logprobs=to_logprobs(result) if logprobs else None,
        model=model,
    )


def to_languages(codes: Sequence[str]) -> list[TranscriptionLanguage] | None:
    """OpenAI's ``languages``; absent (not empty) when nothing was detected."""
    return [TranscriptionLanguage(code=c) for c in codes] or None


def to_logprobs(result: EngineResult) -> list[Logprob]:
    """``include[]=logprobs``: one entry per word the engine scored, in order."""
    return [
        Logprob(token=w.word, logprob=round(w.logprob, 6), bytes=list(w.word.encode()))
        for s in result.segments
        for w in s.words or []
        if w.logprob is not None
    ]


def cache_headers(hit: bool | None) -> dict[str, str] | None:
    """``X-Cache: hit|miss`` while the cache is on (hit: every piece was cached); else none."""
    return None if hit is None else {"X-Cache": "hit" if hit else "miss"}


def render(
    result: EngineResult,
    response_format: ResponseFormat,
    *,
    model: str,
    words: bool = False,
    logprobs: bool = False,
    task: Literal["transcribe", "translate"] = "transcribe",
    languages: Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    """``languages``: those the model detected (none when the request named its language)."""
    if response_format == "text":
        return PlainTextResponse(result.text, headers=headers)
    if response_format == "srt":
        return PlainTextResponse(to_srt(result.segments), headers=headers)
    if response_format == "vtt":
        return PlainTextResponse(to_vtt(result.segments), headers=headers, media_type="text/vtt")
    if response_format == "verbose_json":
        body = to_verbose(
            result, model=model, words=words, logprobs=logprobs, task=task, languages=languages
        )
    else:
        body = TranscriptionResponse(
            text=result.text,
            languages=to_languages(languages),
            logprobs=to_logprobs(result) if logprobs else None,
            usage=Usage(seconds=round(result.duration, 3)),
        )
    return JSONResponse(body.model_dump(exclude_none=True), headers=headers)
