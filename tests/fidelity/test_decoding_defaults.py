"""Decoding settings: a default config decodes exactly as ``funasr.bin.server`` does.

funasr's server has two Fun-ASR-Nano paths. With ``--model-path`` (and whenever vLLM is
missing) it calls ``AutoModel.generate(input=PATH, batch_size=1, language=...)``, the path
asr-serve's engine shares: the kwargs that reach ``FunASRNano.inference`` are compared whole.
Its GPU default is vLLM, whose arguments are captured from its real request handlers with
the engine faked (vLLM needs a GPU) and compared with our settings and prompt.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers.generation import GenerationMode

from asr_serve.audio.decode import decode_audio
from asr_serve.config import ModelConfig
from asr_serve.engines.base import TranscribeOptions
from asr_serve.engines.funasr import FunASREngine, _resolve_llm_dtype, hotword_list
from tests.fidelity.clips import funasr_text

#: What differs between the two calls and does not touch decoding: per-call inputs and
#: objects (the same files loaded twice), the progress bar, and the hub a missing model
#: would be downloaded from (the model is a local directory).
NOT_DECODING = {"key", "data_in", "data_lengths", "tokenizer", "frontend", "disable_pbar", "hub"}
PROMPT = "quick brown fox,lazy dog , ,"


def _engine(model_dir: Path, **overrides: Any) -> FunASREngine:
    fields = {"name": "tiny", "engine": "funasr", "model": str(model_dir), "device": "cpu"}
    engine = FunASREngine(ModelConfig.model_validate(fields | overrides))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> FunASREngine:
    return _engine(tiny_model_dir)


def _spy(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> list[dict[str, Any]]:
    """Record the keyword arguments of every ``cls.name`` call; the return value too."""
    calls: list[dict[str, Any]] = []
    real = getattr(cls, name)

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = real(self, *args, **kwargs)
        calls.append({**kwargs, "<return>": result})
        return result

    monkeypatch.setattr(cls, name, spy)
    return calls


def _effective(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The decoding kwargs, with FunASRNano's own default where a call leaves one out."""
    kept = {k: v for k, v in kwargs.items() if k not in NOT_DECODING | {"<return>"}}
    return {"llm_dtype": "fp32"} | kept


def test_default_config_calls_funasrs_model_as_its_server_does(
    monkeypatch, tiny_model_dir, wavs, engine
) -> None:
    from fastapi.testclient import TestClient
    from funasr.bin._server_app import create_app
    from funasr.models.fun_asr_nano.model import FunASRNano

    path = wavs["speech-7s"]
    calls = _spy(monkeypatch, FunASRNano, "inference")
    app = create_app(device="cpu", model_path=str(tiny_model_dir))
    with TestClient(app) as client:
        files = {"file": (path.name, path.read_bytes())}
        answer = client.post("/v1/audio/transcriptions", files=files, data={"model": "custom"})
    samples = decode_audio(path.read_bytes(), max_duration_s=60).samples
    [ours] = engine.transcribe([samples], [TranscribeOptions()])

    server_kwargs, our_kwargs = calls
    assert _effective(our_kwargs) == _effective(server_kwargs)
    assert ours.text == answer.json()["text"]


class _FakeVLLMEngine:
    """Stands in for ``FunASRNanoVLLM``: records what the server asks of it."""

    def __init__(self) -> None:
        self.loads: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []

    def from_pretrained(self, **kwargs: Any) -> _FakeVLLMEngine:
        self.loads.append(kwargs)
        return self

    def generate(self, inputs: list[np.ndarray], **kwargs: Any) -> list[dict[str, str]]:
        self.calls.append(kwargs)
        return [{"text": "x"} for _ in inputs]


