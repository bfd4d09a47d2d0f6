"""The tiny checkpoint: real layout, loads through the real ``funasr.AutoModel``, usable outputs."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from devtools import tiny_model
from devtools.tiny_model import (
    LLM_DIR,
    SPECIAL_TOKENS,
    default_tiny_model_dir,
    ensure_tiny_model,
    generate_tiny_model,
)


@pytest.fixture(scope="module")
def auto_model(tiny_model_dir: Path):
    from funasr import AutoModel

    return AutoModel(model=str(tiny_model_dir), device="cpu", disable_update=True)


def _texts(auto_model, clips: list[np.ndarray]) -> list[str]:
    inputs = [torch.from_numpy(c) for c in clips]
    return [r["text"] for r in auto_model.generate(input=inputs, batch_size=len(inputs))]


def _digests(model_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(model_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(model_dir.rglob("*"))
        if p.is_file()
    }


def test_layout_is_the_released_one(tiny_model_dir: Path) -> None:
    metas = json.loads((tiny_model_dir / "configuration.json").read_text())["file_path_metas"]
    assert metas["init_param"] == "model.pt"
    assert metas["llm_conf"]["init_param_path"] == metas["tokenizer_conf"]["init_param_path"]
    assert (tiny_model_dir / metas["llm_conf"]["init_param_path"] / "config.json").is_file()

    config = yaml.safe_load((tiny_model_dir / "config.yaml").read_text())
    assert config["model"] == "FunASRNano"
    assert config["audio_encoder"] == "SenseVoiceEncoderSmall"
    assert config["audio_adaptor"] == "Transformer"
    assert config["llm_conf"]["init_param_path"] == LLM_DIR  # relative, as released
    assert config["frontend"] == "WavFrontend"
    frontend = config["frontend_conf"]
    assert (frontend["n_mels"], frontend["lfr_m"], frontend["lfr_n"]) == (80, 7, 6)
    assert frontend["dither"] == 0.0
    assert frontend["cmvn_file"] is None

    size = sum(p.stat().st_size for p in tiny_model_dir.rglob("*") if p.is_file())
    assert size < 2 * 1024 * 1024


def test_tokenizer_keeps_the_chat_tokens_whole(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir / LLM_DIR))
    for token in SPECIAL_TOKENS:
        assert len(tokenizer.encode(token)) == 1, token
    chat = "<|im_start|>user\n语音转写成英文\uff1a<|startofspeech|>!!<|endofspeech|><|im_end|>\n"
    assert tokenizer.decode(tokenizer.encode(chat)) == chat


def test_loads_through_real_automodel(auto_model, tiny_model_dir: Path) -> None:
    model = auto_model.model
    assert type(model).__name__ == "FunASRNano"
    assert model.ctc_decoder is None  # so lists take the batched LLM path
    # The weights are the checkpoint's, not a fresh random init.
    saved = torch.load(tiny_model_dir / "model.pt", map_location="cpu")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_generate_is_fast_and_depends_on_the_audio(auto_model, clips: list[np.ndarray]) -> None:
    _texts(auto_model, clips[:2])  # first call pays for lazy initialisation
    start = time.perf_counter()
    texts = _texts(auto_model, clips[:2])
    assert time.perf_counter() - start < 1.0
    assert all(texts)
    assert len(set(_texts(auto_model, clips))) == len(clips)


def test_generation_is_deterministic(auto_model, clips: list[np.ndarray]) -> None:
    assert _texts(auto_model, clips) == _texts(auto_model, clips)


def test_same_seed_same_bytes(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert _digests(generate_tiny_model(tmp_path / "again")) == _digests(tiny_model_dir)
    other = _digests(generate_tiny_model(tmp_path / "other", seed=1))
    assert other["model.pt"] != _digests(tiny_model_dir)["model.pt"]


def test_ensure_reuses_a_complete_model(tiny_model_dir: Path, monkeypatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("regenerated a complete model")

    monkeypatch.setattr(tiny_model, "generate_tiny_model", fail)
    assert ensure_tiny_model(tiny_model_dir) == tiny_model_dir


def test_ensure_regenerates_a_model_other_library_versions_wrote(
    tmp_path: Path, monkeypatch
) -> None:
    model_dir = ensure_tiny_model(tmp_path / "tiny")
    config = model_dir / LLM_DIR / "config.json"
    fresh = config.read_bytes()
    config.write_text(config.read_text().replace('"use_cache"', '"an_older_key"'))
    assert ensure_tiny_model(model_dir) == model_dir  # same writers: the copy is trusted
    assert config.read_bytes() != fresh

    real_version = tiny_model.version
    monkeypatch.setattr(
        tiny_model, "version", lambda p: "0.0" if p == "transformers" else real_version(p)
    )
    ensure_tiny_model(model_dir)
    assert config.read_bytes() == fresh


def test_ensure_fills_an_empty_dir_and_refuses_a_foreign_one(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (ensure_tiny_model(empty) / "model.pt").is_file()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        ensure_tiny_model(foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_default_dir_follows_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ASR_SERVE_TINY_MODEL_DIR", str(tmp_path / "tiny"))
    assert default_tiny_model_dir() == tmp_path / "tiny"
    monkeypatch.delenv("ASR_SERVE_TINY_MODEL_DIR")
    assert default_tiny_model_dir() == Path.home() / ".cache" / "asr-serve" / "tiny-fun-asr-nano"


def test_cli_writes_a_model(tmp_path: Path, capsys) -> None:
    tiny_model.main([str(tmp_path / "cli"), "--seed", "3"])
    assert (tmp_path / "cli" / "model.pt").is_file()
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")


def test_full_size_llm_config_saves_and_loads(tmp_path: Path) -> None:
    """The benchmarks' full-size sizes go through the same writer (28 layers, 28 layer types)."""
    from transformers import Qwen3Config

    from benchmarks.gpu_model import _QWEN3_06B

    vocab = tiny_model._save_tokenizer(tmp_path)
    tiny_model._save_llm_config(tmp_path, vocab, _QWEN3_06B)
    config = Qwen3Config.from_pretrained(str(tmp_path))
    assert config.num_hidden_layers == len(config.layer_types) == 28
    assert (config.hidden_size, config.vocab_size) == (1024, vocab)
