"""The result cache through real Serve over HTTP, against a real redis-server."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator

import httpx
import pytest

from devtools.speech import encode, noise, tone
from tests.e2e.serving import deploy, tiny_args, undeploy
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

APP = "cache"
BACKOFF_S = 0.5


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def prefix(serve_url: str, tiny_model_dir, redis_server: RedisServer) -> Iterator[str]:
    cache = {"enabled": True, "redis_url": redis_server.url, "backoff_s": BACKOFF_S}
    yield deploy(APP, tiny_args(tiny_model_dir, cache=cache))
    undeploy(APP)


def _clip(seed: int) -> object:
    return tone(300.0 + 50 * seed, 1.0) + noise(1.0, seed)


def _post(http: httpx.Client, prefix: str, data: bytes, **fields) -> httpx.Response:
    resp = http.post(f"{prefix}/v1/audio/transcriptions", files={"file": ("a", data)}, data=fields)
    assert resp.status_code == 200, resp.text
    return resp


def test_hit_after_miss_across_containers_and_option_change_misses(http, prefix) -> None:
    clip = _clip(0)
    first = _post(http, prefix, encode(clip, 16000, "wav"))
    assert first.headers["x-cache"] == "miss"
    again = _post(http, prefix, encode(clip, 16000, "flac"))  # same samples, other container
    assert again.headers["x-cache"] == "hit" and again.json() == first.json()
    assert (
        _post(http, prefix, encode(clip, 16000, "wav"), prompt="hotword").headers["x-cache"]
        == "miss"
    )
    verbose = _post(http, prefix, encode(clip, 16000, "wav"), response_format="verbose_json")
    assert verbose.headers["x-cache"] == "miss" and verbose.json()["text"] == first.json()["text"]


def test_redis_killed_mid_test_degrades_to_misses(http, prefix, redis_server) -> None:
    wav = encode(_clip(1), 16000, "wav")
    assert [_post(http, prefix, wav).headers["x-cache"] for _ in range(2)] == ["miss", "hit"]
    text = _post(http, prefix, wav).json()["text"]

    redis_server.kill()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        down = list(pool.map(lambda _: _post(http, prefix, wav), range(8)))
    assert {r.headers["x-cache"] for r in down} == {"miss"}
    assert {r.json()["text"] for r in down} == {text}

    redis_server.start()  # empty: the first request after the backoff misses and refills it
    time.sleep(BACKOFF_S + 0.1)
    assert [_post(http, prefix, wav).headers["x-cache"] for _ in range(2)] == ["miss", "hit"]
