"""Overload against the CPU quickstart's own config: admission by time, not by count.

``serve_config.cpu.yaml`` (the embedded Whisper tiny.en and every deployment setting of
``make serve``) is deployed as it ships, without its second model (Whisper base), which
these requests never reach: 12 clients with ``max_queue_wait_s`` lowered to 3 s, and 100
clients with the shipped 10 s. More clients than the model can serve post real speech for a
while; a refused client waits its Retry-After, as a well-behaved one does. Every request
must end in 200 or in 503 with Retry-After, and the accepted ones (by their Server-Timing)
wait in the model's queue at most the bound, and take at most the bound plus one batch in
all: a queue bounded by count, or an admitted item kept past the bound, would let accepted
requests wait far longer than the bound says.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeDeploySchema

from asr_serve.config import asr_deployment_name
from devtools.flood import file_clients
from devtools.speech import encode, synthesize
from tests.e2e.serving import undeploy

pytestmark = pytest.mark.e2e

APP = "overload"
ROOT = Path(__file__).resolve().parents[2]
#: Upload, decoding and the ingress around the queue and the batch, on a loaded 2-core box.
OVERHEAD_S = 1.5
#: How late a loaded replica's event loop may refuse an item whose wait reached the bound.
LOOP_LAG_S = 0.5


def _quickstart_app(max_queue_wait_s: float) -> dict[str, Any]:
    """The quickstart's application, under its own name and route, with its bound."""
    (app,) = yaml.safe_load((ROOT / "serve_config.cpu.yaml").read_text())["applications"]
    app.update(name=APP, route_prefix=f"/{APP}")
    default = app["args"]["default_model"]
    others = {asr_deployment_name(m["name"]) for m in app["args"]["models"] if m["name"] != default}
    app["args"]["models"] = [m for m in app["args"]["models"] if m["name"] == default]
    app["deployments"] = [d for d in app["deployments"] if d["name"] not in others]
    (asr,) = [d for d in app["deployments"] if d["name"].startswith("ASR-")]
    asr["user_config"]["max_queue_wait_s"] = max_queue_wait_s
    return app


@pytest.fixture(scope="module")
def quickstart(serve_url: str) -> Iterator[Callable[[float], tuple[str, str]]]:
    """Deploys the application with a bound; again with another, which Serve applies to the
    running replicas (only ``user_config`` differs): its URL and ASR deployment."""

    def with_bound(max_queue_wait_s: float) -> tuple[str, str]:
        app = _quickstart_app(max_queue_wait_s)
        schema = ServeDeploySchema.model_validate({"applications": [app]})
        _get_global_client().deploy_apps(schema, _blocking=True)
        (asr,) = [d["name"] for d in app["deployments"] if d["name"].startswith("ASR-")]
        return f"{serve_url}/{APP}", asr

    yield with_bound
    undeploy(APP)


@pytest.mark.parametrize(
    ("max_queue_wait_s", "clients", "load_s"),
    [(3.0, 12, 8.0), (10.0, 100, 15.0)],
    ids=["12-clients", "100-clients"],
)
def test_accepted_requests_wait_at_most_the_bound_and_none_is_lost(
    quickstart, max_queue_wait_s: float, clients: int, load_s: float
) -> None:
    url, asr = quickstart(max_queue_wait_s)
    bound = (
        serve.get_deployment_handle(asr, app_name=APP)
        .stats.remote()
        .result()["batching"]["max_queue_wait_s"]
    )
    wav = encode(synthesize("the quick brown fox jumps over the lazy dog"), 16000, "wav")
    handle = serve.get_deployment_handle(asr, app_name=APP)
    seen = len(handle.stats.remote().result()["recent_batch_seconds"])
    # Anonymous clients from one address: one client to the fair queue, so this is the
    # queue's bound alone, first come first served.
    everyone = {f"client-{i}": {} for i in range(clients)}
    sent = file_clients(f"{url}/v1/audio/transcriptions", everyone, wav, load_s)
    outcomes = Counter(str(o.status) if o.status != 503 else f"503 {o.code}" for o in sent)
    accepted = [o.latency_s for o in sent if o.status == 200]
    retry_after = [o.retry_after for o in sent if o.status == 503]
    stats = handle.stats.remote().result()
    one_batch = max(stats["recent_batch_seconds"][seen:])
    p99 = float(np.percentile(accepted, 99))
    # Where each accepted request's time went, as the server says (Server-Timing): the bound
    # is the server's; the client's own wait adds the flood's 100 threads on these 2 cores.
    served = [o.server_ms for o in sent if o.status == 200]
    server = {
        stage: max(t.get(stage, 0.0) for t in served) / 1000
        for stage in ("upload", "decode", "read", "queue", "batch", "engine", "total")
    }
    refused = outcomes["503 overloaded"]
    print(
        f"overload: {clients} clients for {load_s:g}s, max_queue_wait_s={bound:g}: "
        f"sent {len(sent)}, {dict(outcomes)}, refused share {refused / len(sent):.0%}; accepted "
        f"P50 {np.percentile(accepted, 50):.2f}s P99 {p99:.2f}s max {max(accepted):.2f}s; "
        f"longest batch {one_batch:.2f}s; Retry-After {dict(Counter(retry_after))}; "
        f"engine speed {stats['speed_work_s_per_s']:.1f} s of work per s; server's longest "
        f"stages {', '.join(f'{k} {v:.2f}s' for k, v in server.items())}"
    )
    assert set(outcomes) <= {"200", "503 overloaded"}, outcomes  # served or refused, not lost
    assert outcomes["200"] and refused, outcomes  # really overloaded, really served
    assert all(retry_after), "every refusal says when to retry"
    assert server["queue"] <= bound + LOOP_LAG_S, server
    assert server["total"] <= bound + one_batch + OVERHEAD_S, (server, one_batch)
