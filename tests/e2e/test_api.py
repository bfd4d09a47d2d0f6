"""The foundation end to end: real Ray, real Serve HTTP proxy, real funasr, real decoding."""

from __future__ import annotations

import concurrent.futures
import io

import httpx
import numpy as np
import openai
import pytest
from ray import serve

from asr_serve.config import ModelConfig
from asr_serve.engines import TranscribeOptions, create_engine
from devtools.server_timing import stages_ms
from devtools.speech import encode, noise, tone
from tests.api.test_openapi import TRANSCRIPTION_FIELDS, TRANSLATION_FIELDS, form
from tests.e2e.serving import TINY_MODEL, deploy, tiny_args, undeploy

pytestmark = pytest.mark.e2e

APP = "api"


@pytest.fixture(scope="module")
def prefix(serve_url: str, tiny_model_dir) -> str:
    yield deploy(APP, tiny_args(tiny_model_dir, limits={"max_audio_s": 30}))
    undeploy(APP)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Distinct signals; the random-weight model gives each its own text."""
    return [tone(220.0 * (i + 1), 1.0 + 0.25 * i) + noise(1.0 + 0.25 * i, i) for i in range(6)]


def _post(http: httpx.Client, prefix: str, data: bytes, name: str = "a.wav", **fields):
    return http.post(f"{prefix}/v1/audio/transcriptions", files={"file": (name, data)}, data=fields)


def _assert_error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["message"]
    return error


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg-opus", "m4a"])
def test_json_transcript_for_each_container(http, prefix, clips, fmt) -> None:
    resp = _post(http, prefix, encode(clips[0], 16000, fmt), name=f"a.{fmt}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body["text"], str) and body["text"]
    assert body["usage"]["seconds"] == pytest.approx(1.0, abs=0.1)
    assert resp.headers["x-request-id"]


def test_text_and_verbose_json(http, prefix, clips) -> None:
    wav = encode(clips[1], 16000, "wav")
    text = _post(http, prefix, wav, response_format="text")
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    verbose = _post(http, prefix, wav, response_format="verbose_json").json()
    assert verbose["text"] == text.text
    assert verbose["duration"] == pytest.approx(1.25, abs=0.05)
    assert verbose["model"] == TINY_MODEL and verbose["task"] == "transcribe"
    for seg in verbose["segments"]:
        assert 0 <= seg["start"] <= seg["end"] <= verbose["duration"] + 0.05


def _stages(resp: httpx.Response) -> dict[str, float]:
    return stages_ms(resp.headers["server-timing"])


def test_every_response_says_where_its_time_went(http, prefix, clips) -> None:
    """Server-Timing through the real graph: the ingress's stages, the model replica's own
    (returned with its result) and the way there and back, within the request's total."""
    wav = _post(http, prefix, encode(clips[0], 16000, "wav"))
    stages = _stages(wav)
    model = ["queue", "batch", "engine", "transport"]
    assert list(stages) == ["upload", "read", *model, "render", "total"], stages
    assert stages["engine"] > 0
    assert sum(v for k, v in stages.items() if k != "total") <= stages["total"] + 1.0
    # Compressed audio goes to the decoder; its call replaces the in-place read.
    mp3 = _stages(_post(http, prefix, encode(clips[0], 16000, "mp3"), name="a.mp3"))
    assert list(mp3) == ["upload", "decode", *model, "render", "total"]
    assert mp3["decode"] > 0
    # A refusal says how far it got; a route with no stages, how long it took.
    assert list(_stages(_post(http, prefix, b"not audio" * 50))) == ["upload", "decode", "total"]
    assert list(_stages(http.get(f"{prefix}/health"))) == ["total"]


def test_request_id_is_echoed(http, prefix, clips) -> None:
    resp = http.post(
        f"{prefix}/v1/audio/transcriptions",
        files={"file": ("a.wav", encode(clips[0], 16000, "wav"))},
        headers={"X-Request-ID": "req-123"},
    )
    assert resp.headers["x-request-id"] == "req-123"


