"""``/v1/audio/transcriptions`` and ``/v1/audio/translations``: a file in, its text out.

Each route reads the upload within its bounds (:mod:`asr_serve.api.upload`), hands it to the
request flow (:class:`~asr_serve.serving.pipeline.TranscriptionPipeline`) and renders what
comes back (:mod:`asr_serve.api.formats`, :mod:`asr_serve.api.streaming`).
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from asr_serve.api.auth import authenticated
from asr_serve.api.formats import cache_headers, render
from asr_serve.api.request_log import note_request
from asr_serve.api.state import State
from asr_serve.api.streaming import stream_transcription
from asr_serve.api.upload import read_upload
from asr_serve.serving.pipeline import Transcription

#: Behind the API key (when keys are configured).
router = APIRouter(dependencies=[Depends(authenticated)])


@router.post("/v1/audio/transcriptions")
async def transcriptions(request: Request, ingress: State) -> Response:
    """OpenAI's ``audio.transcriptions.create``: multipart ``file`` plus form fields."""
    upload = await read_upload(request, limits=ingress.config.limits, budget=ingress.uploads)
    job = await ingress.pipeline.start(upload)
    note_request(request, **job.log_fields())
    if job.request.stream:
        return await stream_transcription(ingress.pipeline.results(job), request)
    return _rendered(request, await ingress.pipeline.finish(job))


@router.post("/v1/audio/translations")
async def translations(request: Request, ingress: State) -> Response:
    """OpenAI's ``audio.translations.create``: English text, by a model that can translate."""
    upload = await read_upload(request, limits=ingress.config.limits, budget=ingress.uploads)
    job = await ingress.pipeline.start(upload, translate=True)
    note_request(request, **job.log_fields())
    return _rendered(request, await ingress.pipeline.finish(job))


def _rendered(request: Request, done: Transcription) -> Response:
    assert done.request.response_format != "diarized_json"  # refused by parse_request
    note_request(request, asr_ms=done.asr_ms)
    return render(
        done.result,
        done.request.response_format,
        model=done.model,
        words="word" in done.request.timestamp_granularities,
        logprobs="logprobs" in done.request.include,
        task="translate" if done.translate else "transcribe",
        headers=cache_headers(done.cache_hit),
    )
