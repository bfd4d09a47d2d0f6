"""Result cache: the same speech, model and options twice costs one model call.

The ingress looks each request up after decoding and before the ASR call (each piece of
a long file split at pauses, so the cache composes with splitting and streaming), so a
hit never reaches the ASR deployment. The key is a digest of the decoded 16 kHz samples
(the same speech in two lossless containers hits), the model's identity, every option
that changes the output and, with API keys on, the client's key (unless ``cache.shared``):
a hit must not tell one tenant what another sent. Values are the :class:`EngineResult` as
JSON in Redis, with a TTL.

Redis is an optimisation, never a dependency: every operation has a short timeout, and a
failure is counted, treated as a miss and followed by a backoff during which Redis is not
tried at all, so a dead Redis costs requests nothing and is not hammered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from asr_serve import __version__
from asr_serve.config import CacheConfig, ModelConfig
from asr_serve.engines.base import EngineResult, TranscribeOptions

logger = logging.getLogger("ray.serve")

#: Model settings that do not change a transcript; everything else is part of the key,
#: so a setting added later can only cause extra misses, never a wrong hit.
_NOT_IN_KEY = {"source", "cpu_threads", "batching", "description"}


def cache_key(
    prefix: str,
    model: ModelConfig,
    samples: np.ndarray,
    options: TranscribeOptions,
    scope: str = "",
) -> str:
    """``<prefix><model>:<sha256>`` over the identity JSON and the float32 samples;
    ``scope`` keeps one client's results apart from another's (empty: shared)."""
    identity = {
        "scope": scope,
        "version": __version__,
        "model": model.model_dump(mode="json", exclude=_NOT_IN_KEY),
        "options": options.model_dump(mode="json"),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode())
    digest.update(b"\0")
    digest.update(np.ascontiguousarray(samples, dtype=np.float32).data)
    return f"{prefix}{model.name}:{digest.hexdigest()}"


class ResultCache(Protocol):
    """What the pipeline asks of a cache: a result for this audio, from it or from the model."""

    async def through(
        self,
        model: ModelConfig,
        samples: np.ndarray,
        options: TranscribeOptions,
        transcribe: Callable[[], Awaitable[EngineResult]],
        scope: str = "",
    ) -> tuple[EngineResult, bool | None]:
        """The result, and whether it came from the cache (``None``: no cache to ask);
        ``scope``: whose results may answer (:func:`cache_key`)."""
        ...

    async def aclose(self) -> None:
        """Release connections when the ingress replica shuts down."""
        ...


class Counter(Protocol):
    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None: ...


class CacheCounters(Protocol):
    """What the cache counts; the ingress replica binds it to Serve's metrics
    (:class:`asr_serve.deployments.serve_metrics.CacheMetrics`)."""

    #: Lookups answered from the cache, and not, by ``model``.
    hits: Counter
    misses: Counter
    #: Redis operations that failed, by ``op``.
    errors: Counter


class RedisCache:
    """Engine results in Redis; every failure is a counted miss, never an error."""

    def __init__(self, config: CacheConfig, metrics: CacheCounters) -> None:
        self.config = config
        self._metrics = metrics
        timeout_s = config.timeout_ms / 1000
        # No client-side retries: the caller's fallback is the model, not another try.
        self._redis = Redis.from_url(
            config.redis_url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._timeout_s = timeout_s
        self._skip_until = 0.0

    async def through(
        self,
        model: ModelConfig,
        samples: np.ndarray,
        options: TranscribeOptions,
        transcribe: Callable[[], Awaitable[EngineResult]],
        scope: str = "",
    ) -> tuple[EngineResult, bool]:
        """The cached result and ``True``, or ``transcribe()``'s (stored) and ``False``."""
        # Hashing minutes of audio takes milliseconds; hashlib releases the GIL for it.
        key = await asyncio.to_thread(
            cache_key, self.config.key_prefix, model, samples, options, scope
        )
        cached = await self._get(key)
        if cached is not None:
            self._metrics.hits.inc(tags={"model": model.name})
            return cached, True
        self._metrics.misses.inc(tags={"model": model.name})
        result = await transcribe()
        await self._set(key, result)
        return result, False

    async def _get(self, key: str) -> EngineResult | None:
        raw = await self._redis_op("get", lambda: self._redis.get(key))
        if raw is None:
            return None
        try:
            return EngineResult.model_validate_json(raw)
        except ValidationError:
            logger.warning("cache: unreadable entry %s ignored", key)
            self._metrics.errors.inc(tags={"op": "get"})
            return None

    async def _set(self, key: str, result: EngineResult) -> None:
        value = result.model_dump_json().encode()
        if len(value) > self.config.max_entry_bytes:
            return
        await self._redis_op("set", lambda: self._redis.set(key, value, ex=self.config.ttl_s))

    async def _redis_op(self, op: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Redis command within the timeout; ``None`` if Redis failed or is backing off."""
        if time.monotonic() < self._skip_until:
            self._metrics.errors.inc(tags={"op": op})
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call()
        except (RedisError, OSError, TimeoutError) as exc:
            self._metrics.errors.inc(tags={"op": op})
            self._skip_until = time.monotonic() + self.config.backoff_s
            logger.warning(
                "cache: Redis %s failed (%s); serving without the cache for %g s",
                op,
                type(exc).__name__,
                self.config.backoff_s,
            )
            return None

    async def aclose(self) -> None:
        await self._redis.aclose()


class NoCache:
    """The cache switched off: every request goes to the model, nothing is counted."""

    async def through(
        self,
        model: ModelConfig,
        samples: np.ndarray,
        options: TranscribeOptions,
        transcribe: Callable[[], Awaitable[EngineResult]],
        scope: str = "",
    ) -> tuple[EngineResult, None]:
        return await transcribe(), None

    async def aclose(self) -> None:
        return None


NO_CACHE = NoCache()
