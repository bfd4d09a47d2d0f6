"""The speaker encoders behind one interface, and the one a deployment's config names.

- ``ge2e`` (:mod:`~asr_serve.speakers.ge2e`): weights in the ``resemblyzer`` wheel, so it
  works on every install with no download; the default.
- ``cam++`` (:mod:`~asr_serve.speakers.campplus`): funasr's speaker model, loaded by funasr
  from a ModelScope checkpoint, for deployments that take their models from ModelScope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import numpy as np

from asr_serve.config import SpeakersConfig

#: ``(clips, client)``: unit embeddings, one row per clip, as ``client``'s share of the
#: encoder (the Speakers deployment's ``embed``, called by files and live sessions).
Embed = Callable[[list[np.ndarray], str], Awaitable[np.ndarray]]


class Encoder(Protocol):
    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """One unit embedding per clip (16 kHz mono float32), in one network call."""
        ...

    def partial_count(self, samples: int) -> int:
        """The fixed-length windows a clip of ``samples`` runs as: its share of a batch."""
        ...


def create_encoder(config: SpeakersConfig, device: str) -> Encoder:
    """The encoder ``config.encoder`` names, loaded on ``device``."""
    if config.encoder == "cam++":
        from asr_serve.speakers.campplus import CamPlusEncoder

        return CamPlusEncoder(
            config.encoder_model,
            source=config.encoder_source,
            device=device,
            partial_step_s=config.partial_step_s,
            cpu_threads=config.cpu_threads if device == "cpu" else 0,
        )
    from asr_serve.speakers.ge2e import GE2EEncoder

    return GE2EEncoder(device=device, partial_step_s=config.partial_step_s)
