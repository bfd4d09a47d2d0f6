"""Uploads the ingress reads itself: 16 kHz WAV that fits one piece, by the decoder's rules."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import soundfile

from asr_serve.audio.decode import DecodedAudio, decode_audio
from asr_serve.config import SAMPLE_RATE, AppConfig, SplittingConfig
from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.errors import InvalidAudioError, PayloadTooLargeError
from asr_serve.serving.in_place import IN_PLACE_MAX_BYTES, ReadInPlaceFirst
from asr_serve.serving.pipeline import TranscriptionPipeline
from asr_serve.serving.requests import Upload
from devtools.speech import encode, noise

CONFIG = AppConfig.model_validate(
    {
        "models": [{"name": "a", "engine": "faster-whisper", "model": "embedded"}],
        "limits": {"max_audio_s": 20, "min_audio_s": 0.1},
        "splitting": {"max_piece_s": 10},
    }
)


class Metrics:
    """Records what :class:`~asr_serve.deployments.serve_metrics.DecoderMetrics` would be told."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.codes: list[str] = []

    def decoded(self, audio: DecodedAudio, seconds: float) -> None:
        self.seconds.append(audio.duration_s)

    def refused(self, code: str) -> None:
        self.codes.append(code)


async def _no_decoder(data: bytes, splitting: SplittingConfig) -> DecodedAudio:
    raise AssertionError("read in place only")


def _reader(metrics: Metrics | None = None) -> ReadInPlaceFirst:
    return ReadInPlaceFirst(CONFIG, _no_decoder, metrics)  # type: ignore[arg-type]


def _wav(seconds: float, *, subtype: str = "PCM_16", channels: int = 1) -> bytes:
    frames = np.stack([noise(seconds, seed=2)] * channels, axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, frames, SAMPLE_RATE, subtype=subtype, format="WAV")
    return buffer.getvalue()


@pytest.mark.parametrize(("subtype", "channels"), [("PCM_16", 1), ("FLOAT", 2)])
def test_a_short_16_khz_wav_is_read_as_the_decoder_would(subtype: str, channels: int) -> None:
    data = _wav(2.0, subtype=subtype, channels=channels)
    metrics = Metrics()
    audio = _reader(metrics).read(data)
    assert audio is not None
    decoded = decode_audio(data, max_duration_s=20)
    assert np.array_equal(audio.samples, decoded.samples)
    assert (audio.codec, audio.container, audio.pieces) == (decoded.codec, "wav", None)
    assert metrics.seconds == [2.0]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(encode(noise(2.0, seed=1), 48_000, "wav"), id="wav at 48 kHz"),
        pytest.param(encode(noise(2.0, seed=1), SAMPLE_RATE, "flac"), id="flac"),
        pytest.param(encode(noise(2.0, seed=1), SAMPLE_RATE, "mp3"), id="mp3"),
        pytest.param(_wav(12.0), id="longer than a piece: the decoder splits it"),
        pytest.param(_wav(2.0, channels=20), id="over the size read in place"),
        pytest.param(b"RIFF\x10\x00\x00\x00WAVEfmt junk", id="broken: the decoder names it"),
    ],
)
def test_everything_else_is_left_to_the_decoder(data: bytes) -> None:
    assert len(_wav(2.0, channels=20)) > IN_PLACE_MAX_BYTES
    assert _reader().read(data) is None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (_wav(25.0), PayloadTooLargeError),
        (_wav(0.05), InvalidAudioError),
        (_wav(1.0, subtype="FLOAT")[:-4] + np.float32(np.nan).tobytes(), InvalidAudioError),
    ],
    ids=["over max_audio_s", "under min_audio_s", "NaN samples"],
)
def test_limits_and_errors_are_the_decoders(data: bytes, error: type[Exception]) -> None:
    metrics = Metrics()
    with pytest.raises(error) as raised:
        _reader(metrics).read(data)
    with pytest.raises(error) as by_decoder:
        decode_audio(data, max_duration_s=20, min_duration_s=0.1)
    assert str(raised.value) == str(by_decoder.value)
    assert metrics.codes == [raised.value.code]


def test_the_pipeline_sends_only_what_it_cannot_read_to_the_decoder() -> None:
    sent: list[bytes] = []

    async def decode(data: bytes, splitting: SplittingConfig) -> DecodedAudio:
        sent.append(data)
        return decode_audio(data, max_duration_s=20)

    async def transcribe(
        model: str, audio: np.ndarray, options: TranscribeOptions, _: bool, __: str
    ):
        return EngineResult(text=f"{len(audio)}", duration=len(audio) / SAMPLE_RATE)

    pipeline = TranscriptionPipeline(
        CONFIG, decode=ReadInPlaceFirst(CONFIG, decode), transcribe=transcribe
    )
    wav, flac = _wav(2.0), encode(noise(2.0, seed=1), SAMPLE_RATE, "flac")

    async def run(data: bytes) -> str:
        job = await pipeline.start(Upload(data=data, fields={}))
        return (await pipeline.finish(job)).result.text

    assert asyncio.run(run(wav)) == asyncio.run(run(flac)) == "32000"
    assert sent == [flac]
