"""Request validation, model routing, options and the deadline, without Ray."""

from __future__ import annotations

import asyncio
import gc
import json
import logging

import numpy as np
import pytest

from asr_serve.api.formats import render
from asr_serve.audio.decode import DecodedAudio
from asr_serve.config import AppConfig, SplittingConfig
from asr_serve.engines.base import EngineResult, Segment, TranscribeOptions, Word
from asr_serve.errors import DeadlineExceededError, InvalidParameterError, ModelNotFoundError
from asr_serve.serving.pipeline import Transcription, TranscriptionPipeline, detected_languages
from asr_serve.serving.requests import (
    TranscriptionRequest,
    Upload,
    parse_request,
    transcribe_options,
)

CONFIG = AppConfig.model_validate(
    {
        "models": [
            {"name": "a", "engine": "funasr", "model": "x"},
            {"name": "b", "engine": "faster-whisper", "model": "embedded"},
        ],
        "limits": {"request_timeout_s": 0.2, "max_prompt_chars": 10},
    }
)


def _upload(**fields) -> Upload:
    return Upload(data=b"audio", fields=fields)


async def _run(pipeline: TranscriptionPipeline, upload: Upload) -> Transcription:
    """What the ingress does for a non-streaming request."""
    return await pipeline.finish(await pipeline.start(upload))


async def _decode(data: bytes, splitting: SplittingConfig) -> DecodedAudio:
    samples = np.zeros(16000, np.float32)
    return DecodedAudio(samples, 1.0, 16000, 1, "pcm_s16le", "wav")


def test_default_and_named_models() -> None:
    assert parse_request({}, CONFIG).model == "a"
    assert parse_request({"model": "b"}, CONFIG).model == "b"
    assert parse_request({"model": ""}, CONFIG).model == "a"
    with pytest.raises(ModelNotFoundError) as err:
        parse_request({"model": "nope"}, CONFIG)
    assert err.value.status_code == 404 and err.value.param == "model"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": "xml"}, "response_format"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": "3"}, "temperature"),
        ({"language": "english!"}, "language"),
        ({"timestamp_granularities": ["char"]}, "timestamp_granularities.0"),
        ({"prompt": "x" * 11}, "prompt"),
    ],
)
def test_invalid_parameters_are_422_naming_the_field(fields: dict, param: str) -> None:
    with pytest.raises(InvalidParameterError) as err:
        parse_request(fields, CONFIG)
    assert err.value.status_code == 422 and err.value.param == param


def test_options_ask_only_for_the_timestamps_shown() -> None:
    plain = transcribe_options(parse_request({"language": "EN", "prompt": "hi"}, CONFIG))
    assert plain == TranscribeOptions(language="en", prompt="hi")
    verbose = transcribe_options(
        parse_request(
            {"response_format": "verbose_json", "timestamp_granularities": ["word"]}, CONFIG
        )
    )
    assert verbose.segment_timestamps and verbose.word_timestamps


def test_pipeline_routes_to_the_named_model() -> None:
    calls: list[tuple[str, int, TranscribeOptions]] = []

    async def transcribe(model: str, audio: np.ndarray, options: TranscribeOptions, _: bool):
        calls.append((model, len(audio), options))
        return EngineResult(text="hi", duration=1.0)

    pipeline = TranscriptionPipeline(CONFIG, decode=_decode, transcribe=transcribe)
    done = asyncio.run(_run(pipeline, _upload(model="b", language="en")))
    assert done.model == "b" and done.result.text == "hi"
    assert calls == [("b", 16000, TranscribeOptions(language="en"))]


def test_only_the_first_piece_of_a_file_is_subject_to_admission() -> None:
    """The model's queue admits a request on its first piece; the others must not be refused
    halfway through a file that was admitted."""
    pieces = tuple((i * 16000, (i + 1) * 16000) for i in range(4))
    admitted: dict[int, bool] = {}

    async def decode(data: bytes, splitting: SplittingConfig) -> DecodedAudio:
        samples = np.repeat(np.arange(4, dtype=np.float32), 16000)
        return DecodedAudio(samples, 4.0, 16000, 1, "pcm", "wav", pieces)

    async def transcribe(model: str, audio: np.ndarray, options: TranscribeOptions, ok: bool):
        admitted[int(audio[0])] = ok
        return EngineResult(text="x", duration=1.0)

    pipeline = TranscriptionPipeline(CONFIG, decode=decode, transcribe=transcribe)
    asyncio.run(_run(pipeline, _upload()))
    assert admitted == {0: False, 1: True, 2: True, 3: True}


