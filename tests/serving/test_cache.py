"""The result cache against a real redis-server: hits, misses, and Redis failing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from asr_serve.audio.decode import DecodedAudio
from asr_serve.config import AppConfig, CacheConfig, ModelConfig
from asr_serve.engines.base import EngineResult, Segment, TranscribeOptions
from asr_serve.serving.cache import RedisCache
from asr_serve.serving.pipeline import TranscriptionPipeline
from asr_serve.serving.requests import Upload
from tests.serving.conftest import RecordingMetrics
from tests.support.redis_server import RedisServer

MODEL = ModelConfig(name="m", engine="funasr", model="x")
AUDIO = np.random.default_rng(1).standard_normal(8000).astype(np.float32)
RESULT = EngineResult(
    text="hello world",
    language="en",
    duration=0.5,
    segments=[Segment(id=0, start=0.0, end=0.5, text="hello world")],
)


class Model:
    """Counts its calls: a hit must not reach it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, *_: Any) -> EngineResult:
        self.calls += 1
        return RESULT


@pytest.fixture
def server(redis_server: RedisServer) -> RedisServer:
    redis_server.client().flushdb()
    return redis_server


def _with_cache(
    server: RedisServer,
    metrics: RecordingMetrics,
    body: Callable[[RedisCache], Awaitable[Any]],
    **settings: Any,
) -> Any:
    async def main() -> Any:
        cache = RedisCache(CacheConfig(enabled=True, redis_url=server.url, **settings), metrics)
        try:
            return await body(cache)
        finally:
            await cache.aclose()

    return asyncio.run(main())


def _through(cache: RedisCache, model: Model, **options: Any):
    return cache.through(MODEL, AUDIO, TranscribeOptions(**options), model)


def test_hit_after_miss_skips_the_model(server, metrics) -> None:
    model = Model()

    async def body(cache: RedisCache) -> list:
        return [await _through(cache, model) for _ in range(3)]

    outcomes = _with_cache(server, metrics, body, ttl_s=60)
    assert outcomes == [(RESULT, False), (RESULT, True), (RESULT, True)]
    assert model.calls == 1
    assert (metrics.misses.total, metrics.hits.total, metrics.errors.total) == (1, 2, 0)
    (key,) = server.client().keys("*")
    assert key.startswith(b"asr-serve:result:m:")
    assert 0 < server.client().ttl(key) <= 60


def test_option_change_misses(server, metrics) -> None:
    model = Model()

    async def body(cache: RedisCache) -> list[bool]:
        runs = [{}, {"language": "en"}, {"prompt": "hello"}, {"segment_timestamps": True}, {}]
        return [(await _through(cache, model, **options))[1] for options in runs]

    assert _with_cache(server, metrics, body) == [False, False, False, False, True]
    assert model.calls == 4


def test_entry_over_the_size_bound_is_not_stored(server, metrics) -> None:
    model = Model()

    async def body(cache: RedisCache) -> list[bool]:
        return [(await _through(cache, model))[1] for _ in range(2)]

    assert _with_cache(server, metrics, body, max_entry_bytes=16) == [False, False]
    assert server.client().dbsize() == 0 and metrics.errors.total == 0


def test_unreadable_entry_is_a_miss_and_is_replaced(server, metrics) -> None:
    model = Model()

    async def body(cache: RedisCache) -> list[bool]:
        await _through(cache, model)
        (key,) = server.client().keys("*")
        server.client().set(key, b"not json")
        return [(await _through(cache, model))[1] for _ in range(2)]

    assert _with_cache(server, metrics, body) == [False, True]
    assert model.calls == 2 and metrics.errors.by_tags == {(("op", "get"),): 1}


def test_slow_redis_times_out_then_is_left_alone(server, metrics) -> None:
    model = Model()

    async def body(cache: RedisCache) -> list[float]:
        await _through(cache, model)  # connect while Redis answers
        server.pause()
        try:
            took = []
            for _ in range(2):
                started = time.perf_counter()
                assert await _through(cache, model) == (RESULT, False)
                took.append(time.perf_counter() - started)
            return took
        finally:
            server.resume()

    first, second = _with_cache(server, metrics, body, timeout_ms=100, backoff_s=60)
    assert 0.1 <= first < 1.0  # one timeout on the get, then backoff
    assert second < 0.05  # in backoff: Redis not tried at all
    assert model.calls == 3
    assert metrics.errors.by_tags == {(("op", "get"),): 2, (("op", "set"),): 2}


def test_dead_redis_degrades_to_misses_and_recovers(server, metrics) -> None:
    model = Model()

    async def body(cache: RedisCache) -> list[bool]:
        hits = [(await _through(cache, model))[1] for _ in range(2)]
        server.kill()
        hits += [(await _through(cache, model))[1] for _ in range(3)]
        server.start()
        await asyncio.sleep(0.3)  # past the backoff: Redis is tried again
        hits += [(await _through(cache, model))[1] for _ in range(2)]
        return hits

    outcomes = _with_cache(server, metrics, body, backoff_s=0.2)
    assert outcomes == [False, True, False, False, False, False, True]
    assert metrics.errors.total >= 1 and model.calls == 5


def test_pipeline_serves_a_hit_without_the_model(server, metrics) -> None:
    config = AppConfig.model_validate(
        {"models": [MODEL.model_dump()], "cache": {"enabled": True, "redis_url": server.url}}
    )
    model = Model()

    async def decode(_: bytes, __: object) -> DecodedAudio:
        return DecodedAudio(AUDIO, 0.5, 16000, 1, "pcm_s16le", "wav")

    async def body(cache: RedisCache) -> list[bool | None]:
        pipeline = TranscriptionPipeline(config, decode=decode, transcribe=model, cache=cache)
        uploads = [{}, {}, {"language": "de"}, {"response_format": "verbose_json"}]
        return [
            (await pipeline.finish(await pipeline.start(Upload(b"x", fields)))).cache_hit
            for fields in uploads
        ]

    assert _with_cache(server, metrics, body) == [False, True, False, False]
    assert model.calls == 3


def test_aclose_releases_the_connection(server, metrics) -> None:
    """The ingress closes the cache when its replica stops; no connection is left behind."""
    admin = server.client()

    async def main() -> tuple[int, int]:
        cache = RedisCache(CacheConfig(enabled=True, redis_url=server.url), metrics)
        await _through(cache, Model())
        during = len(admin.client_list())
        await cache.aclose()
        return during, len(admin.client_list())

    during, after = asyncio.run(main())
    assert during == after + 1
