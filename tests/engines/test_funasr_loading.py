"""Building a funasr model with only the modules its config names imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from asr_serve.engines import funasr_loading


def test_every_registered_name_maps_to_the_modules_registering_it() -> None:
    index = funasr_loading._registrations()
    assert index["FunASRNano"] == ("funasr.models.fun_asr_nano.model",)
    assert index["HuggingfaceTokenizer"] == ("funasr.tokenizer.hf_tokenizer",)
    # One name, two tables (a model and an adaptor): both modules are imported.
    assert {"funasr.models.transformer.model", "funasr.models.llm_asr.adaptor"} <= set(
        index["Transformer"]
    )


def test_the_tiny_model_builds_from_its_named_parts_alone(tiny_model_dir: Path) -> None:
    """In a process of its own (funasr's registry is the process's): the engine loads and
    transcribes with a few dozen funasr modules imported, not the few hundred of
    ``import funasr``."""
    code = f"""
import sys
import numpy as np
from asr_serve.config import ModelConfig
from asr_serve.engines.base import TranscribeOptions
from asr_serve.engines.funasr import FunASREngine

engine = FunASREngine(ModelConfig(
    name="tiny", engine="funasr", model={str(tiny_model_dir)!r}, device="cpu", cpu_threads=1,
    max_new_tokens=4,
))
engine.load()
(result,) = engine.transcribe([np.zeros(16000, np.float32)], [TranscribeOptions()])
loaded = [m for m in sys.modules if m.startswith("funasr")]
print(len(loaded), "funasr.models.paraformer.model" in loaded, type(result.text).__name__)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, paraformer, text = out.stdout.splitlines()[-1].split()  # funasr prints lines too
    assert int(count) < 150 and paraformer == "False" and text == "str", out.stdout


class _Funasr:
    """funasr's package as :func:`funasr_loading.auto_model` uses it."""

    __name__ = "funasr"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.walked = 0
        self.built: list[dict[str, Any]] = []

    def import_submodules(self, name: str) -> None:
        self.walked += 1

    def AutoModel(self, **kwargs: Any) -> str:
        self.built.append(kwargs)
        if len(self.built) <= self.failures:
            raise TypeError("'NoneType' object is not callable")
        return "model"


@pytest.fixture
def fake_funasr(monkeypatch) -> _Funasr:
    funasr = _Funasr(failures=1)
    monkeypatch.setattr(funasr_loading, "_import_without_walk", lambda: funasr)
    monkeypatch.setattr(funasr_loading, "_register_named", lambda config: True)
    return funasr


def test_a_model_its_named_parts_do_not_build_is_built_again_with_everything(
    fake_funasr: _Funasr, tmp_path: Path
) -> None:
    (tmp_path / "config.yaml").write_text("model: FunASRNano\n")
    assert funasr_loading.auto_model(model=str(tmp_path)) == "model"
    assert fake_funasr.walked == 1 and len(fake_funasr.built) == 2


def test_a_hub_model_gets_everything_first_and_its_error_as_it_is(
    fake_funasr: _Funasr,
) -> None:
    with pytest.raises(TypeError):
        funasr_loading.auto_model(model="FunAudioLLM/Fun-ASR-MLT-Nano-2512", hub="ms")
    assert fake_funasr.walked == 1 and len(fake_funasr.built) == 1


def test_a_config_whose_model_no_module_registers_is_not_registered_by_name(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model: NoSuchModel\nencoder: SenseVoiceEncoderSmall\n")
    assert funasr_loading._register_named(config) is False
    config.write_text("- not a mapping\n")
    assert funasr_loading._register_named(config) is False
