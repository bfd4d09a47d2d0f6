"""Load the real graph on the local multi-node cluster, watch it scale, read what it exports.

Everything here talks to 127.0.0.1 only, and every load is bounded in requests and time.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx
import ray
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from ray import serve
from ray._private.authentication.http_token_authentication import (
    get_auth_headers_if_auth_enabled,
)
from ray._private.internal_api import node_stats
from ray.util.state import list_actors

from asr_serve.config import asr_deployment_name
from tests.e2e.serving import TINY_MODEL

ASR = asr_deployment_name(TINY_MODEL)
DECODER = "AudioDecoder"
#: Replica states that hold, or wait for, resources; a STOPPING replica is on its way out.
LIVE_STATES = ("RUNNING", "STARTING", "UPDATING", "RECOVERING", "PENDING_MIGRATION")

States = dict[str, dict[str, int]]


def replica_states(app: str) -> States:
    """Deployment -> replica state -> count, as ``serve status`` shows it."""
    deployments = serve.status().applications[app].deployments
    return {name: dict(d.replica_states) for name, d in deployments.items()}


def running(states: States, deployment: str) -> int:
    return states.get(deployment, {}).get("RUNNING", 0)


def live(states: States, deployment: str) -> int:
    """Replicas that run or are being started: what the autoscaler asked for."""
    return sum(states.get(deployment, {}).get(s, 0) for s in LIVE_STATES)


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)
    return value


class ScaleWatch:
    """Polls ``serve.status()`` and keeps every snapshot, to assert on a whole phase after it."""

    def __init__(self, app: str) -> None:
        self.app = app
        self.snapshots: list[States] = []
        self._times: list[float] = []

    def poll(self) -> States:
        states = replica_states(self.app)
        self.snapshots.append(states)
        self._times.append(time.monotonic())
        return states

    def until(self, condition: Callable[[States], bool], timeout_s: float, what: str) -> None:
        """Poll until ``condition`` holds for a fresh snapshot."""
        wait_for(lambda: condition(self.poll()), timeout_s, what)

    def observe(self, seconds: float) -> None:
        """Poll for ``seconds``, to assert on every snapshot of a steady phase."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll()
            time.sleep(0.5)

    def peak(self, deployment: str) -> int:
        return max(live(s, deployment) for s in self.snapshots)

    def clear(self) -> None:
        self.snapshots.clear()
        self._times.clear()

    def timeline(self) -> str:
        """One line per snapshot, seconds from the first: for failure messages."""
        return "\n".join(
            f"{t - self._times[0]:6.1f}s {states}"
            for t, states in zip(self._times, self.snapshots, strict=True)
        )


class Load:
    """``clients`` threads posting one upload in a loop until stopped, or a bound is reached."""

    def __init__(
        self,
        url: str,
        upload: tuple[str, bytes],
        *,
        clients: int,
        max_requests: int = 5000,
        max_seconds: float = 150.0,
    ) -> None:
        self.url = url
        self.upload = upload
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.results: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _client(self) -> None:
        with httpx.Client(timeout=60) as http:
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                with self._lock:
                    if len(self.results) >= self.max_requests:
                        return
                try:
                    resp = http.post(self.url, files={"file": self.upload})
                    result = (resp.status_code, "" if resp.is_success else resp.text[:300])
                except httpx.HTTPError as exc:
                    result = (0, repr(exc))
                with self._lock:
                    self.results.append(result)

    @property
    def failures(self) -> list[tuple[int, str]]:
        return [r for r in self.results if r[0] != 200]


def dashboard_running_replicas(dashboard_url: str, app: str) -> dict[str, int]:
    """RUNNING replicas per deployment from the dashboard's Serve REST API, as operators see it."""
    resp = httpx.get(
        f"{dashboard_url}/api/serve/applications/",
        headers=get_auth_headers_if_auth_enabled({}),
        timeout=10,
    )
    resp.raise_for_status()
    deployments = resp.json()["applications"][app]["deployments"]
    return {
        name: sum(r["state"] == "RUNNING" for r in d["replicas"]) for name, d in deployments.items()
    }


def scrape_metrics() -> dict[str, list[Sample]]:
    """Every node's Prometheus endpoint (its metrics agent's export port), samples by name."""
    samples: dict[str, list[Sample]] = defaultdict(list)
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        text = httpx.get(f"http://127.0.0.1:{node['MetricsExportPort']}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[sample.name].append(sample)
    return samples


def wait_for_series(expected: set[str], timeout_s: float) -> dict[str, list[Sample]]:
    """Scrape until every series in ``expected`` is exported; fail naming the missing ones."""
    deadline = time.monotonic() + timeout_s
    while (missing := expected - (samples := scrape_metrics()).keys()) and (
        time.monotonic() < deadline
    ):
        time.sleep(1)
    assert not missing, f"not on any node's Prometheus endpoint: {sorted(missing)}"
    return samples


def gpu_assignments(actor_class: str) -> dict[int, tuple[str, list[tuple[int, float]]]]:
    """pid -> (node id, [(GPU index, share)]) for each live actor of ``actor_class``.

    Read from each raylet's worker stats: the assignment Ray made, and from which it sets
    the worker's ``CUDA_VISIBLE_DEVICES`` and ``ray.get_gpu_ids()``.
    """
    actors = list_actors(filters=[("class_name", "=", actor_class), ("state", "=", "ALIVE")])
    pids = {a.pid for a in actors}
    found: dict[int, tuple[str, list[tuple[int, float]]]] = {}
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        stats = node_stats(node["NodeManagerAddress"], node["NodeManagerPort"], False)
        for worker in stats.core_workers_stats:
            if worker.pid in pids and "GPU" in worker.used_resources:
                slots = worker.used_resources["GPU"].resource_slots
                found[worker.pid] = (node["NodeID"], [(s.slot, s.allocation) for s in slots])
    return found
