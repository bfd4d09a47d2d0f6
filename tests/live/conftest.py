"""Helpers for live-session tests: espeak speech with known pauses, PCM as clients send it."""

from __future__ import annotations

import asyncio

import pytest

from asr_serve.engines.base import EngineResult
from asr_serve.live.decode import DecodeRequest

SR = 16_000


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
        self.requests: list[DecodeRequest] = []

    async def __call__(self, request: DecodeRequest) -> EngineResult:
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        words = len(request.audio) * 2 // SR
        return EngineResult(
            text=" ".join(f"w{i}" for i in range(words)), duration=len(request.audio) / SR
        )
