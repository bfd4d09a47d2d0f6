"""The application builder: one config in, the bound Serve graph out.

``serve_config.yaml`` names ``asr_serve.app:build_app`` as its ``import_path`` and passes
``args``; ``serve run serve_config.yaml`` calls it once per deploy. Per-deployment Ray
settings come from the YAML's ``deployments`` section, which Serve applies on top.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from asr_serve.config import AppConfig
from asr_serve.deployments.asr import ASR
from asr_serve.deployments.decoder import AudioDecoder
from asr_serve.deployments.ingress import Ingress
from asr_serve.deployments.speakers import Speakers

#: Serve settings for every Serve process. The replicas take them as each application's
#: ``runtime_env``, the Serve controller and the HTTP proxies it starts as the serve
#: config's ``controller_options`` (both serve configs; the tests and benchmarks that
#: deploy from Python give them as the job's ``runtime_env``, which both inherit):
#: - our code runs on the replica's own event loop, and its handles route there too, with
#:   no hop to a second thread and back per call. Every blocking step (decoding, VAD, the
#:   engine, cache keys) already runs in a worker thread, so nothing stalls that loop;
#: - calls between replicas, and the proxy's to the ingress, go over gRPC, arguments and
#:   results by value, instead of Ray's actor calls and object store (no raylet or
#:   ownership bookkeeping per call); no message-size cap, since a minute of decoded audio
#:   (or a long file's verbose response, proxy-bound) is past gRPC's 4 MiB default.
#: Measured lever by lever in benchmarks/README.md, "Where the time goes".
SERVE_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": "-1",
}


def build_graph(
    config: AppConfig, deployment_options: dict[str, dict[str, Any]] | None = None
) -> Application:
    """Ingress → AudioDecoder, one ASR deployment per model, and Speakers (if enabled).

    ``deployment_options`` (deployment name → ``.options()`` kwargs) is for callers that
    build the graph in Python rather than from YAML, such as tests and benchmarks.
    """
    extra = deployment_options or {}
    decoder = AudioDecoder.options(**extra.get("AudioDecoder", {})).bind(
        config.limits.model_dump(), config.splitting.model_dump()
    )
    models = {
        m.name: ASR.options(
            name=m.deployment_name,
            user_config=m.batching.model_dump(),
            **extra.get(m.deployment_name, {}),
        ).bind(m.model_dump())
        for m in config.models
    }
    speakers = (
        Speakers.options(
            user_config=config.speakers.batching.model_dump(), **extra.get("Speakers", {})
        ).bind(config.speakers.model_dump())
        if config.speakers.enabled
        else None
    )
    return Ingress.options(**extra.get("Ingress", {})).bind(
        decoder, models, config.model_dump(), speakers
    )


def build_app(args: dict[str, Any]) -> Application:
    """Serve's entry point for ``import_path: asr_serve.app:build_app``."""
    return build_graph(AppConfig.model_validate(args))
