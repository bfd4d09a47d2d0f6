"""CAM++ through funasr's own loader, on a tiny generated checkpoint in the ModelScope layout
(the released weights cannot be downloaded here): loading, windows, batching, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_serve.config import SAMPLE_RATE, SpeakersConfig
from asr_serve.speakers.campplus import WINDOW, CamPlusEncoder, CamPlusLoadError
from asr_serve.speakers.encoders import create_encoder
from asr_serve.speakers.ge2e import GE2EEncoder
from devtools.conversation import LINES, VOICES
from devtools.tiny_campplus import EMBEDDING_SIZE, WEIGHTS, write_campplus


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_campplus(tmp_path_factory.mktemp("campplus"))


@pytest.fixture(scope="module")
def campplus(checkpoint: Path) -> CamPlusEncoder:
    return CamPlusEncoder(str(checkpoint), device="cpu")


def test_an_embedding_is_funasrs_own_for_one_window(campplus: CamPlusEncoder) -> None:
    """A clip of one window: the unit vector of what funasr's ``CAMPPlus.inference``
    (its features, its forward) gives for it."""
    clip = VOICES[0].say(LINES[0])[:WINDOW]
    results, _ = campplus.model.inference(data_in=[torch.from_numpy(clip)], device="cpu")
    theirs = results[0]["spk_embedding"][0].detach().numpy()
    ours = campplus.embed([clip])[0]
    assert ours.shape == (EMBEDDING_SIZE,)
    np.testing.assert_allclose(ours, theirs / np.linalg.norm(theirs), atol=1e-5)


def test_windows_as_funasr_cuts_speech_and_batches_equal_alone(campplus: CamPlusEncoder) -> None:
    speech = np.concatenate([v.say(LINES[i]) for i, v in enumerate(VOICES)])
    clips = [speech[:n] for n in (WINDOW // 3, WINDOW, WINDOW + 1, 4 * SAMPLE_RATE, len(speech))]
    for clip in clips:
        windows = campplus.windows(clip)
        assert len(windows) == campplus.partial_count(len(clip))
        assert all(len(w) == WINDOW for w in windows)
        if len(clip) >= WINDOW:  # the last window ends with the clip
            np.testing.assert_array_equal(windows[-1], clip[-WINDOW:])
    together = campplus.embed(clips)
    alone = np.stack([campplus.embed([c])[0] for c in clips])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert campplus.embed([]).shape == (0, EMBEDDING_SIZE)


def test_the_config_names_the_encoder(checkpoint: Path) -> None:
    cam = SpeakersConfig(encoder="cam++", encoder_model=str(checkpoint), encoder_source="local")
    assert isinstance(create_encoder(cam, "cpu"), CamPlusEncoder)
    assert isinstance(create_encoder(SpeakersConfig(), "cpu"), GE2EEncoder)


def test_an_incomplete_checkpoint_is_refused_with_the_fix(checkpoint: Path, tmp_path: Path) -> None:
    """funasr itself would build the model with random weights and only print a line."""
    with pytest.raises(CamPlusLoadError, match="modelscope download"):
        CamPlusEncoder(str(tmp_path / "absent"))
    partial = shutil.copytree(checkpoint, tmp_path / "partial")
    (partial / WEIGHTS).unlink()
    with pytest.raises(CamPlusLoadError, match=WEIGHTS):
        CamPlusEncoder(str(partial))
