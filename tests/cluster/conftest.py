"""One multi-node Ray cluster on this machine for the package: a CPU head and two GPU workers.

The workers declare 2 GPUs each. The GPUs are fake: Ray schedules and assigns them by the
declared count, nothing touches CUDA, and the ASR replicas run the tiny checkpoint on CPU
while Ray places them as GPU replicas. Each node runs its own raylet (memory, seconds to
start), so the package shares one cluster and one Serve instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import ray
from ray import serve
from ray.cluster_utils import Cluster

from asr_serve.app import SERVE_ENV
from devtools.net import free_port

GPU_WORKERS = 2
GPUS_PER_WORKER = 2


@dataclass(frozen=True)
class LocalCluster:
    cluster: Cluster
    dashboard_url: str


@pytest.fixture(scope="package")
def ray_cluster() -> Iterator[LocalCluster]:
    """Head (CPU only, dashboard) + two workers with ``num_gpus=2``; torn down after the package."""
    if ray.is_initialized():
        pytest.fail("tests/cluster start their own Ray cluster, but this process is connected")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 4,
            "include_dashboard": True,
            "dashboard_port": free_port(),
            # Metrics reach the Prometheus endpoint every second rather than every 10 s.
            "_system_config": {"metrics_report_interval_ms": 1000},
        },
    )
    try:
        for _ in range(GPU_WORKERS):
            cluster.add_node(num_cpus=4, num_gpus=GPUS_PER_WORKER)
        cluster.wait_for_nodes()
        context = ray.init(  # Serve with the shipped configs' settings (SERVE_ENV)
            address=cluster.address,
            configure_logging=False,
            runtime_env={"env_vars": SERVE_ENV},
        )
        yield LocalCluster(cluster, f"http://{context.dashboard_url}")
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="package")
def serve_url(ray_cluster: LocalCluster) -> Iterator[str]:
    """Serve with one HTTP proxy, on the head: every node shares this machine's ports."""
    port = free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
