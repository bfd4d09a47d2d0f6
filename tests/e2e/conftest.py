"""A real local Ray cluster and Serve instance, shared by the end-to-end tests.

One Ray session serves every e2e module (starting Ray costs seconds); each module deploys
its own application on its own route prefix and tears it down.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import ray
from ray import serve

from asr_serve.app import REPLICA_ENV
from devtools.net import free_port


@pytest.fixture(scope="session")
def serve_url() -> Iterator[str]:
    """Start Ray (logical CPUs beyond the 2 cores: they are scheduling units) and Serve."""
    port = free_port()
    ray.init(
        address="local",
        num_cpus=16,
        include_dashboard=False,
        configure_logging=False,
        # Applications deployed from Python take the job's runtime_env: the replicas run
        # with the shipped configs' Serve settings; this process (the tests' driver) does not.
        runtime_env={"env_vars": REPLICA_ENV},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def http(serve_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve_url, timeout=60) as client:
        yield client
