"""A real redis-server per test module, and metrics that count in memory."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.kill()


class _Count:
    def __init__(self) -> None:
        self.by_tags: Counter[tuple] = Counter()

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.by_tags[tuple(sorted((tags or {}).items()))] += value

    @property
    def total(self) -> float:
        return sum(self.by_tags.values())


class RecordingMetrics:
    """Stands in for ``CacheMetrics`` (whose Serve counters need a Ray worker to export)."""

    def __init__(self) -> None:
        self.hits = _Count()
        self.misses = _Count()
        self.errors = _Count()


@pytest.fixture
def metrics() -> RecordingMetrics:
    return RecordingMetrics()
