"""decode_audio: every upload format becomes 16 kHz mono float32; hostile input fails cleanly.

Only two errors may ever escape the decoder: InvalidAudioError (400) and PayloadTooLargeError
(413). These tests build every input in memory with devtools.speech.
"""

from __future__ import annotations

import contextlib
import io
import struct
import time
import zipfile

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr_serve.audio import decode as decode_mod
from asr_serve.audio.decode import DecodedAudio, decode_audio
from asr_serve.config import SAMPLE_RATE
from asr_serve.errors import InvalidAudioError, PayloadTooLargeError
from devtools.speech import FORMATS, encode, noise, synthesize, tone
from tests.support.hostile import patch, pcm_wav

LOSSLESS = {"wav", "wav24", "wavf32", "flac", "aiff"}
ALL_RATES = (8000, 16000, 22050, 44100, 48000)
# Lossy codecs are checked at rates they support; lossless ones at two awkward ratios.
RATES = {
    "wav": ALL_RATES,
    "wav24": (22050, 48000),
    "wavf32": (8000, 44100),
    "flac": (22050, 44100),
    "aiff": (16000, 48000),
    "mp3": (22050, 44100),
    "ogg-opus": (16000, 48000),
    "ogg-vorbis": (16000, 44100),
    "webm-opus": (24000, 48000),
    "m4a": (44100, 48000),
}
assert set(RATES) == set(FORMATS)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthesize("hello world")


def _decode(data: bytes, **kwargs: float) -> DecodedAudio:
    kwargs.setdefault("max_duration_s", 60.0)
    return decode_audio(data, **kwargs)


def _best_correlation(x: np.ndarray, ref: np.ndarray) -> float:
    """Peak normalised cross-correlation, so codec delay or padding does not count as error."""
    n = 1 << int(np.ceil(np.log2(x.size + ref.size)))
    xc = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(ref, n)), n)
    return float(xc.max() / (np.linalg.norm(x) * np.linalg.norm(ref)))


# --- every format --------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(("fmt", "rate"), [(fmt, rate) for fmt in FORMATS for rate in RATES[fmt]])
def test_every_format_decodes_to_16k_mono_float32(
    speech: np.ndarray, fmt: str, rate: int, channels: int
) -> None:
    audio = _decode(encode(speech, rate, fmt, channels=channels))

    samples = audio.samples
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert samples.flags.c_contiguous
    assert audio.duration_s == pytest.approx(samples.size / SAMPLE_RATE)
    assert audio.codec and audio.container
    # Opus always decodes at 48 kHz; FFmpeg's Vorbis encoder only writes stereo.
    assert audio.source_sample_rate == (48000 if "opus" in fmt else rate)
    assert audio.source_channels == (2 if fmt == "ogg-vorbis" else channels)

    expected_s = speech.size / SAMPLE_RATE
    if fmt in LOSSLESS:
        assert abs(samples.size - speech.size) <= 2
        assert _best_correlation(samples, speech) > (0.995 if rate < 16000 else 0.9995)
    else:  # Encoder padding (AAC, Vorbis) may add up to a few tens of milliseconds.
        assert audio.duration_s == pytest.approx(expected_s, abs=0.06)
        assert _best_correlation(samples, speech) > 0.95


def test_lossless_same_rate_roundtrip_is_nearly_exact(speech: np.ndarray) -> None:
    samples = _decode(encode(speech, 16000, "wavf32", channels=2)).samples
    np.testing.assert_allclose(samples, speech, atol=1e-6)


def test_stereo_is_averaged_not_left_channel() -> None:
    left, right = tone(440, 0.5), tone(1000, 0.5)
    samples = _decode(pcm_wav(np.stack([left, right]), 16000)).samples
    np.testing.assert_allclose(samples, (left + right) / 2, atol=1e-4)
    assert np.abs(samples - left).max() > 0.1


def test_multichannel_is_averaged() -> None:
    chans = np.stack([noise(0.25, seed) for seed in range(6)])
    samples = _decode(pcm_wav(chans, 16000)).samples
    np.testing.assert_allclose(samples, chans.mean(axis=0), atol=1e-4)


# --- resampling quality --------------------------------------------------------------------


def _spectrum(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE), np.abs(np.fft.rfft(samples))


