"""Fixtures for live-session tests: a fake model, the real engines, espeak speech with known
pauses and what the engine says for it as a file."""

from __future__ import annotations

import asyncio

import pytest

from asr_serve.config import ModelConfig
from asr_serve.engines.base import Engine, EngineResult, TranscribeOptions
from asr_serve.engines.funasr import FunASREngine
from asr_serve.engines.whisper import WhisperEngine
from asr_serve.live.transcribe import Transcribe, TranscribeKind, TranscribeRequest
from devtools.speech import Speech, speech_with_pauses
from devtools.text import SENTENCES
from tests.live.server import whisper_engine

SR = 16_000
#: The language :class:`FakeTranscriber` reports when a session names none.
DETECTED = "cy"


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``pytest.mark.anyio``) run on asyncio, as Serve does."""
    return "asyncio"


class FakeTranscriber:
    """Answers each decode with one word per half second of audio: ``w0 w1 ...``.

    The text grows with the audio as a real model's would, so partial results and the
    final's relation to them are predictable. ``requests`` records every call.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.requests: list[TranscribeRequest] = []

    async def __call__(self, request: TranscribeRequest) -> EngineResult:
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        words = len(request.audio) * 2 // SR
        return EngineResult(
            text=" ".join(f"w{i}" for i in range(words)),
            # Unless told the language, it "detects" one, as a multilingual model does.
            language=request.options.language or DETECTED,
            duration=len(request.audio) / SR,
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
    """A transcriber that passes every request on and keeps the finals', to transcribe again
    alone: what the engine says for exactly the audio a session sent it."""

    def __init__(self, transcriber: Transcribe) -> None:
        self._transcriber = transcriber
        self.finals: list[TranscribeRequest] = []

    async def __call__(self, request: TranscribeRequest) -> EngineResult | None:
        if request.kind is TranscribeKind.FINAL:
            self.finals.append(request)
        return await self._transcriber(request)

    def finals_alone(self, engine: Engine) -> list[EngineResult]:
        return [engine.transcribe([r.audio], [r.options])[0] for r in self.finals]
