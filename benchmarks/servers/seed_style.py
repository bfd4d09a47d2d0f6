"""``seed-style``: the hand-built design asr-serve replaces, rebuilt with the same engine.

FastAPI under uvicorn with 2 worker processes (the harness passes ``--workers 2``), the
model preloaded and warmed up per worker, a batch-processor thread collecting requests
from a queue (at most 8, flushed ``BATCH_WAIT_S`` after the first), each request waiting
on its own future, and every upload written to a temp file and converted to 16 kHz mono
by an ``ffmpeg`` subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future

import numpy as np
from fastapi import FastAPI, File, HTTPException, UploadFile

from asr_serve.engines import Engine, TranscribeOptions
from benchmarks.servers.common import load_engine, mark_ready, model_config

MAX_BATCH = 8
BATCH_WAIT_S = float(os.environ.get("BENCH_SEED_BATCH_WAIT_S", "0.1"))

_queue: queue.Queue[tuple[np.ndarray, Future]] = queue.Queue()


def _batch_loop(engine: Engine) -> None:
    """Take the first waiting request, gather more until full or the wait ends, run them."""
    while True:
        batch = [_queue.get()]
        deadline = time.monotonic() + BATCH_WAIT_S
        while len(batch) < MAX_BATCH:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(_queue.get(timeout=remaining))
            except queue.Empty:
                break
        try:
            results = engine.transcribe([a for a, _ in batch], [TranscribeOptions()] * len(batch))
        except Exception as exc:
            for _, future in batch:
                future.set_exception(exc)
            continue
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result.text)


async def _ffmpeg_decode(data: bytes, suffix: str) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        proc = await asyncio.create_subprocess_exec(
            "ffmpeg", "-nostdin", "-loglevel", "error", "-i", tmp.name,
            "-f", "f32le", "-ac", "1", "-ar", "16000", "pipe:1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
    if proc.returncode != 0:
        raise HTTPException(400, f"ffmpeg could not decode the upload: {err.decode()[-300:]}")
    return np.frombuffer(out, dtype=np.float32)


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    engine = await asyncio.to_thread(load_engine, model_config())
    threading.Thread(target=_batch_loop, args=(engine,), daemon=True).start()
    mark_ready()
    yield


app = FastAPI(lifespan=lifespan)


@app.post("/v1/audio/transcriptions")
async def transcriptions(file: UploadFile = File(...)) -> dict:  # noqa: B008
    audio = await _ffmpeg_decode(await file.read(), os.path.splitext(file.filename or "")[1])
    future: Future = Future()
    _queue.put((audio, future))
    return {"text": await asyncio.wrap_future(future)}


@app.get("/ready")
async def ready() -> dict:
    return {"status": "ok"}
