"""Admission by time: an item joins a replica's queue only if its wait would be short enough.

A queue bounded by a count lets an accepted request wait as long as that count of items
takes: 120 clients against the CPU quickstart waited a median of 56 s, up to 75 s. Here
the replica keeps the audio it has admitted and not yet finished, and the speed its engine
has shown (audio seconds per wall second of its batches, smoothed, seeded by warm-up); a new
item is admitted when that audio, at that speed, is done within ``max_queue_wait_s``.
Otherwise it is refused at once with a Retry-After of the time until it would be admitted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from asr_serve.errors import OverloadedError


class QueueAdmission:
    """One replica's admitted audio and engine speed. Plain, single-threaded (event loop)."""

    #: Weight of the newest batch in the smoothed speed: a few batches follow a change of
    #: load or of clip lengths, one odd batch does not swing it.
    SMOOTHING = 0.3

    def __init__(self, speed: float) -> None:
        #: Audio seconds the engine transcribes per wall second.
        self.speed = speed
        #: Audio admitted and not finished (waiting, or in the running batch).
        self.queued_s = 0.0

    @classmethod
    def from_warmup(cls, audio_s: float, wall_s: float) -> QueueAdmission:
        """Seeded by the warm-up batch: slow (first-call costs), so admission starts cautious
        and the real batches correct it."""
        return cls(speed=audio_s / max(wall_s, 1e-3))

    def estimated_wait_s(self) -> float:
        """How long a new item would wait for the audio admitted before it."""
        return self.queued_s / self.speed

    def refusal(self, max_wait_s: float) -> OverloadedError | None:
        """The 503 for a new item if its wait would exceed ``max_wait_s``, else ``None``."""
        wait = self.estimated_wait_s()
        if wait <= max_wait_s:
            return None
        return OverloadedError(
            f"the model's queue holds about {wait:.0f} s of work, over its "
            f"{max_wait_s:g} s bound; retry shortly",
            retry_after_s=wait - max_wait_s,
        )

    @contextlib.contextmanager
    def queued(self, audio_s: float) -> Iterator[None]:
        """Count an admitted item's audio until it is done (or cancelled)."""
        self.queued_s += audio_s
        try:
            yield
        finally:
            self.queued_s = max(0.0, self.queued_s - audio_s)

    def observe_batch(self, audio_s: float, wall_s: float) -> None:
        """Fold one batch's speed into the estimate."""
        if wall_s > 0 and audio_s > 0:
            self.speed += self.SMOOTHING * (audio_s / wall_s - self.speed)
