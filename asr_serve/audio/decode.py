"""Turn an uploaded audio file into the 16 kHz mono float32 samples every ASR engine expects.

Decoding runs in memory with PyAV (libavformat/libavcodec/libswresample): no ffmpeg subprocess,
no temp files. Uploads are untrusted, so the decoder only opens audio-capable demuxers, checks
the declared duration before decoding, re-checks the real duration while decoding (headers
lie), and reports every failure as an :class:`InvalidAudioError` (400) or a
:class:`PayloadTooLargeError` (413). A file with no audio stream (video-only, subtitles) is a
400 like any other unusable upload; 415 is left to the ingress's Content-Type checks.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np
import soundfile

from asr_serve.config import SAMPLE_RATE
from asr_serve.errors import ASRServeError, InvalidAudioError, PayloadTooLargeError

#: A piece of a file: ``[start, end)`` in samples of its 16 kHz decoded audio. Long files are
#: transcribed as pieces cut at speech pauses (:mod:`asr_serve.audio.splitting`).
Piece = tuple[int, int]

MAX_CHANNELS = 64
MAX_SAMPLE_RATE = 768_000
# Float durations (metadata, summed frames) must not turn audio exactly at the limit into a 413.
_ROUNDING_S = 1e-6

# Only demuxers that carry audio are opened: playlist/concat/image demuxers would otherwise let an
# upload make FFmpeg open other files or URLs, or turn a PNG into a "stream".
_DEMUXERS = (
    "wav,w64,aiff,flac,mp3,ogg,matroska,webm,mov,mp4,m4a,aac,caf,au,amr,ac3,eac3,"
    "wv,ape,tta,asf,avi,mpeg,mpegts,voc,loas"
)
_FULL_PROBE = {"format_whitelist": _DEMUXERS}
_QUICK_PROBE = {**_FULL_PROBE, "probesize": "4096"}


@dataclass(frozen=True)
class DecodedAudio:
    """Decoded samples plus what the upload looked like, for logs and usage accounting."""

    samples: np.ndarray
    """16 kHz mono float32, 1-D, C-contiguous."""
    duration_s: float
    source_sample_rate: int
    source_channels: int
    codec: str
    container: str
    pieces: tuple[Piece, ...] | None = None
    """The pieces to transcribe, set by the decoder's VAD for audio longer than one model
    window; ``None``: the whole file is one piece."""

    def pieces_to_transcribe(self) -> tuple[Piece, ...]:
        """The planned pieces, or the whole file as one piece when it was not split."""
        return ((0, len(self.samples)),) if self.pieces is None else self.pieces


def decode_audio(
    data: bytes, *, max_duration_s: float, min_duration_s: float = 0.0
) -> DecodedAudio:
    """Decode any common audio upload to 16 kHz mono float32.

    Raises InvalidAudioError for anything that is not decodable, finite audio of at least
    ``min_duration_s``, and PayloadTooLargeError for audio longer than ``max_duration_s``.
    Clips shorter than the resampler's filter (about 30 input samples or 2 ms of output) can
    come out a few samples short, or empty, which is an InvalidAudioError.
    """
    if not data:
        raise InvalidAudioError("The audio file is empty.", param="file")
    try:
        audio = _read_native_wav(data, max_duration_s) or _decode(data, max_duration_s)
    except ASRServeError:
        raise
    except Exception as exc:  # PyAV raises many types on hostile input; all mean "not audio".
        # This process out of memory is not the upload's fault; FFmpeg refusing the absurd
        # allocation a corrupt header asks for (av.error.MemoryError, ENOMEM) is.
        if isinstance(exc, MemoryError) and not isinstance(exc, av.error.FFmpegError):
            raise
        kind = sniff_is_probably_not_audio(data)
        reason = f"it looks like {kind}, not audio" if kind else _describe(exc)
        raise InvalidAudioError(
            f"Could not decode the audio file: {reason}. "
            "Upload a supported format such as WAV, FLAC, MP3, OGG, WebM or M4A.",
            param="file",
        ) from exc
    return _checked(audio, min_duration_s)


def read_native_wav(
    data: bytes, *, max_duration_s: float, min_duration_s: float = 0.0
) -> DecodedAudio | None:
    """What :func:`decode_audio` returns for a 16 kHz PCM or float WAV, by the same checks;
    ``None`` for any other upload (or a WAV libsndfile cannot read), for ``decode_audio``.

    The cheap part alone, so a caller can read the commonest upload where it is without
    loading FFmpeg's work onto its thread (the ingress does, saving the decoder's hop).
    """
    audio = _read_native_wav(data, max_duration_s)
    return None if audio is None else _checked(audio, min_duration_s)


def _checked(audio: DecodedAudio, min_duration_s: float) -> DecodedAudio:
    """Finite samples, at least ``min_duration_s`` of them, whichever way they were read."""
    if not np.isfinite(audio.samples).all():
        raise InvalidAudioError("The audio contains NaN or infinite samples.", param="file")
    if audio.duration_s < min_duration_s:
        raise InvalidAudioError(
            f"The audio is {audio.duration_s:.3f} s long; the minimum is {min_duration_s:g} s.",
            param="file",
        )
    return audio


#: WAV already at 16 kHz, in the sample formats libsndfile turns into float32 exactly as
#: FFmpeg does (integers divided by their full scale): the bulk of what ASR clients upload.
#: libsndfile's subtype -> FFmpeg's codec name, so logs name the codec the same either way.
_NATIVE_WAV_CODECS = {
    "PCM_16": "pcm_s16le",
    "PCM_24": "pcm_s24le",
    "PCM_32": "pcm_s32le",
    "FLOAT": "pcm_f32le",
}


def _read_native_wav(data: bytes, max_duration_s: float) -> DecodedAudio | None:
    """A 16 kHz PCM or float WAV read by libsndfile straight into float32; ``None`` for
    anything else, which PyAV decodes.

    Not PyAV here, because a WAV needs no decoding and no resampling, and FFmpeg's demuxer,
    decoder and resampler cost an order of magnitude more for the same samples
    (benchmarks/README.md, "Where the time goes"); the samples are bit-identical
    (tests/audio/test_decode.py). WAV only: its samples are at
    most the upload's bytes, so nothing here can be a decompression bomb.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":  # not a WAV: not libsndfile's to probe
        return None
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as wav:
            if (
                wav.format not in ("WAV", "WAVEX")
                or wav.subtype not in _NATIVE_WAV_CODECS
                or wav.samplerate != SAMPLE_RATE
                or not 0 < wav.channels <= MAX_CHANNELS
            ):
                return None
            frames = wav.read(dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError):
        return None  # PyAV judges it, and names the problem
    channels = frames.shape[1]
    # As the PyAV path does: channels averaged in numpy, one contiguous float32 array.
    samples = np.ascontiguousarray(frames[:, 0] if channels == 1 else frames.mean(axis=1))
    if samples.size / SAMPLE_RATE > max_duration_s + _ROUNDING_S:
        raise _too_long(max_duration_s, samples.size / SAMPLE_RATE)
    if samples.size == 0:
        return None
    return DecodedAudio(
        samples=samples,
        duration_s=samples.size / SAMPLE_RATE,
        source_sample_rate=SAMPLE_RATE,
        source_channels=channels,
        codec=_NATIVE_WAV_CODECS[wav.subtype],
        container="wav",
    )


