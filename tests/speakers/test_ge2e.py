"""The GE2E encoder against resemblyzer's own code, and its weights' checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from asr_serve.speakers.ge2e import (
    WEIGHTS_SHA256,
    GE2EEncoder,
    WeightsError,
    load_state,
    weights_path,
)
from devtools.conversation import VOICES


def test_embeddings_are_resemblyzers(encoder: GE2EEncoder) -> None:
    """Same features, same network, same averaging: resemblyzer's VoiceEncoder (its librosa
    mel, its torch module) gives the same vector for the same loudness-normalised clip."""
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume

    clip = VOICES[0].say("The numbers came in yesterday and they look better than expected.")
    # 1.6 s plus whole 0.8 s steps: our evenly spread partials fall where resemblyzer's do.
    clip = clip[: (160 + 80 * 4) * 160 - 1]
    theirs = VoiceEncoder(device="cpu", verbose=False).embed_utterance(
        normalize_volume(clip, -30, increase_only=True), rate=1.25
    )
    ours = encoder.embed([clip])[0]
    assert ours.shape == (256,)
    assert float(ours @ theirs) > 0.999
    assert abs(float(np.linalg.norm(ours)) - 1.0) < 1e-5


def test_a_batch_gives_each_clip_its_own_vector(encoder: GE2EEncoder) -> None:
    clips = [
        v.say(text)
        for v, text in zip(VOICES, ["Yes.", "Good morning to you all."] * 2, strict=False)
    ]
    batched = encoder.embed(clips)
    alone = np.stack([encoder.embed([c])[0] for c in clips])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert encoder.embed([]).shape == (0, 256)


def test_partials_cover_the_clip(encoder: GE2EEncoder) -> None:
    """The fewest partials at most a step apart that cover the clip, evenly spread."""
    assert encoder.partial_count(8_000) == 1  # shorter than a partial: padded
    assert encoder.partial_starts(16_000 * 16 // 10 - 1) == [0]
    assert encoder.partial_starts(16_000 * 4 - 1) == [0, 80, 160, 240]  # 0, 0.8, 1.6, 2.4 s
    assert encoder.partial_starts(16_000 * 2 - 1) == [0, 40]  # the end covered, not padded
    wide = GE2EEncoder(partial_step_s=1.6)
    assert wide.partial_starts(16_000 * 3 - 1) == [0, 140]
    assert wide.partial_starts(16_000 * 48 // 10 - 1) == [0, 160, 320]


def test_weights_are_checked_before_loading(tmp_path: Path) -> None:
    real = weights_path()
    assert load_state(real).keys() >= {"lstm.weight_ih_l0", "linear.weight"}
    tampered = tmp_path / "pretrained.pt"
    data = bytearray(real.read_bytes())
    data[-1] ^= 1
    tampered.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="SHA-256"):
        load_state(tampered)
    with pytest.raises(WeightsError, match="cannot read"):
        load_state(tmp_path / "missing.pt")
    assert len(WEIGHTS_SHA256) == 64


def test_encoder_takes_a_state(encoder: GE2EEncoder) -> None:
    """The network is ours: any state of its shape loads (what a GPU replica moves)."""
    state = {k: torch.zeros_like(v) for k, v in encoder.model.state_dict().items()}
    zero = GE2EEncoder(state=state)
    vector = zero.embed([np.zeros(16_000, dtype=np.float32)])[0]
    assert np.all(np.isfinite(vector))
