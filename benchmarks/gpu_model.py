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

from devtools import tiny_model

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
    out_dir = Path(out_dir)
    tiny_model.write_checkpoint(
        out_dir, seed=seed, config=_full_size_config, llm_overrides=_QWEN3_06B
    )
    (out_dir / "full_size_model.json").write_text(json.dumps({"seed": seed}))
    return out_dir


def ensure_full_size_model(out_dir: Path | None = None) -> Path:
    """Generate once into ``~/.cache/asr-serve/random-fun-asr-nano`` (about 3 GB)."""
    out_dir = out_dir or Path.home() / ".cache" / "asr-serve" / "random-fun-asr-nano"
    if not (out_dir / "full_size_model.json").is_file():
        generate(out_dir)
    return out_dir
