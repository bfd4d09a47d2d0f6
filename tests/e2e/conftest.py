"""A real local Ray cluster and Serve instance, shared by the end-to-end tests.

One Ray session serves every e2e module (starting Ray costs seconds); each module deploys
its own application on its own route prefix and tears it down. The session ends with the
package, so the tests after it do not share two cores with an idle cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from devtools.local_serve import local_serve


@pytest.fixture(scope="package")
def serve_url() -> Iterator[str]:
    """Ray (logical CPUs beyond the 2 cores: they are scheduling units) and Serve."""
    with local_serve(num_cpus=16) as url:
        yield url


@pytest.fixture(scope="package")
def http(serve_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve_url, timeout=60) as client:
        yield client
