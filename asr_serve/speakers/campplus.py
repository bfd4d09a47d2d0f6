"""CAM++: funasr's speaker model (``spk_model="cam++"``), for deployments that take their
models from ModelScope.

funasr's own servers tag speakers with CAM++ (Wang et al., 2023; 192-dim embeddings from 80
Kaldi filterbanks), weights ``iic/speech_campplus_sv_zh-cn_16k-common`` on ModelScope. Here it
is loaded by funasr's own loader (``funasr.AutoModel``: the checkpoint's ``config.yaml``
and ``configuration.json``, the registry's ``CAMPPlus``) and fed funasr's own features
(:func:`funasr.models.campplus.utils.extract_feature`: filterbanks, mean removed per window),
on windows cut as funasr's diarization cuts speech (``sv_chunk``: 1.5 s, the last one ending
with the clip, a short clip zero-padded). Windows all have one length, so the windows of
any number of clips run as one batch without padding; a clip's embedding is the normalised
mean of its windows'.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_serve.config import SAMPLE_RATE
from asr_serve.engines.funasr_loading import auto_model

#: funasr's diarization window (``sv_chunk``'s ``seg_dur``).
WINDOW = round(1.5 * SAMPLE_RATE)
_HUBS = {"modelscope": "ms"}


class CamPlusLoadError(RuntimeError):
    """The CAM++ checkpoint is missing, incomplete or not loadable."""


def check_local_dir(path: Path) -> Path:
    """A local checkpoint directory with its config and weights (funasr would otherwise
    build the model with random weights and only print that the file is missing)."""
    path = path.expanduser().resolve()
    if not (path / "config.yaml").is_file():
        raise CamPlusLoadError(
            f"{path} has no config.yaml: not a funasr CAM++ checkpoint; download it with "
            f"`modelscope download --model iic/speech_campplus_sv_zh-cn_16k-common "
            f"--local_dir {path}`, or set speakers.encoder_source: modelscope"
        )
    weights = "model.pt"
    meta = path / "configuration.json"
    if meta.is_file():
        weights = json.loads(meta.read_text()).get("file_path_metas", {}).get("init_param", weights)
    if not (path / weights).is_file():
        raise CamPlusLoadError(f"{path} lacks its weights file {weights}")
    return path


class CamPlusEncoder:
    """Embeds clips of 16 kHz mono float32 speech; one per replica, not thread-safe."""

    def __init__(
        self,
        model: str,
        *,
        source: str = "local",
        device: str = "cpu",
        partial_step_s: float = 1.5,
        cpu_threads: int = 0,
    ) -> None:
        kwargs: dict[str, Any] = {
            "device": device,
            "disable_update": True,
            "disable_pbar": True,
            "disable_log": True,
        }
        if cpu_threads:
            kwargs["ncpu"] = cpu_threads  # funasr sets torch's threads to it (default 4)
        if source == "local":
            kwargs["model"] = str(check_local_dir(Path(model)))
        else:
            kwargs["model"], kwargs["hub"] = model, _HUBS[source]
        try:
            loaded = auto_model(**kwargs)
        except Exception as exc:
            raise CamPlusLoadError(
                f"funasr could not load the CAM++ model {model!r} ({source}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if type(loaded.model).__name__ != "CAMPPlus":
            raise CamPlusLoadError(f"{model!r} is a {type(loaded.model).__name__}, not CAM++")
        self.model = loaded.model.eval()
        self.device = torch.device(loaded.kwargs["device"])
        self.step = max(1, min(WINDOW, round(partial_step_s * SAMPLE_RATE)))

    def windows(self, clip: np.ndarray) -> list[np.ndarray]:
        """A clip's 1.5 s windows, ``step`` apart, the last ending with the clip; a clip
        shorter than one window is one window, zero-padded."""
        if len(clip) <= WINDOW:
            return [np.pad(clip, (0, WINDOW - len(clip)))]
        starts = [*range(0, len(clip) - WINDOW, self.step), len(clip) - WINDOW]
        return [clip[s : s + WINDOW] for s in starts]

    def partial_count(self, samples: int) -> int:
        """How many windows a clip of ``samples`` runs as: its share of a batch."""
        return 1 if samples <= WINDOW else -(-(samples - WINDOW) // self.step) + 1

    @torch.inference_mode()
    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """One unit embedding per clip, ``(len(clips), dim)`` float32; one network call."""
        from funasr.models.campplus.utils import extract_feature

        parts = [self.windows(np.asarray(clip, dtype=np.float32)) for clip in clips]
        flat = [torch.from_numpy(np.array(w)) for part in parts for w in part]
        if not flat:
            return np.zeros((0, self.dim), dtype=np.float32)
        features, _, _ = extract_feature(flat)
        vectors = self.model(features.to(self.device)).float().cpu().numpy()
        out, at = [], 0
        for part in parts:
            mean = vectors[at : at + len(part)].mean(axis=0)
            out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            at += len(part)
        return np.stack(out).astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self.model.xvector.dense.linear.out_channels)
