"""Serve-level behaviour: live reconfigure, readiness gating, overload, deadline, bad model."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeDeploySchema

from devtools.speech import encode, noise
from tests.e2e.serving import TINY_MODEL, deploy, tiny_args, undeploy, whisper_model
from tests.support.faulty_engine import FAIL_PROMPT
from tests.support.replica_logs import LogWindow, records, tracebacks

pytestmark = pytest.mark.e2e

ASR = f"ASR-{TINY_MODEL}"
WAV = encode(noise(1.0, 7), 16000, "wav")


def _post(http: httpx.Client, prefix: str, **fields) -> httpx.Response:
    return http.post(
        f"{prefix}/v1/audio/transcriptions", files={"file": ("a.wav", WAV)}, data=fields
    )


def _burst(http: httpx.Client, prefix: str, n: int) -> list[httpx.Response]:
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: _post(http, prefix), range(n)))


def test_reconfigure_changes_batch_size_live(http, tiny_model_dir) -> None:
    """`serve deploy` of a config whose ASR user_config changed: same process, new batches.

    Deployed through the controller's config API, as `serve deploy` / `serve run
    config.yaml` do, so Serve sees that only the user_config changed.
    """
    app = "reconf"
    client = _get_global_client()

    def deploy_with(batching: dict) -> None:
        config = {
            "applications": [
                {
                    "name": app,
                    "route_prefix": f"/{app}",
                    "import_path": "asr_serve.app:build_app",
                    "args": tiny_args(tiny_model_dir),
                    "deployments": [
                        {"name": "Ingress", "ray_actor_options": {"num_cpus": 0.1}},
                        {"name": "AudioDecoder", "ray_actor_options": {"num_cpus": 0.1}},
                        {
                            "name": ASR,
                            "ray_actor_options": {"num_cpus": 0.5},
                            "user_config": batching,
                        },
                    ],
                }
            ]
        }
        client.deploy_apps(ServeDeploySchema.model_validate(config), _blocking=True)

    deploy_with({"max_batch_size": 8, "batch_wait_timeout_s": 0.5})
    prefix = f"/{app}"
    handle = serve.get_deployment_handle(ASR, app_name=app)
    try:
        pid = handle.stats.remote().result()["pid"]
        assert all(r.status_code == 200 for r in _burst(http, prefix, 8))
        assert max(handle.stats.remote().result()["recent_batch_sizes"]) > 2

        deploy_with({"max_batch_size": 2, "batch_wait_timeout_s": 0.5})
        deadline = time.monotonic() + 60
        while handle.stats.remote().result()["batching"]["max_batch_size"] != 2:
            assert time.monotonic() < deadline, "user_config never reached the replica"
            time.sleep(0.5)
        stats = handle.stats.remote().result()
        assert stats["pid"] == pid, "reconfigure restarted the replica"
        seen = len(stats["recent_batch_sizes"])
        assert all(r.status_code == 200 for r in _burst(http, prefix, 8))
        sizes = handle.stats.remote().result()["recent_batch_sizes"][seen:]
        assert sizes and max(sizes) <= 2
    finally:
        undeploy(app)


def test_full_queue_is_503_with_retry_after(http, tiny_model_dir) -> None:
    app = "fullqueue"
    options = {
        ASR: {
            "max_ongoing_requests": 1,
            "max_queued_requests": 1,
            "ray_actor_options": {"num_cpus": 0.5},
        }
    }
    args = tiny_args(
        tiny_model_dir, model={"batching": {"max_batch_size": 1, "batch_wait_timeout_s": 0}}
    )
    prefix = deploy(app, args, options)
    try:
        responses = _burst(http, prefix, 16)
        codes = sorted(r.status_code for r in responses)
        assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
        rejected = next(r for r in responses if r.status_code == 503)
        assert int(rejected.headers["retry-after"]) >= 1
        assert rejected.json()["error"]["code"] == "overloaded"
        assert _post(http, prefix).status_code == 200  # healthy right after
    finally:
        undeploy(app)


def test_deadline_is_504(http) -> None:
    app = "deadline"
    # Any engine: the embedded Whisper starts seconds sooner than a FunASR replica.
    args = {"models": [whisper_model()], "limits": {"request_timeout_s": 0.001}}
    prefix = deploy(app, args)
    try:
        resp = _post(http, prefix)
        assert resp.status_code == 504
        assert resp.json()["error"]["code"] == "deadline_exceeded"
    finally:
        undeploy(app)


def test_ready_only_after_warm_up(http, tiny_model_dir) -> None:
    app = "warming"
    prefix = deploy(app, tiny_args(tiny_model_dir), blocking=False)
    try:
        answers: list[int] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            resp = http.get(f"{prefix}/ready")
            if resp.headers.get("content-type", "").startswith("application/json"):
                answers.append(resp.status_code)
                if resp.status_code == 200:
                    break
            time.sleep(0.2)
        assert answers and answers[-1] == 200
        assert answers[0] == 503, "the ingress answered ready before the model warmed up"
        assert _post(http, prefix).status_code == 200
    finally:
        undeploy(app)


def test_missing_weights_fail_with_a_clear_message(tmp_path) -> None:
    """The deployment fails fast, and `serve status` says what to download and where."""
    app = "noweights"
    absent = tmp_path / "absent"
    try:
        with pytest.raises(RuntimeError, match="noweights"):
            deploy(app, tiny_args(absent))
        status = serve.status().applications[app]
        message = status.deployments[ASR].message
        assert status.deployments[ASR].status == "DEPLOY_FAILED"
        assert "download" in message and str(absent) in message, message
        assert "Traceback" not in message.splitlines()[0]
    finally:
        undeploy(app)


def test_key_file_without_a_key_stops_the_ingress(tmp_path) -> None:
    """Keys configured but none parsed (only comments): the ingress refuses to start, so
    the API is never served without auth."""
    app = "nokeys"
    keys_file = tmp_path / "api-keys"
    keys_file.write_text("# sk-live-key (commented out by mistake)\n")
    args = {"models": [whisper_model()], "auth": {"api_keys_file": str(keys_file)}}
    try:
        with pytest.raises(RuntimeError, match="nokeys"):
            deploy(app, args)
        status = serve.status().applications[app]
        assert status.deployments["Ingress"].status == "DEPLOY_FAILED"
        assert "holds no API key" in status.deployments["Ingress"].message
    finally:
        undeploy(app)


def test_an_engine_failure_is_a_500_in_the_api_shape(http, tiny_model_dir) -> None:
    """A plain RuntimeError in the real engine (not one of our API errors) leaves the ingress
    as a JSON 500 naming the way to report it, and the replica keeps serving. Our own
    failure is logged as one: one ERROR with the traceback in the ASR replica's log, one
    ERROR line without it in the ingress's."""
    app = "enginefail"
    model = {"engine": "tests.support.faulty_engine:FailOnPromptEngine"}
    prefix = deploy(app, tiny_args(tiny_model_dir, model=model))
    try:
        logs = LogWindow(app)
        resp = _post(http, prefix, prompt=FAIL_PROMPT)
        assert resp.status_code == 500
        assert resp.headers["content-type"] == "application/json"
        error = resp.json()["error"]
        assert error["type"] == "server_error" and error["code"] == "internal_error"
        assert "X-Request-ID" in error["message"] and resp.headers["x-request-id"]
        assert _post(http, prefix).status_code == 200
        written = logs.read()
        asr = "".join(t for name, t in written.items() if name.startswith(f"replica_{app}_ASR"))
        ingress = "".join(t for name, t in written.items() if "_Ingress_" in name)
        assert len(records(asr, "ERROR")) == 1 and tracebacks(asr) >= 1, asr[-3000:]
        assert "injected engine failure" in asr
        assert len(records(ingress, "ERROR")) == 1 and tracebacks(ingress) == 0, ingress
    finally:
        undeploy(app)