@pytest.mark.parametrize("rate", [44100, 48000])
def test_resampled_sine_keeps_its_frequency(rate: int) -> None:
    samples = _decode(encode(tone(1000, 1.0, rate), rate, "wavf32", source_rate=rate)).samples
    freqs, mag = _spectrum(samples)
    assert freqs[np.argmax(mag)] == pytest.approx(1000, abs=2)
    assert np.sqrt(np.mean(samples**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_tone_above_nyquist_is_filtered_not_aliased(rate: int) -> None:
    """10 kHz cannot exist at 16 kHz; decimation would fold it to 6 kHz at full level."""
    samples = _decode(encode(tone(10_000, 1.0, rate), rate, "wavf32", source_rate=rate)).samples
    assert np.sqrt(np.mean(samples**2)) < 0.02 * (0.5 / np.sqrt(2))
    freqs, mag = _spectrum(samples)
    full_scale = 0.5 * samples.size / 2  # magnitude of an unattenuated 0.5-amplitude sine
    assert mag[np.abs(freqs - 6000) < 5].max() < 0.01 * full_scale


# --- duration limits -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_silence_flac() -> bytes:
    return encode(np.zeros(120 * 16000, np.float32), 16000, "flac")


@pytest.fixture
def drain_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts decoded frames, to show the limit stops decoding early."""
    calls: list[int] = []
    real = decode_mod._drain

    def counting(resampler, frame, chunks):  # type: ignore[no-untyped-def]
        calls.append(1)
        real(resampler, frame, chunks)

    monkeypatch.setattr(decode_mod, "_drain", counting)
    return calls


def test_declared_duration_over_limit_is_413_before_decoding(
    long_silence_flac: bytes, drain_calls: list[int]
) -> None:
    with pytest.raises(PayloadTooLargeError, match=r"longer than 30 s.*120\.0 s"):
        _decode(long_silence_flac, max_duration_s=30)
    assert drain_calls == []


@pytest.mark.parametrize("fmt", ["mp3", "ogg-opus"])
def test_long_lossy_file_over_limit_is_413_fast(fmt: str) -> None:
    data = encode(np.zeros(120 * 8000, np.float32), 8000, fmt, source_rate=8000)
    start = time.perf_counter()
    with pytest.raises(PayloadTooLargeError) as exc_info:
        _decode(data, max_duration_s=10)
    assert time.perf_counter() - start < 0.5
    assert exc_info.value.status_code == 413


def test_header_that_understates_duration_is_caught_while_decoding(
    long_silence_flac: bytes, drain_calls: list[int]
) -> None:
    """A decompression bomb: STREAMINFO claims 1 s, the frames hold 120 s."""
    lying = bytearray(long_silence_flac)
    assert lying[:4] == b"fLaC"
    lying[21] &= 0xF0  # STREAMINFO total_samples: 36 bits at byte 13 of the block
    struct.pack_into(">I", lying, 22, 16000)
    with av.open(io.BytesIO(bytes(lying))) as container:
        declared = decode_mod._declared_duration(container, container.streams.audio[0])
    assert declared == pytest.approx(1.0)

    with pytest.raises(PayloadTooLargeError, match="longer than 2 s"):
        _decode(bytes(lying), max_duration_s=2)
    assert 0 < len(drain_calls) < 40  # 1152-sample frames: 28 reach 2 s; the file has 1667


def test_wav_header_claiming_huge_data_decodes_what_is_there(speech: np.ndarray) -> None:
    wav = pcm_wav(speech[np.newaxis], 16000)
    assert wav[36:40] == b"data"
    samples = _decode(patch(wav, 40, "<I", 0x7FFF0000), max_duration_s=5).samples
    np.testing.assert_allclose(samples, speech, atol=1e-4)


def test_limits_are_inclusive_of_real_length(speech: np.ndarray) -> None:
    wav = encode(speech, 16000, "wav")
    seconds = speech.size / SAMPLE_RATE
    assert _decode(wav, max_duration_s=seconds, min_duration_s=seconds).samples.size == speech.size
    with pytest.raises(PayloadTooLargeError):
        _decode(wav, max_duration_s=seconds - 0.01)
    with pytest.raises(InvalidAudioError, match="minimum is"):
        _decode(wav, min_duration_s=seconds + 0.01)


# --- invalid input -------------------------------------------------------------------------


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello.wav", b"RIFF" + bytes(100))
    return buf.getvalue()


def _video_only_mp4() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for pts in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = pts
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _transport_stream_video_first(speech: np.ndarray) -> bytes:
    """MPEG-TS whose first few KB hold only video, so the audio's parameters come later."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as out:
        video = out.add_stream("mpeg2video", rate=25)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        video.bit_rate = 8_000_000
        audio = out.add_stream("mp2", rate=16000, layout="mono")
        noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)
        for pts in range(25):
            frame = av.VideoFrame.from_ndarray(noise, format="rgb24")
            frame.pts = pts
            for packet in video.encode(frame):
                out.mux(packet)
        samples = av.AudioFrame.from_ndarray(
            speech[np.newaxis, :16000], format="flt", layout="mono"
        )
        samples.sample_rate, samples.pts = 16000, 0
        for stream, frame in ((video, None), (audio, samples), (audio, None)):
            for packet in stream.encode(frame):
                out.mux(packet)
    return buf.getvalue()


def test_audio_parameters_past_the_quick_probe_still_decode(speech: np.ndarray) -> None:
    """Stream info is probed from the first few KB (fast for WAV); others get a full probe."""
    from asr_serve.audio.decode import _QUICK_PROBE, _audio_params_known, _open_with

    data = _transport_stream_video_first(speech)
    with _open_with(data, _QUICK_PROBE) as quick:
        assert not _audio_params_known(quick)  # the case the fallback exists for
    audio = _decode(data)
    assert audio.codec.startswith("mp") and abs(audio.duration_s - 1.0) < 0.1


@pytest.fixture(scope="module")
def speech_wav(speech: np.ndarray) -> bytes:
    """A canonical 44-byte-header WAV, so header fields sit at their textbook offsets."""
    return pcm_wav(speech[np.newaxis], 16000)


BAD_INPUTS = {
    "empty": (lambda wav: b"", "empty"),
    "random": (lambda wav: np.random.default_rng(0).bytes(4096), "decode"),
    "text": (lambda wav: b"just some words\n" * 50, "text"),
    "html": (lambda wav: b"<!DOCTYPE html><html><body>502</body></html>", "HTML"),
    "json": (lambda wav: b'{"error": "not found"}', "JSON"),
    "png": (lambda wav: b"\x89PNG\r\n\x1a\n" + bytes(200), "PNG"),
    "zip": (lambda wav: _zip(), "ZIP"),
    # Playlists would make FFmpeg open local files or URLs; those demuxers are never allowed.
    "hls": (lambda wav: b"#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n", "text"),
    "ffconcat": (lambda wav: b"ffconcat version 1.0\nfile /etc/passwd\n", "text"),
    "wav_header_only": (lambda wav: wav[:44], "no audio samples"),
    "wav_sample_rate_0": (lambda wav: patch(wav, 24, "<I", 0), "decode"),
    "wav_channels_0": (lambda wav: patch(wav, 22, "<H", 0), "channel"),
    "wav_channels_100": (lambda wav: patch(wav, 22, "<H", 100), "channel"),
    "wav_rate_2mhz": (lambda wav: patch(wav, 24, "<I", 2_000_000), "sample rate"),
    "video_only_mp4": (lambda wav: _video_only_mp4(), "no audio stream"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_invalid_audio(name: str, speech_wav: bytes) -> None:
    make, message = BAD_INPUTS[name]
    with pytest.raises(InvalidAudioError, match=message) as exc_info:
        _decode(make(speech_wav))
    assert exc_info.value.status_code == 400
    assert exc_info.value.param == "file"


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_files(speech: np.ndarray, fmt: str) -> None:
    """Cut in the header: 400. Cut mid-stream: what was there, or 400 where the codec can't."""
    data = encode(speech, 16000, fmt)
    with pytest.raises(InvalidAudioError):
        _decode(data[:12])
    try:
        audio = _decode(data[: len(data) // 2])
    except InvalidAudioError:
        return
    assert 0 < audio.samples.size < speech.size + 1000


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("rate", [16000, 44100])
def test_non_finite_samples_are_rejected(speech: np.ndarray, bad: float, rate: int) -> None:
    corrupt = speech.copy()
    corrupt[1000] = bad
    data = encode(corrupt, rate, "wavf32", source_rate=16000)
    with pytest.raises(InvalidAudioError, match="NaN or infinite"):
        _decode(data)


def test_unexpected_errors_become_invalid_audio(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(data: bytes, max_duration_s: float) -> DecodedAudio:
        raise RuntimeError("swr exploded")

    monkeypatch.setattr(decode_mod, "_decode", boom)
    with pytest.raises(InvalidAudioError, match="swr exploded"):
        _decode(b"\x00\x01RIFF")


def test_memory_error_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    def oom(data: bytes, max_duration_s: float) -> DecodedAudio:
        raise MemoryError

    monkeypatch.setattr(decode_mod, "_decode", oom)
    with pytest.raises(MemoryError):
        _decode(b"RIFF")


# --- properties ----------------------------------------------------------------------------

ALLOWED = (InvalidAudioError, PayloadTooLargeError)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_only_raise_allowed_errors(data: bytes) -> None:
    with contextlib.suppress(ALLOWED):
        _decode(data, max_duration_s=5)


@pytest.fixture(scope="module")
def seeds(speech: np.ndarray) -> list[bytes]:
    """Small valid files whose mutations reach deep into each demuxer and decoder."""
    clip = speech[:4000]
    return [encode(clip, 16000, fmt) for fmt in ("wav", "flac", "mp3", "ogg-opus", "m4a")]


@FUZZ
@given(data=st.data())
def test_mutated_files_only_raise_allowed_errors(seeds: list[bytes], data: st.DataObject) -> None:
    blob = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(blob)))
    try:
        audio = _decode(bytes(blob[:cut]), max_duration_s=5)
    except ALLOWED:
        return
    assert audio.samples.dtype == np.float32
    assert np.isfinite(audio.samples).all()


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(1000, 96000),
    channels=st.integers(1, 8),
    length=st.integers(1, 4000),
    seed=st.integers(0, 2**16),
)
def test_odd_parameters_decode_to_the_right_length(
    rate: int, channels: int, length: int, seed: int
) -> None:
    chans = np.random.default_rng(seed).uniform(-0.5, 0.5, (channels, length)).astype(np.float32)
    expected = length * SAMPLE_RATE / rate
    try:
        audio = _decode(pcm_wav(chans, rate), max_duration_s=5)
    except InvalidAudioError as exc:
        # Clips shorter than the resampler's filter may resample to nothing.
        assert length < 32 or expected < 32, exc
        return
    assert audio.source_sample_rate == rate
    assert audio.source_channels == channels
    if length >= 32 and expected >= 32:
        assert abs(audio.samples.size - expected) <= 2
    else:
        assert 0 < audio.samples.size <= expected + 2


def test_ffmpeg_out_of_memory_is_invalid_audio_but_ours_propagates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by the fuzzing above: a mutated M4A made FFmpeg refuse an allocation (ENOMEM).
    def ffmpeg_enomem(data: bytes, max_duration_s: float) -> DecodedAudio:
        raise av.error.MemoryError(12, "Cannot allocate memory")

    monkeypatch.setattr(decode_mod, "_decode", ffmpeg_enomem)
    with pytest.raises(InvalidAudioError):
        decode_audio(b"x" * 100, max_duration_s=5)

    def process_oom(data: bytes, max_duration_s: float) -> DecodedAudio:
        raise MemoryError

    monkeypatch.setattr(decode_mod, "_decode", process_oom)
    with pytest.raises(MemoryError):
        decode_audio(b"x" * 100, max_duration_s=5)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT"])
@pytest.mark.parametrize("channels", [1, 2, 5])
def test_16_khz_wav_takes_the_native_path_with_the_same_samples(subtype, channels) -> None:
    """libsndfile reads 16 kHz PCM/float WAV without FFmpeg; what comes out is bit for bit
    what the PyAV path gives (the cache key and funasr parity depend on it)."""
    import soundfile

    base = noise(1.5, seed=3)
    frames = np.stack([base * (0.3 + 0.1 * c) for c in range(channels)], axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, frames, SAMPLE_RATE, subtype=subtype, format="WAV")
    data = buffer.getvalue()
    native = decode_mod._read_native_wav(data, max_duration_s=600)
    assert native is not None
    assert np.array_equal(native.samples, decode_mod._decode(data, 600).samples)
    assert native.samples.flags.c_contiguous and native.samples.dtype == np.float32
    assert decode_audio(data, max_duration_s=600).codec == native.codec


@pytest.mark.parametrize(("rate", "fmt"), [(48_000, "wav"), (16_000, "flac"), (16_000, "mp3")])
def test_anything_else_goes_through_pyav(rate: int, fmt: str) -> None:
    assert decode_mod._read_native_wav(encode(noise(1.0, seed=1), rate, fmt), 600) is None


def test_the_native_path_enforces_the_duration_limit() -> None:
    with pytest.raises(PayloadTooLargeError, match=r"2\.0 s"):
        decode_audio(encode(noise(2.0, seed=1), SAMPLE_RATE, "wav"), max_duration_s=1.5)
