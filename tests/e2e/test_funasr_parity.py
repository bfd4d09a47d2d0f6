"""asr-serve over HTTP says exactly what funasr says, on the same checkpoint and the same file.

Three entry points read each 16 kHz mono WAV of :mod:`tests.fidelity.clips`: asr-serve (real
Serve, upload decoded by PyAV, batched across requests), ``funasr.AutoModel(model=DIR)
.generate(input=PATH)`` as a funasr user calls it, and funasr's own OpenAI-style server
(``python -m funasr.bin.server --model-path DIR``, started as the benchmarks start it). Random
weights decode deterministically, so anything that reaches the model differently (samples,
prompt, decoding settings, batch padding) shows as different text.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ray import serve

from asr_serve.config import ModelConfig
from benchmarks.systems.base import http_ok
from benchmarks.systems.baselines import START_TIMEOUT_S, FunASRServer
from tests.e2e.serving import TINY_MODEL, deploy, tiny_args, undeploy
from tests.fidelity.clips import CLIPS, funasr_text, write_wavs

pytestmark = pytest.mark.e2e

APP = "parity"
#: asr-serve's ``language`` and ``prompt``, and what a funasr user passes for the same prompt:
#: Fun-ASR-Nano's prompt takes the language's name, and hotwords as a list.
OPTIONS = {"language": "en", "prompt": "quick brown fox,lazy dog "}
FUNASR_OPTIONS = {"language": "英文", "hotwords": ["quick brown fox", "lazy dog"]}


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_wavs(tmp_path_factory.mktemp("parity-wavs"))


@pytest.fixture(scope="module")
def funasr_model(tiny_model_dir) -> Any:
    """``funasr.AutoModel`` on the checkpoint, loaded as funasr's own server loads it."""
    from funasr import AutoModel

    return AutoModel(model=str(tiny_model_dir), device="cpu", disable_update=True)


@pytest.fixture(scope="module")
def funasr_server(tmp_path_factory, tiny_model_dir) -> Iterator[FunASRServer]:
    """funasr's server on the checkpoint; it loads while Serve deploys asr-serve."""
    model = ModelConfig(name="custom", engine="funasr", model=str(tiny_model_dir), device="cpu")
    server = FunASRServer(tmp_path_factory.mktemp("funasr-server"), model)
    server.process.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def prefix(serve_url: str, tiny_model_dir, funasr_server: FunASRServer) -> Iterator[str]:
    # max_new_tokens None: the checkpoint's own max_length, which funasr decodes with too.
    yield deploy(APP, tiny_args(tiny_model_dir, model={"max_new_tokens": None}))
    undeploy(APP)


@pytest.fixture(scope="module")
def server_url(prefix: str, funasr_server: FunASRServer) -> str:
    funasr_server.process.wait(lambda: http_ok(funasr_server.base_url + "/health"), START_TIMEOUT_S)
    return funasr_server.url


@pytest.fixture(scope="module")
def reference(funasr_model, wavs) -> dict[str, str]:
    """``AutoModel.generate(input=path)`` per clip, alone: the text every entry point must give."""
    return {
        name: funasr_text(funasr_model.generate(input=str(p))[0]["text"])
        for name, p in wavs.items()
    }


def _ours(http: httpx.Client, prefix: str, path: Path, **fields: str) -> str:
    resp = http.post(
        f"{prefix}/v1/audio/transcriptions",
        files={"file": (path.name, path.read_bytes())},
        data=fields,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["text"]


def _funasr_server(url: str, path: Path, **fields: str) -> str:
    resp = httpx.post(
        url,
        files={"file": (path.name, path.read_bytes())},
        data={"model": "custom", **fields},
        timeout=120,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["text"]


def test_each_clip_alone_gives_funasrs_text(http, prefix, server_url, wavs, reference) -> None:
    assert len(set(reference.values())) == len(CLIPS)  # the model really hears each clip
    ours = {name: _ours(http, prefix, path) for name, path in wavs.items()}
    theirs = {name: _funasr_server(server_url, path) for name, path in wavs.items()}
    assert ours == reference
    assert theirs == reference


def test_language_and_hotwords_give_the_text_of_funasrs_own_arguments(
    http, prefix, server_url, wavs, funasr_model
) -> None:
    for name in ("speech-3s", "speech-15s", "noise-3s"):
        path = wavs[name]
        expected = funasr_text(funasr_model.generate(input=str(path), **FUNASR_OPTIONS)[0]["text"])
        plain = funasr_text(funasr_model.generate(input=str(path))[0]["text"])
        assert expected != plain, "the options never reached the prompt"
        assert _ours(http, prefix, path, **OPTIONS) == expected
        # funasr's OpenAI endpoint has a language field but no hotwords; it puts the value
        # into the prompt verbatim, so its user sends the name the prompt takes.
        only_language = funasr_text(
            funasr_model.generate(input=str(path), language="英文")[0]["text"]
        )
        assert _ours(http, prefix, path, language="en") == only_language
        assert _funasr_server(server_url, path, language="英文") == only_language


def _stats(handle: Any) -> list[int]:
    return handle.stats.remote().result()["recent_batch_sizes"]


def test_concurrent_requests_batch_and_each_gives_its_text_alone(
    http, prefix, wavs, reference, funasr_model
) -> None:
    """Batched with clips 1 to 25 s long (left padding), plain and with options, mixed."""
    with_options = {
        name: funasr_text(funasr_model.generate(input=str(wavs[name]), **FUNASR_OPTIONS)[0]["text"])
        for name in ("speech-1s", "speech-25s", "tone-7s")
    }
    requests = [(name, {}) for name in wavs] + [(name, OPTIONS) for name in with_options]
    expected = [reference[n] if not o else with_options[n] for n, o in requests]
    handle = serve.get_deployment_handle(f"ASR-{TINY_MODEL}", app_name=APP)
    before = len(_stats(handle))
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        for _ in range(2):
            got = list(pool.map(lambda r: _ours(http, prefix, wavs[r[0]], **r[1]), requests))
            assert got == expected
    sizes = _stats(handle)[before:]
    assert max(sizes) > 1, f"no cross-request batch formed: {sizes}"
