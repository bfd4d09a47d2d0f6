"""Render an engine result in the ``response_format`` the client asked for."""

from __future__ import annotations

from starlette.responses import JSONResponse, PlainTextResponse, Response

from asr_serve.api.protocol import (
    ResponseFormat,
    TranscriptionResponse,
    TranscriptionSegment,
    TranscriptionWord,
    Usage,
    VerboseTranscriptionResponse,
)
from asr_serve.api.subtitles import to_srt, to_vtt
from asr_serve.engines.base import EngineResult


def to_verbose(result: EngineResult, *, model: str, words: bool) -> VerboseTranscriptionResponse:
    """The full result; segments always, words only when asked for and available."""
    segments = [
        TranscriptionSegment(id=s.id, start=s.start, end=s.end, text=s.text)
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
        language=result.language,
        duration=round(result.duration, 3),
        text=result.text,
        segments=segments,
        words=word_list,
        model=model,
    )


def cache_headers(hit: bool | None) -> dict[str, str] | None:
    """``X-Cache: hit|miss`` while the cache is on (hit: every piece was cached); else none."""
    return None if hit is None else {"X-Cache": "hit" if hit else "miss"}


def render(
    result: EngineResult,
    response_format: ResponseFormat,
    *,
    model: str,
    words: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    if response_format == "text":
        return PlainTextResponse(result.text, headers=headers)
    if response_format == "srt":
        return PlainTextResponse(to_srt(result.segments), headers=headers)
    if response_format == "vtt":
        return PlainTextResponse(to_vtt(result.segments), headers=headers, media_type="text/vtt")
    if response_format == "verbose_json":
        body = to_verbose(result, model=model, words=words)
    else:
        body = TranscriptionResponse(
            text=result.text, usage=Usage(seconds=round(result.duration, 3))
        )
    return JSONResponse(body.model_dump(exclude_none=True), headers=headers)
