"""Helpers for live-session tests: espeak speech with known pauses, PCM as clients send it,
and the real engine with what it says for that speech as a file."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest
import soxr

from asr_serve.config import ModelConfig
from asr_serve.engines.base import Engine, EngineResult, TranscribeOptions
from asr_serve.engines.funasr import FunASREngine
from asr_serve.engines.whisper import WhisperEngine
from asr_serve.live.decode import DecodeKind, DecodeRequest, Transcriber
from asr_serve.testing.speech import synthesize
from asr_serve.testing.text import SENTENCES
from tests.live.server import whisper_engine

SR = 16_000
#: Samples quieter than this are silence when a sentence's audible bounds are measured.
_SILENCE = 1e-3


@dataclass(frozen=True)
class Speech:
    audio: np.ndarray  # 16 kHz mono float32
    texts: tuple[str, ...]
    #: Each sentence's audible ``[start, end)`` in samples.
    spans: tuple[tuple[int, int], ...]

    def sentence(self, i: int, pad_s: float = 0.3) -> np.ndarray:
        """Sentence ``i`` alone, with ``pad_s`` of its surrounding silence."""
        start, end = self.spans[i]
        pad = round(pad_s * SR)
        return self.audio[max(0, start - pad) : end + pad]


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``pytest.mark.anyio``) run on asyncio, as Serve does."""
    return "asyncio"


def speech_with_pauses(texts: list[str], pause_s: float) -> Speech:
    """The sentences spoken one after another with exactly ``pause_s`` of silence between
    them (espeak's own leading and trailing silence trimmed), 0.5 s before and 1 s after
    (enough for any ``silence_duration_ms`` the tests use to end the last one)."""
    lead = np.zeros(SR // 2, dtype=np.float32)
    tail = np.zeros(SR, dtype=np.float32)
    pause = np.zeros(round(pause_s * SR), dtype=np.float32)
    parts, spans, at = [lead], [], len(lead)
    for i, text in enumerate(texts):
        voice = synthesize(text, lead_s=0.0)
        audible = np.flatnonzero(np.abs(voice) > _SILENCE)
        voice = voice[audible[0] : audible[-1] + 1]
        spans.append((at, at + len(voice)))
        parts += [voice, pause if i < len(texts) - 1 else tail]
        at += len(voice) + len(parts[-1])
    return Speech(np.concatenate(parts), tuple(texts), tuple(spans))


def pcm16(audio: np.ndarray, rate: int) -> bytes:
    """16 kHz float32 as a client sends it: PCM16 little-endian at ``rate``."""
    resampled = audio if rate == SR else soxr.resample(audio, SR, rate)
    return (np.clip(resampled, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


class FakeTranscriber:
    """Answers each decode with one word per half second of audio: ``w0 w1 ...``.

    The text grows with the audio as a real model's would, so partial results and the
    final's relation to them are predictable. ``requests`` records every call.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.requests: list[DecodeRequest] = []

    async def __call__(self, request: DecodeRequest) -> EngineResult:
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        words = len(request.audio) * 2 // SR
        return EngineResult(
            text=" ".join(f"w{i}" for i in range(words)), duration=len(request.audio) / SR
        )


@pytest.fixture(scope="session")
def whisper() -> WhisperEngine:
    return whisper_engine()


@pytest.fixture(scope="session")
def speech() -> Speech:
    """A short sentence (4 s), a pause, then a long one (6.3 s) for partials to run ahead of."""
    return speech_with_pauses([SENTENCES[0], SENTENCES[2]], pause_s=1.0)


@pytest.fixture(scope="session")
def references(whisper: WhisperEngine, speech: Speech) -> list[str]:
    """What Whisper says for each sentence as a file (with the padding a recording has)."""
    audios = [speech.sentence(i) for i in range(len(speech.texts))]
    return [r.text for r in whisper.transcribe(audios, [TranscribeOptions()] * len(audios))]


@pytest.fixture(scope="session")
def tiny_funasr(tiny_model_dir) -> FunASREngine:
    """The generated tiny Fun-ASR-Nano: random weights, so its text is gibberish, but the
    same audio always gives the same text."""
    config = ModelConfig(
        name="tiny-fun-asr-nano",
        engine="funasr",
        model=str(tiny_model_dir),
        device="cpu",
        max_new_tokens=8,
    )
    engine = FunASREngine(config)
    engine.load()
    return engine


class Recorder:
    """A transcriber that passes every request on and keeps the finals', to decode them again
    alone: what the engine says for exactly the audio a session sent it."""

    def __init__(self, transcriber: Transcriber) -> None:
        self._transcriber = transcriber
        self.finals: list[DecodeRequest] = []

    async def __call__(self, request: DecodeRequest) -> EngineResult | None:
        if request.kind is DecodeKind.FINAL:
            self.finals.append(request)
        return await self._transcriber(request)

    def finals_alone(self, engine: Engine) -> list[EngineResult]:
        return [engine.transcribe([r.audio], [r.options])[0] for r in self.finals]
