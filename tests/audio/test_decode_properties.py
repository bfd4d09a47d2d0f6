"""Property tests of the decoder over odd-but-plausible WAV headers and sample values.

``test_decode.py`` fuzzes random bytes, mutated files and odd sample rates/channel counts;
these add the WAV header's every field at random, non-finite floats, and the duration
limit: whatever the input, only a 400 or a 413 may escape, and accepted audio is finite
16 kHz float32 within the limit.
"""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr_serve.audio.decode import decode_audio
from asr_serve.config import SAMPLE_RATE
from asr_serve.errors import InvalidAudioError, PayloadTooLargeError
from tests.support.hostile import pcm_wav

MAX_S = 5.0
PROPS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _wav(fmt_tag: int, channels: int, rate: int, bits: int, data: bytes, data_len: int) -> bytes:
    block_align = max(1, channels * bits // 8) & 0xFFFF
    byte_rate = (rate * block_align) & 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, byte_rate, block_align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", data_len) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _check(data: bytes) -> None:
    try:
        audio = decode_audio(data, max_duration_s=MAX_S, min_duration_s=0.01)
    except (InvalidAudioError, PayloadTooLargeError) as exc:
        assert exc.status_code in (400, 413)
        assert exc.param == "file"
        return
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert np.isfinite(audio.samples).all()
    assert 0 < audio.duration_s <= MAX_S + 0.01
    assert audio.samples.size == round(audio.duration_s * SAMPLE_RATE)


@PROPS
@given(
    fmt_tag=st.sampled_from([0, 1, 2, 3, 6, 7, 0x11, 0xFFFE, 0xFFFF]),
    channels=st.sampled_from([0, 1, 2, 3, 8, 64, 65, 255, 65535]),
    rate=st.sampled_from([0, 1, 8, 8000, 16000, 44100, 192000, 768000, 768001, 2**31 - 1]),
    bits=st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64, 65535]),
    data=st.binary(min_size=0, max_size=2048),
    data_len=st.sampled_from([0, 1, 100, 2048, 0x7FFFFFFF, 0xFFFFFFFF]),
)
def test_any_wav_header_gives_audio_or_a_4xx(
    fmt_tag: int, channels: int, rate: int, bits: int, data: bytes, data_len: int
) -> None:
    _check(_wav(fmt_tag, channels, rate, bits, data, data_len))


@PROPS
@given(
    values=st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=3000
    ),
    rate=st.sampled_from([8000, 16000, 44100]),
)
def test_float_wavs_with_any_values_are_finite_or_rejected(values: list[float], rate: int) -> None:
    samples = np.asarray(values, dtype="<f4").tobytes()
    _check(_wav(3, 1, rate, 32, samples, len(samples)))


@settings(max_examples=40, deadline=None)
@given(rate=st.integers(4000, 96000), seconds=st.floats(MAX_S + 0.05, 3 * MAX_S))
def test_audio_over_the_limit_is_always_413(rate: int, seconds: float) -> None:
    wav = pcm_wav(np.zeros(int(rate * seconds), np.float32), rate)
    try:
        decode_audio(wav, max_duration_s=MAX_S)
    except PayloadTooLargeError as exc:
        assert exc.status_code == 413
    else:
        raise AssertionError("audio over the limit was accepted")
