"""Abusive clients through real Serve, with normal clients measured beside them: each client
gets its share of the model, the abuser gets its documented error, nobody else's latency goes.

The tiny Fun-ASR-Nano checkpoint in batches of 4, decoding 48 tokens per item (so a batch
costs what its decoding steps cost, as with the real model, and this shared 2-core
machine's other load matters less than with Whisper), with API keys on and a 5 s
``max_queue_wait_s``. The normal load: eight keys post a 3 s clip in a closed loop and a
ninth one a second, alone first (their unloaded P95s), then beside each abuser; every
request of theirs must be 200, each group's P95 at most 3x its unloaded one. Cases:

- a live session that sends 1,500 x (100 ms append + commit) at once: its audio past its
  budget is refused with ``rate_limit_exceeded`` and every item it committed ends;
- one key from 24 connections, retrying after 0.1 s whatever its Retry-After says: it gets
  429 ``rate_limit_exceeded``;
- 100 connections of one key at once, beside the normal clients: the flooder gets 429 or
  503, with Retry-After, and nothing else;
- the result cache with two keys: a key never gets a hit on another key's audio.

No replica logs an ERROR or a traceback meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ray import serve

from devtools.flood import Outcome, bearer, commit_flood, file_clients, p95
from devtools.speech import encode, synthesize
from tests.e2e.serving import TINY_MODEL, deploy, tiny_args
from tests.support.redis_server import RedisServer
from tests.support.replica_logs import LogWindow, records, tracebacks

pytestmark = pytest.mark.e2e

APP = "abusefair"
NORMAL = {f"normal-{i}": bearer(f"sk-normal-{i}") for i in range(8)}
FLOODER, SECOND = "sk-flooder", "sk-second"
KEYS = [f"sk-normal-{i}" for i in range(8)] + [FLOODER, SECOND]
MAX_QUEUE_WAIT_S = 5.0
LOAD_S = 15.0
#: Upload, decoding and the ingress around the queue and the batch, on a loaded 2-core box.
OVERHEAD_S = 1.5


def _keyed_app(name: str, tiny_model_dir: Path, **args: object) -> str:
    env = {"env_vars": {"ASR_SERVE_API_KEYS": ",".join(KEYS)}}
    options = {
        "Ingress": {"ray_actor_options": {"num_cpus": 0.1, "runtime_env": env}},
        # As the quickstart: a burst buffer in the router, the queue in the replica.
        f"ASR-{TINY_MODEL}": {"max_ongoing_requests": 128, "max_queued_requests": 8},
    }
    batching = {"max_batch_size": 4, "batch_wait_timeout_s": 0.02}
    app_args = tiny_args(
        tiny_model_dir,
        model={
            "max_new_tokens": 48,
            "batching": {**batching, "max_queue_wait_s": MAX_QUEUE_WAIT_S},
        },
        auth={"anonymous": False},
        **args,
    )
    return deploy(name, app_args, options)


@pytest.fixture(scope="module")
def base_url(serve_url: str, tiny_model_dir: Path) -> Iterator[str]:
    yield serve_url + _keyed_app(APP, tiny_model_dir)
    serve.delete(APP)


@pytest.fixture(scope="module")
def wav() -> bytes:
    return encode(synthesize("the quick brown fox"), 16000, "wav")


def _warm_up(base_url: str, wav: bytes) -> None:
    """Full batches one after another, until admission knows the engine's speed (its seed,
    the first call's, is cautious) and refuses nothing of a load that fits."""
    url = f"{base_url}/v1/audio/transcriptions"
    for _ in range(8):
        outcomes = file_clients(url, dict(list(NORMAL.items())[:4]), wav, 0.01)
        assert all(o.status in (200, 503) for o in outcomes)


@pytest.fixture(scope="module")
def unloaded(base_url: str, wav: bytes) -> dict[str, float]:
    """The normal load's P95s alone: their baselines."""
    _warm_up(base_url, wav)
    groups = _normal(base_url, wav, LOAD_S / 2)
    for name, outcomes in groups.items():
        assert {o.status for o in outcomes} == {200}, (name, Counter(o.status for o in outcomes))
    return {name: p95([o.latency_s for o in outcomes]) for name, outcomes in groups.items()}


def _normal(base_url: str, wav: bytes, duration_s: float) -> dict[str, list[Outcome]]:
    """The normal load: eight keys in a closed loop, a ninth sending one request a second."""
    url = f"{base_url}/v1/audio/transcriptions"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        paced = pool.submit(
            file_clients, url, {"second": bearer(SECOND)}, wav, duration_s, every_s=1.0
        )
        closed = file_clients(url, NORMAL, wav, duration_s)
        return {"closed loop": closed, "one a second": paced.result()}


