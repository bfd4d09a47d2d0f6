"""Faults under load, through real Serve HTTP: overload, replica kills, a redeploy.

One application, deployed through the controller's config API as `serve deploy` does (so
the redeploy test can deploy a changed config the same way), with two ASR and two decoder
replicas and small queues. The load is bounded in count and time and goes to 127.0.0.1
only. Each test prints its counts: sent / 200 / 503 / failed.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeDeploySchema

from tests.e2e.serving import TINY_MODEL, tiny_args, undeploy
from tests.support.hostile import good_wav
from tests.support.replica_probe import replica_actors

pytestmark = pytest.mark.e2e

APP = "faults"
ASR = f"ASR-{TINY_MODEL}"
ASR_ONGOING, ASR_QUEUED, ASR_REPLICAS = 2, 2, 2
#: Requests the ASR tier holds at once (queued ones wait in the caller's handle); past it, 503.
CAPACITY = ASR_ONGOING * ASR_REPLICAS + ASR_QUEUED
CLIENT_TIMEOUT_S = 60.0
WAV = good_wav(1.0)


def _config(
    tiny_model_dir: Path, *, max_new_tokens: int = 8, max_queue_wait_s: float = 10.0
) -> dict[str, Any]:
    return {
        "applications": [
            {
                "name": APP,
                "route_prefix": f"/{APP}",
                "import_path": "asr_serve.app:build_app",
                "args": tiny_args(
                    tiny_model_dir,
                    model={
                        "max_new_tokens": max_new_tokens,
                        "batching": {
                            "max_batch_size": 2,
                            "batch_wait_timeout_s": 0.02,
                            "max_queue_wait_s": max_queue_wait_s,
                        },
                    },
                ),
                "deployments": [
                    {
                        "name": "Ingress",
                        "ray_actor_options": {"num_cpus": 0.1},
                        "graceful_shutdown_timeout_s": 60,
                    },
                    {
                        "name": "AudioDecoder",
                        "num_replicas": 2,
                        "ray_actor_options": {"num_cpus": 0.1},
                        "graceful_shutdown_timeout_s": 30,
                    },
                    {
                        "name": ASR,
                        "num_replicas": ASR_REPLICAS,
                        "max_ongoing_requests": ASR_ONGOING,
                        "max_queued_requests": ASR_QUEUED,
                        "ray_actor_options": {"num_cpus": 0.5},
                        "graceful_shutdown_timeout_s": 60,
                        # As in serve_config.yaml: replacements start before old replicas
                        # stop (here all at once, which also halves the redeploy's time).
                        "max_surge_percent": 100,
                    },
                ],
            }
        ]
    }


def _deploy(config: dict[str, Any], timeout_s: float = 300.0) -> None:
    """As `serve deploy`; waits for RUNNING (Serve's own wait gives up after 60 s)."""
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config), _blocking=False)
    deadline = time.monotonic() + timeout_s
    time.sleep(1.0)  # let the controller take the new config before polling its status
    while (status := serve.status().applications[APP].status) != "RUNNING":
        assert status not in ("DEPLOY_FAILED", "UNHEALTHY"), serve.status().applications[APP]
        assert time.monotonic() < deadline, f"{APP} still {status} after {timeout_s} s"
        time.sleep(0.5)


def _long_batches(tiny_model_dir: Path) -> dict[str, Any]:
    """Seconds per batch on any machine (the random weights never stop early), so slots stay
    held while clients hang up (with 8 tokens a fast CPU finished first); no queue bound by
    time, so the slots fill by count. The redeploy test deploys it as its changed config,
    which spares the disconnect test a second replacement of every replica."""
    return _config(tiny_model_dir, max_new_tokens=2000, max_queue_wait_s=3600)


@pytest.fixture(scope="module")
def prefix(serve_url: str, tiny_model_dir: Path) -> Iterator[str]:
    _deploy(_config(tiny_model_dir))
    yield f"/{APP}"
    undeploy(APP)


