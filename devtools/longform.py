"""Long audio in process: the served path's VAD pieces, one engine call, stitching.

What the service does across its deployments (decoder VAD, pieces batched by the ASR
deployment, stitching in the ingress), as one function, for benchmarks and for tests that
compare served results with in-process ones.
"""

from __future__ import annotations

import numpy as np

from asr_serve.audio.decode import Piece
from asr_serve.audio.splitting import PieceSplitter
from asr_serve.config import SAMPLE_RATE
from asr_serve.engines.base import Engine, EngineResult, TranscribeOptions
from asr_serve.serving.stitching import stitch


def transcribe_long(
    engine: Engine, samples: np.ndarray, options: TranscribeOptions, splitter: PieceSplitter
) -> EngineResult:
    """Transcribe 16 kHz mono float32 ``samples`` of any length as the service does."""
    pieces: tuple[Piece, ...] = splitter.split(samples) or ((0, len(samples)),)
    results = engine.transcribe([samples[a:b] for a, b in pieces], [options] * len(pieces))
    return stitch(list(zip(pieces, results, strict=True)), len(samples) / SAMPLE_RATE)
