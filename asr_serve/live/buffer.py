"""The recent audio of one live session, addressed by position on the session's clock."""

from __future__ import annotations

import numpy as np


class SampleBuffer:
    """16 kHz samples from ``start`` to ``end``; old audio is dropped once nothing needs it.

    Chunks are kept as they arrive and joined only when a slice is taken (to transcribe), so an
    append costs no copy of the utterance so far.
    """

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self.start = 0
        self.end = 0

    def append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._chunks.append(samples)
            self.end += len(samples)

    def slice(self, start: int, end: int) -> np.ndarray:
        """A copy of ``[start, end)``, clamped to what the buffer holds."""
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        joined = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = [joined]
        return joined[start - self.start : end - self.start].copy()

    def drop_before(self, position: int) -> None:
        """Forget the samples before ``position``."""
        cut = min(max(position, self.start), self.end) - self.start
        while self._chunks and cut >= len(self._chunks[0]):
            cut -= len(self._chunks[0])
            self.start += len(self._chunks[0])
            self._chunks.pop(0)
        if cut:
            self._chunks[0] = self._chunks[0][cut:]
            self.start += cut
