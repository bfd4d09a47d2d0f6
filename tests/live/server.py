"""The live doors in one process, as the Serve routes will mount them: uvicorn on a free port,
in a thread with its own event loop, over a real engine or a fake transcriber.

Each door accepts as the route will (the subprotocol its clients expect) and runs its
adapter: ``/v1/realtime`` (OpenAI), ``/v1/funasr/ws`` (FunASR's runtime protocol) and
``/v1/funasr/realtime`` (funasr's Fun-ASR-Nano realtime protocol).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from asr_serve.audio.decode import DecodedAudio, decode_audio
from asr_serve.audio.splitting import PieceSplitter
from asr_serve.config import AppConfig, LiveConfig, ModelConfig, SplittingConfig
from asr_serve.engines.base import Engine, EngineResult, TranscribeOptions
from asr_serve.engines.whisper import WhisperEngine
from asr_serve.live.metrics import LiveCounters
from asr_serve.live.partials import PartialScheduler
from asr_serve.live.protocols import funasr_realtime, funasr_runtime, openai_realtime
from asr_serve.live.protocols.connection import (
    LiveConnection,
    LiveContext,
    accepted_subprotocol,
)
from asr_serve.live.transcribe import (
    Transcribe,
    TranscribeFile,
    TranscribeKind,
    TranscribeRequest,
)
from asr_serve.serving.pipeline import TranscriptionPipeline

WHISPER = "whisper-tiny.en"


@functools.cache
def whisper_engine() -> WhisperEngine:
    """The embedded Whisper tiny.en, loaded once per test process."""
    config = ModelConfig(
        name=WHISPER, engine="faster-whisper", model="embedded", device="cpu", cpu_threads=2
    )
    engine = WhisperEngine(config)
    engine.load()
    return engine


def engine_transcribe(engine: Engine) -> Transcribe:
    """Transcribe with ``engine`` one call at a time, on a worker thread, as one model replica."""
    lock = threading.Lock()

    async def transcribe(request: TranscribeRequest) -> EngineResult:
        def run() -> EngineResult:
            with lock:
                return engine.transcribe([request.audio], [request.options])[0]

        return await asyncio.to_thread(run)

    return transcribe


def file_path(
    transcribe: Transcribe, models: Sequence[str], splitting: SplittingConfig
) -> TranscribeFile:
    """What the route passes FunASR's runtime door for whole files: the request flow
    (:meth:`TranscriptionPipeline.transcribe_file`) over the service's decoder and file
    splitter in process, each piece through ``transcribe``."""
    splitter = PieceSplitter(splitting)

    async def decode(data: bytes, request_splitting: SplittingConfig) -> DecodedAudio:
        audio = await asyncio.to_thread(decode_audio, data, max_duration_s=600.0)
        pieces = await asyncio.to_thread(splitter.split, audio.samples, request_splitting)
        return dataclasses.replace(audio, pieces=pieces)

    async def piece(
        model: str, audio: np.ndarray, options: TranscribeOptions, admitted: bool, client: str
    ) -> EngineResult:
        request = TranscribeRequest(
            "file", model, audio, options, TranscribeKind.FINAL, still_wanted=lambda: True
        )
        result = await transcribe(request)
        assert result is not None, "a final is never dropped"
        return result

    config = AppConfig(
        models=[ModelConfig(name=m, engine="faster-whisper", model="embedded") for m in models],
        splitting=splitting,
    )
    return TranscriptionPipeline(config, decode=decode, transcribe=piece).transcribe_file


class LiveServer:
    """The doors over ``engine`` (through the replica's partial scheduler) or ``transcriber``."""

    def __init__(
        self,
        *,
        engine: Engine | None = None,
        transcriber: Transcribe | None = None,
        models: Sequence[str] = (WHISPER,),
        config: LiveConfig | None = None,
        splitting: SplittingConfig | None = None,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        self.config = config or LiveConfig(max_partials_in_flight=1)
        self.counters = LiveCounters()
        if transcriber is None:
            assert engine is not None, "an engine or a transcriber"
            model = engine_transcribe(engine)
            transcriber = PartialScheduler(model, self.config, self.counters)
        else:
            model = transcriber
        files = file_path(model, models, splitting or SplittingConfig())
        context = LiveContext(transcriber, list(models), models[0], self.config, self.counters)
        doors = [
            ("/v1/realtime", openai_realtime.OpenAIRealtimeConnection),
            ("/v1/funasr/ws", funasr_runtime.FunASRRuntimeConnection),
            ("/v1/funasr/realtime", funasr_realtime.FunASRRealtimeConnection),
        ]
        extra = {"/v1/funasr/ws": {"transcribe_file": files}}
        app = Starlette(
            routes=[
                *routes,
                *(
                    WebSocketRoute(path, _door(connection, context, extra.get(path, {})))
                    for path, connection in doors
                ),
            ]
        )
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> LiveServer:
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


def _door(
    connection: type[LiveConnection], context: LiveContext, door: dict[str, Any]
) -> Callable[[WebSocket], Awaitable[None]]:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol=accepted_subprotocol(websocket, connection.subprotocols))
        await connection(websocket, context, **door).run()

    return endpoint
