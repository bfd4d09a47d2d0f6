"""``benchmarks.gpu_fidelity``: the GPU run where CUDA is, its CPU-independent parts anywhere.

python -m pytest tests/fidelity/test_gpu_fidelity.py   # on a machine with a CUDA GPU
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr_serve.config import ModelConfig
from asr_serve.engines.base import TranscribeOptions
from asr_serve.engines.funasr import FunASREngine
from benchmarks import gpu_fidelity

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU: fp32 against bf16/fp16 tokens and peak GPU memory per replica "
    "on the full-size Fun-ASR-Nano",
)
def test_gpu_fidelity_run(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_fidelity", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["production_dtype"] in ("bfloat16", "float16")
    memory = report["memory"]
    assert [row["batch_size"] for row in memory] == list(gpu_fidelity.BATCH_SIZES)
    peaks = [row["replica_peak_gib"] for row in memory]
    assert peaks == sorted(peaks) and peaks[0] > memory[0]["weights_gib"]
    assert all(row["replicas_fit"] for row in memory), memory
    for clip in report["tokens"]["clips"].values():
        for pair in clip.values():
            assert min(pair["lengths"]) > 0, clip


def test_without_cuda_it_says_so(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        gpu_fidelity.main([])


def test_production_model_and_gpu_share_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    models = [
        {"name": "w", "engine": "faster-whisper", "model": "embedded"},
        {"name": "nano", "engine": "funasr", "model": "/m", "max_new_tokens": 300},
    ]
    deployments = [{"name": "ASR-nano", "ray_actor_options": {"num_gpus": 0.25}}]
    app = {"args": {"models": models}, "deployments": deployments}
    config.write_text(json.dumps({"applications": [app]}))  # JSON is YAML
    model, share = gpu_fidelity.production_model(config)
    assert (model.name, model.max_new_tokens, share) == ("nano", 300, 0.25)
    del app["deployments"]
    config.write_text(json.dumps({"applications": [app]}))
    assert gpu_fidelity.production_model(config)[1] == 1.0
    model, share = gpu_fidelity.production_model()  # the real serve_config.yaml
    assert model.engine == "funasr" and 0 < share <= 1


def test_item_seconds_fill_a_batch_as_the_config_admits() -> None:
    assert gpu_fidelity.item_seconds(1, 480, 28) == 28
    assert gpu_fidelity.item_seconds(16, 480, 28) == 28
    assert gpu_fidelity.item_seconds(32, 480, 28) == 15


def test_token_agreement() -> None:
    assert gpu_fidelity.agreement([1, 2, 3], [1, 2, 3]) == {
        "equal": True,
        "first_difference": None,
        "common_prefix": 3,
        "lengths": [3, 3],
    }
    assert gpu_fidelity.agreement([1, 2, 3], [1, 5, 3])["first_difference"] == 1
    assert gpu_fidelity.agreement([1, 2, 3], [1, 2])["first_difference"] == 2
    assert gpu_fidelity.until_stop([4, 5, 9, 5, 9], {9}) == [4, 5]


def test_clips_have_their_lengths() -> None:
    lengths = {name: len(a) / 16000 for name, a in gpu_fidelity.clips().items()}
    assert lengths == {
        "speech-3s": 3,
        "speech-7s": 7,
        "speech-15s": 15,
        "noise-5s": 5,
        "tone-10s": 10,
    }
    assert len(gpu_fidelity.speech_of(28.0)) == 28 * 16000


def test_recorded_tokens_are_each_items_ids_alone_or_batched(tiny_model_dir) -> None:
    config = ModelConfig(
        name="t", engine="funasr", model=str(tiny_model_dir), device="cpu", max_new_tokens=6
    )
    engine = FunASREngine(config)
    engine.load()
    generate = engine._model.model.llm.generate
    audios = [a for name, a in gpu_fidelity.clips().items() if name != "speech-15s"]
    with gpu_fidelity.recorded_tokens(engine) as alone:
        for audio in audios:
            engine.transcribe([audio], [TranscribeOptions()])
    with gpu_fidelity.recorded_tokens(engine) as batched:
        engine.transcribe(audios, [TranscribeOptions()] * len(audios))
    assert len(alone) == len(audios) and all(0 < len(ids) <= 6 for ids in alone)
    assert batched == alone
    assert len({tuple(ids) for ids in alone}) > 1
    assert engine._model.model.llm.generate == generate  # recording ends with the block
    tokenizer = engine._model.kwargs["tokenizer"]
    [result] = engine.transcribe([audios[0]], [TranscribeOptions()])
    assert tokenizer.decode(alone[0]).strip() == result.text
