"""OpenAI's current audio API through its own client: every field honoured or refused.

One application serves the embedded Whisper tiny.en (the default; it gives word
log-probabilities but cannot translate), the tiny Fun-ASR-Nano (hotwords, no
log-probabilities) and a Fun-ASR-Nano that says it can translate
(:mod:`tests.support.translating_engine`). Long audio is split at 4 s, so a
``chunking_strategy`` visibly changes the pieces.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from devtools.speech import encode, synthesize
from devtools.text import normalize
from tests.e2e.serving import (
    SPEAKERS_ON,
    TINY_MODEL,
    WHISPER,
    deploy,
    tiny_args,
    undeploy,
    whisper_model,
)
from tests.support.translating_engine import MARK

pytestmark = pytest.mark.e2e

APP = "contract"
TRANSLATOR = "translator"
MAX_PIECE_S = 4.0


@pytest.fixture(scope="module")
def client(serve_url: str, tiny_model_dir) -> Iterator[openai.OpenAI]:
    args = tiny_args(tiny_model_dir, splitting={"max_piece_s": MAX_PIECE_S}, speakers=SPEAKERS_ON)
    translator = {
        **args["models"][0],
        "name": TRANSLATOR,
        "engine": "tests.support.translating_engine:TranslatingEngine",
    }
    args["models"] = [whisper_model(), args["models"][0], translator]
    deploy(APP, args)
    yield openai.OpenAI(base_url=f"{serve_url}/{APP}/v1", api_key="unused", max_retries=0)
    undeploy(APP)


@pytest.fixture(scope="module")
def hello() -> bytes:
    return encode(synthesize("hello world"), 16000, "wav")


def _file(data: bytes) -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = "clip.wav"
    return f


def _refused(call, param: str) -> str:
    """``call()`` is a 400 whose error names ``param``; returns the message."""
    with pytest.raises(openai.BadRequestError) as err:
        call()
    assert err.value.status_code == 400 and err.value.param == param, err.value.body
    return err.value.message


def test_logprobs_from_whisper_refused_by_funasr(client: openai.OpenAI, hello: bytes) -> None:
    result = client.audio.transcriptions.create(
        model=WHISPER, file=_file(hello), include=["logprobs"]
    )
    assert normalize(result.text) == ["hello", "world"]
    assert normalize(" ".join(p.token for p in result.logprobs)) == ["hello", "world"]
    for p in result.logprobs:  # the SDK types bytes as floats
        assert -30 < p.logprob <= 0 and bytes(map(int, p.bytes)).decode() == p.token
    message = _refused(
        lambda: client.audio.transcriptions.create(
            model=TINY_MODEL, file=_file(hello), include=["logprobs"]
        ),
        "include",
    )
    assert "log-probabilities" in message


def test_keywords_to_funasr_hotwords_refused_by_whisper(
    client: openai.OpenAI, hello: bytes
) -> None:
    plain = client.audio.transcriptions.create(model=TINY_MODEL, file=_file(hello))
    hinted = client.audio.transcriptions.create(
        model=TINY_MODEL, file=_file(hello), keywords=["Kubernetes"]
    )
    assert hinted.text != plain.text  # the hotword reached the model's prompt
    _refused(
        lambda: client.audio.transcriptions.create(
            model=WHISPER, file=_file(hello), keywords=["Kubernetes"]
        ),
        "keywords",
    )


def test_one_of_languages_is_the_language(client: openai.OpenAI, hello: bytes) -> None:
    result = client.audio.transcriptions.create(model=WHISPER, file=_file(hello), languages=["en"])
    assert normalize(result.text) == ["hello", "world"]
    _refused(
        lambda: client.audio.transcriptions.create(
            model=WHISPER, file=_file(hello), languages=["en", "de"]
        ),
        "languages",
    )


def test_known_speakers_without_diarized_json_are_refused(
    client: openai.OpenAI, hello: bytes
) -> None:
    """Known speakers name the speakers of ``diarized_json`` (tests/e2e/test_diarization.py
    has the rest of diarization's contract); with another format they would be ignored."""
    for field, value in (
        ("known_speaker_names", ["agent"]),
        ("known_speaker_references", ["data:audio/wav;base64,UklGRg=="]),
    ):
        create = functools.partial(
            client.audio.transcriptions.create, model=WHISPER, file=_file(hello), **{field: value}
        )
        _refused(create, field)
    result = client.audio.transcriptions.create(
        model=WHISPER, file=_file(hello), response_format="diarized_json"
    )
    assert {s.speaker for s in result.segments} == {"A"}


def test_stream_with_verbose_json_and_unknown_fields_are_refused(
    client: openai.OpenAI, hello: bytes
) -> None:
    _refused(
        lambda: client.audio.transcriptions.create(
            model=WHISPER, file=_file(hello), stream=True, response_format="verbose_json"
        ),
        "stream",
    )
    message = _refused(
        lambda: client.audio.transcriptions.create(
            model=WHISPER, file=_file(hello), extra_body={"languge": "en"}
        ),
        "languge",
    )
    assert "unknown field" in message


def test_chunking_strategy_sets_how_long_audio_is_split(client: openai.OpenAI) -> None:
    """Speech after 2 s of silence, in a file longer than a piece: the first piece starts
    ``speech_pad_ms`` (the server's 200 ms, or ``prefix_padding_ms``) before the speech."""
    speech = synthesize("hello world")
    silence = np.zeros(32_000, np.float32)
    wav = encode(np.concatenate([silence, speech, silence, speech, silence]), 16000, "wav")

    def first_start(**fields) -> float:
        result = client.audio.transcriptions.create(
            model=TINY_MODEL, file=_file(wav), response_format="verbose_json", **fields
        )
        assert result.duration > MAX_PIECE_S
        return result.segments[0].start

    server = first_start()
    assert first_start(chunking_strategy="auto") == server
    padded = first_start(chunking_strategy={"type": "server_vad", "prefix_padding_ms": 1500})
    assert 1.0 < server - padded <= 1.35, (server, padded)
    _refused(
        lambda: first_start(chunking_strategy={"type": "server_vad", "prefix_padding_ms": 2000}),
        "chunking_strategy",  # 2 x 2 s of padding do not fit the 4 s pieces
    )


def test_translations_go_to_a_model_that_can(client: openai.OpenAI, hello: bytes) -> None:
    # No model named (an empty field): the default (Whisper tiny.en) cannot, the translator can.
    routed = client.audio.translations.create(model="", file=_file(hello))
    assert routed.text.startswith(MARK)
    verbose = client.audio.translations.create(
        model=TRANSLATOR, file=_file(hello), response_format="verbose_json"
    )
    assert verbose.task == "translate" and verbose.text.startswith(MARK)
    assert verbose.model_extra["model"] == TRANSLATOR
    message = _refused(
        lambda: client.audio.translations.create(model=WHISPER, file=_file(hello)), "model"
    )
    assert f"model {WHISPER!r} cannot translate" in message
    with pytest.raises(openai.NotFoundError):
        client.audio.translations.create(model="whisper-1", file=_file(hello))
