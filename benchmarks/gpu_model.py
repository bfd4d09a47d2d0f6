"""A full-size Fun-ASR-Nano with random weights, for ``--gpu``: real compute, no download.

The released model's architecture at its real sizes (SenseVoiceEncoderSmall 50+20 blocks
of 512, a 2-layer adaptor to 1024, Qwen3-0.6B: 28 layers of 1024), in the layout funasr
loads, built from the tiny checkpoint generator's pieces. The vocabulary is the generated
byte-level one (a few hundred tokens, not Qwen's 151k), so the output head costs less than
the real one; everything else is the real model's work. Random weights rarely emit the end
token, so every clip decodes to ``max_new_tokens`` (the harness checks and reports this).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from asr_serve.testing import tiny_model

_ENCODER = {"output_size": 512, "linear_units": 2048, "num_blocks": 50, "tp_blocks": 20}
_ADAPTOR = {"ffn_dim": 2048, "llm_dim": 1024, "encoder_dim": 512, "n_layer": 2}
_QWEN3_06B = {
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
}


def _full_size_config(llm_path: str) -> dict:
    config = tiny_model._config(llm_path)
    config["audio_encoder_conf"].update(_ENCODER)
    config["audio_adaptor_conf"].update(_ADAPTOR)
    return config


def generate(out_dir: Path, *, seed: int = 0) -> Path:
    from funasr.models.fun_asr_nano.model import FunASRNano
    from transformers import Qwen3Config

    llm_dir = out_dir / tiny_model.LLM_DIR
    llm_dir.mkdir(parents=True, exist_ok=True)
    vocab = tiny_model._save_tokenizer(llm_dir)
    tiny_model._save_llm_config(llm_dir, vocab)
    llm_config = Qwen3Config.from_pretrained(str(llm_dir))
    for key, value in _QWEN3_06B.items():
        setattr(llm_config, key, value)
    llm_config.save_pretrained(str(llm_dir))

    config = _full_size_config(str(llm_dir))
    torch.manual_seed(seed)
    model = FunASRNano(
        audio_encoder=config["audio_encoder"],
        audio_encoder_conf=dict(config["audio_encoder_conf"]),
        audio_adaptor=config["audio_adaptor"],
        audio_adaptor_conf=dict(config["audio_adaptor_conf"]),
        llm=config["llm"],
        llm_conf=dict(config["llm_conf"]),
        input_size=80 * 7,
    )
    tiny_model._reinit_llm(model.llm)
    torch.save({k: v.detach().contiguous() for k, v in model.state_dict().items()},
               out_dir / "model.pt")  # fmt: skip
    on_disk = _full_size_config(tiny_model.LLM_DIR)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(on_disk, sort_keys=False))
    (out_dir / "configuration.json").write_text(json.dumps(tiny_model._configuration_json()))
    (out_dir / "full_size_model.json").write_text(json.dumps({"seed": seed}))
    return out_dir


def ensure_full_size_model(out_dir: Path | None = None) -> Path:
    """Generate once into ``~/.cache/asr-serve/random-fun-asr-nano`` (about 3 GB)."""
    out_dir = out_dir or Path.home() / ".cache" / "asr-serve" / "random-fun-asr-nano"
    if not (out_dir / "full_size_model.json").is_file():
        generate(out_dir)
    return out_dir
