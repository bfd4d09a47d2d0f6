"""``stream=true`` without Ray: the pipeline's pieces as SSE, read by the ``openai`` client."""

from __future__ import annotations

import asyncio

import numpy as np
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from asr_serve.api.streaming import stream_transcription
from asr_serve.api.upload import UploadBudget, read_upload
from asr_serve.audio.decode import DecodedAudio
from asr_serve.config import AppConfig, SplittingConfig
from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.errors import ASRServeError, InvalidRequestError
from asr_serve.serving.pipeline import TranscriptionPipeline
from asr_serve.serving.requests import Upload, parse_request

SR = 16_000
CONFIG = AppConfig.model_validate({"models": [{"name": "m", "engine": "funasr", "model": "x"}]})
#: Four pieces of one second; the third has no speech.
PIECES = ((0, SR), (2 * SR, 3 * SR), (4 * SR, 5 * SR), (6 * SR, 7 * SR))
TEXTS = {0: "one", 2 * SR: "two", 4 * SR: "", 6 * SR: "three"}


async def _decode(data: bytes, splitting: SplittingConfig) -> DecodedAudio:
    # The piece's start sample is encoded in its first sample, so the fake model can tell.
    samples = np.zeros(8 * SR, np.float32)
    for start, _ in PIECES:
        samples[start] = start
    return DecodedAudio(samples, 8.0, SR, 1, "pcm_s16le", "wav", pieces=PIECES)


def _app(transcribe) -> TestClient:
    pipeline = TranscriptionPipeline(CONFIG, decode=_decode, transcribe=transcribe)

    async def transcriptions(request: Request) -> Response:
        upload = await read_upload(request, limits=CONFIG.limits, budget=UploadBudget(1 << 30, 10))
        job = await pipeline.start(upload)
        return await stream_transcription(pipeline.results(job), job.request, request)

    async def on_error(_: Request, exc: ASRServeError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status_code)

    app = Starlette(
        routes=[Route("/v1/audio/transcriptions", transcriptions, methods=["POST"])],
        exception_handlers={ASRServeError: on_error},
    )
    return TestClient(app)


def _client(transcribe) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key="unused", http_client=_app(transcribe)
    )


async def _by_offset(
    model: str, audio: np.ndarray, options: TranscribeOptions, _: bool
) -> EngineResult:
    text = TEXTS[int(audio[0])]
    # Each piece says which language it heard, as a detecting model does.
    language = options.language or ("fr" if text == "two" else "en")
    return EngineResult(text=text, language=language, duration=len(audio) / SR)


def test_openai_client_reads_deltas_in_order_then_done() -> None:
    stream = _client(_by_offset).audio.transcriptions.create(
        model="m", file=("a.wav", b"RIFF"), stream=True
    )
    events = [(e.type, getattr(e, "delta", None) or getattr(e, "text", None)) for e in stream]
    assert events == [
        ("transcript.text.delta", "one"),
        ("transcript.text.delta", " two"),
        ("transcript.text.delta", " three"),
        ("transcript.text.done", "one two three"),
    ]


def test_done_event_names_the_detected_languages_in_order_and_none_when_asked() -> None:
    client = _client(_by_offset)
    detected = list(
        client.audio.transcriptions.create(model="m", file=("a.wav", b"RIFF"), stream=True)
    )[-1]
    assert [lang.code for lang in detected.languages] == ["en", "fr"]
    named = _app(_by_offset).post(
        "/v1/audio/transcriptions",
        files={"file": ("a.wav", b"RIFF")},
        data={"stream": "true", "language": "de"},
    )
    assert named.text.split("\n\n")[-2] == (
        'data: {"type":"transcript.text.done","text":"one two three"}'
    )


def test_error_before_the_first_event_is_an_http_error() -> None:
    async def unsupported(model: str, audio: np.ndarray, options: TranscribeOptions, _: bool):
        raise InvalidRequestError("language 'xx' is not supported", param="language")

    with pytest.raises(openai.BadRequestError) as err:
        _client(unsupported).audio.transcriptions.create(
            model="m", file=("a.wav", b"RIFF"), stream=True
        )
    assert err.value.status_code == 400 and err.value.body["param"] == "language"


def test_error_after_the_first_event_is_an_error_event_that_ends_the_stream() -> None:
    async def fails_later(model: str, audio: np.ndarray, options: TranscribeOptions, _: bool):
        if audio[0] == 4 * SR:
            raise InvalidRequestError("piece failed")
        return await _by_offset(model, audio, options, False)

    raw = _app(fails_later).post(
        "/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")}, data={"stream": "true"}
    )
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.split("\n\n")[:3] == [
        'data: {"type":"transcript.text.delta","delta":"one"}',
        'data: {"type":"transcript.text.delta","delta":" two"}',
        'data: {"type":"error","error":{"message":"piece failed","type":"invalid_request_error",'
        '"param":null,"code":"invalid_request"}}',
    ]
    stream = _client(fails_later).audio.transcriptions.create(
        model="m", file=("a.wav", b"RIFF"), stream=True
    )
    with pytest.raises(openai.APIError, match="piece failed"):
        list(stream)


def test_closing_the_stream_cancels_pieces_in_flight() -> None:
    cancelled: list[int] = []

    async def slow_after_first(model: str, audio: np.ndarray, options: TranscribeOptions, _: bool):
        if audio[0] != 0:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(int(audio[0]))
                raise
        return await _by_offset(model, audio, options, False)

    async def main() -> None:
        pipeline = TranscriptionPipeline(CONFIG, decode=_decode, transcribe=slow_after_first)
        upload = Upload(data=b"x", fields={"stream": "true"})
        request = Request({"type": "http", "headers": []})
        job = await pipeline.start(upload)
        response = await stream_transcription(pipeline.results(job), job.request, request)
        events = response.body_iterator
        assert "one" in await anext(events)
        await events.aclose()  # what Starlette does when the client goes away

    asyncio.run(main())
    assert sorted(cancelled) == [2 * SR, 4 * SR, 6 * SR]


@pytest.mark.parametrize("fmt", ["verbose_json", "srt", "vtt"])
def test_stream_only_with_text_formats(fmt: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        parse_request({"stream": "true", "response_format": fmt}, CONFIG)
    assert err.value.param == "stream"
    assert parse_request({"stream": "true", "response_format": "text"}, CONFIG).stream