@dataclass
class Load:
    """Outcomes of a bounded load: HTTP status (or the exception's name) and latencies."""

    outcomes: Counter = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    #: Why requests were refused: the 503s' error messages.
    refusals: Counter = field(default_factory=Counter)

    @property
    def sent(self) -> int:
        return sum(self.outcomes.values())

    @property
    def failed(self) -> int:
        return self.sent - self.outcomes[200] - self.outcomes[503]

    def summary(self, name: str) -> str:
        return (
            f"{name}: sent={self.sent} ok_200={self.outcomes[200]} "
            f"rejected_503={self.outcomes[503]} failed={self.failed} "
            f"max_latency_200={max(self.latencies_s, default=0):.1f}s "
            f"refusals={dict(self.refusals)}"
        )


def _run_load(
    http: httpx.Client,
    prefix: str,
    *,
    concurrency: int,
    requests: int,
    stop: Callable[[], bool] = lambda: False,
    max_seconds: float = 90.0,
) -> Load:
    """Closed loop: ``concurrency`` workers post until ``requests`` are sent or ``stop()``."""
    load, lock = Load(), threading.Lock()
    tickets = iter(range(requests))
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        while not stop() and time.monotonic() < deadline:
            with lock:
                if next(tickets, None) is None:
                    return
            started = time.perf_counter()
            try:
                resp = http.post(
                    f"{prefix}/v1/audio/transcriptions",
                    files={"file": ("a.wav", WAV)},
                    timeout=CLIENT_TIMEOUT_S,
                )
                outcome: int | str = resp.status_code
            except httpx.HTTPError as exc:
                resp, outcome = None, type(exc).__name__
            with lock:
                load.outcomes[outcome] += 1
                if outcome == 200:
                    load.latencies_s.append(time.perf_counter() - started)
                elif outcome == 503:
                    assert resp is not None
                    load.refusals[resp.json()["error"]["message"]] += 1
                    if "retry-after" not in resp.headers or resp.json()["error"]["code"] not in {
                        "overloaded",
                        "insufficient_memory",
                    }:
                        load.bad.append(f"503 without Retry-After or code: {resp.text}")
                elif resp is not None:
                    load.bad.append(f"{outcome}: {resp.text[:300]}")

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return load


def _wait_for_all_replicas(timeout_s: float = 180.0) -> None:
    """Until every deployment of the app has all its replicas running (after a restart)."""
    deadline = time.monotonic() + timeout_s
    while True:
        deployments = serve.status().applications[APP].deployments.values()
        states = [{getattr(k, "value", k) for k in d.replica_states} for d in deployments]
        if all(s == {"RUNNING"} for s in states):
            return
        assert time.monotonic() < deadline, states
        time.sleep(0.5)


def _healthy(http: httpx.Client, prefix: str) -> None:
    assert http.get(f"{prefix}/health").status_code == 200
    resp = http.post(f"{prefix}/v1/audio/transcriptions", files={"file": ("a.wav", WAV)})
    assert resp.status_code == 200, resp.text


def test_overload_at_3x_capacity_is_200_or_503_never_500(http: httpx.Client, prefix: str) -> None:
    load = _run_load(http, prefix, concurrency=3 * CAPACITY, requests=6 * CAPACITY)
    print(load.summary("overload 3x"))
    assert load.failed == 0 and not load.bad, (load.outcomes, load.bad[:3])
    assert load.outcomes[503] > 0 and load.outcomes[200] > 0, load.outcomes
    # Accepted requests wait at most for the queue ahead of them, not for a timeout.
    assert max(load.latencies_s) < 30, max(load.latencies_s)
    _healthy(http, prefix)


