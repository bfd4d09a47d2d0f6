"""Fractional GPUs: ASR replicas at ``num_gpus: 0.5`` pack two per GPU and stop at capacity.

Production runs Fun-ASR-Nano at ``num_gpus: 0.5`` (serve_config.yaml). Here 10 replicas are
asked of 2 workers x 2 GPUs: 8 must run, two per GPU index on each node, and 2 must wait for
a GPU that does not exist rather than be squeezed in. Placement is Ray's and the same for
every engine, so the replicas serve the embedded Whisper: each starts in about a second,
where a FunASR replica first spends ~7 s of CPU importing ``funasr`` (all of its models).
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
import ray
from ray import serve
from ray.util.state import list_actors

from asr_serve.config import asr_deployment_name
from devtools.speech import encode, noise
from tests.cluster.conftest import GPU_WORKERS, GPUS_PER_WORKER
from tests.cluster.harness import gpu_assignments, replica_states, running, wait_for
from tests.e2e.serving import WHISPER, deploy, whisper_model

# Both: `-m "not e2e"` keeps meaning "no Ray"; `-m cluster` selects these alone.
pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

APP = "pack"
ASR = asr_deployment_name(WHISPER)
GPU_SHARE = 0.5
REQUESTED = 10
CAPACITY = int(GPU_WORKERS * GPUS_PER_WORKER / GPU_SHARE)
#: The Ray actor class of this app's ASR replicas.
REPLICA_CLASS = f"ServeReplica:{APP}:{ASR}"


def _all_gpus_free() -> bool:
    return ray.available_resources().get("GPU", 0) == GPU_WORKERS * GPUS_PER_WORKER


def _replica_views(app: str, pids: set[int], calls: int) -> dict[int, dict]:
    """``stats()`` of each replica in ``pids``, collected through the router's choices."""
    handle = serve.get_deployment_handle(ASR, app_name=app)
    seen: dict[int, dict] = {}
    for _ in range(calls):
        view = handle.stats.remote().result(timeout_s=30)
        seen[view["pid"]] = view
        if pids <= seen.keys():
            break
    return seen


def test_half_gpu_replicas_pack_two_per_gpu_up_to_capacity(serve_url: str) -> None:
    wait_for(_all_gpus_free, 30, "every GPU to be free before the test")
    options = {
        ASR: {
            "num_replicas": REQUESTED,
            "ray_actor_options": {"num_cpus": 0.1, "num_gpus": GPU_SHARE},
        }
    }
    # Not blocking: the application never becomes RUNNING with replicas left unplaced.
    args = {"models": [whisper_model(cpu_threads=1)]}
    prefix = deploy(APP, args, options, blocking=False)
    try:
        # Eight replicas load the model at once on a 2-core machine: allow minutes.
        wait_for(
            lambda: running(replica_states(APP), ASR) >= CAPACITY,
            300,
            f"{CAPACITY} running ASR replicas",
        )
        states = replica_states(APP)
        assert running(states, ASR) == CAPACITY, states
        assert sum(states[ASR].values()) == REQUESTED, states
        assert ray.available_resources().get("GPU", 0) == 0

        actors = Counter(a.state for a in list_actors(filters=[("class_name", "=", REPLICA_CLASS)]))
        assert actors == {"ALIVE": CAPACITY, "PENDING_CREATION": REQUESTED - CAPACITY}, actors

        assignments = gpu_assignments(REPLICA_CLASS)
        assert len(assignments) == CAPACITY, assignments
        gpu_nodes = {n["NodeID"] for n in ray.nodes() if n["Resources"].get("GPU")}
        per_gpu: Counter[tuple[str, int]] = Counter()
        for node_id, slots in assignments.values():
            assert node_id in gpu_nodes
            assert [share for _, share in slots] == [GPU_SHARE], slots
            per_gpu[(node_id, slots[0][0])] += 1
        # Every (node, GPU index) pair holds exactly two replicas: 2 nodes x GPUs 0 and 1.
        assert per_gpu == {(n, i): 2 for n in gpu_nodes for i in range(GPUS_PER_WORKER)}

        # What each replica itself sees matches Ray's assignment: the GPU index it shares.
        seen = _replica_views(APP, set(assignments), calls=REQUESTED * 20)
        assert set(seen) == set(assignments), (seen, assignments)
        for pid, view in seen.items():
            index = str(assignments[pid][1][0][0])
            assert view["gpu_ids"] == [index], view
            assert view["cuda_visible_devices"] == index, view

        wav = encode(noise(1.0, 3), 16000, "wav")
        url = f"{serve_url}{prefix}/v1/audio/transcriptions"
        with httpx.Client(timeout=60) as http:
            for _ in range(4):
                resp = http.post(url, files={"file": ("a.wav", wav)})
                assert resp.status_code == 200, resp.text
    finally:
        serve.delete(APP)
    wait_for(_all_gpus_free, 60, "the deleted app's replicas to give their GPUs back")