def _check_normal(groups: dict[str, list[Outcome]], unloaded: dict[str, float], what: str) -> None:
    for name, outcomes in groups.items():
        statuses = Counter(o.status for o in outcomes)
        loaded = p95([o.latency_s for o in outcomes])
        print(f"{what}: {name} {dict(statuses)}, P95 {loaded:.2f}s (alone {unloaded[name]:.2f}s)")
        assert set(statuses) == {200}, (name, statuses)
        assert loaded <= 3 * unloaded[name], (name, loaded, unloaded[name])


def _no_errors_logged(window: LogWindow) -> None:
    for name, text in window.read().items():
        assert not records(text, "ERROR") and not tracebacks(text), f"{name}:\n{text[-3000:]}"


def test_a_session_flooding_commits_gets_errors_and_files_keep_their_latency(
    base_url: str, wav: bytes, unloaded: dict[str, float]
) -> None:
    window = LogWindow(APP)
    ws_url = base_url.replace("http://", "ws://", 1) + "/v1/realtime"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        normal = pool.submit(_normal, base_url, wav, LOAD_S)
        flood = asyncio.run(commit_flood(ws_url, bearer(FLOODER), rounds=1500))
        outcomes = normal.result()
    print(
        f"session flood: {flood.commits} commits sent, {len(flood.committed)} committed, "
        f"errors {dict(flood.errors)}, ended {dict(Counter(flood.ended.values()))}"
    )
    assert flood.errors["rate_limit_exceeded"] > 1000  # its audio past its budget refused
    assert set(flood.ended) == set(flood.committed) and flood.committed  # every item ended
    _check_normal(outcomes, unloaded, "session flood")
    _no_errors_logged(window)


def test_one_key_from_24_connections_gets_429_and_the_others_keep_their_latency(
    base_url: str, wav: bytes, unloaded: dict[str, float]
) -> None:
    url = f"{base_url}/v1/audio/transcriptions"
    window = LogWindow(APP)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        flooding = pool.submit(
            file_clients,
            url,
            {"flooder": bearer(FLOODER)},
            wav,
            LOAD_S,
            connections=24,
            retry_s=0.1,
        )
        outcomes = _normal(base_url, wav, LOAD_S)
        flood = flooding.result()
    codes = Counter((o.status, o.code) for o in flood)
    print(f"24 connections of one key: {dict(codes)}")
    assert codes[(429, "rate_limit_exceeded")], codes
    assert all(o.retry_after for o in flood if o.status != 200)
    _check_normal(outcomes, unloaded, "24 connections")
    _no_errors_logged(window)


def test_a_hundred_connections_of_one_key_are_refused_first(
    base_url: str, wav: bytes, unloaded: dict[str, float]
) -> None:
    asr = serve.get_deployment_handle(f"ASR-{TINY_MODEL}", app_name=APP)
    before = asr.stats.remote().result()["model_s_by_client"]
    url = f"{base_url}/v1/audio/transcriptions"
    window = LogWindow(APP)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        flooding = pool.submit(
            file_clients, url, {"flooder": bearer(FLOODER)}, wav, LOAD_S, connections=100
        )
        outcomes = _normal(base_url, wav, LOAD_S)
        flood = flooding.result()
    model_s = Counter(asr.stats.remote().result()["model_s_by_client"])
    model_s.subtract(before)
    codes = Counter((o.status, o.code) for o in flood)
    shares = sorted(model_s.values(), reverse=True)
    print(f"100 connections: flooder {dict(codes)}; model seconds by client {shares}")
    assert codes[(429, "rate_limit_exceeded")], codes
    assert set(codes) <= {(200, None), (429, "rate_limit_exceeded"), (503, "overloaded")}
    assert all(o.retry_after for o in flood if o.status != 200)
    _check_normal(outcomes, unloaded, "100 connections")
    _no_errors_logged(window)


@pytest.fixture(scope="module")
def cached_url(serve_url: str, tiny_model_dir: Path) -> Iterator[str]:
    server = RedisServer().start()
    name = f"{APP}-cache"
    cache = {"enabled": True, "redis_url": server.url}
    yield serve_url + _keyed_app(name, tiny_model_dir, cache=cache)
    serve.delete(name)
    server.kill()


def test_a_key_never_gets_a_cache_hit_on_another_key_s_audio(cached_url: str, wav) -> None:
    window = LogWindow(f"{APP}-cache")

    def post(key: str) -> str:
        resp = httpx.post(
            f"{cached_url}/v1/audio/transcriptions",
            files={"file": ("a.wav", wav)},
            headers=bearer(key),
            timeout=60,
        )
        assert resp.status_code == 200, resp.text
        return resp.headers["x-cache"]

    assert post("sk-normal-0") == "miss"
    assert post("sk-normal-1") == "miss"  # the same audio, another tenant: its own miss
    assert post("sk-normal-0") == "hit"
    assert post("sk-normal-1") == "hit"
    _no_errors_logged(window)
