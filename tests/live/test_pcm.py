"""Live input conversion: any declared rate or G.711 to 16 kHz, chunk by chunk, no clicks."""

from __future__ import annotations

import av
import numpy as np
import pytest
import soxr
from pydantic import ValidationError

from asr_serve.errors import InvalidAudioError
from asr_serve.live.pcm import InputFormat, PCMDecoder
from devtools.speech import encode_pcm16
from tests.live.conftest import SR
from tests.support.realtime import chunks


def _sine(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _int16(audio: np.ndarray) -> np.ndarray:
    return (audio * 32767).astype("<i2")


def _stream(decoder: PCMDecoder, data: bytes, size: int) -> np.ndarray:
    parts = [decoder.decode(chunk) for chunk in chunks(data, size)]
    return np.concatenate([*parts, decoder.flush()])


def _peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * SR / len(audio))


@pytest.mark.parametrize("rate", [8_000, 16_000, 24_000, 44_100, 48_000])
def test_a_resampled_sine_keeps_its_frequency_and_length(rate: int) -> None:
    data = _int16(_sine(440, 2.0, rate)).tobytes()
    out = _stream(PCMDecoder(InputFormat(rate=rate)), data, size=2 * rate // 50)  # 20 ms
    assert out.dtype == np.float32
    assert abs(len(out) - 2 * SR) <= 2
    assert abs(_peak_hz(out) - 440) < 1.0
    assert 0.45 < np.abs(out[SR // 2 : -SR // 2]).max() < 0.55


@pytest.mark.parametrize("size", [960, 962, 4800, 14])  # 20 ms, uneven, 100 ms, 7 samples
def test_chunked_conversion_equals_converting_the_whole_stream(size: int) -> None:
    rng = np.random.default_rng(0)
    audio = np.clip(_sine(300, 1.5, 24_000) + 0.1 * rng.standard_normal(36_000), -1, 1)
    data = _int16(audio.astype(np.float32)).tobytes()
    whole = _stream(PCMDecoder(InputFormat()), data, size=len(data))
    chunked = _stream(PCMDecoder(InputFormat()), data, size=size)
    assert len(chunked) == len(whole)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_16k_pcm_passes_through_unchanged() -> None:
    samples = np.array([0, 16384, -32768, 32767], dtype="<i2")
    out = PCMDecoder(InputFormat(rate=SR)).decode(samples.tobytes())
    np.testing.assert_array_equal(out, samples / 32768)


def test_pcm16_read_back_encodes_to_the_same_bytes() -> None:
    samples = np.array([0, 1, -1, 16384, -32768, 32767], dtype="<i2")
    decoded = PCMDecoder(InputFormat(rate=SR)).decode(samples.tobytes())
    assert encode_pcm16(decoded) == samples.tobytes()
    assert encode_pcm16(np.array([1.5, -1.5], dtype=np.float32)) == b"\xff\x7f\x00\x80"


def test_an_odd_byte_count_is_refused_and_takes_nothing() -> None:
    decoder = PCMDecoder(InputFormat(rate=SR))
    with pytest.raises(InvalidAudioError, match="2-byte samples"):
        decoder.decode(b"\x00\x01\x02")
    assert len(decoder.decode(b"\x00\x01")) == 1


def _g711(audio: np.ndarray, codec: str) -> bytes:
    context = av.CodecContext.create(codec, "w")
    context.sample_rate = 8_000
    context.layout = "mono"
    context.format = "s16"
    frame = av.AudioFrame.from_ndarray(_int16(audio)[np.newaxis, :], format="s16", layout="mono")
    frame.sample_rate = 8_000
    return b"".join(bytes(p) for p in [*context.encode(frame), *context.encode(None)])


@pytest.mark.parametrize(("encoding", "codec"), [("pcmu", "pcm_mulaw"), ("pcma", "pcm_alaw")])
def test_g711_round_trip(encoding: str, codec: str) -> None:
    audio = _sine(700, 1.0, 8_000)
    data = _g711(audio, codec)
    assert len(data) == len(audio)  # one byte a sample
    out = _stream(PCMDecoder(InputFormat(encoding=encoding, rate=8_000)), data, size=160)
    expected = soxr.resample(audio, 8_000, SR)
    noise = out[800:-800] - expected[800:-800]
    snr_db = 10 * np.log10(np.mean(expected[800:-800] ** 2) / np.mean(noise**2))
    assert snr_db > 30  # G.711 companding keeps ~38 dB on a loud tone


@pytest.mark.parametrize(("encoding", "code", "value"), [("pcmu", 0x80, 32124), ("pcma", 0xD5, 8)])
def test_g711_codes_expand_to_the_standard_values(encoding: str, code: int, value: int) -> None:
    # ITU G.711: μ-law 0x80 is the largest positive code, A-law 0xD5 the smallest positive.
    out = _stream(
        PCMDecoder(InputFormat(encoding=encoding, rate=8_000)), bytes([code]) * 8_000, 160
    )
    np.testing.assert_allclose(out[4_000:12_000] * 32768, value, rtol=1e-3)


def test_g711_is_8k_only() -> None:
    with pytest.raises(ValidationError, match="8000 Hz"):
        InputFormat(encoding="pcma", rate=16_000)