def test_models_health_ready(http, prefix) -> None:
    models = http.get(f"{prefix}/v1/models").json()
    assert [m["id"] for m in models["data"]] == [TINY_MODEL]
    assert http.get(f"{prefix}/v1/models/{TINY_MODEL}").json()["engine"] == "funasr"
    assert http.get(f"{prefix}/health").json()["status"] == "ok"
    ready = http.get(f"{prefix}/ready")
    assert ready.status_code == 200 and ready.json()["models"] == {TINY_MODEL: True}


def test_openapi_shows_the_forms(http, prefix) -> None:
    """The served schema (what ``/docs`` renders) has every field of both audio routes."""
    document = http.get(f"{prefix}/openapi.json").json()
    assert set(form(document, "/v1/audio/transcriptions")["properties"]) == TRANSCRIPTION_FIELDS
    assert set(form(document, "/v1/audio/translations")["properties"]) == TRANSLATION_FIELDS
    assert http.get(f"{prefix}/docs").status_code == 200


def test_error_codes_and_shapes(http, prefix, clips) -> None:
    wav = encode(clips[0], 16000, "wav")
    _assert_error(_post(http, prefix, b"not audio at all" * 10), 400, "invalid_audio")
    _assert_error(_post(http, prefix, wav[:30]), 400, "invalid_audio")  # header cut short
    long_wav = encode(np.zeros(16000 * 31, np.float32), 16000, "flac")
    _assert_error(_post(http, prefix, long_wav), 413, "payload_too_large")
    resp = http.post(
        f"{prefix}/v1/audio/transcriptions", content=wav, headers={"content-type": "audio/wav"}
    )
    _assert_error(resp, 415, "unsupported_media_type")
    err = _assert_error(_post(http, prefix, wav, response_format="xml"), 422, "invalid_parameter")
    assert err["param"] == "response_format"
    err = _assert_error(_post(http, prefix, wav, model="nope"), 404, "model_not_found")
    assert err["param"] == "model"
    _assert_error(http.get(f"{prefix}/v1/nothing"), 404, "not_found")
    _assert_error(http.get(f"{prefix}/v1/audio/transcriptions"), 405, "method_not_allowed")
    # The service is unharmed.
    assert _post(http, prefix, wav).status_code == 200


def test_oversize_upload_is_413(http, prefix) -> None:
    resp = _post(http, prefix, b"\0" * (26 * 1024 * 1024))
    _assert_error(resp, 413, "payload_too_large")


def test_served_equals_in_process_and_batched_equals_alone(
    http, prefix, clips, tiny_model_dir
) -> None:
    wavs = [encode(c, 16000, "wav") for c in clips]
    alone = [_post(http, prefix, w).json()["text"] for w in wavs]
    handle = serve.get_deployment_handle(f"ASR-{TINY_MODEL}", app_name=APP)
    before = len(handle.stats.remote().result()["recent_batch_sizes"])

    with concurrent.futures.ThreadPoolExecutor(len(wavs)) as pool:
        together = list(pool.map(lambda w: _post(http, prefix, w).json()["text"], wavs))
    assert together == alone
    assert len(set(alone)) > 1  # the model really looks at its input

    sizes = handle.stats.remote().result()["recent_batch_sizes"][before:]
    assert max(sizes) > 1, f"no cross-request batch formed: {sizes}"

    # In-process, on the same decoded samples: the same text.
    from asr_serve.audio.decode import decode_audio

    engine = create_engine(ModelConfig.model_validate(tiny_args(tiny_model_dir)["models"][0]))
    engine.load()
    decoded = [decode_audio(w, max_duration_s=60).samples for w in wavs]
    local = engine.transcribe(decoded, [TranscribeOptions()] * len(decoded))
    assert [r.text for r in local] == alone, (alone, [r.text for r in local])


def test_openai_client(serve_url, prefix, clips) -> None:
    client = openai.OpenAI(base_url=f"{serve_url}{prefix}/v1", api_key="unused")
    wav = io.BytesIO(encode(clips[2], 16000, "wav"))
    wav.name = "clip.wav"
    result = client.audio.transcriptions.create(model=TINY_MODEL, file=wav, language="en")
    assert isinstance(result.text, str) and result.text
    wav.seek(0)
    verbose = client.audio.transcriptions.create(
        model=TINY_MODEL, file=wav, response_format="verbose_json", language="en"
    )
    assert verbose.text == result.text and verbose.duration == pytest.approx(1.5, abs=0.05)
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="nope", file=wav)
