"""``/v1/audio/transcriptions`` and ``/v1/audio/translations``: a file in, its text out.

Each route reads the upload within its bounds (:mod:`asr_serve.api.upload`), hands it to the
request flow (:class:`~asr_serve.serving.pipeline.TranscriptionPipeline`) and renders what
comes back (:mod:`asr_serve.api.formats`, :mod:`asr_serve.api.streaming`).

The routes take the bare request and parse the multipart body themselves, as it streams in,
so FastAPI sees no form parameters; their OpenAPI entry declares the form instead, from the
request models the request flow validates (:func:`multipart_form`), so ``/docs`` shows every
field a client may send.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import contextlib
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from asr_serve.api.auth import authenticated
from asr_serve.api.clients import client_of
from asr_serve.api.formats import cache_headers, render
from asr_serve.api.request_log import note_request
from asr_serve.api.state import IngressState, State
from asr_serve.api.streaming import stream_transcription
from asr_serve.api.upload import read_upload
from asr_serve.serving.clients import Slot
from asr_serve.serving.pipeline import Transcription
from asr_serve.serving.requests import TranscriptionRequest, TranslationRequest
from asr_serve.timing import RENDER, UPLOAD, timed

#: Behind the API key (when keys are configured).
router = APIRouter(dependencies=[Depends(authenticated)])

T = TypeVar("T")


def multipart_form(fields: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``multipart/form-data`` itself: a required
    ``file`` and the fields of ``fields``, a list field under the ``name[]`` the ``openai``
    client sends it as (each item a part of its own). Nested models are written in place,
    so the entry needs no components of its own."""
    schema = fields.model_json_schema()
    defs = schema.get("$defs", {})
    properties: dict[str, Any] = {
        "file": {"type": "string", "format": "binary", "description": "The audio file."}
    }
    for name, field in schema["properties"].items():
        properties[f"{name}[]" if field.get("type") == "array" else name] = _inlined(field, defs)
    form = {"type": "object", "required": ["file"], "properties": properties}
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": form}},
        }
    }


def _inlined(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with each ``{"$ref": "#/$defs/<name>"}`` replaced by that definition."""
    if isinstance(schema, list):
        return [_inlined(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _inlined(defs[schema["$ref"].removeprefix("#/$defs/")], defs)
    return {key: _inlined(value, defs) for key, value in schema.items()}


@router.post("/v1/audio/transcriptions", openapi_extra=multipart_form(TranscriptionRequest))
async def transcriptions(request: Request, ingress: State) -> Response:
    """OpenAI's ``audio.transcriptions.create``: multipart ``file`` plus form fields."""
    return await _file_request(request, ingress, translate=False)


@router.post("/v1/audio/translations", openapi_extra=multipart_form(TranslationRequest))
async def translations(request: Request, ingress: State) -> Response:
    """OpenAI's ``audio.translations.create``: English text, by a model that can translate."""
    return await _file_request(request, ingress, translate=True)


async def _file_request(request: Request, ingress: IngressState, *, translate: bool) -> Response:
    """One file through the request flow, as its client's (:mod:`asr_serve.api.clients`),
    holding one of the client's requests in progress until its response has ended."""
    client = client_of(request, ingress.api_keys, ingress.config.clients)
    note_request(request, client=client.id)
    slot = ingress.pipeline.limits.request(client.id)
    streamed: Response | None = None
    try:
        with timed(UPLOAD):
            upload = await read_upload(
                request, limits=ingress.config.limits, budget=ingress.uploads
            )
        job = await ingress.pipeline.start(upload, translate=translate, client=client)
        note_request(request, **job.log_fields())
        if job.request.stream:
            results = _holding(ingress.pipeline.results(job), slot)
            streamed = await stream_transcription(results, job.request, request)
            return streamed
        return _rendered(request, await ingress.pipeline.finish(job))
    finally:
        if streamed is None:
            slot.release()


async def _holding(results: AsyncGenerator[T, None], slot: Slot) -> AsyncGenerator[T, None]:
    """``results``, with ``slot`` given back once they end or are closed."""
    try:
        async with contextlib.aclosing(results):
            async for result in results:
                yield result
    finally:
        slot.release()


def _rendered(request: Request, done: Transcription) -> Response:
    with timed(RENDER):
        return render(
            done.result,
            done.request.response_format,
            model=done.model,
            words="word" in done.request.timestamp_granularities,
            logprobs="logprobs" in done.request.include,
            task="translate" if done.translate else "transcribe",
            languages=done.languages,
            headers=cache_headers(done.cache_hit),
            speakers=done.speakers or (),
        )
