"""``realtime-loop``: live sessions in the style of funasr's ``realtime_ws.py`` (1.3 to 1.4.3).

One model in the process under one lock; every session cuts its own stream at pauses,
re-decodes its open utterance for partials and decodes its finals itself, each call taking
the lock in turn: no batching across sessions, no priority of finals over partials, nothing
shed. It speaks the same OpenAI Realtime protocol through the same session core as asr-serve
(``OpenAIRealtimeConnection``), so the benchmark's client, VAD and partial policy are identical
and only the way decodes reach the model differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from asr_serve.config import LiveConfig
from asr_serve.engines import Engine, EngineResult
from asr_serve.live.metrics import LiveCounters
from asr_serve.live.protocols.connection import LiveContext
from asr_serve.live.protocols.openai_realtime import OpenAIRealtimeConnection
from asr_serve.live.transcribe import TranscribeRequest
from benchmarks.servers.common import load_engine, mark_ready, model_config

CONFIG = model_config()
LIVE = LiveConfig()
_lock = threading.Lock()
_engine: Engine | None = None


def _decode_locked(request: TranscribeRequest) -> EngineResult:
    assert _engine is not None
    with _lock:
        return _engine.transcribe([request.audio], [request.options])[0]


async def _transcriber(request: TranscribeRequest) -> EngineResult:
    return await asyncio.to_thread(_decode_locked, request)


_CONTEXT = LiveContext(_transcriber, [CONFIG.name], CONFIG.name, LIVE, LiveCounters())


async def realtime(websocket: WebSocket) -> None:
    await websocket.accept()
    await OpenAIRealtimeConnection(websocket, _CONTEXT).run()


async def ready(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    global _engine
    _engine = await asyncio.to_thread(load_engine, CONFIG)
    mark_ready()
    yield


app = Starlette(
    routes=[WebSocketRoute("/v1/realtime", realtime), Route("/ready", ready)],
    lifespan=lifespan,
)
