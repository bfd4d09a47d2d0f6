"""Clients that behave and clients that flood, against a running asr-serve: what each got.

Shared by the abusive-client tests (``tests/e2e/test_abuse_fair.py``) and
``python -m benchmarks.fairness``. A client is the headers it sends (an API key, or an
address a trusted proxy would set); file clients post one WAV in a closed loop on as many
connections as asked, each answer an :class:`Outcome`; :func:`commit_flood` is the live
session that appends 100 ms and commits, over and over, as fast as it can.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np
import websockets

from devtools.server_timing import stages_ms

COMPLETED = "conversation.item.input_audio_transcription.completed"
FAILED = "conversation.item.input_audio_transcription.failed"


@dataclass(frozen=True)
class Outcome:
    client: str
    #: HTTP status; 0 when the request failed below HTTP.
    status: int
    latency_s: float
    #: The error body's ``code``, if any.
    code: str | None = None
    retry_after: str | None = None
    #: The response's ``Server-Timing``: milliseconds per stage, by name (``total`` among them).
    server_ms: dict[str, float] = field(default_factory=dict)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def p95(latencies: Sequence[float]) -> float:
    return float(np.percentile(latencies, 95)) if latencies else float("nan")


def file_clients(
    url: str,
    clients: dict[str, dict[str, str]],
    wav: bytes,
    duration_s: float,
    *,
    connections: int = 1,
    every_s: float = 0.0,
    retry_s: float | None = None,
) -> list[Outcome]:
    """Each client (name → headers) posts ``wav`` to ``url`` on ``connections`` connections
    at once, again as soon as it is answered (or ``every_s`` after the previous start), for
    ``duration_s``. A refused client waits its Retry-After (at most 5 s), or, impatient,
    ``retry_s`` whatever it was told."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop = time.monotonic() + duration_s

    def loop(name: str, headers: dict[str, str], http: httpx.Client) -> None:
        while time.monotonic() < stop:
            started = time.monotonic()
            outcome = _post(http, url, name, headers, wav)
            with lock:
                outcomes.append(outcome)
            wait = max(0.0, started + every_s - time.monotonic())
            if outcome.status in (429, 503):
                told = min(float(outcome.retry_after or 1), 5.0)
                wait = max(wait, told if retry_s is None else retry_s)
            time.sleep(min(wait, max(0.0, stop - time.monotonic())))

    threads = len(clients) * connections
    with (
        httpx.Client(timeout=120, limits=httpx.Limits(max_connections=threads)) as http,
        concurrent.futures.ThreadPoolExecutor(threads) as pool,
    ):
        futures = [
            pool.submit(loop, name, headers, http)
            for name, headers in clients.items()
            for _ in range(connections)
        ]
        for future in futures:
            future.result()
    return outcomes


def _post(http: httpx.Client, url: str, name: str, headers: dict[str, str], wav: bytes) -> Outcome:
    started = time.perf_counter()
    try:
        resp = http.post(url, files={"file": ("a.wav", wav)}, headers=headers)
    except httpx.HTTPError:
        return Outcome(name, 0, time.perf_counter() - started)
    took = time.perf_counter() - started
    code = None
    if resp.status_code != 200:
        try:
            code = resp.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "not-json"
    return Outcome(
        name,
        resp.status_code,
        took,
        code,
        resp.headers.get("retry-after"),
        stages_ms(resp.headers.get("server-timing", "")),
    )


@dataclass
class FloodResult:
    """What a flooding live session sent and got back."""

    appends: int = 0
    commits: int = 0
    #: ``error`` events by their ``code``.
    errors: Counter[str] = field(default_factory=Counter)
    committed: list[str] = field(default_factory=list)
    #: Each committed item's end: its ``completed`` or ``failed`` event type.
    ended: dict[str, str] = field(default_factory=dict)


async def commit_flood(
    ws_url: str,
    headers: dict[str, str],
    *,
    rounds: int,
    model: str | None = None,
    settle_s: float = 60.0,
) -> FloodResult:
    """An OpenAI Realtime session with ``turn_detection: null`` that sends ``rounds`` x
    (100 ms append + commit) as fast as it can, reading everything sent back, then waits
    (up to ``settle_s``) until every item it saw committed has ended."""
    result = FloodResult()
    chunk = base64.b64encode(np.full(2400, 300, "<i2").tobytes()).decode()  # 100 ms, 24 kHz
    query = f"?model={model}" if model else ""
    async with websockets.connect(
        f"{ws_url}{query}", additional_headers=headers, max_size=None
    ) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "transcription",
                        "audio": {"input": {"turn_detection": None}},
                    },
                }
            )
        )
        sent = asyncio.Event()

        async def send() -> None:
            for _ in range(rounds):
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                result.appends += 1
                result.commits += 1
            sent.set()

        sender = asyncio.create_task(send())
        try:
            async with asyncio.timeout(settle_s):
                async for raw in ws:
                    event = json.loads(raw)
                    kind = event["type"]
                    if kind == "error":
                        result.errors[event["error"]["code"]] += 1
                    elif kind == "input_audio_buffer.committed":
                        result.committed.append(event["item_id"])
                    elif kind in (COMPLETED, FAILED):
                        result.ended[event["item_id"]] = kind
                    if (
                        sent.is_set()
                        and _answered(result)
                        and len(result.ended) == len(result.committed)
                    ):
                        break
        finally:
            await sender
    return result


def _answered(result: FloodResult) -> bool:
    """Every commit was answered: committed, or refused with an error event."""
    return len(result.committed) + result.errors["input_audio_buffer_commit_empty"] >= (
        result.commits
    )
