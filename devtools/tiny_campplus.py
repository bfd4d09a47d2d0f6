"""A tiny random-weight CAM++ checkpoint in the ModelScope layout funasr loads.

The released ``iic/speech_campplus_sv_zh-cn_16k-common`` cannot be downloaded here, so the
tests load this through the same code (``funasr.AutoModel`` on a directory with
``configuration.json``, ``config.yaml`` and the weights file its ``file_path_metas`` name):
the real architecture (``CAMPPlus`` from funasr's registry) with every width cut down. Its
embeddings tell nobody apart, but they depend on the audio and are deterministic, which is
what loading, batching and plumbing tests need.

    python -m devtools.tiny_campplus OUT_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

#: The released checkpoint's weights file name.
WEIGHTS = "campplus_cn_common.bin"
EMBEDDING_SIZE = 32
_CONFIG = {
    "model": "CAMPPlus",
    "model_conf": {
        "feat_dim": 80,  # funasr's features: 80 Kaldi filterbanks
        "embedding_size": EMBEDDING_SIZE,
        "growth_rate": 4,
        "bn_size": 2,
        "init_channels": 16,
        "memory_efficient": False,
    },
}
_CONFIGURATION = {
    "framework": "pytorch",
    "task": "speaker-verification",
    "model": {"type": "cam++"},
    "file_path_metas": {"init_param": WEIGHTS, "config": "config.yaml"},
}


def write_campplus(out_dir: Path, *, seed: int = 0) -> Path:
    """Write the checkpoint to ``out_dir``; the same seed gives the same weights."""
    from funasr.models.campplus.model import CAMPPlus

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = CAMPPlus(**_CONFIG["model_conf"])
    torch.save(model.state_dict(), out_dir / WEIGHTS)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(_CONFIG, sort_keys=False))
    (out_dir / "configuration.json").write_text(json.dumps(_CONFIGURATION, indent=2))
    return out_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m devtools.tiny_campplus", description=__doc__)
    parser.add_argument("out_dir", type=Path)
    print(write_campplus(parser.parse_args().out_dir))
