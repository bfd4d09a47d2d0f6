"""Deploying the real graph from tests: app args for the tiny checkpoint, small replicas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray import serve

from asr_serve.app import build_graph
from asr_serve.config import AppConfig

TINY_MODEL = "tiny-nano"


#: What a test's app args leave out: API keys (unless the Ingress's environment has some)
#: and the Speakers deployment, whose replica adds 2 s to every deploy of a test that does
#: not diarize (:data:`SPEAKERS_ON` asks for it).
APP_DEFAULTS: dict[str, Any] = {"auth": {"anonymous": True}, "speakers": {"enabled": False}}
#: App args' ``speakers`` where a test diarizes.
SPEAKERS_ON = {"enabled": True}


def tiny_args(model_dir: Path, **overrides: Any) -> dict[str, Any]:
    """App args serving the generated Fun-ASR-Nano checkpoint on CPU (and
    :data:`APP_DEFAULTS`)."""
    model = {
        "name": TINY_MODEL,
        "engine": "funasr",
        "model": str(model_dir),
        "device": "cpu",
        "cpu_threads": 1,
        "max_new_tokens": 8,
        "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.1},
    }
    model.update(overrides.pop("model", {}))
    return {**APP_DEFAULTS, "models": [model], **overrides}


WHISPER = "whisper-tiny.en"


def whisper_model(**overrides: Any) -> dict[str, Any]:
    """The embedded Whisper tiny.en on CPU, as the quickstart config serves it."""
    return {
        "name": WHISPER,
        "engine": "faster-whisper",
        "model": "embedded",
        "device": "cpu",
        "cpu_threads": 2,
        "batching": {"max_batch_size": 4, "batch_wait_timeout_s": 0.05},
        **overrides,
    }


SMALL_REPLICAS = {
    "Ingress": {"ray_actor_options": {"num_cpus": 0.1}},
    "AudioDecoder": {"ray_actor_options": {"num_cpus": 0.1, "num_gpus": 0}},
}


def deploy(
    name: str,
    args: dict[str, Any],
    options: dict[str, dict[str, Any]] | None = None,
    *,
    blocking: bool = True,
) -> str:
    """Deploy the real graph as application ``name`` under ``/name``; return its prefix.
    Sections ``args`` lacks are :data:`APP_DEFAULTS`'."""
    config = AppConfig.model_validate({**APP_DEFAULTS, **args})
    merged = {**SMALL_REPLICAS, **(options or {})}
    for m in config.models:
        merged.setdefault(m.deployment_name, {}).setdefault("ray_actor_options", {"num_cpus": 0.5})
    target = serve.RunTarget(
        target=build_graph(config, merged),
        name=name,
        route_prefix=f"/{name}",
        logging_config={"enable_access_log": False},  # as the shipped configs
    )
    serve.run_many([target], wait_for_applications_running=blocking)
    return f"/{name}"


def undeploy(name: str) -> None:
    """Delete application ``name`` without waiting for its replicas to stop: each stop
    takes Serve's shutdown wait (about 3 s) whatever the replica does, and every test's
    applications have names of their own, so nothing waits for the old ones to go."""
    serve.delete(name, _blocking=False)
