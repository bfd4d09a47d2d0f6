"""A corpus of hostile uploads, generated in memory, each with the answer the API must give.

Used by the end-to-end tests (every case posted through real Serve HTTP) and listed in
``tests/README.md``. Nothing here is a binary from elsewhere: audio is synthesised with
PyAV and numpy, then broken on purpose.
"""

from __future__ import annotations

import io
import struct
import wave
import zipfile
import zlib
from dataclasses import dataclass, field

import av
import numpy as np

from devtools.speech import encode, noise

GOOD_SECONDS = 1.0
BOUNDARY = "hostileboundary"


@dataclass(frozen=True)
class HostileCase:
    """One request: a multipart upload (or a raw body) and the status and code it must get."""

    name: str
    status: int
    #: The OpenAI error ``code``; ``None`` for a 200.
    code: str | None
    file: bytes = b""
    filename: str = "audio.wav"
    fields: dict[str, str] = field(default_factory=dict)
    #: A body sent as is, instead of a multipart form built from ``file`` and ``fields``.
    raw_body: bytes | None = None
    content_type: str | None = None


def good_wav(seconds: float = GOOD_SECONDS, seed: int = 3) -> bytes:
    return encode(noise(seconds, seed), 16000, "wav")


def pcm_wav(samples: np.ndarray, sample_rate: int = 16000) -> bytes:
    """16-bit PCM WAV with a canonical 44-byte header, so fields sit at textbook offsets.

    ``samples`` is mono, or ``(channels, samples)`` with each channel written as given.
    """
    channels = np.atleast_2d(samples)
    pcm = np.round(np.clip(channels.T, -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels.shape[0])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def float_wav_with(value: float) -> bytes:
    samples = noise(0.5, 5)
    samples[100] = value
    return encode(samples, 16000, "wavf32")


def flac_bomb(hours: float = 2.0, rate: int = 4000, *, hide_length: bool = False) -> bytes:
    """A ~15 KB FLAC of silence that decodes to ``hours`` of audio (65535-sample frames).

    ``hide_length`` zeroes STREAMINFO's total-sample count, so only the running duration
    while decoding can catch it.
    """
    buf = io.BytesIO()
    block = np.zeros((1, 65536), np.int16)
    with av.open(buf, mode="w", format="flac") as out:
        stream = out.add_stream(
            "flac", rate=rate, options={"frame_size": "65535", "compression_level": "12"}
        )
        stream.layout = "mono"
        for pts in range(0, int(hours * 3600 * rate), block.shape[1]):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, pts
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = bytearray(buf.getvalue())
    if hide_length:
        data[21] &= 0xF0  # total_samples: 36 bits from the low nibble of byte 21
        struct.pack_into(">I", data, 22, 0)
    return bytes(data)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("audio.wav", good_wav(0.1))
    return buf.getvalue()


def _png() -> bytes:
    """A real 1x1 PNG (signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


def _form(**fields: str) -> bytes:
    """A multipart body of text fields only (httpx would send those url-encoded)."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    return "".join([*parts, f"--{BOUNDARY}--\r\n"]).encode()


def hostile_corpus(*, max_upload_bytes: int, max_prompt_chars: int) -> list[HostileCase]:
    """Every hostile case, for an app with these limits (taken from its config)."""
    wav = good_wav()
    speech_wav = pcm_wav(noise(1.0, 4))
    bad = "invalid_audio"
    cases = [
        HostileCase("empty file", 400, bad, b""),
        HostileCase("random bytes", 400, bad, np.random.default_rng(0).bytes(8192)),
        HostileCase("text as .wav", 400, bad, b"the quick brown fox\n" * 100),
        HostileCase("html as .wav", 400, bad, b"<!DOCTYPE html><html><body>hi</body></html>"),
        HostileCase("png as .wav", 400, bad, _png()),
        HostileCase("zip as .wav", 400, bad, _zip()),
        *(
            HostileCase(f"truncated {fmt}", 400, bad, encode(noise(1.0, 6), 16000, fmt)[:12])
            for fmt in ("mp3", "flac", "ogg-opus", "wav")
        ),
        HostileCase("wav: sample rate 0", 400, bad, patch(speech_wav, 24, "<I", 0)),
        HostileCase("wav: zero channels", 400, bad, patch(speech_wav, 22, "<H", 0)),
        HostileCase("wav: 60000 channels", 400, bad, patch(speech_wav, 22, "<H", 60000)),
        HostileCase("wav: 2 MHz sample rate", 400, bad, patch(speech_wav, 24, "<I", 2_000_000)),
        # Streaming recorders write such headers; the samples that are there are decoded.
        HostileCase(
            "wav: data length far beyond the file",
            200,
            None,
            patch(speech_wav, 40, "<I", 0x7FFF0000),
        ),
        HostileCase("wav: a single sample", 400, bad, pcm_wav(np.array([0.5], np.float32))),
        HostileCase("float wav with NaN", 400, bad, float_wav_with(np.nan)),
        HostileCase("float wav with Inf", 400, bad, float_wav_with(np.inf)),
        HostileCase("bomb: 2 h of FLAC in 15 KB", 413, "payload_too_large", flac_bomb()),
        HostileCase(
            "bomb: same, length hidden",
            413,
            "payload_too_large",
            flac_bomb(hide_length=True),
        ),
        HostileCase(
            "upload one byte over the limit",
            413,
            "payload_too_large",
            np.random.default_rng(2).bytes(max_upload_bytes + 1),
        ),
        HostileCase(
            "upload 3x the limit (Content-Length)",
            413,
            "payload_too_large",
            np.random.default_rng(1).bytes(3 * max_upload_bytes),
        ),
        HostileCase(
            "malformed multipart",
            400,
            "invalid_request",
            raw_body=f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\n\x00".encode(),
            content_type=f"multipart/form-data; boundary={BOUNDARY}",
        ),
        HostileCase(
            "multipart without boundary",
            400,
            "invalid_request",
            raw_body=b"--x\r\n\r\n",
            content_type="multipart/form-data",
        ),
        HostileCase(
            "not multipart", 415, "unsupported_media_type", raw_body=wav, content_type="audio/wav"
        ),
        HostileCase(
            "file sent as a text field",
            400,
            "invalid_request",
            raw_body=_form(file="not a file"),
            content_type=f"multipart/form-data; boundary={BOUNDARY}",
        ),
        HostileCase(
            "no file field",
            400,
            "invalid_request",
            raw_body=_form(model="tiny", response_format="json"),
            content_type=f"multipart/form-data; boundary={BOUNDARY}",
        ),
        HostileCase(
            "temperature not a number", 422, "invalid_parameter", wav, fields={"temperature": "hot"}
        ),
        HostileCase(
            "temperature out of range", 422, "invalid_parameter", wav, fields={"temperature": "7"}
        ),
        HostileCase(
            "unknown timestamp granularity",
            422,
            "invalid_parameter",
            wav,
            fields={"timestamp_granularities[]": "sentence"},
        ),
        HostileCase(
            "unknown response_format",
            422,
            "invalid_parameter",
            wav,
            fields={"response_format": "mp4"},
        ),
        HostileCase("unknown model", 404, "model_not_found", wav, fields={"model": "gpt-4o"}),
        HostileCase(
            "language not a code", 422, "invalid_parameter", wav, fields={"language": "../x"}
        ),
        HostileCase(
            "prompt over max_prompt_chars",
            422,
            "invalid_parameter",
            wav,
            fields={"prompt": "a" * (max_prompt_chars + 1)},
        ),
        HostileCase(
            "prompt over the form's field limit",
            400,
            "invalid_request",
            wav,
            fields={"prompt": "a" * (512 << 10)},
        ),
        # The file name is never used as a path: the upload is decoded in memory.
        HostileCase("path traversal file name", 200, None, wav, filename="../../../../etc/passwd"),
        HostileCase("NUL in file name", 200, None, wav, filename="a\x00.wav/../../x"),
    ]
    return cases
