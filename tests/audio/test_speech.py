"""The test-audio helpers themselves: other suites trust them to produce what they claim."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from devtools import speech
from devtools.speech import FORMATS, encode, noise, synthesize, tone


def test_synthesize_returns_16k_mono_float32_speech() -> None:
    audio = synthesize("hello world")
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert 0.5 < audio.size / 16000 < 3.0
    assert np.sqrt(np.mean(audio**2)) > 0.01


def test_synthesize_is_deterministic_and_returns_fresh_arrays() -> None:
    first = synthesize("testing one two")
    first[:] = 0
    assert np.abs(synthesize("testing one two")).max() > 0.1


def test_synthesize_reads_leading_dash_as_text() -> None:
    assert synthesize("-v is not an option").size > 8000


def test_synthesize_without_espeak_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        synthesize("a phrase nobody else synthesizes")


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_writes_requested_rate_and_channels(fmt: str) -> None:
    data = encode(tone(440, 0.3), 48000, fmt, channels=2)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.channels == 2
        assert stream.codec_context.sample_rate == 48000


def test_encode_many_channels() -> None:
    with av.open(io.BytesIO(encode(noise(0.1, 0), 16000, "wav", channels=8))) as container:
        assert container.streams.audio[0].codec_context.channels == 8


def test_encode_rejects_unknown_format_and_unsupported_rate() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        encode(tone(440, 0.1), 16000, "wma")
    with pytest.raises(ValueError, match="44100"):
        encode(tone(440, 0.1), 44100, "ogg-opus")


def test_tone_and_noise() -> None:
    sine = tone(1000, 1.0, 8000)
    assert sine.dtype == np.float32 and sine.size == 8000
    assert np.argmax(np.abs(np.fft.rfft(sine))) == 1000
    np.testing.assert_array_equal(noise(0.5, 7), noise(0.5, 7))
    assert not np.array_equal(noise(0.5, 7), noise(0.5, 8))
    assert np.abs(noise(0.5, 7)).max() <= 0.5
