"""Live input audio to what the engines read: 16 kHz mono float32, chunk by chunk.

Clients stream raw samples: little-endian PCM16 at the rate they declared (OpenAI's default
is 24 kHz) or 8 kHz G.711 (μ-law, A-law). A session converts each chunk as it arrives with
a resampler that keeps its filter state across chunks, so chunk boundaries do not click and
the result equals converting the whole stream at once.

Resampling is ``soxr.ResampleStream`` (HQ), cheaper per chunk at any quality than PyAV's
``AudioResampler``, which spends most of its time building ``AudioFrame``s and copying them
back to numpy (benchmarks/README.md, "Figures behind the code"). HQ holds back about 21 ms
of a 24 kHz stream (66 ms at 8 kHz) until more audio or :meth:`flush`. G.711 is expanded by
FFmpeg's ``pcm_mulaw`` / ``pcm_alaw`` decoders through PyAV, not by tables of our own.
"""

from __future__ import annotations

from typing import Annotated, Literal

import av
import numpy as np
import soxr
from pydantic import BaseModel, ConfigDict, Field, model_validator

from asr_serve.config import SAMPLE_RATE
from asr_serve.errors import InvalidAudioError

#: ``pcm16``: signed 16-bit little-endian; ``pcmu`` / ``pcma``: G.711 μ-law / A-law, 8 kHz.
Encoding = Literal["pcm16", "pcmu", "pcma"]

#: Rates a client may declare for PCM16.
SampleRate = Annotated[int, Field(ge=8_000, le=96_000)]

_G711_CODECS = {"pcmu": "pcm_mulaw", "pcma": "pcm_alaw"}
_G711_RATE = 8_000
_INT16_SCALE = 1.0 / 32768.0


class InputFormat(BaseModel):
    """What a client streams: mono samples in ``encoding`` at ``rate`` Hz."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoding: Encoding = "pcm16"
    rate: SampleRate = 24_000

    @model_validator(mode="after")
    def _g711_is_8k(self) -> InputFormat:
        if self.encoding != "pcm16" and self.rate != _G711_RATE:
            raise ValueError(f"{self.encoding} is 8000 Hz, not {self.rate}")
        return self

    @property
    def bytes_per_second(self) -> int:
        return self.rate * (2 if self.encoding == "pcm16" else 1)


class PCMDecoder:
    """Converts one session's stream of raw chunks; keeps resampler state between them."""

    def __init__(self, fmt: InputFormat) -> None:
        self.format = fmt
        self._g711 = None
        if fmt.encoding in _G711_CODECS:
            self._g711 = av.CodecContext.create(_G711_CODECS[fmt.encoding], "r")
            self._g711.sample_rate = _G711_RATE
            self._g711.layout = "mono"
        self._resampler = (
            None
            if fmt.rate == SAMPLE_RATE
            else soxr.ResampleStream(fmt.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        )

    def decode(self, data: bytes) -> np.ndarray:
        """The 16 kHz samples ``data`` completes (a few ms may stay in the resampler)."""
        return self._resample(self._to_float(data), last=False)

    def flush(self) -> np.ndarray:
        """What the resampler still holds; the next chunk starts a fresh stream."""
        tail = self._resample(np.zeros(0, dtype=np.float32), last=True)
        if self._resampler is not None:
            self._resampler.clear()
        return tail

    def _to_float(self, data: bytes) -> np.ndarray:
        if self._g711 is None:
            if len(data) % 2:
                raise InvalidAudioError(
                    f"PCM16 audio must be whole 2-byte samples; got {len(data)} bytes",
                    param="audio",
                )
            return np.frombuffer(data, dtype="<i2").astype(np.float32) * _INT16_SCALE
        frames = self._g711.decode(av.Packet(data)) if data else []
        if not frames:
            return np.zeros(0, dtype=np.float32)
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
        return pcm.astype(np.float32) * _INT16_SCALE

    def _resample(self, samples: np.ndarray, *, last: bool) -> np.ndarray:
        if self._resampler is None:
            return samples
        return self._resampler.resample_chunk(samples, last=last)
