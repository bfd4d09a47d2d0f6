"""The uploads the ingress reads itself instead of sending them to the AudioDecoder.

A 16 kHz PCM or float WAV that fits one piece needs no decoding, no resampling and no VAD:
its samples are a copy of its bytes (libsndfile). Sending it to the decoder deployment
costs far more than reading it, all of it serving overhead: a handle call from the ingress
(Serve's router, a call to another replica), the decoder's request machinery, and the
samples serialised back to the ingress (benchmarks/README.md, "Where the time goes").
Everything else (compressed formats, other sample rates, long files to split) goes to the
decoder.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from asr_serve.audio.decode import DecodedAudio, read_native_wav
from asr_serve.config import AppConfig, SplittingConfig
from asr_serve.errors import ASRServeError
from asr_serve.timing import READ, record

if TYPE_CHECKING:
    from asr_serve.serving.pipeline import DecodeFn

#: Larger uploads go to the decoder, which reads them off its event loop. 1 MiB is 32 s of
#: mono 16-bit WAV, longer than a piece, and small enough to read without stalling the
#: ingress's loop.
IN_PLACE_MAX_BYTES = 1 << 20


class DecodeCounters(Protocol):
    """What reading uploads counts; the ingress replica binds it to Serve's metrics, as the
    AudioDecoder does (:class:`asr_serve.deployments.serve_metrics.DecoderMetrics`)."""

    def decoded(self, audio: DecodedAudio, seconds: float) -> None: ...

    def refused(self, code: str) -> None: ...


class ReadInPlaceFirst:
    """A ``decode`` (the AudioDecoder deployment's call) that reads what needs no decoding
    here first: file requests and FunASR's whole-file live input both go through it.

    Same limits and errors as the decoder (the same checks in
    :func:`~asr_serve.audio.decode.read_native_wav`), counted in the same metrics.
    """

    def __init__(
        self, config: AppConfig, decode: DecodeFn, metrics: DecodeCounters | None = None
    ) -> None:
        self.limits = config.limits
        self.max_piece_s = config.splitting.max_piece_s
        self.metrics = metrics
        self._decode = decode

    async def __call__(
        self, data: bytes, splitting: SplittingConfig, regions: bool = False
    ) -> DecodedAudio:
        """``regions`` (diarization): the decoder's VAD is needed whatever the upload."""
        if regions:
            return await self._decode(data, splitting, regions)
        return self.read(data) or await self._decode(data, splitting)

    def read(self, data: bytes) -> DecodedAudio | None:
        """The upload's audio if it needs no decoding, else ``None`` (for the decoder)."""
        if len(data) > IN_PLACE_MAX_BYTES:
            return None
        started = time.perf_counter()
        try:
            audio = read_native_wav(
                data, max_duration_s=self.limits.max_audio_s, min_duration_s=self.limits.min_audio_s
            )
        except ASRServeError as exc:
            if self.metrics:
                self.metrics.refused(exc.code)
            raise
        if audio is None or audio.duration_s > self.max_piece_s:  # the decoder splits it
            return None
        elapsed = time.perf_counter() - started
        record(READ, elapsed)
        if self.metrics:
            self.metrics.decoded(audio, elapsed)
        return audio
