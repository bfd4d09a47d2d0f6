"""The API's contract without Ray: every OpenAI field honoured or refused with a 400 naming it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from asr_serve.audio.decode import DecodedAudio
from asr_serve.config import AppConfig, SplittingConfig
from asr_serve.engines.base import EngineCapabilities, EngineResult
from asr_serve.errors import InvalidParameterError, InvalidRequestError, ModelNotFoundError
from asr_serve.serving.pipeline import TranscriptionPipeline
from asr_serve.serving.requests import (
    Upload,
    parse_request,
    parse_translation,
    splitting_for,
    transcribe_options,
)

CONFIG = AppConfig.model_validate(
    {
        "models": [
            {"name": "nano", "engine": "funasr", "model": "x"},
            {"name": "whisper", "engine": "faster-whisper", "model": "embedded"},
        ]
    }
)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"languge": "en"}, "languge"),  # a typo is not silently ignored
        ({"response_format": "diarized_json"}, "response_format"),
        ({"known_speaker_names": ["agent"]}, "known_speaker_names"),
        ({"known_speaker_references": ["data:audio/wav;base64,AA=="]}, "known_speaker_references"),
        ({"stream": "true", "response_format": "verbose_json"}, "stream"),
        ({"include": ["logprobs"], "response_format": "text"}, "include"),
        ({"include": ["logprobs"], "stream": "true"}, "include"),
        ({"timestamp_granularities": ["word"]}, "timestamp_granularities"),
        ({"languages": ["en", "de"]}, "languages"),
        ({"languages": ["de"], "language": "en"}, "languages"),
        ({"chunking_strategy": {"type": "server_vad", "prefix_padding_ms": "2000"}}, None),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_the_field(fields: dict, param: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        request = parse_request(fields, CONFIG)
        splitting_for(request, SplittingConfig(max_piece_s=3.0))  # 2 x 2 s pads > 3 s
    assert err.value.status_code == 400
    assert err.value.param == (param or "chunking_strategy"), err.value.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"include": ["tokens"]}, "include.0"),
        ({"chunking_strategy": "manual"}, "chunking_strategy"),
        ({"chunking_strategy": {"type": "server_vad", "threshold": "2"}}, "chunking_strategy"),
        ({"chunking_strategy": {"type": "server_vad", "extra": "1"}}, "chunking_strategy"),
        ({"chunking_strategy": '{"type": "server_vad", "threshold": 0.5'}, "chunking_strategy"),
        ({"languages": ["english!"]}, "languages.0"),
        # Nested past any object of the API: refused before it is parsed, not a RecursionError.
        ({"chunking_strategy": "{" + '"a":[' * 60_000}, "chunking_strategy"),
        ({"chunking_strategy": '{"type": ' + "[" * 40 + "]" * 40 + "}"}, "chunking_strategy"),
        # The prompt and the keywords go into the model's prompt together.
        ({"prompt": "p" * 4097}, "prompt"),
        ({"keywords": ["k" * 64 * 1024] * 32}, "keywords"),
        ({"prompt": "p" * 4000, "keywords": ["a" * 50, "b" * 50]}, "keywords"),
    ],
)
def test_bad_values_of_new_fields_are_422_naming_them(fields: dict, param: str) -> None:
    with pytest.raises(InvalidParameterError) as err:
        parse_request(fields, CONFIG)
    assert err.value.param == param


def test_keywords_within_the_prompt_s_budget_pass() -> None:
    fields = {"prompt": "p" * 3000, "keywords": ["k" * 500, "w" * 595]}  # 4096 with a comma
    assert parse_request(fields, CONFIG).keywords == fields["keywords"]


def test_honoured_fields_reach_the_engine_options() -> None:
    request = parse_request(
        {
            "include": ["logprobs"],
            "keywords": ["Fun-ASR", "Ray Serve"],
            "languages": ["EN"],
            "response_format": "verbose_json",
            "timestamp_granularities": ["word"],
        },
        CONFIG,
    )
    options = transcribe_options(request)
    assert options.logprobs and options.keywords == ("Fun-ASR", "Ray Serve")
    assert options.language == "en" and options.word_timestamps and options.task == "transcribe"
    assert transcribe_options(request, translate=True).task == "translate"


@pytest.mark.parametrize(
    "chunking",
    [
        # As the openai client sends an object in a form: chunking_strategy[key] fields.
        {"type": "server_vad", "threshold": "0.7", "silence_duration_ms": "800"},
        '{"type": "server_vad", "threshold": 0.7, "silence_duration_ms": 800}',
    ],
)
def test_server_vad_chunking_maps_onto_the_splitting(chunking: object) -> None:
    server = SplittingConfig()
    request = parse_request({"chunking_strategy": chunking}, CONFIG)
    splitting = splitting_for(request, server)
    assert splitting.threshold == 0.7 and splitting.min_silence_ms == 800
    # What the client left out, and what it cannot set, stay the server's.
    assert splitting.speech_pad_ms == server.speech_pad_ms
    assert splitting.max_piece_s == server.max_piece_s
    for same in ("auto", None, ""):
        assert splitting_for(parse_request({"chunking_strategy": same}, CONFIG), server) is server


def test_translation_takes_openai_translation_fields_only() -> None:
    request = parse_translation(
        {"model": "whisper", "prompt": "hi", "response_format": "srt"}, CONFIG
    )
    assert request.model == "whisper" and request.response_format == "srt"
    with pytest.raises(InvalidRequestError) as err:
        parse_translation({"language": "de"}, CONFIG)  # translations.create has no language
    assert err.value.param == "language"


def _translate(fields: dict, can: set[str]) -> str:
    """The model a translation request goes to, when the models in ``can`` can translate."""
    chosen: list[str] = []

    async def decode(data: bytes, splitting: SplittingConfig) -> DecodedAudio:
        return DecodedAudio(np.zeros(16000, np.float32), 1.0, 16000, 1, "pcm", "wav")

    async def transcribe(model, audio, options, admitted):
        assert options.task == "translate"
        chosen.append(model)
        return EngineResult(text="hello", duration=1.0)

    async def capabilities(model: str) -> EngineCapabilities:
        return EngineCapabilities(translate=model in can)

    pipeline = TranscriptionPipeline(
        CONFIG, decode=decode, transcribe=transcribe, capabilities=capabilities
    )

    async def run() -> None:
        done = await pipeline.finish(await pipeline.start(Upload(b"x", fields), translate=True))
        assert done.translate and done.model == chosen[0]

    asyncio.run(run())
    return chosen[0]


def test_translations_go_to_a_model_that_can_translate() -> None:
    assert _translate({}, can={"whisper"}) == "whisper"  # the default cannot: the next that can
    assert _translate({}, can={"nano", "whisper"}) == "nano"  # the default can
    assert _translate({"model": "whisper"}, can={"whisper"}) == "whisper"
    with pytest.raises(InvalidRequestError, match="model 'nano' cannot translate") as err:
        _translate({"model": "nano"}, can={"whisper"})
    assert err.value.param == "model" and err.value.status_code == 400
    with pytest.raises(InvalidRequestError, match="no model on this server can translate"):
        _translate({}, can=set())
    with pytest.raises(ModelNotFoundError):
        _translate({"model": "whisper-1"}, can={"whisper"})