class _WholeFileVad:
    """Stands in for fsmn-vad: one segment, the whole file."""

    def __init__(self, **_: Any) -> None:
        pass

    def generate(self, input: np.ndarray, fs: int) -> list[dict[str, Any]]:
        return [{"value": [[0, len(input) * 1000 // fs]]}]


@pytest.fixture
def vllm_server_calls(monkeypatch, wavs) -> _FakeVLLMEngine:
    """funasr's server on its GPU path, asked once per endpoint, with language and hotwords."""
    import funasr
    from fastapi.testclient import TestClient
    from funasr.bin._server_app import create_app
    from funasr.models.fun_asr_nano import inference_vllm

    fake = _FakeVLLMEngine()
    monkeypatch.setattr(inference_vllm.FunASRNanoVLLM, "from_pretrained", fake.from_pretrained)
    monkeypatch.setattr(funasr, "AutoModel", _WholeFileVad)
    app = create_app(device="cuda", preload_model="fun-asr-nano")
    path = wavs["speech-3s"]
    with TestClient(app) as client:
        files = {"file": (path.name, path.read_bytes())}
        data = {"model": "fun-asr-nano", "language": "en"}
        assert client.post("/v1/audio/transcriptions", files=files, data=data).status_code == 200
        assert client.post("/asr", files=files, data={"hotwords": PROMPT}).status_code == 200
    return fake


def test_settings_default_to_what_funasrs_vllm_server_passes(vllm_server_calls) -> None:
    config = ModelConfig(name="m", engine="funasr", model="/m")
    transcriptions, asr = vllm_server_calls.calls
    assert transcriptions == {"max_new_tokens": 500, "repetition_penalty": 1.0, "language": "en"}
    assert config.repetition_penalty == transcriptions["repetition_penalty"]
    assert config.itn is True  # the server passes none: FunASRNanoVLLM.generate's default
    # Our cap is the checkpoint's max_length (512 if unset), as on funasr's AutoModel path;
    # the vLLM path's 500 is documented in docs/configuration.md's model settings.
    assert config.max_new_tokens is None
    assert tuple(asr["hotwords"]) == hotword_list(PROMPT) == ("quick brown fox", "lazy dog")
    [load] = vllm_server_calls.loads
    assert load["dtype"] == "bf16"


def test_auto_dtype_on_a_bf16_gpu_is_the_vllm_servers(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert _resolve_llm_dtype("auto", "cuda") == "bf16"


def test_decoding_is_greedy_as_on_funasrs_server(engine) -> None:
    from funasr.models.fun_asr_nano.inference_vllm import FunASRNanoVLLM

    vllm_defaults = inspect.signature(FunASRNanoVLLM.generate).parameters
    assert vllm_defaults["temperature"].default == 0.0  # greedy; the server sets no other
    mode = engine._model.model.llm.generation_config.get_generation_mode()
    assert mode == GenerationMode.GREEDY_SEARCH


@pytest.mark.parametrize("language", ["zh", "en", "ja", "ko", None])
@pytest.mark.parametrize("prompt", [PROMPT, None])
def test_prompt_is_built_as_funasrs_vllm_server_builds_it(
    monkeypatch, engine, language, prompt
) -> None:
    """The four languages funasr's vLLM path names; its server splits hotwords at commas."""
    from funasr.models.fun_asr_nano.inference_vllm import FunASRNanoVLLM
    from funasr.models.fun_asr_nano.model import FunASRNano

    prompts = _spy(monkeypatch, FunASRNano, "get_prompt")
    options = TranscribeOptions(language=language, prompt=prompt)
    engine.transcribe([np.zeros(8000, dtype=np.float32)], [options])
    hotwords = [w.strip() for w in (prompt or "").split(",") if w.strip()] or None
    expected = FunASRNanoVLLM._build_prompt_text(None, hotwords, language, True)
    assert [p["<return>"] for p in prompts] == [expected]


@pytest.mark.parametrize(
    ("setting", "funasr_kwargs"),
    [
        ({"max_new_tokens": 5}, {"max_length": 5}),
        ({"repetition_penalty": 1.5}, {"llm_kwargs": {"repetition_penalty": 1.5}}),
        ({"itn": False}, {"itn": False}),
    ],
)
def test_each_setting_gives_the_text_of_funasrs_own_argument(
    tiny_model_dir, funasr_model, wavs, engine, setting, funasr_kwargs
) -> None:
    path = wavs["speech-3s"]
    samples = decode_audio(path.read_bytes(), max_duration_s=60).samples
    expected = funasr_text(funasr_model.generate(input=str(path), **funasr_kwargs)[0]["text"])
    [default] = engine.transcribe([samples], [TranscribeOptions()])
    [ours] = _engine(tiny_model_dir, **setting).transcribe([samples], [TranscribeOptions()])
    assert ours.text == expected
    assert ours.text != default.text, "the setting changed nothing"
