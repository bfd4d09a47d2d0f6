"""Load generation over HTTP (closed loop at fixed concurrency, open loop at fixed rate) and
the statistics every system is summarised by, in-process or served.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

import httpx
import numpy as np
from pydantic import BaseModel

from benchmarks.audio import Clip, sequence
from devtools.server_timing import stages_ms

TRANSCRIPTIONS = "/v1/audio/transcriptions"


class Record(BaseModel):
    """One request as the client saw it; ``status`` 0 is a transport error."""

    clip: str
    audio_s: float
    status: int
    latency_s: float
    error: str | None = None
    #: The response's ``Server-Timing`` stages, ms (asr-serve's; empty for the baselines).
    stages_ms: dict[str, float] = {}


class RunStats(BaseModel):
    """One level of one system: throughput, latency percentiles, errors, batch sizes."""

    system: str
    mode: str  # "closed", "open", "inprocess" or "turns" (:func:`taking_turns`)
    concurrency: int | None = None
    rate_rps: float | None = None
    batch_size: int | None = None
    requests: int
    ok: int
    errors: dict[str, int]
    elapsed_s: float
    throughput_rps: float
    rtfx: float  # audio seconds transcribed per wall-clock second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    #: Batches the served model actually formed during this level (asr-serve only).
    batch_sizes: list[int] | None = None
    #: P50 per clip of the mix, so one request can be compared with its own clip's.
    p50_ms_by_clip: dict[str, float] = {}
    #: Mean of each ``Server-Timing`` stage over the successful requests that reported it.
    mean_stages_ms: dict[str, float] = {}

    def percentile_ms(self, q: float) -> float:
        return {50: self.p50_ms, 95: self.p95_ms, 99: self.p99_ms}[int(q)]


def summarize(
    system: str, mode: str, records: Sequence[Record], elapsed_s: float, **level: object
) -> RunStats:
    """Throughput counts successful requests only; latency percentiles too."""
    ok = [r for r in records if r.status == 200]
    latencies = np.array([r.latency_s for r in ok]) * 1000 if ok else np.array([np.nan])
    errors = Counter(str(r.status) for r in records if r.status != 200)
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return RunStats(
        system=system,
        mode=mode,
        requests=len(records),
        ok=len(ok),
        errors=dict(errors),
        elapsed_s=elapsed_s,
        throughput_rps=len(ok) / elapsed_s,
        rtfx=sum(r.audio_s for r in ok) / elapsed_s,
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        mean_ms=float(np.mean(latencies)),
        p50_ms_by_clip={
            clip: float(np.percentile([1000 * r.latency_s for r in ok if r.clip == clip], 50))
            for clip in sorted({r.clip for r in ok})
        },
        mean_stages_ms={
            stage: float(np.mean([r.stages_ms[stage] for r in ok if stage in r.stages_ms]))
            for stage in dict.fromkeys(s for r in ok for s in r.stages_ms)
        },
        **level,
    )


async def _send(client: httpx.AsyncClient, url: str, clip: Clip, fields: dict) -> Record:
    started = time.perf_counter()
    try:
        resp = await client.post(
            url, files={"file": (clip.filename, clip.data)}, data=fields or None
        )
        status, error = resp.status_code, None if resp.status_code == 200 else resp.text[:200]
        timing = resp.headers.get("server-timing", "")
    except httpx.HTTPError as exc:
        status, error, timing = 0, f"{type(exc).__name__}: {exc}", ""
    return Record(
        clip=clip.name,
        audio_s=clip.seconds,
        status=status,
        latency_s=time.perf_counter() - started,
        error=error,
        stages_ms=stages_ms(timing),
    )


def _client(concurrency: int, timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(limits=limits, timeout=timeout_s)


async def closed_loop(
    url: str,
    clips: Sequence[Clip],
    concurrency: int,
    n_requests: int,
    *,
    fields: dict | None = None,
    timeout_s: float = 300.0,
) -> tuple[list[Record], float]:
    """``concurrency`` clients, each sending its next request as soon as one returns."""
    todo = iter(sequence(clips, n_requests))
    records: list[Record] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for clip in todo:  # a shared iterator: each clip goes to exactly one worker
            records.append(await _send(client, url, clip, fields or {}))

    async with _client(concurrency, timeout_s) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return records, time.perf_counter() - started


async def taking_turns(
    urls: Sequence[str],
    clips: Sequence[Clip],
    n_requests: int,
    *,
    fields: Sequence[dict],
    timeout_s: float = 300.0,
) -> list[list[Record]]:
    """One client taking turns between systems: each clip of the sequence goes to every URL
    (with its ``fields``) in turn, the order rotated clip by clip, so the machine's slow and
    fast minutes fall on every system alike. The records, per URL."""
    n = len(urls)
    records: list[list[Record]] = [[] for _ in urls]
    clients = [_client(1, timeout_s) for _ in urls]
    try:
        for i, clip in enumerate(sequence(clips, n_requests)):
            for k in ((i + j) % n for j in range(n)):
                records[k].append(await _send(clients[k], urls[k], clip, fields[k]))
        return records
    finally:
        for client in clients:
            await client.aclose()


async def open_loop(
    url: str,
    clips: Sequence[Clip],
    rate_rps: float,
    n_requests: int,
    *,
    fields: dict | None = None,
    timeout_s: float = 300.0,
) -> tuple[list[Record], float]:
    """Requests sent on a fixed schedule, ``rate_rps`` per second, whatever the latency."""
    async with _client(n_requests, timeout_s) as client:
        started = time.perf_counter()
        tasks = []
        for i, clip in enumerate(sequence(clips, n_requests)):
            delay = started + i / rate_rps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_send(client, url, clip, fields or {})))
        records = list(await asyncio.gather(*tasks))
        return records, time.perf_counter() - started
