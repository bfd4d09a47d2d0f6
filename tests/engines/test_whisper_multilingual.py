"""WhisperEngine on the shipped multilingual Whisper base: detection, a set language,
translation, on espeak-ng speech in several languages. No Ray, no network."""

from __future__ import annotations

import numpy as np
import pytest

from asr_serve.engines import EngineResult, TranscribeOptions
from asr_serve.engines.whisper import WhisperEngine
from asr_serve.errors import InvalidRequestError
from devtools.languages import COFFEE, PHRASES, speak
from devtools.text import normalize
from tests.engines.conftest import loaded_whisper


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    return loaded_whisper("embedded-multilingual")


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {lang: speak(lang, PHRASES[lang]) for lang in ("en", "fr", "es")}


def _run(engine: WhisperEngine, audios: list[np.ndarray], **options: object) -> list[EngineResult]:
    return engine.transcribe(audios, [TranscribeOptions(**options)] * len(audios))


def _overlap(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize(reference), set(normalize(hypothesis))
    return sum(w in hyp for w in ref) / len(ref)


def test_multilingual_weights_know_99_languages_and_can_translate(engine: WhisperEngine) -> None:
    assert engine.model.model.is_multilingual
    assert {"en", "fr", "de", "es", "zh", "ja"} <= engine.languages
    assert engine.capabilities.translate and engine.capabilities.logprobs


def test_one_batch_detects_each_clips_own_language(engine, clips) -> None:
    results = _run(engine, list(clips.values()))
    assert [r.language for r in results] == list(clips)
    for lang, result in zip(clips, results, strict=True):
        assert _overlap(PHRASES[lang], result.text) >= 0.6, (lang, result.text)


def test_the_windowed_path_detects_the_same_language(engine, clips) -> None:
    (result,) = _run(engine, [clips["fr"]], segment_timestamps=True)
    assert result.language == "fr" and result.segments
    assert _overlap(PHRASES["fr"], result.text) >= 0.6, result.text


def test_a_language_set_is_the_one_used(engine, clips) -> None:
    (result,) = _run(engine, [clips["es"]], language="es")
    assert result.language == "es"
    with pytest.raises(InvalidRequestError, match="'xx' is not supported") as err:
        engine.check_options(TranscribeOptions(language="xx"))
    assert err.value.param == "language"


def test_translation_gives_english(engine) -> None:
    audios = [speak(lang, COFFEE[lang]) for lang in ("fr", "es")]
    for path in ({}, {"segment_timestamps": True}):  # batched, and faster-whisper's own
        for result in _run(engine, audios, task="translate", **path):
            words = normalize(result.text)
            assert "coffee" in words and "café" not in words, result.text
