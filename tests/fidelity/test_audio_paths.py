"""What reaches the model from a file: asr-serve's PyAV decoder against funasr's own loader.

funasr 1.4.16 reads a path with ``load_audio_text_image_video``: ``torchaudio.load`` first
(since torchaudio 2.9 it needs torchcodec, which is not installed, so it fails), then
soundfile (libsndfile: WAV, FLAC, OGG, MP3) as float32 in [-1, 1), channels averaged, then
``torchaudio.transforms.Resample`` (Hann-windowed sinc, 6 zero crossings, rolloff 0.99) to
16 kHz. asr-serve decodes with PyAV, resamples with libswresample and averages channels.
Same scale, same downmix: 16 kHz WAV gives the same samples bit for bit. Other rates differ
only by the resampler's filter, measured on the features the model's frontend computes
(fbank + LFR; the tiny checkpoint has no CMVN, an affine map per dimension).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from asr_serve.audio.decode import decode_audio
from asr_serve.config import SAMPLE_RATE
from tests.fidelity.clips import clip

#: Feature values are natural logs of mel energies; this turns a difference into dB.
_DB = 10 / np.log(10)
#: Mean |difference| of the features, in dB, that each source rate may show (see _passband_db).
#: Measured on 7 s of speech: 0.054-0.055 dB from 22.05, 44.1 and 48 kHz (WAV and MP3, mono and
#: stereo), 0.122 dB from 8 kHz. funasr's own server on its vLLM path (soundfile + librosa's
#: soxr) is further from its AutoModel path: 0.062-0.064 and 0.134 dB. A 0.5 dB gain error
#: alone gives 0.5 dB.
TOLERANCE_DB = {8000: 0.2, 22050: 0.1, 44100: 0.1, 48000: 0.1}
#: Gain: RMS of our samples over funasr's. Measured 1.00000-1.00003, 1.0019 from 8 kHz (the
#: filters' passband ripple); a 0.5 dB gain error is 0.944.
GAIN_TOLERANCE = 0.005


def _two_channels(seconds_from: int = 0) -> np.ndarray:
    """Different speech in each channel, so only a true average matches funasr's downmix."""
    left = clip("speech-7s")
    right = 0.7 * clip("speech-15s")[seconds_from * SAMPLE_RATE :][: len(left)]
    return np.stack([left, right], axis=1)


def _write(path: Path, rate: int, channels: int, subtype: str | None = None) -> Path:
    """The test speech at ``rate`` in the container ``path``'s suffix names."""
    audio = _two_channels(5) if channels == 2 else clip("speech-7s")[:, None]
    if rate != SAMPLE_RATE:  # any resampler: this only makes the source file
        source = torch.from_numpy(np.ascontiguousarray(audio.T))
        audio = torchaudio.functional.resample(source, SAMPLE_RATE, rate).numpy().T
    sf.write(path, audio, rate, subtype=subtype)
    return path


def _funasr_samples(path: Path) -> np.ndarray:
    from funasr.utils.load_utils import load_audio_text_image_video

    return load_audio_text_image_video(str(path), fs=SAMPLE_RATE).numpy()


def _ours(path: Path) -> np.ndarray:
    return decode_audio(path.read_bytes(), max_duration_s=600).samples


def _features(funasr_model: Any, samples: np.ndarray) -> np.ndarray:
    """The model's frontend on ``samples``: what its encoder reads, frames x (7 x 80 mels)."""
    from funasr.utils.load_utils import extract_fbank

    frontend = funasr_model.kwargs["frontend"]
    feats, _ = extract_fbank(
        torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)),
        data_type="sound",
        frontend=frontend,
        is_final=True,
    )
    return feats[0].numpy().astype(np.float64)


def _mel_centres_hz() -> np.ndarray:
    """Centres of the frontend's 80 Kaldi mel bins (20 Hz to 8 kHz), repeated for LFR's 7."""
    mel = 1127 * np.log1p(np.array([20.0, SAMPLE_RATE / 2]) / 700)
    points = np.linspace(mel[0], mel[1], 82)[1:-1]
    return np.tile(700 * np.expm1(points / 1127), 7)


def _passband_db(reference: np.ndarray, other: np.ndarray, source_rate: int) -> float:
    """Mean |difference| in dB where both resamplers pass the signal.

    Mel bins centred below 90 % of the source's Nyquist frequency (above it a resampler
    leaves only its own leakage, which no two filters agree on), and values within 60 dB of
    the clip's loudest (below, the log of near-silence magnifies rounding).
    """
    frames = min(len(reference), len(other))
    reference, other = reference[:frames], other[:frames]
    band = _mel_centres_hz() < 0.9 * min(source_rate, SAMPLE_RATE) / 2
    loud = reference > reference.max() - 60 / _DB
    return float(np.mean(np.abs(other - reference)[loud & band]) * _DB)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
@pytest.mark.parametrize("channels", [1, 2])
def test_16khz_wav_samples_are_funasrs_bit_for_bit(tmp_path, subtype, channels) -> None:
    path = _write(tmp_path / "a.wav", SAMPLE_RATE, channels, subtype)
    ours, theirs = _ours(path), _funasr_samples(path)
    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


CASES = [
    ("wav", 8000, 1),
    ("wav", 22050, 1),
    ("wav", 44100, 2),
    ("wav", 48000, 2),
    ("mp3", 44100, 1),
    ("mp3", 48000, 2),
]


@pytest.mark.parametrize(("container", "rate", "channels"), CASES)
def test_other_rates_same_gain_and_features_within_tolerance(
    tmp_path, funasr_model, container, rate, channels
) -> None:
    path = _write(tmp_path / f"a.{container}", rate, channels)
    ours, theirs = _ours(path), _funasr_samples(path)
    assert abs(len(ours) - len(theirs)) <= 1
    n = min(len(ours), len(theirs))
    gain = np.sqrt(np.mean(ours[:n] ** 2) / np.mean(theirs[:n] ** 2))
    assert abs(gain - 1) < GAIN_TOLERANCE
    error_db = _passband_db(_features(funasr_model, theirs), _features(funasr_model, ours), rate)
    assert error_db < TOLERANCE_DB[rate]


def test_16khz_mp3_decodes_to_funasrs_samples_within_rounding(tmp_path) -> None:
    """libsndfile's mpg123 and FFmpeg's decoder: same delay handling, float rounding apart."""
    path = _write(tmp_path / "a.mp3", SAMPLE_RATE, 1)
    ours, theirs = _ours(path), _funasr_samples(path)
    assert len(ours) == len(theirs)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_the_feature_tolerance_catches_gain_and_downmix_errors(tmp_path, funasr_model) -> None:
    """The measure is not blind: a 0.5 dB gain error or a left-channel-only downmix fails it."""
    path = _write(tmp_path / "a.wav", 44100, 2)
    reference = _features(funasr_model, _funasr_samples(path))

    def error_db(samples: np.ndarray) -> float:
        return _passband_db(reference, _features(funasr_model, samples), 44100)

    ours = _ours(path)
    audio, rate = sf.read(path, dtype="float32")
    sf.write(left := tmp_path / "left.wav", audio[:, 0], rate, subtype="FLOAT")
    assert error_db(ours) < TOLERANCE_DB[44100]
    assert error_db(ours * np.float32(10 ** (-0.5 / 20))) > 4 * TOLERANCE_DB[44100]
    assert error_db(_ours(left)) > 100 * TOLERANCE_DB[44100]
