"""The shipped Serve configs parse into Serve's own schema and into the project's models."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from asr_serve.app import SERVE_ENV
from asr_serve.config import AppConfig, LimitsConfig, LiveConfig, asr_deployment_name

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["serve_config.yaml", "serve_config.cpu.yaml"]
#: Below this, a burst waits in the router's retry backoff (up to 0.5 s per retry)
#: instead of in the decoder; at 4, 64 clients got 15 req/s where 16 got 17 (23 once fixed).
MIN_DECODER_ONGOING = 16
#: Slow uploads each hold an ingress request until their bound: 300 of them starved normal
#: requests of an ingress with 256 slots (7.9 s instead of 0.2 s; tests/e2e/test_slow_clients.py).
MIN_INGRESS_ONGOING = 512
#: Ray's concurrency of an async actor; a replica's own is max_ongoing_requests past it,
#: leaving Serve's health checks no room beside a full replica.
RAY_ACTOR_CONCURRENCY = 1000
#: Ingress slots beyond the uploads: requests past their upload, /health, /ready.
MIN_SLOTS_BEYOND_UPLOADS = 128


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", CONFIGS)
def test_config_validates_against_serve_and_project_schemas(name: str) -> None:
    raw = _load(name)
    schema = ServeDeploySchema.model_validate(raw)
    (app,) = schema.applications
    assert app.import_path == "asr_serve.app:build_app"
    config = AppConfig.model_validate(app.args)

    deployments = {d.name: d for d in app.deployments}
    assert {"Ingress", "AudioDecoder", "Speakers"} <= set(deployments)
    for model in config.models:
        asr = deployments[asr_deployment_name(model.name)]
        batching = model.batching.model_copy(update=asr.user_config or {})
        # Batches can only fill when a replica may hold a whole batch (ray#43288); room for
        # more, so the next batch's items wait in the replica, not in the router's backoff.
        assert asr.max_ongoing_requests >= 2 * batching.max_batch_size
        # Items wait in the replica, where admission bounds their wait by time; the router's
        # queue, which it cannot see, is only a burst buffer.
        assert 0 < asr.max_queued_requests <= asr.max_ongoing_requests // 2
        # One key's requests, arriving together, fit the router's queue, which knows no
        # clients: past it Serve refuses everyone alike.
        per_key = config.clients.max_concurrent_requests
        assert per_key is None or per_key <= asr.max_queued_requests
        assert batching.max_queue_wait_s <= 30
    decoder = deployments["AudioDecoder"]
    assert decoder.ray_actor_options.num_gpus == 0
    assert decoder.max_ongoing_requests >= MIN_DECODER_ONGOING
    ingress = deployments["Ingress"]
    assert MIN_INGRESS_ONGOING <= ingress.max_ongoing_requests < RAY_ACTOR_CONCURRENCY
    # Uploads and live sessions each hold an ingress slot while they last; room stays for
    # everything else (readiness probes, model lists, requests past their upload).
    spare = (
        ingress.max_ongoing_requests
        - config.limits.max_concurrent_uploads
        - config.live.max_sessions
    )
    assert spare >= MIN_SLOTS_BEYOND_UPLOADS
    # Past the ingress's queue, Serve's proxy refuses with 503 and Retry-After.
    assert ingress.backpressure_config.status_code == 503
    assert ingress.backpressure_config.retry_after_s
    # Slow uploads are cut off well before the request's own deadline would matter.
    limits = config.limits
    assert limits.upload_idle_timeout_s < limits.upload_timeout_s <= limits.request_timeout_s
    assert limits.upload_budget_bytes >= 4 * limits.max_upload_bytes


@pytest.mark.parametrize("name", CONFIGS)
def test_replicas_and_the_proxies_get_the_serve_settings_of_serve_env(name: str) -> None:
    """The YAML cannot import the constant; it must say the same, for the replicas (the
    application's runtime_env) and the controller and its proxies (``controller_options``).
    The RayService embeds serve_config.yaml, checked by tests/cluster/test_manifests.py."""
    config = ServeDeploySchema.model_validate(_load(name))
    (app,) = config.applications
    assert app.runtime_env["env_vars"] == SERVE_ENV
    assert config.controller_options is not None
    assert config.controller_options.runtime_env == {"env_vars": SERVE_ENV}


def test_deployment_defaults_queue_in_replicas() -> None:
    """The decorators' defaults (used by graphs built in Python) follow the same rule."""
    from asr_serve.config import BatchingConfig
    from asr_serve.deployments.asr import ASR
    from asr_serve.deployments.decoder import AudioDecoder
    from asr_serve.deployments.ingress import Ingress

    assert AudioDecoder.max_ongoing_requests >= MIN_DECODER_ONGOING
    assert ASR.max_ongoing_requests >= 2 * BatchingConfig().max_batch_size
    assert 0 < ASR.max_queued_requests <= ASR.max_ongoing_requests // 2
    assert MIN_INGRESS_ONGOING <= Ingress.max_ongoing_requests < RAY_ACTOR_CONCURRENCY
    spare = (
        Ingress.max_ongoing_requests
        - LimitsConfig().max_concurrent_uploads
        - LiveConfig().max_sessions
    )
    assert spare >= MIN_SLOTS_BEYOND_UPLOADS
    assert Ingress.backpressure_config.retry_after_s


def test_production_config_targets_fun_asr_nano_on_fractional_gpus() -> None:
    raw = _load("serve_config.yaml")
    app = ServeDeploySchema.model_validate(raw).applications[0]
    config = AppConfig.model_validate(app.args)
    nano = config.model("fun-asr-nano")
    assert nano.engine == "funasr"
    assert nano.model == "FunAudioLLM/Fun-ASR-MLT-Nano-2512"
    asr = next(d for d in app.deployments if d.name == "ASR-fun-asr-nano")
    assert asr.ray_actor_options.num_gpus == 0.5
    scaling = asr.autoscaling_config
    assert scaling["min_replicas"] >= 1 and scaling["max_replicas"] > scaling["min_replicas"]
    # Target in-flight requests of about one batch per replica.
    assert scaling["target_ongoing_requests"] == asr.user_config["max_batch_size"]
    assert asr.backpressure_config.retry_after_s


def test_only_the_local_quickstart_serves_without_api_keys() -> None:
    """Production listens on every interface: it starts only with a key, which the
    RayService's workers get from a Secret; the quickstart, on 127.0.0.1, says it is open."""
    production = AppConfig.model_validate(_load("serve_config.yaml")["applications"][0]["args"])
    assert not production.auth.anonymous
    cpu = _load("serve_config.cpu.yaml")
    assert cpu["http_options"]["host"] == "127.0.0.1"
    assert AppConfig.model_validate(cpu["applications"][0]["args"]).auth.anonymous
    manifest = yaml.safe_load((ROOT / "cluster/kuberay/rayservice.yaml").read_text())
    for group in manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        key = env[production.auth.api_keys_env]["valueFrom"]["secretKeyRef"]
        assert key.get("optional") is not True  # no Secret, no pod: never an open API


def test_cpu_config_fits_two_logical_cpus() -> None:
    """`serve run` on a 2-core machine gives Ray 2 CPUs; every replica must fit at once."""
    app = ServeDeploySchema.model_validate(_load("serve_config.cpu.yaml")).applications[0]
    total = sum(d.ray_actor_options.num_cpus or 1 for d in app.deployments)
    assert total <= 2


def test_cpu_config_answers_english_with_tiny_en_and_serves_the_multilingual_model() -> None:
    app = ServeDeploySchema.model_validate(_load("serve_config.cpu.yaml")).applications[0]
    config = AppConfig.model_validate(app.args)
    assert config.model(config.default_model or "").model == "embedded"
    assert [m.model for m in config.models] == ["embedded", "embedded-multilingual"]


def test_app_config_rejects_duplicate_and_unknown_default_models() -> None:
    model = {"name": "a", "engine": "funasr", "model": "x"}
    with pytest.raises(ValueError, match="unique"):
        AppConfig.model_validate({"models": [model, model]})
    with pytest.raises(ValueError, match="default_model"):
        AppConfig.model_validate({"models": [model], "default_model": "b"})
    assert AppConfig.model_validate({"models": [model]}).default_model == "a"
