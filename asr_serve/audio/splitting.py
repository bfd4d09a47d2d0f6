"""Split long audio at speech pauses into pieces no longer than the model's window.

ASR models read ~30 s windows: a 40-minute file fed whole fails or crawls, and one cut
blindly every 30 s splits words. The decoder tier runs silero VAD (its ONNX weights ship in
the ``silero-vad`` wheel) over audio longer than ``max_piece_s``, merges the speech regions
it finds into pieces of at most that length, cutting at the longest pause available, and
keeps each piece's offset in samples so results can be put back on the file's time line.

The VAD runs its "sequence" ONNX model: one onnxruntime call per ~16 s block on one thread,
torch-free and outside the GIL for most of its time, about 250x realtime on one core.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from asr_serve.audio.decode import Piece
from asr_serve.config import SAMPLE_RATE, SplittingConfig


class Plan(NamedTuple):
    """Speech regions and the pieces made of them (``None``: the audio fits one piece)."""

    regions: tuple[Piece, ...]
    pieces: tuple[Piece, ...] | None


class PieceSplitter:
    """Loads silero VAD once (per decoder replica) and plans the pieces of each file."""

    def __init__(self, config: SplittingConfig) -> None:
        from silero_vad import load_silero_vad

        self.config = config
        self.max_samples = round(config.max_piece_s * SAMPLE_RATE)
        self._vad = load_silero_vad(sequence=True)

    def fits(self, samples: np.ndarray) -> bool:
        """Short enough for one window: not split, and the VAD need not run."""
        return len(samples) <= self.max_samples

    def split(
        self, samples: np.ndarray, vad: SplittingConfig | None = None
    ) -> tuple[Piece, ...] | None:
        """The pieces to transcribe; ``None`` when the audio fits one window (not split).

        ``vad``: this request's VAD knobs (threshold, silence, padding), else the replica's;
        the piece length is always the replica's.
        """
        if self.fits(samples):
            return None
        return tuple(plan_pieces(self.speech_regions(samples, vad), self.max_samples))

    def plan(self, samples: np.ndarray, vad: SplittingConfig | None = None) -> Plan:
        """The speech regions whatever the length, and the pieces when the audio is split."""
        regions = tuple(self.speech_regions(samples, vad))
        if self.fits(samples):
            return Plan(regions, None)
        return Plan(regions, tuple(plan_pieces(regions, self.max_samples)))

    def speech_regions(
        self, samples: np.ndarray, vad: SplittingConfig | None = None
    ) -> list[Piece]:
        """Padded speech regions in samples, each at most ``max_piece_s`` long."""
        from silero_vad import get_speech_timestamps_sequence

        knobs = vad or self.config
        regions = get_speech_timestamps_sequence(
            samples,  # float32 and contiguous: read in place, never copied whole
            self._vad,
            threshold=knobs.threshold,
            sampling_rate=SAMPLE_RATE,
            min_silence_duration_ms=knobs.min_silence_ms,
            speech_pad_ms=knobs.speech_pad_ms,
            # silero itself splits longer speech at its longest short pause, padding included.
            max_speech_duration_s=self.config.max_piece_s,
        )
        return [(int(r["start"]), int(r["end"])) for r in regions]


def plan_pieces(regions: Sequence[Piece], max_samples: int) -> list[Piece]:
    """Merge ordered speech regions greedily into pieces of at most ``max_samples``.

    Each piece starts at a region's start and ends at the end of the region followed by the
    longest pause that keeps it within ``max_samples``, looking first in the window's second
    half so pieces are not needlessly short. Silence between pieces is left out. Only a
    region longer than ``max_samples`` by itself is split hard, into equal parts.
    """
    parts = [part for region in regions for part in _hard_split(region, max_samples)]
    pieces: list[Piece] = []
    first = 0
    while first < len(parts):
        start = parts[first][0]
        last = first
        while last + 1 < len(parts) and parts[last + 1][1] - start <= max_samples:
            last += 1
        if last == len(parts) - 1:
            pieces.append((start, parts[last][1]))
            break
        candidates = range(first, last + 1)
        late = [k for k in candidates if parts[k][1] - start >= max_samples // 2]
        cut = max(late or candidates, key=lambda k: (parts[k + 1][0] - parts[k][1], k))
        pieces.append((start, parts[cut][1]))
        first = cut + 1
    return pieces


def _hard_split(region: Piece, max_samples: int) -> list[Piece]:
    start, end = region
    parts = -(-(end - start) // max_samples)  # ceil
    if parts <= 1:
        return [region]
    bounds = [start + (end - start) * i // parts for i in range(parts + 1)]
    return list(itertools.pairwise(bounds))
