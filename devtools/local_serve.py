"""A local Ray and Serve for tests and benchmarks that deploy the real graph from Python."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import ray
from ray import serve

from asr_serve.app import SERVE_ENV
from devtools.net import free_port


@contextlib.contextmanager
def local_serve(num_cpus: int) -> Iterator[str]:
    """Start Ray and Serve on a free port; yield Serve's URL; shut both down after.

    ``num_cpus``: logical CPUs, scheduling units beyond the machine's cores. Applications
    deployed from Python, and the Serve controller and proxies ``serve.start`` creates,
    take the job's ``runtime_env``, so they run with the shipped configs' Serve settings
    (:data:`~asr_serve.app.SERVE_ENV`); the driver does not.
    """
    port = free_port()
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        configure_logging=False,
        runtime_env={"env_vars": SERVE_ENV},
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
