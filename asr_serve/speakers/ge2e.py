"""The speaker encoder: GE2E d-vectors from the weights the ``resemblyzer`` wheel ships.

The model is a 3-layer LSTM (40 mel bands in, 256 hidden) and a linear layer, trained with
the generalised end-to-end loss (Wan et al., 2018) by the Resemblyzer project; its weights
(``resemblyzer/pretrained.pt``, 17 MB) are the only thing taken from that package. Its code
is not imported: it would pull librosa and webrtcvad into every replica for a mel filterbank
and a silence trimmer, while the module is twenty lines of torch and the features are
torchaudio's (the same filterbank as librosa's: Slaney mel scale and norm, a periodic Hann
window; ``tests/speakers/test_ge2e.py`` checks both against resemblyzer's own code). The
weights file is checked against its SHA-256 before it is loaded.

An utterance is embedded as Resemblyzer embeds one: its loudness raised to -30 dBFS, cut into
1.6 s partials (160 frames of 10 ms), each partial through the network, the mean of their
unit vectors normalised; the partials are the fewest at most a step apart that cover the
clip, spread evenly (Resemblyzer's fixed step leaves a clip's end out, or pads it).
Partials all have one length, so the partials of any number of clips run as one batch with
no padding.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asr_serve.config import SAMPLE_RATE

#: The SHA-256 of ``resemblyzer/pretrained.pt`` in the resemblyzer 0.1.4 wheel.
WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
EMBEDDING_SIZE = 256
N_MELS = 40
HOP = SAMPLE_RATE // 100  # 10 ms
N_FFT = SAMPLE_RATE * 25 // 1000  # 25 ms
PARTIAL_FRAMES = 160  # 1.6 s
#: Loudness every clip is raised to (never lowered), as the encoder was trained.
TARGET_DBFS = -30.0


class WeightsError(RuntimeError):
    """The weights file is missing or is not the one this code was written for."""


class GE2E(nn.Module):
    """Mel frames ``(batch, 160, 40)`` to unit d-vectors ``(batch, 256)``."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, EMBEDDING_SIZE, 3, batch_first=True)
        self.linear = nn.Linear(EMBEDDING_SIZE, EMBEDDING_SIZE)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)


def weights_path() -> Path:
    """Where pip put the resemblyzer wheel's weights (its code is never imported)."""
    try:
        dist = importlib.metadata.distribution("resemblyzer")
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            "the speaker encoder's weights come with the resemblyzer package: "
            "pip install resemblyzer==0.1.4"
        ) from None
    return Path(str(dist.locate_file("resemblyzer/pretrained.pt")))


def load_state(path: Path, sha256: str = WEIGHTS_SHA256) -> dict[str, torch.Tensor]:
    """The network's tensors from a checkpoint whose digest is ``sha256``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read the speaker encoder's weights: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise WeightsError(
            f"{path} has SHA-256 {digest}, not {sha256}: not the GE2E weights of "
            "resemblyzer 0.1.4; reinstall it (pip install --force-reinstall resemblyzer==0.1.4)"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    # The checkpoint also holds the training loss's scale and the optimizer's state.
    return {
        k: v for k, v in checkpoint["model_state"].items() if k.startswith(("lstm.", "linear."))
    }


class GE2EEncoder:
    """Embeds clips of 16 kHz mono float32 speech; one per replica, not thread-safe."""

    def __init__(
        self,
        *,
        device: str = "cpu",
        partial_step_s: float = 0.8,
        state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        import torchaudio

        self.device = torch.device(device)
        self.step_frames = max(1, min(PARTIAL_FRAMES, round(partial_step_s * 100)))
        self.model = GE2E()
        self.model.load_state_dict(state if state is not None else load_state(weights_path()))
        self.model.eval().to(self.device)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=N_FFT,
            hop_length=HOP,
            n_mels=N_MELS,
            power=2.0,
            center=True,
            pad_mode="constant",
            norm="slaney",
            mel_scale="slaney",
        )

    def partial_starts(self, samples: int) -> list[int]:
        """First frames of a clip's partials: the fewest at most ``step`` apart that cover
        the whole clip, spread evenly from its start to its end (one, padded, for a clip
        shorter than a partial)."""
        frames = -(-(samples + 1) // HOP)
        span = frames - PARTIAL_FRAMES
        if span <= 0:
            return [0]
        gaps = -(-span // self.step_frames)
        return [round(i * span / gaps) for i in range(gaps + 1)]

    def partials(self, clip: np.ndarray) -> torch.Tensor:
        """A clip's partials as mel frames, ``(n, 160, 40)``."""
        starts = self.partial_starts(len(clip))
        need = (starts[-1] + PARTIAL_FRAMES) * HOP
        wav = torch.from_numpy(np.array(clip, dtype=np.float32))  # a copy: inputs may be read-only
        wav = _raise_loudness(wav)
        if need > len(wav):
            wav = torch.nn.functional.pad(wav, (0, need - len(wav)))
        frames = self.mel(wav).T  # (frames, 40)
        return torch.stack([frames[s : s + PARTIAL_FRAMES] for s in starts])

    @torch.inference_mode()
    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """One unit d-vector per clip, ``(len(clips), 256)`` float32; one network call."""
        if not clips:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        parts = [self.partials(clip) for clip in clips]
        vectors = self.model(torch.cat(parts).to(self.device)).cpu()
        out = np.empty((len(clips), EMBEDDING_SIZE), dtype=np.float32)
        at = 0
        for i, part in enumerate(parts):
            mean = vectors[at : at + len(part)].mean(dim=0)
            out[i] = (mean / torch.linalg.vector_norm(mean).clamp_min(1e-12)).numpy()
            at += len(part)
        return out

    def partial_count(self, samples: int) -> int:
        """How many partials a clip of ``samples`` runs as: its share of a batch."""
        return len(self.partial_starts(samples))


def _raise_loudness(wav: torch.Tensor) -> torch.Tensor:
    """Scale a quiet clip up to ``TARGET_DBFS`` (RMS of full scale); never down."""
    rms = float(torch.sqrt(torch.mean(wav.double() ** 2)))
    if rms <= 0.0:
        return wav
    gain_db = TARGET_DBFS - 20 * np.log10(rms)
    return wav * float(10 ** (gain_db / 20)) if gain_db > 0 else wav
