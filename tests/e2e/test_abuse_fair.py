"""Abusive clients through real Serve, with normal clients measured beside them: each client
gets its share of the model, the abuser gets its documented error, nobody else's latency goes.

The tiny Fun-ASR-Nano checkpoint in batches of 4, decoding 48 tokens per item (so a batch
costs what its decoding steps cost, as with the real model, and this shared 2-core
machine's other load matters less than with Whisper), with API keys on and a 5 s
``max_queue_wait_s``. The normal load: eight keys post a 3 s clip in a closed loop and a
ninth one a second, alone first (their unloaded P95s), then with each abuser joining it a
second in (as an abuser comes to a service already in use; all of them starting in the
same instant would measure only which first request the queue's tie-break takes last);
every request of theirs must be 200, each group's P95 at most 3x its unloaded one. Cases:

- a live session that sends 1,500 x (100 ms append + commit) at once: its audio past its
  budget is refused with ``rate_limit_exceeded`` and every item it committed ends;
- one key from 24 connections sending the clip four times over, retrying after 0.1 s
  whatever its Retry-After says: it gets 429 ``rate_limit_exceeded`` (its share is one
  clip's work per round of the ten clients, so its backlog waits well past the bound even
  on a machine fast enough to serve 24 single clips within it);
- 100 connections of one key at once, beside the normal clients: past its 32 requests in
  progress (``clients.max_concurrent_requests``, as in production) the flooder gets 429 at
  the ingress, and from the model's queue 429 or 503, all with Retry-After;
- the result cache with two keys: a key never gets a hit on another key's audio;
- without keys, behind a trusted proxy's ``X-Forwarded-For``: each address has its own
  limits (requests in progress, audio a minute, live sessions).

No replica logs an ERROR or a traceback meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import pytest
import websockets
from ray import serve

from devtools.flood import Outcome, bearer, commit_flood, file_clients, p95
from devtools.speech import encode, synthesize
from tests.e2e.serving import TINY_MODEL, deploy, tiny_args, undeploy
from tests.support.redis_server import RedisServer
from tests.support.replica_logs import LogWindow, records, tracebacks

pytestmark = pytest.mark.e2e

APP = "abusefair"
NORMAL = {f"normal-{i}": bearer(f"sk-normal-{i}") for i in range(8)}
FLOODER, SECOND = "sk-flooder", "sk-second"
KEYS = [f"sk-normal-{i}" for i in range(8)] + [FLOODER, SECOND]
MAX_QUEUE_WAIT_S = 5.0
LOAD_S = 12.0
#: How long the normal load runs before the abuser joins it.
JOIN_S = 1.0

T = TypeVar("T")


def _keyed_app(name: str, tiny_model_dir: Path, **args: object) -> str:
    env = {"env_vars": {"ASR_SERVE_API_KEYS": ",".join(KEYS)}}
    options = {
        "Ingress": {"ray_actor_options": {"num_cpus": 0.1, "runtime_env": env}},
        # The queue in the replica; the router's a burst buffer above one key's requests in
        # progress (as production's configs keep it).
        f"ASR-{TINY_MODEL}": {"max_ongoing_requests": 128, "max_queued_requests": 64},
    }
    batching = {"max_batch_size": 4, "batch_wait_timeout_s": 0.02}
    app_args = tiny_args(
        tiny_model_dir,
        model={
            "max_new_tokens": 48,
            "batching": {**batching, "max_queue_wait_s": MAX_QUEUE_WAIT_S},
        },
        auth={"anonymous": False},
        # Below the ASR's slots and its router's queue, as in production: past them Serve's
        # router refuses everyone alike.
        clients={"max_concurrent_requests": 32},
        **args,
    )
    return deploy(name, app_args, options)


@pytest.fixture(scope="module")
def base_url(serve_url: str, tiny_model_dir: Path) -> Iterator[str]:
    yield serve_url + _keyed_app(APP, tiny_model_dir)
    undeploy(APP)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthesize("the quick brown fox")


@pytest.fixture(scope="module")
def wav(speech: np.ndarray) -> bytes:
    return encode(speech, 16000, "wav")


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


def _beside(
    base_url: str, wav: bytes, abuse: Callable[[], T]
) -> tuple[dict[str, list[Outcome]], T]:
    """The normal load for ``LOAD_S``, with ``abuse`` run ``JOIN_S`` into it: what each got."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        normal = pool.submit(_normal, base_url, wav, LOAD_S)
        time.sleep(JOIN_S)
        abused = abuse()
        return normal.result(), abused


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
    outcomes, flood = _beside(
        base_url, wav, lambda: asyncio.run(commit_flood(ws_url, bearer(FLOODER), rounds=1500))
    )
    print(
        f"session flood: {flood.commits} commits sent, {len(flood.committed)} committed, "
        f"errors {dict(flood.errors)}, ended {dict(Counter(flood.ended.values()))}"
    )
    assert flood.errors["rate_limit_exceeded"] > 1000  # its audio past its budget refused
    assert set(flood.ended) == set(flood.committed) and flood.committed  # every item ended
    _check_normal(outcomes, unloaded, "session flood")
    _no_errors_logged(window)