def _open(data: bytes) -> av.container.InputContainer:
    """Open ``data`` with a short stream-info probe, or FFmpeg's full one if that falls short.

    FFmpeg reads up to ``probesize`` (5 MB) to fill in stream parameters; for WAV that is a
    fixed cost whatever the file's length, most of the time of decoding a short clip. Every format
    the tests cover states its parameters in the first few KB; a file whose audio stream is
    still unknown after them is opened again with the full probe.
    """
    try:
        container = _open_with(data, _QUICK_PROBE)
    except Exception:  # judged by the full probe below, which raises what it finds
        container = None
    if container is not None:
        if _audio_params_known(container):
            return container
        container.close()
    return _open_with(data, _FULL_PROBE)


def _open_with(data: bytes, options: dict[str, str]) -> av.container.InputContainer:
    return av.open(io.BytesIO(data), mode="r", options=options, metadata_errors="ignore")


def _audio_params_known(container: av.container.InputContainer) -> bool:
    streams = container.streams.audio
    if not streams:
        return False
    ctx = streams[0].codec_context
    return ctx.sample_rate > 0 and ctx.channels > 0


def _decode(data: bytes, max_duration_s: float) -> DecodedAudio:
    with _open(data) as container:
        if not container.streams.audio:
            raise InvalidAudioError("The file contains no audio stream.", param="file")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        _check_params(ctx.sample_rate, ctx.channels)
        declared = _declared_duration(container, stream)
        if declared is not None and declared > max_duration_s + _ROUNDING_S:
            raise _too_long(max_duration_s, declared)

        chunks: list[np.ndarray] = []
        resampler: av.AudioResampler | None = None
        setup: tuple[str, str, int] | None = None
        decoded_s = 0.0
        for frame in container.decode(stream):
            _check_params(frame.sample_rate, frame.layout.nb_channels)
            decoded_s += frame.samples / frame.sample_rate
            if decoded_s > max_duration_s + _ROUNDING_S:  # The header lied: stop decoding now.
                raise _too_long(max_duration_s)
            # A resampler is bound to one input layout; chained Ogg or odd MP3s can switch mid-file.
            frame_setup = (frame.format.name, frame.layout.name, frame.sample_rate)
            if frame_setup != setup:
                if resampler is not None:
                    _drain(resampler, None, chunks)
                # Keep the source layout: libswresample's float downmix is a sum at -3 dB, not
                # an average, so channels are averaged in numpy instead. Interleaved, because
                # PyAV miscounts the planes of planar frames with 8 or more channels.
                resampler = av.AudioResampler(format="flt", rate=SAMPLE_RATE)
                setup = frame_setup
            _drain(resampler, frame, chunks)
        if resampler is not None:
            _drain(resampler, None, chunks)

        samples = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.float32)
        if samples.size == 0:
            raise InvalidAudioError("The file contains no audio samples.", param="file")
        return DecodedAudio(
            samples=samples,
            duration_s=samples.size / SAMPLE_RATE,
            source_sample_rate=ctx.sample_rate,
            source_channels=ctx.channels,
            codec=ctx.name,
            container=container.format.name,
        )


