"""Test audio made in memory: espeak-ng speech, tones, noise, and encoders for every upload format.

Tests need real speech in real containers without shipping binary fixtures, so everything here
is generated on the fly with the ``espeak-ng`` CLI and PyAV; nothing touches the filesystem.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
from dataclasses import dataclass

import av
import numpy as np

from asr_serve.audio.decode import decode_audio
from asr_serve.config import SAMPLE_RATE


@dataclass(frozen=True)
class _Format:
    container: str
    codec: str
    options: tuple[tuple[str, str], ...] = ()
    fixed_channels: int | None = None


_FORMATS: dict[str, _Format] = {
    "wav": _Format("wav", "pcm_s16le"),
    "wav24": _Format("wav", "pcm_s24le"),
    "wavf32": _Format("wav", "pcm_f32le"),
    "flac": _Format("flac", "flac"),
    "mp3": _Format("mp3", "libmp3lame"),
    "ogg-opus": _Format("ogg", "libopus"),
    # FFmpeg's native Vorbis encoder is experimental and stereo-only; libvorbis is not built in.
    "ogg-vorbis": _Format("ogg", "vorbis", (("strict", "experimental"),), fixed_channels=2),
    "webm-opus": _Format("webm", "libopus"),
    "m4a": _Format("mp4", "aac"),
    "aiff": _Format("aiff", "pcm_s16be"),
}

FORMATS: tuple[str, ...] = tuple(_FORMATS)
"""Keys accepted by :func:`encode`: the upload formats the decoder must handle."""


def tone(freq: float, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A 0.5-amplitude sine: the simplest signal whose frequency survives (or not) a resampler."""
    t = np.arange(round(seconds * sample_rate), dtype=np.float64) / sample_rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, seed: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Reproducible white noise in [-0.5, 0.5]: broadband content that no codec compresses away."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, round(seconds * sample_rate)).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _espeak_wav(text: str, voice: str, speed: int, word_gap: int) -> bytes:
    """The WAV bytes espeak-ng prints; cached because tests synthesize the same phrases often."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed; run `apt-get install espeak-ng`")
    # Text goes through stdin so a phrase starting with "-" is never read as an option.
    proc = subprocess.run(
        [exe, "--stdout", "--stdin", "-v", voice, "-s", str(speed), "-g", str(word_gap)],
        input=text.encode(),
        capture_output=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(
            f"espeak-ng failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout


def synthesize(
    text: str,
    *,
    voice: str = "en-gb-x-rp",
    speed: int = 150,
    word_gap: int = 10,
    lead_s: float = 0.3,
) -> np.ndarray:
    """Speak ``text`` with espeak-ng and return it as 16 kHz mono float32, like a decoded upload.

    The defaults are clear speech: ``word_gap`` (espeak's ``-g``, in 10 ms units) pauses between
    words. Without it espeak swallows word-final consonants that tiny.en then misses ("jumps"
    heard as "jump"); with it en-us turns "hello" into "the long", the RP voice does not.
    ``lead_s`` of silence before and after, as a recording has: lossy encoders smear an onset
    at sample 0 (MP3 at 16 kHz lost the first word).
    """
    wav = _espeak_wav(text, voice, speed, word_gap)
    speech = decode_audio(wav, max_duration_s=3600.0).samples
    pad = np.zeros(round(lead_s * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([pad, speech, pad])


def encode(
    audio: np.ndarray,
    sample_rate: int,
    fmt: str,
    *,
    channels: int = 1,
    source_rate: int = SAMPLE_RATE,
) -> bytes:
    """Encode mono float32 ``audio`` (at ``source_rate``) as ``fmt`` bytes at ``sample_rate``.

    The signal is resampled with libswresample, then copied to every channel, so a decoder that
    downmixes correctly gets the original back. ``ogg-vorbis`` is always written as stereo.
    """
    try:
        spec = _FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}") from None
    codec = av.codec.Codec(spec.codec, "w")
    if codec.audio_rates and sample_rate not in codec.audio_rates:
        raise ValueError(f"{fmt} cannot encode at {sample_rate} Hz; use one of {codec.audio_rates}")
    channels = spec.fixed_channels or channels

    mono = _resample(np.ascontiguousarray(audio, dtype=np.float32), source_rate, sample_rate)
    # Interleaved: PyAV miscounts the planes of planar frames with 8 or more channels.
    frame = av.AudioFrame.from_ndarray(
        np.repeat(mono, channels)[np.newaxis, :],
        format="flt",
        layout=av.AudioLayout(f"{channels}c"),
    )
    frame.sample_rate = sample_rate
    frame.pts = 0

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=spec.container) as out:
        stream = out.add_stream(spec.codec, rate=sample_rate, options=dict(spec.options))
        stream.layout = av.AudioLayout(f"{channels}c")
        # The codec context converts sample format and frame size to what the encoder wants.
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _resample(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Mono float32 rate conversion with libswresample, flushed so the tail is kept."""
    if src_rate == dst_rate:
        return audio
    frame = av.AudioFrame.from_ndarray(audio[np.newaxis, :], format="flt", layout="mono")
    frame.sample_rate = src_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=dst_rate)
    frames = resampler.resample(frame) + resampler.resample(None)
    return np.concatenate([f.to_ndarray()[0] for f in frames])


#: Samples quieter than this are silence when a sentence's audible bounds are measured.
_SILENCE = 1e-3


@dataclass(frozen=True)
class Speech:
    """Sentences spoken with known pauses: what a live session's client streams."""

    audio: np.ndarray  # 16 kHz mono float32
    texts: tuple[str, ...]
    #: Each sentence's audible ``[start, end)`` in samples.
    spans: tuple[tuple[int, int], ...]

    def sentence(self, i: int, pad_s: float = 0.3) -> np.ndarray:
        """Sentence ``i`` alone, with ``pad_s`` of its surrounding silence."""
        start, end = self.spans[i]
        pad = round(pad_s * SAMPLE_RATE)
        return self.audio[max(0, start - pad) : end + pad]


def speech_with_pauses(texts: list[str], pause_s: float, voice: str = "en-gb-x-rp") -> Speech:
    """The sentences spoken (by espeak-ng's ``voice``) one after another with exactly
    ``pause_s`` of silence between them (espeak's own leading and trailing silence trimmed),
    0.5 s before and 1 s after (enough for any ``silence_duration_ms`` the tests use to end
    the last one)."""
    lead = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    tail = np.zeros(SAMPLE_RATE, dtype=np.float32)
    pause = np.zeros(round(pause_s * SAMPLE_RATE), dtype=np.float32)
    parts, spans, at = [lead], [], len(lead)
    for i, text in enumerate(texts):
        spoken = synthesize(text, voice=voice, lead_s=0.0)
        audible = np.flatnonzero(np.abs(spoken) > _SILENCE)
        spoken = spoken[audible[0] : audible[-1] + 1]
        spans.append((at, at + len(spoken)))
        parts += [spoken, pause if i < len(texts) - 1 else tail]
        at += len(spoken) + len(parts[-1])
    return Speech(np.concatenate(parts), tuple(texts), tuple(spans))


def encode_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1) as PCM16 little-endian: the inverse of reading PCM16, so
    samples that came from PCM16 come back bit for bit."""
    scaled = np.rint(np.asarray(samples, dtype=np.float32) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()


def pcm16(audio: np.ndarray, rate: int) -> bytes:
    """16 kHz float32 as a client sends it: PCM16 little-endian at ``rate``."""
    return encode_pcm16(_resample(audio.astype(np.float32), SAMPLE_RATE, rate))
