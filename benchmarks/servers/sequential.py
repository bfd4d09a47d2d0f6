"""``sequential`` and ``naive``: a plain Starlette app calling the engine one request at a time.

``sequential`` preloads the model and serialises engine calls (no cross-request batching):
the "before" of a hand-built server. With ``BENCH_LOAD_PER_REQUEST=1`` it is ``naive``:
the model is built inside the request handler, every time, as a demo app would do.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asr_serve.audio.decode import decode_audio
from asr_serve.engines import Engine, TranscribeOptions
from benchmarks.servers.common import load_engine, mark_ready, model_config

CONFIG = model_config()
LOAD_PER_REQUEST = os.environ.get("BENCH_LOAD_PER_REQUEST") == "1"
_lock = threading.Lock()
_engine: Engine | None = None


def _transcribe(data: bytes) -> str:
    audio = decode_audio(data, max_duration_s=600.0).samples
    with _lock:
        engine = load_engine(CONFIG, warm=False) if LOAD_PER_REQUEST else _engine
        assert engine is not None
        return engine.transcribe([audio], [TranscribeOptions()])[0].text


async def transcriptions(request: Request) -> JSONResponse:
    form = await request.form()
    data = await form["file"].read()  # type: ignore[union-attr]
    return JSONResponse({"text": await run_in_threadpool(_transcribe, data)})


async def ready(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    global _engine
    if not LOAD_PER_REQUEST:
        _engine = await run_in_threadpool(load_engine, CONFIG)
    mark_ready()
    yield


app = Starlette(
    routes=[
        Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        Route("/ready", ready),
    ],
    lifespan=lifespan,
)