def _drain(
    resampler: av.AudioResampler, frame: av.AudioFrame | None, chunks: list[np.ndarray]
) -> None:
    """Resample one frame (or flush with None) and append its channel average to ``chunks``."""
    for out in resampler.resample(frame):
        channels = out.layout.nb_channels
        interleaved = out.to_ndarray()[0]  # a view of the frame's buffer
        chunks.append(
            interleaved if channels == 1 else interleaved.reshape(-1, channels).mean(axis=1)
        )


def _check_params(sample_rate: int, channels: int) -> None:
    """Reject parameters no real recording has; they only come from corrupt or hostile files."""
    if not 0 < sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidAudioError(
            f"Unsupported sample rate {sample_rate} Hz (must be 1..{MAX_SAMPLE_RATE}).",
            param="file",
        )
    if not 0 < channels <= MAX_CHANNELS:
        raise InvalidAudioError(
            f"Unsupported channel count {channels} (must be 1..{MAX_CHANNELS}).", param="file"
        )


def _declared_duration(
    container: av.container.InputContainer, stream: av.AudioStream
) -> float | None:
    """Duration from metadata, preferring the audio stream's own over the container's."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _too_long(max_duration_s: float, declared: float | None = None) -> PayloadTooLargeError:
    got = f"is {declared:.1f} s long" if declared is not None else "is longer than that"
    return PayloadTooLargeError(
        f"Audio longer than {max_duration_s:g} s is not accepted; this file {got}.", param="file"
    )


_NOT_AUDIO_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
)


def sniff_is_probably_not_audio(data: bytes) -> str | None:
    """Name a clearly non-audio upload ("an HTML document") so the 400 says what went wrong.

    Only consulted after decoding failed; it never rejects anything by itself.
    """
    for magic, kind in _NOT_AUDIO_MAGIC:
        if data.startswith(magic):
            return kind
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "an HTML document"
    if head.startswith((b"{", b"[")):
        return "JSON"
    if head.startswith(b"<?xml"):
        return "an XML document"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in data[:512]):
        return "text"
    return None


def _describe(exc: Exception) -> str:
    """A short reason for the client: FFmpeg's message without errno or internal paths."""
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return str(exc.strerror).lower()
    return str(exc).strip() or type(exc).__name__
