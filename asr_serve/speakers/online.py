"""A live session's speakers, assigned utterance by utterance as the session goes.

A file can be clustered once all of it is there; a live session cannot wait. Each
committed utterance's embedding is compared with the centroids of the speakers the session
has heard: at least ``threshold`` alike to the closest, it is that speaker (whose centroid
moves towards it, weighed by speech length); otherwise it is a new speaker, the next letter,
until ``max_speakers`` (then the closest). Labels never change once sent, so they are stable
for the whole session.
"""

from __future__ import annotations

import numpy as np

from asr_serve.speakers.labels import letter


class OnlineSpeakers:
    """One session's speakers; not thread-safe (the session's event loop only)."""

    def __init__(self, *, threshold: float, max_speakers: int) -> None:
        self.threshold = threshold
        self.max_speakers = max_speakers
        self._sums: list[np.ndarray] = []

    def assign(self, embedding: np.ndarray, weight: float = 1.0) -> str:
        """The label of the speaker of an utterance with this unit ``embedding``."""
        vector = np.asarray(embedding, dtype=np.float64) * max(weight, 1e-6)
        if self._sums:
            centroids = np.stack([s / np.linalg.norm(s) for s in self._sums])
            similarity = centroids @ np.asarray(embedding, dtype=np.float64)
            best = int(np.argmax(similarity))
            if similarity[best] >= self.threshold or len(self._sums) >= self.max_speakers:
                self._sums[best] = self._sums[best] + vector
                return letter(best)
        self._sums.append(vector)
        return letter(len(self._sums) - 1)

    @property
    def count(self) -> int:
        return len(self._sums)
