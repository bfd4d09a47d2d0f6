"""Cut long audio at speech pauses into pieces no longer than the model's window.

ASR models read ~30 s windows: a 40-minute file fed whole fails or crawls, and one cut
blindly every 30 s splits words. The decoder tier runs silero VAD (its ONNX weights ship in
the ``silero-vad`` wheel) over audio longer than ``max_segment_s``, merges the speech regions
it finds into pieces of at most that length, cutting at the longest pause available, and
keeps each piece's offset in samples so results can be put back on the file's time line.

The VAD runs its "sequence" ONNX model: one onnxruntime call per ~16 s block on one thread,
torch-free and outside the GIL for most of its time, about 250x realtime on one core.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from asr_serve.audio.decode import TARGET_SAMPLE_RATE
from asr_serve.config import SegmentationConfig

#: ``[start, end)`` in samples of the 16 kHz decoded audio.
Span = tuple[int, int]


class SpeechSegmenter:
    """Loads silero VAD once (per decoder replica) and plans the pieces of each file."""

    def __init__(self, config: SegmentationConfig) -> None:
        from silero_vad import load_silero_vad

        self.config = config
        self.max_samples = round(config.max_segment_s * TARGET_SAMPLE_RATE)
        self._vad = load_silero_vad(sequence=True)

    def fits(self, samples: np.ndarray) -> bool:
        """Short enough for one window: not split, and the VAD need not run."""
        return len(samples) <= self.max_samples

    def segment(self, samples: np.ndarray) -> tuple[Span, ...] | None:
        """The pieces to transcribe; ``None`` when the audio fits one window (not split)."""
        if self.fits(samples):
            return None
        return tuple(plan_segments(self.speech_regions(samples), self.max_samples))

    def speech_regions(self, samples: np.ndarray) -> list[Span]:
        """Padded speech regions in samples, each at most ``max_segment_s`` long."""
        from silero_vad import get_speech_timestamps_sequence

        regions = get_speech_timestamps_sequence(
            samples,  # float32 and contiguous: read in place, never copied whole
            self._vad,
            threshold=self.config.threshold,
            sampling_rate=TARGET_SAMPLE_RATE,
            min_silence_duration_ms=self.config.min_silence_ms,
            speech_pad_ms=self.config.speech_pad_ms,
            # silero itself splits longer speech at its longest short pause, padding included.
            max_speech_duration_s=self.config.max_segment_s,
        )
        return [(int(r["start"]), int(r["end"])) for r in regions]


def plan_segments(regions: Sequence[Span], max_samples: int) -> list[Span]:
    """Merge ordered speech regions greedily into spans of at most ``max_samples``.

    Each span starts at a region's start and ends at the end of the region followed by the
    longest pause that keeps it within ``max_samples``, looking first in the window's second
    half so pieces are not needlessly short. Silence between spans is left out. Only a
    region longer than ``max_samples`` by itself is split hard, into equal parts.
    """
    pieces = [part for region in regions for part in _hard_split(region, max_samples)]
    spans: list[Span] = []
    first = 0
    while first < len(pieces):
        start = pieces[first][0]
        last = first
        while last + 1 < len(pieces) and pieces[last + 1][1] - start <= max_samples:
            last += 1
        if last == len(pieces) - 1:
            spans.append((start, pieces[last][1]))
            break
        candidates = range(first, last + 1)
        late = [k for k in candidates if pieces[k][1] - start >= max_samples // 2]
        cut = max(late or candidates, key=lambda k: (pieces[k + 1][0] - pieces[k][1], k))
        spans.append((start, pieces[cut][1]))
        first = cut + 1
    return spans


def _hard_split(region: Span, max_samples: int) -> list[Span]:
    start, end = region
    parts = -(-(end - start) // max_samples)  # ceil
    if parts <= 1:
        return [region]
    bounds = [start + (end - start) * i // parts for i in range(parts + 1)]
    return list(itertools.pairwise(bounds))


def transcription_spans(segments: tuple[Span, ...] | None, n_samples: int) -> tuple[Span, ...]:
    """What goes to the model: the planned pieces, or the whole file when it was not split."""
    return ((0, n_samples),) if segments is None else segments