def test_one_key_from_24_connections_gets_429_and_the_others_keep_their_latency(
    base_url: str, wav: bytes, speech: np.ndarray, unloaded: dict[str, float]
) -> None:
    url = f"{base_url}/v1/audio/transcriptions"
    window = LogWindow(APP)
    longer = encode(np.tile(speech, 4), 16000, "wav")
    outcomes, flood = _beside(
        base_url,
        wav,
        lambda: file_clients(
            url,
            {"flooder": bearer(FLOODER)},
            longer,
            LOAD_S - JOIN_S,
            connections=24,
            retry_s=0.1,
        ),
    )
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
    outcomes, flood = _beside(
        base_url,
        wav,
        lambda: file_clients(
            url, {"flooder": bearer(FLOODER)}, wav, LOAD_S - JOIN_S, connections=100
        ),
    )
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
    undeploy(name)
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


@pytest.fixture(scope="module")
def limited_url(serve_url: str, tiny_model_dir: Path) -> Iterator[str]:
    """No keys, behind a (pretended) trusted proxy: each forwarded address is a client, with
    limits of its own."""
    name = f"{APP}-limits"
    clients = {
        "forwarded_for_header": "X-Forwarded-For",
        "max_concurrent_requests": 2,
        "max_live_sessions": 1,
        "max_audio_s_per_minute": 10.0,
    }
    yield serve_url + deploy(name, tiny_args(tiny_model_dir, clients=clients))
    undeploy(name)


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": f"203.0.113.250, {address}"}


def test_each_forwarded_address_has_limits_of_its_own(limited_url: str, wav: bytes) -> None:
    window = LogWindow(f"{APP}-limits")
    url = f"{limited_url}/v1/audio/transcriptions"

    def post(address: str) -> httpx.Response:
        return httpx.post(url, files={"file": ("a.wav", wav)}, headers=_from(address), timeout=60)

    # Requests in progress: two per address; past them 429 before the upload is read.
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(post, ["198.51.100.1"] * 6))
    refused = [r for r in answers if r.status_code == 429]
    assert refused and len(refused) < 6, [r.status_code for r in answers]
    for resp in refused:
        assert resp.json()["error"]["code"] == "rate_limit_exceeded"
        assert resp.headers["retry-after"] and resp.headers["connection"] == "close"
    assert post("198.51.100.2").status_code == 200  # another address is another client

    # Audio a minute: 10 s, so three 2.9 s clips and not a fourth.
    statuses = [post("198.51.100.3").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429], statuses
    assert post("198.51.100.4").status_code == 200

    # Live sessions: one per address.
    ws_url = limited_url.replace("http://", "ws://", 1) + "/v1/realtime"

    async def sessions() -> int | None:
        async with websockets.connect(ws_url, additional_headers=_from("198.51.100.5")) as first:
            assert json.loads(await first.recv())["type"] == "session.created"
            async with websockets.connect(
                ws_url, additional_headers=_from("198.51.100.6")
            ) as other:
                assert json.loads(await other.recv())["type"] == "session.created"
            async with websockets.connect(
                ws_url, additional_headers=_from("198.51.100.5")
            ) as second:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await second.recv()
                return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(sessions()) == 1013
    _no_errors_logged(window)
