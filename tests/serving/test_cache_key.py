"""The cache key: what must hit, what must miss. No Redis needed."""

from __future__ import annotations

import numpy as np
import pytest

from asr_serve.audio.decode import decode_audio
from asr_serve.config import ModelConfig
from asr_serve.engines.base import TranscribeOptions
from asr_serve.serving.cache import CacheConfig, cache_key
from devtools.speech import encode, synthesize

PREFIX = CacheConfig().key_prefix
MODEL = ModelConfig(name="m", engine="funasr", model="/models/nano", revision="v1")
AUDIO = np.random.default_rng(0).standard_normal(16000).astype(np.float32)


def _key(model: ModelConfig = MODEL, audio: np.ndarray = AUDIO, **options) -> str:
    return cache_key(PREFIX, model, audio, TranscribeOptions(**options))


def test_key_is_stable_and_readable() -> None:
    key = _key()
    assert key == _key(audio=AUDIO.copy())
    assert key.startswith(f"{PREFIX}m:") and len(key) == len(PREFIX) + 2 + 64


def test_same_speech_in_two_lossless_containers_has_one_key() -> None:
    speech = synthesize("hello world")
    wav, flac = (
        decode_audio(encode(speech, 16000, fmt), max_duration_s=60).samples
        for fmt in ("wav", "flac")
    )
    assert _key(audio=wav) == _key(audio=flac)
    assert _key(audio=wav) != _key(audio=wav[:-1])


@pytest.mark.parametrize(
    "options",
    [
        {"language": "en"},
        {"prompt": "fox"},
        {"temperature": 0.5},
        {"segment_timestamps": True},
        {"word_timestamps": True},
    ],
)
def test_every_option_changes_the_key(options: dict) -> None:
    assert _key(**options) != _key()


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({"name": "other"}, False),
        ({"revision": "v2"}, False),
        ({"model": "/models/other"}, False),
        ({"dtype": "bfloat16"}, False),
        ({"max_new_tokens": 16}, False),
        ({"cpu_threads": 4}, True),
        ({"batching": {"max_batch_size": 1}}, True),
        ({"description": "renamed"}, True),
    ],
)
def test_model_identity(change: dict, same: bool) -> None:
    other = ModelConfig.model_validate({**MODEL.model_dump(), **change})
    assert (_key(model=other) == _key()) is same


def test_audio_digest_is_of_float32_samples() -> None:
    assert _key(audio=AUDIO.astype(np.float64)) == _key()
    assert _key(audio=AUDIO + np.float32(1e-6)) != _key()
