"""The real path in one process: the openai SDK's realtime client, exactly as a user runs it,
over a real WebSocket (uvicorn) to the adapter, the core and the embedded Whisper tiny.en.

Speech is espeak's, two sentences with a pause, streamed as 24 kHz PCM16. The live finals
must say what the same engine says for the same audio as a file.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from asr_serve.config import LiveConfig, ModelConfig
from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.engines.whisper import WhisperEngine
from asr_serve.live.decode import DecodeRequest
from asr_serve.live.metrics import LiveCounters
from asr_serve.live.protocols.openai_realtime import run_realtime_session
from asr_serve.live.scheduler import DecodeScheduler
from asr_serve.testing.speech import Speech, pcm16, speech_with_pauses
from asr_serve.testing.text import SENTENCES
from tests.support.realtime import DELTA, check_items, client_for, stream_with_sdk

pytestmark = pytest.mark.anyio

MODEL = "whisper-tiny.en"


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    config = ModelConfig(
        name=MODEL, engine="faster-whisper", model="embedded", device="cpu", cpu_threads=2
    )
    engine = WhisperEngine(config)
    engine.load()
    return engine


@pytest.fixture(scope="module")
def speech() -> Speech:
    # A short sentence (4 s), then a long one (6.3 s) for partials to run ahead of.
    return speech_with_pauses([SENTENCES[0], SENTENCES[2]], pause_s=1.0)


@pytest.fixture(scope="module")
def references(engine: WhisperEngine, speech: Speech) -> list[str]:
    """What the engine says for each sentence as a file (with the padding a recording has)."""
    audios = [speech.sentence(i) for i in range(len(speech.texts))]
    return [r.text for r in engine.transcribe(audios, [TranscribeOptions()] * len(audios))]


class _Server:
    """uvicorn serving the adapter on a free port, in a thread with its own event loop."""

    def __init__(self, engine: WhisperEngine) -> None:
        self.counters = LiveCounters()
        lock = threading.Lock()  # one engine call at a time, as one model replica

        async def decode(request: DecodeRequest) -> EngineResult:
            def run() -> EngineResult:
                with lock:
                    return engine.transcribe([request.audio], [request.options])[0]

            return await asyncio.to_thread(run)

        config = LiveConfig(max_partials_in_flight=1)
        scheduler = DecodeScheduler(decode, config, self.counters)

        async def endpoint(websocket: WebSocket) -> None:
            await websocket.accept()
            await run_realtime_session(
                websocket,
                transcriber=scheduler,
                models=[MODEL],
                default_model=MODEL,
                config=config,
                metrics=self.counters,
            )

        app = Starlette(routes=[WebSocketRoute("/v1/realtime", endpoint)])
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> _Server:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()


@pytest.fixture(scope="module")
def server(engine: WhisperEngine) -> Iterator[_Server]:
    with _Server(engine) as server:
        yield server


async def _transcribe(server: _Server, audio: bytes, **kwargs: Any) -> list[Any]:
    client = client_for(f"http://127.0.0.1:{server.port}")
    return await stream_with_sdk(client, MODEL, audio, **kwargs)


async def test_server_vad_at_real_time_pace_with_partials(server, speech, references) -> None:
    events = await _transcribe(
        server,
        pcm16(speech.audio, 24_000),
        chunk_ms=20,
        speed=1.0,
        session={"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm"}}}},
    )
    by_item = check_items(events, references, vad=True)
    # The long sentence's text starts arriving before its speaker has finished.
    long_item = list(by_item.values())[1]
    kinds = [e.type for e in long_item]
    assert DELTA in kinds[: kinds.index("input_audio_buffer.speech_stopped")]
    assert server.counters.latency["partial"].count > 0


async def test_server_vad_faster_than_real_time(server, speech, references) -> None:
    events = await _transcribe(
        server, pcm16(speech.audio, 24_000), chunk_ms=100, speed=None, session={}
    )
    check_items(events, references, vad=True)


async def test_manual_commits(server, speech, references) -> None:
    pcm = pcm16(speech.audio, 24_000)
    # Commit in the pause after the first sentence, and at the end.
    pause = (speech.spans[0][1] + speech.spans[1][0]) // 2 * 3  # bytes of 24 kHz PCM16
    pause -= pause % (48 * 50)
    events = await _transcribe(
        server,
        pcm,
        chunk_ms=50,
        speed=4.0,
        session={"type": "transcription", "audio": {"input": {"turn_detection": None}}},
        commit_after=[pause, len(pcm)],
    )
    assert not any(e.type.startswith("input_audio_buffer.speech") for e in events)
    check_items(events, references, vad=False)
