"""``stream=true``: server-sent events as a file's pieces finish, in OpenAI's event shape.

Events are ``data: <json>`` lines: one ``transcript.text.delta`` per piece with text, in
time order, then one ``transcript.text.done`` with the whole text and, when the model
detected it, ``languages`` (the ``openai`` client's
``audio.transcriptions.create(..., stream=True)`` parses both). The first piece is awaited
before the response starts, so anything that fails before the first event (a bad language,
an overloaded model) is an ordinary HTTP error. A failure after that is one ``error`` event
with the usual error body, and the stream ends; the ``openai`` client raises it as an
``APIError``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from pydantic import BaseModel
from starlette.requests import HTTPConnection
from starlette.responses import StreamingResponse

from asr_serve.api.error_handlers import request_id_of
from asr_serve.api.formats import to_languages
from asr_serve.api.protocol import (
    ErrorDetail,
    TranscriptError,
    TranscriptTextDelta,
    TranscriptTextDone,
)
from asr_serve.api.request_log import note_refusal
from asr_serve.engines.base import EngineResult
from asr_serve.errors import ASRServeError
from asr_serve.serving.pipeline import PieceResult, detected_languages
from asr_serve.serving.requests import TranscriptionRequest
from asr_serve.serving.stitching import join_texts

logger = logging.getLogger("ray.serve")

#: Proxies must pass events on as they come, not buffer them.
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def stream_transcription(
    results: AsyncGenerator[PieceResult, None],
    asked: TranscriptionRequest,
    request: HTTPConnection,
) -> StreamingResponse:
    """The SSE response for a file's pieces, whose results ``results`` yields in time order;
    ``asked`` is the validated request (the done event's ``languages`` depend on it)."""
    first = await anext(results, None)
    return StreamingResponse(
        _events(first, results, asked, request),
        media_type="text/event-stream",
        headers=_HEADERS,
    )


async def _events(
    first: PieceResult | None,
    rest: AsyncGenerator[PieceResult, None],
    asked: TranscriptionRequest,
    request: HTTPConnection,
) -> AsyncIterator[str]:
    text = ""
    results: list[EngineResult] = []
    # Closing ``rest`` cancels the pieces still in flight (client gone, or an error).
    async with contextlib.aclosing(rest):
        try:
            piece = first
            while piece is not None:
                results.append(piece.result)
                joined = join_texts([text, piece.result.text])
                if joined != text:
                    yield _sse(TranscriptTextDelta(delta=joined[len(text) :]))
                    text = joined
                piece = await anext(rest, None)
        except ASRServeError as exc:
            note_refusal(request, exc)
            yield _sse(_error_event(exc))
            return
        except Exception:
            logger.exception("request %s: transcription stream failed", request_id_of(request))
            yield _sse(_error_event(ASRServeError("transcription failed; retry later")))
            return
    languages = to_languages(detected_languages(asked, results))
    yield _sse(TranscriptTextDone(text=text, languages=languages), exclude_none=True)


def _error_event(exc: ASRServeError) -> TranscriptError:
    return TranscriptError(error=ErrorDetail.model_validate(exc.to_dict()["error"]))


def _sse(event: BaseModel, *, exclude_none: bool = False) -> str:
    return f"data: {event.model_dump_json(exclude_none=exclude_none)}\n\n"
