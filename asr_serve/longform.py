"""Long audio in process: the served path's VAD pieces, one engine call, stitching.

What the service does across its deployments (decoder VAD, pieces batched by the ASR
deployment, stitching in the ingress), as one function, for benchmarks and for tests that
compare served results with in-process ones.
"""

from __future__ import annotations

import numpy as np

from asr_serve.audio.vad import SpeechSegmenter, transcription_spans
from asr_serve.engines.base import SAMPLE_RATE, Engine, EngineResult, TranscribeOptions
from asr_serve.stitching import stitch


def transcribe_long(
    engine: Engine, samples: np.ndarray, options: TranscribeOptions, segmenter: SpeechSegmenter
) -> EngineResult:
    """Transcribe 16 kHz mono float32 ``samples`` of any length as the service does."""
    spans = transcription_spans(segmenter.segment(samples), len(samples))
    results = engine.transcribe([samples[a:b] for a, b in spans], [options] * len(spans))
    return stitch(list(zip(spans, results, strict=True)), len(samples) / SAMPLE_RATE)