def test_pipeline_deadline_is_504_and_cancels_the_call() -> None:
    cancelled = asyncio.Event()

    async def slow(model: str, audio: np.ndarray, options: TranscribeOptions, _: bool):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        pipeline = TranscriptionPipeline(CONFIG, decode=_decode, transcribe=slow)
        with pytest.raises(DeadlineExceededError) as err:
            await _run(pipeline, _upload())
        assert err.value.status_code == 504
        assert cancelled.is_set()

    asyncio.run(main())


def test_render_formats() -> None:
    result = EngineResult(
        text="hello world",
        language="en",
        duration=1.5,
        segments=[
            Segment(
                id=0,
                start=0.0,
                end=1.5,
                text="hello world",
                words=[
                    Word(start=0, end=0.5, word="hello"),
                    Word(start=0.6, end=1.5, word="world"),
                ],
            )
        ],
    )
    assert render(result, "text", model="a").body == b"hello world"
    plain = json.loads(render(result, "json", model="a").body)
    assert plain == {"text": "hello world", "usage": {"type": "duration", "seconds": 1.5}}
    verbose = json.loads(render(result, "verbose_json", model="a", words=True).body)
    assert verbose["segments"] == [{"id": 0, "start": 0.0, "end": 1.5, "text": "hello world"}]
    assert [w["word"] for w in verbose["words"]] == ["hello", "world"]
    assert verbose["language"] == "en" and verbose["duration"] == 1.5
    assert "words" not in json.loads(render(result, "verbose_json", model="a").body)
    assert "languages" not in verbose  # the request named its language: nothing detected


def test_render_reports_detected_languages_and_a_translation_as_english() -> None:
    result = EngineResult(text="good morning", language="fr", duration=1.0)
    plain = json.loads(render(result, "json", model="a", languages=["fr", "de"]).body)
    assert plain["languages"] == [{"code": "fr"}, {"code": "de"}]
    verbose = json.loads(
        render(result, "verbose_json", model="a", task="translate", languages=["fr"]).body
    )
    # As OpenAI's: a translation's language is its output's; the source is in languages.
    assert verbose["task"] == "translate" and verbose["language"] == "en"
    assert verbose["languages"] == [{"code": "fr"}]


def test_detected_languages_are_those_of_the_pieces_unless_the_request_named_one() -> None:
    results = [
        EngineResult(text="a", language="en", duration=1.0),
        EngineResult(text="b", language=None, duration=1.0),
        EngineResult(text="c", language="fr", duration=1.0),
        EngineResult(text="d", language="en", duration=1.0),
    ]
    assert detected_languages(TranscriptionRequest(), results) == ("en", "fr")
    assert detected_languages(TranscriptionRequest(language="en"), results) == ()


def test_failed_pieces_leave_no_task_and_no_unretrieved_exception(caplog) -> None:
    """The first failure ends the request; the other pieces are cancelled and awaited before
    the request returns, and an error one of them raises while cancelled is retrieved
    rather than logged as 'Task exception was never retrieved'."""
    pieces = tuple((i * 16000, (i + 1) * 16000) for i in range(4))

    async def decode(data: bytes, splitting: SplittingConfig) -> DecodedAudio:
        samples = np.ones(64000, np.float32)
        samples[:16000] = 0.0  # marks the first piece
        return DecodedAudio(samples, 4.0, 16000, 1, "pcm", "wav", pieces)

    async def transcribe(model: str, audio: np.ndarray, options: TranscribeOptions, _: bool):
        if audio[0] == 0:  # the first piece fails at once
            raise RuntimeError("piece failed")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # a downstream call that takes a moment to cancel
            raise RuntimeError("cancelled call failed") from None

    async def main() -> set[asyncio.Task]:
        pipeline = TranscriptionPipeline(CONFIG, decode=decode, transcribe=transcribe)
        with pytest.raises(RuntimeError, match="piece failed"):
            await _run(pipeline, _upload())
        return asyncio.all_tasks() - {asyncio.current_task()}

    caplog.set_level(logging.ERROR, logger="asyncio")
    assert asyncio.run(main()) == set()
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