# The ASR kill goes last: its slow replacement overlaps the redeploy test, which needs no
# full set of replicas to start from.
@pytest.mark.parametrize("deployment", ["AudioDecoder", ASR])
def test_killed_replica_loses_no_request(http: httpx.Client, prefix: str, deployment: str) -> None:
    """ray.kill a replica mid-load: Serve replaces it, the ingress retries what it held."""
    _wait_for_all_replicas()
    killed = threading.Event()
    deadline = time.monotonic() + 60

    def kill_soon() -> None:
        time.sleep(1.5)  # let requests be in flight on it
        ray.kill(replica_actors(APP, deployment)[0], no_restart=True)
        killed.set()

    killer = threading.Thread(target=kill_soon)
    killer.start()
    # Within what the surviving replica alone holds, so no request should be refused.
    load = _run_load(
        http,
        prefix,
        concurrency=ASR_ONGOING,
        requests=60,
        max_seconds=deadline - time.monotonic(),
    )
    killer.join()
    print(load.summary(f"kill {deployment}"))
    assert killed.is_set()
    assert load.outcomes[200] == load.sent, (load.summary(deployment), load.bad[:3])
    _healthy(http, prefix)


def test_redeploy_with_a_new_model_config_under_load_drops_nothing(
    http: httpx.Client, prefix: str, tiny_model_dir: Path
) -> None:
    """A changed model config replaces every replica (rolling); in-flight requests finish."""
    asr = serve.get_deployment_handle(ASR, app_name=APP)
    old_pids = {asr.stats.remote().result()["pid"] for _ in range(6)}
    done = threading.Event()

    def redeploy() -> None:
        time.sleep(1.0)
        try:
            _deploy(_long_batches(tiny_model_dir))
        finally:
            done.set()

    deployer = threading.Thread(target=redeploy)
    deployer.start()
    # Within the ASR queue even with no replica chosen yet: Serve counts a request as queued
    # while it picks a replica, so a fresh ingress's first burst must fit max_queued_requests.
    load = _run_load(
        http, prefix, concurrency=ASR_QUEUED, requests=10_000, stop=done.is_set, max_seconds=240
    )
    deployer.join()
    print(load.summary("redeploy"))
    assert load.sent > 0 and load.outcomes[200] == load.sent, (
        load.summary("redeploy"),
        load.bad[:3],
    )
    new_pids = {asr.stats.remote().result()["pid"] for _ in range(6)}
    assert not new_pids & old_pids, "the replicas were not replaced"
    _healthy(http, prefix)


def test_clients_that_disconnect_free_their_slots(
    http: httpx.Client, prefix: str, tiny_model_dir: Path
) -> None:
    """Fill every ASR slot with long clips, hang up: the queue empties, a new request fits.

    Serve cancels a request whose client went away, down the graph: items still waiting
    for a batch are dropped, so the slots they held are free again at once, and so is the
    audio they counted in the replica's admission queue.
    """
    _deploy(_long_batches(tiny_model_dir))  # no change where the redeploy test ran first
    long_wav = good_wav(25.0)
    url = f"{prefix}/v1/audio/transcriptions"

    def hang_up(_: int) -> str:
        try:
            return str(http.post(url, files={"file": ("a.wav", long_wav)}, timeout=1.0).status_code)
        except httpx.TimeoutException:
            return "disconnected"

    with concurrent.futures.ThreadPoolExecutor(2 * CAPACITY) as pool:
        outcomes = Counter(pool.map(hang_up, range(2 * CAPACITY)))
    assert outcomes["disconnected"] >= CAPACITY, outcomes
    time.sleep(1.0)
    started = time.perf_counter()
    resp = http.post(url, files={"file": ("a.wav", WAV)})
    assert resp.status_code == 200, resp.text
    print(f"disconnect: {outcomes}, next request took {time.perf_counter() - started:.1f}s")
    asr = serve.get_deployment_handle(ASR, app_name=APP)
    queued = [asr.stats.remote().result()["queued_work_s"] for _ in range(2 * ASR_REPLICAS)]
    assert queued == [0.0] * len(queued), queued
